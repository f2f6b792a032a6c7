//! A node, real or mock: the handle users hold, over a [`Transport`].

use crate::backend::Transport;
use crate::config::Config;
use crate::envelope::{Envelope, Outgoing};
use crate::error::Result;
use crate::fault::FaultCmd;
use crate::inbox::{Received, Sink, Slot};
use crate::sync::Timeout;
use std::sync::Arc;

/// A member of a cluster, real or mock. Cheap to clone; every clone is the
/// same node. Safe to use from many threads at once.
#[derive(Clone)]
pub struct Node {
    t: Arc<dyn Transport>,
    /// The transport's `MaxMessageSize`, kept beside the pointer: the C
    /// functions check every payload's length before they make a slice of
    /// it, and a call through the transport for it cost each send more
    /// than the check.
    max_message_size: usize,
}

impl Node {
    /// Starts a real TCP node with id `id` from JSON text or a file path.
    pub fn new(id: i64, config: &str) -> Result<Node> {
        Node::with_config(id, Config::load(config)?)
    }

    /// Starts a real TCP node from a parsed configuration.
    pub fn with_config(id: i64, config: Config) -> Result<Node> {
        let t = crate::transport::TcpNode::start(id, config)?;
        Ok(Node::from_transport(Arc::new(t)))
    }

    /// Wraps any transport as a node.
    pub fn from_transport(t: Arc<dyn Transport>) -> Node {
        let max_message_size = t.config().max_message_size;
        Node {
            t,
            max_message_size,
        }
    }

    /// Refuses a payload of `len` bytes above the node's `MaxMessageSize`:
    /// callers that copy a payload check this first.
    pub fn check_size(&self, len: usize) -> Result<()> {
        crate::config::check_size(len, self.max_message_size)
    }

    /// This node's own id.
    pub fn pid(&self) -> i64 {
        self.t.pid()
    }

    /// The ids of the other members.
    pub fn peers(&self) -> Vec<i64> {
        self.t.peers()
    }

    /// Sends `env` to `env.pid`; see [`Transport::send`].
    pub fn send(&self, env: Envelope, timeout: Timeout) -> Result<()> {
        self.t.send(env, timeout)
    }

    /// Sends a copy of `msg`; see [`Transport::send_copy`].
    pub fn send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.t.send_copy(msg, timeout)
    }

    /// Sends a copy of `msg`, keeping it when a live peer has no room; see
    /// [`Transport::try_send_copy`].
    pub fn try_send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.t.try_send_copy(msg, timeout)
    }

    /// Sends copies of `msgs` in order; see [`Transport::send_copies`].
    pub fn send_copies(&self, msgs: &[Outgoing<'_>], timeout: Timeout) -> (usize, Result<()>) {
        self.t.send_copies(msgs, timeout)
    }

    /// Receives the next envelope; see [`Transport::recv_one`].
    pub fn recv(&self, timeout: Timeout) -> Result<Envelope> {
        self.recv_one(timeout).map(Received::into_envelope)
    }

    /// Receives the next message, a small one lent rather than copied; see
    /// [`Transport::recv_one`].
    pub fn recv_one(&self, timeout: Timeout) -> Result<Received> {
        let mut out = None;
        self.t.recv_one(timeout, &mut out)?;
        Ok(Received::take(out))
    }

    /// Receives the next message into `out`, which takes it field by field
    /// (what `cluster_recv` does); see [`Transport::recv_one`].
    pub fn recv_to(&self, timeout: Timeout, out: &mut dyn Slot) -> Result<()> {
        self.t.recv_one(timeout, out)
    }

    /// Receives up to `max` messages into `out` (a `Vec<Item>` keeps small
    /// frames in their wire form); see [`Transport::recv_into`].
    pub fn recv_items(&self, max: usize, timeout: Timeout, out: &mut dyn Sink) -> Result<usize> {
        self.t.recv_into(max, timeout, out)
    }

    /// Receives up to `max` envelopes; see [`Transport::recv_batch`].
    pub fn recv_batch(&self, max: usize, timeout: Timeout, out: &mut Vec<Envelope>) -> Result<()> {
        self.t.recv_batch(max, timeout, out)
    }

    /// A descriptor readable exactly while a receive would not block; see
    /// [`Transport::recv_fd`].
    pub fn recv_fd(&self) -> Result<std::os::fd::RawFd> {
        self.t.recv_fd()
    }

    /// Closes the node: flushes within the linger, stops its threads and
    /// releases its port before returning. Idempotent.
    pub fn close(&self) {
        self.t.close()
    }

    /// Whether the node is closed.
    pub fn is_closed(&self) -> bool {
        self.t.is_closed()
    }

    /// The node's counters as JSON.
    pub fn stats(&self) -> serde_json::Value {
        self.t.stats()
    }

    /// Changes the node's fault settings: loss, delay, duplication, cuts,
    /// seed. Same semantics on real and mock nodes.
    pub fn fault(&self, cmd: &FaultCmd) -> Result<()> {
        self.t.fault(cmd)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.pid())
    }
}
