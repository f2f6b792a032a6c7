//! A peer's outbound queue: the sending threads encode their frames into one
//! batch, and the peer's writer swaps the whole batch out. A send costs a
//! lock nobody holds for long and a copy; the writer pays one lock a batch
//! however many frames it holds, and is woken only when it sleeps.
//!
//! The writer sleeps in `poll` on the queue's bell (an eventfd) and, when
//! asked, on its connection too: an idle writer then wakes for a frame, an
//! ack, or a peer that hung up or stopped answering keepalive probes, and
//! for nothing else.

use super::batch::Batch;
use crate::envelope::{Envelope, Outgoing};
use crate::readiness::Readiness;
use crate::stats::QueueCounts;
use crate::sync::{spin_until, PushError, Timeout, HANDOFF_SPIN};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the writer's wait for frames ended with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Frames are queued.
    Ready,
    /// None came within the patience, or the connection has news (bytes,
    /// an end, an error) for the writer to look at.
    Idle,
    /// The node is closing.
    Closed,
}

/// A bounded queue of encoded frames (the bound counts frames, queued and
/// being written from the queue; a run its sender writes into the
/// connection itself never waits in it, see `Direct::try_write_run`).
pub(crate) struct Outq {
    state: Mutex<State>,
    /// Rung when frames arrive while the writer sleeps, and at close.
    bell: Readiness,
    /// Signalled when the writer takes the frames while senders wait for room.
    room: Condvar,
    cap: u64,
    /// Whether the batch holds frames for the writer to take now (held
    /// frames do not count), set and cleared under the lock: the writer
    /// polls it without taking the lock the senders need.
    queued: AtomicBool,
}

#[derive(Default)]
struct State {
    batch: Batch,
    /// Frames the writer took and is still writing: they count against the
    /// bound, so a peer holds at most `cap` frames however slow its socket.
    writing: u64,
    /// The writer sleeps in [`Outq::wait`].
    writer_waits: bool,
    /// Set by [`Outq::nudge`]: the writer's wait ends as `Idle`.
    nudged: bool,
    /// Senders sleeping in [`Outq::push`] for room.
    senders_wait: usize,
    /// The node is closing: nobody sleeps any more.
    closed: bool,
    /// Messages (and their payload bytes) accepted for the peer, kept under
    /// the lock a send takes anyway rather than in shared atomics.
    sent: u64,
    sent_bytes: u64,
    /// The queued frames are held back from the writer until then: a
    /// sender that streams runs leaves them for its next run to write
    /// together (see [`Outq::hold_small_run`]).
    held_until: Option<Instant>,
}

impl State {
    /// How much longer the queued frames are held back from the writer:
    /// `None` if nothing is queued, or no hold is live.
    fn hold_left(&self, now: Instant) -> Option<Duration> {
        let t = self.held_until.filter(|_| !self.batch.is_empty())?;
        Some(t.saturating_duration_since(now)).filter(|left| !left.is_zero())
    }

