//! C functions on a node handle, real or mock.

use super::{arg, call, set_opt, slice_arg, slice_out, str_arg, ClusterError};
use crate::buffer::Buf;
use crate::envelope::{Envelope, Outgoing, INLINE};
use crate::error::{Error, Result, Status};
use crate::inbox::{Item, Sink, Slot};
use crate::loan::{Share, Shares};
use crate::node::Node;
use crate::sync::{timeout_from_ms, WhenFull};
use std::ffi::{c_char, c_int, c_void, CString};
use std::ops::Range;
use std::sync::Arc;

/// An opaque node handle: a real TCP node or a mock server.
pub struct ClusterNode {
    pub(crate) node: Node,
}

/// An envelope as C sees it. On send it is read (and its bytes copied); on
/// receive the library fills it and the caller owns `data` until it calls
/// `cluster_envelope_free`.
#[repr(C)]
pub struct ClusterEnvelope {
    /// On send: destination id or CLUSTER_BROADCAST. On receive: sender's id.
    pub pid: i64,
    /// Opaque to the library.
    pub msg_id: i64,
    /// How the payload is encoded: 0 bytes, 1 UTF-8, 2 JSON, higher for one
    /// language's own encodings.
    pub kind: u32,
    /// The payload; may be NULL when `len` is 0.
    pub data: *const u8,
    /// Payload length in bytes.
    pub len: usize,
    /// Private: set by receive, cleared by free. Zero it in envelopes you build.
    pub _owner: *const c_void,
}

/// The id that addresses every peer but the sender.
pub const CLUSTER_BROADCAST: i64 = -1;

pub(crate) fn node_arg<'a>(node: *const ClusterNode) -> Result<&'a Node> {
    arg(node, "node").map(|n| &n.node)
}

/// The payload of a C envelope, checked: its length against the node's
/// `MaxMessageSize` before any slice is made of it.
#[inline]
fn payload<'a>(node: &Node, e: &'a ClusterEnvelope) -> Result<&'a [u8]> {
    node.check_size(e.len)?;
    Ok(if e.len == 0 {
        &[]
    } else if e.data.is_null() {
        return Err(Error::new(
            Status::NullArg,
            "envelope data is NULL but len > 0",
        ));
    } else {
        // SAFETY: by contract `data` points to `len` readable bytes.
        unsafe { std::slice::from_raw_parts(e.data, e.len) }
    })
}

/// A C envelope as a message to send, checked (inlined: its result is
/// not moved through a return slot on every send).
#[inline]
fn outgoing<'a>(node: &Node, e: &'a ClusterEnvelope) -> Result<Outgoing<'a>> {
    // The two ids are read one by one, not as one 16-byte load: a caller
    // has most likely just stored one of them (the next msg_id), and a
    // load that spans a fresh store stalls until that store is written
    // out (half of a per-call sender's time in `cluster_send`).
    // SAFETY: `e` is a valid reference.
    let (to, msg_id) = unsafe {
        (
            std::ptr::read_volatile(&e.pid),
            std::ptr::read_volatile(&e.msg_id),
        )
    };
    Ok(Outgoing {
        to,
        msg_id,
        kind: e.kind,
        data: payload(node, e)?,
    })
}

/// How many C envelopes `cluster_send_batch` checks and hands to the node
/// at a time (from a buffer on the stack, which each call of more than one
/// envelope initializes: 10 KiB). A mock destination gets each chunk's
/// messages in one push, so larger chunks make fewer, larger pushes.
const SEND_CHUNK: usize = 256;

/// A received envelope's `_owner` is what keeps its payload's buffer
/// alive until it is freed: an `Arc<Buf>` of the payload's own, or, with
/// this lowest bit set, a [`Share`] of a buffer lent to many envelopes
/// (the small payloads of one `cluster_recv_batch` call, or frames
/// received together still in their wire form). Neither pointer has the
/// bit set: both are aligned to at least 2 (asserted below and in
/// `loan.rs`).
const SHARE_TAG: usize = 1;

