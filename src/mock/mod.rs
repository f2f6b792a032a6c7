//! The mock network: an in-process cluster whose servers have the same node
//! interface as real TCP nodes, with partitions, one-way cuts, loss,
//! duplication, random delay, held links and a trace of every message.
//!
//! Model:
//! - Each server has a bounded inbox of InboxSize. A send puts the message
//!   straight into the destination's inbox; when it is full the sender waits
//!   up to its timeout (as a TCP sender waits for a live peer), then the
//!   message is dropped, counted as `queue_full` and reported as
//!   `Status::Full` (a broadcast still returns Ok).
//! - Delayed and held messages are in flight: at most OutboxSize per peer
//!   delayed per sender, at most OutboxSize held per link; beyond that they
//!   are dropped as `queue_full`. A delayed or released message that finds
//!   the inbox full is dropped (`queue_full`, traced `dropped_full`).
//! - Fault decisions come from [`crate::fault`]: a pure function of (seed,
//!   from, to, n). One delay thread per cluster, started with the first delay;
//!   or, on the virtual clock ([`Clock`]), no thread: delayed messages wait in
//!   an ordered queue until the test advances time.
//! - Without any rule, fault or trace, a send takes no lock but its server's
//!   own topology cache (`Shared::cached`) and the destination's inbox,
//!   and a broadcast shares one payload.

mod clock;
mod server;
pub mod svg;
pub mod trace;

use crate::config::{Config, BROADCAST};
use crate::error::{Error, Result, Status};
use crate::fault::schedule::Delayer;
use crate::node::Node;
use crate::sync::Padded;
pub use clock::Clock;
use clock::{ClockCell, VirtualClock};
pub use server::MockServer;
use server::{Core, Msg};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use trace::{Event, Trace};

/// A link whose traffic is kept until it is released.
#[derive(Default)]
pub(crate) struct Hold {
    queue: Mutex<HoldQueue>,
}

#[derive(Default)]
pub(crate) struct HoldQueue {
    pub msgs: Vec<Msg>,
    pub released: bool,
}

impl Hold {
    pub fn lock(&self) -> MutexGuard<'_, HoldQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Who is in the cluster and which rules apply: an immutable snapshot,
/// replaced as a whole on every change.
#[derive(Clone, Default)]
pub(crate) struct Topology {
    /// Open servers, sorted by id.
    pub servers: Vec<Arc<Core>>,
    /// Partition group of each named id; unnamed ids share one more group.
    pub groups: HashMap<i64, usize>,
    /// Held links, by (from, to).
    pub holds: HashMap<(i64, i64), Arc<Hold>>,
}

impl Topology {
    pub fn find(&self, id: i64) -> Option<&Arc<Core>> {
        self.servers
            .binary_search_by_key(&id, |c| c.id)
            .ok()
            .map(|i| &self.servers[i])
    }

    /// Whether a partition separates `a` from `b`.
    pub fn blocked(&self, a: i64, b: i64) -> bool {
        let group = |id| self.groups.get(&id).copied().unwrap_or(usize::MAX);
        !self.groups.is_empty() && group(a) != group(b)
    }

