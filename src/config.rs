//! The cluster configuration: the original library's JSON, validated.

use crate::error::{Error, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The id that addresses every peer but oneself.
pub const BROADCAST: i64 = -1;

/// Default capacity of the inbox and of each per-peer outbound queue.
pub const DEFAULT_QUEUE_SIZE: usize = 1000;
/// Default largest payload, in bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;
/// Default time `close` spends flushing queued messages.
pub const DEFAULT_CLOSE_LINGER_MS: u64 = 1000;
/// Default first reconnect delay.
pub const DEFAULT_RECONNECT_MIN_MS: u64 = 10;
/// Default cap of the reconnect delay.
pub const DEFAULT_RECONNECT_MAX_MS: u64 = 1000;
/// Default time after which a peer that answers nothing is marked down.
pub const DEFAULT_PEER_TIMEOUT_MS: u64 = 10_000;

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The member's id, unique in the cluster.
    pub id: i64,
    /// The address as written in the config (e.g. `localhost:7070`; empty
    /// in a mock config that gives none).
    pub address: String,
    /// The address others connect to (`0.0.0.0:0` in a mock config).
    pub addr: SocketAddr,
    /// The address this member binds when it is the local node
    /// (`0.0.0.0:0` in a mock config).
    pub listen: SocketAddr,
}

/// A validated cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Every member, in config order.
    pub peers: Vec<Peer>,
    /// Capacity of the inbox.
    pub inbox_size: usize,
    /// Capacity of each per-peer outbound queue.
    pub outbox_size: usize,
    /// Largest payload accepted by send and by the frame reader.
    pub max_message_size: usize,
    /// How long `close` may spend flushing queued messages.
    pub close_linger: Duration,
    /// First delay between reconnect attempts.
    pub reconnect_min: Duration,
    /// Cap of the delay between reconnect attempts.
    pub reconnect_max: Duration,
    /// How long a connected peer may leave our TCP probes and data
    /// unanswered before it is marked down (a peer that answers but reads
    /// slowly is never cut).
    pub peer_timeout: Duration,
    /// A shared secret every member must prove it knows, and from which each
    /// connection's encryption keys are derived; `None` lets in any
    /// configured id and sends frames in the clear.
    pub secret: Option<Secret>,
}

/// A shared secret's bytes. Its `Debug` shows only that there is one, so a
/// logged [`Config`] never reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps the secret's bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Every top-level setting, as spelled in the JSON (README's config table).
const SETTINGS: &[&str] = &[
    "Peers",
    "Servers",
    "InboxSize",
    "OutboxSize",
    "MaxMessageSize",
    "CloseLingerMs",
    "ReconnectMinMs",
    "ReconnectMaxMs",
    "PeerTimeoutMs",
    "Secret",
    "SecretFile",
    "SecretEnv",
];
/// Every setting of one member.
const PEER_SETTINGS: &[&str] = &["Id", "Address", "Listen"];

#[derive(Default)]
struct RawPeer {
    id: Option<i64>,
    address: Option<String>,
    listen: Option<String>,
}

#[derive(Default)]
struct RawConfig {
    peers: Option<Vec<RawPeer>>,
    servers: Option<Vec<RawPeer>>,
    inbox_size: Option<i64>,
    outbox_size: Option<i64>,
    max_message_size: Option<i64>,
    close_linger_ms: Option<i64>,
    reconnect_min_ms: Option<i64>,
    reconnect_max_ms: Option<i64>,
    peer_timeout_ms: Option<i64>,
    secret: Option<String>,
    secret_file: Option<String>,
    secret_env: Option<String>,
}

/// How a configuration is checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// For a real node: every member needs an address that resolves.
    Node,
    /// For the mock network: addresses are optional and never resolved.
    Mock,
}

/// The address a mock configuration gives every member (`0.0.0.0:0`):
/// addresses are not used by the mock, so they are neither required nor
/// resolved. Not `pub`: cbindgen would look at it for the header.
const MOCK_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

impl<'de> Deserialize<'de> for RawConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(Settings)
    }
}

