//! C functions on a mock cluster handle (`cluster_mock_*`).

use super::node::{give_node, give_string, write_ids, ClusterNode};
use super::{arg, call, slice_arg, str_arg, take_box, ClusterError};
use crate::error::{Error, Result, Status};
use crate::mock::{Clock, MockCluster};
use std::ffi::{c_char, c_int};
use std::time::Duration;

/// `cluster_mock_clock`: delays and receive timeouts pass in real time
/// (every mock starts on it).
pub const CLUSTER_CLOCK_REAL: c_int = 0;
/// `cluster_mock_clock`: time passes only when the test calls
/// `cluster_mock_advance` or `cluster_mock_run_until_idle`.
pub const CLUSTER_CLOCK_VIRTUAL: c_int = 1;

/// An opaque in-process mock cluster.
pub struct ClusterMock {
    mock: MockCluster,
}

fn mock_arg<'a>(mock: *const ClusterMock) -> Result<&'a MockCluster> {
    arg(mock, "mock").map(|m| &m.mock)
}

/// Creates a mock cluster. `config` is JSON text, a file path, or NULL for
/// an empty cluster; read during the call and not kept. InboxSize,
/// OutboxSize and MaxMessageSize apply, and every configured id is started
/// as a server (addresses are not used: nothing touches the network).
/// `seed` drives every drop, duplicate and delay decision and the shuffle of
/// released links: the n-th message from a to b meets the same fate for the
/// same seed. On success `*out` receives a handle the caller owns: release
/// it with `cluster_mock_free`. Errors: CLUSTER_E_CONFIG, CLUSTER_E_NULL_ARG.
/// Any thread.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_new(
    config: *const c_char,
    seed: u64,
    out: *mut *mut ClusterMock,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let slot = super::out(out, "out")?;
        let config = if config.is_null() {
            None
        } else {
            Some(str_arg(config, "config")?)
        };
        let mock = MockCluster::new(config, seed)?;
        *slot = Box::into_raw(Box::new(ClusterMock { mock }));
        Ok(())
    })
}

/// Adds server `id` (any id but CLUSTER_BROADCAST), or re-adds it with an
/// empty inbox after it was closed; if it is open already, `*out` is another
/// handle to the same server. `*out` is a node handle owned by the caller,
/// usable with cluster_send / cluster_recv / cluster_close / cluster_stats /
/// cluster_peers / cluster_fault_* like a real node, and released with
/// `cluster_free` (which closes the server). It stays valid after the mock
/// is closed or freed (it then reports CLUSTER_E_CLOSED).
/// Errors: CLUSTER_E_INVALID_ARG, CLUSTER_E_CLOSED. Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_add_server(
    mock: *const ClusterMock,
    id: i64,
    out: *mut *mut ClusterNode,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let mock = mock_arg(mock)?;
        super::out(out, "out")?;
        give_node(mock.add_server(id)?, out)
    })
}

/// Writes the ids of the open servers, ascending, into `out[0..cap]` and
/// their number into `*len`; same buffer convention as `cluster_peers`
/// (CLUSTER_E_BUFFER_TOO_SMALL with `*len` the size needed). Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_servers(
    mock: *const ClusterMock,
    out: *mut i64,
    cap: usize,
    len: *mut usize,
    err: *mut ClusterError,
) -> c_int {
    call(err, || write_ids(&mock_arg(mock)?.servers(), out, cap, len))
}