    /// Whether any partition or hold is in place.
    pub fn has_rules(&self) -> bool {
        !self.groups.is_empty() || !self.holds.is_empty()
    }
}

/// A server's copy of the topology and the version it was taken at (see
/// [`Shared::cached`]); on cache lines of its own, as its lock is written
/// by the sending thread.
#[derive(Default)]
pub(crate) struct TopologyCache(Padded<Mutex<Option<Versioned>>>);

/// A topology and its version.
type Versioned = (u64, Arc<Topology>);

/// State shared by the cluster handle and its servers.
pub(crate) struct Shared {
    pub config: Config,
    pub seed: u64,
    topo: RwLock<Arc<Topology>>,
    /// Bumped (under `topo`'s write lock) whenever `topo` is replaced: a
    /// server that cached the topology checks it with a load (see
    /// [`Shared::cached`]).
    version: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    pub delayer: Delayer<Msg>,
    pub trace: Arc<Trace>,
    /// The virtual clock, once the cluster has one (see [`Clock`]).
    pub clock: ClockCell,
}

impl Shared {
    /// The current topology.
    pub fn snapshot(&self) -> Arc<Topology> {
        self.topo.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on the current topology, as `f(&self.snapshot())` would,
    /// but through `cache` (a server's own): while no change was made since
    /// the cache was filled, that takes one load of the shared version and
    /// the cache's uncontended lock, not the contended read lock and
    /// reference count of the shared snapshot (two atomic read-modify-
    /// writes each on lines every sender writes). A cache in use by another
    /// thread (two sends through one server at once) is passed by.
    pub fn cached<R>(&self, cache: &TopologyCache, f: impl FnOnce(&Topology) -> R) -> R {
        let Ok(mut c) = cache.0.try_lock() else {
            return f(&self.snapshot());
        };
        let version = self.version.load(Ordering::Acquire);
        let fresh = match &*c {
            Some((v, topo)) if *v == version => topo,
            _ => {
                let guard = self.topo.read().unwrap_or_else(|e| e.into_inner());
                let v = self.version.load(Ordering::Acquire);
                &c.insert((v, guard.clone())).1
            }
        };
        f(fresh)
    }

    /// Replaces the topology (under its write lock) and bumps the version.
    fn replace(&self, guard: &mut Arc<Topology>, topo: Arc<Topology>) -> Arc<Topology> {
        let old = std::mem::replace(guard, topo);
        self.version.fetch_add(1, Ordering::Release);
        old
    }

    /// Changes the topology (copy on write); refused once the cluster closed.
    fn update<R>(&self, f: impl FnOnce(&mut Topology) -> Result<R>) -> Result<R> {
        let mut guard = self.topo.write().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(Status::Closed, "mock cluster is closed"));
        }
        let mut t = Topology::clone(&guard);
        let r = f(&mut t)?;
        self.replace(&mut guard, Arc::new(t));
        Ok(r)
    }

    /// Takes a closed server out of the topology.
    pub fn remove(&self, core: &Arc<Core>) {
        let _ = self.update(|t| {
            t.servers.retain(|c| !Arc::ptr_eq(c, core));
            Ok(())
        });
    }
}

/// An in-process cluster of mock servers. Closing (or dropping) it closes
/// every server; server handles stay valid and report closed.
pub struct MockCluster {
    shared: Arc<Shared>,
}

fn check_id(id: i64, what: &str) -> Result<()> {
    if id == BROADCAST {
        return Err(Error::new(
            Status::InvalidArg,
            format!("{what} {id} is BROADCAST, not a server id"),
        ));
    }
    Ok(())
}

impl MockCluster {
    /// A cluster from JSON text, a file path, or `None` for an empty one.
    /// InboxSize, OutboxSize and MaxMessageSize apply; every configured id
    /// is started as a server (addresses are not used). `seed` seeds every
    /// server's fault decisions and the shuffles of released links.
    pub fn new(config: Option<&str>, seed: u64) -> Result<MockCluster> {
        let config = match config {
            Some(c) => Config::load_for_mock(c)?,
            None => Config::from_json("{}")?,
        };
        MockCluster::with_config(config, seed)
    }

    /// A cluster from a parsed configuration; see [`MockCluster::new`].
    pub fn with_config(config: Config, seed: u64) -> Result<MockCluster> {
        let trace = Arc::new(Trace::default());
        let t = trace.clone();
        let shared = Arc::new(Shared {
            delayer: Delayer::new("cluster-mock-delay", move |m| server::arrive(m, &t)),
            trace,
            seed,
            topo: RwLock::default(),
            version: AtomicU64::new(0),
            closed: Default::default(),
            clock: ClockCell::default(),
            config,
        });
        let mock = MockCluster { shared };
        for id in mock.shared.config.ids() {
            mock.add_server(id)?;
        }
        Ok(mock)
    }

