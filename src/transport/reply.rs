//! The reply hint: whether a send most likely answers a message just
//! received, and whether a receive most likely waits for a reply. A reply
//! is written straight into an idle connection by the sending thread (see
//! `Direct` in `writer.rs`), and a receive that waits for one polls for a
//! round trip before it parks: request/reply traffic then pays no thread
//! hand-off and no wake-up. Streams keep going through the queues.

use crate::sync::{HANDOFF_SPIN, REPLY_SPIN};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `LAST_OP`: the thread's last operation on any node was a send.
const SENT: u8 = 1;
/// `LAST_OP`: the thread's last operation on any node was a receive.
const RECEIVED: u8 = 2;
/// `LAST_OP`: the thread's last operation on any node was a receive of a
/// large message (see [`LARGE`]).
const RECEIVED_LARGE: u8 = 3;

/// A message at least this large takes its sender and reader microseconds:
/// a receiver streaming such messages polls for the next one (a thread
/// hand-off) before it parks, which spares the reader a wake-up a message.
/// Smaller ones come in bursts, and their producers need the CPU more.
pub(crate) const LARGE: usize = 1 << 10;

thread_local! {
    /// SENT: this thread's next receive most likely waits for a reply.
    /// RECEIVED: its next send is most likely a reply.
    static LAST_OP: Cell<u8> = const { Cell::new(0) };
}

/// A node's reply hint.
#[derive(Debug, Default)]
pub(crate) struct ReplyHint {
    /// A receive returned since the node last sent: wrappers receive and
    /// send on different threads, so the thread-local hint misses them.
    received: AtomicBool,
}

impl ReplyHint {
    /// Notes a send; true if it most likely answers a message received (on
    /// this thread, or on any since the node last sent).
    pub fn begin_send(&self) -> bool {
        let here = LAST_OP.with(|f| f.replace(SENT)) >= RECEIVED;
        let anywhere =
            self.received.load(Ordering::Relaxed) && self.received.swap(false, Ordering::Relaxed);
        here || anywhere
    }

    /// How long a receive on this thread polls before it parks: a round
    /// trip after a send, a thread hand-off after a large message, not at
    /// all otherwise (a consumer of a stream of small messages parks at
    /// once, which lets a batch build up instead of burning the CPU its
    /// producers need).
    pub fn recv_spin(&self) -> Duration {
        match LAST_OP.with(|f| f.get()) {
            SENT => REPLY_SPIN,
            RECEIVED_LARGE => HANDOFF_SPIN,
            _ => Duration::ZERO,
        }
    }

    /// Notes a receive that returned, of messages of `size` bytes each (or
    /// on average).
    pub fn received(&self, size: usize) {
        let op = if size >= LARGE {
            RECEIVED_LARGE
        } else {
            RECEIVED
        };
        LAST_OP.with(|f| f.set(op));
        if !self.received.load(Ordering::Relaxed) {
            self.received.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_polls_after_a_send_or_a_large_message_and_parks_at_once_otherwise() {
        let hint = ReplyHint::default();
        hint.received(16);
        assert_eq!(hint.recv_spin(), Duration::ZERO, "small stream: park");
        hint.received(LARGE);
        assert_eq!(hint.recv_spin(), HANDOFF_SPIN, "large stream: a hand-off");
        assert!(hint.begin_send(), "a send after a receive is a reply");
        assert_eq!(hint.recv_spin(), REPLY_SPIN, "after a send: a round trip");
        assert!(!hint.begin_send(), "a second send is not");
    }
}
