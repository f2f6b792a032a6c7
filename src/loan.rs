//! Payloads lent out of one shared buffer to many holders, counted in
//! bulk: a receive that lends the payloads of a burst takes all the shares
//! it needs with one count and hands them out with no atomic operation,
//! and freeing envelopes that share a loan gives their shares back with one
//! atomic subtraction, where an `Arc` costs a locked instruction per clone
//! and per drop.

use crate::buffer::Buf;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::Arc;

/// A buffer on loan: its shares (handed out, or still held by the
/// [`Shares`] that made it), and the buffer, kept alive while any is.
struct Loan {
    shares: AtomicUsize,
    buf: Arc<Buf>,
}

/// Gives back `n` shares of the loan at `loan`, freeing it with the last.
///
/// # Safety
/// `loan` came from [`Shares::new`] and the caller owns `n` of its shares,
/// which it gives up.
unsafe fn give_back(loan: NonNull<Loan>, n: usize) {
    // SAFETY: the loan lives while a share is out, and the caller has n.
    if unsafe { loan.as_ref() }
        .shares
        .fetch_sub(n, Ordering::Release)
        == n
    {
        // Every holder's use of the buffer happens before the free.
        fence(Ordering::Acquire);
        // SAFETY: the last shares are given back: nobody else holds one.
        drop(unsafe { Box::from_raw(loan.as_ptr()) });
    }
}

/// Shares of a buffer not handed out yet: their owner hands them out one by
/// one ([`Shares::take`]) with no atomic operation, and gives back the rest
/// when it drops them.
#[derive(Debug)]
pub struct Shares {
    loan: NonNull<Loan>,
    left: usize,
}

// What makes the impls below sound: a loan is an atomic count and an
// `Arc<Buf>`, and the buffer is only read.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Arc<Buf>>();
};

// SAFETY: see above; shares are given back through the atomic count only.
unsafe impl Send for Shares {}
// SAFETY: `&Shares` reads nothing of the loan.
unsafe impl Sync for Shares {}

impl Shares {
    /// `n` shares (at least one) of a new loan of `buf`.
    pub fn new(buf: Arc<Buf>, n: usize) -> Shares {
        let n = n.max(1);
        let loan = Box::new(Loan {
            shares: AtomicUsize::new(n),
            buf,
        });
        Shares {
            loan: NonNull::from(Box::leak(loan)),
            left: n,
        }
    }

    /// Hands out one share; `None` once all are out.
    pub fn take(&mut self) -> Option<Share> {
        self.left = self.left.checked_sub(1)?;
        Some(Share(self.loan))
    }
}

impl Drop for Shares {
    fn drop(&mut self) {
        if self.left > 0 {
            // SAFETY: these shares were never handed out.
            unsafe { give_back(self.loan, self.left) };
        }
    }
}

/// One share of a loaned buffer: keeps the buffer alive until it is dropped
/// or, once it crossed the C boundary as a pointer, given back with
/// [`Share::give_back_raw`].
#[derive(Debug)]
pub struct Share(NonNull<Loan>);

const _: () = assert!(std::mem::align_of::<Loan>() >= 2, "the lowest bit is free");

// SAFETY: see `Shares`.
unsafe impl Send for Share {}
// SAFETY: see `Shares`.
unsafe impl Sync for Share {}

impl Share {
    /// The buffer shared.
    pub fn buf(&self) -> &Buf {
        // SAFETY: the loan lives while this share is out.
        &unsafe { self.0.as_ref() }.buf
    }

    /// The share as a pointer, to give back with [`Share::give_back_raw`]:
    /// never NULL, aligned to at least 2 (its lowest bit is free), and
    /// never equal to the pointer of another live loan.
    pub fn into_raw(self) -> *const () {
        let p = self.0.as_ptr() as *const ();
        std::mem::forget(self);
        p
    }

    /// Gives back `n` shares that went out as `raw`, freeing the buffer with
    /// the last share of its loan.
    ///
    /// # Safety
    /// `raw` came from [`Share::into_raw`] `n` times (or more), and these
    /// `n` are given back once only.
    pub unsafe fn give_back_raw(raw: *const (), n: usize) {
        if n == 0 {
            return;
        }
        if let Some(loan) = NonNull::new(raw as *mut Loan) {
            // SAFETY: by the caller's contract.
            unsafe { give_back(loan, n) };
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        // SAFETY: this share was handed out and is given back once.
        unsafe { give_back(self.0, 1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer whose drop the test can see (its `Arc`'s strong count).
    fn watched() -> (Arc<Buf>, std::sync::Weak<Buf>) {
        let buf = Arc::new(Buf::from(b"payload".to_vec()));
        let weak = Arc::downgrade(&buf);
        (buf, weak)
    }

    #[test]
    fn the_buffer_lives_until_the_last_share_is_back() {
        let (buf, weak) = watched();
        let mut shares = Shares::new(buf, 3);
        let a = shares.take().unwrap();
        let b = shares.take().unwrap().into_raw();
        drop(shares); // gives back the one not handed out
        assert_eq!(&a.buf()[..], b"payload");
        drop(a);
        assert!(weak.upgrade().is_some(), "one share is still out");
        // SAFETY: `b` went out once and is given back once.
        unsafe { Share::give_back_raw(b, 1) };
        assert!(weak.upgrade().is_none(), "the last share freed the buffer");
    }

    /// A share's pointer, sent to another thread.
    struct Raw(*const ());
    // SAFETY: the pointer is only given back, which any thread may do.
    unsafe impl Send for Raw {}
    // SAFETY: as above.
    unsafe impl Sync for Raw {}

    #[test]
    fn shares_run_out_and_go_back_in_bulk_from_many_threads() {
        let (buf, weak) = watched();
        let mut shares = Shares::new(buf, 1000);
        let raws: Vec<Raw> = (0..1000)
            .map(|_| Raw(shares.take().unwrap().into_raw()))
            .collect();
        assert!(shares.take().is_none());
        drop(shares);
        std::thread::scope(|s| {
            for chunk in raws.chunks(250) {
                // SAFETY: each share went out once and goes back once, in
                // a chunk of pointers that are all the same.
                s.spawn(move || unsafe { Share::give_back_raw(chunk[0].0, chunk.len()) });
            }
        });
        assert!(weak.upgrade().is_none());
    }
}
