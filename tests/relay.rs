//! A man in the middle that does not know the secret: a TCP relay on
//! loopback between node 1 (the sender) and node 2 (the receiver). It passes
//! the handshake through untouched, then, on the first connection only,
//! attacks one direction's records: injects, alters, replays, reorders,
//! drops or truncates them. Each attack must be detected by the side that
//! reads the records, the connection closed and counted (`auth_failed`, or
//! `bad_frames` for a stream cut inside a record), nothing forged delivered,
//! and no ack counted that did not verify. Later connections pass through
//! honestly, and the link recovers on them.

mod common;
use cluster::wire::{Header, HELLO_LEN, NONCE_LEN, PROOF_LEN, WELCOME_LEN};
use cluster::{Envelope, Node};
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attack {
    /// Bytes of the relay's own before the attacked record (frames: the
    /// issue's plaintext frame); for acks, in place of it (a plaintext ack
    /// claiming a million frames).
    Inject,
    /// One bit of the attacked record flipped.
    Alter,
    /// The attacked record sent twice.
    Replay,
    /// The attacked record held back and sent after the next one.
    Reorder,
    /// The attacked record left out.
    Drop,
    /// Half the attacked record sent, then the connection closed.
    Truncate,
}

const ATTACKS: [Attack; 6] = [
    Attack::Inject,
    Attack::Alter,
    Attack::Replay,
    Attack::Reorder,
    Attack::Drop,
    Attack::Truncate,
];

/// Which direction the relay attacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Frames,
    Acks,
}

struct Relay {
    addr: SocketAddr,
    /// Records seen going each way, over every connection.
    frames: Arc<AtomicUsize>,
    acks: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

/// Starts a relay to `target` that attacks `dir` with `attack` (if any) on
/// its first connection.
fn relay(target: SocketAddr, dir: Dir, attack: Option<Attack>) -> Relay {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let r = Relay {
        addr: l.local_addr().unwrap(),
        frames: Arc::default(),
        acks: Arc::default(),
        connections: Arc::default(),
    };
    let (frames, acks, connections) = (r.frames.clone(), r.acks.clone(), r.connections.clone());
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            // Node 2 may not listen yet: node 1 then tries again.
            let Ok(s) = TcpStream::connect(target) else {
                continue;
            };
            let first = connections.fetch_add(1, Ordering::SeqCst) == 0;
            let pick = |d: Dir| attack.filter(|_| first && dir == d);
            let (c2, s2) = (c.try_clone().unwrap(), s.try_clone().unwrap());
            let up = (pick(Dir::Frames), frames.clone());
            std::thread::spawn(move || {
                pipe(
                    c,
                    s,
                    &[HELLO_LEN + NONCE_LEN, PROOF_LEN],
                    Dir::Frames,
                    up.0,
                    &up.1,
                )
            });
            let down = (pick(Dir::Acks), acks.clone());
            std::thread::spawn(move || {
                pipe(
                    s2,
                    c2,
                    &[WELCOME_LEN + NONCE_LEN + PROOF_LEN, WELCOME_LEN],
                    Dir::Acks,
                    down.0,
                    &down.1,
                )
            });
        }
    });
    r
}

/// One length-prefixed record, whole.
fn read_record(from: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = [0u8; 4];
    from.read_exact(&mut head).ok()?;
    let mut rec = head.to_vec();
    rec.resize(4 + u32::from_le_bytes(head) as usize, 0);
    from.read_exact(&mut rec[4..]).ok()?;
    Some(rec)
}

