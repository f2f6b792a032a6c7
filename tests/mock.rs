//! The original mock suite's scenarios with five servers, and the node
//! semantics a mock server keeps: queues, errors, peers, close and re-add.

mod common;
use cluster::{Envelope, MockCluster, Status, BROADCAST};
use common::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Every server broadcasts `n` messages (msg_id 0..n, sequential).
fn everyone_broadcasts(nodes: &[cluster::Node], n: i64) {
    for node in nodes {
        for i in 0..n {
            broadcast(node, i, format!("{}:{i}", node.pid()).as_bytes());
        }
    }
}

fn total_received(nodes: &[cluster::Node]) -> usize {
    nodes.iter().map(|n| drain_now(n).len()).sum()
}

#[test]
fn no_loss_five_servers() {
    let (_m, nodes) = mock(5, 1, None);
    everyone_broadcasts(&nodes, 100);
    for node in &nodes {
        let got = drain_now(node);
        assert_eq!(got.len(), 400, "server {} got every broadcast", node.pid());
        let mut by_sender: HashMap<i64, Vec<i64>> = HashMap::new();
        for e in &got {
            assert_eq!(
                &e.data[..],
                format!("{}:{}", e.pid, e.msg_id).as_bytes(),
                "pid is the sender, payload intact"
            );
            by_sender.entry(e.pid).or_default().push(e.msg_id);
        }
        assert!(
            !by_sender.contains_key(&node.pid()),
            "no broadcast to oneself"
        );
        for ids in by_sender.values() {
            assert_eq!(*ids, (0..100).collect::<Vec<_>>(), "FIFO per sender");
        }
    }
    let s = &nodes[0];
    assert_eq!(stat(s, "/sent"), 400);
    assert_eq!(stat(s, "/received"), 400);
    assert_eq!(stat(s, "/delivered"), 400);
    assert_eq!(stat(s, "/dropped/fault"), 0);
}

#[test]
fn thirty_percent_send_omission() {
    let (_m, nodes) = mock(5, 42, None);
    for n in &nodes {
        n.fault(&cluster::FaultCmd::Drop(0.3)).unwrap();
    }
    everyone_broadcasts(&nodes, 100);
    let got = total_received(&nodes);
    // 2000 trials at p = 0.7: mean 1400, sd 20.5; six sd either way.
    assert!((1277..=1523).contains(&got), "{got} of 2000 delivered");
    let dropped: u64 = nodes.iter().map(|n| stat(n, "/dropped/fault")).sum();
    assert_eq!(dropped as usize + got, 2000, "every loss is counted");
    let full: u64 = nodes.iter().map(|n| stat(n, "/dropped/queue_full")).sum();
    assert_eq!(full, 0, "fault drops are kept apart from queue-full drops");

    // The same seed loses the same messages.
    let (_m2, again) = mock(5, 42, None);
    for n in &again {
        n.fault(&cluster::FaultCmd::Drop(0.3)).unwrap();
    }
    everyone_broadcasts(&again, 100);
    assert_eq!(total_received(&again), got);
}

#[test]
fn delay_delivers_everything_out_of_order() {
    let (_m, nodes) = mock(5, 7, None);
    for n in &nodes {
        n.fault(&cluster::FaultCmd::Delay(Duration::from_millis(100)))
            .unwrap();
    }
    everyone_broadcasts(&nodes, 100);
    let mut reordered = false;
    for node in &nodes {
        let got = recv_n(node, 400);
        let mut by_sender: HashMap<i64, Vec<i64>> = HashMap::new();
        for e in got {
            by_sender.entry(e.pid).or_default().push(e.msg_id);
        }
        for ids in by_sender.values_mut() {
            reordered |= ids.windows(2).any(|w| w[0] > w[1]);
            ids.sort_unstable();
            assert_eq!(*ids, (0..100).collect::<Vec<_>>(), "each message once");
        }
    }
    assert!(reordered, "random delays reorder messages");
    wait_until(Duration::from_secs(10), "delays drained", || {
        nodes.iter().all(|n| stat(n, "/in_flight") == 0)
    });
    assert_eq!(total_received(&nodes), 0, "nothing arrives twice");
}

