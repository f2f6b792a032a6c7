//! The receiving side of a real node under stress: what a reader
//! acknowledges, what an old connection may still deliver, handshake
//! floods, and the threads a close leaves behind.

mod common;
use cluster::fault::CUT_IN;
use cluster::wire::Header;
use cluster::{Config, Envelope, FaultCmd, Node};
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stat of a node's link to `peer`, by JSON pointer inside its entry.
fn peer_stat(node: &Node, peer: i64, pointer: &str) -> u64 {
    let s = node.stats();
    let p = s["peers"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["id"] == peer))
        .unwrap_or_else(|| panic!("no peer {peer} in {s}"));
    p.pointer(pointer)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no stat {pointer} in {p}"))
}

/// Checks that `ids` strictly increase; names the first place they do not.
fn assert_increasing(ids: &[i64], what: &str) {
    if let Some(w) = ids.windows(2).position(|w| w[0] >= w[1]) {
        let lo = w.saturating_sub(3);
        panic!(
            "{what}: message {} came after {} (at {w} of {}: {:?})",
            ids[w + 1],
            ids[w],
            ids.len(),
            &ids[lo..(w + 5).min(ids.len())]
        );
    }
}

/// Suspicion 1: an in-cut toggled in the middle of a burst. Every frame the
/// receiver acknowledges must be in its inbox or counted as a fault drop,
/// and what reaches the inbox comes in order, once.
#[test]
fn an_in_cut_toggled_mid_burst_acknowledges_only_what_it_accounts_for() {
    // A small inbox, so readers also wait for room mid-burst.
    let (nodes, _) = cluster(2, r#""InboxSize": 64"#);
    let (rx, tx) = (nodes[0].clone(), nodes[1].clone());
    const N: i64 = 200_000;
    let done = Arc::new(AtomicBool::new(false));
    let toggler = {
        let (rx, done) = (rx.clone(), done.clone());
        std::thread::spawn(move || {
            let mut toggles = 0u64;
            while !done.load(Ordering::Acquire) {
                let cut = FaultCmd::Cut {
                    peers: vec![2],
                    direction: CUT_IN,
                };
                rx.fault(&cut).unwrap();
                std::thread::yield_now();
                rx.fault(&FaultCmd::Heal).unwrap();
                std::thread::yield_now();
                toggles += 1;
            }
            toggles
        })
    };
    let consumer = {
        let rx = rx.clone();
        std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut out = Vec::new();
            while rx
                .recv_batch(256, Some(Duration::from_millis(200)), &mut out)
                .is_ok()
                || !out.is_empty()
            {
                got.extend(out.drain(..).map(|e| (e.pid, e.msg_id)));
            }
            got
        })
    };
    // Small frames (appended in wire form) and larger ones (decoded).
    let big = vec![7u8; 300];
    for i in 0..N {
        let data: &[u8] = if i % 5 == 0 { &big } else { b"small" };
        send(&tx, 1, i, data);
    }
    wait_until(Duration::from_secs(10), "every frame acknowledged", || {
        peer_stat(&tx, 1, "/acked") >= N as u64
    });
    done.store(true, Ordering::Release);
    let toggles = toggler.join().unwrap();
    rx.fault(&FaultCmd::Heal).unwrap();
    assert_eq!(peer_stat(&tx, 1, "/written"), N as u64, "{}", tx.stats());
    assert_eq!(peer_stat(&tx, 1, "/acked"), N as u64, "{}", tx.stats());
    assert_eq!(peer_stat(&tx, 1, "/dropped/conn_lost"), 0);
    let received = stat(&rx, "/received");
    let cut = stat(&rx, "/dropped/fault");
    assert_eq!(
        received + cut,
        N as u64,
        "acknowledged = received + dropped by the in-cut ({toggles} toggles): {}",
        rx.stats()
    );
    assert!(cut > 0, "the cut dropped something ({toggles} toggles)");
    wait_until(Duration::from_secs(10), "the inbox drained", || {
        stat(&rx, "/delivered") == received
    });
    rx.close();
    let got = consumer.join().unwrap();
    assert_eq!(got.len() as u64, received);
    assert!(got.iter().all(|&(pid, _)| pid == 2));
    let ids: Vec<i64> = got.iter().map(|&(_, id)| id).collect();
    assert_increasing(&ids, "in-cut toggling");
}

