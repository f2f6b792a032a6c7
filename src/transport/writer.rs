//! One thread per peer: connects, handshakes, and writes the peer's queue in
//! batches (one flush when the queue runs dry), reconnecting with capped,
//! jittered backoff.

use super::batch::Batch;
use super::{handshake, Shared};
use crate::config::Peer;
use crate::envelope::{Envelope, Header};
use crate::stats::PeerStats;
use crossbeam_channel::{select, Receiver, Select, Sender, TryRecvError};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// The connection as senders see it, for direct writes.
    pub direct: Arc<Direct>,
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
            *self.direct.lock() = DirectState::default();
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
    ///
    /// Stream mode (the default) takes messages as they come and senders
    /// never write themselves. Reply mode, asked for by a sender answering
    /// what it received, opens the connection to direct writes and takes
    /// messages from the queue only under the direct-write lock, so a sender
    /// that finds the queue empty under the lock writes its frame without
    /// overtaking any. A batch of more than one message means a stream again.
    fn pump(&self, stream: &TcpStream, mut pending: Option<Envelope>) -> Ended {
        let shutdown = self.shared.shutdown.waiter();
        let mut out = Batch::new(WRITE_BUFFER);
        let mut reply_mode = false;
        self.direct.lock().stream = stream.try_clone().ok();
        loop {
            if pending.is_none() && reply_mode {
                // Wait for a message without taking it.
                let mut sel = Select::new();
                sel.recv(&self.rx);
                sel.recv(shutdown);
                if sel.ready() == 1 || self.shared.shutdown.is_fired() {
                    return Ended::Shutdown;
                }
            } else if pending.is_none() {
                select! {
                    recv(self.rx) -> r => match r {
                        Ok(env) => pending = Some(env),
                        Err(_) => return Ended::Shutdown,
                    },
                    recv(shutdown) -> _ => return Ended::Shutdown,
                }
            }
            let mut direct = self.direct.lock();
            let first = match pending.take() {
                Some(env) => env,
                None => match self.rx.try_recv() {
                    Ok(env) => env,
                    Err(TryRecvError::Empty) => continue,
                    Err(TryRecvError::Disconnected) => return Ended::Shutdown,
                },
            };
            // A peer that closed while we were idle is noticed before we
            // write into a dead connection, so the message is not lost.
            if peer_hung_up(stream) {
                direct.open = false;
                return Ended::Broken(Some(first));
            }
            let mut n = 0u64;
            let mut next = Some(first);
            while next.is_some() {
                while let Some(env) = next.take() {
                    out.push(&env);
                    n += 1;
                    if !out.is_full() {
                        next = self.rx.try_recv().ok();
                    }
                }
                let (k, bytes) = (out.frames(), out.payload_bytes());
                if out.write_to(stream).is_err() {
                    self.stats.dropped.conn_lost.add(k);
                    self.shared.stats.dropped.conn_lost.add(k);
                    direct.open = false;
                    return Ended::Broken(None);
                }
                self.stats.written.add(k);
                self.stats.written_bytes.add(bytes);
                // After a full batch more may be waiting; a dry queue ends it.
                next = self.rx.try_recv().ok();
            }
            let wanted = self.direct.wanted.swap(false, Ordering::Relaxed);
            reply_mode = n == 1 && (reply_mode || wanted);
            direct.open = reply_mode;
        }
    }

    /// On close: writes what is queued within the linger, then says goodbye.
    fn linger(&self, stream: &TcpStream) {
        let deadline = Instant::now() + self.shared.config.close_linger;
        let mut out = Batch::new(WRITE_BUFFER);
        let mut ok = true;
        while ok {
            let env = self.rx.try_recv().ok();
            if let Some(env) = &env {
                out.push(env);
            }
            if env.is_none() || out.is_full() {
                let left = deadline.saturating_duration_since(Instant::now());
                let k = out.frames();
                ok = !left.is_zero()
                    && stream.set_write_timeout(Some(left)).is_ok()
                    && out.write_to(stream).is_ok();
                if ok {
                    self.stats.written.add(k);
                } else {
                    self.stats.dropped.closed.add(k);
                    self.shared.stats.dropped.closed.add(k);
                }
            }
            if env.is_none() {
                break;
            }
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}

/// The connection to one peer as sending threads see it. While the writer
/// is idle and the queue is empty, a sender may write its frame itself: one
/// thread hand-off and one wake-up fewer, which is what request/reply
/// traffic pays for. Streams keep going through the queue and the writer.
#[derive(Default)]
pub(crate) struct Direct {
    state: Mutex<DirectState>,
    /// Set by a sender that wanted to write directly but could not: asks
    /// the writer for reply mode.
    wanted: AtomicBool,
}

#[derive(Default)]
struct DirectState {
    /// The current connection, while there is one.
    stream: Option<TcpStream>,
    /// Whether senders may write into it (the writer is in reply mode).
    open: bool,
}

/// What became of a direct write.
pub(crate) enum DirectWrite {
    /// The frame is in the socket.
    Written,
    /// Not possible now (writer busy, queue not empty, socket full or
    /// broken): queue the message instead.
    Queue,
    /// Part of the frame was written and the rest could not be: the
    /// connection was cut (the writer reconnects) and the message is lost.
    Lost,
}

/// Longest a direct write waits to finish a frame it has started.
const DIRECT_FINISH: Duration = Duration::from_secs(1);

impl Direct {
    fn lock(&self) -> MutexGuard<'_, DirectState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `env` straight into the connection if the writer is idle and
    /// `queue` is empty; never blocks on a busy writer or a full socket.
    pub fn try_write(&self, queue: &Receiver<Envelope>, env: &Envelope) -> DirectWrite {
        let Ok(guard) = self.state.try_lock() else {
            return DirectWrite::Queue;
        };
        let Some(stream) = guard.stream.as_ref().filter(|_| guard.open) else {
            self.wanted.store(true, Ordering::Relaxed);
            return DirectWrite::Queue;
        };
        if !queue.is_empty() || peer_hung_up(stream) {
            return DirectWrite::Queue;
        }
        let header = Header::encode(env);
        let total = header.len() + env.data.len();
        let mut done = match send_parts(stream, &header, &env.data, 0, libc::MSG_DONTWAIT) {
            Some(0) | None => return DirectWrite::Queue,
            Some(n) => n,
        };
        let deadline = Instant::now() + DIRECT_FINISH;
        while done < total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
                break;
            }
            match send_parts(stream, &header, &env.data, done, 0) {
                Some(n) if n > 0 => done += n,
                _ => break,
            }
        }
        let _ = stream.set_write_timeout(None);
        if done < total {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return DirectWrite::Lost;
        }
        DirectWrite::Written
    }
}

/// Sends `header` then `data` from byte `skip` on, in one system call;
/// the bytes sent, or `None` on an error (EAGAIN included).
fn send_parts(
    stream: &TcpStream,
    header: &[u8],
    data: &[u8],
    skip: usize,
    flags: i32,
) -> Option<usize> {
    let (h, d) = if skip < header.len() {
        (&header[skip..], data)
    } else {
        (&header[..0], &data[skip - header.len()..])
    };
    let mut iov = [
        libc::iovec {
            iov_base: h.as_ptr() as *mut libc::c_void,
            iov_len: h.len(),
        },
        libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        },
    ];
    // SAFETY: a zeroed msghdr is valid; it points at the two iovecs above,
    // which point at live slices that the kernel only reads.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 2;
        libc::sendmsg(stream.as_raw_fd(), &msg, flags | libc::MSG_NOSIGNAL)
    };
    (n >= 0).then_some(n as usize)
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
