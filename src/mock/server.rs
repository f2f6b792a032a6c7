//! A mock server: the node interface over in-process queues, with the
//! cluster's partitions and holds and the server's own fault settings.

use super::clock::{ClockCell, VirtualClock};
use super::trace::{Event, Tag, Trace};
use super::{Hold, Shared, Topology, TopologyCache};
use crate::backend::Transport;
use crate::config::{Config, BROADCAST};
use crate::envelope::{Envelope, Outgoing, INLINE};
use crate::error::{Error, Result, Status};
use crate::fault::{Decision, FaultCmd, Faults};
use crate::inbox::{Burst, Inbox, Sink, Slot, MOCK_LANES};
use crate::stats::{NodeStats, Report};
use crate::sync::{PushError, Shutdown, Timeout, WhenFull, HANDOFF_SPIN};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One incarnation of a server: a re-added id gets a new one.
pub(crate) struct Core {
    pub id: i64,
    pub inbox: Inbox,
    pub shutdown: Shutdown,
    pub stats: NodeStats,
    pub faults: Faults,
    /// Messages from this server waiting out a delay.
    pub delayed: AtomicUsize,
    /// The cluster's virtual clock, once it has one.
    pub clock: ClockCell,
}

impl Core {
    pub fn new(id: i64, inbox_size: usize, seed: u64, clock: ClockCell) -> Core {
        Core {
            id,
            // On the virtual clock, one lane: inbox order is landing order.
            inbox: match clock.get() {
                Some(_) => Inbox::new(inbox_size),
                None => Inbox::with_lanes(inbox_size, MOCK_LANES),
            },
            shutdown: Shutdown::default(),
            stats: NodeStats::default(),
            faults: Faults::new(seed),
            delayed: AtomicUsize::new(0),
            clock,
        }
    }

    /// The lane of the other servers' inboxes this server's messages go
    /// into (its id's: see [`MOCK_LANES`]).
    fn lane(&self) -> usize {
        self.id as usize
    }

    /// Stops the server: wakes blocked calls and empties the inbox, counting
    /// what it throws away as `discarded`, as a real node does.
    pub fn close(&self) {
        if self.inbox.close(&self.shutdown) {
            let left = self.inbox.drain() as u64;
            self.stats.discarded.add(left);
        }
        self.poke();
    }

    /// Wakes the receives waiting in virtual time, if the cluster has a
    /// virtual clock.
    fn poke(&self) {
        if let Some(c) = self.clock.get() {
            c.poke();
        }
    }
}

/// A message on its way: delayed or held.
pub(crate) struct Msg {
    pub from: Arc<Core>,
    pub to: Arc<Core>,
    pub env: Envelope,
    pub tag: Tag,
}

enum Pushed {
    Ok,
    Full,
    SenderClosed,
    DestClosed,
}

/// How often a sender waiting for room checks that it is still running.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// In `send_bursts`' table of copies: not a destination of the message.
const NOT_TO: u8 = u8::MAX;

/// Pushes into `to`'s inbox, waiting up to `timeout` for room; gives up
/// when either server closes.
fn push(from: &Core, to: &Core, mut env: Envelope, timeout: Timeout) -> Pushed {
    // The first try waits for nothing and reads no clock.
    let mut wait = Duration::ZERO;
    let mut end = None;
    loop {
        match to.inbox.push(from.lane(), env, Some(wait), &to.shutdown) {
            Ok(()) => return Pushed::Ok,
            Err((PushError::Closed, _)) => return Pushed::DestClosed,
            Err((PushError::Full, back)) => env = back,
        }
        if from.shutdown.is_fired() {
            return Pushed::SenderClosed;
        }
        let end = *end.get_or_insert_with(|| crate::sync::deadline(timeout));
        wait = end.map_or(WAIT_SLICE, |e| {
            e.saturating_duration_since(Instant::now()).min(WAIT_SLICE)
        });
        if wait.is_zero() {
            return Pushed::Full;
        }
    }
}

/// Whose message the mock delivers, for its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// A send being made: counted as sent once delivered; a full inbox
    /// drops or keeps it as the sender asked.
    Now(WhenFull),
    /// One already counted as sent (delayed or held): a full inbox drops it.
    InFlight,
}