const _: () = assert!(std::mem::align_of::<Buf>() >= 2, "the lowest bit is free");

/// Fills `out` with `env`, whose payload it takes over.
fn fill(out: &mut ClusterEnvelope, env: Envelope) {
    let buf = env.data.into_shared();
    *out = ClusterEnvelope {
        pid: env.pid,
        msg_id: env.msg_id,
        kind: env.kind,
        data: buf.as_ptr(),
        len: buf.len(),
        _owner: Arc::into_raw(buf).cast(),
    };
}

/// Fills `slot` with an envelope whose payload is `range` of the buffer
/// `share` keeps alive until the envelope is freed.
fn lend(
    slot: &mut ClusterEnvelope,
    pid: i64,
    msg_id: i64,
    kind: u32,
    range: Range<usize>,
    share: Share,
) {
    *slot = ClusterEnvelope {
        pid,
        msg_id,
        kind,
        data: share.buf()[range.start..].as_ptr(),
        len: range.len(),
        _owner: share.into_raw().map_addr(|a| a | SHARE_TAG).cast(),
    };
}

/// Wraps a node in a new handle and stores it in `*out`.
pub(crate) fn give_node(node: Node, out: *mut *mut ClusterNode) -> Result<()> {
    let slot = super::out(out, "out")?;
    *slot = Box::into_raw(Box::new(ClusterNode { node }));
    Ok(())
}

/// Starts a real TCP node with id `id`. `config` is JSON text (starting with
/// `{`) or the path of a JSON file; it is read during the call and not kept.
/// On success `*out` receives a handle the caller owns: release it with
/// `cluster_free`. The node listens on its configured address before this
/// returns. Errors: CLUSTER_E_CONFIG (message names the field),
/// CLUSTER_E_ADDR_IN_USE, CLUSTER_E_IO, CLUSTER_E_NULL_ARG. Any thread.
/// Blocks only while it binds the address and starts its threads.
#[no_mangle]
pub extern "C" fn cluster_new(
    id: i64,
    config: *const c_char,
    out: *mut *mut ClusterNode,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let cfg = str_arg(config, "config")?;
        super::out(out, "out")?;
        give_node(Node::new(id, cfg)?, out)
    })
}

/// Sends `env` to `env->pid`: a peer id, one's own id (delivered to one's own
/// inbox) or CLUSTER_BROADCAST (every peer but oneself). The payload is copied
/// before the call returns; `env` stays the caller's. If a live peer's queue
/// is full, waits up to `timeout_ms` (0 = not at all, negative = forever); a
/// peer that is down never makes the caller wait. Errors: CLUSTER_E_UNKNOWN_PEER,
/// CLUSTER_E_TOO_LARGE, CLUSTER_E_FULL (dropped and counted), CLUSTER_E_CLOSED.
/// A broadcast returns CLUSTER_OK even if some peers' queues dropped it
/// (their drops are counted in the stats). Thread-safe.
/// Blocks at most `timeout_ms`, and only for a live peer whose queue is full.
#[no_mangle]
pub extern "C" fn cluster_send(
    node: *const ClusterNode,
    env: *const ClusterEnvelope,
    timeout_ms: i64,
    err: *mut ClusterError,
) -> c_int {
    send_one(node, env, timeout_ms, err, WhenFull::Drop)
}

/// Sends `env` as `cluster_send` does, except when a live peer's queue (or
/// one's own inbox) stays full for `timeout_ms`: the message is then not
/// sent and not counted, and the call returns CLUSTER_E_TIMEOUT, so the
/// caller still has it and may wait some more and try again. For event
/// loops (try with timeout 0, wait, try again) and for waits that must
/// stay interruptible (signals, cancellation). A peer that is down drops
/// it at once (CLUSTER_E_FULL, counted) as `cluster_send` does; a
/// broadcast is sent as `cluster_send` sends it. Other errors as
/// `cluster_send`. Thread-safe.
/// Blocks at most `timeout_ms`, and only for a live peer whose queue is full.
#[no_mangle]
pub extern "C" fn cluster_try_send(
    node: *const ClusterNode,
    env: *const ClusterEnvelope,
    timeout_ms: i64,
    err: *mut ClusterError,
) -> c_int {
    send_one(node, env, timeout_ms, err, WhenFull::Keep)
}

