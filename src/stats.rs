//! Counters every node keeps, readable as JSON.

use crate::sync::Padded;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Serialize for Counter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.get())
    }
}

/// A quantity that goes up and down: bytes held now.
#[derive(Default, Debug, Serialize)]
#[serde(transparent)]
pub struct Gauge(Counter);

impl Gauge {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.add(n);
    }

    /// Takes away `n` (added before).
    pub fn sub(&self, n: u64) {
        self.0 .0.fetch_sub(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Messages that were not delivered, by cause.
#[derive(Default, Debug, Serialize)]
pub struct Drops {
    /// A bounded queue (a peer's outbound queue, or the inbox for messages to
    /// oneself) was full.
    pub queue_full: Counter,
    /// Written into a connection that then broke: possibly not delivered.
    pub conn_lost: Counter,
    /// Still queued when the node closed and the linger ran out.
    pub closed: Counter,
    /// Dropped on purpose by the fault model (mock or fault controls).
    pub fault: Counter,
}

impl Drops {
    /// The sum over every cause.
    pub fn total(&self) -> u64 {
        self.queue_full.get() + self.conn_lost.get() + self.closed.get() + self.fault.get()
    }
}

/// Counters for one destination peer.
#[derive(Debug, Serialize)]
pub struct PeerStats {
    /// The peer's id.
    pub id: i64,
    /// Whether a connection to the peer is up (always true on the mock).
    pub connected: AtomicBoolJson,
    /// Whether the last attempt to reach the peer failed: senders do not
    /// wait for room in a down peer's queue.
    pub down: AtomicBoolJson,
    /// Messages handed to the peer's connection (TCP) or inbox (mock).
    pub written: Counter,
    /// Payload bytes handed to the connection.
    pub written_bytes: Counter,
    /// Messages the peer acknowledged into its inbox (known when the writer
    /// next looks: at each batch and when a connection ends).
    pub acked: Counter,
    /// Messages to this peer that were dropped, by cause.
    pub dropped: Drops,
    /// Connections made to this peer after the first.
    pub reconnects: Counter,
}

impl PeerStats {
    /// Fresh counters for peer `id`.
    pub fn new(id: i64) -> PeerStats {
        PeerStats {
            id,
            connected: AtomicBoolJson::default(),
            down: AtomicBoolJson::default(),
            written: Counter::default(),
            written_bytes: Counter::default(),
            acked: Counter::default(),
            dropped: Drops::default(),
            reconnects: Counter::default(),
        }
    }
}

/// An atomic flag that serializes as a JSON boolean.
#[derive(Default, Debug)]
pub struct AtomicBoolJson(pub AtomicBool);

impl AtomicBoolJson {
    /// Sets the flag.
    pub fn set(&self, v: bool) {
        self.0.store(v, Ordering::Release);
    }

    /// Reads the flag.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Serialize for AtomicBoolJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.get())
    }
}

/// Node-wide counters.
#[derive(Default, Debug, Serialize)]
pub struct NodeStats {
    /// Messages accepted by `send`, one per destination (a broadcast to four
    /// peers counts four). On TCP only those a node sends to itself: its
    /// peers' queues count theirs, under the lock a send takes anyway.
    /// Written by the sending threads, so on cache lines of its own (as
    /// is `sent_bytes`).
    #[serde(skip)]
    pub sent: Padded<Counter>,
    /// Payload bytes of `sent`.
    #[serde(skip)]
    pub sent_bytes: Padded<Counter>,
    /// Messages still in the inbox when the node closed, thrown away.
    pub discarded: Counter,
    /// Sent messages that were dropped, by cause.
    pub dropped: Drops,
    /// Extra copies sent by the fault model's duplicate probability.
    pub duplicated: Counter,
    /// Incoming connections accepted after a valid handshake.
    pub accepted: Counter,
    /// Incoming connections refused: bad handshake, unknown id, too many pending.
    pub rejected: Counter,
    /// Connections closed because authentication failed: an incoming one
    /// whose caller failed to prove it knows the shared secret (also
    /// counted in `rejected`), or, with a secret, a connection either way
    /// on which a frame record or an acknowledgement failed to verify
    /// (injected, altered, replayed, reordered or dropped on the path).
    pub auth_failed: Counter,
    /// Connections dropped for a bad frame (oversized, malformed, or
    /// stalled mid-frame for 5 s) or, with a secret, whose frames ended or
    /// stalled inside a record, or whose acknowledgements ended inside one.
    pub bad_frames: Counter,
    /// Bytes of the frame readers' buffers of the node's incoming
    /// connections now: 64 KiB each, 256 KiB while its peer streams small
    /// frames, back to 64 KiB after 5 s of quiet; with a secret 8 KiB each
    /// (the record being opened is buffered apart, not counted). 0 on the
    /// mock.
    pub read_buffer_bytes: Gauge,
}

/// What a TCP peer's queue counts, under its lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueCounts {
    /// Messages accepted for the peer.
    pub sent: u64,
    /// Their payload bytes.
    pub sent_bytes: u64,
    /// Messages queued or being written.
    pub depth: u64,
}

/// One peer of the stats JSON: its counters and its queue's.
#[derive(Serialize)]
pub struct PeerReport<'a> {
    #[serde(flatten)]
    counters: &'a PeerStats,
    sent: u64,
    queue_depth: u64,
}

impl<'a> PeerReport<'a> {
    /// A peer's counters with its queue's.
    pub fn new(counters: &'a PeerStats, queue: QueueCounts) -> PeerReport<'a> {
        PeerReport {
            counters,
            sent: queue.sent,
            queue_depth: queue.depth,
        }
    }
}

/// What a node's inbox counts, under the locks its pushes and receives
/// take anyway, read together (see [`crate::inbox::Inbox::counts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InboxCounts {
    /// Messages put into the inbox.
    pub received: u64,
    /// Their payload bytes.
    pub received_bytes: u64,
    /// Messages taken out of it by receives.
    pub delivered: u64,
    /// Messages waiting to be received.
    #[serde(rename = "inbox_depth")]
    pub depth: usize,
}

/// The stats JSON of a node, real or mock: built here, from counters that
/// are incremented where the events happen, and nowhere else.
#[derive(Serialize)]
pub struct Report<'a> {
    /// The node's id.
    pub pid: i64,
    /// `"tcp"` or `"mock"`.
    pub transport: &'static str,
    /// Whether the node is closed.
    pub closed: bool,
    /// Messages accepted by `send`, one per destination.
    pub sent: u64,
    /// Their payload bytes.
    pub sent_bytes: u64,
    /// What the inbox counted.
    #[serde(flatten)]
    pub inbox: InboxCounts,
    /// The node-wide counters.
    #[serde(flatten)]
    pub counters: &'a NodeStats,
    /// The fault settings.
    pub faults: serde_json::Value,
    /// One entry per peer.
    pub peers: Vec<serde_json::Value>,
    /// What only one transport reports (`reconnects`, `in_flight`).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Report<'_> {
    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
