//! The trace: each message's fate as JSON lines, recorded while switched on.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Lines kept at most; later events are counted, not kept.
pub const TRACE_CAP: usize = 1 << 20;

/// What happened to a message at one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Offered to the network by the sender.
    Sent,
    /// Lost on purpose: a partition, a cut or the drop probability.
    DroppedFault,
    /// Lost because the destination's inbox (or the link's in-flight
    /// bound) was full.
    DroppedFull,
    /// Lost because the destination closed before it arrived.
    DroppedClosed,
    /// Not sent for lack of room, and kept by its sender, who may try
    /// again (`cluster_try_send`): neither delivered nor lost.
    Kept,
    /// Will arrive twice.
    Duplicated,
    /// Waiting out its random delay.
    Delayed,
    /// Kept on a held link until it is released.
    Held,
    /// Put into the destination's inbox.
    Delivered,
}

impl Event {
    fn name(self) -> &'static str {
        match self {
            Event::Sent => "sent",
            Event::DroppedFault => "dropped_fault",
            Event::DroppedFull => "dropped_full",
            Event::DroppedClosed => "dropped_closed",
            Event::Kept => "kept",
            Event::Duplicated => "duplicated",
            Event::Delayed => "delayed",
            Event::Held => "held",
            Event::Delivered => "delivered",
        }
    }
}

/// Which message an event is about: its link, its number on the link and
/// which copy (0, or 1 for a duplicate).
#[derive(Clone, Copy, Debug)]
pub struct Tag {
    /// Sender id.
    pub from: i64,
    /// Destination id.
    pub to: i64,
    /// The message's number on its link.
    pub seq: u64,
    /// 0 for the original, 1 for the duplicate.
    pub copy: u8,
    /// The envelope's msg_id.
    pub msg_id: i64,
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    lost: u64,
}

/// A switchable recorder of message events.
#[derive(Default)]
pub struct Trace {
    on: AtomicBool,
    lines: Mutex<Lines>,
    /// The virtual clock's time in µs, once the cluster has one: then
    /// every event carries it as `t_us` (a real clock adds no time, so a
    /// trace never holds a wall-clock timestamp).
    clock: OnceLock<Arc<AtomicU64>>,
}

impl Trace {
    /// Switches recording on or off (what was recorded stays).
    pub fn enable(&self, on: bool) {
        self.on.store(on, Ordering::Release);
    }

    /// Whether events are being recorded.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Stamps every later event with the virtual time `now_us` holds.
    pub(crate) fn use_clock(&self, now_us: Arc<AtomicU64>) {
        let _ = self.clock.set(now_us);
    }

    /// Records one event with optional extra fields (an object or null),
    /// made only while events are recorded.
    pub fn record(&self, event: Event, tag: &Tag, extra: impl FnOnce() -> Value) {
        if !self.is_on() {
            return;
        }
        let extra = extra();
        let mut v = json!({
            "event": event.name(),
            "from": tag.from,
            "to": tag.to,
            "seq": tag.seq,
            "copy": tag.copy,
            "msg_id": tag.msg_id,
        });
        if let Some(o) = v.as_object_mut() {
            if let Value::Object(e) = extra {
                o.extend(e);
            }
            if let Some(now) = self.clock.get() {
                o.insert("t_us".into(), now.load(Ordering::Acquire).into());
            }
        }
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.lines.len() < TRACE_CAP {
            l.lines.push(v.to_string());
        } else {
            l.lost += 1;
        }
    }

    /// Takes what was recorded: one JSON object per line, each line ending
    /// in `\n`. If events were lost to the cap, a last line says how many.
    pub fn take(&self) -> String {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for line in l.lines.drain(..) {
            out.push_str(&line);
            out.push('\n');
        }
        if l.lost > 0 {
            out.push_str(&json!({"event": "trace_overflow", "lost": l.lost}).to_string());
            out.push('\n');
            l.lost = 0;
        }
        out
    }
}