/// `cluster_send` and `cluster_try_send`: what a full queue does is theirs.
fn send_one(
    node: *const ClusterNode,
    env: *const ClusterEnvelope,
    timeout_ms: i64,
    err: *mut ClusterError,
    when_full: WhenFull,
) -> c_int {
    call(err, || {
        let node = node_arg(node)?;
        let msg = outgoing(node, arg(env, "env")?)?;
        let timeout = timeout_from_ms(timeout_ms);
        match when_full {
            WhenFull::Drop => node.send_copy(msg, timeout),
            WhenFull::Keep => node.try_send_copy(msg, timeout),
        }
    })
}

/// Sends `n` envelopes in order, as `cluster_send` would one by one, stopping
/// at the first error; `*sent` (may be NULL) receives how many were sent.
/// The caller keeps ownership of `envs`. Thread-safe.
/// Blocks as `cluster_send` does, per envelope. (With a negative timeout a
/// run of small messages to one peer may be written into its socket by the
/// calling thread, only when the socket has room for it all; should the
/// socket fill all the same, the call waits up to 1 s for room, then cuts
/// that connection, counting what the peer had not acknowledged as lost.
/// A run that follows another to the same peer within 20 us is held in the
/// peer's queue, to be written with the runs after it once they make
/// 32 KiB, or by the node's writer 50-150 us later.)
#[no_mangle]
pub extern "C" fn cluster_send_batch(
    node: *const ClusterNode,
    envs: *const ClusterEnvelope,
    n: usize,
    timeout_ms: i64,
    sent: *mut usize,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let node = node_arg(node)?;
        set_opt(sent, 0);
        let envs = slice_arg(envs, n, "envs")?;
        let timeout = timeout_from_ms(timeout_ms);
        if let [one] = envs {
            // As cluster_send: no buffer to fill for a single envelope.
            node.send_copy(outgoing(node, one)?, timeout)?;
            set_opt(sent, 1);
            return Ok(());
        }
        let mut done = 0;
        let mut msgs = [Outgoing::default(); SEND_CHUNK];
        for chunk in envs.chunks(SEND_CHUNK) {
            // Checked up to the first bad envelope; what precedes it is sent.
            let mut bad = Ok(());
            let mut k = 0;
            for e in chunk {
                match outgoing(node, e) {
                    Ok(m) => msgs[k] = m,
                    Err(e) => {
                        bad = Err(e);
                        break;
                    }
                }
                k += 1;
            }
            let (n, result) = node.send_copies(&msgs[..k], timeout);
            done += n;
            set_opt(sent, done);
            result.and(bad)?;
        }
        Ok(())
    })
}

/// Receives the next envelope into `*out`, waiting up to `timeout_ms`
/// (0 = not at all, negative = forever). `out->pid` is the sender's id. On
/// success the caller owns `out->data` and must release it with
/// `cluster_envelope_free` (a payload of up to 2 KiB may share its buffer
/// with the messages received with it, no copy made; the buffer, about
/// 34 KiB at most, is freed with the last of them); on error `*out` is zeroed and owns
/// nothing.
/// Errors: CLUSTER_E_TIMEOUT, CLUSTER_E_CLOSED (at once when another thread
/// closes the node). Thread-safe: several threads may receive at once.
/// Blocks up to `timeout_ms`.
#[no_mangle]
pub extern "C" fn cluster_recv(
    node: *const ClusterNode,
    out: *mut ClusterEnvelope,
    timeout_ms: i64,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let node = node_arg(node)?;
        let slot = super::out(out, "out")?;
        *slot = ClusterEnvelope::EMPTY;
        node.recv_to(timeout_from_ms(timeout_ms), slot)
    })
}

