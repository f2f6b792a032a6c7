//! Close, restart, blocked callers, and peers that are down.

mod common;
use cluster::{Envelope, Node, Status, BROADCAST};
use common::*;
use std::time::Duration;

#[test]
fn close_and_restart_on_the_same_address_20_times() {
    let (nodes, cfg) = cluster(2, "");
    let b = &nodes[1];
    let mut a = nodes[0].clone();
    for round in 0..20i64 {
        // Traffic both ways so each incarnation has live connections to close.
        send(&a, 2, round, b"ping");
        assert_eq!(recv(b).msg_id, round);
        send(b, 1, round, b"pong");
        assert_eq!(recv(&a).msg_id, round);
        a.close();
        assert!(a.is_closed());
        a = Node::new(1, &cfg).unwrap_or_else(|e| panic!("restart {round}: {e}"));
    }
    assert!(stat(b, "/peers/0/reconnects") >= 1);
}

#[test]
fn close_wakes_a_thread_blocked_in_recv() {
    let (nodes, _) = cluster(1, "");
    let n = nodes[0].clone();
    let waiter = std::thread::spawn(move || n.recv(None));
    wait_until(Duration::from_secs(5), "the waiter to block", || {
        !waiter.is_finished()
    });
    nodes[0].close();
    let r = waiter.join().unwrap();
    assert_eq!(r.unwrap_err().status, Status::Closed);
    let e = nodes[0]
        .send(Envelope::new(1, 0, 0, b"x"), None)
        .unwrap_err();
    assert_eq!(e.status, Status::Closed);
    assert_eq!(
        nodes[0].recv(Some(Duration::ZERO)).unwrap_err().status,
        Status::Closed
    );
    nodes[0].close(); // idempotent
}

#[test]
fn close_while_the_inbox_is_full_and_a_peer_pushes() {
    let (nodes, cfg) = cluster(2, r#""InboxSize": 4, "OutboxSize": 8"#);
    let (a, b) = (&nodes[0], &nodes[1]);
    // Fill b's inbox, its reader, the socket buffers and a's queue.
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || {
            let mut sent = 0;
            while a
                .send(
                    Envelope::new(2, sent, 0, &[0u8; 1024]),
                    Some(Duration::from_millis(200)),
                )
                .is_ok()
            {
                sent += 1;
            }
            sent
        })
    };
    wait_until(Duration::from_secs(10), "b's inbox to fill", || {
        stat(b, "/inbox_depth") == 4
    });
    b.close();
    let sent = sender.join().unwrap();
    assert!(sent >= 4);
    // b comes back at once on the same address and a reaches it again.
    let b2 = Node::new(2, &cfg).unwrap();
    let mut got = None;
    wait_until(Duration::from_secs(10), "a to reach the new b", || {
        let _ = a.send(Envelope::new(2, -1, 0, b"again"), Some(Duration::ZERO));
        if let Ok(e) = b2.recv(Some(Duration::from_millis(20))) {
            if e.msg_id == -1 {
                got = Some(e);
            }
        }
        got.is_some()
    });
}

