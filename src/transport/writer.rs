//! One thread per peer: connects, handshakes, and writes the peer's queue in
//! batches (one flush when the queue runs dry), reconnecting with capped,
//! jittered backoff.

use super::{handshake, Shared};
use crate::config::Peer;
use crate::envelope::{Envelope, Header};
use crate::stats::PeerStats;
use crossbeam_channel::{select, Receiver, Sender};
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a TCP connect to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Failed connection attempts in a row after which a peer counts as down (so
/// a cluster whose members start a few milliseconds apart loses nothing).
const DOWN_AFTER: u32 = 3;
/// Size of the write buffer; a batch flushes when it fills or the queue is dry.
const WRITE_BUFFER: usize = 256 << 10;

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub peer: Peer,
    pub rx: Receiver<Envelope>,
    pub stats: Arc<PeerStats>,
    /// Dropped when the thread ends, which tells `close` the flush is over.
    pub _done: Sender<()>,
}

enum Ended {
    /// The node is closing.
    Shutdown,
    /// The connection broke; the envelope, if any, was not written yet.
    Broken(Option<Envelope>),
}

impl Writer {
    pub fn run(self) {
        let cfg = &self.shared.config;
        let mut backoff = cfg.reconnect_min;
        let mut failures = 0u32;
        let mut rng = Jitter::new(self.shared.id, self.peer.id);
        let mut connections = 0u64;
        let mut pending: Option<Envelope> = None;
        while !self.shared.shutdown.is_fired() {
            let (stream, token) = match self.connect() {
                Some(c) => c,
                None => {
                    failures += 1;
                    if failures >= DOWN_AFTER {
                        self.stats.down.set(true);
                    }
                    if self.shared.shutdown.sleep(rng.around(backoff)) {
                        break;
                    }
                    backoff = (backoff * 2).min(cfg.reconnect_max);
                    continue;
                }
            };
            backoff = cfg.reconnect_min;
            failures = 0;
            if connections > 0 {
                self.stats.reconnects.inc();
            }
            connections += 1;
            self.stats.down.set(false);
            self.stats.connected.set(true);
            let ended = self.pump(&stream, pending.take());
            self.stats.connected.set(false);
            match ended {
                Ended::Shutdown => {
                    self.linger(&stream);
                    self.shared.sockets.remove(token);
                    break;
                }
                Ended::Broken(env) => {
                    self.shared.sockets.remove(token);
                    pending = env;
                }
            }
        }
        let left = self.rx.try_iter().count() as u64 + pending.is_some() as u64;
        self.stats.dropped.closed.add(left);
        self.shared.stats.dropped.closed.add(left);
    }

    /// Connects and handshakes; `None` if the peer is not there or refuses.
    /// The socket is registered before the handshake so `close` can cut a
    /// handshake that stalls.
    fn connect(&self) -> Option<(TcpStream, u64)> {
        let s = TcpStream::connect_timeout(&self.peer.addr, CONNECT_TIMEOUT).ok()?;
        let token = self.shared.sockets.add(&s)?;
        if handshake::dial(&s, &self.shared.config, self.shared.id, self.peer.id).is_some() {
            Some((s, token))
        } else {
            self.shared.sockets.remove(token);
            None
        }
    }

    /// Writes the queue into `stream` until it breaks or the node closes.
    fn pump(&self, stream: &TcpStream, mut pending: Option<Envelope>) -> Ended {
        let shutdown = self.shared.shutdown.waiter();
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, stream);
        loop {
            let first = match pending.take() {
                Some(env) => env,
                None => select! {
                    recv(self.rx) -> r => match r {
                        Ok(env) => env,
                        Err(_) => return Ended::Shutdown,
                    },
                    recv(shutdown) -> _ => return Ended::Shutdown,
                },
            };
            // A peer that closed while we were idle is noticed before we
            // write into a dead connection, so the message is not lost.
            if peer_hung_up(stream) {
                return Ended::Broken(Some(first));
            }
            let mut n = 1u64;
            let mut bytes = first.data.len() as u64;
            let mut ok = write_frame(&mut out, &first);
            while ok {
                match self.rx.try_recv() {
                    Ok(env) => {
                        n += 1;
                        bytes += env.data.len() as u64;
                        ok = write_frame(&mut out, &env);
                    }
                    Err(_) => break,
                }
            }
            if ok && out.flush().is_ok() {
                self.stats.written.add(n);
                self.stats.written_bytes.add(bytes);
            } else {
                self.stats.dropped.conn_lost.add(n);
                self.shared.stats.dropped.conn_lost.add(n);
                return Ended::Broken(None);
            }
        }
    }

    /// On close: writes what is queued within the linger, then says goodbye.
    fn linger(&self, stream: &TcpStream) {
        let deadline = Instant::now() + self.shared.config.close_linger;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, stream);
        let mut n = 0u64;
        let mut ok = true;
        while ok {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(env) = self.rx.try_recv() else { break };
            n += 1;
            ok = !left.is_zero()
                && stream.set_write_timeout(Some(left)).is_ok()
                && write_frame(&mut out, &env);
        }
        if ok && out.flush().is_ok() {
            self.stats.written.add(n);
        } else {
            self.stats.dropped.closed.add(n);
            self.shared.stats.dropped.closed.add(n);
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

fn write_frame(out: &mut impl Write, env: &Envelope) -> bool {
    out.write_all(&Header::encode(env)).is_ok() && out.write_all(&env.data).is_ok()
}

/// True if the peer closed its end (a zero-byte peek without blocking).
fn peer_hung_up(stream: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a one-byte peek into a local buffer on a socket we own.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
        || (n < 0 && {
            let e = std::io::Error::last_os_error().raw_os_error();
            e != Some(libc::EAGAIN) && e != Some(libc::EWOULDBLOCK) && e != Some(libc::EINTR)
        })
}

/// A tiny xorshift generator for backoff jitter; no cryptographic use.
struct Jitter(u64);

impl Jitter {
    fn new(a: i64, b: i64) -> Jitter {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter(t ^ (a as u64).rotate_left(17) ^ (b as u64).rotate_left(41) | 1)
    }

    /// A duration drawn uniformly from [d/2, d].
    fn around(&mut self, d: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let half = d / 2;
        let nanos = half.as_nanos() as u64;
        half + Duration::from_nanos(if nanos == 0 { 0 } else { self.0 % (nanos + 1) })
    }
}