/// Receives up to `cap` envelopes into `out[0..*n]`: waits up to `timeout_ms`
/// for the first, then takes what is already there. The caller owns each
/// received payload (release with `cluster_envelopes_free(out, *n)`, or each
/// with `cluster_envelope_free`; small payloads share a few allocations,
/// each freed with the last envelope that points into it).
/// Errors as `cluster_recv`. Thread-safe.
/// Blocks up to `timeout_ms` for the first envelope only.
#[no_mangle]
pub extern "C" fn cluster_recv_batch(
    node: *const ClusterNode,
    out: *mut ClusterEnvelope,
    cap: usize,
    n: *mut usize,
    timeout_ms: i64,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let node = node_arg(node)?;
        let count = super::out(n, "n")?;
        *count = 0;
        if cap == 0 {
            return Err(Error::new(Status::InvalidArg, "cap is 0"));
        }
        let mut slots = Slots {
            slots: slice_out(out, cap, "out")?,
            n: 0,
            bytes: Vec::new(),
            small: Vec::new(),
        };
        node.recv_items(cap, timeout_from_ms(timeout_ms), &mut slots)?;
        *count = slots.finish();
        Ok(())
    })
}

/// `cluster_recv_batch`'s sink: each message goes straight into the
/// caller's next envelope. Frames still in wire form are lent where they
/// are; the small payloads of lone envelopes are copied into one buffer,
/// lent once the receive is over ([`Slots::finish`]); large payloads are
/// handed over as they are.
struct Slots<'a> {
    slots: &'a mut [ClusterEnvelope],
    /// Envelopes filled.
    n: usize,
    /// The small payloads, one after another.
    bytes: Vec<u8>,
    /// Which envelopes lend which range of `bytes`.
    small: Vec<(usize, Range<usize>)>,
}

impl Slots<'_> {
    /// The next envelope (the inbox takes no more messages than were asked
    /// for, so there is one).
    fn next(&mut self) -> &mut ClusterEnvelope {
        self.n += 1;
        &mut self.slots[self.n - 1]
    }

    /// Lends the small payloads, now that their buffer is whole; how many
    /// envelopes were filled.
    fn finish(self) -> usize {
        if !self.small.is_empty() {
            let buf = Arc::new(Buf::from(self.bytes));
            let mut shares = Shares::new(buf, self.small.len());
            for (i, range) in self.small {
                let e = &mut self.slots[i];
                lend(
                    e,
                    e.pid,
                    e.msg_id,
                    e.kind,
                    range,
                    shares.take().expect(SHARES),
                );
            }
        }
        self.n
    }
}

impl Sink for Slots<'_> {
    fn reserve(&mut self, _items: usize, _messages: usize) {}

    fn put(&mut self, item: Item) {
        match item {
            Item::One(env) if env.data.len() <= INLINE => {
                let at = self.bytes.len();
                self.bytes.extend_from_slice(&env.data);
                self.small.push((self.n, at..self.bytes.len()));
                // Its data and owner are set by `finish`.
                *self.next() = ClusterEnvelope {
                    pid: env.pid,
                    msg_id: env.msg_id,
                    kind: env.kind,
                    len: env.data.len(),
                    ..ClusterEnvelope::EMPTY
                };
            }
            Item::One(env) => fill(self.next(), env),
            Item::Frames(mut frames) => {
                let mut shares = Shares::new(frames.buffer().clone(), frames.len());
                while let Some(f) = frames.next_lent() {
                    let share = shares.take().expect(SHARES);
                    lend(self.next(), f.pid, f.msg_id, f.kind, f.payload, share);
                }
            }
        }
    }
}

