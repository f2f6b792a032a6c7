//! The bounded inbox and the shutdown signal that wakes every blocked call.

use crate::buffer::Buf;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::readiness::Readiness;
use crate::stats::InboxCounts;
use crate::sync::{deadline, spin_until, Padded, PushError, Shutdown, Timeout, HANDOFF_SPIN};
use crate::wire::{FrameBuf, FrameRef, Frames};
use std::collections::VecDeque;
use std::ops::Range;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A node's bounded inbox. The threads that fill it push what they have
/// in one go, and a batched receive takes what is there in one go: one lock
/// for many envelopes each way, and a wake-up only for a receiver that
/// sleeps. The node closes it with [`Inbox::close`], which fires its
/// [`Shutdown`].
#[derive(Debug)]
pub struct Inbox {
    /// On cache lines of its own: every pusher writes it, and the fields
    /// around (the receiver's read-ahead, the node's counters) are written
    /// by one thread each.
    state: Padded<Mutex<State>>,
    /// A burst of small frames a receiver took out of `state` whole, to
    /// serve the calls that follow without touching the lock the readers
    /// push under, and the count of messages received. Locked before
    /// `state` when both are.
    ahead: Padded<Mutex<Ahead>>,
    /// Messages in `ahead`, written under both locks when it fills and
    /// under `ahead` when it drains: a receiver about to park (holding only
    /// `state`) sees what another took ahead.
    ahead_len: AtomicUsize,
    /// Messages in `state`'s queue, published under its lock on every
    /// change (see [`Inbox::signal`]): a polling receiver reads it without
    /// taking the lock the pushers need. A hint: one about to park looks
    /// under the lock.
    queued: Padded<AtomicUsize>,
    /// An empty queue with capacity, swapped for `state`'s whole queue by
    /// a receive that takes it all (see [`Inbox::take_items`]); locked by
    /// receivers only, under `ahead`.
    spare: Mutex<VecDeque<Item>>,
    /// Signalled when envelopes arrive while receivers sleep.
    ready: Condvar,
    /// Signalled when envelopes are taken while pushers sleep.
    room: Condvar,
    cap: usize,
    /// The descriptor of [`Inbox::ready_fd`], made on first use; raised and
    /// lowered under `state`'s lock (see [`Inbox::signal`]).
    readiness: OnceLock<Readiness>,
}

/// What the inbox holds: envelopes, or small frames still in wire form.
#[derive(Debug)]
pub enum Item {
    /// One envelope.
    One(Envelope),
    /// Frames decoded when taken.
    Frames(Frames),
}

impl Item {
    /// Messages in the item.
    pub fn len(&self) -> usize {
        match self {
            Item::One(_) => 1,
            Item::Frames(f) => f.len(),
        }
    }

    /// Whether the item holds no message (never so in the inbox).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Payload bytes of the item's messages.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            Item::One(e) => e.data.len() as u64,
            Item::Frames(f) => f.payload_bytes(),
        }
    }

    /// Moves the first `n` messages of the item into a new one.
    fn take_front(&mut self, n: usize) -> Item {
        match self {
            Item::Frames(f) => Item::Frames(f.take_front(n)),
            Item::One(_) => unreachable!("an envelope is never split"),
        }
    }

    /// Appends the item's envelopes to `out`.
    pub fn decode_into(self, out: &mut Vec<Envelope>) {
        match self {
            Item::One(e) => out.push(e),
            Item::Frames(f) => out.extend(f),
        }
    }
}

/// Where a batched receive puts what it takes: the items as they are
/// (`Vec<Item>`), or the envelopes decoded from them (`Vec<Envelope>`,
/// with no list of items in between).
pub trait Sink {
    /// Makes room for `items` more items holding `messages` messages.
    fn reserve(&mut self, items: usize, messages: usize);
    /// Takes one item.
    fn put(&mut self, item: Item);
}

impl Sink for Vec<Item> {
    fn reserve(&mut self, items: usize, _messages: usize) {
        Vec::reserve(self, items);
    }

    fn put(&mut self, item: Item) {
        self.push(item);
    }
}