/// Messages a send delivered and their payload bytes, added to the
/// sender's counters once a send (all of a broadcast's copies) is done:
/// two atomic additions a send, not two a copy.
#[derive(Default)]
pub(crate) struct Sent {
    n: u64,
    bytes: u64,
}

impl Sent {
    fn count(self, from: &Core) {
        if self.n > 0 {
            from.stats.sent.add(self.n);
            from.stats.sent_bytes.add(self.bytes);
        }
    }
}

/// Puts `env` (its pid already the sender's) into `to`'s inbox and counts
/// the outcome (see [`Offer`]): what was sent is added to `sent`, for the
/// caller to count, or counted at once without one. A destination that
/// closed meanwhile loses the message silently, as a crashed machine would.
pub(crate) fn deliver(
    from: &Core,
    to: &Core,
    env: Envelope,
    timeout: Timeout,
    offer: Offer,
    trace: Option<(&Trace, &Tag)>,
    sent: Option<&mut Sent>,
) -> Result<()> {
    let len = env.data.len() as u64;
    let (event, result) = match push(from, to, env, timeout) {
        Pushed::Ok => {
            if offer != Offer::InFlight {
                let mut now = Sent::default();
                let sent = sent.unwrap_or(&mut now);
                sent.n += 1;
                sent.bytes += len;
                now.count(from);
            }
            (Event::Delivered, Ok(()))
        }
        Pushed::Full => {
            let what = format_args!("inbox of server {}", to.id);
            match offer {
                Offer::Now(WhenFull::Keep) => (Event::Kept, Err(WhenFull::Keep.error(what))),
                _ => {
                    from.stats.dropped.queue_full.inc();
                    (Event::DroppedFull, Err(WhenFull::Drop.error(what)))
                }
            }
        }
        Pushed::DestClosed => {
            from.stats.dropped.closed.inc();
            (Event::DroppedClosed, Ok(()))
        }
        Pushed::SenderClosed => return Err(Error::closed()),
    };
    if let Some((t, tag)) = trace {
        t.record(event, tag, || Value::Null);
    }
    if event == Event::Delivered {
        to.poke();
    }
    result
}

/// The delay thread's handler: a delayed message arrives, without waiting
/// for room (a full inbox drops it).
pub(crate) fn arrive(m: Msg, trace: &Trace) {
    m.from.delayed.fetch_sub(1, Ordering::AcqRel);
    let _ = land(m, trace);
}

/// Delivers a message that was in flight (delayed or held): never waits
/// for room, so a full inbox drops it (counted).
pub(crate) fn land(m: Msg, trace: &Trace) -> Result<()> {
    deliver(
        &m.from,
        &m.to,
        m.env,
        Some(Duration::ZERO),
        Offer::InFlight,
        Some((trace, &m.tag)),
        None,
    )
}

/// A server of a mock cluster, usable wherever a [`crate::Node`] is.
/// Several handles may name the same server; closing one closes it, and
/// dropping one does not (the server lives until closed or the cluster is).
pub struct MockServer {
    pub(crate) core: Arc<Core>,
    pub(crate) cluster: Arc<Shared>,
    /// The topology as this server's sends last saw it.
    pub(crate) topo: TopologyCache,
}

impl MockServer {
    /// Sends `env` to `env.pid` (an id, BROADCAST or its own id); a full
    /// destination drops or keeps it as `when_full` says (a broadcast's
    /// copies are dropped).
    fn send_env(&self, mut env: Envelope, timeout: Timeout, when_full: WhenFull) -> Result<()> {
        let me = &self.core;
        if me.shutdown.is_fired() {
            return Err(Error::closed());
        }
        self.cluster.config.check_size(env.data.len())?;
        let to = env.pid;
        env.pid = me.id;
        // The topology as this server last saw it, if nothing changed since.
        self.cluster.cached(&self.topo, |topo| {
            if to == BROADCAST {
                let mut sent = Sent::default();
                let mut result = Ok(());
                for dest in topo.servers.iter().filter(|d| d.id != me.id) {
                    let (env, drop) = (env.clone(), WhenFull::Drop);
                    let r = self.route(topo, dest, env, timeout, drop, &mut sent);
                    if let Err(e) = r.as_ref() {
                        if e.status == Status::Closed {
                            result = r;
                            break;
                        }
                    }
                }
                sent.count(me);
                return result;
            }
            let dest = topo.find(to).ok_or_else(|| {
                Error::new(
                    Status::UnknownPeer,
                    format!("unknown destination id {to}: not an open server of the mock cluster"),
                )
            })?;
            let mut sent = Sent::default();
            let result = self.route(topo, dest, env, timeout, when_full, &mut sent);
            sent.count(me);
            result
        })
    }