    /// Appends a run of small frames to the batch; their payload bytes.
    fn append_small(&mut self, msgs: &[Outgoing<'_>]) -> u64 {
        let mut bytes = 0;
        for m in msgs {
            self.batch.push_small(m.msg_id, m.kind, m.data);
            bytes += m.data.len() as u64;
        }
        bytes
    }
}

impl Outq {
    /// A queue of at most `cap` frames; fails only if the system has no
    /// descriptor left for its bell.
    pub fn new(cap: usize) -> std::io::Result<Outq> {
        Ok(Outq {
            state: Mutex::default(),
            bell: Readiness::new(false)?,
            room: Condvar::new(),
            cap: cap as u64,
            queued: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the frame of `env`, waiting up to `wait` for room; fails with
    /// `Closed` once the node is closing.
    pub fn push(&self, env: &Envelope, wait: Duration) -> Result<(), PushError> {
        let mut s = self.room_for_one(wait)?;
        s.batch.push(env);
        self.pushed(s, 1, env.data.len() as u64);
        Ok(())
    }

    /// Queues the frames of a run of small payloads (each below
    /// [`BIG`](super::batch::BIG)) under one lock, without waiting: as many
    /// from the front as there is room for (at least one: `Full` if there
    /// is none); how many. `msgs` is not empty.
    pub fn try_push_small_run(&self, msgs: &[Outgoing<'_>]) -> Result<usize, PushError> {
        debug_assert!(!msgs.is_empty());
        let mut s = self.room_for_one(Duration::ZERO)?;
        let room = (self.cap - s.batch.frames() - s.writing).min(msgs.len() as u64) as usize;
        let bytes = s.append_small(&msgs[..room]);
        self.pushed(s, room as u64, bytes);
        Ok(room)
    }

    /// Queues a run of small frames (`wire` bytes on the wire) held back
    /// from the writer until `until` (or an earlier hold's end), for the
    /// sender's next run to write them with its own in one system call:
    /// fewer, larger writes cost the sender and the peer's reader far less
    /// a message. Queues nothing and returns false when the queued frames
    /// and the run would make `chunk` bytes or more (the sender then writes
    /// them all), when frames queued earlier are for the writer to take
    /// now, or when there is no room for the whole run. The writer, if it
    /// sleeps, is woken once a hold, to sleep until its end.
    pub fn hold_small_run(
        &self,
        msgs: &[Outgoing<'_>],
        wire: usize,
        chunk: usize,
        until: Instant,
    ) -> bool {
        let mut s = self.lock();
        let room = self.cap - s.batch.frames() - s.writing;
        let live = s.hold_left(Instant::now()).is_some();
        if s.closed
            || s.batch.wire_len() + wire >= chunk
            || (!live && !s.batch.is_empty())
            || room < msgs.len() as u64
        {
            return false;
        }
        let bytes = s.append_small(msgs);
        s.sent += msgs.len() as u64;
        s.sent_bytes += bytes;
        // A new hold (rung, so a writer asleep learns its end) unless one
        // is live: one that ended, or that nothing was held under, counts
        // for nothing.
        let first = !live;
        if first {
            s.held_until = Some(until);
        }
        let wake = first && std::mem::take(&mut s.writer_waits);
        drop(s);
        if wake {
            self.bell.raise();
        }
        true
    }

    /// The lock, once the queue has room for a frame (waiting up to `wait`).
    /// Fails with `Closed` once the queue is closed: a send that raced
    /// with `close` is refused rather than left unaccounted for.
    fn room_for_one(&self, wait: Duration) -> Result<MutexGuard<'_, State>, PushError> {
        let mut s = self.lock();
        let mut end = None;
        loop {
            if s.closed {
                return Err(PushError::Closed);
            }
            if s.batch.frames() + s.writing < self.cap {
                break;
            }
            let now = Instant::now();
            let end = *end.get_or_insert(now + wait);
            if now >= end {
                return Err(PushError::Full);
            }
            s.senders_wait += 1;
            s = self
                .room
                .wait_timeout(s, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            s.senders_wait -= 1;
        }
        Ok(s)
    }

    /// Counts a push of `n` messages of `bytes` payload bytes in all and
    /// unlocks, waking the writer if it sleeps.
    fn pushed(&self, mut s: MutexGuard<'_, State>, n: u64, bytes: u64) {
        s.sent += n;
        s.sent_bytes += bytes;
        // Whatever was held goes with it.
        s.held_until = None;
        if !self.queued.load(Ordering::Relaxed) {
            self.queued.store(true, Ordering::Release);
        }
        let wake = std::mem::take(&mut s.writer_waits);
        drop(s);
        if wake {
            self.bell.raise();
        }
    }

    /// The writer's wait: until frames are queued and not held (a hold ends
    /// at its deadline, give or take the system's timer slack, or with a
    /// push), `patience` runs out (it may be forever), the queue is closed,
    /// or `conn` (when given) is readable, ended or failed. Takes nothing.
    pub fn wait(&self, patience: Timeout, conn: Option<&TcpStream>) -> Wait {
        // A sender that is streaming refills the queue within a thread
        // hand-off: cheaper for both than a sleep and a wake-up.
        if spin_until(HANDOFF_SPIN, || self.queued.load(Ordering::Acquire)) {
            return Wait::Ready;
        }
        let end = crate::sync::deadline(patience);
        let mut polls =
            [self.bell.raw(), conn.map_or(-1, |c| c.as_raw_fd())].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        let mut s = self.lock();
        let ended = loop {
            if s.closed {
                break Wait::Closed;
            }
            // Held frames wait for their hold to end (or for a push).
            let now = Instant::now();
            let held = s.hold_left(now);
            if !s.batch.is_empty() && held.is_none() {
                break Wait::Ready;
            }
            if std::mem::take(&mut s.nudged) {
                break Wait::Idle;
            }
            let left = match end {
                Some(end) if end <= now => break Wait::Idle,
                Some(end) => Some(end - now),
                None => None,
            };
            let left = match held {
                Some(h) => Some(left.map_or(h, |l| l.min(h))),
                None => left,
            };
            // Senders ring the bell only while this is set, under the lock:
            // a frame queued from now on wakes the poll below.
            s.writer_waits = true;
            drop(s);
            let timeout = left.map(|d| libc::timespec {
                tv_sec: d.as_secs().min(1 << 30) as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            });
            let timeout_ptr = timeout
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: two live pollfds (ppoll ignores the one of fd -1) and
            // a timeout that outlive the call; no signal mask.
            unsafe { libc::ppoll(polls.as_mut_ptr(), 2, timeout_ptr, std::ptr::null()) };
            self.bell.lower();
            s = self.lock();
            if polls[1].revents != 0 {
                break Wait::Idle;
            }
        };
        s.writer_waits = false;
        ended
    }

    /// Moves every queued frame into `into`, which must be empty (its
    /// buffer becomes the queue's: the two are swapped, not copied); false
    /// if there were none. The frames count against the bound until
    /// [`Outq::written`].
    pub fn take(&self, into: &mut Batch) -> bool {
        self.take_within(into, usize::MAX) == Some(true)
    }

    /// [`Outq::take`] if the queued frames take at most `max` bytes on the
    /// wire: `Some(taken)` (false: none were queued), or `None`, taking
    /// nothing, if they take more.
    pub fn take_within(&self, into: &mut Batch, max: usize) -> Option<bool> {
        debug_assert!(into.is_empty());
        let mut s = self.lock();
        if s.batch.is_empty() {
            return Some(false);
        }
        if s.batch.wire_len() > max {
            return None;
        }
        std::mem::swap(into, &mut s.batch);
        s.writing = into.frames();
        s.held_until = None;
        self.queued.store(false, Ordering::Release);
        Some(true)
    }

    /// Ends the writer's current or next wait (as `Idle`), so it looks at
    /// its connection's accounts again: another thread wrote frames into
    /// the connection, which a writer asleep with everything acknowledged
    /// would otherwise not watch.
    pub fn nudge(&self) {
        let mut s = self.lock();
        s.nudged = true;
        let wake = std::mem::take(&mut s.writer_waits);
        drop(s);
        if wake {
            self.bell.raise();
        }
    }

    /// The writer is done with what it took (written, or failed): room for
    /// as many new frames.
    pub fn written(&self) {
        let mut s = self.lock();
        s.writing = 0;
        let wake = s.senders_wait > 0;
        drop(s);
        if wake {
            self.room.notify_all();
        }
    }

    /// Counts `n` messages of `bytes` payload bytes in all accepted for
    /// the peer outside the queue: written into the connection by their
    /// sender, or dropped at close while they waited out an injected delay.
    pub fn count_sent(&self, n: u64, bytes: u64) {
        let mut s = self.lock();
        s.sent += n;
        s.sent_bytes += bytes;
    }

    /// Messages and payload bytes accepted for the peer so far, and the
    /// frames queued or being written, read together.
    pub fn counts(&self) -> QueueCounts {
        let s = self.lock();
        QueueCounts {
            sent: s.sent,
            sent_bytes: s.sent_bytes,
            depth: s.batch.frames() + s.writing,
        }
    }

    /// Frames queued or being written.
    pub fn len(&self) -> u64 {
        let s = self.lock();
        s.batch.frames() + s.writing
    }

    /// Whether no frame is queued or being written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes whoever sleeps on the queue, now and later: the node closes.
    /// Frames still queued stay for the writer's linger.
    pub fn close(&self) {
        self.lock().closed = true;
        self.bell.raise();
        self.room.notify_all();
    }

    /// Throws away what is queued; the number of frames.
    pub fn clear(&self) -> u64 {
        let mut s = self.lock();
        let n = s.batch.frames();
        s.batch.clear();
        s.held_until = None;
        self.queued.store(false, Ordering::Release);
        s.writing = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn env(i: i64) -> Envelope {
        Envelope::new(2, i, 0, b"x")
    }

    /// What a writer's wait (with `patience`) that `act` ends once the
    /// writer sleeps ends with.
    fn woken_by(q: &Outq, patience: Timeout, act: impl FnOnce()) -> Wait {
        std::thread::scope(|s| {
            let writer = s.spawn(|| q.wait(patience, None));
            while !q.lock().writer_waits {
                std::thread::yield_now();
            }
            act();
            writer.join().unwrap()
        })
    }

    #[test]
    fn bounded_in_frames_and_a_take_makes_room_for_a_waiting_sender() {
        let q = Arc::new(Outq::new(2).unwrap());
        q.push(&env(0), Duration::ZERO).unwrap();
        q.push(&env(1), Duration::ZERO).unwrap();
        assert_eq!(q.push(&env(2), Duration::ZERO), Err(PushError::Full));
        assert_eq!(
            q.push(&env(2), Duration::from_millis(5)),
            Err(PushError::Full)
        );
        let q2 = q.clone();
        let sender = std::thread::spawn(move || q2.push(&env(2), Duration::from_secs(30)));
        while q.lock().senders_wait == 0 {
            std::thread::yield_now();
        }
        let mut b = Batch::default();
        assert!(q.take(&mut b));
        assert_eq!(b.frames(), 2);
        // Frames being written still count: the peer holds at most 2.
        std::thread::sleep(Duration::from_millis(20));
        assert!(!sender.is_finished(), "room only once they are written");
        assert_eq!(q.len(), 2);
        b.clear();
        q.written();
        assert_eq!(sender.join().unwrap(), Ok(()));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_writer_wakes_for_a_frame_and_for_close() {
        let q = Arc::new(Outq::new(8).unwrap());
        assert_eq!(q.wait(Some(Duration::from_millis(1)), None), Wait::Idle);
        let push = || q.push(&env(0), Duration::ZERO).unwrap();
        assert_eq!(woken_by(&q, None, push), Wait::Ready);
        let mut b = Batch::default();
        assert!(q.take(&mut b));
        assert!(!q.take(&mut Batch::default()));
        let q2 = q.clone();
        let writer = std::thread::spawn(move || q2.wait(None, None));
        q.close();
        assert_eq!(writer.join().unwrap(), Wait::Closed);
    }

    #[test]
    fn held_frames_wait_for_their_hold_to_end_or_for_a_push() {
        let q = Arc::new(Outq::new(64).unwrap());
        let (run, wire) = small_run();
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(q.hold_small_run(&run, wire, 1 << 10, later));
        assert_eq!(q.counts().sent, 4, "held frames are accepted");
        // Held for an hour: a writer with 20 ms of patience finds nothing.
        assert_eq!(q.wait(Some(Duration::from_millis(20)), None), Wait::Idle);
        // Held again, up to the chunk; then the sender writes them itself.
        assert!(q.hold_small_run(&run, wire, 1 << 10, later));
        assert!(!q.hold_small_run(&run, wire, 3 * wire, later));
        // A push ends the hold: a sleeping writer wakes and takes them all.
        let patience = Some(Duration::from_secs(30));
        let push = || q.push(&env(8), Duration::ZERO).unwrap();
        assert_eq!(woken_by(&q, patience, push), Wait::Ready);
        let mut b = Batch::default();
        assert!(q.take(&mut b));
        assert_eq!(b.frames(), 9);
        b.clear();
        q.written();
        // A hold that ends wakes a writer asleep for longer.
        let hold = || {
            let soon = Instant::now() + Duration::from_millis(5);
            assert!(q.hold_small_run(&run, wire, 1 << 10, soon));
        };
        assert_eq!(woken_by(&q, patience, hold), Wait::Ready);
        assert!(q.take(&mut b));
        assert_eq!(b.frames(), 4);
        // Frames queued for the writer now are never held back.
        q.push(&env(9), Duration::ZERO).unwrap();
        assert!(!q.hold_small_run(&run, wire, 1 << 10, later));
    }

    /// A run of four 3-byte messages, and its size on the wire.
    fn small_run() -> (Vec<Outgoing<'static>>, usize) {
        let run = (0..4)
            .map(|i| Outgoing {
                to: 2,
                msg_id: i,
                kind: 0,
                data: b"abc",
            })
            .collect();
        (run, 4 * (crate::wire::HEADER_LEN + 3))
    }

    #[test]
    fn a_hold_ends_by_itself_for_a_writer_asleep_with_no_patience() {
        let q = Arc::new(Outq::new(64).unwrap());
        let (run, wire) = small_run();
        for round in 0..20 {
            let (tx, rx) = std::sync::mpsc::channel();
            let q2 = q.clone();
            let writer = std::thread::spawn(move || tx.send(q2.wait(None, None)));
            while !q.lock().writer_waits {
                std::thread::yield_now();
            }
            let soon = Instant::now() + Duration::from_micros(50);
            assert!(q.hold_small_run(&run, wire, 1 << 10, soon));
            match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(w) => assert_eq!(w, Wait::Ready, "round {round}"),
                Err(_) => {
                    q.close(); // lets the writer go before the test fails
                    panic!("round {round}: held frames never reached the writer");
                }
            }
            writer.join().unwrap().unwrap();
            let mut b = Batch::default();
            assert!(q.take(&mut b));
            assert_eq!(b.frames(), 4);
            q.written();
        }
    }

    #[test]
    fn holds_keep_to_the_bound() {
        let q = Outq::new(6).unwrap();
        let (run, wire) = small_run();
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(q.hold_small_run(&run, wire, 1 << 10, later));
        assert!(!q.hold_small_run(&run, wire, 1 << 10, later), "2 of 4 fit");
        assert_eq!(q.len(), 4);
        assert_eq!(q.counts().sent, 4);
    }

    #[test]
    fn an_idle_writer_wakes_when_its_connection_has_news() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let conn = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let q = Outq::new(8).unwrap();
        let quiet = Some(Duration::from_millis(20));
        assert_eq!(q.wait(quiet, Some(&conn)), Wait::Idle, "nothing came");
        std::thread::scope(|s| {
            let writer = s.spawn(|| q.wait(None, Some(&conn)));
            peer.write_all(b"an ack").unwrap();
            assert_eq!(writer.join().unwrap(), Wait::Idle, "bytes came in");
        });
        let mut b = [0u8; 16];
        assert_eq!(std::io::Read::read(&mut &conn, &mut b).unwrap(), 6);
        std::thread::scope(|s| {
            let writer = s.spawn(|| q.wait(None, Some(&conn)));
            drop(peer);
            assert_eq!(writer.join().unwrap(), Wait::Idle, "the peer hung up");
        });
    }

    #[test]
    fn close_releases_a_sender_waiting_for_room() {
        let q = Arc::new(Outq::new(1).unwrap());
        q.push(&env(0), Duration::ZERO).unwrap();
        let q2 = q.clone();
        let sender = std::thread::spawn(move || q2.push(&env(1), Duration::from_secs(30)));
        q.close();
        assert_eq!(sender.join().unwrap(), Err(PushError::Closed));
        // A send that raced with close is refused, not left uncounted.
        q.clear();
        assert_eq!(q.push(&env(2), Duration::ZERO), Err(PushError::Closed));
        assert_eq!(
            q.try_push_small_run(&[Outgoing {
                data: b"x",
                ..Outgoing::default()
            }]),
            Err(PushError::Closed),
            "the fast path too"
        );
        assert!(q.is_empty());
        assert_eq!((q.counts().sent, q.counts().sent_bytes), (1, 1));
    }

    #[test]
    fn a_run_takes_what_fits_and_counts_it() {
        let q = Outq::new(5).unwrap();
        q.push(&env(0), Duration::ZERO).unwrap();
        let msgs: Vec<Outgoing> = (1..=6)
            .map(|i| Outgoing {
                msg_id: i,
                data: b"abc",
                ..Outgoing::default()
            })
            .collect();
        assert_eq!(q.try_push_small_run(&msgs), Ok(4), "room for four");
        assert_eq!(q.try_push_small_run(&msgs[4..]), Err(PushError::Full));
        assert_eq!((q.counts().sent, q.counts().sent_bytes), (5, 1 + 4 * 3));
        let mut b = Batch::default();
        assert!(q.take(&mut b));
        assert_eq!(b.frames(), 5);
    }
}
