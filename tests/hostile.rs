//! Hostile input on a listening port: the node drops the bad connection,
//! keeps serving its good peers and keeps its memory bounded.

mod common;
use cluster::wire::{decode_welcome, Hello, Verdict, WELCOME_LEN};
use cluster::Node;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Node 1 and 2 run; id 3 is configured but absent, so an attacker can claim it.
fn setup() -> (Node, Node, std::net::SocketAddr) {
    retry_ports(|| {
        let three = config(3, "");
        let c = cluster::Config::from_json(&three).unwrap();
        let a = Node::new(1, &three)?;
        let b = Node::new(2, &three)?;
        Ok((a, b, c.peers[0].addr))
    })
}

fn still_serving(a: &Node, b: &Node, tag: i64) {
    send(b, 1, tag, b"still there?");
    let e = recv(a);
    assert_eq!((e.pid, e.msg_id), (2, tag));
    send(a, 2, tag, b"yes");
    assert_eq!(recv(b).msg_id, tag);
}

fn handshake(addr: std::net::SocketAddr, from: i64, to: i64) -> (TcpStream, Verdict) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&Hello { from, to, flags: 0 }.encode()).unwrap();
    let mut w = [0u8; WELCOME_LEN];
    s.read_exact(&mut w).unwrap();
    (s, decode_welcome(&w).unwrap().0)
}

/// True once the node closes the connection (acks it may send first are
/// read and ignored); false if it is still open after ten seconds.
fn closed_by_peer(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
        }
    }
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

#[test]
fn random_bytes_are_refused() {
    let (a, b, addr) = setup();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for round in 0..20 {
        let mut s = TcpStream::connect(addr).unwrap();
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        assert!(closed_by_peer(s), "round {round}");
    }
    wait_until(Duration::from_secs(10), "rejections counted", || {
        stat(&a, "/rejected") >= 20
    });
    still_serving(&a, &b, 1);
}

#[test]
fn unknown_id_and_wrong_target_are_refused() {
    let (a, b, addr) = setup();
    let (s, v) = handshake(addr, 42, 1);
    assert_eq!(v, Verdict::UnknownSender);
    assert!(closed_by_peer(s));
    let (s, v) = handshake(addr, 2, 3);
    assert_eq!(v, Verdict::WrongTarget);
    assert!(closed_by_peer(s));
    let (s, v) = handshake(addr, 1, 1);
    assert_eq!(
        v,
        Verdict::UnknownSender,
        "a node does not accept its own id"
    );
    assert!(closed_by_peer(s));
    still_serving(&a, &b, 2);
}

#[test]
fn a_4_gib_frame_header_drops_the_connection_without_allocating() {
    let (a, b, addr) = setup();
    let before = rss_kib();
    for _ in 0..5 {
        let (mut s, v) = handshake(addr, 3, 1);
        assert_eq!(v, Verdict::Accepted);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        s.write_all(&h).unwrap();
        assert!(closed_by_peer(s));
    }
    assert!(stat(&a, "/bad_frames") >= 5);
    assert!(rss_kib() < before + 64 * 1024, "memory stayed bounded");
    still_serving(&a, &b, 3);
}

#[test]
fn half_a_frame_then_a_stall_does_not_block_the_others() {
    let (a, b, addr) = setup();
    let (mut s, v) = handshake(addr, 3, 1);
    assert_eq!(v, Verdict::Accepted);
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&1000u32.to_le_bytes());
    s.write_all(&h).unwrap();
    s.write_all(&[7u8; 10]).unwrap();
    // The stalled connection holds one reader; the good peers go on; after
    // the stall timeout the node cuts it and counts it.
    still_serving(&a, &b, 4);
    assert!(closed_by_peer(s), "a stalled half frame is cut");
    assert!(stat(&a, "/bad_frames") >= 1);
    // A vanished peer mid-message: the reader sees EOF and lets go.
    let (mut s, _) = handshake(addr, 3, 1);
    s.write_all(&h).unwrap();
    drop(s);
    still_serving(&a, &b, 5);
    // A garbage frame after a valid handshake and a second half frame.
    let (mut s, _) = handshake(addr, 3, 1);
    s.write_all(&[0xff; 64]).unwrap();
    assert!(closed_by_peer(s));
    still_serving(&a, &b, 6);
    a.close();
    b.close();
}

