//! Helpers shared by the integration tests: free loopback ports, clusters,
//! and waiting on a condition with a deadline.
#![allow(dead_code)]

use cluster::{Envelope, Node, Status};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `start` (which picks its own free ports) until no port it picked
/// was taken by another test in between: at most 20 tries.
pub fn retry_ports<T>(mut start: impl FnMut() -> cluster::Result<T>) -> T {
    for _ in 0..20 {
        match start() {
            Ok(t) => return t,
            Err(e) if e.status == Status::AddrInUse => continue,
            Err(e) => panic!("cannot start: {e}"),
        }
    }
    panic!("no free ports after 20 tries");
}

/// A config for ids 1..=n on free loopback ports, with extra settings.
pub fn config(n: usize, extra: &str) -> String {
    // Held until all are chosen, so no port is picked twice.
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let peers: Vec<String> = held
        .iter()
        .zip(1..)
        .map(|(l, i)| {
            let port = l.local_addr().unwrap().port();
            format!(r#"{{"Id":{i},"Address":"127.0.0.1:{port}"}}"#)
        })
        .collect();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(r#"{{"Peers":[{}]{extra}}}"#, peers.join(","))
}

/// Starts nodes 1..=n of a fresh config, retrying with new ports if another
/// test took one of them meanwhile.
pub fn cluster(n: usize, extra: &str) -> (Vec<Node>, String) {
    let (nodes, cfg) = retry_ports(|| {
        let cfg = config(n, extra);
        let nodes = (1..=n as i64)
            .map(|i| Node::new(i, &cfg))
            .collect::<cluster::Result<Vec<Node>>>()?;
        Ok((nodes, cfg))
    });
    wait_formed(&nodes);
    (nodes, cfg)
}

/// Waits until every node has a connection to every other.
pub fn wait_formed(nodes: &[Node]) {
    wait_until(Duration::from_secs(10), "the cluster to form", || {
        nodes.iter().all(|n| {
            n.stats()["peers"]
                .as_array()
                .is_some_and(|ps| ps.iter().all(|p| p["connected"] == true))
        })
    });
}

/// Waits until `f` holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Receives one envelope within ten seconds.
pub fn recv(node: &Node) -> Envelope {
    node.recv(Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| {
            panic!(
                "node {} received nothing: {e}\n{}",
                node.pid(),
                node.stats()
            )
        })
}

/// Starts `cmd` with its stdin and stdout piped; a thread passes its output
/// on line by line until the pipe closes.
pub fn spawn_lines(cmd: &mut Command) -> (Child, ChildStdin, Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let stdin = child.stdin.take().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, stdin, lines)
}

/// Waits (ten seconds at most) for a line that `f` accepts, skipping others.
pub fn expect_line(lines: &Receiver<String>, what: &str, f: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) if f(&l) => return l,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// Sends bytes from `node` to `to`, waiting as long as needed for room.
pub fn send(node: &Node, to: i64, msg_id: i64, data: &[u8]) {
    node.send(Envelope::new(to, msg_id, 0, data), None)
        .unwrap_or_else(|e| panic!("send {} -> {to}: {e}", node.pid()));
}

/// A stat of a node, by JSON pointer (e.g. "/dropped/queue_full").
pub fn stat(node: &Node, pointer: &str) -> u64 {
    node.stats()
        .pointer(pointer)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no stat {pointer}"))
}

/// A mock cluster with servers 1..=n, every fault decision drawn from `seed`.
pub fn mock(n: i64, seed: u64, config: Option<&str>) -> (cluster::MockCluster, Vec<Node>) {
    let m = cluster::MockCluster::new(config, seed).expect("mock cluster");
    let nodes = (1..=n)
        .map(|i| m.add_server(i).expect("add server"))
        .collect();
    (m, nodes)
}

/// Messages 0..n, message i to `to(i)` with payload `data(i)`.
pub fn messages(
    n: i64,
    to: impl Fn(i64) -> i64,
    data: impl Fn(i64) -> &'static [u8],
) -> Vec<cluster::Outgoing<'static>> {
    (0..n)
        .map(|i| cluster::Outgoing {
            to: to(i),
            msg_id: i,
            kind: 0,
            data: data(i),
        })
        .collect()
}

/// Takes every envelope already in the node's inbox, without waiting.
pub fn drain_now(node: &Node) -> Vec<Envelope> {
    let mut out = Vec::new();
    while let Ok(e) = node.recv(Some(Duration::ZERO)) {
        out.push(e);
    }
    out
}

/// Receives exactly `n` envelopes, each within ten seconds.
pub fn recv_n(node: &Node, n: usize) -> Vec<Envelope> {
    (0..n).map(|_| recv(node)).collect()
}

/// Sends a broadcast of bytes from `node`, waiting as long as needed for room.
pub fn broadcast(node: &Node, msg_id: i64, data: &[u8]) {
    send(node, cluster::BROADCAST, msg_id, data);
}

/// Runs `f` on another thread and fails the test if it does not finish
/// within `limit` (a deadlock detector).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not finish within {limit:?} (deadlock?)")
        }
        Err(_) => panic!("{what} panicked"),
    }
}

/// A `cluster-node` process and its stdout lines.
pub struct Proc {
    pub child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Proc {
    /// Starts node `id` of `config` and waits until it listens.
    pub fn start(id: i64, config: &str) -> Proc {
        Proc::start_with(Command::new(env!("CARGO_BIN_EXE_cluster-node")), id, config)
    }

    /// As [`Proc::start`], through a wrapper command such as
    /// `ip netns exec NS`, which gets the binary as its first argument.
    pub fn start_with(mut cmd: Command, id: i64, config: &str) -> Proc {
        if cmd.get_program() != env!("CARGO_BIN_EXE_cluster-node") {
            cmd.arg(env!("CARGO_BIN_EXE_cluster-node"));
        }
        let (child, stdin, lines) = spawn_lines(cmd.arg(id.to_string()).arg(config));
        let mut p = Proc {
            child,
            stdin,
            lines,
        };
        let ready = p.answer();
        assert_eq!(ready["ready"], true, "node {id} started: {ready}");
        p
    }

    /// The next JSON line it prints.
    pub fn answer(&mut self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .expect("cluster-node answers within 20 s");
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// Sends a command line; its answer.
    pub fn cmd(&mut self, line: &str) -> serde_json::Value {
        use std::io::Write;
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
        self.answer()
    }

    /// Sends a command that must succeed; its answer.
    pub fn ok(&mut self, line: &str) -> serde_json::Value {
        let v = self.cmd(line);
        assert_eq!(v["ok"], true, "{line}: {v}");
        v
    }

    /// A stat by JSON pointer.
    pub fn stat(&mut self, pointer: &str) -> u64 {
        self.ok("stats")["stats"]
            .pointer(pointer)
            .and_then(serde_json::Value::as_u64)
            .unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