/// Loans are made with one share for each envelope they fill.
const SHARES: &str = "a share for every envelope lent";

/// `cluster_recv` fills the caller's envelope in place.
impl Slot for ClusterEnvelope {
    fn lend(&mut self, pid: i64, msg_id: i64, kind: u32, payload: Range<usize>, share: Share) {
        lend(self, pid, msg_id, kind, payload, share);
    }

    fn own(&mut self, env: Envelope) {
        fill(self, env);
    }
}

impl ClusterEnvelope {
    const EMPTY: ClusterEnvelope = ClusterEnvelope {
        pid: 0,
        msg_id: 0,
        kind: 0,
        data: std::ptr::null(),
        len: 0,
        _owner: std::ptr::null(),
    };
}

/// Stores in `*fd` a file descriptor for event loops (epoll, poll, libuv,
/// asyncio): it is readable exactly while a receive would not block, that
/// is while a message waits or once the node is closed (level-triggered,
/// as nng's NNG_OPT_RECVFD; not edge-triggered as ZMQ_FD). Wait for it to
/// be readable, then call `cluster_recv` (or `cluster_recv_batch`) with
/// timeout 0 until CLUSTER_E_TIMEOUT; CLUSTER_E_CLOSED ends the loop. Only
/// poll it for reading: never read, write or close it. The same descriptor
/// is returned every time; it stays valid until `cluster_free`. A real
/// node and a mock server alike. Errors: CLUSTER_E_NULL_ARG, CLUSTER_E_IO
/// (no descriptor could be made). Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_recv_fd(
    node: *const ClusterNode,
    fd: *mut c_int,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let node = node_arg(node)?;
        let slot = super::out(fd, "fd")?;
        *slot = node.recv_fd()?;
        Ok(())
    })
}

/// Releases the payload of an envelope filled by `cluster_recv` and zeroes
/// its `data`, `len` and `_owner`. NULL, an envelope already freed and an
/// envelope built by the caller (`_owner` NULL) are ignored. Any thread.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_envelope_free(env: *mut ClusterEnvelope) {
    cluster_envelopes_free(env, 1)
}

/// `cluster_envelope_free` on each of `envs[0..n]`.
/// Any thread; never blocks.
#[no_mangle]
pub extern "C" fn cluster_envelopes_free(envs: *mut ClusterEnvelope, n: usize) {
    super::quiet((), || free_envelopes(envs, n));
}

fn free_envelopes(envs: *mut ClusterEnvelope, n: usize) {
    let Ok(envs) = slice_out(envs, n, "envs") else {
        return;
    };
    // A run of envelopes lent by one loan (a batch's; those with no owner
    // or a payload of their own in between do not end it) gives its shares
    // back together: one atomic subtraction, not one each.
    let mut run: (*const c_void, usize) = (std::ptr::null(), 0);
    for e in envs {
        let owner = std::mem::replace(&mut e._owner, std::ptr::null());
        e.data = std::ptr::null();
        e.len = 0;
        if owner.is_null() {
            continue; // built by the caller, or freed already: nothing is ours
        }
        if owner as usize & SHARE_TAG == 0 {
            // SAFETY: an untagged owner came from `Arc::into_raw` in
            // `fill`, and is given back once (it was not NULL: not freed).
            drop(unsafe { Arc::from_raw(owner.cast::<Buf>()) });
        } else if owner == run.0 {
            run.1 += 1;
        } else {
            give_back(run);
            run = (owner, 1);
        }
    }
    give_back(run);
}

/// Gives back `run.1` shares lent as the tagged owner `run.0` (none if 0).
fn give_back(run: (*const c_void, usize)) {
    if run.1 > 0 {
        let raw = run.0.map_addr(|a| a & !SHARE_TAG).cast();
        // SAFETY: each of these envelopes was lent one share as `raw` in
        // `lend`, and gives it back once: its owner is now NULL.
        unsafe { Share::give_back_raw(raw, run.1) };
    }
}

