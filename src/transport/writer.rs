//! One thread per peer: connects, handshakes, and writes the peer's queue a
//! whole batch at a time, reconnecting with capped, jittered backoff; and
//! the direct writes that let a sending thread write into the connection
//! itself (a reply, or a run of a batch) when the writer is not writing.

use super::acks::Acks;
use super::batch::Batch;
use super::handshake;
use super::outq::{Outq, Wait};
use super::shared::Shared;
use super::sockets::{self, Liveness};
use crate::config::Peer;
use crate::envelope::Envelope;
use crate::stats::PeerStats;
use crate::sync::Timeout;
use crate::wire::{Header, Opener, RecordError, Sealer, ACK_LEN, HEADER_LEN};
use crossbeam_channel::Sender;
use std::io::IoSlice;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest wait for a TCP connect to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Failed connection attempts in a row after which a peer counts as down (so
/// a cluster whose members start a few milliseconds apart loses nothing).
const DOWN_AFTER: u32 = 3;
/// How often a writer in reply mode takes in the acks of direct writes.
const ACK_POLL: Duration = Duration::from_millis(20);

pub(crate) struct Writer {
    pub shared: Arc<Shared>,
    pub peer: Peer,
    pub queue: Arc<Outq>,
    pub stats: Arc<PeerStats>,
    /// The connection as senders see it, for direct writes.
    pub direct: Arc<Direct>,
    /// Dropped when the thread ends, which tells `close` the flush is over.
    pub _done: Sender<()>,
}

enum Ended {
    /// The node is closing.
    Shutdown,
    /// The connection broke.
    Broken,
}

impl Writer {
    pub fn run(self) {
        let cfg = &self.shared.config;
        let mut backoff = cfg.reconnect_min;
        let mut failures = 0u32;
        let mut rng = Jitter::new(self.shared.id, self.peer.id);
        let mut connections = 0u64;
        // Frames taken from the queue but not written yet.
        let mut pending = Batch::default();
        while !self.shared.shutdown.is_fired() {
            let (stream, token, keys) = match self.connect() {
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
            // `pump` closes the connection to direct writes as it ends; its
            // ack accounts stay for the linger (a new connection starts them
            // afresh).
            let ended = self.pump(&stream, keys, &mut pending);
            self.stats.connected.set(false);
            match ended {
                Ended::Shutdown => {
                    self.linger(&stream, &mut pending);
                    self.shared.sockets.remove(token);
                    break;
                }
                Ended::Broken => self.shared.sockets.remove(token),
            }
            // An ack that failed to verify (or was cut off) ended it.
            match self.direct.lock().acks.failed.take() {
                Some(RecordError::Forged) => self.shared.stats.auth_failed.inc(),
                Some(_) => self.shared.stats.bad_frames.inc(),
                None => {}
            }
        }
        // Closed first (`close` closes every queue only after the shutdown
        // this writer saw): a send racing with the end is refused, not
        // queued after the count below and never written nor counted.
        self.queue.close();
        let left = self.queue.clear() + pending.frames();
        self.stats.dropped.closed.add(left);
        self.shared.stats.dropped.closed.add(left);
    }

    /// Connects and handshakes; `None` if the peer is not there or refuses.
    /// The socket is registered before the handshake so `close` can cut a
    /// handshake that stalls. With a secret, the connection's keys come too.
    fn connect(&self) -> Option<(Arc<TcpStream>, u64, Option<handshake::Keys>)> {
        let s = TcpStream::connect_timeout(&self.peer.addr, CONNECT_TIMEOUT).ok()?;
        super::sockets::tune(&s, self.shared.config.peer_timeout);
        let s = Arc::new(s);
        let token = self.shared.sockets.add(&s, false)?;
        match handshake::dial(&s, &self.shared.config, self.shared.id, self.peer.id) {
            Some(keys) => Some((s, token, keys)),
            None => {
                self.shared.sockets.remove(token);
                None
            }
        }
    }

    /// Writes the queue into `stream` until it breaks or the node closes;
    /// `pending` holds what was taken but not written when it breaks.
    ///
    /// Stream mode (the default): senders write no single frame themselves,
    /// only runs of a batch ([`Direct::try_write_run`]). Reply mode, asked
    /// for by a sender answering what it received, opens the connection to
    /// direct writes of single frames too. The writer takes frames only
    /// under the direct-write lock, so a sender that finds the queue empty
    /// under the lock (or takes what it holds first) writes its frames
    /// without overtaking any. A batch of more than one frame means a
    /// stream again. The connection's ack accounts live under the same
    /// lock, so frames written directly are accounted for like the writer's
    /// own.
    fn pump(
        &self,
        stream: &Arc<TcpStream>,
        keys: Option<handshake::Keys>,
        pending: &mut Batch,
    ) -> Ended {
        let mut reply_mode = false;
        let mut live = Liveness::default();
        let check_every = sockets::check_every(self.shared.config.peer_timeout);
        *self.direct.lock() = DirectState {
            // Senders may write into it once the writer holds nothing of an
            // older connection.
            stream: pending.is_empty().then(|| stream.clone()),
            seal: keys.as_ref().map(|k| Sealer::new(&k.frames)),
            acks: Acks::new(keys.as_ref().map(|k| Opener::new(&k.acks, ACK_LEN))),
            ..DirectState::default()
        };
        loop {
            // In reply mode senders write without waking the writer, so it
            // wakes now and then to take their acks in (not at each ack: a
            // conversation would wake it every round trip). Otherwise it
            // also wakes when the connection has news: an ack, an end, an
            // error. While frames await their ack it checks the peer's
            // liveness every `check_every`; idle and all acknowledged, it
            // sleeps until news comes (the kernel's keepalive, tuned to the
            // peer timeout, fails the socket of a peer that stopped
            // answering).
            let (patience, conn) = if reply_mode {
                (Some(ACK_POLL), None)
            } else if self.direct.lock().acks.unacked() > 0 {
                (Some(check_every), Some(&**stream))
            } else {
                (None, Some(&**stream))
            };
            let idle = pending.is_empty()
                && match self.queue.wait(patience, conn) {
                    Wait::Closed => return self.ended(self.direct.lock(), stream, true),
                    Wait::Idle => true,
                    Wait::Ready => false,
                };
            let mut direct = self.direct.lock();
            // Take in the acks; a peer that closed or went silent while we
            // were idle is noticed before we write into a dead connection.
            let alive = direct.acks.poll(stream) && self.check(stream, &mut live);
            if direct.acks.silent {
                self.stats.down.set(true);
            }
            self.stats.acked.add(direct.acks.fresh());
            if idle {
                if !alive {
                    return self.ended(direct, stream, false);
                }
                if direct.acks.unacked() == 0 {
                    // Quiet and all acknowledged: back to sleeping soundly.
                    reply_mode = false;
                    direct.open = false;
                }
                continue;
            }
            if pending.is_empty() && !self.queue.take(pending) {
                continue;
            }
            if !alive {
                return self.ended(direct, stream, false);
            }
            let n = pending.frames();
            let ok = direct.write(pending, stream, &self.stats, || {
                self.stalled(stream, &mut live, None)
            });
            self.queue.written();
            if direct.stream.is_none() {
                direct.stream = Some(stream.clone());
            }
            if !ok {
                return self.ended(direct, stream, false);
            }
            let wanted = self.direct.wanted.swap(false, Ordering::Relaxed);
            reply_mode = n == 1 && (reply_mode || wanted);
            direct.open = reply_mode;
        }
    }

    /// Whether the peer is still there (see [`Liveness`]); marks it down
    /// when it is not.
    fn check(&self, stream: &TcpStream, live: &mut Liveness) -> bool {
        alive(stream, live, self.shared.config.peer_timeout, &self.stats)
    }

    /// [`stalled`] on this writer's connection.
    fn stalled(
        &self,
        stream: &TcpStream,
        live: &mut Liveness,
        deadline: Option<Instant>,
    ) -> std::io::Result<()> {
        stalled(
            stream,
            live,
            self.shared.config.peer_timeout,
            &self.stats,
            deadline,
        )
    }

    /// Settles the accounts of a connection that ends: what the peer
    /// acknowledged is delivered; on a break, the rest was lost and counted.
    /// A break that our own close caused (it cuts the sockets when the
    /// linger ends) is a close: the rest counts as `closed`.
    /// No sender writes into the connection from here on (`direct`, the
    /// lock held since the writer judged it over, is dropped only then).
    fn ended(
        &self,
        mut direct: MutexGuard<'_, DirectState>,
        stream: &TcpStream,
        shutdown: bool,
    ) -> Ended {
        direct.stream = None;
        direct.open = false;
        direct.acks.poll(stream);
        self.stats.acked.add(direct.acks.fresh());
        if shutdown || self.shared.shutdown.is_fired() {
            return Ended::Shutdown;
        }
        let lost = direct.acks.unacked();
        self.stats.dropped.conn_lost.add(lost);
        self.shared.stats.dropped.conn_lost.add(lost);
        Ended::Broken
    }

    /// On close: writes what is queued within the linger, then says goodbye.
    fn linger(&self, stream: &TcpStream, pending: &mut Batch) {
        let deadline = Instant::now() + self.shared.config.close_linger;
        let mut live = Liveness::default();
        while !pending.is_empty() || self.queue.take(pending) {
            let k = pending.frames();
            if Instant::now() >= deadline {
                pending.clear();
                self.queue.written();
                self.stats.dropped.closed.add(k);
                self.shared.stats.dropped.closed.add(k);
                break;
            }
            // Part of a batch that fails may have arrived: the whole batch
            // counts as written, and what is not acknowledged as dropped.
            let mut direct = self.direct.lock();
            let ok = direct.write(pending, stream, &self.stats, || {
                self.stalled(stream, &mut live, Some(deadline))
            });
            self.queue.written();
            drop(direct);
            if !ok {
                break;
            }
        }
        // Give the peer the rest of the linger to acknowledge; what it has
        // not acknowledged by then is counted as dropped at close.
        let mut direct = self.direct.lock();
        loop {
            let alive = direct.acks.poll(stream);
            self.stats.acked.add(direct.acks.fresh());
            let left = deadline.saturating_duration_since(Instant::now());
            if !alive || direct.acks.unacked() == 0 || left.is_zero() {
                break;
            }
            sockets::wait_for(stream, libc::POLLIN, left);
        }
        let unacked = direct.acks.unacked();
        self.stats.dropped.closed.add(unacked);
        self.shared.stats.dropped.closed.add(unacked);
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
    /// The connection senders may write into: the current one, once the
    /// writer holds no frames taken for an older one.
    stream: Option<Arc<TcpStream>>,
    /// Whether senders may write into it (the writer is in reply mode).
    open: bool,
    /// The connection's frames written and acknowledged.
    acks: Acks,
    /// Seals what is written, on a connection with a secret.
    seal: Option<Sealer>,
    /// A direct write's sealed record (kept for its capacity).
    record: Vec<u8>,
    /// A run written directly (kept for its capacity).
    run: Batch,
    /// When a sender last wrote or held a run (see `try_write_run`).
    last_run: Option<Instant>,
    /// The room the socket had at the last direct write (see
    /// [`sockets::room`]): runs are held up to what will fit in it.
    room_seen: usize,
}

impl DirectState {
    /// Writes `batch` into `stream` (sealed, with a secret), emptying it;
    /// false if the write failed. Its frames count as written from now on,
    /// in the connection's accounts (acknowledged later, or lost with the
    /// connection) and in `stats`.
    fn write(
        &mut self,
        batch: &mut Batch,
        stream: &TcpStream,
        stats: &PeerStats,
        stalled: impl FnMut() -> std::io::Result<()>,
    ) -> bool {
        let (n, bytes) = (batch.frames(), batch.payload_bytes());
        let ok = batch.write_to(stream, self.seal.as_mut(), stalled).is_ok();
        self.acks.written += n;
        stats.written.add(n);
        stats.written_bytes.add(bytes);
        ok
    }
}

/// Longest a direct write waits to finish a frame it has started.
const DIRECT_FINISH: Duration = Duration::from_secs(1);
/// A run that comes within this of the last one to the same peer is part
/// of a stream: it is held in the queue (see [`Outq::hold_small_run`]) until
/// the runs held make `STREAM_CHUNK` bytes, written then in one call, or
/// for `STREAM_HOLD` at most, when the writer writes them. One write of
/// 8 KiB a run of 256 small messages cost the sender and the reader more
/// than the messages did (batched 16 B, runs of 256: 34 M msgs/s; written
/// 32 KiB at a time: 44–47 M).
const STREAM_GAP: Duration = Duration::from_micros(20);
/// See `STREAM_GAP`.
const STREAM_CHUNK: usize = 32 << 10;
/// See `STREAM_GAP`: how long a run of a stream that stops waits, plus the
/// writer's wake-up and the timer slack of its sleep (50–150 µs in all).
const STREAM_HOLD: Duration = Duration::from_micros(50);

impl Direct {
    fn lock(&self) -> MutexGuard<'_, DirectState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `env` straight into the connection if the writer is idle and
    /// `queue` is empty; true if it did (the frame then counts as written,
    /// and as lost with the other unacknowledged ones if the connection
    /// breaks). Never blocks on a busy writer or a full socket; a frame it
    /// has started but cannot finish within `timeout` (a second at most)
    /// cuts the connection, so the send blocks no longer than it may.
    pub fn try_write(
        &self,
        queue: &Outq,
        env: &Envelope,
        stats: &PeerStats,
        timeout: Timeout,
    ) -> bool {
        let Ok(mut guard) = self.state.try_lock() else {
            return false;
        };
        let DirectState {
            stream,
            open,
            acks,
            seal,
            record,
            ..
        } = &mut *guard;
        let Some(stream) = stream.as_ref().filter(|_| *open) else {
            self.wanted.store(true, Ordering::Relaxed);
            return false;
        };
        if !queue.is_empty() {
            return false;
        }
        // A peer that closed while we were idle is noticed before we write
        // into a dead connection (the queued message wakes the writer).
        let alive = acks.poll(stream);
        stats.acked.add(acks.fresh());
        if !alive {
            return false;
        }
        let header = Header::encode(env);
        // With a secret: one record holding the frame, sent as it is.
        let (header, data): (&[u8], &[u8]) = match seal {
            Some(sealer) => {
                record.clear();
                let at = sealer.begin(record);
                record.extend_from_slice(&header);
                record.extend_from_slice(&env.data);
                sealer.finish(record, at);
                (record, &[])
            }
            None => (&header, &env.data),
        };
        let total = header.len() + data.len();
        let mut done = match send_from(stream, header, data, 0) {
            Ok(0) | Err(_) => {
                // Not a byte of the record went out: the writer seals the
                // frame again, under the same record number.
                if let Some(sealer) = seal {
                    sealer.unseal_last();
                }
                return false;
            }
            Ok(n) => n,
        };
        acks.written += 1;
        let deadline = Instant::now() + timeout.map_or(DIRECT_FINISH, |t| t.min(DIRECT_FINISH));
        while done < total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match send_from(stream, header, data, done) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sockets::wait_for(stream, libc::POLLOUT, left)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if done < total {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        true
    }

    /// Writes a run of small frames (`msgs`, each below
    /// [`BIG`](super::batch::BIG)) straight into the connection, after the
    /// frames `queue` holds, when the writer is not writing and the socket
    /// has room for them all (see [`sockets::room`]): a stream of batches
    /// goes from the sending thread into the socket with no hand-off to
    /// the writer. False, having done nothing, otherwise (and when there
    /// is no connection, or the writer still holds frames of a broken
    /// one). True: the frames count as written (and as lost with the other
    /// unacknowledged ones if the connection breaks). Should the socket
    /// fill all the same, it waits up to [`DIRECT_FINISH`] for room, then
    /// cuts the connection; so does a peer judged gone, or `close` once its
    /// linger ends.
    pub fn try_write_run(
        &self,
        queue: &Outq,
        msgs: &[crate::envelope::Outgoing<'_>],
        stats: &PeerStats,
        peer_timeout: Duration,
    ) -> bool {
        let Ok(mut guard) = self.state.try_lock() else {
            return false;
        };
        let st = &mut *guard;
        let Some(stream) = st.stream.clone() else {
            return false;
        };
        // The run, after what the queue holds, must fit in the room the
        // socket has now: a sender then never waits on a peer that reads
        // slowly while the queue has room for its messages.
        let own: usize = msgs.iter().map(|m| HEADER_LEN + m.data.len()).sum();
        let now = Instant::now();
        let streaming = st
            .last_run
            .is_some_and(|t| now.saturating_duration_since(t) < STREAM_GAP);
        st.last_run = Some(now);
        // Held up to what the socket will take with the next run (a chunk
        // it cannot take would go to the writer after all).
        let chunk = STREAM_CHUNK.min(st.room_seen.saturating_sub(own));
        if streaming && queue.hold_small_run(msgs, own, chunk, now + STREAM_HOLD) {
            return true;
        }
        st.room_seen = sockets::room(&stream);
        let Some(room) = st.room_seen.checked_sub(own) else {
            return false;
        };
        // What other senders queued goes first, taken as the writer takes
        // it. (The connection's acks, and its end, are the writer's to take
        // in: it wakes for them.)
        let mut run = std::mem::take(&mut st.run);
        let Some(queued) = queue.take_within(&mut run, room) else {
            st.run = run;
            return false;
        };
        let (before, before_bytes) = (run.frames(), run.payload_bytes());
        for m in msgs {
            run.push_small(m.msg_id, m.kind, m.data);
        }
        let (mine, my_bytes) = (run.frames() - before, run.payload_bytes() - before_bytes);
        // The socket had room, so a wait here is rare (the kernel's count
        // of its buffer moved); it is bounded as a reply's is, and a run
        // not finished by then cuts the connection.
        let deadline = Some(Instant::now() + DIRECT_FINISH);
        let mut live = Liveness::default();
        let all_acked = st.acks.unacked() == 0;
        let ok = st.write(&mut run, &stream, stats, || {
            stalled(&stream, &mut live, peer_timeout, stats, deadline)
        });
        st.run = run;
        if queued {
            queue.written();
        }
        if !ok {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        if all_acked {
            // The writer may sleep with no timer: it must now watch for
            // these frames' acks, and for a peer that stops answering.
            queue.nudge();
        }
        queue.count_sent(mine, my_bytes);
        true
    }
}

/// Whether the peer at the end of `stream` is still there (see
/// [`Liveness`]); marks it down when it is not.
fn alive(
    stream: &TcpStream,
    live: &mut Liveness,
    peer_timeout: Duration,
    stats: &PeerStats,
) -> bool {
    if live.check(stream, peer_timeout) {
        return true;
    }
    stats.down.set(true);
    false
}

/// Waits, while the socket is full, until it has room or `deadline`
/// passes; an error once the deadline passed or the peer is gone.
fn stalled(
    stream: &TcpStream,
    live: &mut Liveness,
    peer_timeout: Duration,
    stats: &PeerStats,
    deadline: Option<Instant>,
) -> std::io::Result<()> {
    let mut wait = sockets::check_every(peer_timeout);
    if let Some(d) = deadline {
        wait = wait.min(d.saturating_duration_since(Instant::now()));
        if wait.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
    }
    sockets::wait_for(stream, libc::POLLOUT, wait);
    match alive(stream, live, peer_timeout, stats) {
        true => Ok(()),
        false => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Sends `header` then `data` from byte `skip` on, in one system call that
/// never blocks.
fn send_from(
    stream: &TcpStream,
    header: &[u8],
    data: &[u8],
    skip: usize,
) -> std::io::Result<usize> {
    let (h, d) = if skip < header.len() {
        (&header[skip..], data)
    } else {
        (&header[..0], &data[skip - header.len()..])
    };
    sockets::send_now(stream, &[IoSlice::new(h), IoSlice::new(d)])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{KEY_LEN, RECORD_MAX};
    use std::io::Write;
    use std::net::TcpListener;

    #[test]
    fn a_direct_write_that_finds_the_socket_full_takes_its_record_back() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let _peer = l.accept().unwrap();
        // Fill the connection: the peer reads nothing.
        s.set_nonblocking(true).unwrap();
        let junk = [0u8; 1 << 16];
        while (&s).write(&junk).is_ok() {}
        let key = [1u8; KEY_LEN];
        let direct = Direct::default();
        *direct.lock() = DirectState {
            stream: Some(Arc::new(s)),
            open: true,
            seal: Some(Sealer::new(&key)),
            ..DirectState::default()
        };
        let env = Envelope::new(2, 1, 0, b"a reply");
        let written = direct.try_write(&Outq::new(10).unwrap(), &env, &PeerStats::new(2), None);
        assert!(!written, "the socket is full: the frame goes to the queue");
        // Nothing went out, so the record the writer seals next is number 0.
        let mut record = Vec::new();
        direct
            .lock()
            .seal
            .as_mut()
            .unwrap()
            .seal(b"queued", &mut record);
        let mut opener = Opener::new(&key, RECORD_MAX);
        assert!(matches!(opener.open(&mut record), Ok(Some(_))));
    }
}