#[test]
fn partition_then_heal() {
    let (m, nodes) = mock(5, 3, None);
    m.partition(&[vec![1, 2, 3], vec![4, 5]]).unwrap();
    everyone_broadcasts(&nodes, 100);
    let mut got: HashMap<i64, HashSet<i64>> = HashMap::new();
    let mut total = 0;
    for n in &nodes {
        for e in drain_now(n) {
            got.entry(n.pid()).or_default().insert(e.pid);
            total += 1;
        }
    }
    assert_eq!(total, 100 * (3 * 2 + 2));
    assert_eq!(got[&1], HashSet::from([2, 3]));
    assert_eq!(got[&4], HashSet::from([5]));
    let lost: u64 = nodes.iter().map(|n| stat(n, "/dropped/fault")).sum();
    assert_eq!(lost, 100 * 5 * 4 - 800);

    m.heal().unwrap();
    everyone_broadcasts(&nodes, 100);
    assert_eq!(total_received(&nodes), 100 * 5 * 4);
}

#[test]
fn unnamed_servers_form_one_more_group() {
    let (m, nodes) = mock(5, 3, None);
    m.partition(&[vec![1]]).unwrap();
    broadcast(&nodes[1], 0, b"from 2");
    assert_eq!(drain_now(&nodes[0]).len(), 0);
    for n in &nodes[2..] {
        assert_eq!(drain_now(n).len(), 1, "2 reaches {}", n.pid());
    }
    // A server added later is unnamed too.
    let six = m.add_server(6).unwrap();
    broadcast(&nodes[0], 1, b"from 1");
    assert_eq!(drain_now(&six).len(), 0);
    broadcast(&six, 2, b"from 6");
    assert_eq!(drain_now(&nodes[4]).len(), 1);
}

#[test]
fn close_a_server_and_add_it_again() {
    let (m, nodes) = mock(5, 1, None);
    let three = &nodes[2];
    send(&nodes[0], 3, 1, b"before");
    three.close();
    assert!(three.is_closed());
    assert_eq!(m.servers(), vec![1, 2, 4, 5]);
    for n in [&nodes[0], &nodes[1], &nodes[3], &nodes[4]] {
        assert!(
            !n.peers().contains(&3),
            "a closed server leaves every peer list"
        );
    }
    let e = nodes[0]
        .send(Envelope::new(3, 2, 0, b"x"), None)
        .unwrap_err();
    assert_eq!(e.status, Status::UnknownPeer);
    assert_eq!(three.recv(None).unwrap_err().status, Status::Closed);
    assert_eq!(
        three
            .send(Envelope::new(1, 0, 0, b""), None)
            .unwrap_err()
            .status,
        Status::Closed
    );
    broadcast(&nodes[0], 3, b"to four");
    assert_eq!(
        [&nodes[1], &nodes[3], &nodes[4]]
            .iter()
            .map(|n| drain_now(n).len())
            .sum::<usize>(),
        3
    );

    let again = m.add_server(3).unwrap();
    assert!(
        !again.is_closed() && three.is_closed(),
        "a new server, old handle stays closed"
    );
    assert_eq!(again.peers(), vec![1, 2, 4, 5]);
    assert!(nodes[0].peers().contains(&3));
    send(&nodes[0], 3, 4, b"after");
    let got = recv(&again);
    assert_eq!((got.pid, got.msg_id, &got.data[..]), (1, 4, &b"after"[..]));
    assert!(drain_now(&again).is_empty(), "the old inbox is gone");
    // Adding an open server gives another handle to the same server.
    let same = m.add_server(3).unwrap();
    send(&nodes[1], 3, 5, b"x");
    assert_eq!(recv(&same).msg_id, 5);
}