    /// Sends one message to one destination, through the fault model when
    /// it has something to decide (a rule, a fault of either server, the
    /// trace). What goes straight to the destination's inbox is added to
    /// `sent`, for the caller to count; the fault model's deliveries count
    /// themselves.
    fn route(
        &self,
        topo: &Topology,
        dest: &Arc<Core>,
        env: Envelope,
        timeout: Timeout,
        when_full: WhenFull,
        sent: &mut Sent,
    ) -> Result<()> {
        let me = &self.core;
        if !self.cluster.trace.is_on() && !self.consults_faults(topo, dest) {
            let offer = Offer::Now(when_full);
            return deliver(me, dest, env, timeout, offer, None, Some(sent));
        }
        let trace = &*self.cluster.trace;
        let d = me.faults.decide(me.id, dest.id);
        let mut tag = Tag {
            from: me.id,
            to: dest.id,
            seq: d.seq,
            copy: 0,
            msg_id: env.msg_id,
        };
        trace.record(
            Event::Sent,
            &tag,
            || json!({"kind": env.kind, "len": env.data.len()}),
        );
        if dest.id == me.id {
            // Messages to oneself never cross the network: no faults.
            return deliver(
                me,
                dest,
                env,
                timeout,
                Offer::Now(when_full),
                Some((trace, &tag)),
                None,
            );
        }
        if let Some(reason) = self.lost_to(topo, dest, &d, dest.faults.cuts_in(me.id)) {
            me.stats.dropped.fault.inc();
            trace.record(Event::DroppedFault, &tag, || json!({ "reason": reason }));
            return Ok(());
        }
        if d.duplicate {
            me.stats.duplicated.inc();
            trace.record(Event::Duplicated, &tag, || Value::Null);
        }
        let hold = topo.holds.get(&(me.id, dest.id));
        let mut result = Ok(());
        for (i, delay) in d.copies().iter().enumerate() {
            tag.copy = i as u8;
            // A message that waits (held or delayed) keeps both servers.
            let waiting = || Msg {
                from: me.clone(),
                to: dest.clone(),
                env: env.clone(),
                tag,
            };
            let r = match hold {
                Some(h) => self.hold(h, waiting(), timeout, when_full),
                None if !delay.is_zero() => self.delay(
                    waiting(),
                    *delay,
                    topo.servers.len().saturating_sub(1),
                    when_full,
                ),
                None => deliver(
                    me,
                    dest,
                    env.clone(),
                    timeout,
                    Offer::Now(when_full),
                    Some((trace, &tag)),
                    None,
                ),
            };
            if i == 0 {
                result = r;
            }
        }
        result
    }

    fn hold(&self, hold: &Hold, m: Msg, timeout: Timeout, when_full: WhenFull) -> Result<()> {
        let trace = &*self.cluster.trace;
        let mut q = hold.lock();
        if q.released {
            // Released since our snapshot: the link is open again.
            drop(q);
            return deliver(
                &m.from,
                &m.to,
                m.env,
                timeout,
                Offer::Now(when_full),
                Some((trace, &m.tag)),
                None,
            );
        }
        if q.msgs.len() >= self.cluster.config.outbox_size {
            return Err(self.full(&m, "held link", when_full));
        }
        self.core.stats.sent.inc();
        self.core.stats.sent_bytes.add(m.env.data.len() as u64);
        trace.record(Event::Held, &m.tag, || Value::Null);
        q.msgs.push(m);
        Ok(())
    }

    /// Schedules `m`: at most OutboxSize per peer in flight from one sender.
    fn delay(&self, m: Msg, delay: Duration, peers: usize, when_full: WhenFull) -> Result<()> {
        let me = &self.core;
        let bound = self.cluster.config.outbox_size * peers.max(1);
        if me.delayed.fetch_add(1, Ordering::AcqRel) >= bound {
            me.delayed.fetch_sub(1, Ordering::AcqRel);
            return Err(self.full(&m, "delayed messages", when_full));
        }
        me.stats.sent.inc();
        me.stats.sent_bytes.add(m.env.data.len() as u64);
        let trace = &*self.cluster.trace;
        trace.record(
            Event::Delayed,
            &m.tag,
            || json!({"delay_us": delay.as_micros() as u64}),
        );
        let scheduled = match self.cluster.clock.get() {
            Some(clock) => clock.schedule(delay, m).map_err(|m| *m),
            None => self.cluster.delayer.schedule(delay, m),
        };
        if let Err(m) = scheduled {
            me.delayed.fetch_sub(1, Ordering::AcqRel);
            me.stats.dropped.closed.inc();
            trace.record(Event::DroppedClosed, &m.tag, || Value::Null);
        }
        Ok(())
    }

