//! Delivery acknowledgements: the reader of a connection tells the writer,
//! on the same socket's other direction, how many frames it has put into the
//! inbox so far (a cumulative little-endian u64). The writer then knows
//! exactly how many frames a broken connection lost, and counts them.
//!
//! Both sides use non-blocking calls only: an ack is sent when the reader is
//! about to wait for more bytes (one per read batch, not per message), and a
//! peer that does not read its acks never blocks the reader.

use socket2::SockRef;
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::net::TcpStream;

/// Whether a non-blocking call failed only because it would have blocked.
fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
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
        let mut buf = [MaybeUninit::<u8>::uninit(); 256];
        let sock = SockRef::from(stream);
        loop {
            let n = match sock.recv_with_flags(&mut buf, libc::MSG_DONTWAIT) {
                Ok(0) => return false,
                Ok(n) => n,
                Err(e) => return would_block(&e),
            };
            for b in &buf[..n] {
                // SAFETY: recv initialised the first `n` bytes.
                let b = unsafe { b.assume_init() };
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
        let sock = SockRef::from(stream);
        while self.off < 8 {
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            match sock.send_with_flags(&self.out[self.off..], flags) {
                Ok(n) if n > 0 => self.off += n,
                // Would block or broken: the next flush finishes it.
                _ => return,
            }
        }
        self.off = 0;
    }
}
