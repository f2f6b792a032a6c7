//! The node interface shared by the real TCP transport and the mock network.

use crate::config::Config;
use crate::envelope::{Envelope, Outgoing};
use crate::error::Result;
use crate::fault::FaultCmd;
use crate::inbox::{Item, Timeout};
use std::sync::Arc;

/// What every kind of node does. Implemented by the TCP transport and by the
/// mock network's servers, so the same code runs against both.
pub trait Transport: Send + Sync {
    /// This node's own id.
    fn pid(&self) -> i64;

    /// The ids of the other members, in config order.
    fn peers(&self) -> Vec<i64>;

    /// Queues `env` for `env.pid` (an id, BROADCAST or one's own id). Waits up
    /// to `timeout` for room when a live peer's queue is full.
    fn send(&self, env: Envelope, timeout: Timeout) -> Result<()>;

    /// Sends `msg` as `send` would; a transport that can encode it straight
    /// into a queue skips building the envelope.
    fn send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.send(msg.to_envelope(), timeout)
    }

    /// Sends `msgs` in order as `send_copy` would one by one, stopping at
    /// the first error; how many were sent, and the error. A transport may
    /// queue a run of messages to one peer at once.
    fn send_copies(&self, msgs: &[Outgoing<'_>], timeout: Timeout) -> (usize, Result<()>) {
        for (i, &msg) in msgs.iter().enumerate() {
            if let Err(e) = self.send_copy(msg, timeout) {
                return (i, Err(e));
            }
        }
        (msgs.len(), Ok(()))
    }

    /// Takes the next received envelope, its `pid` set to the sender's id.
    fn recv(&self, timeout: Timeout) -> Result<Envelope>;

    /// Takes up to `max` envelopes: waits up to `timeout` for the first.
    fn recv_batch(&self, max: usize, timeout: Timeout, out: &mut Vec<Envelope>) -> Result<()> {
        let mut items = Vec::new();
        self.recv_items(max, timeout, &mut items)?;
        for item in items {
            item.decode_into(out);
        }
        Ok(())
    }

    /// Like `recv_batch`, with small frames still in their wire form (for a
    /// caller that hands payloads on where they are); how many messages.
    fn recv_items(&self, max: usize, timeout: Timeout, out: &mut Vec<Item>) -> Result<usize>;

    /// Stops the node; idempotent; wakes every blocked call.
    fn close(&self);

    /// Whether `close` has been called.
    fn is_closed(&self) -> bool;

    /// The node's counters as a JSON object.
    fn stats(&self) -> serde_json::Value;

    /// Changes the node's fault settings (see [`crate::fault`]).
    fn fault(&self, cmd: &FaultCmd) -> Result<()>;

    /// The configuration the node runs with.
    fn config(&self) -> &Config;
}

/// A member of a cluster, real or mock. Cheap to clone; every clone is the
/// same node. Safe to use from many threads at once.
#[derive(Clone)]
pub struct Node(Arc<dyn Transport>);

impl Node {
    /// Starts a real TCP node with id `id` from JSON text or a file path.
    pub fn new(id: i64, config: &str) -> Result<Node> {
        Node::with_config(id, Config::load(config)?)
    }

    /// Starts a real TCP node from a parsed configuration.
    pub fn with_config(id: i64, config: Config) -> Result<Node> {
        Ok(Node(Arc::new(crate::transport::TcpNode::start(
            id, config,
        )?)))
    }

    /// Wraps any transport as a node.
    pub fn from_transport(t: Arc<dyn Transport>) -> Node {
        Node(t)
    }

    /// Refuses a payload of `len` bytes above the node's `MaxMessageSize`:
    /// callers that copy a payload check this first.
    pub fn check_size(&self, len: usize) -> Result<()> {
        self.0.config().check_size(len)
    }

    /// This node's own id.
    pub fn pid(&self) -> i64 {
        self.0.pid()
    }

    /// The ids of the other members.
    pub fn peers(&self) -> Vec<i64> {
        self.0.peers()
    }

    /// Sends `env` to `env.pid`; see [`Transport::send`].
    pub fn send(&self, env: Envelope, timeout: Timeout) -> Result<()> {
        self.0.send(env, timeout)
    }

    /// Sends a copy of `msg`; see [`Transport::send_copy`].
    pub fn send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.0.send_copy(msg, timeout)
    }

    /// Sends copies of `msgs` in order; see [`Transport::send_copies`].
    pub fn send_copies(&self, msgs: &[Outgoing<'_>], timeout: Timeout) -> (usize, Result<()>) {
        self.0.send_copies(msgs, timeout)
    }

    /// Receives the next envelope; see [`Transport::recv`].
    pub fn recv(&self, timeout: Timeout) -> Result<Envelope> {
        self.0.recv(timeout)
    }

    /// Receives up to `max` messages; see [`Transport::recv_items`].
    pub fn recv_items(&self, max: usize, timeout: Timeout, out: &mut Vec<Item>) -> Result<usize> {
        self.0.recv_items(max, timeout, out)
    }

    /// Receives up to `max` envelopes; see [`Transport::recv_batch`].
    pub fn recv_batch(&self, max: usize, timeout: Timeout, out: &mut Vec<Envelope>) -> Result<()> {
        self.0.recv_batch(max, timeout, out)
    }

    /// Closes the node: flushes within the linger, stops its threads and
    /// releases its port before returning. Idempotent.
    pub fn close(&self) {
        self.0.close()
    }

    /// Whether the node is closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The node's counters as JSON.
    pub fn stats(&self) -> serde_json::Value {
        self.0.stats()
    }

    /// Changes the node's fault settings: loss, delay, duplication, cuts,
    /// seed. Same semantics on real and mock nodes.
    pub fn fault(&self, cmd: &FaultCmd) -> Result<()> {
        self.0.fault(cmd)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.pid())
    }
}
