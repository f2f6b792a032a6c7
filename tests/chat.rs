//! The two-terminal chat, as two real processes talking through pipes.

mod common;
use common::*;
use std::io::Write;
use std::process::{Child, ChildStdin, Command};
use std::sync::mpsc::Receiver;

fn chat(id: i64, config: &str) -> (Child, ChildStdin, Receiver<String>) {
    spawn_lines(
        Command::new(env!("CARGO_BIN_EXE_cluster-chat"))
            .arg(id.to_string())
            .arg(config),
    )
}

fn expect(lines: &Receiver<String>, want: &str) {
    expect_line(lines, want, |l| l == want);
}

#[test]
fn lines_typed_in_one_chat_appear_in_the_other() {
    let cfg = config(2, "");
    let (mut one, mut in1, out1) = chat(1, &cfg);
    let (mut two, mut in2, out2) = chat(2, &cfg);
    expect(&out1, "chat: node 1, peers [2]; type lines, Ctrl-D to quit");
    expect(&out2, "chat: node 2, peers [1]; type lines, Ctrl-D to quit");
    // Lines typed before the other side is reachable wait in its queue.
    writeln!(in1, "hello from one").unwrap();
    expect(&out2, "[1] hello from one");
    writeln!(in2, "hi one, two here").unwrap();
    expect(&out1, "[2] hi one, two here");
    drop(in1);
    drop(in2);
    assert!(one.wait().unwrap().success());
    assert!(two.wait().unwrap().success());
}
