//! A cluster whose members all start at once: every link is up within the
//! reconnect bounds (not after the kernel's SYN retry schedule, not held up
//! by the pending-handshake cap or by the descriptors each link costs), and
//! every broadcast reaches every member.

mod common;
use cluster::{Node, Status};
use common::*;
use std::time::{Duration, Instant};

/// Connected links over all nodes.
fn connected(nodes: &[Node]) -> usize {
    nodes
        .iter()
        .map(|n| {
            n.stats()["peers"]
                .as_array()
                .map_or(0, |ps| ps.iter().filter(|p| p["connected"] == true).count())
        })
        .sum()
}

#[test]
fn sixty_four_nodes_started_at_once_connect_and_deliver_within_seconds() {
    let n = 64;
    let nodes = loop {
        let cfg = config(n, "");
        let started: Result<Vec<Node>, _> = (1..=n as i64).map(|i| Node::new(i, &cfg)).collect();
        match started {
            Ok(nodes) => break nodes,
            Err(e) if e.status == Status::AddrInUse => continue,
            Err(e) => panic!("cannot start 64 nodes: {e}"),
        }
    };
    let start = Instant::now();
    for node in &nodes {
        broadcast(node, node.pid(), b"hello");
    }
    let links = n * (n - 1);
    wait_until(Duration::from_secs(15), "every link connected", || {
        connected(&nodes) == links
    });
    println!("{links} links up after {:?}", start.elapsed());
    for node in &nodes {
        let mut from: Vec<i64> = recv_n(node, n - 1).iter().map(|e| e.pid).collect();
        from.sort_unstable();
        let others: Vec<i64> = (1..=n as i64).filter(|&i| i != node.pid()).collect();
        assert_eq!(from, others, "node {} heard from every other", node.pid());
    }
    let rejected: u64 = nodes.iter().map(|n| stat(n, "/rejected")).sum();
    println!(
        "all delivered after {:?}, {rejected} handshakes cut",
        start.elapsed()
    );
}
