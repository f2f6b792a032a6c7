//! What the blocking parts of a node share: timeouts and the C millisecond
//! convention, the shutdown signal, why a push into a bounded queue failed,
//! the spin-then-park policy of every waiter for an event, and a lock for
//! short critical sections released with a plain store.

use crossbeam_channel::{bounded, Receiver, Sender};
use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a blocking call may wait: `None` is forever, zero is not at all.
pub type Timeout = Option<Duration>;

/// Converts the C convention (negative forever, 0 no wait, n ms) to [`Timeout`].
pub fn timeout_from_ms(ms: i64) -> Timeout {
    if ms < 0 {
        None
    } else {
        Some(Duration::from_millis(ms as u64))
    }
}

/// The deadline of a timeout that starts now.
pub fn deadline(timeout: Timeout) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// A one-shot signal: once fired, every [`Shutdown::sleep`] ends at once (and
/// an inbox closed with it wakes its callers, see [`Inbox::close`]).
#[derive(Debug)]
pub struct Shutdown {
    fired: AtomicBool,
    tx: Mutex<Option<Sender<()>>>,
    rx: Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = bounded(0);
        Shutdown {
            fired: AtomicBool::new(false),
            tx: Mutex::new(Some(tx)),
            rx,
        }
    }
}

impl Shutdown {
    /// Fires the signal; returns false if it had fired already.
    pub fn fire(&self) -> bool {
        let first = !self.fired.swap(true, Ordering::AcqRel);
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        first
    }

    /// Whether the signal has fired.
    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// Sleeps for `d` or until the signal fires; true if it fired.
    pub fn sleep(&self, d: Duration) -> bool {
        let _ = self.rx.recv_timeout(d);
        self.is_fired()
    }
}

/// What a send does with a message to a live peer that finds no room
/// within its timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Drops it, counts it (`queue_full`) and fails with `Full`
    /// (`cluster_send`).
    Drop,
    /// Keeps it: nothing sent, nothing counted, fails with `Timeout`, so
    /// the caller may wait some more and try again (`cluster_try_send`).
    Keep,
}

impl WhenFull {
    /// The error for a message that found `what` (e.g. "queue to peer 2")
    /// full; the caller counts a drop.
    pub fn error(self, what: std::fmt::Arguments<'_>) -> crate::error::Error {
        use crate::error::{Error, Status};
        match self {
            WhenFull::Drop => Error::new(Status::Full, format!("{what} is full: message dropped")),
            WhenFull::Keep => Error::new(
                Status::Timeout,
                format!("{what} is full: message not sent, not counted"),
            ),
        }
    }
}

/// Why a push into a bounded queue failed.
#[derive(Debug, PartialEq, Eq)]
pub enum PushError {
    /// Still full when the timeout ran out.
    Full,
    /// The owner shut down.
    Closed,
}

/// How long a waiter that expects its event within a thread hand-off (a
/// frame from a streaming sender, a message from a mock sender) polls before
/// it parks.
pub const HANDOFF_SPIN: Duration = Duration::from_micros(20);
/// How long a receive that most likely waits for a reply polls before it
/// parks: about one loopback round trip through both nodes' threads.
pub const REPLY_SPIN: Duration = Duration::from_micros(100);

/// The spin-then-park policy: polls `ready`, yielding the CPU between
/// polls, for at most `spin`; true as soon as it holds. A waiter parks
/// (on its condition variable) only when this returns false, so an event
/// that comes while it polls costs no sleep and no wake-up.
pub fn spin_until(spin: Duration, mut ready: impl FnMut() -> bool) -> bool {
    if ready() {
        return true;
    }
    if spin.is_zero() {
        return false;
    }
    let start = Instant::now();
    while start.elapsed() < spin {
        std::thread::yield_now();
        if ready() {
            return true;
        }
    }
    false
}

