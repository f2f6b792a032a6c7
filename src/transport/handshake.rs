//! The handshake that opens every connection, on both sides.
//!
//! Without a secret: hello (magic, version, ids) → welcome (verdict, id).
//! With a shared secret, both sides prove they know it without sending it:
//! the caller sends a nonce, the listener answers with its own nonce and an
//! HMAC-SHA256 proof over both nonces and both ids, the caller checks it and
//! sends its own proof, and the listener's final welcome lets it in. Both
//! sides then derive the connection's two record keys (frames one way,
//! acknowledgements the other) from the secret and both fresh nonces with
//! HKDF-SHA256, so no two connections share a key.

use crate::config::Config;
use crate::wire::{
    decode_welcome, encode_welcome, Hello, Verdict, HELLO_AUTH, HELLO_LEN, KEY_LEN, NONCE_LEN,
    PROOF_LEN, WELCOME_LEN,
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The whole handshake must finish within this time, on either side.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the listener turned a caller away.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Garbage, a stall, or a verdict other than auth.
    Protocol,
    /// The caller failed to prove it knows the secret.
    Auth,
}

type Proof = [u8; PROOF_LEN];

/// The record keys of one connection with a secret: one per direction.
pub struct Keys {
    /// Seals what the caller writes (frames).
    pub frames: [u8; KEY_LEN],
    /// Seals what the listener writes (acknowledgements).
    pub acks: [u8; KEY_LEN],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

/// The keys of the connection from `from` to `to` whose handshake used the
/// caller's nonce `cn` and the listener's `sn`.
fn keys(secret: &[u8], cn: &[u8], sn: &[u8], from: i64, to: i64) -> Keys {
    let salt = [cn, sn].concat();
    let hk = Hkdf::<Sha256>::new(Some(&salt), secret);
    let mut k = Keys {
        frames: [0; KEY_LEN],
        acks: [0; KEY_LEN],
    };
    let ids = [from.to_le_bytes(), to.to_le_bytes()].concat();
    for (label, out) in [
        (&b"cluster v1 frames"[..], &mut k.frames),
        (b"cluster v1 acks", &mut k.acks),
    ] {
        hk.expand(&[label, &ids].concat(), out)
            .expect("32 bytes is a valid HKDF-SHA256 length");
    }
    k
}

fn proof(secret: &[u8], role: &[u8], a: &[u8], b: &[u8], from: i64, to: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    for part in [role, a, b, &from.to_le_bytes(), &to.to_le_bytes()] {
        mac.update(part);
    }
    mac
}

/// Fresh random bytes from the kernel; `None` if it has none to give (the
/// handshake then fails, and is tried again later).
fn nonce() -> Option<[u8; NONCE_LEN]> {
    let mut n = [0u8; NONCE_LEN];
    // SAFETY: getrandom(2) writes at most `n.len()` bytes into `n`.
    let got = unsafe { libc::getrandom(n.as_mut_ptr().cast(), n.len(), 0) };
    (got == NONCE_LEN as isize).then_some(n)
}

/// A socket whose reads and writes share one deadline, so a peer that
/// drips a byte now and then cannot stretch the handshake.
struct Timed<'a> {
    s: &'a TcpStream,
    end: Instant,
}

