//! Delivery acknowledgements: the reader of a connection tells the writer,
//! on the same socket's other direction, how many frames it has put into the
//! inbox so far (a cumulative little-endian u64). The writer then knows
//! exactly how many frames a broken connection lost, and counts them.
//!
//! Both sides use non-blocking calls only: an ack is sent when the reader is
//! about to wait for more bytes (one per read batch, not per message), and a
//! peer that does not read its acks never blocks the reader.
//!
//! With a secret, each ack is a sealed record (see `wire`): an ack that does
//! not verify ends the connection, and is never counted.

use crate::wire::{Opener, RecordError, Sealer, ACK_LEN, RECORD_HEADER, TAG_LEN};
use socket2::SockRef;
use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::net::TcpStream;

/// Whether a non-blocking call failed only because it would have blocked.
fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// The most bytes one ack takes on the wire (a sealed one).
const ACK_WIRE: usize = RECORD_HEADER + ACK_LEN + TAG_LEN;

/// The writer's view of one connection: frames written and acknowledged.
#[derive(Default)]
pub(crate) struct Acks {
    /// Frames flushed into this connection.
    pub written: u64,
    /// Frames the peer says it has put into its inbox.
    pub acked: u64,
    reported: u64,
    partial: [u8; ACK_WIRE],
    have: usize,
    /// Opens sealed acks, on a connection with a secret.
    opener: Option<Opener>,
    /// Why the acks stopped being trusted: the connection is over.
    pub failed: Option<RecordError>,
    /// The kernel gave up on the connection: the peer left its probes
    /// unanswered (see `sockets::tune`).
    pub silent: bool,
}

impl Acks {
    /// The accounts of a new connection, whose acks `opener` opens when it
    /// has a secret.
    pub fn new(opener: Option<Opener>) -> Acks {
        Acks {
            opener,
            ..Acks::default()
        }
    }

    /// Takes in the ack bytes held in `partial`: false once they fail.
    fn take_in(&mut self) -> bool {
        let Some(opener) = &mut self.opener else {
            if self.have == ACK_LEN {
                let mut b = [0u8; ACK_LEN];
                b.copy_from_slice(&self.partial[..ACK_LEN]);
                // Cumulative: a bogus value can only be too large, which
                // `unacked` clamps.
                self.acked = self.acked.max(u64::from_le_bytes(b));
                self.have = 0;
            }
            return true;
        };
        match opener.open(&mut self.partial[..self.have]) {
            Ok(None) => true,
            Ok(Some((plain, _))) if plain.len() == ACK_LEN => {
                let mut b = [0u8; ACK_LEN];
                b.copy_from_slice(&self.partial[plain]);
                self.acked = self.acked.max(u64::from_le_bytes(b));
                self.have = 0;
                true
            }
            // Verified but not an ack: only a peer with the key sends it.
            Ok(Some(_)) => {
                self.failed = Some(RecordError::Forged);
                false
            }
            Err(e) => {
                self.failed = Some(e);
                false
            }
        }
    }

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
        if self.failed.is_some() {
            return false;
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 256];
        let sock = SockRef::from(stream);
        loop {
            let n = match sock.recv_with_flags(&mut buf, libc::MSG_DONTWAIT) {
                Ok(0) => {
                    if self.have > 0 && self.opener.is_some() {
                        self.failed = Some(RecordError::Truncated);
                    }
                    return false;
                }
                Ok(n) => n,
                Err(e) => {
                    self.silent |= e.kind() == ErrorKind::TimedOut;
                    return would_block(&e);
                }
            };
            for b in &buf[..n] {
                // SAFETY: recv initialised the first `n` bytes.
                let b = unsafe { b.assume_init() };
                self.partial[self.have] = b;
                self.have += 1;
                // A sealed ack's length is checked as soon as it is in.
                if self.have >= RECORD_HEADER && !self.take_in() {
                    return false;
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
    out: Vec<u8>,
    off: usize,
    /// Seals each ack, on a connection with a secret.
    sealer: Option<Sealer>,
}

impl AckSender {
    /// The acks of a new connection, sealed by `sealer` when it has a secret.
    pub fn new(sealer: Option<Sealer>) -> AckSender {
        AckSender {
            sealer,
            ..AckSender::default()
        }
    }

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
            self.out.clear();
            match &mut self.sealer {
                Some(s) => s.seal(&self.count.to_le_bytes(), &mut self.out),
                None => self.out.extend_from_slice(&self.count.to_le_bytes()),
            }
            self.sent = self.count;
        }
        let sock = SockRef::from(stream);
        while self.off < self.out.len() {
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
