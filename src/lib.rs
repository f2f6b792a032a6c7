//! `cluster`: peer-to-peer messaging for the servers of a statically
//! configured cluster, over real TCP or over an in-process mock network that
//! injects partitions, loss and delay.
//!
//! A server puts a message in an [`Envelope`] addressed to a peer id (or
//! [`BROADCAST`]) and sends it; it shows up in the peer's inbox with `pid`
//! rewritten to the sender's id. The C ABI in [`ffi`] exposes the same
//! surface to C, Python and Go.

pub mod backend;
pub mod buffer;
pub mod config;
pub mod envelope;
pub mod error;
pub mod fault;
pub mod ffi;
pub mod inbox;
pub mod loan;
pub mod mock;
pub mod node;
pub mod readiness;
pub mod stats;
pub mod sync;
pub mod transport;
pub mod wire;

pub use backend::Transport;
pub use config::{Config, BROADCAST};
pub use envelope::{Envelope, Outgoing};
pub use error::{Error, Result, Status};
pub use fault::FaultCmd;
pub use mock::{Clock, MockCluster};
pub use node::Node;
pub use sync::Timeout;