impl Timed<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        Ok(left)
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.s.set_read_timeout(Some(self.left()?))?;
        (&*self.s).read(buf)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.set_write_timeout(Some(self.left()?))?;
        (&*self.s).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` on `s` under one handshake deadline, then clears the timeouts.
fn timed<T>(s: &TcpStream, f: impl FnOnce(&mut Timed) -> T) -> Option<T> {
    let r = f(&mut Timed {
        s,
        end: Instant::now() + HANDSHAKE_TIMEOUT,
    });
    s.set_read_timeout(None).ok()?;
    s.set_write_timeout(None).ok()?;
    Some(r)
}

fn read<const N: usize>(s: &mut impl Read) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

fn write(s: &mut impl Write, parts: &[&[u8]]) -> Option<()> {
    let all: Vec<u8> = parts.concat();
    s.write_all(&all).ok()
}

/// The caller's side: `Some` once `to` has let us in, with the
/// connection's keys when there is a secret.
pub(crate) fn dial(s: &TcpStream, config: &Config, from: i64, to: i64) -> Option<Option<Keys>> {
    timed(s, |t| dial_on(t, config, from, to))?
}

/// The caller's side over any byte stream.
pub fn dial_on(
    s: &mut (impl Read + Write),
    config: &Config,
    from: i64,
    to: i64,
) -> Option<Option<Keys>> {
    let secret = config.secret.as_deref();
    let flags = if secret.is_some() { HELLO_AUTH } else { 0 };
    let hello = Hello { from, to, flags }.encode();
    let cn = nonce()?;
    match secret {
        Some(_) => write(s, &[&hello, &cn])?,
        None => write(s, &[&hello])?,
    }
    let (verdict, id) = decode_welcome(&read::<WELCOME_LEN>(s)?).ok()?;
    if id != to {
        return None;
    }
    match (verdict, secret) {
        (Verdict::Accepted, None) => {}
        (Verdict::Challenge, Some(secret)) => {
            let sn = read::<NONCE_LEN>(s)?;
            let theirs = read::<PROOF_LEN>(s)?;
            // A listener that does not know the secret is not our peer.
            proof(secret, b"cluster-listener", &cn, &sn, from, to)
                .verify_slice(&theirs)
                .ok()?;
            let ours: Proof = proof(secret, b"cluster-caller", &sn, &cn, from, to)
                .finalize()
                .into_bytes()
                .into();
            write(s, &[&ours])?;
            let (verdict, _) = decode_welcome(&read::<WELCOME_LEN>(s)?).ok()?;
            if verdict != Verdict::Accepted {
                return None;
            }
            return Some(Some(keys(secret, &cn, &sn, from, to)));
        }
        _ => return None,
    }
    Some(None)
}

/// What the listener's side of a handshake ends with: the caller's id and,
/// with a secret, the connection's keys.
pub type Answer = Result<(i64, Option<Keys>), Refusal>;

/// The listener's side: the caller's id once it is let in.
pub(crate) fn answer(s: &TcpStream, config: &Config, me: i64) -> Answer {
    timed(s, |t| answer_on(t, config, me)).unwrap_or(Err(Refusal::Protocol))
}

/// The listener's side over any byte stream (the fuzzer drives it directly).
pub fn answer_on(s: &mut (impl Read + Write), config: &Config, me: i64) -> Answer {
    answer_inner(s, config, me).unwrap_or(Err(Refusal::Protocol))
}

fn answer_inner(s: &mut (impl Read + Write), config: &Config, me: i64) -> Option<Answer> {
    let hello = Hello::decode(&read::<HELLO_LEN>(s)?).ok()?;
    let wants_auth = hello.flags & HELLO_AUTH != 0;
    let verdict = if hello.to != me {
        Verdict::WrongTarget
    } else if hello.from == me || config.peer(hello.from).is_none() {
        Verdict::UnknownSender
    } else if wants_auth != config.secret.is_some() {
        Verdict::AuthFailed
    } else if wants_auth {
        Verdict::Challenge
    } else {
        Verdict::Accepted
    };
    let refusal = if verdict == Verdict::AuthFailed {
        Refusal::Auth
    } else {
        Refusal::Protocol
    };
    match (verdict, config.secret.as_deref()) {
        (Verdict::Accepted, _) => write(s, &[&encode_welcome(verdict, me)])?,
        (Verdict::Challenge, Some(secret)) => {
            let cn = read::<NONCE_LEN>(s)?;
            let sn = nonce()?;
            let ours: Proof = proof(secret, b"cluster-listener", &cn, &sn, hello.from, me)
                .finalize()
                .into_bytes()
                .into();
            write(s, &[&encode_welcome(verdict, me), &sn, &ours])?;
            // A caller that walks away here refused our proof: a secret mismatch.
            let Some(theirs) = read::<PROOF_LEN>(s) else {
                return Some(Err(Refusal::Auth));
            };
            let ok = proof(secret, b"cluster-caller", &sn, &cn, hello.from, me)
                .verify_slice(&theirs)
                .is_ok();
            let last = if ok {
                Verdict::Accepted
            } else {
                Verdict::AuthFailed
            };
            write(s, &[&encode_welcome(last, me)])?;
            if !ok {
                return Some(Err(Refusal::Auth));
            }
            return Some(Ok((
                hello.from,
                Some(keys(secret, &cn, &sn, hello.from, me)),
            )));
        }
        _ => {
            write(s, &[&encode_welcome(verdict, me)])?;
            return Some(Err(refusal));
        }
    }
    Some(Ok((hello.from, None)))
}