/// Partitions the cluster: `n_groups` groups, whose ids are given one group
/// after the other in `ids`, group i having `group_lens[i]` ids. Servers
/// not named (also those added later) form one more group. Messages do not
/// cross groups (they are dropped and counted as fault drops). Replaces
/// any earlier partition; `n_groups` 0 is a heal. An id in two groups, or
/// CLUSTER_BROADCAST, is CLUSTER_E_INVALID_ARG. Arrays are borrowed for the
/// call. Thread-safe.
/// Never blocks (a short lock of the cluster's topology).
#[no_mangle]
pub extern "C" fn cluster_mock_partition(
    mock: *const ClusterMock,
    ids: *const i64,
    group_lens: *const usize,
    n_groups: usize,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let mock = mock_arg(mock)?;
        let lens = slice_arg(group_lens, n_groups, "group_lens")?;
        let total = lens
            .iter()
            .try_fold(0usize, |a, &n| a.checked_add(n))
            .ok_or_else(|| Error::new(Status::InvalidArg, "group_lens overflow"))?;
        let mut ids = slice_arg(ids, total, "ids")?;
        let mut groups = Vec::with_capacity(lens.len());
        for &n in lens {
            let (g, rest) = ids.split_at(n);
            groups.push(g.to_vec());
            ids = rest;
        }
        mock.partition(&groups)
    })
}

/// Removes the partition: every server reaches every other again (node
/// cuts and held links stay). Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_heal(mock: *const ClusterMock, err: *mut ClusterError) -> c_int {
    call(err, || mock_arg(mock)?.heal())
}

/// Holds the link `from` -> `to`: later messages on it are kept (at most
/// OutboxSize; beyond that they are dropped and counted) until
/// `cluster_mock_release`. Ids need not be open. Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_hold(
    mock: *const ClusterMock,
    from: i64,
    to: i64,
    err: *mut ClusterError,
) -> c_int {
    call(err, || mock_arg(mock)?.hold(from, to))
}

/// Opens a held link and delivers what it kept: in order (`shuffle` 0) or
/// in an order drawn from the seed (`shuffle` nonzero). Never blocks: a
/// message that finds the inbox full or the server closed is dropped and
/// counted. A link that is not held is left alone. Thread-safe.
#[no_mangle]
pub extern "C" fn cluster_mock_release(
    mock: *const ClusterMock,
    from: i64,
    to: i64,
    shuffle: c_int,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        mock_arg(mock)?.release(from, to, shuffle != 0)?;
        Ok(())
    })
}

/// Chooses the mock's clock: CLUSTER_CLOCK_REAL (every mock starts on it)
/// or CLUSTER_CLOCK_VIRTUAL. On the virtual clock time stands still at 0
/// until `cluster_mock_advance` / `cluster_mock_run_until_idle`: a delayed
/// message waits until virtual time reaches its due time, and due messages
/// land in a deterministic order (due time, sender, destination, number on
/// the link, copy), so the same seed and the same sends in the same order
/// give the same trace, byte for byte. Trace events then carry `t_us`, the
/// virtual time in microseconds (never a wall-clock time).
/// A receive (`cluster_recv`, `cluster_recv_batch`) with a positive timeout
/// waits until a message arrives, the server closes, or virtual time
/// reaches the call's start plus the timeout: another thread must advance
/// it, or the receive waits for ever (timeout 0 still returns at once,
/// negative still waits for a message). Send timeouts (a full inbox) stay
/// in real time. Choose the clock before any delayed send: switching to
/// virtual with messages delayed in real time, or back from virtual to
/// real, is CLUSTER_E_INVALID_ARG; choosing the current clock again does
/// nothing. Other values: CLUSTER_E_INVALID_ARG. CLUSTER_E_CLOSED once the
/// mock is closed. Thread-safe. Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_clock(
    mock: *const ClusterMock,
    clock: c_int,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let mock = mock_arg(mock)?;
        let clock = match clock {
            CLUSTER_CLOCK_REAL => Clock::Real,
            CLUSTER_CLOCK_VIRTUAL => Clock::Virtual,
            other => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!(
                        "clock {other} is not CLUSTER_CLOCK_REAL (0) or CLUSTER_CLOCK_VIRTUAL (1)"
                    ),
                ))
            }
        };
        mock.set_clock(clock)
    })
}

