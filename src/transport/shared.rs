//! The state a TCP node shares with its threads.

use crate::config::Config;
use crate::fault::Faults;
use crate::inbox::Inbox;
use crate::stats::NodeStats;
use crate::sync::Shutdown;

use super::sockets::Sockets;

/// State shared by the node and its threads.
pub(crate) struct Shared {
    pub id: i64,
    pub config: Config,
    pub stats: NodeStats,
    pub inbox: Inbox,
    pub shutdown: Shutdown,
    pub sockets: Sockets,
    pub faults: Faults,
}
