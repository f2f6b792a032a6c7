//! The registry of a node's live sockets, so `close` can cut every one.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A registered socket and whether it is an incoming (reader) connection.
type Entry = (TcpStream, bool);

/// Live sockets by token. Once the node starts closing, it refuses new ones.
#[derive(Default)]
pub(crate) struct Sockets {
    next: AtomicU64,
    map: Mutex<(bool, HashMap<u64, Entry>)>,
}

impl Sockets {
    /// Registers a clone of `s`; `None` once the node is shutting down.
    pub fn add(&self, s: &TcpStream, incoming: bool) -> Option<u64> {
        let clone = s.try_clone().ok()?;
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 {
            return None;
        }
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        g.1.insert(token, (clone, incoming));
        Some(token)
    }

    /// Ends the reading side of every incoming connection, so each reader
    /// sees the end of its stream, acknowledges what it took in and stops,
    /// and refuses new sockets.
    pub fn stop_reading(&self) {
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = true;
        for (s, incoming) in g.1.values() {
            if *incoming {
                let _ = s.shutdown(std::net::Shutdown::Read);
            }
        }
    }

    /// Forgets the socket of `token`.
    pub fn remove(&self, token: u64) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(&token);
    }

    /// Shuts the socket of `token` down, waking its blocked reads and writes.
    pub fn cut(&self, token: u64) {
        if let Some(s) = self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(&token)
        {
            let _ = s.0.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Shuts every socket down and refuses new ones.
    pub fn shutdown_all(&self) {
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = true;
        for (_, (s, _)) in g.1.drain() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Wakes a thread blocked in `accept` on `fd` (Linux returns EINVAL to it).
pub(crate) fn shutdown_fd(fd: &impl AsRawFd) {
    // SAFETY: shutdown(2) on a descriptor we own; it only changes its state.
    unsafe {
        libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR);
    }
}

/// How long data may stay unacknowledged by a peer's TCP before the kernel
/// gives the connection up: a host that vanished without a word is noticed
/// in bounded time, and its writer stops blocking its senders.
pub(crate) const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Settings every peer connection gets: no Nagle delay, keepalive probes on
/// idle connections, and [`PEER_TIMEOUT`] on unacknowledged data.
pub(crate) fn tune(s: &TcpStream) {
    use socket2::{SockRef, TcpKeepalive};
    use std::time::Duration;
    let sock = SockRef::from(s);
    let _ = sock.set_nodelay(true);
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(10))
        .with_interval(Duration::from_secs(5))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    let _ = sock.set_tcp_user_timeout(Some(PEER_TIMEOUT));
}