#[test]
fn node_semantics_unknown_self_size_and_full_inbox() {
    let cfg = r#"{"Peers":[{"Id":1,"Address":"localhost:1"},{"Id":2,"Address":"localhost:2"}],
                 "InboxSize":3,"MaxMessageSize":8}"#;
    let m = MockCluster::new(Some(cfg), 5).unwrap();
    assert_eq!(m.servers(), vec![1, 2], "configured ids are started");
    let a = m.add_server(1).unwrap();
    let b = m.add_server(2).unwrap();
    assert_eq!(a.peers(), vec![2]);
    let e = a.send(Envelope::new(9, 0, 0, b""), None).unwrap_err();
    assert_eq!(e.status, Status::UnknownPeer);
    let e = a
        .send(Envelope::new(2, 0, 0, b"123456789"), None)
        .unwrap_err();
    assert_eq!(e.status, Status::TooLarge);
    send(&a, 1, 7, b"me");
    let got = recv(&a);
    assert_eq!((got.pid, got.msg_id), (1, 7), "unicast to oneself");
    for i in 0..3 {
        send(&a, 2, i, b"fill");
    }
    let e = a
        .send(Envelope::new(2, 3, 0, b"over"), Some(Duration::ZERO))
        .unwrap_err();
    assert_eq!(e.status, Status::Full);
    let e = a
        .send(
            Envelope::new(2, 3, 0, b"over"),
            Some(Duration::from_millis(20)),
        )
        .unwrap_err();
    assert_eq!(e.status, Status::Full);
    assert_eq!(stat(&a, "/dropped/queue_full"), 2);
    assert_eq!(stat(&a, "/dropped/fault"), 0);
    // A broadcast into a full inbox still returns Ok; the drop is counted.
    a.send(Envelope::new(BROADCAST, 4, 0, b"b"), Some(Duration::ZERO))
        .unwrap();
    assert_eq!(stat(&a, "/dropped/queue_full"), 3);
    // A sender waiting for room goes on as soon as the reader takes one.
    let a2 = a.clone();
    let waiting = std::thread::spawn(move || a2.send(Envelope::new(2, 5, 0, b"w"), None));
    assert_eq!(recv(&b).msg_id, 0);
    waiting.join().unwrap().unwrap();
    let ids: Vec<i64> = drain_now(&b).iter().map(|e| e.msg_id).collect();
    assert_eq!(ids, vec![1, 2, 5]);
    assert_eq!(stat(&b, "/inbox_depth"), 0);
}