/// Forwards the handshake's messages (`handshake` sizes) as they are, then
/// record by record, attacking record 0 of the acks or record 1 of the
/// frames (frame record 0 carries a message that must get through).
fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    handshake: &[usize],
    dir: Dir,
    attack: Option<Attack>,
    seen: &AtomicUsize,
) {
    for &n in handshake {
        let mut b = vec![0u8; n];
        if from.read_exact(&mut b).is_err() || to.write_all(&b).is_err() {
            return;
        }
    }
    let at = if dir == Dir::Frames { 1 } else { 0 };
    let mut held: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(mut rec) = read_record(&mut from) {
        let mut out: Vec<Vec<u8>> = vec![];
        match attack.filter(|_| i == at || held.is_some()) {
            None => out.push(rec),
            Some(Attack::Inject) if dir == Dir::Frames => {
                let payload = b"forged by the relay";
                let env = Envelope::new(2, 4242, 0, payload);
                out.push([&Header::encode(&env)[..], payload].concat());
                out.push(rec);
            }
            Some(Attack::Inject) => out.push(1_000_000u64.to_le_bytes().to_vec()),
            Some(Attack::Alter) => {
                let mid = rec.len() / 2;
                rec[mid] ^= 0x10;
                out.push(rec);
            }
            Some(Attack::Replay) => out.extend([rec.clone(), rec]),
            Some(Attack::Reorder) => match held.take() {
                None => held = Some(rec),
                Some(h) => out.extend([rec, h]),
            },
            Some(Attack::Drop) => {}
            Some(Attack::Truncate) => {
                let _ = to.write_all(&rec[..rec.len() / 2]);
                seen.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
        seen.fetch_add(1, Ordering::SeqCst);
        i += 1;
        if out.iter().any(|b| to.write_all(b).is_err()) {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Node 2 listens on its own address; node 1 reaches it through `relay`.
fn nodes(dir: Dir, attack: Option<Attack>) -> (Node, Node, Relay) {
    retry_ports(|| {
        // The nodes' ports stay bound until the relay has its own, so it
        // cannot be given one of them.
        let held = [0, 1].map(|_| TcpListener::bind("127.0.0.1:0").unwrap());
        let [real, one] = held.each_ref().map(|l| l.local_addr().unwrap());
        let r = relay(real, dir, attack);
        let cfg = format!(
            r#"{{"Secret":"relay-does-not-know-it","ReconnectMinMs":1,"ReconnectMaxMs":20,
                "Peers":[{{"Id":1,"Address":"{one}"}},
                         {{"Id":2,"Address":"{}","Listen":"{real}"}}]}}"#,
            r.addr
        );
        drop(held);
        let b = Node::new(2, &cfg)?;
        Ok((Node::new(1, &cfg)?, b, r))
    })
}

fn sent(a: &Node) -> u64 {
    stat(a, "/peers/0/written")
}

fn acked(a: &Node) -> u64 {
    stat(a, "/peers/0/acked")
}

/// Every message node 1 wrote has its fate counted: acked, or lost with
/// the connection.
fn settled(a: &Node) {
    wait_until(LIMIT, "node 1 to settle its accounts", || {
        acked(a) + stat(a, "/peers/0/dropped/conn_lost") == sent(a)
    });
}

/// After the attack: a new message gets through a new, honest connection.
fn recovers(a: &Node, b: &Node, r: &Relay) {
    let before = acked(a);
    send(a, 2, 99, b"after");
    let e = recv(b);
    assert_eq!((e.msg_id, &e.data[..]), (99, &b"after"[..]));
    assert!(r.connections.load(Ordering::SeqCst) >= 2, "reconnected");
    wait_until(LIMIT, "the new message's ack", || acked(a) == before + 1);
}

/// Waits until `node`, the side that reads the attacked records, counts
/// the attack once; the counter it must raise, and the one it must not.
fn detected(node: &Node, attack: Attack) -> (&'static str, &'static str) {
    let (raised, other) = match attack {
        Attack::Truncate => ("/bad_frames", "/auth_failed"),
        _ => ("/auth_failed", "/bad_frames"),
    };
    wait_until(LIMIT, &format!("{attack:?} to be detected"), || {
        stat(node, raised) == 1
    });
    (raised, other)
}

/// Sends message `id` ("m{id}"), whose record (or whose ack's) is the one
/// attacked, and waits until the relay has seen `seen` records that way; a
/// reorder or a drop shows only once the next record follows, so message
/// `id + 1` is sent for those.
fn strike(a: &Node, id: i64, way: &AtomicUsize, seen: usize, attack: Attack) {
    send(a, 2, id, format!("m{id}").as_bytes());
    wait_until(LIMIT, "the attacked record", || {
        way.load(Ordering::SeqCst) >= seen
    });
    if matches!(attack, Attack::Reorder | Attack::Drop) {
        send(a, 2, id + 1, format!("m{}", id + 1).as_bytes());
    }
}

fn attack_frames(attack: Attack) {
    let (a, b, r) = nodes(Dir::Frames, Some(attack));
    send(&a, 2, 1, b"m1");
    let e = recv(&b);
    assert_eq!((e.msg_id, &e.data[..]), (1, &b"m1"[..]));
    wait_until(LIMIT, "m1's ack", || acked(&a) == 1);
    // m2 rides record 1, the one attacked.
    strike(&a, 2, &r.frames, 2, attack);
    let (raised, other) = detected(&b, attack);
    // The reader delivered what verified before it counted the failure.
    let got: Vec<(i64, Vec<u8>)> = drain_now(&b)
        .into_iter()
        .map(|e| (e.msg_id, e.data.to_vec()))
        .collect();
    let want: Vec<(i64, Vec<u8>)> = match attack {
        Attack::Replay => vec![(2, b"m2".to_vec())],
        _ => vec![],
    };
    assert_eq!(got, want, "{attack:?}: only verified frames, each once");
    settled(&a);
    assert_eq!(acked(&a), 1 + want.len() as u64, "{attack:?}");
    recovers(&a, &b, &r);
    assert!(
        drain_now(&b).is_empty(),
        "{attack:?}: nothing else delivered"
    );
    assert_eq!((stat(&b, raised), stat(&b, other)), (1, 0), "{attack:?}");
    assert_eq!(stat(&a, "/auth_failed") + stat(&a, "/bad_frames"), 0);
}

fn attack_acks(attack: Attack) {
    let (a, b, r) = nodes(Dir::Acks, Some(attack));
    // m1's ack is record 0 of the acks, the one attacked.
    strike(&a, 1, &r.acks, 1, attack);
    let (raised, other) = detected(&a, attack);
    settled(&a);
    // Only acks that verified count: the first one, before its replay.
    let want = u64::from(attack == Attack::Replay);
    assert_eq!(acked(&a), want, "{attack:?}: no unverified ack counted");
    let n = sent(&a) as usize;
    let got: Vec<i64> = recv_n(&b, n).iter().map(|e| e.msg_id).collect();
    assert_eq!(got, (1..=n as i64).collect::<Vec<_>>());
    recovers(&a, &b, &r);
    assert_eq!((stat(&a, raised), stat(&a, other)), (1, 0), "{attack:?}");
    assert_eq!(stat(&b, "/auth_failed") + stat(&b, "/bad_frames"), 0);
}

#[test]
fn every_attack_on_frames_is_detected_counted_and_delivers_nothing() {
    for attack in ATTACKS {
        attack_frames(attack);
    }
}

#[test]
fn every_attack_on_acks_is_detected_counted_and_acks_nothing() {
    for attack in ATTACKS {
        attack_acks(attack);
    }
}

#[test]
fn an_honest_relay_changes_nothing() {
    // The relay with no attack on any connection: it parses records, so
    // this also checks that frames and acks travel sealed (a plaintext
    // frame would be misread by it).
    let (a, b, _r) = nodes(Dir::Frames, None);
    for i in 0..100 {
        send(&a, 2, i, &vec![i as u8; 1 + (i as usize * 997) % 70_000]);
    }
    for (i, e) in recv_n(&b, 100).iter().enumerate() {
        assert_eq!((e.msg_id, e.data.len()), (i as i64, 1 + (i * 997) % 70_000));
        assert!(e.data.iter().all(|&x| x == i as u8));
    }
    wait_until(LIMIT, "every ack", || acked(&a) == 100);
    assert_eq!(stat(&b, "/auth_failed") + stat(&a, "/auth_failed"), 0);
}
