//! The cluster configuration: the original library's JSON, validated.

use crate::error::{Error, Result};
use serde::Deserialize;
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
    /// The address as written in the config (e.g. `localhost:7070`).
    pub address: String,
    /// The address others connect to.
    pub addr: SocketAddr,
    /// The address this member binds when it is the local node.
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
    /// A shared secret every member must prove it knows; `None` lets in any
    /// configured id.
    pub secret: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPeer {
    id: Option<i64>,
    address: Option<String>,
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
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
}

impl Config {
    /// Reads a configuration from JSON text (starting with `{`) or from the
    /// path of a JSON file.
    pub fn load(text_or_path: &str) -> Result<Config> {
        if text_or_path.trim_start().starts_with('{') {
            return Config::from_json(text_or_path);
        }
        let text = std::fs::read_to_string(text_or_path)
            .map_err(|e| Error::config(format!("cannot read config file {text_or_path:?}: {e}")))?;
        Config::from_json(&text)
    }

    /// Parses and validates JSON text.
    pub fn from_json(text: &str) -> Result<Config> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| Error::config(format!("config is not valid JSON: {e}")))?;
        let raw_peers = match (raw.peers, raw.servers) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "config has both \"Peers\" and \"Servers\"; give one",
                ))
            }
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => Vec::new(),
        };
        let mut peers: Vec<Peer> = Vec::with_capacity(raw_peers.len());
        for (i, rp) in raw_peers.into_iter().enumerate() {
            let id = rp
                .id
                .ok_or_else(|| Error::config(format!("Peers[{i}]: missing \"Id\"")))?;
            if id == BROADCAST {
                return Err(Error::config(format!(
                    "Peers[{i}]: \"Id\" {id} is reserved for BROADCAST"
                )));
            }
            let address = rp
                .address
                .ok_or_else(|| Error::config(format!("Peers[{i}]: missing \"Address\"")))?;
            let addr = resolve(&address)
                .map_err(|e| Error::config(format!("Peers[{i}] (Id {id}): \"Address\" {e}")))?;
            let listen = match rp.listen {
                Some(l) => resolve(&l)
                    .map_err(|e| Error::config(format!("Peers[{i}] (Id {id}): \"Listen\" {e}")))?,
                None => addr,
            };
            if let Some(p) = peers.iter().find(|p| p.id == id) {
                return Err(Error::config(format!(
                    "Peers[{i}]: duplicate \"Id\" {id} (also used by address {:?})",
                    p.address
                )));
            }
            if let Some(p) = peers.iter().find(|p| p.addr == addr) {
                return Err(Error::config(format!(
                    "Peers[{i}] (Id {id}): duplicate \"Address\" {address:?} (same as Id {})",
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
        let secret = match raw.secret {
            Some(s) if s.is_empty() => {
                return Err(Error::config("\"Secret\" must not be empty"));
            }
            s => s.map(String::into_bytes),
        };
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
        if len > self.max_message_size {
            return Err(Error::new(
                crate::Status::TooLarge,
                format!(
                    "payload of {len} bytes exceeds MaxMessageSize {}",
                    self.max_message_size
                ),
            ));
        }
        Ok(())
    }

    /// Every member's id, in config order.
    pub fn ids(&self) -> Vec<i64> {
        self.peers.iter().map(|p| p.id).collect()
    }
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
}
