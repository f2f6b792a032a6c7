//! Slow peers, gone peers and our own close, as the per-peer accounts see
//! them: a live peer that stops reading gets back-pressure and loses
//! nothing; a killed one is marked down in bounded time on an idle link;
//! what our own close cuts short is counted `closed`, never `conn_lost`;
//! a peer's queue holds at most `OutboxSize` frames, however slow its socket.

mod common;
use cluster::{Envelope, FaultCmd, Node, Status};
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn peer(node: &Node, i: usize) -> Value {
    node.stats()["peers"][i].clone()
}

fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {v}"))
}

/// For a closed node, every message sent to a peer is acknowledged or
/// counted as dropped with a cause.
fn assert_accounted(node: &Node) {
    for p in node.stats()["peers"].as_array().unwrap() {
        let settled = num(p, "/acked")
            + num(p, "/dropped/conn_lost")
            + num(p, "/dropped/closed")
            + num(p, "/queue_depth");
        assert_eq!(num(p, "/sent"), settled, "accounts of {p}");
    }
}

#[test]
fn a_reader_that_pauses_loses_nothing_and_pushes_back() {
    // Paused for eight peer timeouts: a live peer whose window stays zero
    // is slow, not gone. PAUSE_SECONDS=60 with the default PeerTimeoutMs
    // is the long version.
    let long: Option<u64> = std::env::var("PAUSE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok());
    let timeout = if long.is_some() {
        ""
    } else {
        r#","PeerTimeoutMs":1000"#
    };
    let (nodes, _) = cluster(2, &format!(r#""InboxSize":8,"OutboxSize":8{timeout}"#));
    let payload = vec![7u8; 64 << 10];
    let pause = Instant::now() + Duration::from_secs(long.unwrap_or(8));
    let (mut sent, mut full) = (0i64, 0u64);
    while Instant::now() < pause {
        let env = Envelope::new(2, sent, 0, &payload);
        match nodes[0].send(env, Some(Duration::from_millis(100))) {
            Ok(()) => sent += 1,
            Err(e) if e.status == Status::Full => full += 1,
            Err(e) => panic!("send: {e}"),
        }
    }
    assert!(full > 0, "the sender was pushed back");
    let got: Vec<i64> = recv_n(&nodes[1], sent as usize)
        .iter()
        .map(|e| e.msg_id)
        .collect();
    assert_eq!(got, (0..sent).collect::<Vec<_>>(), "all, in order");
    wait_until(Duration::from_secs(10), "every frame acknowledged", || {
        num(&peer(&nodes[0], 0), "/acked") == sent as u64
    });
    let p = peer(&nodes[0], 0);
    assert_eq!(num(&p, "/dropped/conn_lost"), 0, "{p}");
    assert_eq!(num(&p, "/reconnects"), 0, "{p}");
    assert_eq!(num(&p, "/dropped/queue_full"), full, "{p}");
}

#[test]
fn a_live_idle_link_stays_up_for_many_peer_timeouts() {
    let (nodes, _) = cluster(2, r#""PeerTimeoutMs":500"#);
    send(&nodes[0], 2, 1, b"hello");
    recv(&nodes[1]);
    // Eight timeouts of silence: keepalive probes keep proving the peer.
    std::thread::sleep(Duration::from_secs(4));
    let p = peer(&nodes[0], 0);
    assert_eq!(
        (p["connected"].clone(), p["down"].clone()),
        (true.into(), false.into()),
        "{p}"
    );
    assert_eq!(num(&p, "/reconnects"), 0, "{p}");
    send(&nodes[0], 2, 2, b"still here");
    assert_eq!(recv(&nodes[1]).msg_id, 2);
}

#[test]
fn a_killed_peer_on_an_idle_link_is_marked_down() {
    let (node, cfg) = retry_ports(|| {
        let cfg = config(2, r#""PeerTimeoutMs":1000"#);
        Ok((Node::new(1, &cfg)?, cfg))
    });
    let mut p = Proc::start(2, &cfg);
    send(&node, 2, 1, b"hello");
    p.ok("recv 10000");
    wait_until(Duration::from_secs(10), "the hello acknowledged", || {
        num(&peer(&node, 0), "/acked") == 1
    });
    p.child.kill().unwrap(); // SIGKILL: no goodbye
    p.child.wait().unwrap();
    wait_until(Duration::from_secs(10), "peer 2 marked down", || {
        let s = peer(&node, 0);
        s["down"] == true && s["connected"] == false
    });
}

#[test]
fn our_own_close_counts_what_it_cuts_short_as_closed() {
    // Node 2 never reads: node 1's writer is blocked writing when it closes.
    let (nodes, _) = cluster(2, r#""InboxSize":1,"OutboxSize":64,"CloseLingerMs":200"#);
    let payload = vec![1u8; 256 << 10];
    for i in 0..64 {
        send(&nodes[0], 2, i, &payload);
    }
    nodes[0].close();
    let p = peer(&nodes[0], 0);
    assert_eq!(num(&p, "/dropped/conn_lost"), 0, "{p}");
    assert!(num(&p, "/dropped/closed") > 0, "{p}");
    assert_accounted(&nodes[0]);
}

#[test]
fn a_peer_holds_at_most_outbox_size_frames_however_slow_its_socket() {
    // Node 2 never reads and the socket is full: frames being written count
    // against the bound as well as queued ones.
    let (nodes, _) = cluster(2, r#""InboxSize":1,"OutboxSize":4,"CloseLingerMs":100"#);
    let payload = vec![1u8; 1 << 20];
    let mut sent = 0;
    for i in 0..64 {
        match nodes[0].send(Envelope::new(2, i, 0, &payload), Some(Duration::ZERO)) {
            Ok(()) => sent += 1,
            Err(e) => assert_eq!(e.status, Status::Full, "{e}"),
        }
        let depth = num(&peer(&nodes[0], 0), "/queue_depth");
        assert!(depth <= 4, "{depth} frames held for the peer");
    }
    // What the sockets and node 2's inbox took, plus the bound: no more.
    let p = peer(&nodes[0], 0);
    let written = num(&p, "/written");
    assert_eq!(sent, written + num(&p, "/queue_depth"), "{p}");
    nodes[0].close();
    assert_accounted(&nodes[0]);
}

#[test]
fn delayed_messages_dropped_at_close_are_counted_per_peer() {
    let (nodes, _) = cluster(2, "");
    nodes[0]
        .fault(&FaultCmd::Delay(Duration::from_secs(600)))
        .unwrap();
    for i in 0..10 {
        send(&nodes[0], 2, i, b"late");
    }
    nodes[0].close();
    let p = peer(&nodes[0], 0);
    // (A delay drawn below a few milliseconds lets a message through.)
    assert_eq!(num(&p, "/sent"), 10, "{p}");
    assert_eq!(num(&p, "/dropped/closed") + num(&p, "/acked"), 10, "{p}");
    assert!(num(&p, "/dropped/closed") >= 9, "{p}");
    assert_accounted(&nodes[0]);
}

#[test]
fn a_batch_of_more_large_payloads_than_one_sendmsg_takes_arrives_whole() {
    // 1500 payloads of 16 KiB queue up while node 2 does not read: the
    // writer's next batch has 3000 slices, more than one sendmsg takes.
    let (nodes, _) = cluster(2, r#""InboxSize":1500,"OutboxSize":1500"#);
    let payload = vec![3u8; 16 << 10];
    for i in 0..1500 {
        send(&nodes[0], 2, i, &payload);
    }
    let got: Vec<i64> = recv_n(&nodes[1], 1500).iter().map(|e| e.msg_id).collect();
    assert_eq!(got, (0..1500).collect::<Vec<_>>());
    let p = peer(&nodes[0], 0);
    assert_eq!(
        num(&p, "/dropped/conn_lost") + num(&p, "/reconnects"),
        0,
        "{p}"
    );
}