/// A raw connection to `addr` that has passed the handshake as `from`.
fn dial(addr: SocketAddr, cfg: &Config, from: i64, to: i64) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    cluster::transport::handshake::dial_on(&mut s, cfg, from, to).expect("handshake");
    s
}

/// The wire form of messages `ids` with small payloads.
fn frames(ids: impl Iterator<Item = i64>) -> Vec<u8> {
    let mut out = Vec::new();
    for id in ids {
        let env = Envelope::new(1, id, 0, b"payload!");
        out.extend_from_slice(&Header::encode(&env));
        out.extend_from_slice(&env.data);
    }
    out
}

/// Suspicion 2: a peer reconnects while its old connection's reader holds
/// a burst and waits for room in a full inbox. The old reader must not
/// deliver after the new connection delivered anything, so what the
/// receiver sees from the peer always increases.
#[test]
fn a_superseded_reader_never_delivers_after_the_new_connection() {
    let (nodes, cfg) = cluster(2, r#""InboxSize": 16"#);
    let rx = nodes[0].clone();
    let cfg = Config::from_json(&cfg).unwrap();
    let addr = cfg.peers[0].addr;
    // Node 2 leaves: its id is the test's to claim.
    nodes[1].close();
    // A consumer slower than the network keeps the inbox full, so readers
    // hold bursts and wait for room.
    let seen: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (rx, seen, stop) = (rx.clone(), seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if let Ok(e) = rx.recv(Some(Duration::from_millis(20))) {
                    assert_eq!(e.pid, 2);
                    seen.lock().unwrap().push(e.msg_id);
                }
            }
        })
    };
    let count_from = |lo: i64, hi: i64| {
        let s = seen.lock().unwrap();
        s.iter().filter(|&&id| (lo..hi).contains(&id)).count()
    };
    const ROUND: i64 = 10_000_000;
    for round in 0..20i64 {
        let old_base = 2 * round * ROUND;
        let new_base = old_base + ROUND;
        // The old connection streams until the node cuts it.
        let mut old = dial(addr, &cfg, 2, 1);
        let streamer = std::thread::spawn(move || {
            let mut next = old_base;
            loop {
                let chunk = frames(next..next + 1000);
                next += 1000;
                if next >= old_base + ROUND || old.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        wait_until(
            Duration::from_secs(10),
            "the old connection flowing",
            || count_from(old_base, new_base) >= 500,
        );
        // The peer reconnects: a new connection with later messages.
        let mut new = dial(addr, &cfg, 2, 1);
        new.write_all(&frames(new_base..new_base + 2000)).unwrap();
        wait_until(
            Duration::from_secs(10),
            "the new connection's messages",
            || count_from(new_base, new_base + 2000) == 2000,
        );
        streamer.join().unwrap();
        let s = seen.lock().unwrap();
        assert_increasing(&s, &format!("round {round}"));
    }
    stop.store(true, Ordering::Release);
    consumer.join().unwrap();
}

/// Keeps `n` silent connections to `addr` open, replacing each one the
/// node closes and each one older than `renew`, until `stop`; how many it
/// opened.
fn silent_flood(addr: SocketAddr, n: usize, renew: Duration, stop: Arc<AtomicBool>) -> u64 {
    let mut conns: Vec<Option<(TcpStream, Instant)>> = (0..n).map(|_| None).collect();
    let mut opened = 0;
    while !stop.load(Ordering::Acquire) {
        for slot in conns.iter_mut() {
            let alive = slot.as_ref().is_some_and(|(s, at)| {
                let mut b = [0u8; 16];
                at.elapsed() < renew
                    && matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            if !alive {
                *slot = TcpStream::connect(addr).ok().map(|s| {
                    opened += 1;
                    s.set_nonblocking(true).unwrap();
                    (s, Instant::now())
                });
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    opened
}

/// Suspicion 3: silent sockets renewed before the handshake timeout hold
/// every pending-handshake slot. A real peer that restarts must still get
/// back in within a few seconds, and the node keeps serving.
#[test]
fn silent_sockets_do_not_keep_a_restarted_peer_out() {
    let (nodes, cfg) = cluster(2, "");
    let a = nodes[0].clone();
    let addr = Config::from_json(&cfg).unwrap().peers[0].addr;
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || silent_flood(addr, 72, Duration::from_millis(1500), stop))
    };
    wait_until(Duration::from_secs(10), "the pending slots to fill", || {
        stat(&a, "/rejected") >= 16
    });
    nodes[1].close();
    drop(nodes);
    let b = Node::new(2, &cfg).expect("restart node 2");
    wait_until(Duration::from_secs(5), "node 2 to reconnect to 1", || {
        b.stats()["peers"][0]["connected"] == true
    });
    for i in 0..3 {
        send(&b, 1, i, b"back");
        let e = recv(&a);
        assert_eq!((e.pid, e.msg_id), (2, i));
    }
    stop.store(true, Ordering::Release);
    let opened = attacker.join().unwrap();
    assert!(opened >= 72, "the attacker opened {opened}");
}

/// Threads of this process whose name starts with one of `prefixes` and
/// that are not on their way out: a joined thread may linger in the kernel
/// for a moment, but it is past `do_exit`, which sets PF_EXITING first.
fn live_threads(prefixes: &[String]) -> Vec<String> {
    const PF_EXITING: u64 = 0x4;
    let mut found = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        // Gone since the listing: not live.
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        if !prefixes.iter().any(|p| comm.starts_with(p.as_str())) {
            continue;
        }
        // After the name: state ppid pgrp session tty_nr tpgid flags.
        let flags: u64 = stat[close + 1..]
            .split_whitespace()
            .nth(6)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse {stat}"));
        if flags & PF_EXITING == 0 {
            found.push(format!("{comm} ({:?})", t.file_name()));
        }
    }
    found
}

/// Suspicion 4: the accept thread may start a reader while the node
/// closes. Nodes open and close in a loop while a client hammers their
/// port; once `close` returns, no thread the node started is left.
#[test]
fn close_leaves_no_thread_of_the_node_behind() {
    // Ids no other test uses, so the thread names are this test's own (a
    // reader not yet started still bears its parent's name, cluster-a).
    let port = free_port();
    let cfg = format!(
        r#"{{"CloseLingerMs": 50, "Peers":[{{"Id":7301,"Address":"127.0.0.1:{port}"}},{{"Id":7302,"Address":"127.0.0.1:{}"}}]}}"#,
        free_port()
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let names: Vec<String> = [
        "cluster-a7301",
        "cluster-r7301",
        "cluster-d7301",
        "cluster-w7302",
    ]
    .map(String::from)
    .to_vec();
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicU64::new(0));
    let hammer = {
        let (stop, connects) = (stop.clone(), connects.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                match TcpStream::connect(addr) {
                    Ok(_) => {
                        connects.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => std::thread::yield_now(),
                }
            }
        })
    };
    let start = Instant::now();
    let mut rounds = 0;
    while start.elapsed() < Duration::from_secs(3) || rounds < 20 {
        let node = match Node::new(7301, &cfg) {
            Ok(n) => n,
            Err(e) if e.status == cluster::Status::AddrInUse => {
                assert!(start.elapsed() < Duration::from_secs(8), "port taken");
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let before = connects.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(5), "connections to come in", || {
            connects.load(Ordering::Relaxed) > before + 2
        });
        node.close();
        let left = live_threads(&names);
        assert!(
            left.is_empty(),
            "round {rounds}: left after close: {left:?}"
        );
        rounds += 1;
    }
    stop.store(true, Ordering::Release);
    hammer.join().unwrap();
}