/// The top-level object.
struct Settings;

impl<'de> Visitor<'de> for Settings {
    type Value = RawConfig;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object of settings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawConfig, A::Error> {
        let mut raw = RawConfig::default();
        let mut seen = Vec::new();
        while let Some(key) = next_key(&mut map, "", SETTINGS, &mut seen)? {
            let int = Int("", key);
            match key {
                "Peers" => raw.peers = map.next_value_seed(Members(key))?,
                "Servers" => raw.servers = map.next_value_seed(Members(key))?,
                "InboxSize" => raw.inbox_size = map.next_value_seed(int)?,
                "OutboxSize" => raw.outbox_size = map.next_value_seed(int)?,
                "MaxMessageSize" => raw.max_message_size = map.next_value_seed(int)?,
                "CloseLingerMs" => raw.close_linger_ms = map.next_value_seed(int)?,
                "ReconnectMinMs" => raw.reconnect_min_ms = map.next_value_seed(int)?,
                "ReconnectMaxMs" => raw.reconnect_max_ms = map.next_value_seed(int)?,
                "PeerTimeoutMs" => raw.peer_timeout_ms = map.next_value_seed(int)?,
                "Secret" => raw.secret = map.next_value_seed(Text("", key))?,
                "SecretFile" => raw.secret_file = map.next_value_seed(Text("", key))?,
                _ => raw.secret_env = map.next_value_seed(Text("", key))?, // "SecretEnv"
            }
        }
        Ok(raw)
    }
}

/// The member list named `.0`; `null` is none.
struct Members(&'static str);

impl<'de> DeserializeSeed<'de> for Members {
    type Value = Option<Vec<RawPeer>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Members {
    type Value = Option<Vec<RawPeer>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "\"{}\" to be a list of members", self.0)
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        let mut peers = Vec::new();
        while let Some(p) = seq.next_element_seed(Member(format!("{}[{}]", self.0, peers.len())))? {
            peers.push(p);
        }
        Ok(Some(peers))
    }
}

/// One entry of a member list, named as in messages (`Peers[2]`).
struct Member(String);

impl<'de> DeserializeSeed<'de> for Member {
    type Value = RawPeer;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<RawPeer, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Member {
    type Value = RawPeer;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} to be an object with \"Id\" and \"Address\"", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawPeer, A::Error> {
        let at = format!("{}: ", self.0);
        let of = format!("{} ", self.0);
        let mut raw = RawPeer::default();
        let mut seen = Vec::new();
        while let Some(key) = next_key(&mut map, &at, PEER_SETTINGS, &mut seen)? {
            match key {
                "Id" => raw.id = map.next_value_seed(Int(&of, key))?,
                "Address" => raw.address = map.next_value_seed(Text(&of, key))?,
                _ => raw.listen = map.next_value_seed(Text(&of, key))?, // "Listen"
            }
        }
        Ok(raw)
    }
}

/// An integer setting (`.1`, in the object `.0` names); `null` is none.
#[derive(Clone, Copy)]
struct Int<'a>(&'a str, &'static str);

impl<'de> DeserializeSeed<'de> for Int<'_> {
    type Value = Option<i64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Option<i64>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Int<'_> {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}\"{}\" to be a 64-bit integer", self.0, self.1)
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Option<i64>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Option<i64>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Option<i64>, D::Error> {
        d.deserialize_i64(self)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Option<i64>, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Option<i64>, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
}

/// A text setting (`.1`, in the object `.0` names); `null` is none.
struct Text<'a>(&'a str, &'static str);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Option<String>, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}\"{}\" to be a string", self.0, self.1)
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<Option<String>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Option<String>, D::Error> {
        d.deserialize_string(self)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Option<String>, E> {
        Ok(Some(v.to_owned()))
    }
}

