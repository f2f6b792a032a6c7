//! Two and five node clusters over real TCP: unicast, broadcast, ordering.

mod common;
use cluster::{Envelope, Status, BROADCAST};
use common::*;
use std::collections::HashMap;
use std::time::Duration;

#[test]
fn unicast_both_ways_bytes_text_empty_and_max() {
    let max = 1 << 20;
    let (nodes, _) = cluster(2, &format!(r#""MaxMessageSize": {max}"#));
    let (a, b) = (&nodes[0], &nodes[1]);
    let big: Vec<u8> = (0..max).map(|i| (i * 7 % 251) as u8).collect();
    let payloads: Vec<(u32, Vec<u8>)> = vec![
        (0, vec![0, 1, 2, 255]),
        (1, "héllo wörld".as_bytes().to_vec()),
        (0, vec![]),
        (0, big),
    ];
    for (from, to) in [(a, b), (b, a)] {
        for (i, (kind, p)) in payloads.iter().enumerate() {
            from.send(Envelope::new(to.pid(), i as i64, *kind, p), None)
                .unwrap();
        }
        for (i, (kind, p)) in payloads.iter().enumerate() {
            let e = recv(to);
            assert_eq!(e.pid, from.pid(), "pid is rewritten to the sender");
            assert_eq!(e.msg_id, i as i64);
            assert_eq!(e.kind, *kind);
            assert_eq!(&e.data[..], &p[..]);
        }
    }
    let too_big = vec![0u8; max + 1];
    let e = a.send(Envelope::new(2, 0, 0, &too_big), None).unwrap_err();
    assert_eq!(e.status, Status::TooLarge);
}

#[test]
fn unknown_destination_and_self_send() {
    let (nodes, _) = cluster(2, "");
    let e = nodes[0]
        .send(Envelope::new(99, 0, 0, b"x"), None)
        .unwrap_err();
    assert_eq!(e.status, Status::UnknownPeer);
    assert!(e.message.contains("99"));
    send(&nodes[0], 1, 5, b"me");
    let got = recv(&nodes[0]);
    assert_eq!((got.pid, got.msg_id, &got.data[..]), (1, 5, &b"me"[..]));
    assert_eq!(nodes[0].peers(), vec![2]);
    assert_eq!(nodes[1].peers(), vec![1]);
}

#[test]
fn recv_times_out() {
    let (nodes, _) = cluster(2, "");
    let e = nodes[0].recv(Some(Duration::from_millis(20))).unwrap_err();
    assert_eq!(e.status, Status::Timeout);
    let e = nodes[0].recv(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.status, Status::Timeout);
}

#[test]
fn five_nodes_broadcast_1000_each_exactly_once_in_order() {
    const N: usize = 5;
    const M: i64 = 1000;
    let (nodes, _) = cluster(N, "");
    let receivers: Vec<_> = nodes
        .iter()
        .cloned()
        .map(|node| {
            std::thread::spawn(move || {
                let mut next: HashMap<i64, i64> = HashMap::new();
                for _ in 0..(N as i64 - 1) * M {
                    let e = recv(&node);
                    let want = next.entry(e.pid).or_insert(0);
                    assert_eq!(e.msg_id, *want, "order from {} at {}", e.pid, node.pid());
                    assert_eq!(&e.data[..], e.msg_id.to_le_bytes());
                    *want += 1;
                }
                assert!(
                    node.recv(Some(Duration::from_millis(100))).is_err(),
                    "a duplicate"
                );
                next
            })
        })
        .collect();
    let senders: Vec<_> = nodes
        .iter()
        .cloned()
        .map(|node| {
            std::thread::spawn(move || {
                for i in 0..M {
                    send(&node, BROADCAST, i, &i.to_le_bytes());
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    for (i, r) in receivers.into_iter().enumerate() {
        let got = r.join().unwrap();
        assert_eq!(got.len(), N - 1);
        assert!(got.values().all(|&n| n == M));
        assert_eq!(stat(&nodes[i], "/received"), (N as u64 - 1) * M as u64);
        assert_eq!(stat(&nodes[i], "/sent"), (N as u64 - 1) * M as u64);
    }
}

#[test]
fn many_threads_send_on_one_node_while_another_receives() {
    let (nodes, _) = cluster(2, r#""InboxSize": 64, "OutboxSize": 64"#);
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    const THREADS: i64 = 8;
    const EACH: i64 = 2000;
    let reader = std::thread::spawn(move || {
        let mut next = vec![0i64; THREADS as usize];
        for _ in 0..THREADS * EACH {
            let e = recv(&b);
            let t = (e.msg_id / EACH) as usize;
            assert_eq!(e.msg_id % EACH, next[t], "per-thread order");
            next[t] += 1;
        }
    });
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    send(&a, 2, t * EACH + i, b"payload");
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    reader.join().unwrap();
    assert_eq!(stat(&a, "/dropped/queue_full"), 0);
}

#[test]
fn replies_keep_order_when_the_replying_thread_writes_them_itself() {
    // A thread answering what it received may write its frame straight into
    // the connection while the writer is idle; the replies after it queue.
    // Requests arrive faster than the replies drain, with frames too big for
    // one system call, so direct writes race queued ones: order must hold.
    const ROUNDS: i64 = 300;
    let (nodes, _) = cluster(2, r#""MaxMessageSize": 1048576"#);
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    let burst = |round: i64| round % 7 + 1;
    let payload =
        |id: i64, k: i64| vec![(id % 251) as u8; if k == 3 { 600_000 } else { 16 * k as usize }];
    let server = std::thread::spawn(move || {
        let mut id = 0;
        for round in 0..ROUNDS {
            let req = recv(&b);
            assert_eq!((req.pid, req.msg_id), (1, round));
            for k in 0..burst(round) {
                send(&b, 1, id, &payload(id, k));
                id += 1;
            }
        }
        id
    });
    let client = a.clone();
    let requests = std::thread::spawn(move || {
        for round in 0..ROUNDS {
            send(&client, 2, round, b"request");
        }
    });
    let mut next = 0;
    for round in 0..ROUNDS {
        for k in 0..burst(round) {
            let e = recv(&a);
            assert_eq!(e.msg_id, next, "reply order in round {round}");
            assert_eq!(&e.data[..], &payload(next, k)[..]);
            next += 1;
        }
    }
    requests.join().unwrap();
    assert_eq!(server.join().unwrap(), next);
    assert_eq!(stat(&nodes[1], "/dropped/conn_lost"), 0);
    // Frames written by the replying thread are in the ack accounts too.
    let peer = |k: &str| stat(&nodes[1], &format!("/peers/0/{k}"));
    wait_until(Duration::from_secs(10), "every reply acked", || {
        peer("acked") == next as u64
    });
    assert_eq!((peer("sent"), peer("written")), (next as u64, next as u64));
}

/// Receives on `node` from four threads at once, each its own way (one a
/// call lent, one a call as envelopes, batches of envelopes, batches of
/// items), until `total` messages came; the stats count each exactly once.
fn receive_every_way(node: &cluster::Node, total: usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let got = Arc::new(AtomicUsize::new(0));
    let slice = Some(Duration::from_millis(20));
    let threads: Vec<_> = (0..4)
        .map(|way| {
            let (node, got) = (node.clone(), got.clone());
            std::thread::spawn(move || {
                let mut envs = Vec::new();
                let mut items: Vec<cluster::inbox::Item> = Vec::new();
                let end = std::time::Instant::now() + Duration::from_secs(30);
                while got.load(Ordering::SeqCst) < total {
                    assert!(std::time::Instant::now() < end, "received too few");
                    let n = match way {
                        0 => node.recv_one(slice).map(|_| 1),
                        1 => node.recv(slice).map(|_| 1),
                        2 => node.recv_batch(7, slice, &mut envs).map(|_| envs.len()),
                        _ => node.recv_items(5, slice, &mut items),
                    };
                    match n {
                        Ok(n) => got.fetch_add(n, Ordering::SeqCst),
                        Err(e) => {
                            assert_eq!(e.status, Status::Timeout, "{e}");
                            0
                        }
                    };
                    envs.clear();
                    items.clear();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        got.load(Ordering::SeqCst),
        total,
        "each message received once"
    );
    assert_eq!(stat(node, "/delivered"), total as u64, "and counted once");
}

#[test]
fn delivered_counts_each_message_received_once_however_it_was_received() {
    const N: i64 = 20_000;
    let (nodes, _) = cluster(2, "");
    wait_formed(&nodes);
    let sender = std::thread::spawn({
        let a = nodes[0].clone();
        move || (0..N).for_each(|i| send(&a, 2, i, &[7u8; 16]))
    });
    receive_every_way(&nodes[1], N as usize);
    sender.join().unwrap();
    // The same on the mock, whose sends land in the inbox one by one.
    let (_m, servers) = mock(2, 1, None);
    let sender = std::thread::spawn({
        let a = servers[0].clone();
        move || (0..N).for_each(|i| send(&a, 2, i, &[7u8; 16]))
    });
    receive_every_way(&servers[1], N as usize);
    sender.join().unwrap();
}

/// Sends the messages `ids` to `to` in one `send_copies` with no timeout,
/// each with the payload `payload(id)`; every one must go.
fn send_batch(
    node: &cluster::Node,
    to: i64,
    ids: impl Iterator<Item = i64>,
    payload: fn(i64) -> Vec<u8>,
) {
    let ids: Vec<i64> = ids.collect();
    let datas: Vec<Vec<u8>> = ids.iter().map(|&id| payload(id)).collect();
    let msgs: Vec<cluster::Outgoing> = ids
        .iter()
        .zip(&datas)
        .map(|(&msg_id, data)| cluster::Outgoing {
            to,
            msg_id,
            kind: 0,
            data,
        })
        .collect();
    let (sent, r) = node.send_copies(&msgs, None);
    r.unwrap();
    assert_eq!(sent, msgs.len());
}

/// Sends `THREADS` streams from node 1 to node 2 at once, each a mix of
/// runs (which the sending thread may write into the connection itself,
/// after what the queue holds) and single sends (which queue), through
/// small queues. Every stream arrives whole and in order, and every frame
/// is counted once as sent, written and acknowledged. (A run written
/// without first taking what the queue holds fails this every time.)
fn runs_and_single_sends_keep_order(extra: &str) {
    const THREADS: i64 = 4;
    const EACH: i64 = 20_000;
    let (nodes, _) = cluster(2, extra);
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    let payload = |id: i64| vec![(id % 251) as u8; (id % 100) as usize];
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while i < EACH {
                    // Runs of 1 to 96: single sends queue, long runs may go
                    // straight into the socket.
                    let k = ((i * 7 + t) % 96 + 1).min(EACH - i);
                    send_batch(&a, 2, (i..i + k).map(|j| t * EACH + j), payload);
                    i += k;
                }
            })
        })
        .collect();
    let mut next = vec![0i64; THREADS as usize];
    for _ in 0..THREADS * EACH {
        let e = recv(&b);
        let t = (e.msg_id / EACH) as usize;
        assert_eq!(e.msg_id % EACH, next[t], "stream {t} in order");
        assert_eq!(e.data[..], payload(e.msg_id)[..], "message {}", e.msg_id);
        next[t] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
    let total = (THREADS * EACH) as u64;
    let peer = |k: &str| stat(&a, &format!("/peers/0/{k}"));
    wait_until(Duration::from_secs(10), "every frame acked", || {
        peer("acked") == total
    });
    assert_eq!((peer("sent"), peer("written")), (total, total));
    assert_eq!(stat(&a, "/dropped/queue_full"), 0);
    assert_eq!(stat(&b, "/received"), total);
}

/// A stream of runs sent back to back, which its sender holds in the
/// queue to write several at once, and which then stops: the runs still
/// held go out without another send (the writer writes them once their
/// hold ends), in order, each counted once. (A writer that leaves held
/// frames until the next push fails this: the last runs never arrive.)
#[test]
fn a_stream_of_runs_that_stops_is_delivered_whole() {
    const RUNS: i64 = 50;
    const EACH: i64 = 64;
    let (nodes, _) = cluster(2, "");
    let (a, b) = (&nodes[0], &nodes[1]);
    let payload = |id: i64| vec![(id % 251) as u8; 16];
    for round in 0..5 {
        let first = round * RUNS * EACH;
        for r in 0..RUNS {
            let start = first + r * EACH;
            send_batch(a, 2, start..start + EACH, payload);
        }
        for id in first..first + RUNS * EACH {
            let e = recv(b);
            assert_eq!(e.msg_id, id, "round {round} in order");
            assert_eq!(e.data[..], payload(id)[..]);
        }
    }
    let total = (5 * RUNS * EACH) as u64;
    let peer = |k: &str| stat(a, &format!("/peers/0/{k}"));
    wait_until(Duration::from_secs(10), "every frame acked", || {
        peer("acked") == total
    });
    assert_eq!((peer("sent"), peer("written")), (total, total));
}

#[test]
fn runs_written_by_their_senders_keep_order_and_counts() {
    runs_and_single_sends_keep_order(r#""InboxSize": 64, "OutboxSize": 64"#);
}

#[test]
fn sealed_runs_written_by_their_senders_keep_order_and_counts() {
    runs_and_single_sends_keep_order(
        r#""InboxSize": 64, "OutboxSize": 64, "Secret": "a secret for the runs test""#,
    );
}

#[test]
fn batches_of_broadcasts_reach_every_peer_in_order_whole() {
    // Runs of broadcasts go to each peer as runs. In the first half they
    // are short, so they queue: node 3 reads nothing until node 1's queue
    // to it is full, so runs then wait for room message by message
    // (timeout -1: nothing is dropped). In the second half they are long
    // enough to be written by the sending thread.
    const TOTAL: i64 = 30_000;
    let (nodes, _) = cluster(3, r#""InboxSize": 64, "OutboxSize": 64"#);
    let payload = |id: i64| vec![(id % 251) as u8; (id * 37 % 2000) as usize];
    let sender = nodes[0].clone();
    let send = std::thread::spawn(move || {
        let mut i = 0;
        while i < TOTAL {
            let k = match i < TOTAL / 2 {
                true => i % 15 + 1,
                false => i % 97 + 1,
            };
            let k = k.min(TOTAL - i);
            send_batch(&sender, BROADCAST, i..i + k, payload);
            i += k;
        }
    });
    let late = nodes[0].clone();
    let receivers: Vec<_> = nodes[1..]
        .iter()
        .cloned()
        .enumerate()
        .map(|(r, node)| {
            let late = late.clone();
            std::thread::spawn(move || {
                if r == 1 {
                    wait_until(Duration::from_secs(20), "node 1's queue to 3 full", || {
                        stat(&late, "/peers/1/queue_depth") == 64
                    });
                }
                for id in 0..TOTAL {
                    let e = recv(&node);
                    assert_eq!((e.pid, e.msg_id), (1, id), "in order at node {}", r + 2);
                    assert_eq!(e.data[..], payload(id)[..]);
                }
            })
        })
        .collect();
    send.join().unwrap();
    for r in receivers {
        r.join().unwrap();
    }
    for p in 0..2 {
        assert_eq!(stat(&nodes[0], &format!("/peers/{p}/sent")), TOTAL as u64);
    }
    assert_eq!(stat(&nodes[0], "/dropped/queue_full"), 0);
}

/// Node 1 sends `TOTAL` messages of 4000 B to `to` (node 2, or everyone)
/// in batches with no timeout, a large one (12 MB) then small ones, while
/// node 2 reads nothing and every queue has room for them all: node 2's
/// socket fills, and no batch may wait for it (a batch written straight
/// into a socket that fills would). Node 3, when there is one, gets every
/// message meanwhile.
fn a_peer_that_reads_nothing_holds_up_no_batch(nodes: usize, to: i64) {
    // More than the sockets' buffers hold (a few MiB each way).
    const TOTAL: i64 = 6000;
    let cfg = r#""InboxSize": 64, "OutboxSize": 10000, "CloseLingerMs": 100"#;
    let (nodes, _) = cluster(nodes, cfg);
    let a = nodes[0].clone();
    let sending = std::thread::spawn(move || {
        send_batch(&a, to, 0..3000, |id| vec![id as u8; 4000]);
        for i in (3000..TOTAL).step_by(50) {
            send_batch(&a, to, i..i + 50, |id| vec![id as u8; 4000]);
        }
    });
    if let Some(c) = nodes.get(2).cloned() {
        within(Duration::from_secs(20), "node 3 receiving", move || {
            for id in 0..TOTAL {
                assert_eq!(recv(&c).msg_id, id);
            }
        });
    }
    within(
        Duration::from_secs(20),
        "the batches returning",
        move || sending.join().unwrap(),
    );
    // What node 2's socket did not take waits in its queue.
    assert!(stat(&nodes[0], "/peers/0/queue_depth") > 0);
}

#[test]
fn a_peer_that_reads_nothing_holds_up_no_unicast_batch() {
    a_peer_that_reads_nothing_holds_up_no_batch(2, 2);
}

#[test]
fn a_peer_that_reads_nothing_holds_up_no_broadcast_batch() {
    a_peer_that_reads_nothing_holds_up_no_batch(3, BROADCAST);
}
