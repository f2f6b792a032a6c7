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

/// Buffers kept for reuse, process-wide.
static KEPT: Mutex<Kept> = Mutex::new(Kept::new(KEPT_BYTES));

/// Buffers kept for reuse (every byte of each one's capacity initialised),
/// and their bytes, at most `bound`.
struct Kept {
    list: Vec<Vec<u8>>,
    bytes: usize,
    bound: usize,
}

impl Kept {
    const fn new(bound: usize) -> Kept {
        Kept {
            list: Vec::new(),
            bytes: 0,
            bound,
        }
    }

    /// A kept buffer for `len` bytes: big enough, and not so big that it
    /// wastes more than a quarter.
    fn take(&mut self, len: usize) -> Option<Vec<u8>> {
        let fits = |v: &Vec<u8>| v.capacity() >= len && v.capacity() - len <= len / 4 + GRAIN;
        let i = self.list.iter().rposition(fits)?;
        let v = self.list.swap_remove(i);
        self.bytes -= v.capacity();
        Some(v)
    }

    /// Keeps `v` if the bound allows, else gives it back to be freed.
    fn keep(&mut self, v: Vec<u8>) -> Option<Vec<u8>> {
        if self.bytes + v.capacity() > self.bound {
            return Some(v);
        }
        self.bytes += v.capacity();
        self.list.push(v);
        None
    }
}

fn kept() -> std::sync::MutexGuard<'static, Kept> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

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
    pub(crate) fn filled<E>(
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Buf, E> {
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
        let found = kept().take(len);
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
        if self.keep {
            // What the bound refuses is freed after the lock is let go.
            let refused = kept().keep(std::mem::take(&mut self.bytes));
            drop(refused);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_goes_to_a_payload_of_about_its_size_within_the_bound() {
        let mut k = Kept::new(3 * MIN);
        let big = || vec![0u8; 2 * MIN];
        assert!(k.keep(big()).is_none(), "kept");
        assert!(k.keep(big()).is_some(), "over the bound: refused");
        assert_eq!(k.bytes, 2 * MIN);
        assert!(k.take(MIN).is_none(), "half its size: would waste half");
        assert!(k.take(3 * MIN).is_none(), "too small");
        let v = k.take(2 * MIN - 100).expect("about its size");
        assert_eq!((v.capacity(), k.bytes, k.list.len()), (2 * MIN, 0, 0));
    }

    #[test]
    fn a_large_buffer_is_made_whole_and_kept_when_dropped_and_others_are_not() {
        let len = MAX - 100;
        let b = Buf::filled(len, |b| {
            b.fill(1);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(b.keep && b.iter().all(|&x| x == 1) && b.len() == len);
        assert_eq!(b.bytes.capacity(), MAX, "a multiple of the grain");
        assert!(!Buf::copy_from(&[1u8; MIN - 1]).keep, "small");
        assert!(!Buf::copy_from(&vec![1u8; MAX + 1]).keep, "too large");
        assert!(!Buf::from(vec![0u8; MAX]).keep, "not made here");
        // Dropped, it is kept unless the process-wide bound is reached
        // (other tests run at the same time: only the bound is checked).
        drop(b);
        let k = kept();
        assert!(k.bytes <= KEPT_BYTES);
        assert_eq!(k.bytes, k.list.iter().map(Vec::capacity).sum::<usize>());
    }

    #[test]
    fn a_failed_fill_is_returned() {
        assert!(matches!(
            Buf::filled(MIN, |_| Err("cut short")),
            Err("cut short")
        ));
    }
}
