//! Delivery acknowledgements: the reader of a connection tells the writer,
//! on the same socket's other direction, how many frames it has put into the
//! inbox so far (a cumulative little-endian u64). The writer then knows
//! exactly how many frames a broken connection lost, and counts them.
//!
//! Both sides use non-blocking calls only: an ack is sent when the reader is
//! about to wait for more bytes (one per read batch, not per message), and a
//! peer that does not read its acks never blocks the reader.

use std::net::TcpStream;
use std::os::fd::AsRawFd;

fn errno_is_would_block() -> bool {
    let e = std::io::Error::last_os_error().raw_os_error();
    e == Some(libc::EAGAIN) || e == Some(libc::EWOULDBLOCK) || e == Some(libc::EINTR)
}

/// The writer's view of one connection: frames written and acknowledged.
#[derive(Default)]
pub(crate) struct Acks {
    /// Frames flushed into this connection.
    pub written: u64,
    /// Frames the peer says it has put into its inbox.
    pub acked: u64,
    reported: u64,
    partial: [u8; 8],
    have: usize,
}

impl Acks {
    /// Acks that arrived since the last call, for the counters.
    pub fn fresh(&mut self) -> u64 {
        let now = self.acked.min(self.written);
        let d = now.saturating_sub(self.reported);
        self.reported = now;
        d
    }

    /// Takes in every ack that has arrived, without blocking. False if the
    /// peer has closed the connection or it failed.
    pub fn poll(&mut self, stream: &TcpStream) -> bool {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into a local buffer.
            let n = unsafe {
                libc::recv(
                    stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return false;
            }
            if n < 0 {
                return errno_is_would_block();
            }
            for &b in &buf[..n as usize] {
                self.partial[self.have] = b;
                self.have += 1;
                if self.have == 8 {
                    // Cumulative: a bogus value can only be too large, which
                    // `unacked` clamps.
                    self.acked = self.acked.max(u64::from_le_bytes(self.partial));
                    self.have = 0;
                }
            }
            // Read on until the socket is empty: an end of stream may
            // follow the last ack.
        }
    }

    /// Frames written but not acknowledged: lost if the connection broke.
    pub fn unacked(&self) -> u64 {
        self.written.saturating_sub(self.acked)
    }
}

/// The reader's side: the count to acknowledge and any ack bytes a full
/// socket buffer cut short.
#[derive(Default)]
pub(crate) struct AckSender {
    count: u64,
    sent: u64,
    out: [u8; 8],
    off: usize,
}

impl AckSender {
    /// `n` more frames are in the inbox.
    pub fn delivered(&mut self, n: u64) {
        self.count += n;
    }

    /// Sends the current count if the socket takes it without blocking.
    pub fn flush(&mut self, stream: &TcpStream) {
        if self.off == 0 {
            if self.count == self.sent {
                return;
            }
            self.out = self.count.to_le_bytes();
            self.sent = self.count;
        }
        while self.off < 8 {
            // SAFETY: sends bytes from a local buffer.
            let n = unsafe {
                libc::send(
                    stream.as_raw_fd(),
                    self.out[self.off..].as_ptr().cast(),
                    8 - self.off,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n <= 0 {
                return; // would block or broken: the next flush finishes it
            }
            self.off += n as usize;
        }
        self.off = 0;
    }
}