    /// Starts server `id` (any id but BROADCAST), or re-adds it with an empty
    /// inbox after it was closed. If it is open already, returns another
    /// handle to the same server. Errors: InvalidArg, Closed.
    pub fn add_server(&self, id: i64) -> Result<Node> {
        check_id(id, "server id")?;
        let cfg = &self.shared.config;
        let core = self.shared.update(|t| {
            if let Some(c) = t.find(id) {
                return Ok(c.clone());
            }
            let clock = self.shared.clock.clone();
            let c = Arc::new(Core::new(id, cfg.inbox_size, self.shared.seed, clock));
            let at = t.servers.partition_point(|s| s.id < id);
            t.servers.insert(at, c.clone());
            Ok(c)
        })?;
        Ok(Node::from_transport(Arc::new(MockServer {
            core,
            cluster: self.shared.clone(),
            topo: TopologyCache::default(),
        })))
    }

    /// The ids of the open servers, ascending.
    pub fn servers(&self) -> Vec<i64> {
        self.shared
            .snapshot()
            .servers
            .iter()
            .map(|c| c.id)
            .collect()
    }

    /// Splits the cluster into `groups`: messages cross no group boundary.
    /// Ids not named form one more group (servers added later too). Replaces
    /// any earlier partition. An id in two groups is an InvalidArg error.
    pub fn partition(&self, groups: &[Vec<i64>]) -> Result<()> {
        let mut map = HashMap::new();
        for (g, ids) in groups.iter().enumerate() {
            for &id in ids {
                check_id(id, "partition id")?;
                if let Some(other) = map.insert(id, g) {
                    return Err(Error::new(
                        Status::InvalidArg,
                        format!("id {id} is in partition groups {other} and {g}"),
                    ));
                }
            }
        }
        self.shared.update(|t| {
            t.groups = map;
            Ok(())
        })
    }

    /// Removes the partition (cuts and holds stay).
    pub fn heal(&self) -> Result<()> {
        self.shared.update(|t| {
            t.groups.clear();
            Ok(())
        })
    }

    /// Keeps every later message from `from` to `to` until `release`.
    pub fn hold(&self, from: i64, to: i64) -> Result<()> {
        check_id(from, "hold from")?;
        check_id(to, "hold to")?;
        self.shared.update(|t| {
            t.holds.entry((from, to)).or_default();
            Ok(())
        })
    }

    /// Opens a held link and delivers what it kept, in order or shuffled
    /// (a permutation drawn from the seed), without waiting for room: a
    /// message that finds the inbox full or its server closed is dropped
    /// and counted. Returns how many were delivered; 0 if the link was not
    /// held.
    pub fn release(&self, from: i64, to: i64, shuffle: bool) -> Result<usize> {
        let Some(hold) = self.shared.snapshot().holds.get(&(from, to)).cloned() else {
            return Ok(0);
        };
        let trace = &*self.shared.trace;
        // Everything happens under the hold's lock, and the hold leaves the
        // topology last: a sender that still sees it queues behind the lock
        // and then finds it released, and one that no longer sees it comes
        // after the held messages were delivered. Either way FIFO holds.
        let mut q = hold.lock();
        if q.released {
            return Ok(0);
        }
        let mut msgs = std::mem::take(&mut q.msgs);
        if shuffle {
            crate::fault::shuffle(&mut msgs, self.shared.seed, from, to);
        }
        let mut n = 0;
        for m in msgs {
            n += server::land(m, trace).is_ok() as usize;
        }
        q.released = true;
        let _ = self.shared.update(|t| {
            if t.holds
                .get(&(from, to))
                .is_some_and(|h| Arc::ptr_eq(h, &hold))
            {
                t.holds.remove(&(from, to));
            }
            Ok(())
        });
        Ok(n)
    }

