//! The writer's batch: frames on their way into a socket. Headers and small
//! payloads are copied into one buffer; large payloads are written from
//! where they already are (one `writev` for the whole batch), so every byte
//! is copied at most once before the kernel takes it.

use crate::envelope::{Envelope, Header, Payload, HEADER_LEN};
use std::io::{IoSlice, Write};

/// Payloads from this size on are not copied into the buffer.
const BIG: usize = 8 << 10;

pub(crate) struct Batch {
    /// Headers and small payloads, in frame order.
    buf: Vec<u8>,
    /// Large payloads, each with the offset in `buf` it follows.
    big: Vec<(usize, Payload)>,
    /// Bytes in the batch, large payloads included.
    len: usize,
    /// Frames in the batch.
    frames: u64,
    /// Payload bytes in the batch.
    payload: u64,
    /// Bytes from which the batch counts as full.
    cap: usize,
}

impl Batch {
    /// An empty batch that reports itself full at about `cap` bytes.
    pub fn new(cap: usize) -> Batch {
        Batch {
            // Room for one more small frame than `cap`: the buffer never
            // grows (and never reallocates) once made.
            buf: Vec::with_capacity(cap + HEADER_LEN + BIG),
            cap,
            big: Vec::new(),
            len: 0,
            frames: 0,
            payload: 0,
        }
    }

    /// Appends the frame of `env`.
    #[inline]
    pub fn push(&mut self, env: &Envelope) {
        self.buf.extend_from_slice(&Header::encode(env));
        if env.data.len() >= BIG {
            self.big.push((self.buf.len(), env.data.clone()));
        } else {
            self.buf.extend_from_slice(&env.data);
        }
        self.len += HEADER_LEN + env.data.len();
        self.frames += 1;
        self.payload += env.data.len() as u64;
    }

    /// Whether the batch holds at least the capacity it was made with.
    pub fn is_full(&self) -> bool {
        self.len >= self.cap
    }

    /// Frames in the batch.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Payload bytes in the batch.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Writes the whole batch into `out` and empties it (also on error).
    pub fn write_to(&mut self, mut out: impl Write) -> std::io::Result<()> {
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
            match out.write_vectored(rest) {
                Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        drop(slices);
        self.buf.clear();
        self.big.clear();
        self.len = 0;
        self.frames = 0;
        self.payload = 0;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::FrameReader;

    #[test]
    fn small_and_big_frames_come_out_in_order_through_short_writes() {
        /// Accepts at most 1000 bytes per call, like a busy socket.
        struct Trickle(Vec<u8>);
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let n = b.len().min(1000);
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
                let mut n = 0;
                for b in bufs {
                    let k = (1000 - n).min(b.len());
                    self.0.extend_from_slice(&b[..k]);
                    n += k;
                    if n == 1000 {
                        break;
                    }
                }
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sizes = [0usize, 5, BIG, 3, BIG * 3 + 1, BIG - 1, 0, BIG];
        let envs: Vec<Envelope> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Envelope::new(2, i as i64, 0, &vec![i as u8 + 1; n]))
            .collect();
        let mut batch = Batch::new(1 << 10);
        let room = batch.buf.capacity();
        let mut out = Trickle(Vec::new());
        for e in &envs {
            batch.push(e);
        }
        assert!(batch.is_full());
        assert_eq!(batch.frames(), envs.len() as u64);
        assert_eq!(batch.buf.capacity(), room, "the buffer never grows");
        batch.write_to(&mut out).unwrap();
        assert_eq!(batch.frames(), 0);
        let mut frames = FrameReader::new(&out.0[..], 1 << 20, 4096);
        for e in &envs {
            let got = frames.next_frame(2).unwrap().unwrap();
            assert_eq!((got.msg_id, &got.data[..]), (e.msg_id, &e.data[..]));
        }
        assert!(frames.next_frame(2).unwrap().is_none());
    }

    #[test]
    fn a_batch_of_small_frames_is_full_at_its_capacity_and_never_grows() {
        let mut batch = Batch::new(4096);
        let room = batch.buf.capacity();
        let env = Envelope::new(2, 0, 0, &[7u8; 64]);
        let mut n = 0;
        while !batch.is_full() {
            batch.push(&env);
            n += 1;
            assert!(n < 1000, "never full");
        }
        assert_eq!(n, 4096usize.div_ceil(HEADER_LEN + 64));
        assert_eq!(batch.buf.capacity(), room);
    }
}