#[test]
fn closing_either_side_frees_a_blocked_sender() {
    let (m, nodes) = mock(2, 1, Some(r#"{"InboxSize":1}"#));
    let (a, b) = (nodes[0].clone(), nodes[1].clone());
    send(&a, 2, 0, b"fills the inbox");
    // The receiver closes while a send waits for room: no deadlock.
    let a2 = a.clone();
    let blocked = std::thread::spawn(move || a2.send(Envelope::new(2, 1, 0, b"w"), None));
    b.close();
    let r = within(
        Duration::from_secs(10),
        "send to a closing server",
        move || blocked.join().unwrap(),
    );
    // Lost with the server if the send was waiting; refused if it came late.
    assert!(r.is_ok() || r.unwrap_err().status == Status::UnknownPeer);
    // The sender closes while it waits: its send fails with Closed.
    let _c = m.add_server(2).unwrap();
    send(&a, 2, 2, b"fills");
    let a3 = a.clone();
    let blocked = std::thread::spawn(move || a3.send(Envelope::new(2, 3, 0, b"w"), None));
    a.close();
    let r = within(
        Duration::from_secs(10),
        "send from a closing server",
        move || blocked.join().unwrap(),
    );
    assert_eq!(r.unwrap_err().status, Status::Closed);
}

#[test]
fn closing_the_cluster_closes_every_server() {
    let (m, nodes) = mock(3, 1, None);
    let n = nodes[0].clone();
    let blocked = std::thread::spawn(move || n.recv(None));
    m.close();
    let r = within(Duration::from_secs(10), "recv during close", move || {
        blocked.join().unwrap()
    });
    assert_eq!(r.unwrap_err().status, Status::Closed);
    assert!(nodes.iter().all(|n| n.is_closed()));
    assert!(m.servers().is_empty());
    assert_eq!(m.add_server(1).unwrap_err().status, Status::Closed);
}

/// A batch sent without a time limit reaches each destination in one push
/// (see MockServer::send_bursts): the same deliveries, order per sender,
/// counters and errors as one send at a time, small and large payloads,
/// into inboxes smaller than the batch (the sender waits for room).
#[test]
fn batches_keep_order_counters_and_errors() {
    use cluster::Outgoing;
    let cfg = r#"{"InboxSize":50,"MaxMessageSize":1000}"#;
    let (_m, nodes) = mock(3, 1, Some(cfg));
    static BIG: [u8; 200] = [7; 200]; // beyond the inline size: its own envelope
    let payload = |i: i64| if i % 10 == 3 { &BIG[..] } else { &b"small"[..] };
    // 300 messages: broadcasts, unicasts to 2 and to oneself, mixed.
    let to = |i: i64| match i % 3 {
        0 => BROADCAST,
        1 => 2,
        _ => 1,
    };
    let msgs = messages(300, to, payload);
    let want = |me: i64| -> Vec<i64> {
        (0..300)
            .filter(|&i| to(i) == me || (to(i) == BROADCAST && me != 1))
            .collect()
    };
    let readers: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (n, want) = (n.clone(), want(n.pid()));
            std::thread::spawn(move || {
                let got = recv_n(&n, want.len());
                for e in &got {
                    assert_eq!(e.pid, 1);
                    assert_eq!(&e.data[..], payload(e.msg_id));
                }
                let ids: Vec<i64> = got.iter().map(|e| e.msg_id).collect();
                assert_eq!(ids, want, "server {} got its messages in order", n.pid());
            })
        })
        .collect();
    let (sent, r) = nodes[0].send_copies(&msgs, None);
    assert_eq!((sent, r.is_ok()), (300, true));
    for r in readers {
        r.join().unwrap();
    }
    let deliveries = (want(1).len() + want(2).len() + want(3).len()) as u64;
    assert_eq!(stat(&nodes[0], "/sent"), deliveries);
    assert_eq!(stat(&nodes[0], "/dropped/queue_full"), 0);

    // It stops before the first message too large or to an unknown id,
    // having sent those before it.
    for (bad, status) in [(9, Status::UnknownPeer), (2, Status::TooLarge)] {
        let mut msgs: Vec<Outgoing> = (0..4)
            .map(|i| Outgoing {
                to: 3,
                msg_id: i,
                kind: 0,
                data: b"x",
            })
            .collect();
        msgs[2].to = bad;
        let huge = [0u8; 1001];
        if status == Status::TooLarge {
            msgs[2].data = &huge;
        }
        let (sent, r) = nodes[0].send_copies(&msgs, None);
        assert_eq!((sent, r.unwrap_err().status), (2, status));
        let ids: Vec<i64> = drain_now(&nodes[2]).iter().map(|e| e.msg_id).collect();
        assert_eq!(ids, vec![0, 1]);
    }

    // With a fault on, the fault model decides each message as before.
    nodes[0].fault(&cluster::FaultCmd::Drop(1.0)).unwrap();
    let (sent, r) = nodes[0].send_copies(&msgs[..30], None);
    assert_eq!((sent, r.is_ok()), (30, true));
    assert_eq!(total_received(&nodes[1..]), 0);
    assert_eq!(stat(&nodes[0], "/dropped/fault"), 30);
    assert_eq!(drain_now(&nodes[0]).len(), 10, "messages to oneself pass");
}

