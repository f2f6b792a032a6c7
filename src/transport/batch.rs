//! A batch of encoded frames on their way into a socket: what a peer's
//! queue holds, and what its writer swaps out and writes whole. Headers and
//! small payloads are copied into one buffer; large payloads are written
//! from where they already are (one `writev` for the whole batch), so every
//! byte is copied at most once before the kernel takes it.

use crate::envelope::{Envelope, Payload};
use crate::wire::Header;
use std::io::{self, IoSlice};
use std::net::TcpStream;

/// Payloads from this size on are not copied into the buffer.
pub(crate) const BIG: usize = 8 << 10;
/// A buffer that grew beyond this during a burst is shrunk back once written.
const KEEP: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Batch {
    /// Headers and small payloads, in frame order.
    buf: Vec<u8>,
    /// Large payloads, each with the offset in `buf` it follows.
    big: Vec<(usize, Payload)>,
    /// Frames in the batch.
    frames: u64,
    /// Payload bytes in the batch.
    payload: u64,
}

impl Batch {
    /// Appends the frame of `env`.
    #[inline]
    pub fn push(&mut self, env: &Envelope) {
        self.buf.extend_from_slice(&Header::encode(env));
        if env.data.len() >= BIG {
            self.big.push((self.buf.len(), env.data.clone()));
        } else {
            self.buf.extend_from_slice(&env.data);
        }
        self.frames += 1;
        self.payload += env.data.len() as u64;
    }

    /// Appends a frame of a small payload (below [`BIG`]) from where it is.
    #[inline]
    pub fn push_small(&mut self, msg_id: i64, kind: u32, data: &[u8]) {
        debug_assert!(data.len() < BIG);
        let len = data.len() as u32;
        self.buf
            .extend_from_slice(&Header { len, kind, msg_id }.to_bytes());
        self.buf.extend_from_slice(data);
        self.frames += 1;
        self.payload += data.len() as u64;
    }

    /// Whether the batch holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Frames in the batch.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Payload bytes in the batch.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Writes the whole batch into `s` and empties it (also on error). When
    /// the socket is full, `stalled` waits for room and may give up with an
    /// error (the deadline passed, the peer is gone).
    pub fn write_to(
        &mut self,
        s: &TcpStream,
        stalled: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        self.write_with(|b| super::sockets::send_now(s, b), stalled)
    }

    /// [`Batch::write_to`] through any non-blocking `send`.
    fn write_with(
        &mut self,
        mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
        mut stalled: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * self.big.len() + 1);
        let mut at = 0;
        for (end, data) in &self.big {
            slices.push(IoSlice::new(&self.buf[at..*end]));
            slices.push(IoSlice::new(data));
            at = *end;
        }
        slices.push(IoSlice::new(&self.buf[at..]));
        slices.retain(|s| !s.is_empty());
        let mut rest = &mut slices[..];
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            match send(rest) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = stalled() {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        drop(slices);
        self.clear();
        result
    }

    /// Empties the batch; a buffer a burst made large is given back.
    pub fn clear(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > KEEP {
            self.buf.shrink_to(KEEP / 4);
        }
        self.big.clear();
        self.frames = 0;
        self.payload = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FrameReader;

    #[test]
    fn small_and_big_frames_come_out_in_order_through_short_writes() {
        // Accepts at most 1000 bytes per call and is full every other
        // call, like a busy socket.
        let mut out = Vec::new();
        let mut full = false;
        let mut stalls = 0;
        let send = |bufs: &[IoSlice<'_>]| {
            full = !full;
            if full {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let k = (1000 - n).min(b.len());
                out.extend_from_slice(&b[..k]);
                n += k;
                if n == 1000 {
                    break;
                }
            }
            Ok(n)
        };
        let sizes = [0usize, 5, BIG, 3, BIG * 3 + 1, BIG - 1, 0, BIG];
        let envs: Vec<Envelope> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Envelope::new(2, i as i64, 0, &vec![i as u8 + 1; n]))
            .collect();
        let mut batch = Batch::default();
        for e in &envs {
            batch.push(e);
        }
        assert_eq!(batch.frames(), envs.len() as u64);
        assert!(batch.buf.len() < 3 * BIG, "large payloads are not copied");
        batch
            .write_with(send, || {
                stalls += 1;
                Ok(())
            })
            .unwrap();
        assert!(batch.is_empty());
        assert!(stalls > 10, "waited for room when the socket was full");
        let mut frames = FrameReader::new(&out[..], 1 << 20, 4096);
        for e in &envs {
            let got = frames.next_frame(2).unwrap().unwrap();
            assert_eq!((got.msg_id, &got.data[..]), (e.msg_id, &e.data[..]));
        }
        assert!(frames.next_frame(2).unwrap().is_none());
    }

    #[test]
    fn a_buffer_grown_by_a_burst_is_given_back_once_written() {
        let mut batch = Batch::default();
        let env = Envelope::new(2, 0, 0, &[7u8; 1000]);
        for _ in 0..2000 {
            batch.push(&env);
        }
        assert!(batch.buf.capacity() > KEEP);
        batch
            .write_with(|b| Ok(b.iter().map(|s| s.len()).sum()), || Ok(()))
            .unwrap();
        assert!(batch.buf.capacity() <= KEEP);
        assert_eq!((batch.frames(), batch.payload_bytes()), (0, 0));
    }
}