/// The next key of an object whose keys must be among `known`, once each:
/// an unknown key is an error naming it and the nearest known one.
/// `at` prefixes the messages (where the object is).
fn next_key<'de, A: MapAccess<'de>>(
    map: &mut A,
    at: &str,
    known: &'static [&'static str],
    seen: &mut Vec<&'static str>,
) -> std::result::Result<Option<&'static str>, A::Error> {
    let Some(key) = map.next_key::<String>()? else {
        return Ok(None);
    };
    let Some(&name) = known.iter().find(|&&k| k == key) else {
        let why = unknown_field(&key, known);
        return Err(de::Error::custom(format!("{at}{why}")));
    };
    if seen.contains(&name) {
        return Err(de::Error::custom(format!("{at}duplicate field \"{name}\"")));
    }
    seen.push(name);
    Ok(Some(name))
}

/// Why `key` is not one of `known`: where it belongs if it is a setting of
/// the other level, else the nearest known key if it is close enough to be
/// a typo, else every known key.
fn unknown_field(key: &str, known: &[&str]) -> String {
    let elsewhere = if known == SETTINGS {
        PEER_SETTINGS
            .contains(&key)
            .then_some("a member's setting (inside \"Peers\")")
    } else {
        SETTINGS
            .contains(&key)
            .then_some("a top-level setting, not a member's")
    };
    if let Some(what) = elsewhere {
        return format!("field \"{key}\" is {what}");
    }
    let lower = key.to_lowercase();
    let (dist, nearest) = known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
        .min()
        .unwrap_or((usize::MAX, ""));
    // A typo: at most a third of the key's letters (and at least 2) edited.
    if dist <= (key.chars().count() / 3).max(2) {
        format!("unknown field \"{key}\" (did you mean \"{nearest}\"?)")
    } else {
        let all: Vec<String> = known.iter().map(|k| format!("\"{k}\"")).collect();
        format!("unknown field \"{key}\" (known: {})", all.join(", "))
    }
}

/// The Levenshtein distance between `a` and `b`: the fewest single-character
/// insertions, deletions and substitutions that turn one into the other.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // row[j]: the distance between the prefix of `a` seen so far and b[..j].
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

impl Config {
    /// Reads a configuration from JSON text (starting with `{`) or from the
    /// path of a JSON file.
    pub fn load(text_or_path: &str) -> Result<Config> {
        Config::parse(&read(text_or_path)?, Mode::Node)
    }

    /// Reads a configuration for the mock network, as [`Config::load`] does
    /// except that a member's `Address` may be left out and is never
    /// resolved (nor is `Listen`): every member's `addr` and `listen` are
    /// `0.0.0.0:0`. Nothing touches the network or DNS.
    pub fn load_for_mock(text_or_path: &str) -> Result<Config> {
        Config::parse(&read(text_or_path)?, Mode::Mock)
    }

    /// Parses and validates JSON text.
    pub fn from_json(text: &str) -> Result<Config> {
        Config::parse(text, Mode::Node)
    }

