//! The reply hint: whether a send most likely answers a message just
//! received, and whether a receive most likely waits for a reply. A reply
//! is written straight into an idle connection by the sending thread (see
//! `Direct` in `writer.rs`), and a receive that waits for one polls for a
//! round trip before it parks: request/reply traffic then pays no thread
//! hand-off and no wake-up. Streams keep going through the queues.

use crate::sync::REPLY_SPIN;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `LAST_OP`: the thread's last operation on any node was a send.
const SENT: u8 = 1;
/// `LAST_OP`: the thread's last operation on any node was a receive.
const RECEIVED: u8 = 2;

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
        let here = LAST_OP.with(|f| f.replace(SENT)) == RECEIVED;
        let anywhere =
            self.received.load(Ordering::Relaxed) && self.received.swap(false, Ordering::Relaxed);
        here || anywhere
    }

    /// How long a receive on this thread polls before it parks: a round
    /// trip after a send, not at all otherwise (a stream consumer parks at
    /// once, which lets a batch build up instead of burning the CPU its
    /// producers need).
    pub fn recv_spin(&self) -> Duration {
        match LAST_OP.with(|f| f.get()) {
            SENT => REPLY_SPIN,
            _ => Duration::ZERO,
        }
    }

    /// Notes a receive that returned.
    pub fn received(&self) {
        LAST_OP.with(|f| f.set(RECEIVED));
        if !self.received.load(Ordering::Relaxed) {
            self.received.store(true, Ordering::Relaxed);
        }
    }
}
