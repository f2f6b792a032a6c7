//! The delay scheduler: one thread that hands each item to a handler when
//! its due time comes. Items due at the same time keep their order. The
//! thread starts with the first item, so a node or mock without delays runs
//! no extra thread.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Item<T> {
    due: Instant,
    seq: u64,
    value: T,
}

impl<T> PartialEq for Item<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl<T> Eq for Item<T> {}

impl<T> PartialOrd for Item<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Item<T> {
    // Reversed: the heap's top is the earliest item.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

struct Heap<T> {
    items: BinaryHeap<Item<T>>,
    seq: u64,
    stopped: bool,
    thread: Option<JoinHandle<()>>,
}

struct Inner<T> {
    heap: Mutex<Heap<T>>,
    wake: Condvar,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, Heap<T>> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Handler<T> = Arc<dyn Fn(T) + Send + Sync>;

/// Delivers items after a delay, on its own thread, through a handler.
pub struct Delayer<T: Send + 'static> {
    name: String,
    inner: Arc<Inner<T>>,
    handler: Handler<T>,
}

impl<T: Send + 'static> Delayer<T> {
    /// A scheduler whose thread (named `name`) calls `handler` on each item
    /// when it is due. The handler must not block for long: it delays every
    /// later item.
    pub fn new(name: impl Into<String>, handler: impl Fn(T) + Send + Sync + 'static) -> Self {
        Delayer {
            name: name.into(),
            inner: Arc::new(Inner {
                heap: Mutex::new(Heap {
                    items: BinaryHeap::new(),
                    seq: 0,
                    stopped: false,
                    thread: None,
                }),
                wake: Condvar::new(),
            }),
            handler: Arc::new(handler),
        }
    }

    /// Schedules `value` for `after` from now. Gives it back if the
    /// scheduler was stopped or its thread cannot start.
    pub fn schedule(&self, after: Duration, value: T) -> std::result::Result<(), T> {
        let mut h = self.inner.lock();
        if h.stopped {
            return Err(value);
        }
        if h.thread.is_none() {
            let inner = self.inner.clone();
            let handler = self.handler.clone();
            match std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || run(&inner, &*handler))
            {
                Ok(t) => h.thread = Some(t),
                Err(_) => return Err(value),
            }
        }
        let seq = h.seq;
        h.seq += 1;
        let wake = h
            .items
            .peek()
            .is_none_or(|top| Instant::now() + after < top.due);
        h.items.push(Item {
            due: Instant::now() + after,
            seq,
            value,
        });
        drop(h);
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.inner.lock().items.len()
    }

    /// Whether no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the thread (after the item it is handling, if any) and gives
    /// back every item not yet handled. Later `schedule` calls fail.
    /// Idempotent. Must not be called from the handler.
    pub fn stop(&self) -> Vec<T> {
        let mut h = self.inner.lock();
        h.stopped = true;
        let thread = h.thread.take();
        let left = std::mem::take(&mut h.items);
        drop(h);
        self.inner.wake.notify_all();
        if let Some(t) = thread {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        // Items scheduled between the take and the join cannot exist: the
        // flag was set under the lock.
        left.into_vec().into_iter().map(|i| i.value).collect()
    }
}

impl<T: Send + 'static> Drop for Delayer<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<T>(inner: &Inner<T>, handler: &(dyn Fn(T) + Send + Sync)) {
    let mut h = inner.lock();
    loop {
        if h.stopped {
            return;
        }
        let now = Instant::now();
        match h.items.peek().map(|top| top.due) {
            None => h = inner.wake.wait(h).unwrap_or_else(|e| e.into_inner()),
            Some(due) if due > now => {
                h = inner
                    .wake
                    .wait_timeout(h, due - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            Some(_) => {
                let item = h.items.pop().expect("peeked");
                drop(h);
                handler(item.value);
                h = inner.lock();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    #[test]
    fn items_come_out_in_due_order_and_stop_returns_the_rest() {
        let (tx, rx) = unbounded();
        let d = Delayer::new("test-delayer", move |v: u32| tx.send(v).unwrap());
        d.schedule(Duration::from_millis(60), 3).unwrap();
        d.schedule(Duration::from_millis(20), 1).unwrap();
        d.schedule(Duration::from_millis(20), 2).unwrap();
        d.schedule(Duration::from_secs(3600), 9).unwrap();
        let got: Vec<u32> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(d.stop(), vec![9]);
        assert_eq!(d.schedule(Duration::ZERO, 5), Err(5));
    }
}