    fn parse(text: &str, mode: Mode) -> Result<Config> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            Error::config(match e.classify() {
                serde_json::error::Category::Data => format!("invalid config: {e}"),
                _ => format!("config is not valid JSON: {e}"),
            })
        })?;
        let (list, raw_peers) = match (raw.peers, raw.servers) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "config has both \"Peers\" and \"Servers\"; give one",
                ))
            }
            (Some(p), None) => ("Peers", p),
            (None, Some(p)) => ("Servers", p),
            (None, None) => ("Peers", Vec::new()),
        };
        let mut peers: Vec<Peer> = Vec::with_capacity(raw_peers.len());
        for (i, rp) in raw_peers.into_iter().enumerate() {
            let id = rp
                .id
                .ok_or_else(|| Error::config(format!("{list}[{i}]: missing \"Id\"")))?;
            if id == BROADCAST {
                return Err(Error::config(format!(
                    "{list}[{i}]: \"Id\" {id} is reserved for BROADCAST"
                )));
            }
            if mode == Mode::Mock {
                if peers.iter().any(|p| p.id == id) {
                    return Err(Error::config(format!("{list}[{i}]: duplicate \"Id\" {id}")));
                }
                peers.push(Peer {
                    id,
                    address: rp.address.unwrap_or_default(),
                    addr: MOCK_ADDR,
                    listen: MOCK_ADDR,
                });
                continue;
            }
            let address = rp
                .address
                .ok_or_else(|| Error::config(format!("{list}[{i}]: missing \"Address\"")))?;
            let addr = resolve(&address)
                .map_err(|e| Error::config(format!("{list}[{i}] (Id {id}): \"Address\" {e}")))?;
            let listen = match rp.listen {
                Some(l) => resolve(&l)
                    .map_err(|e| Error::config(format!("{list}[{i}] (Id {id}): \"Listen\" {e}")))?,
                None => addr,
            };
            if let Some(p) = peers.iter().find(|p| p.id == id) {
                return Err(Error::config(format!(
                    "{list}[{i}]: duplicate \"Id\" {id} (also used by address {:?})",
                    p.address
                )));
            }
            if let Some(p) = peers.iter().find(|p| p.addr == addr) {
                return Err(Error::config(format!(
                    "{list}[{i}] (Id {id}): duplicate \"Address\" {address:?} (same as Id {})",
                    p.id
                )));
            }
            peers.push(Peer {
                id,
                address,
                addr,
                listen,
            });
        }
        let secret = secret(raw.secret, raw.secret_file, raw.secret_env)?;
        Ok(Config {
            secret,
            peers,
            inbox_size: positive("InboxSize", raw.inbox_size, DEFAULT_QUEUE_SIZE as i64)? as usize,
            outbox_size: positive("OutboxSize", raw.outbox_size, DEFAULT_QUEUE_SIZE as i64)?
                as usize,
            max_message_size: positive(
                "MaxMessageSize",
                raw.max_message_size,
                DEFAULT_MAX_MESSAGE_SIZE as i64,
            )
            .and_then(|n| {
                if n > u32::MAX as i64 - 64 {
                    Err(Error::config("\"MaxMessageSize\" must be below 4 GiB"))
                } else {
                    Ok(n)
                }
            })? as usize,
            close_linger: millis(
                "CloseLingerMs",
                raw.close_linger_ms,
                DEFAULT_CLOSE_LINGER_MS,
            )?,
            reconnect_min: millis(
                "ReconnectMinMs",
                raw.reconnect_min_ms,
                DEFAULT_RECONNECT_MIN_MS,
            )?,
            reconnect_max: millis(
                "ReconnectMaxMs",
                raw.reconnect_max_ms,
                DEFAULT_RECONNECT_MAX_MS,
            )?,
            peer_timeout: millis(
                "PeerTimeoutMs",
                raw.peer_timeout_ms,
                DEFAULT_PEER_TIMEOUT_MS,
            )?
            .max(Duration::from_millis(100)),
        })
    }

    /// The entry of the given id, if it is a member.
    pub fn peer(&self, id: i64) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// Refuses a payload larger than `MaxMessageSize`.
    pub fn check_size(&self, len: usize) -> Result<()> {
        check_size(len, self.max_message_size)
    }

    /// Every member's id, in config order.
    pub fn ids(&self) -> Vec<i64> {
        self.peers.iter().map(|p| p.id).collect()
    }
}

/// JSON text as it is (it starts with `{`), or the contents of the file it names.
fn read(text_or_path: &str) -> Result<std::borrow::Cow<'_, str>> {
    if text_or_path.trim_start().starts_with('{') {
        return Ok(text_or_path.into());
    }
    std::fs::read_to_string(text_or_path)
        .map(Into::into)
        .map_err(|e| Error::config(format!("cannot read config file {text_or_path:?}: {e}")))
}