#[test]
fn a_down_peer_does_not_slow_the_others_and_is_served_when_it_comes_up() {
    let (a, b, cfg) = retry_ports(|| {
        let cfg = config(3, r#""OutboxSize": 100"#);
        Ok((Node::new(1, &cfg)?, Node::new(2, &cfg)?, cfg))
    });
    // Node 2 was down when node 1 started: wait until node 1 has reached it.
    wait_until(Duration::from_secs(10), "1 to connect to 2", || {
        a.stats()["peers"][0]["connected"] == true
    });
    // Node 3 is down, and node 1 knows it. Broadcasts with an unbounded
    // timeout must not block on it (if they waited, this test would hang).
    wait_until(Duration::from_secs(10), "1 to see 3 down", || {
        a.stats()["peers"][1]["down"] == true
    });
    for i in 0..150 {
        a.send(Envelope::new(BROADCAST, i, 0, b"hi"), None).unwrap();
    }
    for i in 0..150 {
        assert_eq!(recv(&b).msg_id, i);
    }
    let st = a.stats();
    let p3 = &st["peers"][1];
    assert_eq!(p3["id"], 3);
    assert_eq!(p3["connected"], false);
    assert_eq!(p3["queue_depth"], 100, "what fits is kept for the peer");
    assert_eq!(
        p3["dropped"]["queue_full"], 50,
        "the rest is dropped and counted"
    );
    assert_eq!(st["dropped"]["queue_full"], 50);
    assert_eq!(st["sent"], 250);
    // Node 3 comes up and gets what was kept, in order.
    let c = Node::new(3, &cfg).unwrap();
    for i in 0..100 {
        assert_eq!(recv(&c).msg_id, i);
    }
    wait_until(Duration::from_secs(5), "the queue to drain", || {
        stat(&a, "/peers/1/written") == 100 && stat(&a, "/peers/1/queue_depth") == 0
    });
}

#[test]
fn bad_configs_and_port_in_use_are_errors() {
    let (nodes, cfg) = cluster(1, "");
    let e = Node::new(1, &cfg).unwrap_err();
    assert_eq!(e.status, Status::AddrInUse, "{e}");
    assert!(e.message.contains("Id 1"), "{e}");
    let e = Node::new(7, &cfg).unwrap_err();
    assert_eq!(e.status, Status::Config);
    assert!(e.message.contains("own id 7"), "{e}");
    let e = Node::new(1, "/no/such/file.json").unwrap_err();
    assert!(e.message.contains("cannot read config file"), "{e}");
    let e = Node::new(1, "{\"Peers\": [}").unwrap_err();
    assert!(e.message.contains("line 1 column"), "{e}");
    drop(nodes);
}

#[test]
fn config_from_a_file() {
    let cfg = config(1, "");
    let path = std::env::temp_dir().join(format!("cluster-test-{}.json", free_port()));
    std::fs::write(&path, &cfg).unwrap();
    let n = Node::new(1, path.to_str().unwrap()).unwrap();
    assert_eq!(n.pid(), 1);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn every_message_is_delivered_or_counted_when_a_receiver_restarts() {
    let (nodes, cfg) = cluster(
        2,
        r#""InboxSize": 50, "OutboxSize": 200, "CloseLingerMs": 0"#,
    );
    let a = nodes[0].clone();
    let mut b = nodes[1].clone();
    let mut attempts = 0u64;
    let (mut received, mut discarded) = (0u64, 0u64);
    for round in 0..5 {
        // Send a burst while b reads only part of it, then b goes away with
        // messages in flight, in its socket buffer and in its inbox.
        wait_until(Duration::from_secs(10), "a to reach this b", || {
            a.stats()["peers"][0]["connected"] == true
        });
        for i in 0..400 {
            attempts += 1;
            let _ = a.send(
                Envelope::new(2, i, 0, &[round as u8; 100]),
                Some(Duration::ZERO),
            );
            if i % 4 == 0 {
                let _ = b.recv(Some(Duration::ZERO));
            }
        }
        // Some of the burst waits in b's inbox when b goes.
        wait_until(
            Duration::from_secs(10),
            "b to hold what it did not read",
            || stat(&b, "/received") > stat(&b, "/delivered"),
        );
        b.close();
        received += stat(&b, "/received");
        discarded += stat(&b, "/discarded");
        assert_eq!(
            stat(&b, "/received"),
            stat(&b, "/delivered") + stat(&b, "/discarded"),
            "the receiver accounts for all it took in"
        );
        b = Node::new(2, &cfg).unwrap();
    }
    // The last incarnation takes ten more, then drains a's queue completely.
    wait_until(Duration::from_secs(10), "a to reach the last b", || {
        a.stats()["peers"][0]["connected"] == true
    });
    for i in 0..10 {
        attempts += 1;
        send(&a, 2, 1000 + i, b"last");
    }
    let drained = std::thread::spawn({
        let b = b.clone();
        move || {
            let mut n = 0u64;
            while b.recv(Some(Duration::from_millis(500))).is_ok() {
                n += 1;
            }
            n
        }
    });
    wait_until(
        Duration::from_secs(20),
        "a's queue to drain and be acked",
        || {
            let p = &a.stats()["peers"][0];
            let n = |k: &str| p.pointer(k).and_then(|v| v.as_u64()).unwrap();
            n("/queue_depth") == 0 && n("/written") == n("/acked") + n("/dropped/conn_lost")
        },
    );
    let tail = drained.join().unwrap();
    let p = a.stats()["peers"][0].clone();
    let get = |k: &str| p.pointer(k).and_then(|v| v.as_u64()).unwrap();
    // Sender side: every attempt is sent or dropped for a full queue; every
    // sent message is acknowledged or counted lost in a broken connection.
    assert_eq!(attempts, get("/sent") + get("/dropped/queue_full"));
    assert_eq!(
        get("/sent"),
        get("/acked") + get("/dropped/conn_lost") + get("/dropped/closed")
    );
    // Receiver side: what b acknowledged is what its incarnations took in.
    received += stat(&b, "/received");
    assert_eq!(get("/acked"), received);
    assert!(
        get("/dropped/conn_lost") + discarded > 0,
        "the test did cut traffic: {p}"
    );
    assert!(tail >= 10, "the last incarnation got the last ten: {p}");
}

#[test]
fn a_closing_sender_accounts_for_every_message() {
    let (nodes, _) = cluster(
        2,
        r#""InboxSize": 50, "OutboxSize": 300, "CloseLingerMs": 200"#,
    );
    let (a, b) = (&nodes[0], &nodes[1]);
    // b reads nothing: its inbox fills, then its socket, then a's queue.
    let mut attempts = 0;
    while stat(a, "/dropped/queue_full") == 0 {
        assert!(attempts < 1_000_000, "a's queue never filled");
        attempts += 1;
        let _ = a.send(
            Envelope::new(2, attempts, 0, &[1u8; 4096]),
            Some(Duration::ZERO),
        );
    }
    a.close();
    let p = a.stats()["peers"][0].clone();
    let n = |k: &str| p.pointer(k).and_then(|v| v.as_u64()).unwrap();
    assert_eq!(attempts as u64, n("/sent") + n("/dropped/queue_full"));
    assert_eq!(
        n("/sent"),
        n("/acked") + n("/dropped/conn_lost") + n("/dropped/closed"),
        "{p}"
    );
    assert!(
        n("/dropped/closed") > 0,
        "some were still queued or unacknowledged"
    );
    assert!(n("/acked") <= stat(b, "/received"));
}

#[test]
fn frames_unacknowledged_when_an_idle_sender_closes_are_counted() {
    // b reads nothing: 10 frames fit in its inbox, the other 90 wait in its
    // socket, unacknowledged, while a's writer has nothing left to write.
    let (nodes, _) = cluster(2, r#""InboxSize": 10, "CloseLingerMs": 200"#);
    let (a, b) = (&nodes[0], &nodes[1]);
    for i in 0..100 {
        send(a, 2, i, &[7u8; 64]);
    }
    let p = |k: &str| stat(a, &format!("/peers/0/{k}"));
    wait_until(Duration::from_secs(10), "a's writer to write all", || {
        p("written") == 100 && p("queue_depth") == 0
    });
    a.close();
    assert_eq!(p("sent"), 100);
    assert_eq!(
        p("acked") + p("dropped/conn_lost") + p("dropped/closed"),
        100,
        "{}",
        a.stats()
    );
    assert!(p("acked") <= stat(b, "/received"));
    assert!(
        p("dropped/closed") > 0,
        "the unacknowledged count as closed"
    );
}