#[test]
fn a_stall_mid_frame_after_the_connection_rested_is_still_cut() {
    let (a, b, addr) = setup();
    let (mut s, v) = handshake(addr, 3, 1);
    assert_eq!(v, Verdict::Accepted);
    // Quiet past the 5 s stall timeout: the reader rests, with no timeout.
    std::thread::sleep(Duration::from_millis(5_500));
    // Then five bytes of a header, and a stall: the first bytes bring the
    // stall timeout back, so the node cuts it and counts it.
    s.write_all(&[1u8, 0, 0, 0, 0]).unwrap();
    still_serving(&a, &b, 4);
    assert!(closed_by_peer(s), "a half header after a rest is cut");
    assert!(stat(&a, "/bad_frames") >= 1);
    a.close();
    b.close();
}

#[test]
fn a_connection_flood_is_capped_and_the_node_stays_up() {
    let (a, b, addr) = setup();
    // Many silent connections (slowloris handshakes): beyond the cap they are
    // refused at once; the rest time out in the handshake.
    let conns: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    wait_until(
        Duration::from_secs(10),
        "excess connections refused",
        || stat(&a, "/rejected") >= 30,
    );
    still_serving(&a, &b, 7);
    drop(conns);
}

#[test]
fn a_handshake_dripped_a_byte_at_a_time_is_cut_at_its_deadline() {
    let (a, b, addr) = setup();
    let mut s = TcpStream::connect(addr).unwrap();
    let hello = Hello {
        from: 3,
        to: 1,
        flags: 0,
    }
    .encode();
    // 24 bytes, one every 300 ms: 7 s in all, far past the 2 s deadline of
    // the whole handshake. The node must cut it before the last byte.
    let mut cut = false;
    for byte in hello {
        if s.write_all(&[byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    cut = cut || closed_by_peer(s);
    assert!(cut, "the dripping handshake was let in");
    wait_until(Duration::from_secs(10), "the refusal to be counted", || {
        stat(&a, "/rejected") >= 1
    });
    still_serving(&a, &b, 8);
}

#[test]
fn a_peer_that_never_reads_costs_bounded_memory_and_nobody_else_waits() {
    // Id 3 is a fake peer: it lets node 1 in, then never reads a byte.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let (a, b) = retry_ports(|| {
        let base = config(2, r#""OutboxSize": 64"#);
        let c = cluster::Config::from_json(&base).unwrap();
        let cfg = format!(
            r#"{{"OutboxSize": 64, "Peers":[{{"Id":1,"Address":"{}"}},{{"Id":2,"Address":"{}"}},{{"Id":3,"Address":"{fake_addr}"}}]}}"#,
            c.peers[0].addr, c.peers[1].addr
        );
        Ok((Node::new(1, &cfg)?, Node::new(2, &cfg)?))
    });
    // The fake answers every hello, then holds the connections unread.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fake_thread = {
        let done = done.clone();
        std::thread::spawn(move || {
            fake.set_nonblocking(true).unwrap();
            let mut held = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                match fake.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        let mut hello = [0u8; cluster::wire::HELLO_LEN];
                        if conn.read_exact(&mut hello).is_ok() {
                            let _ = conn
                                .write_all(&cluster::wire::encode_welcome(Verdict::Accepted, 3));
                            held.push(conn);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    wait_until(Duration::from_secs(10), "1 to connect to 3", || {
        a.stats()["peers"][1]["connected"] == true
    });
    // 64 MiB offered to the peer that never reads, without waiting: the
    // kernel's buffers and the bounded queue fill, the rest is dropped.
    let before = rss_kib();
    let chunk = vec![7u8; 64 * 1024];
    for i in 0..1024 {
        let _ = a.send(
            cluster::Envelope::new(3, i, 0, &chunk),
            Some(Duration::ZERO),
        );
    }
    let p = &a.stats()["peers"][1];
    assert!(p["dropped"]["queue_full"].as_u64().unwrap() > 0, "{p}");
    assert!(p["queue_depth"].as_u64().unwrap() <= 64);
    assert!(
        rss_kib() < before + 32 * 1024,
        "memory stayed bounded by the queue"
    );
    // Meanwhile 1 and 2 go on as before.
    still_serving(&a, &b, 9);
    done.store(true, std::sync::atomic::Ordering::Release);
    fake_thread.join().unwrap();
}
