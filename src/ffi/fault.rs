//! C functions that inject faults on any node handle, real or mock
//! (`cluster_fault_*`). Decisions are a pure function of (seed, sender,
//! receiver, n), the n-th message on that link, so a run replays.

use super::node::{node_arg, ClusterNode};
use super::{call, slice_arg, ClusterError};
use crate::fault::FaultCmd;
use crate::Result;
use std::ffi::c_int;

/// Cut direction: this node's messages to the peers are lost.
pub const CLUSTER_CUT_OUT: c_int = 1;
/// Cut direction: the peers' messages to this node are lost.
pub const CLUSTER_CUT_IN: c_int = 2;
/// Cut direction: both ways.
pub const CLUSTER_CUT_BOTH: c_int = 3;

fn apply(
    node: *const ClusterNode,
    err: *mut ClusterError,
    cmd: impl FnOnce() -> Result<FaultCmd>,
) -> c_int {
    call(err, || node_arg(node)?.fault(&cmd()?))
}

/// Sets the probability `p` (0 to 1) that a message this node sends to a
/// peer is lost (counted as a fault drop; the send still succeeds).
/// Messages to oneself are never faulted. Errors: CLUSTER_E_INVALID_ARG for
/// p outside [0, 1] or NaN. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_fault_drop(
    node: *const ClusterNode,
    p: f64,
    err: *mut ClusterError,
) -> c_int {
    apply(node, err, || Ok(FaultCmd::Drop(p)))
}

/// Delays each message this node sends to a peer by a random time drawn
/// uniformly from [0, max_ms] ms (0 turns delay off). Delayed messages are
/// reordered; at most OutboxSize per peer are in flight, beyond that they
/// are dropped and counted as queue_full. Errors: CLUSTER_E_INVALID_ARG for
/// a negative max_ms. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_fault_delay(
    node: *const ClusterNode,
    max_ms: i64,
    err: *mut ClusterError,
) -> c_int {
    apply(node, err, || FaultCmd::delay_ms(max_ms))
}

/// Sets the probability `p` (0 to 1) that a message this node sends to a
/// peer arrives twice (the copy has its own random delay, if any). Errors:
/// CLUSTER_E_INVALID_ARG for p outside [0, 1]. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_fault_duplicate(
    node: *const ClusterNode,
    p: f64,
    err: *mut ClusterError,
) -> c_int {
    apply(node, err, || Ok(FaultCmd::Duplicate(p)))
}

/// Cuts this node off from `peers[0..n]` (borrowed for the call):
/// CLUSTER_CUT_OUT loses its messages to them, CLUSTER_CUT_IN loses theirs
/// to it, CLUSTER_CUT_BOTH both. Adds to earlier cuts; lost messages are
/// counted as fault drops (by the sender for OUT, by this node for IN on a
/// real node). On a real node the peers must be in the config
/// (CLUSTER_E_UNKNOWN_PEER); on a mock server any id may be named. Errors:
/// CLUSTER_E_INVALID_ARG for a bad direction. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_fault_cut(
    node: *const ClusterNode,
    peers: *const i64,
    n: usize,
    direction: c_int,
    err: *mut ClusterError,
) -> c_int {
    apply(node, err, || {
        Ok(FaultCmd::Cut {
            peers: slice_arg(peers, n, "peers")?.to_vec(),
            direction,
        })
    })
}

/// Removes every cut of this node (drop, delay and duplicate settings
/// stay). Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_fault_heal(node: *const ClusterNode, err: *mut ClusterError) -> c_int {
    apply(node, err, || Ok(FaultCmd::Heal))
}

/// Sets the seed of this node's decisions and restarts the count n of every
/// link, so the same sends meet the same fates again. A mock server starts
/// with the mock's seed, a real node with 0. Thread-safe; never blocks.
#[no_mangle]
pub extern "C" fn cluster_fault_seed(
    node: *const ClusterNode,
    seed: u64,
    err: *mut ClusterError,
) -> c_int {
    apply(node, err, || Ok(FaultCmd::Seed(seed)))
}
