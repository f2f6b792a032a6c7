//! The bounded inbox and the shutdown signal that wakes every blocked call.

use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crossbeam_channel::{bounded, never, select, Receiver, Sender, TrySendError};
use std::cell::Cell;
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

/// A channel that becomes ready when `timeout` runs out (never for `None`),
/// for a `select!` that waits with a timeout.
pub fn timer(timeout: Timeout) -> Receiver<Instant> {
    match timeout {
        Some(t) => crossbeam_channel::after(t),
        None => never(),
    }
}

/// The deadline of a timeout that starts now.
pub fn deadline(timeout: Timeout) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// How long a receive that waits for a reply polls the inbox before it parks
/// (about one loopback round trip through both nodes' threads).
const SPIN: Duration = Duration::from_micros(100);

/// `LAST_OP`: the thread's last operation on any node was a send.
const SENT: u8 = 1;
/// `LAST_OP`: the thread's last operation on any node was a receive.
const RECEIVED: u8 = 2;

thread_local! {
    /// SENT: this thread's next receive most likely waits for a reply, so it
    /// polls before it parks. A thread that only receives (a stream
    /// consumer) parks at once, which lets a batch build up instead of
    /// burning the CPU its producers need. RECEIVED: this thread's next send
    /// is most likely a reply (see the TCP transport's direct write).
    static LAST_OP: Cell<u8> = const { Cell::new(0) };
}

fn note_recv() {
    LAST_OP.with(|f| f.set(RECEIVED));
}

/// A one-shot signal: once fired, every receiver of [`Shutdown::waiter`] wakes.
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

    /// A channel that becomes ready (disconnected) when the signal fires.
    pub fn waiter(&self) -> &Receiver<()> {
        &self.rx
    }

    /// Sleeps for `d` or until the signal fires; true if it fired.
    pub fn sleep(&self, d: Duration) -> bool {
        let _ = self.rx.recv_timeout(d);
        self.is_fired()
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

/// Pushes into a bounded channel, waiting up to `timeout` for room, and giving
/// up at once when `shutdown` fires.
pub fn push<T>(
    tx: &Sender<T>,
    item: T,
    timeout: Timeout,
    shutdown: &Shutdown,
) -> std::result::Result<(), PushError> {
    let item = match tx.try_send(item) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Disconnected(_)) => return Err(PushError::Closed),
        Err(TrySendError::Full(item)) => item,
    };
    if timeout == Some(Duration::ZERO) {
        return Err(PushError::Full);
    }
    if shutdown.is_fired() {
        return Err(PushError::Closed);
    }
    let timer = timer(timeout);
    select! {
        send(tx, item) -> r => r.map_err(|_| PushError::Closed),
        recv(shutdown.waiter()) -> _ => Err(PushError::Closed),
        recv(timer) -> _ => Err(PushError::Full),
    }
}

/// A node's bounded inbox.
#[derive(Debug)]
pub struct Inbox {
    tx: Sender<Envelope>,
    rx: Receiver<Envelope>,
    /// A receive returned since the node last sent: wrappers receive and
    /// send on different threads, so the thread-local hint misses them.
    received: AtomicBool,
}

impl Inbox {
    /// An inbox holding at most `capacity` envelopes.
    pub fn new(capacity: usize) -> Inbox {
        let (tx, rx) = bounded(capacity);
        Inbox {
            tx,
            rx,
            received: AtomicBool::new(false),
        }
    }

    /// The sending side, for the threads that fill the inbox.
    pub fn sender(&self) -> &Sender<Envelope> {
        &self.tx
    }

    /// Envelopes waiting to be received.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no envelope is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Notes that the node is sending; true if the send most likely answers
    /// a message received (on this thread, or on any since the last send).
    pub fn begin_send(&self) -> bool {
        let here = LAST_OP.with(|f| f.replace(SENT)) == RECEIVED;
        let anywhere =
            self.received.load(Ordering::Relaxed) && self.received.swap(false, Ordering::Relaxed);
        here || anywhere
    }

    /// Takes the next envelope, waiting up to `timeout`; fails with `Closed`
    /// as soon as `shutdown` fires.
    pub fn recv(&self, timeout: Timeout, shutdown: &Shutdown) -> Result<Envelope> {
        let env = self.wait(timeout, shutdown)?;
        note_recv();
        if !self.received.load(Ordering::Relaxed) {
            self.received.store(true, Ordering::Relaxed);
        }
        Ok(env)
    }

    fn wait(&self, timeout: Timeout, shutdown: &Shutdown) -> Result<Envelope> {
        if shutdown.is_fired() {
            return Err(Error::closed());
        }
        if let Ok(env) = self.rx.try_recv() {
            return Ok(env);
        }
        if timeout == Some(Duration::ZERO) {
            return Err(Error::timeout());
        }
        if LAST_OP.with(|f| f.get()) == SENT {
            if let Some(env) = self.spin(timeout.map_or(SPIN, |t| t.min(SPIN)), shutdown) {
                return Ok(env);
            }
        }
        let timer = timer(timeout);
        select! {
            recv(self.rx) -> r => r.map_err(|_| Error::closed()),
            recv(shutdown.waiter()) -> _ => Err(Error::closed()),
            recv(timer) -> _ => Err(Error::timeout()),
        }
    }

    /// Polls the inbox for up to `d`, yielding the CPU between polls: a
    /// message that arrives meanwhile costs no futex wake-up and no sleep.
    fn spin(&self, d: Duration, shutdown: &Shutdown) -> Option<Envelope> {
        let start = Instant::now();
        while start.elapsed() < d && !shutdown.is_fired() {
            std::thread::yield_now();
            if let Ok(env) = self.rx.try_recv() {
                return Some(env);
            }
        }
        None
    }

    /// Takes up to `max` envelopes: waits up to `timeout` for the first, then
    /// takes what is already there without waiting.
    pub fn recv_batch(
        &self,
        max: usize,
        timeout: Timeout,
        shutdown: &Shutdown,
        out: &mut Vec<Envelope>,
    ) -> Result<()> {
        if max == 0 {
            return Ok(());
        }
        out.push(self.recv(timeout, shutdown)?);
        while out.len() < max {
            match self.rx.try_recv() {
                Ok(env) => out.push(env),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Discards every waiting envelope; returns how many there were.
    pub fn drain(&self) -> usize {
        self.rx.try_iter().count()
    }
}
