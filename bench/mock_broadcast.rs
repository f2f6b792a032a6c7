//! Five mock servers broadcasting to each other without faults: prints the
//! deliveries per second (messages put into an inbox and received), the
//! median of several runs, for two ways of sending: one message a call
//! (`Node::send`, as `cluster_send`), and batches of 256
//! (`Node::send_copies`, the path of `cluster_send_batch`). Receivers take
//! up to 512 a call (`recv_batch`, as `cluster_recv_batch`). Run with
//! `cargo bench --bench mock_broadcast`.
//!
//! Each twice: without faults, and with the fault model on (every server
//! has a drop probability, of 1e-15 so that nothing is lost and every
//! check holds, and each copy's fate is decided), as a test of a
//! distributed algorithm under faults runs.
//!
//! `mock_broadcast --once send|batch|send-faults|batch-faults SERVERS
//! BROADCASTS` runs once and prints `result DELIVERIES/S CPU-NS/DELIVERY`:
//! the Go bench (bindings/go/bench.sh -only mock) runs it beside its
//! pure-Go baseline.

use cluster::{Envelope, FaultCmd, MockCluster, Outgoing, BROADCAST};
use std::time::{Duration, Instant};

const SERVERS: i64 = 5;
const BROADCASTS: usize = 200_000;
const RUNS: usize = 5;
/// Messages a `send_copies` call in batch mode.
const BATCH: usize = 256;
/// The drop probability of every server with faults on: the fault model
/// decides every copy, and loses none in practice (a lost message would
/// fail the run's checks).
const DROP: f64 = 1e-15;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Send,
    Batch,
}

/// One run: every server broadcasts `broadcasts` messages from one thread
/// and receives from another, with the fault model on or not; returns
/// deliveries per second, after checking that every receiver got every
/// sender's messages in order.
fn run(mode: Mode, faults: bool, servers: i64, broadcasts: usize) -> f64 {
    // InboxSize and OutboxSize 1000 (the default), as the Go bench's.
    let mock = MockCluster::new(None, 1).expect("mock");
    let nodes: Vec<_> = (1..=servers).map(|i| mock.add_server(i).unwrap()).collect();
    if faults {
        for n in &nodes {
            n.fault(&FaultCmd::Drop(DROP)).expect("fault");
        }
    }
    let payload = *b"0123456789abcdef";
    let expected = broadcasts * (servers as usize - 1);
    let start = Instant::now();
    let threads: Vec<_> = nodes
        .iter()
        .flat_map(|n| {
            let (tx, rx) = (n.clone(), n.clone());
            let p = payload;
            let sender = std::thread::spawn(move || {
                match mode {
                    // As a user sends: each message its own (small, inline) payload.
                    Mode::Send => {
                        for i in 0..broadcasts {
                            let env = Envelope::new(BROADCAST, i as i64, 0, &p);
                            tx.send(env, None).expect("send");
                        }
                    }
                    Mode::Batch => {
                        let mut msgs = Vec::with_capacity(BATCH);
                        for first in (0..broadcasts).step_by(BATCH) {
                            msgs.clear();
                            msgs.extend((first..broadcasts.min(first + BATCH)).map(|i| Outgoing {
                                to: BROADCAST,
                                msg_id: i as i64,
                                kind: 0,
                                data: &p,
                            }));
                            let (n, r) = tx.send_copies(&msgs, None);
                            r.expect("send_copies");
                            assert_eq!(n, msgs.len());
                        }
                    }
                }
                0
            });
            let receiver = std::thread::spawn(move || {
                let mut got = 0;
                let mut next = vec![0i64; servers as usize + 1];
                let mut buf = Vec::with_capacity(512);
                while got < expected {
                    buf.clear();
                    rx.recv_batch(512, Some(Duration::from_secs(10)), &mut buf)
                        .expect("recv");
                    for e in &buf {
                        let want = &mut next[e.pid as usize];
                        assert_eq!((e.msg_id, &e.data[..]), (*want, &p[..]), "from {}", e.pid);
                        *want += 1;
                    }
                    got += buf.len();
                }
                got
            });
            [sender, receiver]
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(total, expected * servers as usize);
    total as f64 / secs
}

/// CPU time (user and system) this process has used, in ns.
fn cpu_ns() -> f64 {
    let mut t = std::mem::MaybeUninit::<libc::timespec>::uninit();
    // SAFETY: t is a valid out-pointer for clock_gettime.
    let t = unsafe {
        libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, t.as_mut_ptr());
        t.assume_init()
    };
    t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--once") {
        let (mode, faults) = match args.get(1).map(String::as_str) {
            Some("send") => (Mode::Send, false),
            Some("batch") => (Mode::Batch, false),
            Some("send-faults") => (Mode::Send, true),
            Some("batch-faults") => (Mode::Batch, true),
            _ => panic!(
                "usage: mock_broadcast --once send|batch|send-faults|batch-faults SERVERS BROADCASTS"
            ),
        };
        let servers: i64 = args.get(2).and_then(|s| s.parse().ok()).expect("SERVERS");
        let broadcasts: usize = args
            .get(3)
            .and_then(|s| s.parse().ok())
            .expect("BROADCASTS");
        let cpu0 = cpu_ns();
        let rate = run(mode, faults, servers, broadcasts);
        let deliveries = (servers * (servers - 1)) as f64 * broadcasts as f64;
        println!("result {:.1} {:.1}", rate, (cpu_ns() - cpu0) / deliveries);
        return;
    }
    for (mode, faults, title) in [
        (Mode::Send, false, "send, one a call"),
        (Mode::Batch, false, "send_copies, 256 a call"),
        (Mode::Send, true, "send, one a call, faults on"),
        (Mode::Batch, true, "send_copies, 256 a call, faults on"),
    ] {
        let mut rates: Vec<f64> = (0..RUNS)
            .map(|_| run(mode, faults, SERVERS, BROADCASTS))
            .collect();
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for r in &rates {
            println!("run: {:.2} M deliveries/s", r / 1e6);
        }
        println!(
            "mock_broadcast ({title}): {SERVERS} servers, {BROADCASTS} broadcasts each: median {:.2} M deliveries/s",
            rates[RUNS / 2] / 1e6
        );
    }
}
