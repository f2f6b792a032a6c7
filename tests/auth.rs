//! The optional shared secret: only members that prove they know it get in.

mod common;
use cluster::wire::{decode_welcome, Hello, Verdict, HELLO_AUTH, WELCOME_LEN};
use cluster::{Config, Envelope, Node};
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One config, two views of it: the same peers, each side its own secret.
fn pair(secret_a: Option<&str>, secret_b: Option<&str>) -> (Node, Node) {
    retry_ports(|| {
        let base = config(2, "");
        let with = |s: Option<&str>| match s {
            Some(s) => base.replacen('{', &format!(r#"{{"Secret":"{s}","#), 1),
            None => base.clone(),
        };
        Ok((
            Node::new(1, &with(secret_a))?,
            Node::new(2, &with(secret_b))?,
        ))
    })
}

#[test]
fn members_with_the_same_secret_talk() {
    let (a, b) = pair(Some("s3cret"), Some("s3cret"));
    send(&a, 2, 1, b"authenticated");
    let e = recv(&b);
    assert_eq!((e.pid, &e.data[..]), (1, &b"authenticated"[..]));
    send(&b, 1, 2, b"back");
    assert_eq!(recv(&a).msg_id, 2);
    assert_eq!(stat(&b, "/auth_failed"), 0);
}

fn refused(a: &Node, b: &Node) {
    let _ = a.send(Envelope::new(2, 1, 0, b"let me in"), Some(Duration::ZERO));
    wait_until(Duration::from_secs(10), "the refusal to be counted", || {
        stat(b, "/auth_failed") >= 1
    });
    assert!(b.recv(Some(Duration::from_millis(100))).is_err());
    assert_eq!(a.stats()["peers"][0]["connected"], false);
}

#[test]
fn a_wrong_secret_is_refused_and_counted() {
    let (a, b) = pair(Some("right"), Some("wrong"));
    refused(&a, &b);
}

#[test]
fn a_secret_on_one_side_only_is_refused() {
    let (a, b) = pair(None, Some("only-b-has-it"));
    refused(&a, &b);
    let (a, b) = pair(Some("only-a-has-it"), None);
    refused(&a, &b);
}

#[test]
fn the_listener_challenge_reveals_nothing_and_a_bad_proof_is_refused() {
    let secret = "do-not-leak-me";
    let (b, cfg) = retry_ports(|| {
        let cfg = config(2, &format!(r#""Secret":"{secret}""#));
        Ok((Node::new(2, &cfg)?, cfg))
    });
    let b_addr = Config::from_json(&cfg).unwrap().peers[1].addr;
    let mut s = TcpStream::connect(b_addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let hello = Hello {
        from: 1,
        to: 2,
        flags: HELLO_AUTH,
    };
    s.write_all(&hello.encode()).unwrap();
    s.write_all(&[7u8; 16]).unwrap();
    let mut challenge = [0u8; WELCOME_LEN + 16 + 32];
    s.read_exact(&mut challenge).unwrap();
    let mut w = [0u8; WELCOME_LEN];
    w.copy_from_slice(&challenge[..WELCOME_LEN]);
    assert_eq!(decode_welcome(&w).unwrap().0, Verdict::Challenge);
    let leaked = challenge
        .windows(secret.len())
        .any(|win| win == secret.as_bytes());
    assert!(!leaked, "the secret is not sent");
    // A proof made without the secret is refused.
    s.write_all(&[0u8; 32]).unwrap();
    s.read_exact(&mut w).unwrap();
    assert_eq!(decode_welcome(&w).unwrap().0, Verdict::AuthFailed);
    wait_until(Duration::from_secs(10), "the refusal to be counted", || {
        stat(&b, "/auth_failed") == 1
    });
}
