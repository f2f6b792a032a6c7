//! The two-terminal chat, as two real processes talking through pipes.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn chat(id: i64, config: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-chat"))
        .arg(id.to_string())
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn expect(rx: &mpsc::Receiver<String>, want: &str) {
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line {want:?}"));
        if line == want {
            return;
        }
    }
}

#[test]
fn lines_typed_in_one_chat_appear_in_the_other() {
    let cfg = config(2, "");
    let (mut one, out1) = chat(1, &cfg);
    let (mut two, out2) = chat(2, &cfg);
    expect(&out1, "chat: node 1, peers [2]; type lines, Ctrl-D to quit");
    expect(&out2, "chat: node 2, peers [1]; type lines, Ctrl-D to quit");
    // Lines typed before the other side is reachable wait in its queue.
    let mut in1 = one.stdin.take().unwrap();
    let mut in2 = two.stdin.take().unwrap();
    writeln!(in1, "hello from one").unwrap();
    expect(&out2, "[1] hello from one");
    writeln!(in2, "hi one, two here").unwrap();
    expect(&out1, "[2] hi one, two here");
    drop(in1);
    drop(in2);
    assert!(one.wait().unwrap().success());
    assert!(two.wait().unwrap().success());
}
