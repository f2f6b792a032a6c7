//! The fault model: replayable traces, one-way cuts, duplicates, held links,
//! partition errors, a concurrency stress test, and the same fault controls
//! on real TCP nodes, in this process and across processes.

mod common;
use cluster::fault::{CUT_BOTH, CUT_IN, CUT_OUT};
use cluster::{Envelope, FaultCmd, MockCluster, Node, Status, BROADCAST};
use common::*;
use serde_json::Value;
use std::time::Duration;

fn cut(node: &Node, peers: &[i64], direction: i32) {
    node.fault(&FaultCmd::Cut {
        peers: peers.to_vec(),
        direction,
    })
    .unwrap();
}

fn lines(trace: &str) -> Vec<Value> {
    trace
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// One scripted run with every kind of fault; returns the trace and what
/// each server received.
fn scripted_run(seed: u64, delay: bool) -> (String, Vec<Vec<(i64, i64)>>) {
    let (m, nodes) = mock(4, seed, None);
    m.trace(true);
    for n in &nodes {
        n.fault(&FaultCmd::Drop(0.2)).unwrap();
        n.fault(&FaultCmd::Duplicate(0.2)).unwrap();
        if delay {
            n.fault(&FaultCmd::Delay(Duration::from_millis(20)))
                .unwrap();
        }
    }
    cut(&nodes[3], &[1], CUT_IN);
    m.hold(2, 3).unwrap();
    for i in 0..30 {
        for n in &nodes {
            broadcast(n, i, b"x");
        }
    }
    m.release(2, 3, true).unwrap();
    if delay {
        wait_until(Duration::from_secs(10), "delays drained", || {
            nodes.iter().all(|n| stat(n, "/in_flight") == 0)
        });
    }
    let got = nodes
        .iter()
        .map(|n| {
            let mut v: Vec<(i64, i64)> = drain_now(n).iter().map(|e| (e.pid, e.msg_id)).collect();
            if delay {
                v.sort_unstable();
            }
            v
        })
        .collect();
    (m.take_trace(), got)
}

#[test]
fn one_seed_gives_identical_traces() {
    let (t1, got1) = scripted_run(11, false);
    let (t2, got2) = scripted_run(11, false);
    assert_eq!(t1, t2, "same seed, same trace, line for line");
    assert_eq!(got1, got2);
    let events = lines(&t1);
    let count = |name: &str| events.iter().filter(|e| e["event"] == name).count();
    assert_eq!(count("sent"), 4 * 30 * 3);
    for name in ["dropped_fault", "duplicated", "held", "delivered"] {
        assert!(count(name) > 0, "the trace shows {name}");
    }
    let reasons: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "dropped_fault")
        .map(|e| &e["reason"])
        .collect();
    assert!(reasons.contains(&&Value::from("cut_in")));
    assert!(reasons.contains(&&Value::from("drop")));
    let delivered: usize = got1.iter().map(Vec::len).sum();
    assert_eq!(count("delivered"), delivered, "each delivery is traced");

    let (t3, _) = scripted_run(12, false);
    assert_ne!(t1, t3, "another seed, other fates");

    // With delays the fates are the same; only the interleaving in time
    // of deliveries may differ.
    let (d1, g1) = scripted_run(11, true);
    let (d2, g2) = scripted_run(11, true);
    let mut l1: Vec<&str> = d1.lines().collect();
    let mut l2: Vec<&str> = d2.lines().collect();
    l1.sort_unstable();
    l2.sort_unstable();
    assert_eq!(l1, l2);
    assert_eq!(g1, g2);
    assert!(d1.contains("\"event\":\"delayed\""));
}

