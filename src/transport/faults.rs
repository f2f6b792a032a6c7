//! The fault model on a real node's send path: cuts, loss, duplication and
//! delay are applied before a message enters its peer's queue (in-cuts are
//! applied by the reader, see `listener.rs`). Only reached when a fault is
//! set; the normal path checks one atomic flag.

use super::outq::Outq;
use super::shared::Shared;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::fault::schedule::Delayer;
use crate::fault::FaultCmd;
use crate::stats::PeerStats;
use crate::sync::PushError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A peer's queue and counters, as the delay thread needs them.
pub(crate) struct Queue {
    pub queue: Arc<Outq>,
    pub stats: Arc<PeerStats>,
}

/// The delay thread of a real node and the bound on what it holds.
pub(crate) struct TcpFaults {
    shared: Arc<Shared>,
    queues: Arc<HashMap<i64, Queue>>,
    delayer: Delayer<(i64, Envelope)>,
    in_flight: Arc<AtomicUsize>,
    bound: usize,
}

impl TcpFaults {
    /// Fault handling for `shared`'s node, whose peer queues are `queues`.
    pub fn new(shared: Arc<Shared>, queues: HashMap<i64, Queue>) -> TcpFaults {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let bound = shared.config.outbox_size * queues.len().max(1);
        let queues = Arc::new(queues);
        let (s, n, q) = (shared.clone(), in_flight.clone(), queues.clone());
        let delayer = Delayer::new(format!("cluster-d{}", shared.id), move |(to, env)| {
            n.fetch_sub(1, Ordering::AcqRel);
            if let Some(q) = q.get(&to) {
                arrive(&s, q, env);
            }
        });
        TcpFaults {
            shared,
            queues,
            delayer,
            in_flight,
            bound,
        }
    }

    /// Checks and applies a fault command: cuts must name configured peers.
    pub fn apply(&self, cmd: &FaultCmd) -> Result<()> {
        if let FaultCmd::Cut { peers, .. } = cmd {
            if let Some(p) = peers
                .iter()
                .find(|&&p| self.shared.config.peer(p).is_none())
            {
                return Err(Error::unknown_peer(*p));
            }
        }
        self.shared.faults.apply(cmd)
    }

    /// Decides the fate of `env` to peer `to`: `Some` to queue it now as
    /// usual, `None` if it was dropped or scheduled for later. A duplicate
    /// goes through the delay thread.
    pub fn filter(&self, to: &PeerStats, env: Envelope) -> Option<Envelope> {
        let s = &self.shared;
        let d = s.faults.decide(s.id, to.id);
        if d.cut || d.drop {
            to.dropped.fault.inc();
            s.stats.dropped.fault.inc();
            return None;
        }
        if d.duplicate {
            s.stats.duplicated.inc();
            self.later(to, env.clone(), d.delays[1]);
        }
        if d.delays[0].is_zero() {
            return Some(env);
        }
        self.later(to, env, d.delays[0]);
        None
    }

    fn later(&self, to: &PeerStats, env: Envelope, delay: Duration) {
        let s = &self.shared;
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.bound {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            to.dropped.queue_full.inc();
            s.stats.dropped.queue_full.inc();
        } else if self.delayer.schedule(delay, (to.id, env)).is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            to.dropped.closed.inc();
            s.stats.dropped.closed.inc();
        }
    }

    /// Stops the delay thread; what it still held is dropped and counted,
    /// per peer as sent and then dropped at close, so each peer's accounts
    /// still add up.
    pub fn stop(&self) {
        for (to, env) in self.delayer.stop() {
            if let Some(q) = self.queues.get(&to) {
                q.queue.count_sent(1, env.data.len() as u64);
                q.stats.dropped.closed.inc();
            }
            self.shared.stats.dropped.closed.inc();
        }
    }
}

/// A delayed message enters its peer's queue, without waiting for room.
fn arrive(s: &Shared, q: &Queue, env: Envelope) {
    match q.queue.push(&env, Duration::ZERO) {
        Ok(()) => {}
        Err(PushError::Full) => {
            q.stats.dropped.queue_full.inc();
            s.stats.dropped.queue_full.inc();
        }
        Err(PushError::Closed) => {
            q.stats.dropped.closed.inc();
            s.stats.dropped.closed.inc();
        }
    }
}