    /// On a virtual clock, a receive with a timeout other than 0 or forever
    /// waits in virtual time: the clock and the timeout.
    fn virtual_wait(&self, timeout: Timeout) -> Option<(&VirtualClock, Duration)> {
        let clock = self.cluster.clock.get()?;
        timeout.filter(|t| !t.is_zero()).map(|t| (&**clock, t))
    }

    /// Counts (unless kept) and reports a message that finds an in-flight
    /// bound hit.
    fn full(&self, m: &Msg, what: &str, when_full: WhenFull) -> Error {
        let event = match when_full {
            WhenFull::Drop => {
                self.core.stats.dropped.queue_full.inc();
                Event::DroppedFull
            }
            WhenFull::Keep => Event::Kept,
        };
        self.cluster.trace.record(event, &m.tag, || Value::Null);
        when_full.error(format_args!(
            "{what} from {} to {} (OutboxSize messages in flight)",
            m.tag.from, m.tag.to
        ))
    }
}

impl MockServer {
    /// Sends a batch as `send_copy` would one by one, but each destination
    /// gets its messages (in order, small ones as frames in one buffer) with
    /// one push into its inbox instead of one each: one lock, one wake-up
    /// and one topology snapshot a batch, not a message. Only when the
    /// batch waits for room without limit (so nothing is dropped for a full
    /// inbox) and every message either goes straight to its destinations
    /// or is lost: no held link, no delay of this server's, no trace;
    /// else `None`. The fault model decides each copy as `route` would, in
    /// the same order (so a seed gives the same fates either way): lost to
    /// a cut, a partition or the drop probability, or duplicated.
    /// Counters and errors are those of the one-by-one sends: the batch
    /// stops before its first message too large or to an unknown id, and a
    /// destination that closes loses the rest (counted). Messages to
    /// different destinations keep no order between them, as on a network.
    /// If this server closes while it waits for room, what reached no
    /// destination yet is not sent, and the count returned is of the
    /// leading messages that reached all theirs.
    fn send_bursts(&self, msgs: &[Outgoing<'_>], timeout: Timeout) -> Option<(usize, Result<()>)> {
        let me = &self.core;
        if timeout.is_some() || msgs.len() < 2 {
            return None;
        }
        if me.shutdown.is_fired() {
            return Some((0, Err(Error::closed())));
        }
        let topo = self.cluster.snapshot();
        if !topo.holds.is_empty() || self.cluster.trace.is_on() {
            return None;
        }
        // The batch stops before its first bad message.
        let mut stop = Ok(());
        let mut k = 0;
        for m in msgs {
            let bad = self
                .cluster
                .config
                .check_size(m.data.len())
                .err()
                .or_else(|| {
                    (m.to != BROADCAST && topo.find(m.to).is_none()).then(|| {
                        Error::new(
                            Status::UnknownPeer,
                            format!(
                                "unknown destination id {}: not an open server of the mock cluster",
                                m.to
                            ),
                        )
                    })
                });
            if let Some(e) = bad {
                stop = Err(e);
                break;
            }
            k += 1;
        }
        let msgs = &msgs[..k];
        let dests = topo.servers.len();
        let goes_to =
            |m: &Outgoing<'_>, d: &Core| m.to == d.id || (m.to == BROADCAST && d.id != me.id);
        // Where `route` would consult the fault model, and which senders'
        // messages each destination refuses now (one look a batch).
        let faulty: Vec<bool> = topo
            .servers
            .iter()
            .map(|d| self.consults_faults(&topo, d))
            .collect();
        let cut_in: Vec<bool> = topo
            .servers
            .iter()
            .map(|d| d.faults.cuts_in(me.id))
            .collect();
        // Held while the batch's fates are decided, so taken after the
        // other servers' fault locks (cuts_in) were let go.
        let mut decisions = me.faults.decisions();
        if decisions.delays() {
            return None;
        }
        let mut bursts: Vec<Burst> = topo.servers.iter().map(|_| Burst::new(me.id)).collect();
        // Copies of message j for destination i, at [j * dests + i]
        // (NOT_TO: i is not one of j's destinations).
        let mut copies = vec![NOT_TO; msgs.len() * dests];
        for (j, m) in msgs.iter().enumerate() {
            // A payload too large for a frame is copied once and shared by
            // every destination, as a broadcast's is on the one-by-one path.
            let big =
                (m.data.len() > INLINE).then(|| Envelope::new(me.id, m.msg_id, m.kind, m.data));
            for (i, dest) in topo.servers.iter().enumerate() {
                if !goes_to(m, dest) {
                    continue;
                }
                let n = match faulty[i] {
                    true => self.fate(&topo, dest, &decisions.next(me.id, dest.id), cut_in[i]),
                    false => 1,
                };
                for _ in 0..n {
                    match &big {
                        Some(env) => bursts[i].push(env.clone()),
                        None => bursts[i].frames().push_msg(m.msg_id, m.kind, m.data),
                    }
                }
                copies[j * dests + i] = n;
            }
        }
        drop(decisions);
        let mut pushed = vec![0; dests];
        for ((dest, pushed), mut burst) in topo.servers.iter().zip(&mut pushed).zip(bursts) {
            while !burst.is_empty() {
                if me.shutdown.is_fired() {
                    stop = Err(Error::closed());
                    break;
                }
                match dest
                    .inbox
                    .push_many(me.lane(), &mut burst, Some(WAIT_SLICE), &dest.shutdown)
                {
                    Ok((n, bytes)) => {
                        me.stats.sent.add(n as u64);
                        me.stats.sent_bytes.add(bytes);
                        *pushed += n;
                        if n > 0 {
                            dest.poke();
                        }
                    }
                    Err(_) => {
                        // Closed meanwhile: lost, as a crashed machine's.
                        me.stats.dropped.closed.add(burst.len() as u64);
                        *pushed = usize::MAX;
                        break;
                    }
                }
            }
            if stop.is_err() && me.shutdown.is_fired() {
                break;
            }
        }
        // The leading messages all of whose copies reached their
        // destinations; the fault model's losses and duplicates are
        // counted for those (a sender that closed midway sent no more).
        let mut seen = vec![0; dests];
        let (mut done, mut lost, mut twice) = (0, 0, 0);
        'msgs: for j in 0..msgs.len() {
            let copies = &copies[j * dests..(j + 1) * dests];
            for ((&n, seen), &pushed) in copies.iter().zip(&mut seen).zip(&pushed) {
                if n == NOT_TO {
                    continue;
                }
                *seen += n as usize;
                if *seen > pushed {
                    break 'msgs;
                }
            }
            lost += copies.iter().filter(|&&n| n == 0).count() as u64;
            twice += copies.iter().filter(|&&n| n == 2).count() as u64;
            done += 1;
        }
        if lost + twice > 0 {
            me.stats.dropped.fault.add(lost);
            me.stats.duplicated.add(twice);
        }
        Some((done, stop))
    }