impl Sink for Vec<Envelope> {
    fn reserve(&mut self, _items: usize, messages: usize) {
        Vec::reserve(self, messages);
    }

    fn put(&mut self, item: Item) {
        item.decode_into(self);
    }
}

/// Where [`Inbox::recv_one`] puts the message it takes (`cluster_recv`'s
/// slot is the caller's C envelope). A receive that succeeds calls one of
/// the two methods exactly once; one that fails calls neither. A lent
/// frame comes field by field, not as a value moved up through the layers
/// between the inbox and the caller: loading such a value right after its
/// fields were stored stalls the CPU (store forwarding fails), which cost
/// a per-call receiver about a third of its time.
pub trait Slot {
    /// A small frame from `pid`, lent where it lies: its payload is
    /// `buf[payload]`. Called under the read-ahead's lock.
    fn lend(&mut self, pid: i64, msg_id: i64, kind: u32, payload: Range<usize>, buf: &Arc<Buf>);
    /// An envelope of its own (a lone or a large message). Called after
    /// the receive let go of the inbox's locks.
    fn own(&mut self, env: Envelope);
}

impl Slot for Option<Received> {
    fn lend(&mut self, pid: i64, msg_id: i64, kind: u32, payload: Range<usize>, buf: &Arc<Buf>) {
        let frame = FrameRef {
            pid,
            msg_id,
            kind,
            payload,
        };
        *self = Some(Received::Lent(frame, buf.clone()));
    }

    fn own(&mut self, env: Envelope) {
        *self = Some(Received::Envelope(env));
    }
}

/// One message taken by [`Inbox::recv_one`] into an `Option<Received>`.
#[derive(Debug)]
pub enum Received {
    /// An envelope of its own.
    Envelope(Envelope),
    /// A small frame, lent where it lies in a buffer it shares with others.
    Lent(FrameRef, Arc<Buf>),
}

impl Received {
    /// What a receive that succeeded put into its slot.
    pub(crate) fn take(slot: Option<Received>) -> Received {
        slot.unwrap_or_else(|| unreachable!("a receive that succeeds fills its slot"))
    }

    /// The payload's size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Received::Envelope(e) => e.data.len(),
            Received::Lent(f, _) => f.payload.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message as an envelope (a lent payload is copied).
    pub fn into_envelope(self) -> Envelope {
        match self {
            Received::Envelope(e) => e,
            Received::Lent(f, buf) => Envelope::new(f.pid, f.msg_id, f.kind, &buf[f.payload]),
        }
    }
}

/// Room (in messages, at most a quarter of the inbox) that wakes waiting
/// pushers: a reader's burst.
const WAKE_ROOM: usize = 64;

/// Room a burst first makes for frames in wire form (it grows as a burst
/// needs, up to the reader's 32 KiB bound).
const OPEN_BYTES: usize = 64 * 64;

/// Messages on their way into the inbox, as a reader collects them.
#[derive(Debug, Default)]
pub struct Burst {
    items: VecDeque<Item>,
    /// The frames being appended to (the last item once closed).
    open: FrameBuf,
    len: usize,
    /// Payload bytes of `items`.
    bytes: usize,
}

impl Burst {
    /// An empty burst of messages from `from`.
    pub fn new(from: i64) -> Burst {
        Burst {
            open: FrameBuf::with_capacity(from, OPEN_BYTES),
            ..Burst::default()
        }
    }

    /// Messages in the burst.
    pub fn len(&self) -> usize {
        self.len + self.open.len()
    }

    /// Whether the burst holds no message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the burst holds: payloads of decoded messages, wire bytes of
    /// frames. A reader pushes its burst once this passes its bound, so a
    /// reader blocked on a full inbox holds little beyond it.
    pub fn held_bytes(&self) -> usize {
        self.bytes + self.open.wire_len()
    }

    /// The frames that small messages are appended to.
    pub fn frames(&mut self) -> &mut FrameBuf {
        &mut self.open
    }

    /// Appends an envelope, after the frames appended so far.
    pub fn push(&mut self, env: Envelope) {
        self.close();
        self.bytes += env.data.len();
        self.items.push_back(Item::One(env));
        self.len += 1;
    }

