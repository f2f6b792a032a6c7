//! The one error type of the library and its stable status codes.

use std::fmt;

/// Status codes returned by every C function. The numbers are part of the ABI
/// and never change; new codes only ever get new numbers.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullArg = -1,
    /// An argument had a value outside its domain (bad UTF-8, negative size, ...).
    InvalidArg = -2,
    /// The configuration is invalid; the message names the field.
    Config = -3,
    /// The node's address is already in use by another socket.
    AddrInUse = -4,
    /// An operating-system I/O error.
    Io = -5,
    /// The destination id is not a member of the cluster.
    UnknownPeer = -6,
    /// The payload is larger than the configured MaxMessageSize.
    TooLarge = -7,
    /// The call timed out before it could complete.
    Timeout = -8,
    /// The node (or mock cluster) is closed.
    Closed = -9,
    /// A bounded queue was full and the message was dropped (and counted).
    Full = -10,
    /// A panic was caught at the C boundary: a bug in the library.
    Panic = -11,
    /// A caller-provided buffer is too small; the needed size is reported.
    BufferTooSmall = -12,
}

impl Status {
    /// Every status, for iteration in tests and bindings.
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::NullArg,
        Status::InvalidArg,
        Status::Config,
        Status::AddrInUse,
        Status::Io,
        Status::UnknownPeer,
        Status::TooLarge,
        Status::Timeout,
        Status::Closed,
        Status::Full,
        Status::Panic,
        Status::BufferTooSmall,
    ];

    /// The stable symbolic name of the code, e.g. `"CLUSTER_E_TIMEOUT"`.
    pub fn name(self) -> &'static str {
        self.c_name().to_str().unwrap_or("CLUSTER_E_UNKNOWN")
    }

    /// [`Status::name`] as a static C string.
    pub fn c_name(self) -> &'static std::ffi::CStr {
        match self {
            Status::Ok => c"CLUSTER_OK",
            Status::NullArg => c"CLUSTER_E_NULL_ARG",
            Status::InvalidArg => c"CLUSTER_E_INVALID_ARG",
            Status::Config => c"CLUSTER_E_CONFIG",
            Status::AddrInUse => c"CLUSTER_E_ADDR_IN_USE",
            Status::Io => c"CLUSTER_E_IO",
            Status::UnknownPeer => c"CLUSTER_E_UNKNOWN_PEER",
            Status::TooLarge => c"CLUSTER_E_TOO_LARGE",
            Status::Timeout => c"CLUSTER_E_TIMEOUT",
            Status::Closed => c"CLUSTER_E_CLOSED",
            Status::Full => c"CLUSTER_E_FULL",
            Status::Panic => c"CLUSTER_E_PANIC",
            Status::BufferTooSmall => c"CLUSTER_E_BUFFER_TOO_SMALL",
        }
    }

    /// Looks a raw code up; `None` for numbers that are not a status.
    pub fn from_code(code: i32) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as i32 == code)
    }
}

/// An error: a status code and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of failure this is.
    pub status: Status,
    /// What went wrong, naming the field or argument at fault.
    pub message: String,
}

impl Error {
    /// Builds an error of the given status.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// A configuration error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Status::Config, message)
    }

    /// The error every call on a closed node returns.
    pub fn closed() -> Error {
        Error::new(Status::Closed, "node is closed")
    }

    /// The error of a blocking call whose deadline passed.
    pub fn timeout() -> Error {
        Error::new(Status::Timeout, "timed out")
    }

    /// The error for a destination that is not in the cluster.
    pub fn unknown_peer(pid: i64) -> Error {
        Error::new(
            Status::UnknownPeer,
            format!("unknown destination id {pid}: not a member of the cluster"),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        let status = if e.kind() == std::io::ErrorKind::AddrInUse {
            Status::AddrInUse
        } else {
            Status::Io
        };
        Error::new(status, e.to_string())
    }
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;