    /// How many copies of a message decided `d` reach `dest` (of `topo`)
    /// from this server, as `route` decides it: none when lost, two when
    /// duplicated (the caller counts both). `cut_in`: `dest` refuses this
    /// server's messages.
    fn fate(&self, topo: &Topology, dest: &Core, d: &Decision, cut_in: bool) -> u8 {
        if dest.id == self.core.id {
            // Messages to oneself never cross the network: no faults.
            return 1;
        }
        match self.lost_to(topo, dest, d, cut_in) {
            Some(_) => 0,
            None if d.duplicate => 2,
            None => 1,
        }
    }

    /// Why the fault model loses a message decided `d` from this server to
    /// `dest` (of `topo`), if it does; `cut_in`: `dest` refuses this
    /// server's messages.
    fn lost_to(
        &self,
        topo: &Topology,
        dest: &Core,
        d: &Decision,
        cut_in: bool,
    ) -> Option<&'static str> {
        if d.cut {
            Some("cut_out")
        } else if cut_in {
            Some("cut_in")
        } else if topo.blocked(self.core.id, dest.id) {
            Some("partition")
        } else if d.drop {
            Some("drop")
        } else {
            None
        }
    }

    /// Whether a message from this server to `dest` goes through the fault
    /// model: a partition or hold is in place, or either server has a fault.
    fn consults_faults(&self, topo: &Topology, dest: &Core) -> bool {
        topo.has_rules() || self.core.faults.is_active() || dest.faults.is_active()
    }
}

