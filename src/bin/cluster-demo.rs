//! The demo: a local three-node cluster over real TCP from an embedded
//! config — unicast, broadcast, a peer restart, the stats — then the same
//! config on the mock network: a partition, a heal, seeded loss.
//!
//! Usage: `cluster-demo [CONFIG]` where CONFIG is JSON text or a file path
//! with at least three peers; the default is the embedded config below.

use cluster::fault::FaultCmd;
use cluster::mock::MockCluster;
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
    mock(&config, &ids)?;
    println!("== done");
    Ok(())
}

/// Counts what each server receives until the network is quiet.
fn drain(servers: &[Node]) -> Vec<usize> {
    servers
        .iter()
        .map(|s| std::iter::from_fn(|| s.recv(Some(Duration::from_millis(50))).ok()).count())
        .collect()
}

fn mock(config: &str, ids: &[i64]) -> cluster::Result<()> {
    println!("== the same cluster on the mock network (seed 42)");
    let mock = MockCluster::new(Some(config), 42)?;
    let servers: Vec<Node> = ids
        .iter()
        .map(|&id| mock.add_server(id))
        .collect::<cluster::Result<_>>()?;
    let broadcast_all = |tag: i64| -> cluster::Result<()> {
        for s in &servers {
            s.send(Envelope::new(BROADCAST, tag, 1, b"tick"), WAIT)?;
        }
        Ok(())
    };
    broadcast_all(1)?;
    println!(
        "no faults:          received per server {:?}",
        drain(&servers)
    );
    mock.partition(&[vec![ids[0]], ids[1..].to_vec()])?;
    broadcast_all(2)?;
    println!(
        "partition {:?} | {:?}: received per server {:?}",
        &ids[..1],
        &ids[1..],
        drain(&servers)
    );
    mock.heal()?;
    servers[0].fault(&FaultCmd::Drop(0.5))?;
    for i in 0..100 {
        servers[0].send(Envelope::new(ids[1], i, 0, b"maybe"), WAIT)?;
    }
    let got = drain(&servers[1..2])[0];
    println!(
        "healed, 50% loss from {}: {got} of 100 arrived (the same count on every run)",
        ids[0]
    );
    mock.close();
    Ok(())
}