    /// Moves the frames appended so far to the items. The inbox gets an
    /// exactly sized copy of them (a lone frame as an envelope), so what it
    /// holds is what its messages take, and the open buffer is reused.
    fn close(&mut self) {
        let mut frames = match self.open.len() {
            0 => return,
            _ => self.open.take(),
        };
        self.bytes += frames.payload_bytes() as usize;
        let item = match frames.len() {
            1 => Item::One(frames.next().unwrap_or_else(|| unreachable!())),
            _ => Item::Frames(frames),
        };
        self.len += item.len();
        self.items.push_back(item);
    }
}

/// The read-ahead and the count of received messages, under one lock.
#[derive(Debug, Default)]
struct Ahead {
    /// A burst of small frames taken out of the queue whole.
    frames: Option<Frames>,
    /// Messages ever taken by receives: counted under the lock every
    /// receive takes anyway, not in an atomic of its own.
    taken: u64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Item>,
    /// Messages in `queue`.
    len: usize,
    /// Receivers sleeping for an envelope.
    receivers: usize,
    /// They were woken since the last one went to sleep.
    receivers_woken: bool,
    /// Pushers sleeping for room.
    pushers: usize,
    /// Messages ever pushed, and their payload bytes.
    pushed: u64,
    pushed_bytes: u64,
    /// The inbox was closed.
    closed: bool,
    /// The readiness descriptor is raised.
    raised: bool,
}

