//! A batch of encoded frames on their way into a socket: what a peer's
//! queue holds, and what its writer swaps out and writes whole. Headers and
//! small payloads are copied into one buffer; large payloads are written
//! from where they already are (one `writev` for the whole batch), so every
//! byte is copied at most once before the kernel takes it.
//!
//! With a secret, the batch's bytes are sealed into records of up to
//! [`RECORD_MAX`] bytes each (a few large records for a whole batch of
//! small frames, not one per frame) and written a few hundred KiB at a time.

use crate::envelope::{Envelope, Payload};
use crate::wire::{Header, Sealer, RECORD_MAX};
use std::io::{self, IoSlice};
use std::net::TcpStream;

/// Payloads from this size on are not copied into the buffer.
pub(crate) const BIG: usize = 8 << 10;
/// A buffer that grew beyond this during a burst is shrunk back once written.
const KEEP: usize = 1 << 20;
/// Sealed bytes are written once this many are ready (and at the end).
const SEALED_CHUNK: usize = 256 << 10;

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
    /// Records being written, with a secret (kept for its capacity).
    sealed: Vec<u8>,
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

    /// Bytes the batch takes on the wire (unsealed).
    pub fn wire_len(&self) -> usize {
        self.buf.len() + self.big.iter().map(|(_, p)| p.len()).sum::<usize>()
    }

    /// Writes the whole batch into `s` and empties it (also on error). When
    /// the socket is full, `stalled` waits for room and may give up with an
    /// error (the deadline passed, the peer is gone).
    /// With `seal`, the bytes go out sealed in records.
    pub fn write_to(
        &mut self,
        s: &TcpStream,
        seal: Option<&mut Sealer>,
        stalled: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        self.write_with(|b| super::sockets::send_now(s, b), seal, stalled)
    }

    /// The batch's bytes in order: the buffer's runs and the large payloads
    /// between them.
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * self.big.len() + 1);
        let mut at = 0;
        for (end, data) in &self.big {
            slices.push(IoSlice::new(&self.buf[at..*end]));
            slices.push(IoSlice::new(data));
            at = *end;
        }
        slices.push(IoSlice::new(&self.buf[at..]));
        slices.retain(|s| !s.is_empty());
        slices
    }

    /// [`Batch::write_to`] through any non-blocking `send`.
    fn write_with(
        &mut self,
        mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
        seal: Option<&mut Sealer>,
        mut stalled: impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        let result = match seal {
            None => send_all(&mut self.slices(), &mut send, &mut stalled),
            Some(sealer) => {
                let mut out = std::mem::take(&mut self.sealed);
                let r = self.write_sealed(sealer, &mut out, &mut send, &mut stalled);
                out.clear();
                self.sealed = out;
                r
            }
        };
        self.clear();
        result
    }

    /// Seals the batch into records, written whenever [`SEALED_CHUNK`]
    /// bytes are ready and at the end.
    fn write_sealed(
        &self,
        sealer: &mut Sealer,
        out: &mut Vec<u8>,
        send: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
        stalled: &mut impl FnMut() -> io::Result<()>,
    ) -> io::Result<()> {
        // The open record: where it starts in `out`, and its room left.
        let mut open: Option<(usize, usize)> = None;
        for slice in self.slices() {
            let mut rest: &[u8] = &slice;
            while !rest.is_empty() {
                let (at, room) = match open {
                    Some(o) => o,
                    None => (sealer.begin(out), RECORD_MAX),
                };
                let k = room.min(rest.len());
                out.extend_from_slice(&rest[..k]);
                rest = &rest[k..];
                open = Some((at, room - k));
                if room == k {
                    sealer.finish(out, at);
                    open = None;
                    if out.len() >= SEALED_CHUNK {
                        send_all(&mut [IoSlice::new(out)], send, stalled)?;
                        out.clear();
                    }
                }
            }
        }
        if let Some((at, _)) = open {
            sealer.finish(out, at);
        }
        send_all(&mut [IoSlice::new(out)], send, stalled)
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
        if self.sealed.capacity() > KEEP {
            self.sealed = Vec::new();
        }
    }
}

/// Sends every byte of `slices` through the non-blocking `send`, waiting
/// with `stalled` while the socket is full.
fn send_all(
    slices: &mut [IoSlice<'_>],
    send: &mut impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    stalled: &mut impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let mut rest = slices;
    loop {
        if rest.is_empty() {
            return Ok(());
        }
        match send(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stalled()?,
            Err(e) => return Err(e),
        }
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
            .write_with(send, None, || {
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
            .write_with(|b| Ok(b.iter().map(|s| s.len()).sum()), None, || Ok(()))
            .unwrap();
        assert!(batch.buf.capacity() <= KEEP);
        assert_eq!((batch.frames(), batch.payload_bytes()), (0, 0));
    }

    #[test]
    fn a_sealed_batch_reads_back_through_the_records() {
        use crate::wire::{Opener, RecordReader, KEY_LEN};
        let key = [3u8; KEY_LEN];
        let mut sealer = Sealer::new(&key);
        let mut out = Vec::new();
        let sizes = [16usize, BIG * 20, 0, 5, RECORD_MAX, 1];
        let envs: Vec<Envelope> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| Envelope::new(2, i as i64, 0, &vec![i as u8 + 1; n]))
            .collect();
        // Two batches, so the record numbers go on across them.
        for part in envs.chunks(3) {
            let mut batch = Batch::default();
            for e in part {
                batch.push(e);
            }
            let send = |b: &[IoSlice<'_>]| {
                // Short writes: at most 1000 bytes per call.
                let k = b[0].len().min(1000);
                out.extend_from_slice(&b[0][..k]);
                Ok(k)
            };
            batch
                .write_with(send, Some(&mut sealer), || Ok(()))
                .unwrap();
            assert!(batch.is_empty());
        }
        let plain: usize = sizes.iter().map(|n| n + crate::wire::HEADER_LEN).sum();
        assert!(
            out.len() < plain + 64 * (plain / RECORD_MAX + 2),
            "few records"
        );
        let records = RecordReader::new(&out[..], Opener::new(&key, RECORD_MAX));
        let mut frames = FrameReader::new(records, 1 << 22, 4096);
        for e in &envs {
            let got = frames.next_frame(2).unwrap().unwrap();
            assert_eq!((got.msg_id, &got.data[..]), (e.msg_id, &e.data[..]));
        }
        assert!(frames.next_frame(2).unwrap().is_none());
    }
}
