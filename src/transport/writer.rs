//! One thread per peer: connects, handshakes, and writes the peer's queue in
//! batches (one flush when the queue runs dry), reconnecting with capped,
//! jittered backoff.

use super::acks::Acks;
use super::{handshake, Shared};
use crate::config::Peer;
use crate::envelope::{Envelope, Header};
use crate::stats::PeerStats;
use crossbeam_channel::{select, Receiver, Sender};
use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a TCP connect to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Failed connection attempts in a row after which a peer counts as down (so
/// a cluster whose members start a few milliseconds apart loses nothing).
const DOWN_AFTER: u32 = 3;
/// How often an idle writer with unacknowledged frames looks for acks.
const ACK_POLL: Duration = Duration::from_millis(20);
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
        let token = self.shared.sockets.add(&s, false)?;
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
        let mut acks = Acks::default();
        loop {
            // While frames await their ack, wake now and then to take the
            // acks in (and notice a peer that died); otherwise sleep.
            let patience = if acks.unacked() > 0 {
                ACK_POLL
            } else {
                Duration::from_secs(3600)
            };
            let first = match pending.take() {
                Some(env) => env,
                None => select! {
                    recv(self.rx) -> r => match r {
                        Ok(env) => env,
                        Err(_) => return self.ended(stream, acks, None, true),
                    },
                    recv(shutdown) -> _ => return self.ended(stream, acks, None, true),
                    default(patience) => {
                        let alive = acks.poll(stream);
                        self.stats.acked.add(acks.fresh());
                        if !alive {
                            return self.ended(stream, acks, None, false);
                        }
                        continue;
                    }
                },
            };
            // Take in the acks; a peer that closed while we were idle is
            // noticed before we write into a dead connection.
            let alive = acks.poll(stream);
            self.stats.acked.add(acks.fresh());
            if !alive {
                return self.ended(stream, acks, Some(first), false);
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
            ok = ok && out.flush().is_ok();
            acks.written += n;
            self.stats.written.add(n);
            self.stats.written_bytes.add(bytes);
            if !ok {
                return self.ended(stream, acks, None, false);
            }
        }
    }

    /// Settles the accounts of a connection that ends: what the peer
    /// acknowledged is delivered; on a break, the rest was lost and counted.
    fn ended(
        &self,
        stream: &TcpStream,
        mut acks: Acks,
        env: Option<Envelope>,
        shutdown: bool,
    ) -> Ended {
        acks.poll(stream);
        self.stats.acked.add(acks.fresh());
        if shutdown {
            return Ended::Shutdown;
        }
        let lost = acks.unacked();
        self.stats.dropped.conn_lost.add(lost);
        self.shared.stats.dropped.conn_lost.add(lost);
        Ended::Broken(env)
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