impl Inbox {
    /// An inbox holding at most `capacity` envelopes.
    pub fn new(capacity: usize) -> Inbox {
        Inbox {
            ahead: Padded(Mutex::default()),
            ahead_len: AtomicUsize::new(0),
            queued: Padded(AtomicUsize::new(0)),
            spare: Mutex::new(VecDeque::new()),
            state: Padded(Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.min(1024)),
                ..State::default()
            })),
            ready: Condvar::new(),
            room: Condvar::new(),
            cap: capacity,
            readiness: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fires `shutdown`, the node's, and wakes every call sleeping on the
    /// inbox so it fails with `Closed`; false if it had fired already.
    pub fn close(&self, shutdown: &Shutdown) -> bool {
        let first = shutdown.fire();
        let mut s = self.lock();
        s.closed = true;
        self.signal(&mut s);
        drop(s);
        self.ready.notify_all();
        self.room.notify_all();
        first
    }

    /// What the inbox counted, read under both its locks at once.
    pub fn counts(&self) -> InboxCounts {
        let ahead = self.lock_ahead();
        let s = self.lock();
        InboxCounts {
            received: s.pushed,
            received_bytes: s.pushed_bytes,
            delivered: ahead.taken,
            depth: ahead.frames.as_ref().map_or(0, Frames::len) + s.len,
        }
    }

    /// Messages waiting to be received (those taken ahead included).
    pub fn len(&self) -> usize {
        self.counts().depth
    }

    fn lock_ahead(&self) -> MutexGuard<'_, Ahead> {
        self.ahead.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether no envelope is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes `env`, waiting up to `timeout` for room; gives up at once when
    /// `shutdown` fires.
    pub fn push(
        &self,
        env: Envelope,
        timeout: Timeout,
        shutdown: &Shutdown,
    ) -> std::result::Result<(), (PushError, Envelope)> {
        let mut s = self.lock();
        let mut end = None;
        let mut spun = false;
        loop {
            if shutdown.is_fired() {
                return Err((PushError::Closed, env));
            }
            if s.len < self.cap {
                s.pushed += 1;
                s.pushed_bytes += env.data.len() as u64;
                s.queue.push_back(Item::One(env));
                s.len += 1;
                self.signal(&mut s);
                self.wake_receivers(s);
                return Ok(());
            }
            // The clock is read only when there is a wait.
            let end = *end.get_or_insert_with(|| deadline(timeout));
            s = match self.wait_room(s, end, &mut spun, shutdown) {
                Some(s) => s,
                None => return Err((PushError::Full, env)),
            };
        }
    }

    /// Moves messages from the front of `from` into the inbox, as many as
    /// fit, waiting up to `timeout` for room for the first; how many moved
    /// and their payload bytes. Fails with `Closed` (moving none) once
    /// `shutdown` fired.
    pub fn push_many(
        &self,
        from: &mut Burst,
        timeout: Timeout,
        shutdown: &Shutdown,
    ) -> std::result::Result<(usize, u64), PushError> {
        from.close();
        let mut s = self.lock();
        let end = deadline(timeout);
        let mut spun = false;
        loop {
            if shutdown.is_fired() {
                return Err(PushError::Closed);
            }
            let room = self.cap - s.len.min(self.cap);
            if room > 0 || from.len == 0 {
                let mut bytes = 0;
                let n = move_front(&mut from.items, room, |item| {
                    bytes += item.payload_bytes();
                    s.queue.push_back(item);
                });
                from.len -= n;
                from.bytes = from.bytes.saturating_sub(bytes as usize);
                s.len += n;
                s.pushed += n as u64;
                s.pushed_bytes += bytes;
                if n > 0 {
                    self.signal(&mut s);
                }
                self.wake_receivers(s);
                return Ok((n, bytes));
            }
            s = match self.wait_room(s, end, &mut spun, shutdown) {
                Some(s) => s,
                None => return Ok((0, 0)),
            };
        }
    }

    /// A pusher's wait for room, until `end`: the first wait of a push
    /// polls for up to [`HANDOFF_SPIN`] without the lock (room made
    /// meanwhile costs no sleep and no wake-up), the next ones sleep until
    /// a receiver makes room. `None` once `end` passed.
    fn wait_room<'a>(
        &'a self,
        s: MutexGuard<'a, State>,
        end: Option<Instant>,
        spun: &mut bool,
        shutdown: &Shutdown,
    ) -> Option<MutexGuard<'a, State>> {
        let spin = end.map_or(HANDOFF_SPIN, |e| {
            e.saturating_duration_since(Instant::now())
                .min(HANDOFF_SPIN)
        });
        if !spin.is_zero() && !std::mem::replace(spun, true) {
            drop(s);
            spin_until(spin, || {
                self.queued.load(Ordering::Acquire) < self.cap || shutdown.is_fired()
            });
            return Some(self.lock());
        }
        wait(&self.room, s, end, |s| &mut s.pushers)
    }

    /// Takes the next message, waiting up to `timeout` (polling for `spin`
    /// before it parks, see [`spin_until`]); fails with `Closed` as soon as
    /// `shutdown` fires. A small frame is lent, not copied, and the calls
    /// after one that took a burst ahead are served from it: no allocation,
    /// and one uncontended lock a call. The message goes straight into
    /// `out`; returns the payload's size.
    pub fn recv_one(
        &self,
        timeout: Timeout,
        spin: Duration,
        shutdown: &Shutdown,
        out: &mut dyn Slot,
    ) -> Result<usize> {
        let mut own = None;
        let len = self.receive(timeout, spin, shutdown, |ahead| {
            self.take_one(ahead, out, &mut own).map(|len| (len, 1))
        })?;
        // An envelope of its own goes to `out` outside the locks (the slot
        // may allocate for it).
        if let Some(env) = own {
            out.own(env);
        }
        Ok(len)
    }

    /// Takes the next envelope, as [`Inbox::recv_one`] does.
    pub fn recv(&self, timeout: Timeout, spin: Duration, shutdown: &Shutdown) -> Result<Envelope> {
        let mut out = None;
        self.recv_one(timeout, spin, shutdown, &mut out)?;
        Ok(Received::take(out).into_envelope())
    }

    /// Takes up to `max` envelopes: waits up to `timeout` for the first, then
    /// takes what is already there without waiting.
    pub fn recv_batch(
        &self,
        max: usize,
        timeout: Timeout,
        spin: Duration,
        shutdown: &Shutdown,
        out: &mut Vec<Envelope>,
    ) -> Result<()> {
        self.recv_items(max, timeout, spin, shutdown, out)
            .map(|_| ())
    }

    /// Like [`Inbox::recv_batch`], but into any [`Sink`] (small frames
    /// handed over still in their wire form to a `Vec<Item>`); how many
    /// messages `out` received.
    pub fn recv_items(
        &self,
        max: usize,
        timeout: Timeout,
        spin: Duration,
        shutdown: &Shutdown,
        out: &mut dyn Sink,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        self.receive(timeout, spin, shutdown, |ahead| {
            let n = self.take_items(ahead, max, out);
            (n > 0).then_some((n, n))
        })
    }

    /// The receive loop: `take` under the read-ahead's lock (taking from
    /// the queue too, so one receiver's successive takes keep the queue's
    /// order; it returns what it took and how many messages, counted under
    /// that lock), else a poll for `spin`, else a wait until there is
    /// something to take, the deadline, or `shutdown`.
    fn receive<T>(
        &self,
        timeout: Timeout,
        spin: Duration,
        shutdown: &Shutdown,
        mut take: impl FnMut(&mut Option<Frames>) -> Option<(T, usize)>,
    ) -> Result<T> {
        // The deadline is read from the clock only by a receive that waits:
        // one that finds a message (or has no time to wait) reads no clock.
        let mut end = None;
        let mut spin = timeout.map_or(spin, |t| t.min(spin));
        loop {
            if shutdown.is_fired() {
                return Err(Error::closed());
            }
            let mut ahead = self.lock_ahead();
            if let Some((t, n)) = take(&mut ahead.frames) {
                ahead.taken += n as u64;
                return Ok(t);
            }
            drop(ahead);
            if timeout == Some(Duration::ZERO) {
                return Err(Error::timeout());
            }
            let end = *end.get_or_insert_with(|| deadline(timeout));
            if spin_until(std::mem::take(&mut spin), || {
                self.queued.load(Ordering::Acquire) > 0
                    || self.ahead_len.load(Ordering::Acquire) > 0
                    || shutdown.is_fired()
            }) {
                continue;
            }
            self.wait_ready(end, shutdown)?;
        }
    }

    /// Whether a receiver would find something, in the queue or ahead.
    fn has_messages(&self, s: &State) -> bool {
        s.len > 0 || self.ahead_len.load(Ordering::Acquire) > 0
    }

    /// Waits until there is something to take; `Timeout` once `end` passed.
    fn wait_ready(&self, end: Option<Instant>, shutdown: &Shutdown) -> Result<()> {
        let mut s = self.lock();
        loop {
            if shutdown.is_fired() {
                return Err(Error::closed());
            }
            if self.has_messages(&s) {
                return Ok(());
            }
            // A receiver going to sleep is woken by the next push.
            s.receivers_woken = false;
            s = wait(&self.ready, s, end, |s| &mut s.receivers).ok_or_else(Error::timeout)?;
        }
    }

    /// After a push: wakes the sleeping receivers, once per sleep (a push
    /// that finds them woken already makes no system call).
    fn wake_receivers(&self, mut s: MutexGuard<'_, State>) {
        let wake = s.receivers > 0 && !std::mem::replace(&mut s.receivers_woken, true);
        drop(s);
        if wake {
            self.ready.notify_all();
        }
    }

    /// Takes the next message: from the burst taken ahead, lent into `out`,
    /// else from the queue (a burst of frames is taken ahead whole; an
    /// envelope of its own goes to `own`, for `out` once the locks are let
    /// go); the payload's size.
    fn take_one(
        &self,
        ahead: &mut Option<Frames>,
        out: &mut dyn Slot,
        own: &mut Option<Envelope>,
    ) -> Option<usize> {
        if let Some(n) = self.lend_ahead(ahead, out) {
            return Some(n);
        }
        let mut s = self.lock();
        let item = s.queue.pop_front()?;
        s.len -= item.len();
        let e = match item {
            Item::One(e) => e,
            Item::Frames(f) => {
                self.ahead_len.store(f.len(), Ordering::Release);
                *ahead = Some(f);
                self.signal(&mut s);
                self.made_room(s);
                return self.lend_ahead(ahead, out);
            }
        };
        self.signal(&mut s);
        self.made_room(s);
        let n = e.data.len();
        *own = Some(e);
        Some(n)
    }

    /// Lends the next frame of the burst taken ahead, if any, into `out`;
    /// the payload's size.
    fn lend_ahead(&self, ahead: &mut Option<Frames>, out: &mut dyn Slot) -> Option<usize> {
        let f = ahead.as_mut()?;
        let FrameRef {
            pid,
            msg_id,
            kind,
            payload,
        } = f.next_lent()?;
        let n = payload.len();
        out.lend(pid, msg_id, kind, payload, f.buffer());
        self.ahead_len.store(f.len(), Ordering::Release);
        if f.is_empty() {
            *ahead = None;
            if self.readiness.get().is_some() {
                self.signal(&mut self.lock());
            }
        }
        Some(n)
    }

    /// Moves up to `max` messages into `out`: what was taken ahead first,
    /// then from the queue, without waiting; how many.
    fn take_items(&self, ahead: &mut Option<Frames>, max: usize, out: &mut dyn Sink) -> usize {
        let mut n = 0;
        if let Some(mut f) = ahead.take() {
            if f.len() > max {
                out.put(Item::Frames(f.take_front(max)));
                self.ahead_len.store(f.len(), Ordering::Release);
                *ahead = Some(f);
                return max;
            }
            n = f.len();
            out.put(Item::Frames(f));
            self.ahead_len.store(0, Ordering::Release);
        }
        // What is taken goes to the spare under the lock, and to `out`
        // after it (decoded there, if `out` wants envelopes): the whole
        // queue, when it fits, is swapped for the empty spare, so the
        // pushers wait for a swap, not for every item's move.
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = self.lock();
        let m = if s.len <= max - n && spare.is_empty() {
            std::mem::swap(&mut s.queue, &mut spare);
            s.len
        } else {
            move_front(&mut s.queue, max - n, |item| spare.push_back(item))
        };
        s.len -= m;
        self.signal(&mut s);
        self.made_room(s);
        out.reserve(spare.len(), m);
        for item in spare.drain(..) {
            out.put(item);
        }
        n + m
    }

    /// Wakes the pushers waiting for room once there is room for a burst
    /// (or the inbox is empty), not for every message taken: a receiver
    /// taking one message per call from a full inbox would otherwise wake
    /// the reader for each. A pusher that finds less room at the end of its
    /// wait slice takes it then.
    fn made_room(&self, s: MutexGuard<'_, State>) {
        let wake =
            s.pushers > 0 && (s.len == 0 || self.cap - s.len >= self.cap.min(WAKE_ROOM * 4) / 4);
        drop(s);
        if wake {
            self.room.notify_all();
        }
    }

    /// A descriptor that is readable exactly while a receive would not block:
    /// while a message waits (in the queue or taken ahead) or once the inbox
    /// is closed. Made on the first call; valid as long as the inbox lives.
    pub fn ready_fd(&self) -> std::io::Result<RawFd> {
        let _ahead = self.lock_ahead();
        let mut s = self.lock();
        if let Some(r) = self.readiness.get() {
            return Ok(r.raw());
        }
        let raised = self.wants_raised(&s);
        let r = Readiness::new(raised)?;
        let fd = r.raw();
        s.raised = raised;
        let _ = self.readiness.set(r);
        Ok(fd)
    }

    /// Whether the readiness descriptor should be readable now.
    fn wants_raised(&self, s: &State) -> bool {
        s.closed || self.has_messages(s)
    }

    /// Brings the readiness descriptor (if one was asked for) in line with
    /// the inbox, under `state`'s lock. It is lowered only by a receiver
    /// that also holds the read-ahead's lock, so `ahead_len` is exact then;
    /// pushers only raise it. Publishes the queue's length (`queued`).
    fn signal(&self, s: &mut State) {
        self.queued.store(s.len, Ordering::Release);
        if let Some(r) = self.readiness.get() {
            let want = self.wants_raised(s);
            if want != s.raised {
                s.raised = want;
                if want {
                    r.raise();
                } else {
                    r.lower();
                }
            }
        }
    }

    /// Discards every waiting message (those taken ahead included);
    /// returns how many there were.
    pub fn drain(&self) -> usize {
        let ahead = self.lock_ahead().frames.take().map_or(0, |f| f.len());
        self.ahead_len.store(0, Ordering::Release);
        ahead + self.drain_queue()
    }

    fn drain_queue(&self) -> usize {
        let mut s = self.lock();
        let n = std::mem::take(&mut s.len);
        s.queue.clear();
        self.signal(&mut s);
        if s.pushers > 0 {
            self.room.notify_all();
        }
        n
    }
}