    /// Chooses the clock. A cluster starts on the real clock; switched to
    /// the virtual one (at most once, before any message was delayed on
    /// the real one) it stays there: time stands still until
    /// [`MockCluster::advance`] or [`MockCluster::run_until_idle`], delayed
    /// messages land in a deterministic order, receives with a timeout wait
    /// in virtual time, and the trace stamps every event with the virtual
    /// time (`t_us`). Errors: InvalidArg (back to real, or real delays in
    /// flight), Closed.
    pub fn set_clock(&self, clock: Clock) -> Result<()> {
        self.check_open()?;
        let is_virtual = self.shared.clock.get().is_some();
        match clock {
            Clock::Real if is_virtual => Err(Error::new(
                Status::InvalidArg,
                "a mock on the virtual clock cannot go back to the real one",
            )),
            Clock::Virtual if !is_virtual && !self.shared.delayer.is_empty() => Err(Error::new(
                Status::InvalidArg,
                "messages are delayed on the real clock: choose the virtual clock before any delayed send",
            )),
            Clock::Virtual => {
                let trace = &self.shared.trace;
                self.shared
                    .clock
                    .get_or_init(|| Arc::new(VirtualClock::new(trace)));
                // Inbox order is landing order from now on.
                for c in &self.shared.snapshot().servers {
                    c.inbox.merge_lanes();
                }
                Ok(())
            }
            Clock::Real => Ok(()),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::new(Status::Closed, "mock cluster is closed"));
        }
        Ok(())
    }

    /// The cluster's clock.
    pub fn clock(&self) -> Clock {
        match self.shared.clock.get() {
            Some(_) => Clock::Virtual,
            None => Clock::Real,
        }
    }

    fn virtual_clock(&self) -> Result<&VirtualClock> {
        self.shared.clock.get().map(|c| &**c).ok_or_else(|| {
            Error::new(
                Status::InvalidArg,
                "the mock runs on the real clock: switch it to the virtual clock first",
            )
        })
    }

    /// Virtual time since the virtual clock started. InvalidArg on the
    /// real clock.
    pub fn now(&self) -> Result<Duration> {
        Ok(self.virtual_clock()?.now())
    }

    /// Moves virtual time forward by `by`, delivering every delayed
    /// message due by then in the order (due time, sender, destination,
    /// number on the link, copy), each while the clock shows its due time;
    /// returns how many landed (one that finds a full inbox is dropped
    /// and counted). Receives waiting in virtual time wake as their
    /// deadlines pass. InvalidArg on the real clock; Closed once closed.
    pub fn advance(&self, by: Duration) -> Result<usize> {
        let clock = self.virtual_clock()?;
        self.check_open()?;
        Ok(clock.advance(by, &self.shared.trace))
    }

    /// Delivers every delayed message, moving virtual time to the due time
    /// of the last one (as [`MockCluster::advance`] would); how many landed.
    pub fn run_until_idle(&self) -> Result<usize> {
        let clock = self.virtual_clock()?;
        self.check_open()?;
        Ok(clock.run_until_idle(&self.shared.trace))
    }

    /// Delayed messages waiting for virtual time (0 on the real clock).
    pub fn pending(&self) -> usize {
        self.shared.clock.get().map_or(0, |c| c.pending())
    }

    /// Receives asleep in virtual time that have seen the latest advance
    /// and every message that landed (0 on the real clock): a test that
    /// waits until its receivers are parked before it advances time knows
    /// each of them saw every step, with no sleep.
    pub fn parked_receivers(&self) -> usize {
        self.shared.clock.get().map_or(0, |c| c.parked())
    }

    /// Switches the trace on or off.
    pub fn trace(&self, on: bool) {
        self.shared.trace.enable(on);
    }

    /// Takes the trace recorded so far: JSON lines, one per event.
    pub fn take_trace(&self) -> String {
        self.shared.trace.take()
    }

    /// Closes every server and the cluster; messages in flight are dropped
    /// and counted. Idempotent.
    pub fn close(&self) {
        let taken = {
            let mut guard = self.shared.topo.write().unwrap_or_else(|e| e.into_inner());
            if self.shared.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            self.shared
                .replace(&mut guard, Arc::new(Topology::default()))
        };
        for c in &taken.servers {
            c.close();
        }
        let trace = &*self.shared.trace;
        if let Some(clock) = self.shared.clock.get() {
            clock.stop(trace);
        }
        let mut lost: Vec<Msg> = self.shared.delayer.stop();
        for h in taken.holds.values() {
            let mut q = h.lock();
            q.released = true;
            lost.append(&mut q.msgs);
        }
        for m in lost {
            m.from.stats.dropped.closed.inc();
            trace.record(Event::DroppedClosed, &m.tag, || serde_json::Value::Null);
        }
    }

    /// Whether the cluster is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        self.close();
    }
}
