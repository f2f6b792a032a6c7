//! A node's sockets: the registry of live ones (so `close` can cut every
//! one), the settings and writes every connection uses, and how a writer
//! tells a gone peer from a slow one.

use socket2::SockRef;
use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A registered socket and whether it is an incoming (reader) connection.
/// Shared, not duplicated: a link costs one descriptor on each side.
type Entry = (Arc<TcpStream>, bool);

/// Live sockets by token. Once the node starts closing, it refuses new ones.
#[derive(Default)]
pub(crate) struct Sockets {
    next: AtomicU64,
    map: Mutex<(bool, HashMap<u64, Entry>)>,
}

impl Sockets {
    /// Registers `s`; `None` once the node is shutting down.
    pub fn add(&self, s: &Arc<TcpStream>, incoming: bool) -> Option<u64> {
        let clone = s.clone();
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

/// Wakes a thread blocked in `accept` on `l` (Linux returns EINVAL to it).
pub(crate) fn shutdown_listener(l: &std::net::TcpListener) {
    let _ = SockRef::from(l).shutdown(std::net::Shutdown::Both);
}

/// Sends `bufs` (the first [`MAX_SLICES`] of them) with one `sendmsg`,
/// without blocking and without raising SIGPIPE in the host process:
/// `MSG_NOSIGNAL` on every write we make.
/// At most this many slices go to one `sendmsg` (the kernel refuses more
/// than `IOV_MAX` with EMSGSIZE); the caller sends the rest next.
const MAX_SLICES: usize = 1024;

pub(crate) fn send_now(s: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(MAX_SLICES)];
    SockRef::from(s).send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
}

/// Blocks until `s` is readable (`POLLIN`) or writable (`POLLOUT`), has
/// failed or ended, or `d` has passed.
pub(crate) fn wait_for(s: &TcpStream, events: libc::c_short, d: Duration) {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = d.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one pollfd on a socket we own, for the length of the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}

/// Bytes `s` takes now without blocking, counted low: half what its send
/// buffer has left (the kernel counts what it holds with its bookkeeping,
/// which small writes can double); 0 if that cannot be read.
pub(crate) fn room(s: &TcpStream) -> usize {
    // SAFETY: SO_MEMINFO fills an array of u32 counters.
    let info: Option<[u32; libc::SK_MEMINFO_DROPS as usize + 1]> =
        unsafe { sockopt(s, libc::SOL_SOCKET, libc::SO_MEMINFO) };
    let Some(info) = info else {
        return 0;
    };
    let at = |i: libc::c_int| info[i as usize] as usize;
    at(libc::SK_MEMINFO_SNDBUF).saturating_sub(at(libc::SK_MEMINFO_WMEM_QUEUED)) / 2
}

/// How often a writer checks that its peer is still there: a quarter of
/// the peer timeout, between 50 ms and 1 s.
pub(crate) fn check_every(peer_timeout: Duration) -> Duration {
    (peer_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// Settings every peer connection gets: no Nagle delay, and keepalive probes
/// on idle connections, tuned to the peer timeout (see [`keepalive`]). No
/// `TCP_USER_TIMEOUT`: it also cuts a live peer that merely stopped reading
/// (its window stays zero), which must get back-pressure, not loss.
pub(crate) fn tune(s: &TcpStream, peer_timeout: Duration) {
    let sock = SockRef::from(s);
    let _ = sock.set_nodelay(true);
    let _ = sock.set_tcp_keepalive(&keepalive(peer_timeout));
}

/// Keepalive for a connection with nothing in flight: the first probe after
/// half the peer timeout of silence, then one every eighth of it (the kernel
/// counts in whole seconds), and the kernel fails the socket once the peer
/// timeout has passed unanswered, never before it and within 1.5 × of it (3 s
/// at least: two probes, so one lost probe cuts nothing). A writer with
/// nothing to send sleeps on its socket and wakes only for that verdict;
/// with data in flight, [`Liveness`] judges.
fn keepalive(peer_timeout: Duration) -> socket2::TcpKeepalive {
    let time = (peer_timeout / 2).as_secs().max(1);
    let interval = (peer_timeout / 8).as_secs().max(1);
    let rest = (peer_timeout.as_millis() as u64).saturating_sub(time * 1000);
    // The kernel takes at most 127 probes.
    let probes = rest.div_ceil(interval * 1000).clamp(2, 127) as u32;
    socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(time))
        .with_interval(Duration::from_secs(interval))
        .with_retries(probes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_verdict_on_an_idle_link_comes_after_the_peer_timeout_and_within_half_of_it_more()
    {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // What the kernel is told, for every timeout from 100 ms to an hour.
        let mut ms = 100u64;
        while ms <= 3_600_000 {
            let k = keepalive(Duration::from_millis(ms));
            SockRef::from(&s).set_tcp_keepalive(&k).unwrap();
            let k = SockRef::from(&s);
            let (time, every, probes) = (
                k.keepalive_time().unwrap().as_secs(),
                k.keepalive_interval().unwrap().as_secs(),
                u64::from(k.keepalive_retries().unwrap()),
            );
            let verdict = (time + every * probes) * 1000;
            assert!(probes >= 2, "{ms} ms: {probes} probes");
            let bound = (ms * 3 / 2).max(3_000);
            assert!(verdict >= ms && verdict <= bound, "{ms} ms: {verdict} ms");
            ms += if ms < 20_000 { 100 } else { 7_900 };
        }
    }
}

/// Tells a peer that is gone (killed, unplugged, its link cut) from one
/// that is only slow to read. The kernel answers our data and keepalive
/// probes for a live peer even while its application reads nothing: a peer
/// that owes an answer (data or a probe is out) and has sent no ACK for the
/// peer timeout, and still so a check interval later, is gone. While the
/// peer's window is closed, the kernel's zero-window probes back off to one
/// every [`PROBE_MAX`], so silence means something only past that.
#[derive(Default)]
pub(crate) struct Liveness {
    /// Since when every check found the peer silent.
    silent_since: Option<Instant>,
}

/// The longest interval between the kernel's zero-window probes
/// (`TCP_RTO_MAX`).
pub(crate) const PROBE_MAX: Duration = Duration::from_secs(120);

impl Liveness {
    /// False once the peer at the end of `s` is judged gone.
    pub fn check(&mut self, s: &TcpStream, peer_timeout: Duration) -> bool {
        let silent = tcp_info(s).is_some_and(|i| {
            // Data in flight or a probe out. Not `tcpi_retransmits`: it
            // stays set while a live peer's window is closed.
            let owes = i.tcpi_unacked > 0 || i.tcpi_probes > 0;
            // (A kernel older than 5.4 reports no window: taken as closed,
            // which only makes the judgement slower.)
            let closed = i.tcpi_snd_wnd == 0 && i.tcpi_unacked == 0;
            let limit = if closed {
                peer_timeout + PROBE_MAX
            } else {
                peer_timeout
            };
            owes && u128::from(i.tcpi_last_ack_recv) >= limit.as_millis()
        });
        if !silent {
            self.silent_since = None;
            return true;
        }
        // A probe that is answered a moment later is a live peer.
        let since = *self.silent_since.get_or_insert_with(Instant::now);
        since.elapsed() < check_every(peer_timeout)
    }
}

/// The kernel's view of a TCP connection.
fn tcp_info(s: &TcpStream) -> Option<libc::tcp_info> {
    // SAFETY: TCP_INFO fills a `tcp_info`, integers only.
    unsafe { sockopt(s, libc::IPPROTO_TCP, libc::TCP_INFO) }
}

/// Socket option `name` at `level` of `s`, read into a zeroed `T` (fields an
/// older kernel does not fill read as 0); `None` if the call fails.
///
/// # Safety
///
/// `T` must be the option's C type (a struct or array of integers): all
/// zeroes, and whatever the kernel writes into it, are values of `T`.
unsafe fn sockopt<T>(s: &TcpStream, level: libc::c_int, name: libc::c_int) -> Option<T> {
    let mut v = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    let r =
        unsafe { libc::getsockopt(s.as_raw_fd(), level, name, v.as_mut_ptr().cast(), &mut len) };
    // SAFETY: zeroed and partly written by the kernel: a value of `T`, as
    // the caller promised.
    (r == 0).then(|| unsafe { v.assume_init() })
}