impl Transport for MockServer {
    fn pid(&self) -> i64 {
        self.core.id
    }

    /// The other open servers of the cluster, by id: it changes as servers
    /// are added and closed.
    fn peers(&self) -> Vec<i64> {
        let me = self.core.id;
        self.cluster
            .snapshot()
            .servers
            .iter()
            .map(|c| c.id)
            .filter(|&id| id != me)
            .collect()
    }

    /// The size is checked before the payload is copied.
    fn send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.cluster.config.check_size(msg.data.len())?;
        self.send(msg.to_envelope(), timeout)
    }

    fn send(&self, env: Envelope, timeout: Timeout) -> Result<()> {
        self.send_env(env, timeout, WhenFull::Drop)
    }

    /// As `send_copy` one by one; a batch that waits without limit, while
    /// no link is held, this server delays nothing and the trace is off,
    /// goes in bursts (see `send_bursts`).
    fn send_copies(&self, msgs: &[Outgoing<'_>], timeout: Timeout) -> (usize, Result<()>) {
        if let Some(done) = self.send_bursts(msgs, timeout) {
            return done;
        }
        for (i, &msg) in msgs.iter().enumerate() {
            if let Err(e) = self.send_copy(msg, timeout) {
                return (i, Err(e));
            }
        }
        (msgs.len(), Ok(()))
    }

    fn try_send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.cluster.config.check_size(msg.data.len())?;
        self.send_env(msg.to_envelope(), timeout, WhenFull::Keep)
    }

    fn recv_one(&self, timeout: Timeout, out: &mut dyn Slot) -> Result<()> {
        let c = &self.core;
        // Mock messages come one at a time from the senders' threads.
        match self.virtual_wait(timeout) {
            Some((clock, t)) => clock.recv(c, t, || {
                let zero = Duration::ZERO;
                c.inbox.recv_one(Some(zero), zero, &c.shutdown, &mut *out)
            })?,
            None => c.inbox.recv_one(timeout, HANDOFF_SPIN, &c.shutdown, out)?,
        };
        Ok(())
    }

    fn recv_into(&self, max: usize, timeout: Timeout, out: &mut dyn Sink) -> Result<usize> {
        let c = &self.core;
        let n = match self.virtual_wait(timeout) {
            Some((clock, t)) => clock.recv(c, t, || {
                let zero = Duration::ZERO;
                c.inbox.recv_items(max, Some(zero), zero, &c.shutdown, out)
            })?,
            None => c
                .inbox
                .recv_items(max, timeout, HANDOFF_SPIN, &c.shutdown, out)?,
        };
        Ok(n)
    }

    fn inbox(&self) -> &Inbox {
        &self.core.inbox
    }

    /// Leaves the cluster (every peer list), wakes blocked calls and drops
    /// what is in the inbox. Messages still on their way to it are lost.
    fn close(&self) {
        self.cluster.remove(&self.core);
        self.core.close();
    }

    fn is_closed(&self) -> bool {
        self.core.shutdown.is_fired()
    }

    fn stats(&self) -> Value {
        let c = &self.core;
        let mut extra = serde_json::Map::new();
        extra.insert("in_flight".into(), c.delayed.load(Ordering::Acquire).into());
        Report {
            pid: c.id,
            transport: "mock",
            closed: c.shutdown.is_fired(),
            sent: c.stats.sent.get(),
            sent_bytes: c.stats.sent_bytes.get(),
            inbox: c.inbox.counts(),
            counters: &c.stats,
            faults: c.faults.describe(),
            peers: self
                .peers()
                .into_iter()
                .map(|id| json!({"id": id, "connected": true}))
                .collect(),
            extra,
        }
        .to_json()
    }

    /// Fault settings of this server; cuts may name any id, open or not.
    fn fault(&self, cmd: &FaultCmd) -> Result<()> {
        self.core.faults.apply(cmd)
    }

    fn config(&self) -> &Config {
        &self.cluster.config
    }
}