#[test]
fn one_way_cuts() {
    let (_m, nodes) = mock(4, 1, None);
    cut(&nodes[0], &[2], CUT_OUT);
    send(&nodes[0], 2, 0, b"1 to 2");
    send(&nodes[1], 1, 1, b"2 to 1");
    assert!(drain_now(&nodes[1]).is_empty(), "1 does not reach 2");
    assert_eq!(drain_now(&nodes[0]).len(), 1, "2 reaches 1");
    assert_eq!(stat(&nodes[0], "/dropped/fault"), 1);

    cut(&nodes[2], &[4], CUT_IN);
    send(&nodes[3], 3, 2, b"4 to 3");
    send(&nodes[2], 4, 3, b"3 to 4");
    assert!(drain_now(&nodes[2]).is_empty(), "4 does not reach 3");
    assert_eq!(drain_now(&nodes[3]).len(), 1, "3 reaches 4");

    cut(&nodes[1], &[3], CUT_BOTH);
    for n in &nodes {
        broadcast(n, 4, b"everyone");
    }
    let senders = |n: &Node| -> Vec<i64> {
        let mut v: Vec<i64> = drain_now(n).iter().map(|e| e.pid).collect();
        v.sort_unstable();
        v
    };
    // 1 -/-> 2 (out), 4 -/-> 3 (in), 2 <-/-> 3 (both).
    assert_eq!(senders(&nodes[0]), vec![2, 3, 4]);
    assert_eq!(senders(&nodes[1]), vec![4]);
    assert_eq!(senders(&nodes[2]), vec![1]);
    assert_eq!(senders(&nodes[3]), vec![1, 2, 3]);
    for n in &nodes {
        n.fault(&FaultCmd::Heal).unwrap();
        drain_now(n);
    }
    broadcast(&nodes[0], 6, b"healed");
    assert!(nodes[1..].iter().all(|n| drain_now(n).len() == 1));
}

#[test]
fn duplicates() {
    let (_m, nodes) = mock(2, 4, Some(r#"{"InboxSize":4000}"#));
    nodes[0].fault(&FaultCmd::Duplicate(1.0)).unwrap();
    for i in 0..10 {
        send(&nodes[0], 2, i, b"twice");
    }
    let ids: Vec<i64> = drain_now(&nodes[1]).iter().map(|e| e.msg_id).collect();
    let want: Vec<i64> = (0..10).flat_map(|i| [i, i]).collect();
    assert_eq!(ids, want, "every message arrives twice, in order");
    assert_eq!(stat(&nodes[0], "/duplicated"), 10);

    nodes[0].fault(&FaultCmd::Duplicate(0.25)).unwrap();
    for i in 0..1000 {
        send(&nodes[0], 2, i, b"maybe");
    }
    let extra = drain_now(&nodes[1]).len() - 1000;
    // Binomial(1000, 0.25): mean 250, sd 13.7; six sd either way.
    assert!((168..=332).contains(&extra), "{extra} duplicates");
}

#[test]
fn hold_and_release() {
    let (m, nodes) = mock(3, 9, None);
    m.hold(1, 2).unwrap();
    for i in 0..10 {
        send(&nodes[0], 2, i, b"held");
    }
    send(&nodes[0], 3, 100, b"other link");
    send(&nodes[1], 1, 200, b"reverse link");
    assert!(
        drain_now(&nodes[1]).is_empty(),
        "the held link delivers nothing"
    );
    assert_eq!(drain_now(&nodes[2]).len(), 1);
    assert_eq!(drain_now(&nodes[0]).len(), 1);
    m.release(1, 2, false).unwrap();
    let ids: Vec<i64> = drain_now(&nodes[1]).iter().map(|e| e.msg_id).collect();
    assert_eq!(ids, (0..10).collect::<Vec<_>>(), "released in order");
    send(&nodes[0], 2, 10, b"open again");
    assert_eq!(recv(&nodes[1]).msg_id, 10);

    let shuffled = |seed: u64| -> Vec<i64> {
        let (m, nodes) = mock(2, seed, None);
        m.hold(1, 2).unwrap();
        for i in 0..50 {
            send(&nodes[0], 2, i, b"h");
        }
        m.release(1, 2, true).unwrap();
        drain_now(&nodes[1]).iter().map(|e| e.msg_id).collect()
    };
    let a = shuffled(5);
    assert_ne!(a, (0..50).collect::<Vec<_>>(), "shuffled");
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..50).collect::<Vec<_>>(),
        "nothing lost or doubled"
    );
    assert_eq!(a, shuffled(5), "the shuffle replays with the seed");
    // Releasing a link that is not held does nothing.
    m.release(3, 1, true).unwrap();
}