/// Moves a virtual clock forward by `ms` milliseconds (0 delivers what is
/// due now), delivering every delayed message due by then in the order
/// given at `cluster_mock_clock`, on the caller's thread; receives waiting
/// in virtual time wake once their deadline passes. `*delivered` (may be
/// NULL) receives how many landed in an inbox (one that finds the inbox
/// full is dropped and counted, traced `dropped_full`). Negative `ms`, or a
/// mock on the real clock: CLUSTER_E_INVALID_ARG. CLUSTER_E_CLOSED once the
/// mock is closed. Thread-safe: concurrent advances run one after the
/// other. Never blocks (deliveries never wait for room).
#[no_mangle]
pub extern "C" fn cluster_mock_advance(
    mock: *const ClusterMock,
    ms: i64,
    delivered: *mut usize,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let mock = mock_arg(mock)?;
        if ms < 0 {
            return Err(Error::new(
                Status::InvalidArg,
                format!("cannot advance by {ms} ms: time only moves forward"),
            ));
        }
        let n = mock.advance(Duration::from_millis(ms as u64))?;
        super::set_opt(delivered, n);
        Ok(())
    })
}

/// Delivers every delayed message of a virtual clock, moving time to each
/// one's due time (it ends at the last one's), as `cluster_mock_advance`
/// would; `*delivered` (may be NULL) as there. Messages sent meanwhile by
/// other threads may or may not be included. A mock on the real clock:
/// CLUSTER_E_INVALID_ARG. CLUSTER_E_CLOSED once closed. Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_run_until_idle(
    mock: *const ClusterMock,
    delivered: *mut usize,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let n = mock_arg(mock)?.run_until_idle()?;
        super::set_opt(delivered, n);
        Ok(())
    })
}

/// Writes the virtual time, in whole milliseconds since the clock was made
/// virtual, into `*ms`. A mock on the real clock: CLUSTER_E_INVALID_ARG.
/// Works after close (time then stands still). Thread-safe. Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_now(
    mock: *const ClusterMock,
    ms: *mut i64,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let mock = mock_arg(mock)?;
        let slot = super::out(ms, "ms")?;
        *slot = i64::try_from(mock.now()?.as_millis()).unwrap_or(i64::MAX);
        Ok(())
    })
}

/// Switches the trace on (`enable` nonzero) or off. While on, every
/// message's fate is recorded (see `cluster_mock_trace_take`). Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_trace(
    mock: *const ClusterMock,
    enable: c_int,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        mock_arg(mock)?.trace(enable != 0);
        Ok(())
    })
}

/// Takes the trace recorded so far and clears it. `*out` receives JSON
/// lines, one object per event: `event` (sent, dropped_fault, dropped_full,
/// dropped_closed, duplicated, delayed, held, delivered), `from`, `to`,
/// `seq` (the message's number on its link), `copy` (1 for a duplicate),
/// `msg_id`, and per event `reason`, `delay_us`, `kind`, `len`; on a
/// virtual clock every event also has `t_us`, the virtual time in µs.
/// `cluster-trace` draws such a trace as a space-time diagram (SVG). The caller
/// owns the string: release it with `cluster_string_free`. Thread-safe.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_mock_trace_take(
    mock: *const ClusterMock,
    out: *mut *mut c_char,
    err: *mut ClusterError,
) -> c_int {
    call(err, || {
        let mock = mock_arg(mock)?;
        super::out(out, "out")?;
        give_string(mock.take_trace(), out)
    })
}

/// Closes every server (blocked calls on them return CLUSTER_E_CLOSED) and
/// the cluster: messages in flight are dropped and counted, and
/// `cluster_mock_add_server` fails with CLUSTER_E_CLOSED. Server handles
/// stay valid until their `cluster_free`. Idempotent; any thread.
#[no_mangle]
pub extern "C" fn cluster_mock_close(mock: *const ClusterMock, err: *mut ClusterError) -> c_int {
    call(err, || {
        mock_arg(mock)?.close();
        Ok(())
    })
}

/// Closes (if needed) and releases the mock handle. Call it once, after
/// every other call on it has returned; server handles are freed on their
/// own with `cluster_free`, before or after. NULL is ignored.
/// Blocks only while it closes the servers (no network; quick). Any thread.
#[no_mangle]
pub extern "C" fn cluster_mock_free(mock: *mut ClusterMock) {
    super::quiet((), || drop(take_box(mock)));
}