/// Closes the node: stops accepting sends, flushes queued messages within the
/// configured linger, wakes every blocked call (they return CLUSTER_E_CLOSED),
/// stops its threads and releases its port before returning, so a new node
/// can bind the same address at once. Blocks for at most the CloseLingerMs
/// of the config plus the time its threads take to stop. Idempotent; any
/// thread, even while others are blocked on the handle. The handle stays
/// valid until `cluster_free`.
#[no_mangle]
pub extern "C" fn cluster_close(node: *const ClusterNode, err: *mut ClusterError) -> c_int {
    call(err, || {
        node_arg(node)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the handle. Call it once, after every
/// other call on the handle has returned. NULL is ignored.
/// Blocks like `cluster_close` if the node is still open.
#[no_mangle]
pub extern "C" fn cluster_free(node: *mut ClusterNode) {
    super::quiet((), || {
        if let Some(node) = super::take_box(node) {
            node.node.close();
        }
    });
}

/// Stores the node's own id in `*out`. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_pid(
    node: *const ClusterNode,
    out: *mut i64,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let pid = node_arg(node)?.pid();
        *super::out(out, "out")? = pid;
        Ok(())
    })
}

/// Writes the ids of the other members into `out[0..cap]` and their number
/// into `*len`. With `cap` too small (or `out` NULL and `cap` 0) it writes
/// what fits and returns CLUSTER_E_BUFFER_TOO_SMALL with `*len` the size
/// needed. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_peers(
    node: *const ClusterNode,
    out: *mut i64,
    cap: usize,
    len: *mut usize,
    err: *mut ClusterError,
) -> c_int {
    call(err, || write_ids(&node_arg(node)?.peers(), out, cap, len))
}

/// Writes `ids` into `out[0..cap]` and their number into `*len`; with `cap`
/// too small, writes what fits and fails with BufferTooSmall.
pub(crate) fn write_ids(ids: &[i64], out: *mut i64, cap: usize, len: *mut usize) -> Result<()> {
    *super::out(len, "len")? = ids.len();
    let slots = slice_out(out, cap, "out")?;
    for (s, p) in slots.iter_mut().zip(ids) {
        *s = *p;
    }
    if cap < ids.len() {
        return Err(Error::new(
            Status::BufferTooSmall,
            format!("{} ids do not fit in {cap}", ids.len()),
        ));
    }
    Ok(())
}

/// 1 if the node is closed, 0 if open, CLUSTER_E_NULL_ARG for NULL (it takes
/// no `err`: there is nothing more to say). Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_is_closed(node: *const ClusterNode) -> c_int {
    super::quiet(Status::Panic as c_int, || match node_arg(node) {
        Ok(n) => n.is_closed() as c_int,
        Err(e) => e.status as c_int,
    })
}

/// Stores the node's counters as a JSON object in `*out`: sent, received,
/// delivered, bytes, drops by cause, reconnects, and per peer the queue depth
/// and connection state. The caller owns the string: release it with
/// `cluster_string_free`. Works on a closed node too. Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_stats(
    node: *const ClusterNode,
    out: *mut *mut c_char,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let json = node_arg(node)?.stats().to_string();
        give_string(json, out)
    })
}

/// Stores a new C string in `*out`.
pub(crate) fn give_string(s: String, out: *mut *mut c_char) -> Result<()> {
    let slot = super::out(out, "out")?;
    *slot = CString::new(s)
        .map_err(|_| Error::new(Status::InvalidArg, "string holds NUL"))?
        .into_raw();
    Ok(())
}

/// Releases a string returned by the library. NULL is ignored.
/// Any thread; never blocks.
#[no_mangle]
pub extern "C" fn cluster_string_free(s: *mut c_char) {
    super::quiet((), || take_string(s));
}

fn take_string(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: by contract, created by CString::into_raw in this library.
        drop(unsafe { CString::from_raw(s) });
    }
}
