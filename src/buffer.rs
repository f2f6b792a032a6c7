//! Byte buffers for large payloads and for bursts of frames, shared by
//! reference count. A large buffer (32 KiB to 1 MiB) that is dropped is
//! kept for the next one of about its size instead of being freed: a stream
//! of large messages allocates on one thread and frees on another, and the
//! system allocator gives such memory back to the kernel at every free, so
//! each message paid page faults and zeroing twice (measured: a third of a
//! reader's time at 64 KiB). At most [`KEPT_BYTES`] are kept, process-wide.

use std::sync::Mutex;

/// Buffers at least this large are kept for reuse when dropped.
const MIN: usize = 32 << 10;
/// Buffers larger than this are freed as usual.
const MAX: usize = 1 << 20;
/// The most bytes kept for reuse at once, process-wide.
pub(crate) const KEPT_BYTES: usize = 4 << 20;
/// Large buffers are made in multiples of this, so that reuse finds them.
const GRAIN: usize = 4 << 10;

/// Buffers kept for reuse, and their bytes.
static KEPT: Mutex<(Vec<Vec<u8>>, usize)> = Mutex::new((Vec::new(), 0));

/// A byte buffer. One made here in the kept range has every byte of its
/// capacity initialised, so it is reused at any length without zeroing.
#[derive(Debug)]
pub struct Buf {
    bytes: Vec<u8>,
    /// Kept for reuse when dropped (made here, in the kept range).
    keep: bool,
}

impl Buf {
    /// A buffer of `len` bytes, filled by `fill` (which may fail). Its
    /// bytes before `fill` are unspecified (zero, or an earlier payload's).
    pub fn filled<E>(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Buf, E> {
        let mut b = Buf::with_len(len);
        fill(&mut b.bytes)?;
        Ok(b)
    }

    /// A copy of `data`.
    pub fn copy_from(data: &[u8]) -> Buf {
        if data.len() < MIN {
            return Buf::from(data.to_vec());
        }
        let mut b = Buf::with_len(data.len());
        b.bytes.copy_from_slice(data);
        b
    }

    /// A buffer of `len` bytes: a kept one if one fits, else a new one.
    fn with_len(len: usize) -> Buf {
        if !(MIN..=MAX).contains(&len) {
            return Buf::from(vec![0; len]);
        }
        let found = {
            let mut kept = lock();
            let (list, bytes) = &mut *kept;
            // Big enough, and not so big that it wastes a quarter.
            let fits = |v: &Vec<u8>| v.capacity() >= len && v.capacity() - len <= len / 4 + GRAIN;
            list.iter().rposition(fits).map(|i| {
                let v = list.swap_remove(i);
                *bytes -= v.capacity();
                v
            })
        };
        let mut v = found.unwrap_or_else(|| vec![0; len.next_multiple_of(GRAIN)]);
        // SAFETY: every byte of the capacity was initialised when the
        // vector was made here (`vec![0; n]` has `len == capacity`), and
        // truncating never de-initialises.
        unsafe { v.set_len(v.capacity()) };
        v.truncate(len);
        Buf {
            bytes: v,
            keep: true,
        }
    }
}

impl From<Vec<u8>> for Buf {
    /// Takes `v` as it is; it is freed, not kept, when dropped.
    fn from(v: Vec<u8>) -> Buf {
        Buf {
            bytes: v,
            keep: false,
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let cap = self.bytes.capacity();
        if !self.keep || cap > KEPT_BYTES {
            return;
        }
        let mut kept = lock();
        let (list, bytes) = &mut *kept;
        if *bytes + cap <= KEPT_BYTES {
            *bytes += cap;
            list.push(std::mem::take(&mut self.bytes));
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, (Vec<Vec<u8>>, usize)> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_buffer_dropped_is_reused_and_small_ones_are_not_kept() {
        let len = 64 << 10;
        let first = Buf::copy_from(&vec![7u8; len]);
        let at = first.as_ptr();
        drop(first);
        // Other tests run in parallel and may take it: try a few times.
        let again = (0..100).any(|_| {
            let b = Buf::filled(len - 100, |b| {
                b.fill(1);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert!(b.iter().all(|&x| x == 1) && b.len() == len - 100);
            b.as_ptr() == at
        });
        assert!(again, "the kept buffer came back");
        let small = Buf::copy_from(b"abc");
        assert_eq!(&*small, b"abc");
        drop(small);
        assert!(lock().0.iter().all(|v| v.capacity() >= MIN));
    }

    #[test]
    fn what_is_kept_stays_within_its_bound() {
        let bufs: Vec<Buf> = (0..200).map(|_| Buf::copy_from(&[0u8; MAX])).collect();
        drop(bufs);
        let kept = lock();
        assert!(kept.1 <= KEPT_BYTES, "{} bytes kept", kept.1);
        assert_eq!(kept.1, kept.0.iter().map(Vec::capacity).sum::<usize>());
    }

    #[test]
    fn a_failed_fill_is_returned() {
        assert!(matches!(
            Buf::filled(MIN, |_| Err("cut short")),
            Err("cut short")
        ));
    }
}
