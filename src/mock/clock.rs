//! The mock's virtual clock: opt-in per cluster ([`super::MockCluster::set_clock`]).
//!
//! On a virtual clock time stands still until the test advances it. A
//! delayed message is not handed to the delay thread: it waits in a queue
//! ordered by (due time, sender, destination, number on its link, copy),
//! which only [`VirtualClock::advance`] and [`VirtualClock::run_until_idle`]
//! drain, so the same sends in the same order land in the same order,
//! whatever the threads do. A receive with a timeout waits until a message
//! arrives, the server closes, or virtual time reaches its deadline.

use super::server::{self, Core, Msg};
use super::trace::{Event, Trace};
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// Which clock a mock cluster runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Delays and timeouts pass in real time (the default).
    Real,
    /// Time passes only when the test advances it.
    Virtual,
}

/// The order in which due messages land: due time (µs), sender,
/// destination, number on the link, copy, and the order they were
/// scheduled in (only to tell apart two messages equal in all the rest,
/// which a reseeded link can make).
type Key = (u64, i64, i64, u64, u8, u64);

#[derive(Default)]
struct State {
    queue: BTreeMap<Key, Msg>,
    scheduled: u64,
    stopped: bool,
    /// Receives asleep in virtual time that have seen every change so
    /// far: a wake-up (below) counts them out, and each counts itself in
    /// again when it goes back to sleep.
    parked: usize,
    /// Wake-ups so far, to tell a real one from a spurious one.
    wakeups: u64,
}

/// Virtual time and the messages waiting for it.
#[derive(Default)]
pub(crate) struct VirtualClock {
    /// Virtual time in µs since the clock started; changed only under
    /// `state`'s lock, read without it.
    now_us: Arc<AtomicU64>,
    state: Mutex<State>,
    /// Signalled when time moves, a message lands in an inbox, or a
    /// server closes: what a receive waiting in virtual time waits for.
    changed: Condvar,
    /// Serializes advances, so each one drains in key order.
    advancing: Mutex<()>,
}

/// Where a cluster's virtual clock lives once it has one; shared by the
/// cluster and its servers.
pub(crate) type ClockCell = Arc<OnceLock<Arc<VirtualClock>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl VirtualClock {
    /// A clock at 0 whose time the trace records (as `t_us`).
    pub fn new(trace: &Trace) -> VirtualClock {
        let clock = VirtualClock::default();
        trace.use_clock(clock.now_us.clone());
        clock
    }

    /// Virtual time since the clock started.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.now_us.load(Ordering::Acquire))
    }

    /// Queues `m` to land `after` from now; gives it back once the cluster
    /// closed.
    pub fn schedule(&self, after: Duration, m: Msg) -> std::result::Result<(), Box<Msg>> {
        let mut s = lock(&self.state);
        if s.stopped {
            return Err(Box::new(m));
        }
        let due = self
            .now_us
            .load(Ordering::Acquire)
            .saturating_add(micros(after));
        let n = s.scheduled;
        s.scheduled += 1;
        let t = &m.tag;
        s.queue.insert((due, t.from, t.to, t.seq, t.copy, n), m);
        Ok(())
    }

    /// Receives asleep in virtual time that have seen the latest advance,
    /// landing and close: until time moves or a message lands, they stay
    /// asleep.
    pub fn parked(&self) -> usize {
        lock(&self.state).parked
    }

    /// Messages waiting for their due time.
    pub fn pending(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Moves time forward by `by`, delivering in key order every message
    /// due by then (time shows each one's due time while it lands); how
    /// many landed (one that finds a full inbox is dropped and not counted).
    pub fn advance(&self, by: Duration, trace: &Trace) -> usize {
        let _one = lock(&self.advancing);
        let end = self
            .now_us
            .load(Ordering::Acquire)
            .saturating_add(micros(by));
        let n = self.drain(Some(end), trace);
        self.set_now(lock(&self.state), end);
        n
    }

    /// Delivers every waiting message, moving time to each one's due time;
    /// how many landed, as [`VirtualClock::advance`].
    pub fn run_until_idle(&self, trace: &Trace) -> usize {
        let _one = lock(&self.advancing);
        self.drain(None, trace)
    }

    /// Lands the messages due by `end` (all for `None`), one at a time in
    /// key order; the lock is not held while one lands (a landing wakes
    /// receivers, see [`VirtualClock::poke`]).
    fn drain(&self, end: Option<u64>, trace: &Trace) -> usize {
        let mut delivered = 0;
        loop {
            let mut s = lock(&self.state);
            let Some(entry) = s.queue.first_entry() else {
                return delivered;
            };
            let due = entry.key().0;
            if end.is_some_and(|e| due > e) {
                return delivered;
            }
            let m = entry.remove();
            self.set_now(s, due);
            m.from.delayed.fetch_sub(1, Ordering::AcqRel);
            delivered += server::land(m, trace).is_ok() as usize;
        }
    }

    /// Sets the time (never backwards) and wakes the waiting receivers.
    fn set_now(&self, mut s: MutexGuard<'_, State>, us: u64) {
        if us > self.now_us.load(Ordering::Acquire) {
            self.now_us.store(us, Ordering::Release);
        }
        self.wake(&mut s);
    }

    /// Wakes the receivers waiting in virtual time so they look again:
    /// called after a message lands in an inbox and when a server closes.
    pub fn poke(&self) {
        self.wake(&mut lock(&self.state));
    }

    fn wake(&self, s: &mut State) {
        s.parked = 0;
        s.wakeups += 1;
        self.changed.notify_all();
    }

    /// Stops the clock (later schedules fail) and records every waiting
    /// message as lost to the close.
    pub fn stop(&self, trace: &Trace) {
        let lost = {
            let mut s = lock(&self.state);
            s.stopped = true;
            self.wake(&mut s);
            std::mem::take(&mut s.queue)
        };
        for m in lost.into_values() {
            m.from.delayed.fetch_sub(1, Ordering::AcqRel);
            m.from.stats.dropped.closed.inc();
            trace.record(Event::DroppedClosed, &m.tag, || Value::Null);
        }
    }

    /// A receive on `core` that waits up to `timeout` of virtual time:
    /// `take` is tried (it must not block) whenever something changed,
    /// until it gives a message or fails other than by timing out, or
    /// virtual time reaches the deadline (`Timeout`).
    pub fn recv<T>(
        &self,
        core: &Core,
        timeout: Duration,
        mut take: impl FnMut() -> Result<T>,
    ) -> Result<T> {
        let deadline = self
            .now_us
            .load(Ordering::Acquire)
            .saturating_add(micros(timeout));
        loop {
            match take() {
                Err(e) if e.status == crate::error::Status::Timeout => {}
                r => return r,
            }
            let mut s = lock(&self.state);
            // A push or close after the take pokes under this lock: checked
            // here, under it, no wake-up is lost.
            while !core.shutdown.is_fired() && core.inbox.is_empty() {
                if self.now_us.load(Ordering::Acquire) >= deadline {
                    return Err(Error::timeout());
                }
                let seen = s.wakeups;
                s.parked += 1;
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
                if s.wakeups == seen {
                    s.parked -= 1; // spurious: nobody counted it out
                }
            }
        }
    }
}
