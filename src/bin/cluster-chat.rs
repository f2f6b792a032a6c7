//! A two-terminal chat over a real TCP cluster, like the original library's.
//!
//! Run `cargo run --bin cluster-chat -- 1` in one terminal and
//! `cargo run --bin cluster-chat -- 2` in another; lines typed in one appear in
//! the other. An optional second argument is a config (JSON text or path).

use cluster::{Envelope, Node, BROADCAST};
use std::io::BufRead;

const CONFIG: &str = r#"{"Peers": [
    {"Id": 1, "Address": "localhost:7071"},
    {"Id": 2, "Address": "localhost:7072"}
]}"#;

fn main() {
    let mut args = std::env::args().skip(1);
    let id: i64 = match args.next().and_then(|a| a.parse().ok()) {
        Some(id) => id,
        None => {
            eprintln!("usage: cluster-chat ID [CONFIG]   (ID is 1 or 2 with the default config)");
            std::process::exit(2);
        }
    };
    let config = args.next().unwrap_or_else(|| CONFIG.to_string());
    let node = match Node::new(id, &config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("chat: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "chat: node {id}, peers {:?}; type lines, Ctrl-D to quit",
        node.peers()
    );
    let reader = node.clone();
    std::thread::spawn(move || {
        while let Ok(e) = reader.recv(None) {
            println!("[{}] {}", e.pid, String::from_utf8_lossy(&e.data));
        }
    });
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let Ok(line) = line else { break };
        if let Err(e) = node.send(Envelope::new(BROADCAST, i as i64, 1, line.as_bytes()), None) {
            eprintln!("chat: {e}");
        }
    }
    node.close();
}