/// Hands the first `n` messages of `items` to `f` (at most all), splitting
/// an item if need be; how many it handed.
fn move_front(items: &mut VecDeque<Item>, n: usize, mut f: impl FnMut(Item)) -> usize {
    let mut left = n;
    while left > 0 {
        let Some(front) = items.front_mut() else {
            break;
        };
        let item = if front.len() <= left {
            items.pop_front().unwrap_or_else(|| unreachable!())
        } else {
            front.take_front(left)
        };
        left -= item.len();
        f(item);
    }
    n - left
}

/// Sleeps on `cv` until signalled or `end`, counted in the sleepers that
/// `sleepers` picks; `None` if `end` had passed already.
fn wait<'a>(
    cv: &Condvar,
    mut s: MutexGuard<'a, State>,
    end: Option<Instant>,
    sleepers: fn(&mut State) -> &mut usize,
) -> Option<MutexGuard<'a, State>> {
    *sleepers(&mut s) += 1;
    s = match end {
        None => cv.wait(s).unwrap_or_else(|e| e.into_inner()),
        Some(end) => {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                *sleepers(&mut s) -= 1;
                return None;
            }
            cv.wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    };
    *sleepers(&mut s) -= 1;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameReader, Header, Next, HEADER_LEN};

    /// A burst from peer 9: `n` small frames in wire form (ids from 0), then
    /// one envelope (id `n`).
    fn burst(n: usize) -> Burst {
        let mut wire = Vec::new();
        for i in 0..n {
            let env = Envelope::new(0, i as i64, 0, &[i as u8; 3]);
            wire.extend_from_slice(&Header::encode(&env));
            wire.extend_from_slice(&env.data);
        }
        let mut reader = FrameReader::new(&wire[..], 64, 1 << 10);
        let mut b = Burst::new(9);
        // The first frame needs a read, so it comes decoded.
        while let Ok(next) = reader.next_into(b.frames()) {
            match next {
                Next::Appended => {}
                Next::Envelope(e) => b.push(e),
                Next::End => break,
            }
        }
        b.push(Envelope::new(9, n as i64, 0, b"last"));
        b
    }

    #[test]
    fn bursts_are_split_to_fit_and_to_serve_and_keep_their_order() {
        let inbox = Inbox::new(5);
        let shutdown = Shutdown::default();
        let mut b = burst(8);
        assert_eq!(b.len(), 9);
        let (n, bytes) = inbox
            .push_many(&mut b, Some(Duration::ZERO), &shutdown)
            .unwrap();
        assert_eq!((n, bytes, inbox.len(), b.len()), (5, 15, 5, 4));
        assert_eq!(
            inbox.push_many(&mut b, Some(Duration::ZERO), &shutdown),
            Ok((0, 0)),
            "full"
        );
        let mut ids = Vec::new();
        let mut out = Vec::new();
        for max in [2, 1, 3, 2, 9] {
            out.clear();
            inbox
                .push_many(&mut b, Some(Duration::ZERO), &shutdown)
                .unwrap();
            inbox
                .recv_batch(
                    max,
                    Some(Duration::ZERO),
                    Duration::ZERO,
                    &shutdown,
                    &mut out,
                )
                .unwrap();
            assert!(out.len() <= max);
            assert!(out.iter().all(|e| e.pid == 9));
            ids.extend(out.iter().map(|e| e.msg_id));
        }
        assert_eq!(ids, (0..=8).collect::<Vec<i64>>());
        assert!(inbox.is_empty() && b.is_empty());
        let last = inbox
            .recv(Some(Duration::ZERO), Duration::ZERO, &shutdown)
            .unwrap_err();
        assert_eq!(last.status, crate::error::Status::Timeout);
    }

    #[test]
    fn a_burst_in_the_inbox_holds_no_more_memory_than_its_frames() {
        let inbox = Inbox::new(10);
        let shutdown = Shutdown::default();
        // The first frame comes decoded (it needed a read), the next two
        // in wire form: one item of two 3-byte frames.
        let mut b = burst(3);
        inbox
            .push_many(&mut b, Some(Duration::ZERO), &shutdown)
            .unwrap();
        let s = inbox.lock();
        let frames: Vec<&Frames> = s
            .queue
            .iter()
            .filter_map(|i| match i {
                Item::Frames(f) => Some(f),
                Item::One(_) => None,
            })
            .collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), 2);
        assert_eq!(
            frames[0].buffer_len(),
            2 * (HEADER_LEN + 3),
            "exactly sized"
        );
        drop(s);
        // A lone frame in wire form becomes an envelope: no buffer at all.
        let inbox = Inbox::new(10);
        let mut b = burst(2);
        inbox
            .push_many(&mut b, Some(Duration::ZERO), &shutdown)
            .unwrap();
        assert!(inbox.lock().queue.iter().all(|i| matches!(i, Item::One(_))));
    }

    #[test]
    fn a_receiver_parked_on_an_empty_inbox_wakes_for_a_push_and_for_shutdown() {
        let inbox = std::sync::Arc::new(Inbox::new(4));
        let shutdown = std::sync::Arc::new(Shutdown::default());
        let (i, s) = (inbox.clone(), shutdown.clone());
        let receiver =
            std::thread::spawn(move || i.recv(None, Duration::ZERO, &s).map(|e| e.msg_id));
        inbox
            .push(Envelope::new(3, 42, 0, b"x"), None, &shutdown)
            .unwrap();
        assert_eq!(receiver.join().unwrap().unwrap(), 42);
        let (i, s) = (inbox.clone(), shutdown.clone());
        let receiver =
            std::thread::spawn(move || i.recv(None, Duration::ZERO, &s).map(|e| e.msg_id));
        while inbox.lock().receivers == 0 {
            std::thread::yield_now();
        }
        inbox.close(&shutdown);
        let e = receiver.join().unwrap().unwrap_err();
        assert_eq!(e.status, crate::error::Status::Closed);
    }

    #[test]
    fn a_pusher_on_a_full_inbox_waits_for_room_and_a_zero_timeout_does_not() {
        let zero = Some(Duration::ZERO);
        let patience = Some(Duration::from_secs(10)); // a failure ends the test
        for cap in [1, 8] {
            let inbox = std::sync::Arc::new(Inbox::new(cap));
            let shutdown = std::sync::Arc::new(Shutdown::default());
            let env = |id: usize| Envelope::new(3, id as i64, 0, b"x");
            for id in 0..cap {
                inbox.push(env(id), zero, &shutdown).unwrap();
            }
            let (e, _) = inbox.push(env(cap), zero, &shutdown).unwrap_err();
            assert_eq!(e, PushError::Full);
            let mut b = Burst::new(3);
            for id in cap..2 * cap {
                b.push(env(id));
            }
            assert_eq!(inbox.push_many(&mut b, zero, &shutdown).unwrap(), (0, 0));
            assert_eq!(inbox.lock().pushers, 0, "a zero timeout never waits");
            // Pushers that wait get in as room is made, in order.
            let (i, s) = (inbox.clone(), shutdown.clone());
            let pusher = std::thread::spawn(move || {
                while !b.is_empty() {
                    i.push_many(&mut b, patience, &s).unwrap();
                }
                i.push(env(2 * cap), patience, &s).unwrap();
            });
            let mut got = Vec::new();
            while got.len() <= 2 * cap {
                let e = inbox.recv(patience, Duration::ZERO, &shutdown).unwrap();
                got.push(e.msg_id as usize);
            }
            pusher.join().unwrap();
            assert_eq!(got, (0..=2 * cap).collect::<Vec<_>>(), "capacity {cap}");
        }
    }
}