/// A batch decides the fault model's fates as the same messages sent one
/// at a time do (same seed, same order per link): the same deliveries,
/// copies and losses, and the same counters, under a drop and a duplicate
/// probability, a cut and a partition.
#[test]
fn batches_and_single_sends_meet_the_same_faults() {
    use cluster::fault::CUT_IN;
    use cluster::FaultCmd;
    let to = |i: i64| match i % 4 {
        0 | 1 => BROADCAST,
        2 => 2,
        _ => 4,
    };
    let msgs = messages(400, to, |_| b"payload");
    // What each server received, in order, and server 1's counters.
    let run = |batched: bool| {
        let (m, nodes) = mock(4, 7, None);
        nodes[0].fault(&FaultCmd::Drop(0.3)).unwrap();
        nodes[0].fault(&FaultCmd::Duplicate(0.25)).unwrap();
        let cut = FaultCmd::Cut {
            peers: vec![1],
            direction: CUT_IN,
        };
        nodes[2].fault(&cut).unwrap();
        m.partition(&[vec![1, 2, 3], vec![4]]).unwrap();
        // Broadcasts from 2 too, which has no fault of its own: its fates
        // still go through the model (3 refuses nobody but 1; 4 is apart).
        if batched {
            assert_eq!(nodes[0].send_copies(&msgs, None).0, msgs.len());
            assert_eq!(nodes[1].send_copies(&msgs[..40], None).0, 40);
        } else {
            for &m in &msgs {
                nodes[0].send_copy(m, None).unwrap();
            }
            for &m in &msgs[..40] {
                nodes[1].send_copy(m, None).unwrap();
            }
        }
        // Each server's messages grouped by sender, each sender's in the
        // order received (the order between senders is the lanes' turns).
        let got: Vec<Vec<(i64, i64)>> = nodes
            .iter()
            .map(|n| {
                let mut got: Vec<_> = drain_now(n).iter().map(|e| (e.pid, e.msg_id)).collect();
                got.sort_by_key(|&(pid, _)| pid);
                got
            })
            .collect();
        let counters: Vec<u64> = ["/sent", "/dropped/fault", "/duplicated"]
            .iter()
            .flat_map(|k| nodes[..2].iter().map(|n| stat(n, k)))
            .collect();
        (got, counters)
    };
    let (batched, batched_counters) = run(true);
    let (single, single_counters) = run(false);
    assert_eq!(batched, single, "the same messages reach the same servers");
    assert_eq!(
        batched_counters, single_counters,
        "sent, dropped, duplicated"
    );
    // The faults did act: 3 got nothing of 1's, 4 nothing at all, and
    // some of 1's messages to 2 were lost and some arrived twice.
    assert!(batched[2].iter().all(|&(from, _)| from != 1));
    assert!(batched[3].is_empty());
    let from_1: Vec<i64> = batched[1]
        .iter()
        .filter(|e| e.0 == 1)
        .map(|e| e.1)
        .collect();
    let to_2 = (0..400)
        .filter(|&i| to(i) == BROADCAST || to(i) == 2)
        .count();
    assert!(from_1.len() < to_2 && from_1.windows(2).any(|w| w[0] == w[1]));
    assert!(
        from_1.windows(2).all(|w| w[0] <= w[1]),
        "order per sender kept"
    );
}

/// A batch whose sender closes while it waits for room counts the fault
/// model's losses of the messages it reports sent, not of the whole batch
/// (one send at a time would not have decided the rest).
#[test]
fn a_batch_cut_short_by_close_counts_only_what_it_sent() {
    use cluster::FaultCmd;
    let (_m, nodes) = mock(2, 9, Some(r#"{"InboxSize":10}"#));
    nodes[0].fault(&FaultCmd::Drop(0.5)).unwrap();
    let msgs = messages(1000, |_| 2, |_| b"x");
    let tx = nodes[0].clone();
    let sender = std::thread::spawn(move || {
        let (done, r) = tx.send_copies(&msgs, None);
        (done, r.map_err(|e| e.status))
    });
    // The inbox is full and nobody receives: the batch waits for room.
    wait_until(Duration::from_secs(10), "a full inbox", || {
        stat(&nodes[0], "/sent") == 10
    });
    nodes[0].close();
    let (done, r) = sender.join().unwrap();
    assert_eq!(r, Err(Status::Closed));
    assert!((10..1000).contains(&done), "{done} reported sent");
    // Each message reported sent was delivered or lost, none beyond.
    assert_eq!(stat(&nodes[0], "/sent"), 10);
    assert_eq!(stat(&nodes[0], "/dropped/fault"), done as u64 - 10);
}