/// A lock whose release is a plain store, for state taken very often and
/// held briefly: an inbox's read-ahead, which a per-call receive takes once
/// a message, and its lanes, which a mock send takes once a delivery (a
/// receive holds the read-ahead while it takes a lane's messages, and may
/// wake a pusher or move the readiness descriptor meanwhile: a system call
/// at most). A futex mutex releases with a locked exchange, to learn
/// whether to wake a sleeper, and that exchange waits for every store
/// before it to leave the core; this lock has no sleepers. A thread that
/// finds it held polls, then yields its CPU between polls (a holder that
/// was preempted gets it back), and after a long wait sleeps between polls
/// (a holder of lower real-time priority gets it back too). Not for
/// critical sections that wait.
#[derive(Default)]
pub struct StoreLock<T> {
    held: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists
// at a time (`held`, taken with Acquire and given back with Release).
unsafe impl<T: Send> Sync for StoreLock<T> {}

/// Polls of a held [`StoreLock`] before a waiter starts yielding, and
/// polls (yields included) before it sleeps between polls.
const STORE_LOCK_SPINS: u32 = 64;
const STORE_LOCK_YIELDS: u32 = 1024;
/// A waiter's sleep between polls once it has yielded that often.
const STORE_LOCK_NAP: Duration = Duration::from_micros(50);

impl<T> StoreLock<T> {
    /// A lock holding `value`.
    pub fn new(value: T) -> Self {
        StoreLock {
            held: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, waiting while another thread holds it.
    pub fn lock(&self) -> StoreGuard<'_, T> {
        if let Some(guard) = self.try_lock() {
            return guard;
        }
        self.lock_held();
        self.guard()
    }

    /// Takes the lock if nobody holds it.
    pub fn try_lock(&self) -> Option<StoreGuard<'_, T>> {
        self.held
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(self.guard())
    }

    /// The guard of the lock this thread has just taken.
    fn guard(&self) -> StoreGuard<'_, T> {
        StoreGuard {
            lock: self,
            _value: PhantomData,
        }
    }

    /// Waits for the lock and takes it. `polls` counts over the whole
    /// wait, lost races included: a waiter that lost one goes on where it
    /// was (yielding, or sleeping), not back to spinning.
    #[cold]
    fn lock_held(&self) {
        let mut polls = 0u32;
        loop {
            while self.held.load(Ordering::Relaxed) {
                polls = polls.saturating_add(1);
                if polls <= STORE_LOCK_SPINS {
                    std::hint::spin_loop();
                } else if polls <= STORE_LOCK_YIELDS {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(STORE_LOCK_NAP);
                }
            }
            if self
                .held
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for StoreLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("StoreLock");
        match self.try_lock() {
            Some(value) => d.field("value", &&*value),
            None => d.field("value", &format_args!("<held>")),
        };
        d.finish()
    }
}

/// Access to a [`StoreLock`]'s value; dropping it releases the lock.
/// Shared between threads only when the value may be (as a `MutexGuard`):
///
/// ```compile_fail
/// use cluster::sync::StoreLock;
/// use std::cell::Cell;
/// let lock = StoreLock::new(Cell::new(0));
/// let guard = lock.lock();
/// std::thread::scope(|s| {
///     s.spawn(|| guard.set(1)); // a `&Cell` in another thread
/// });
/// ```
pub struct StoreGuard<'a, T> {
    lock: &'a StoreLock<T>,
    /// Makes the guard `Sync` only for a `Sync` value (a `&StoreLock` is
    /// `Sync` for any `Send` value), and `Send` for a `Send` one.
    _value: PhantomData<&'a mut T>,
}

impl<T> std::ops::Deref for StoreGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> std::ops::DerefMut for StoreGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, and is borrowed mutably.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for StoreGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.held.store(false, Ordering::Release);
    }
}

/// A value alone on its cache lines (128 bytes: two lines, as the adjacent
/// line prefetcher pulls pairs), so that threads writing it and threads
/// using its neighbours do not invalidate each other's caches.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Padded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: serde::Serialize> serde::Serialize for Padded<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_lock_lets_one_thread_in_at_a_time() {
        // Each thread reads, yields now and then inside, and writes back:
        // any two inside at once would lose an increment.
        const THREADS: usize = 4;
        const ROUNDS: usize = 20_000;
        let lock = StoreLock::new(0usize);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for i in 0..ROUNDS {
                        let mut n = lock.lock();
                        let seen = *n;
                        if i % 64 == 0 {
                            std::thread::yield_now();
                        }
                        *n = seen + 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), THREADS * ROUNDS);
    }

    #[test]
    fn a_store_lock_held_long_is_taken_once_let_go() {
        // Long enough for the waiter to spin, yield and then sleep.
        let lock = StoreLock::new(0);
        let held = lock.lock();
        assert!(lock.try_lock().is_none(), "held");
        std::thread::scope(|s| {
            let waiter = s.spawn(|| *lock.lock() += 1);
            std::thread::sleep(Duration::from_millis(30));
            assert!(!waiter.is_finished(), "in while held");
            drop(held);
            waiter.join().unwrap();
        });
        assert_eq!(*lock.try_lock().expect("free"), 1);
    }

    #[test]
    fn a_store_lock_is_released_when_its_holder_panics() {
        let lock = StoreLock::new(1);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = lock.lock();
            panic!("inside");
        }));
        assert!(caught.is_err());
        assert_eq!(*lock.lock(), 1, "free again, value intact");
    }
}