/// A release races a sender on the same link: what was held comes before
/// anything sent after the release, on every one of many cycles.
#[test]
fn a_release_racing_a_sender_keeps_the_link_in_order() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Arc;
    // A release lands what was held without waiting for room, so the
    // inbox has room for more than the sender may get ahead of the
    // receiver (AHEAD), held messages included.
    const AHEAD: i64 = 100_000;
    let cfg = r#"{"InboxSize":1000000,"OutboxSize":1000000}"#;
    let (m, nodes) = mock(2, 3, Some(cfg));
    let sender = nodes[0].clone();
    let (stop, count, finished, taken) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicI64::new(0)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicI64::new(0)),
    );
    let (flag, sent, received) = (stop.clone(), count.clone(), taken.clone());
    let t = std::thread::spawn(move || {
        let mut i = 0i64;
        while !flag.load(Ordering::Relaxed) {
            if i - received.load(Ordering::Acquire) >= AHEAD {
                std::thread::yield_now();
                continue;
            }
            sender.send(Envelope::new(2, i, 0, b"x"), None).unwrap();
            i += 1;
            sent.store(i, Ordering::Release);
        }
    });
    // The receiver drains as it goes, until everything was sent and
    // released (seen before a receive that then finds nothing).
    let (rx, all_out) = (nodes[1].clone(), finished.clone());
    let drain = std::thread::spawn(move || {
        let (mut got, mut buf) = (Vec::new(), Vec::new());
        loop {
            let last = all_out.load(Ordering::Acquire);
            buf.clear();
            match rx.recv_batch(4096, Some(Duration::from_millis(50)), &mut buf) {
                Ok(()) => {
                    got.extend(buf.iter().map(|e| e.msg_id));
                    taken.store(got.len() as i64, Ordering::Release);
                }
                Err(e) if e.status == Status::Timeout && last => return got,
                Err(e) if e.status == Status::Timeout => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
    });
    for _ in 0..300 {
        m.hold(1, 2).unwrap();
        // Some messages are held, and the sender is mid-stream at release.
        let at = count.load(Ordering::Acquire);
        wait_until(Duration::from_secs(10), "sends while held", || {
            count.load(Ordering::Acquire) >= at + 5
        });
        m.release(1, 2, false).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    finished.store(true, Ordering::Release);
    let got = drain.join().unwrap();
    let sent = count.load(Ordering::Acquire);
    assert_eq!(got.len() as i64, sent, "nothing lost");
    let out_of_order = got.windows(2).filter(|w| w[1] != w[0] + 1).count();
    assert_eq!(out_of_order, 0, "{out_of_order} of {sent} out of order");
}

#[test]
fn held_links_are_bounded_by_outbox_size() {
    let (m, nodes) = mock(2, 1, Some(r#"{"OutboxSize":4}"#));
    m.hold(1, 2).unwrap();
    for i in 0..4 {
        send(&nodes[0], 2, i, b"h");
    }
    let e = nodes[0]
        .send(Envelope::new(2, 4, 0, b"h"), None)
        .unwrap_err();
    assert_eq!(e.status, Status::Full);
    assert_eq!(stat(&nodes[0], "/dropped/queue_full"), 1);
    m.release(1, 2, false).unwrap();
    assert_eq!(drain_now(&nodes[1]).len(), 4);
}

#[test]
fn bad_partitions_and_fault_values_are_errors() {
    let (m, nodes) = mock(5, 1, None);
    let e = m.partition(&[vec![1, 2], vec![2, 3]]).unwrap_err();
    assert_eq!(e.status, Status::InvalidArg);
    assert!(e.message.contains("id 2"), "{}", e.message);
    assert_eq!(
        m.partition(&[vec![BROADCAST]]).unwrap_err().status,
        Status::InvalidArg
    );
    // A refused partition changes nothing.
    broadcast(&nodes[0], 0, b"x");
    assert!(nodes[1..].iter().all(|n| drain_now(n).len() == 1));
    for cmd in [
        FaultCmd::Drop(2.0),
        FaultCmd::Duplicate(-1.0),
        FaultCmd::Cut {
            peers: vec![2],
            direction: 7,
        },
    ] {
        assert_eq!(nodes[0].fault(&cmd).unwrap_err().status, Status::InvalidArg);
    }
    assert_eq!(
        m.add_server(BROADCAST).unwrap_err().status,
        Status::InvalidArg
    );
}

#[test]
fn stress_many_threads_send_receive_partition_close() {
    within(Duration::from_secs(120), "stress", || {
        let m = std::sync::Arc::new(MockCluster::new(Some(r#"{"InboxSize":64}"#), 3).unwrap());
        let ids: Vec<i64> = (1..=6).collect();
        for &id in &ids {
            m.add_server(id).unwrap();
        }
        let mut threads = Vec::new();
        for t in 0..6i64 {
            let m = m.clone();
            threads.push(std::thread::spawn(move || {
                let mut node = m.add_server(t + 1).unwrap();
                for i in 0..2000i64 {
                    let to = if i % 3 == 0 {
                        BROADCAST
                    } else {
                        (i + t) % 6 + 1
                    };
                    let r = node.send(
                        Envelope::new(to, i, 0, b"s"),
                        Some(Duration::from_millis(1)),
                    );
                    if let Err(e) = r {
                        assert!(
                            [Status::Full, Status::UnknownPeer, Status::Closed].contains(&e.status),
                            "{e}"
                        );
                    }
                    let _ = node.recv(Some(Duration::ZERO));
                    if node.is_closed() {
                        node = m.add_server(t + 1).unwrap();
                    }
                }
            }));
        }
        for t in 0..2u64 {
            let m = m.clone();
            threads.push(std::thread::spawn(move || {
                for i in 0..300u64 {
                    let a = (i + t) as i64 % 6 + 1;
                    match i % 6 {
                        0 => m.partition(&[vec![a], vec![a % 6 + 1]]).unwrap(),
                        1 => m.heal().unwrap(),
                        2 => m.hold(a, a % 6 + 1).unwrap(),
                        3 => m.release(a, a % 6 + 1, i % 2 == 0).map(|_| ()).unwrap(),
                        4 => m.add_server(a).unwrap().close(),
                        _ => {
                            let n = m.add_server(a).unwrap();
                            n.fault(&FaultCmd::Delay(Duration::from_millis(i % 3)))
                                .unwrap();
                            n.fault(&FaultCmd::Drop(0.1)).unwrap();
                        }
                    }
                }
            }));
        }
        for th in threads {
            th.join().unwrap();
        }
        m.close();
        assert!(m.servers().is_empty());
    });
}

#[test]
fn fault_controls_on_real_nodes() {
    let (nodes, _) = cluster(3, "");
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // Connected first, so that nothing below waits on a reconnect.
    for n in [b, c] {
        send(a, n.pid(), 0, b"hello");
        assert_eq!(recv(n).msg_id, 0);
    }
    a.fault(&FaultCmd::Drop(1.0)).unwrap();
    send(a, 2, 1, b"lost");
    assert_eq!(stat(a, "/dropped/fault"), 1);
    a.fault(&FaultCmd::Drop(0.0)).unwrap();

    // An in-cut on c: a's messages are dropped by c's reader and counted there.
    cut(c, &[1], CUT_IN);
    send(a, 3, 2, b"cut in");
    wait_until(Duration::from_secs(10), "the cut frame", || {
        stat(c, "/dropped/fault") == 1
    });
    send(c, 1, 3, b"c still talks");
    assert_eq!(recv(a).msg_id, 3);
    c.fault(&FaultCmd::Heal).unwrap();
    send(a, 3, 4, b"healed");
    assert_eq!(recv(c).msg_id, 4, "the cut message never arrives");

    let e = a
        .fault(&FaultCmd::Cut {
            peers: vec![9],
            direction: CUT_OUT,
        })
        .unwrap_err();
    assert_eq!(e.status, Status::UnknownPeer);

    a.fault(&FaultCmd::Duplicate(1.0)).unwrap();
    send(a, 2, 5, b"twice");
    assert_eq!((recv(b).msg_id, recv(b).msg_id), (5, 5));
    a.fault(&FaultCmd::Duplicate(0.0)).unwrap();

    a.fault(&FaultCmd::Delay(Duration::from_millis(50)))
        .unwrap();
    for i in 0..200 {
        send(a, 2, i, b"late");
    }
    let got: Vec<i64> = recv_n(b, 200).iter().map(|e| e.msg_id).collect();
    assert!(got.windows(2).any(|w| w[0] > w[1]), "delays reorder");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..200).collect::<Vec<_>>());
    assert_eq!(a.stats()["faults"]["max_delay_ms"], 50.0);
}

#[test]
fn partition_and_heal_across_processes() {
    let cfg = config(3, "");
    let mut p: Vec<Proc> = (1..=3).map(|i| Proc::start(i, &cfg)).collect();
    macro_rules! node {
        ($i:expr) => {
            p[$i as usize - 1]
        };
    }
    // Everyone reaches everyone.
    node!(1).ok("bcast 1 hello from 1");
    for i in [2, 3] {
        let v = node!(i).ok("recv 10000");
        assert_eq!(
            (v["pid"].as_i64(), v["text"].as_str()),
            (Some(1), Some("hello from 1"))
        );
    }
    // Partition {1, 2} | {3}: node 3 cuts itself off both ways.
    node!(3).ok("cut both 1 2");
    node!(1).ok("send 3 2 during the partition");
    node!(3).ok("send 1 3 from the other side");
    node!(1).ok("send 2 4 same side");
    let v = node!(2).ok("recv 10000");
    assert_eq!(v["msg_id"], 4, "1 and 2 still talk");
    // 3's message to 1 is lost at send, 1's to 3 at 3's reader.
    wait_until(Duration::from_secs(10), "both losses counted by 3", || {
        node!(3).stat("/dropped/fault") >= 2
    });
    assert_eq!(node!(3).stat("/dropped/fault"), 2);
    assert_eq!(node!(3).cmd("recv 0")["code"], "CLUSTER_E_TIMEOUT");
    assert_eq!(node!(1).cmd("recv 0")["code"], "CLUSTER_E_TIMEOUT");
    // Heal: messages flow again, both ways.
    node!(3).ok("heal");
    node!(1).ok("send 3 5 after the heal");
    let v = node!(3).ok("recv 10000");
    assert_eq!(
        (v["pid"].as_i64(), v["msg_id"].as_i64()),
        (Some(1), Some(5))
    );
    node!(3).ok("bcast 6 back");
    for i in [1, 2] {
        assert_eq!(node!(i).ok("recv 10000")["msg_id"], 6);
    }
    assert_eq!(node!(2).cmd("bogus")["code"], "CLUSTER_E_INVALID_ARG");
}

#[test]
fn real_and_mock_nodes_make_the_same_seeded_decisions() {
    /// Sends 300 messages from `a` to `b` at 50 % loss with seed 5, then a
    /// marker without loss; returns the ids that arrived before the marker.
    fn survivors(a: &Node, b: &Node) -> Vec<i64> {
        a.fault(&FaultCmd::Seed(5)).unwrap();
        a.fault(&FaultCmd::Drop(0.5)).unwrap();
        for i in 0..300 {
            send(a, b.pid(), i, b"coin");
        }
        a.fault(&FaultCmd::Drop(0.0)).unwrap();
        send(a, b.pid(), -1, b"marker");
        let mut got = Vec::new();
        loop {
            let e = recv(b);
            if e.msg_id == -1 {
                return got;
            }
            got.push(e.msg_id);
        }
    }
    let (nodes, _) = cluster(2, "");
    let real = survivors(&nodes[0], &nodes[1]);
    let (_m, servers) = mock(2, 99, None);
    let simulated = survivors(&servers[0], &servers[1]);
    assert!((90..=210).contains(&real.len()), "{} of 300", real.len());
    assert_eq!(real, simulated, "same seed, same link, same fates");
}
