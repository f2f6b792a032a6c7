//! The receive descriptor for event loops: readable exactly while a
//! receive would not block, on real nodes and mock servers, under a
//! streaming sender, and once the node is closed.

mod common;
use cluster::{Node, Outgoing, Status};
use common::*;
use std::os::fd::RawFd;
use std::time::Duration;

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable(fd: RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// The level-triggered contract, on `rx` fed by `tx`.
fn level_triggered(tx: &Node, rx: &Node) {
    let fd = rx.recv_fd().expect("recv_fd");
    assert_eq!(rx.recv_fd().unwrap(), fd, "the same descriptor every call");
    assert!(!readable(fd, 0), "not readable while the inbox is empty");
    for i in 0..3 {
        send(tx, rx.pid(), i, b"ping");
    }
    assert!(readable(fd, 10_000), "readable once a message arrived");
    wait_until(Duration::from_secs(10), "all three in the inbox", || {
        stat(rx, "/inbox_depth") == 3
    });
    for i in 0..3 {
        assert!(readable(fd, 0), "still readable with {} waiting", 3 - i);
        let e = rx
            .recv(Some(Duration::ZERO))
            .expect("a receive after readiness does not block");
        assert_eq!((e.pid, e.msg_id), (tx.pid(), i));
    }
    assert_eq!(
        rx.recv(Some(Duration::ZERO)).unwrap_err().status,
        Status::Timeout
    );
    assert!(!readable(fd, 0), "not readable once drained");
    rx.close();
    assert!(readable(fd, 0), "readable once closed, so loops see CLOSED");
    assert_eq!(
        rx.recv(Some(Duration::ZERO)).unwrap_err().status,
        Status::Closed
    );
    assert!(readable(fd, 0), "stays readable after close");
}

#[test]
fn readable_exactly_while_a_receive_would_not_block_tcp() {
    let (nodes, _) = cluster(2, "");
    level_triggered(&nodes[0], &nodes[1]);
}

#[test]
fn readable_exactly_while_a_receive_would_not_block_mock() {
    let (_m, nodes) = mock(2, 1, None);
    level_triggered(&nodes[0], &nodes[1]);
}

#[test]
fn a_descriptor_asked_for_late_is_readable_at_once() {
    let (_m, nodes) = mock(2, 1, None);
    send(&nodes[0], 2, 7, b"early");
    let fd = nodes[1].recv_fd().unwrap();
    assert!(readable(fd, 0), "a message was already waiting");
    let closed = nodes[0].recv_fd().unwrap();
    assert!(!readable(closed, 0));
    nodes[0].close();
    let fd0 = nodes[0].recv_fd().unwrap();
    assert_eq!(fd0, closed);
    assert!(readable(fd0, 0));
}

/// A loop that only receives after the descriptor says so, with timeout 0,
/// gets every message of a streaming sender in order: the descriptor never
/// stays unreadable while messages wait (a lost wake-up would stall it),
/// and one receive of each readiness never blocks.
fn stream_through_the_descriptor(tx: &Node, rx: &Node, n: i64) {
    let fd = rx.recv_fd().unwrap();
    let to = rx.pid();
    let sender = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for i in 0..n {
                let size = [8, 300, 5000][i as usize % 3];
                send(&tx, to, i, &vec![i as u8; size]);
            }
        })
    };
    let mut next = 0;
    let mut wakeups = 0;
    while next < n {
        assert!(
            readable(fd, 10_000),
            "descriptor not readable with {} messages still to come\n{}",
            n - next,
            rx.stats()
        );
        wakeups += 1;
        // Drain with timeout 0; a readiness whose message an earlier drain
        // took already ends in Timeout at once, and the next poll tells.
        loop {
            match rx.recv(Some(Duration::ZERO)) {
                Ok(e) => {
                    assert_eq!(e.msg_id, next, "in order");
                    next += 1;
                }
                Err(e) if e.status == Status::Timeout => break,
                Err(e) => panic!("receive failed: {e}"),
            }
        }
    }
    sender.join().unwrap();
    assert!(wakeups > 0);
    assert!(!readable(fd, 0), "drained: not readable");
}

#[test]
fn a_streaming_sender_never_stalls_a_descriptor_loop_tcp() {
    let (nodes, _) = cluster(2, r#""InboxSize":64,"OutboxSize":64"#);
    stream_through_the_descriptor(&nodes[0], &nodes[1], 30_000);
}

#[test]
fn a_streaming_sender_never_stalls_a_descriptor_loop_mock() {
    let (_m, nodes) = mock(
        2,
        1,
        Some(r#"{"Peers":[{"Id":1},{"Id":2}],"InboxSize":64}"#),
    );
    stream_through_the_descriptor(&nodes[0], &nodes[1], 30_000);
}

/// `try_send` with timeout 0 until the peer has no room: the message that
/// finds none is kept (Timeout), nothing is counted as dropped, and once
/// the receiver drains, every message sent arrives, none twice.
fn try_send_keeps_what_finds_no_room(tx: &Node, rx: &Node, size: usize) {
    let payload = vec![7u8; size];
    let mut sent = 0i64;
    let mut kept = 0;
    while kept < 3 {
        assert!(sent < 100_000, "the peer never ran out of room");
        let msg = Outgoing {
            to: rx.pid(),
            msg_id: sent,
            kind: 0,
            data: &payload,
        };
        match tx.try_send_copy(msg, Some(Duration::ZERO)) {
            Ok(()) => {
                sent += 1;
                kept = 0;
            }
            Err(e) if e.status == Status::Timeout => kept += 1,
            Err(e) => panic!("try_send: {e}"),
        }
        if kept > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(stat(tx, "/dropped/queue_full"), 0, "kept, not dropped");
    let got = recv_n(rx, sent as usize);
    for (i, e) in got.iter().enumerate() {
        assert_eq!(e.msg_id, i as i64, "every message once, in order");
    }
    assert_eq!(
        rx.recv(Some(Duration::from_millis(200)))
            .unwrap_err()
            .status,
        Status::Timeout,
        "no message beyond those try_send accepted"
    );
    let msg = Outgoing {
        to: rx.pid(),
        msg_id: sent,
        kind: 0,
        data: &payload,
    };
    tx.try_send_copy(msg, Some(Duration::from_secs(10)))
        .expect("room again once the receiver drained");
    assert_eq!(recv(rx).msg_id, sent);
    assert_eq!(stat(tx, "/dropped/queue_full"), 0);
}

#[test]
fn try_send_keeps_what_finds_no_room_tcp() {
    let (nodes, _) = cluster(2, r#""InboxSize":4,"OutboxSize":4"#);
    try_send_keeps_what_finds_no_room(&nodes[0], &nodes[1], 256 * 1024);
}

#[test]
fn try_send_keeps_what_finds_no_room_mock() {
    let cfg = r#"{"Peers":[{"Id":1},{"Id":2}],"InboxSize":4,"OutboxSize":4}"#;
    let (m, nodes) = mock(2, 1, Some(cfg));
    m.trace(true);
    try_send_keeps_what_finds_no_room(&nodes[0], &nodes[1], 16);
    let trace = m.take_trace();
    assert!(
        trace.contains(r#""event":"kept""#),
        "the trace shows the kept attempts:\n{trace}"
    );
    assert!(!trace.contains("dropped_full"));
}