/// The shared secret from whichever one of `Secret` (the text itself),
/// `SecretFile` (a file's contents, one trailing line break dropped) or
/// `SecretEnv` (an environment variable's value) is set. Errors name the
/// setting, the path or the variable, never the secret.
fn secret(
    text: Option<String>,
    file: Option<String>,
    env: Option<String>,
) -> Result<Option<Secret>> {
    let (key, bytes) = match (text, file, env) {
        (None, None, None) => return Ok(None),
        (Some(s), None, None) => ("Secret", s.into_bytes()),
        (None, Some(path), None) => {
            let mut b = std::fs::read(&path).map_err(|e| {
                Error::config(format!("\"SecretFile\" {path:?} cannot be read: {e}"))
            })?;
            if b.ends_with(b"\n") {
                b.pop();
                if b.ends_with(b"\r") {
                    b.pop();
                }
            }
            ("SecretFile", b)
        }
        (None, None, Some(var)) => {
            let v = std::env::var_os(&var).ok_or_else(|| {
                Error::config(format!(
                    "\"SecretEnv\" names the environment variable {var:?}, which is not set"
                ))
            })?;
            ("SecretEnv", std::os::unix::ffi::OsStringExt::into_vec(v))
        }
        _ => {
            return Err(Error::config(
                "give at most one of \"Secret\", \"SecretFile\" and \"SecretEnv\"",
            ))
        }
    };
    if bytes.is_empty() {
        return Err(Error::config(format!("the secret of \"{key}\" is empty")));
    }
    Ok(Some(Secret::new(bytes)))
}

fn positive(field: &str, value: Option<i64>, default: i64) -> Result<i64> {
    match value {
        None => Ok(default),
        Some(n) if n >= 1 => Ok(n),
        Some(n) => Err(Error::config(format!(
            "\"{field}\" must be at least 1, got {n}"
        ))),
    }
}

fn millis(field: &str, value: Option<i64>, default: u64) -> Result<Duration> {
    match value {
        None => Ok(Duration::from_millis(default)),
        Some(n) if n >= 0 => Ok(Duration::from_millis(n as u64)),
        Some(n) => Err(Error::config(format!(
            "\"{field}\" must not be negative, got {n}"
        ))),
    }
}

