//! The status codes as C constants. Each equals the [`Status`] of the same
//! name (a test checks it); the numbers never change.

#[cfg(doc)]
use crate::error::Status;
use std::ffi::c_int;

/// Success.
pub const CLUSTER_OK: c_int = 0;
/// A required pointer argument was NULL.
pub const CLUSTER_E_NULL_ARG: c_int = -1;
/// An argument had a value outside its domain.
pub const CLUSTER_E_INVALID_ARG: c_int = -2;
/// The configuration is invalid; the message names the field.
pub const CLUSTER_E_CONFIG: c_int = -3;
/// The node's address is already in use.
pub const CLUSTER_E_ADDR_IN_USE: c_int = -4;
/// An operating-system I/O error.
pub const CLUSTER_E_IO: c_int = -5;
/// The destination id is not a member of the cluster.
pub const CLUSTER_E_UNKNOWN_PEER: c_int = -6;
/// The payload is larger than MaxMessageSize.
pub const CLUSTER_E_TOO_LARGE: c_int = -7;
/// The call timed out.
pub const CLUSTER_E_TIMEOUT: c_int = -8;
/// The node or mock cluster is closed.
pub const CLUSTER_E_CLOSED: c_int = -9;
/// A bounded queue was full: the message was dropped and counted.
pub const CLUSTER_E_FULL: c_int = -10;
/// A panic was caught at the boundary: a bug in the library.
pub const CLUSTER_E_PANIC: c_int = -11;
/// A caller's buffer is too small; the needed size was reported.
pub const CLUSTER_E_BUFFER_TOO_SMALL: c_int = -12;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Status;

    #[test]
    fn constants_match_status() {
        let c = [
            CLUSTER_OK,
            CLUSTER_E_NULL_ARG,
            CLUSTER_E_INVALID_ARG,
            CLUSTER_E_CONFIG,
            CLUSTER_E_ADDR_IN_USE,
            CLUSTER_E_IO,
            CLUSTER_E_UNKNOWN_PEER,
            CLUSTER_E_TOO_LARGE,
            CLUSTER_E_TIMEOUT,
            CLUSTER_E_CLOSED,
            CLUSTER_E_FULL,
            CLUSTER_E_PANIC,
            CLUSTER_E_BUFFER_TOO_SMALL,
        ];
        for (code, s) in c.iter().zip(Status::ALL) {
            assert_eq!(*code, s as i32, "{}", s.name());
        }
    }
}
