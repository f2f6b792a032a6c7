//! A receiver that reads slowly holds no more than README's "Memory"
//! paragraph promises: (InboxSize + peers x OutboxSize) x message size, plus
//! per peer a reader's burst (32 KiB and one message) and one burst taken
//! ahead. Counted with a global allocator that tracks live heap bytes (both
//! nodes live in this process, so the bound below covers both sides and
//! every fixed buffer generously). A reader whose burst was bounded by
//! frames only held ~5 MiB here.

mod common;
use cluster::Envelope;
use common::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_slow_receiver_holds_no_more_than_the_documented_bound() {
    // 20 KiB payloads: above LENT_MAX (decoded, not lent) and below the
    // buffer cache's 32 KiB (nothing kept for reuse).
    let size: usize = std::env::var("SIZE_KIB").map_or(20, |v| v.parse().unwrap()) << 10;
    let (nodes, _) = cluster(2, r#""InboxSize":1,"OutboxSize":4"#);
    std::thread::sleep(Duration::from_millis(200));
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let payload = vec![7u8; size];
    let end = Instant::now() + Duration::from_secs(3);
    // Node 2 reads, slowly: a message every 2 ms.
    let slow = {
        let n2 = nodes[1].clone();
        std::thread::spawn(move || {
            let mut got = 0;
            while Instant::now() < end {
                if n2.recv(Some(Duration::from_millis(50))).is_ok() {
                    got += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            got
        })
    };
    let mut i = 0;
    while Instant::now() < end {
        let _ = nodes[0].send(
            Envelope::new(2, i, 0, &payload),
            Some(Duration::from_millis(20)),
        );
        i += 1;
    }
    let got = slow.join().unwrap();
    println!("node 2 received {got}");
    let grown = PEAK.load(Ordering::Relaxed) - base;
    // Documented: node 2 (1 + 1 x 4) x 20 KiB + 52 KiB + 34 KiB, node 1
    // (its own inbox, 1 + 1 x 4) x 20 KiB: ~290 KiB. Allow 1 MiB for batch
    // buffers, the reader's 64 KiB buffer, stats JSON and the like.
    let limit = 1 << 20;
    println!("sent {i}; heap grew by {} KiB at peak", grown >> 10);
    assert!(
        grown < limit,
        "heap grew by {} KiB while node 2 read slowly",
        grown >> 10
    );
}