/// Resolves `host:port` (an optional `tcp://` prefix is accepted), preferring
/// IPv4 so that `localhost` means 127.0.0.1 on every machine.
fn resolve(address: &str) -> std::result::Result<SocketAddr, String> {
    let a = address.strip_prefix("tcp://").unwrap_or(address);
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("{address:?} does not parse: expected host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{address:?} does not parse: bad port {port:?}"))?;
    if port == 0 {
        return Err(format!("{address:?}: port 0 is not a fixed address"));
    }
    if host.is_empty() {
        return Err(format!("{address:?} does not parse: empty host"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{address:?} does not resolve: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{address:?} resolves to no address"))
}

/// Refuses a payload of `len` bytes when `MaxMessageSize` is `max`.
pub(crate) fn check_size(len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::new(
            crate::Status::TooLarge,
            format!("payload of {len} bytes exceeds MaxMessageSize {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_servers_alias() {
        let c = Config::from_json(r#"{"Servers":[{"Id":1,"Address":"localhost:7001"}]}"#).unwrap();
        assert_eq!(c.ids(), vec![1]);
        assert_eq!(c.inbox_size, DEFAULT_QUEUE_SIZE);
        assert_eq!(c.peers[0].addr, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(c.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn tcp_prefix_and_listen() {
        let c = Config::from_json(
            r#"{"Peers":[{"Id":1,"Address":"tcp://127.0.0.1:7001","Listen":"0.0.0.0:7001"}]}"#,
        )
        .unwrap();
        assert_eq!(c.peers[0].listen, "0.0.0.0:7001".parse().unwrap());
    }

    fn err(json: &str) -> String {
        let e = Config::from_json(json).unwrap_err();
        assert_eq!(e.status, crate::Status::Config);
        e.message
    }

    #[test]
    fn bad_configs_name_the_problem() {
        assert!(err(
            r#"{"Peers":[{"Id":1,"Address":"localhost:1"},{"Id":1,"Address":"localhost:2"}]}"#
        )
        .contains("duplicate \"Id\" 1"));
        assert!(err(
            r#"{"Peers":[{"Id":1,"Address":"localhost:1"},{"Id":2,"Address":"127.0.0.1:1"}]}"#
        )
        .contains("duplicate \"Address\""));
        assert!(err(r#"{"Peers":[{"Id":1,"Address":"nocolon"}]}"#).contains("does not parse"));
        assert!(err(r#"{"Peers":[{"Id":1,"Address":"localhost:99999"}]}"#).contains("bad port"));
        assert!(err(r#"{"Peers":[{"Address":"localhost:1"}]}"#).contains("missing \"Id\""));
        assert!(err(r#"{"Peers":[{"Id":-1,"Address":"localhost:1"}]}"#).contains("BROADCAST"));
        assert!(err(r#"{"InboxSize":0}"#).contains("InboxSize"));
        assert!(err("{\n  \"Peers\": [,\n}").contains("line 2 column"));
        let e = Config::load("/nonexistent/cluster.json").unwrap_err();
        assert!(e.message.contains("cannot read config file"));
    }

    #[test]
    fn unknown_fields_name_the_nearest_known_one() {
        let top = err(r#"{"Peers":[{"Id":1,"Address":"localhost:7001"}],"InboxSise":5}"#);
        assert!(
            top.contains(r#"unknown field "InboxSise" (did you mean "InboxSize"?)"#),
            "{top}"
        );
        assert!(top.contains("line 1 column"), "{top}");
        let peer = err(r#"{"Peers":[{"Id":1,"Address":"localhost:7001"},{"Id":2,"Adress":"x"}]}"#);
        assert!(
            peer.contains(r#"Peers[1]: unknown field "Adress" (did you mean "Address"?)"#),
            "{peer}"
        );
        let servers = err(r#"{"Servers":[{"Id":1,"address":"localhost:7001"}]}"#);
        assert!(
            servers.contains(r#"Servers[0]: unknown field "address" (did you mean "Address"?)"#),
            "{servers}"
        );
        let far = err(r#"{"Zzzzzzzzzz":1}"#);
        assert!(
            far.contains(r#"unknown field "Zzzzzzzzzz" (known: "Peers","#),
            "{far}"
        );
        assert!(err(r#"{"Listen":"0.0.0.0:1"}"#).contains("\"Listen\" is a member's setting"));
        assert!(
            err(r#"{"Peers":[{"Id":1,"Address":"localhost:1","InboxSize":5}]}"#)
                .contains("Peers[0]: field \"InboxSize\" is a top-level setting")
        );
        assert!(err(r#"{"InboxSize":5,"InboxSize":6}"#).contains("duplicate field \"InboxSize\""));
        // Every unknown-field message fits the C ABI's 256-byte error buffer.
        assert!(far.len() < 256, "{} bytes: {far}", far.len());
    }

    #[test]
    fn every_documented_setting_is_accepted() {
        let c = Config::from_json(
            r#"{"Peers":[{"Id":1,"Address":"localhost:7001","Listen":"127.0.0.1:7001"}],
                "InboxSize":5,"OutboxSize":6,"MaxMessageSize":7,"CloseLingerMs":8,
                "ReconnectMinMs":9,"ReconnectMaxMs":10,"Secret":"s"}"#,
        )
        .unwrap();
        assert_eq!((c.inbox_size, c.outbox_size, c.max_message_size), (5, 6, 7));
        assert_eq!(c.close_linger, Duration::from_millis(8));
        assert_eq!(c.reconnect_max, Duration::from_millis(10));
        assert_eq!(c.secret.as_deref(), Some(&b"s"[..]));
        // What Go's json.Marshal writes for a Config with no peers.
        let go = Config::from_json(r#"{"Peers":null,"InboxSize":1,"OutboxSize":2}"#).unwrap();
        assert!(go.peers.is_empty());
        // The README's example.
        let readme = r#"{ "Peers": [ {"Id": 100, "Address": "localhost:7070"},
                                     {"Id": 200, "Address": "localhost:8080"},
                                     {"Id": 300, "Address": "localhost:9090"} ],
                          "InboxSize": 1000,
                          "OutboxSize": 1000 }"#;
        assert_eq!(
            Config::from_json(readme).unwrap().ids(),
            vec![100, 200, 300]
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        assert!(
            err(r#"{"InboxSize":"5"}"#).contains("expected \"InboxSize\" to be a 64-bit integer")
        );
        assert!(err(r#"{"Secret":5}"#).contains("expected \"Secret\" to be a string"));
        assert!(err(r#"{"Peers":{}}"#).contains("expected \"Peers\" to be a list"));
        assert!(err(r#"{"Peers":[{"Id":1,"Address":7}]}"#)
            .contains("expected Peers[0] \"Address\" to be a string at line 1"));
    }

    #[test]
    fn the_secret_comes_from_exactly_one_place_and_is_never_shown() {
        let peers = r#""Peers":[{"Id":1,"Address":"localhost:7001"}]"#;
        let with = |kv: &str| format!("{{{peers},{kv}}}");
        let dir = std::env::temp_dir().join(format!("cluster-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-a-file\r\n").unwrap();
        let c = Config::from_json(&with(&format!(r#""SecretFile":{:?}"#, file))).unwrap();
        assert_eq!(c.secret.as_deref(), Some(&b"from-a-file"[..]));
        // The variable is this test's own: no other test reads or sets it.
        std::env::set_var("CLUSTER_TEST_SECRET_ENV", "from-the-env");
        let c = Config::from_json(&with(r#""SecretEnv":"CLUSTER_TEST_SECRET_ENV""#)).unwrap();
        assert_eq!(c.secret.as_deref(), Some(&b"from-the-env"[..]));
        assert!(!format!("{c:?}").contains("from-the-env"), "Debug hides it");
        let both = err(&with(
            r#""Secret":"hunter2","SecretEnv":"CLUSTER_TEST_SECRET_ENV""#,
        ));
        assert!(both.contains("at most one of \"Secret\""), "{both}");
        assert!(!both.contains("hunter2") && !both.contains("from-the-env"));
        let unset = err(&with(r#""SecretEnv":"CLUSTER_TEST_NO_SUCH_VARIABLE""#));
        assert!(unset.contains("CLUSTER_TEST_NO_SUCH_VARIABLE") && unset.contains("SecretEnv"));
        let missing = err(&with(r#""SecretFile":"/nonexistent/cluster-secret""#));
        assert!(missing.contains("\"SecretFile\" \"/nonexistent/cluster-secret\""));
        std::fs::write(&file, "\n").unwrap();
        let empty = err(&with(&format!(r#""SecretFile":{:?}"#, file)));
        assert!(empty.contains("\"SecretFile\" is empty"), "{empty}");
        assert!(err(&with(r#""Secret":"""#)).contains("\"Secret\" is empty"));
        assert!(err(&with(r#""SecretFiel":"x""#)).contains("did you mean \"SecretFile\""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("inboxsise", "inboxsize"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("ünï", "uni"), 2);
    }

    #[test]
    fn a_mock_config_needs_no_address_and_resolves_none() {
        // `.invalid` never resolves (RFC 6761): a lookup would fail the load.
        let c = Config::load_for_mock(
            r#"{"Peers":[{"Id":1},{"Id":2,"Address":"no-such-host.invalid:1"},
                         {"Id":3,"Address":"no-such-host.invalid:1","Listen":"nowhere"}],
                "InboxSize":5}"#,
        )
        .unwrap();
        assert_eq!(c.ids(), vec![1, 2, 3]);
        assert_eq!(c.inbox_size, 5);
        assert!(c
            .peers
            .iter()
            .all(|p| p.addr == MOCK_ADDR && p.listen == MOCK_ADDR));
        let mock_err = |json: &str| Config::load_for_mock(json).unwrap_err().message;
        assert!(mock_err(r#"{"Peers":[{"Id":1},{"Id":1}]}"#).contains("duplicate \"Id\" 1"));
        assert!(mock_err(r#"{"Peers":[{"Address":"localhost:1"}]}"#).contains("missing \"Id\""));
        assert!(mock_err(r#"{"Peers":[{"Id":1,"Adress":"x"}]}"#).contains("did you mean"));
        assert!(mock_err(r#"{"InboxSize":0}"#).contains("InboxSize"));
        // A real node still needs an address.
        assert!(err(r#"{"Peers":[{"Id":1}]}"#).contains("missing \"Address\""));
    }
}
