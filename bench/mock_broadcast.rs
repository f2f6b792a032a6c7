//! Five mock servers broadcasting to each other without faults: prints the
//! deliveries per second (messages put into an inbox and received), the
//! median of several runs. Run with `cargo bench --bench mock_broadcast`.

use cluster::{Envelope, MockCluster, BROADCAST};
use std::time::{Duration, Instant};

const SERVERS: i64 = 5;
const BROADCASTS: usize = 200_000;
const RUNS: usize = 5;

/// One run: every server broadcasts BROADCASTS messages from one thread and
/// receives from another; returns deliveries per second.
fn run() -> f64 {
    let mock = MockCluster::new(None, 1).expect("mock");
    let nodes: Vec<_> = (1..=SERVERS).map(|i| mock.add_server(i).unwrap()).collect();
    let payload = *b"0123456789abcdef";
    let expected = BROADCASTS * (SERVERS as usize - 1);
    let start = Instant::now();
    let threads: Vec<_> = nodes
        .iter()
        .flat_map(|n| {
            let (tx, rx) = (n.clone(), n.clone());
            let p = payload;
            let sender = std::thread::spawn(move || {
                // As a user sends: each message its own (small, inline) payload.
                for i in 0..BROADCASTS {
                    let env = Envelope::new(BROADCAST, i as i64, 0, &p);
                    tx.send(env, None).expect("send");
                }
                0
            });
            let receiver = std::thread::spawn(move || {
                let mut got = 0;
                let mut buf = Vec::with_capacity(512);
                while got < expected {
                    buf.clear();
                    rx.recv_batch(512, Some(Duration::from_secs(10)), &mut buf)
                        .expect("recv");
                    got += buf.len();
                }
                got
            });
            [sender, receiver]
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(total, expected * SERVERS as usize);
    total as f64 / secs
}

fn main() {
    let mut rates: Vec<f64> = (0..RUNS).map(|_| run()).collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap());
    for r in &rates {
        println!("run: {:.2} M deliveries/s", r / 1e6);
    }
    println!(
        "mock_broadcast: {SERVERS} servers, {BROADCASTS} broadcasts each: median {:.2} M deliveries/s",
        rates[RUNS / 2] / 1e6
    );
}
