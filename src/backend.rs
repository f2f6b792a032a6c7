//! The interface every kind of node implements: the real TCP transport and
//! the mock network's servers, so the same code runs against both.

use crate::config::Config;
use crate::envelope::{Envelope, Outgoing};
use crate::error::Result;
use crate::fault::FaultCmd;
use crate::inbox::{Inbox, Sink, Slot};
use crate::sync::Timeout;
use std::os::fd::RawFd;

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

    /// Sends `msg` as `send_copy` would, except that a message to a live
    /// peer that finds no room within `timeout` is kept ([`crate::sync::WhenFull::Keep`]):
    /// `Timeout`, nothing sent, nothing counted. A broadcast is sent as
    /// `send_copy` sends it (a full peer drops its copy).
    fn try_send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()>;

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

    /// Takes the next received message into `out`, its `pid` set to the
    /// sender's id (a small one lent where it lies, see [`Slot`]).
    fn recv_one(&self, timeout: Timeout, out: &mut dyn Slot) -> Result<()>;

    /// Takes up to `max` envelopes: waits up to `timeout` for the first.
    fn recv_batch(&self, max: usize, timeout: Timeout, out: &mut Vec<Envelope>) -> Result<()> {
        self.recv_into(max, timeout, out).map(|_| ())
    }

    /// What `recv_batch` does, into any [`Sink`] (a `Vec<Item>` keeps
    /// small frames in their wire form, for a caller that hands payloads
    /// on where they are); how many messages.
    fn recv_into(&self, max: usize, timeout: Timeout, out: &mut dyn Sink) -> Result<usize>;

    /// The inbox receives take from.
    fn inbox(&self) -> &Inbox;

    /// A descriptor readable exactly while a receive would not block (a
    /// message waits, or the node is closed), for event loops; see
    /// [`Inbox::ready_fd`].
    fn recv_fd(&self) -> Result<RawFd> {
        Ok(self.inbox().ready_fd()?)
    }

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
