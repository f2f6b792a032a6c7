//! The demo: a local three-node cluster over real TCP from an embedded
//! config — unicast, broadcast, a peer restart, the stats.
//!
//! Usage: `cluster-demo [CONFIG]` where CONFIG is JSON text or a file path
//! with at least three peers; the default is the embedded config below.

use cluster::{Envelope, Node, BROADCAST};
use std::time::Duration;

/// The original library's example cluster, on loopback.
const DEFAULT_CONFIG: &str = r#"{
  "Peers": [
    {"Id": 100, "Address": "localhost:7070"},
    {"Id": 200, "Address": "localhost:8080"},
    {"Id": 300, "Address": "localhost:9090"}
  ],
  "InboxSize": 1000,
  "OutboxSize": 1000
}"#;

const WAIT: Option<Duration> = Some(Duration::from_secs(5));

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

fn text(e: &Envelope) -> String {
    String::from_utf8_lossy(&e.data).into_owned()
}

fn run() -> cluster::Result<()> {
    let config = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_CONFIG.to_string());
    let ids = cluster::Config::load(&config)?.ids();
    if ids.len() < 3 {
        return Err(cluster::Error::config(
            "the demo needs at least three peers",
        ));
    }
    println!("== a real TCP cluster of {} nodes: {ids:?}", ids.len());
    let nodes: Vec<Node> = ids
        .iter()
        .map(|&id| Node::new(id, &config))
        .collect::<cluster::Result<_>>()?;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    a.send(
        Envelope::new(b.pid(), 1, 1, b"hello from the first node"),
        WAIT,
    )?;
    let got = b.recv(WAIT)?;
    println!(
        "unicast   {} -> {}: {:?} (msg_id {})",
        got.pid,
        b.pid(),
        text(&got),
        got.msg_id
    );
    b.send(
        Envelope {
            pid: got.pid,
            msg_id: 2,
            ..got
        },
        WAIT,
    )?;
    let back = a.recv(WAIT)?;
    println!(
        "reply     {} -> {}: {:?} (same envelope sent back)",
        back.pid,
        a.pid(),
        text(&back)
    );

    c.send(
        Envelope::new(BROADCAST, 3, 1, b"broadcast from the third node"),
        WAIT,
    )?;
    for n in &nodes[..2] {
        let got = n.recv(WAIT)?;
        println!("broadcast {} -> {}: {:?}", got.pid, n.pid(), text(&got));
    }

    println!(
        "restart   closing node {} and starting it again on the same address",
        c.pid()
    );
    c.close();
    let c = Node::new(c.pid(), &config)?;
    a.send(Envelope::new(c.pid(), 4, 1, b"welcome back"), WAIT)?;
    let got = c.recv(WAIT)?;
    println!("after     {} -> {}: {:?}", got.pid, c.pid(), text(&got));

    println!("stats of node {}:", a.pid());
    println!(
        "{}",
        serde_json::to_string_pretty(&a.stats()).unwrap_or_default()
    );
    for n in nodes.iter().chain([&c]) {
        n.close();
    }
    println!("== done");
    Ok(())
}
