//! Three nodes on three hosts: network namespaces joined by a bridge, each
//! node a real process at its own address. A link goes down, messages to the
//! cut host are dropped and counted, the link comes back, the nodes reconnect
//! by themselves and deliver again; a peer behind a cut link is marked down
//! within the peer timeout, whether the link was idle or busy. Needs root and `ip` (iproute2); where
//! namespaces cannot be made the test says so loudly and passes.

mod common;
use common::{expect_line, spawn_lines, wait_until, Proc};
use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

struct Net {
    tag: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Net {
    fn ns(&self, x: &str) -> String {
        format!("{}{x}", self.tag)
    }

    /// A hub namespace with a bridge, and hosts a, b, c on 10.213.x.1..3.
    fn build() -> Option<Net> {
        static NETS: AtomicUsize = AtomicUsize::new(0);
        let net = Net {
            tag: format!(
                "cl{}n{}",
                std::process::id(),
                NETS.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let hub = net.ns("h");
        if !ip(&["netns", "add", &hub]) {
            return None;
        }
        let ok = ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &hub, "link", "set", "br0", "up"])
            && ["a", "b", "c"].iter().enumerate().all(|(i, x)| {
                let host = net.ns(x);
                let port = format!("v{x}");
                let addr = format!("10.213.7.{}/24", i + 1);
                ip(&["netns", "add", &host])
                    && ip(&[
                        "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                        "netns", &host,
                    ])
                    && ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])
                    && ip(&["-n", &host, "addr", "add", &addr, "dev", "eth0"])
                    && ip(&["-n", &host, "link", "set", "eth0", "up"])
                    && ip(&["-n", &host, "link", "set", "lo", "up"])
            });
        ok.then_some(net)
    }

    fn link(&self, x: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        assert!(ip(&[
            "-n",
            &self.ns("h"),
            "link",
            "set",
            &format!("v{x}"),
            state
        ]));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for x in ["a", "b", "c", "h"] {
            ip(&["netns", "del", &self.ns(x)]);
        }
    }
}

/// A node process in a namespace: the soak worker, which sends to random
/// peers and logs what it gets.
struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Host {
    fn start(net: &Net, x: &str, id: i64, config: &str) -> Host {
        let (child, stdin, lines) = spawn_lines(
            Command::new("ip")
                .args(["netns", "exec", &net.ns(x)])
                .arg(env!("CARGO_BIN_EXE_cluster-soak"))
                .args(["node", &id.to_string(), config, "1"]),
        );
        Host {
            child,
            stdin,
            lines,
        }
    }

    /// Waits (ten seconds at most) for a line matching `f`.
    fn expect(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        expect_line(&self.lines, what, f)
    }

    fn stats(&mut self) -> serde_json::Value {
        writeln!(self.stdin, "stats").unwrap();
        let l = self.expect("stats", |l| l.starts_with("T "));
        serde_json::from_str(&l[2..]).unwrap()
    }

    /// Drops what was logged so far.
    fn forget(&self) {
        while self.lines.try_recv().is_ok() {}
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

#[test]
fn three_hosts_survive_a_cut_link() {
    let Some(net) = Net::build() else {
        println!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let config = r#"{"Peers":[{"Id":1,"Address":"10.213.7.1:7000"},{"Id":2,"Address":"10.213.7.2:7000"},{"Id":3,"Address":"10.213.7.3:7000"}],"OutboxSize":100,"ReconnectMaxMs":200}"#;
    let a = Host::start(&net, "a", 1, config);
    let b = Host::start(&net, "b", 2, config);
    let mut c = Host::start(&net, "c", 3, config);
    a.expect("1 hears from 3", |l| l.starts_with("R 3 "));
    c.expect("3 hears from 1", |l| l.starts_with("R 1 "));
    b.expect("2 hears from 3", |l| l.starts_with("R 3 "));

    // Host c is cut off: a and b keep talking, and what a sends to c piles up
    // in its bounded queue, then is dropped and counted.
    net.link("c", false);
    let mut a = a;
    let mut dropped = 0;
    let end = Instant::now() + Duration::from_secs(20);
    while dropped == 0 {
        assert!(Instant::now() < end, "no drop counted for the cut host");
        std::thread::sleep(Duration::from_millis(100));
        let p = &a.stats()["peers"][1];
        assert_eq!(p["id"], 3);
        dropped = p["dropped"]["queue_full"].as_u64().unwrap()
            + p["dropped"]["conn_lost"].as_u64().unwrap();
    }
    b.forget();
    b.expect("2 still hears from 1", |l| l.starts_with("R 1 "));

    // The link comes back: the nodes reconnect by themselves.
    net.link("c", true);
    c.forget();
    c.expect("3 hears from 1 again", |l| l.starts_with("R 1 "));
    a.forget();
    a.expect("1 hears from 3 again", |l| l.starts_with("R 3 "));
    let st = c.stats();
    assert_eq!(st["bad_frames"], 0);
}

#[test]
fn a_cut_link_marks_the_peer_down_on_idle_and_busy_links() {
    let Some(net) = Net::build() else {
        println!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let config = r#"{"Peers":[{"Id":1,"Address":"10.213.7.1:7000"},{"Id":2,"Address":"10.213.7.2:7000"},{"Id":3,"Address":"10.213.7.3:7000"}],"PeerTimeoutMs":1000}"#;
    let host = |x: &str, id: i64| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.ns(x)]);
        Proc::start_with(cmd, id, config)
    };
    let (mut a, mut b, mut c) = (host("a", 1), host("b", 2), host("c", 3));
    for (to, p) in [(2, &mut b), (3, &mut c)] {
        a.ok(&format!("send {to} 1 hello"));
        p.ok("recv 10000");
    }
    wait_until(Duration::from_secs(10), "both hellos acknowledged", || {
        a.stat("/peers/0/acked") == 1 && a.stat("/peers/1/acked") == 1
    });
    // Both links go quiet for good; 1 -> 2 stays idle, 1 -> 3 has data out.
    net.link("b", false);
    net.link("c", false);
    for i in 2..6 {
        a.ok(&format!("send 3 {i} into the void"));
    }
    let cut = Instant::now();
    wait_until(Duration::from_secs(15), "peers 2 and 3 marked down", || {
        let s = a.ok("stats")["stats"].clone();
        s["peers"][0]["down"] == true && s["peers"][1]["down"] == true
    });
    println!("both marked down {:?} after the cut", cut.elapsed());
}

#[test]
fn a_cut_link_marks_the_peer_down_after_a_batch_its_sender_wrote() {
    // A batch's run is written into the connection by the sending thread,
    // while the writer sleeps with everything acknowledged and no timer:
    // the writer must still watch for the run's acks and judge the peer.
    let Some(net) = Net::build() else {
        println!("SKIPPED: cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let config = r#"{"Peers":[{"Id":1,"Address":"10.213.7.1:7000"},{"Id":2,"Address":"10.213.7.2:7000"}],"PeerTimeoutMs":1000}"#;
    let host = |x: &str, id: i64| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.ns(x)]);
        Proc::start_with(cmd, id, config)
    };
    let (mut a, mut b) = (host("a", 1), host("b", 2));
    a.ok("send 2 1 hello");
    b.ok("recv 10000");
    wait_until(Duration::from_secs(10), "the hello acknowledged", || {
        a.stat("/peers/0/acked") == 1
    });
    net.link("b", false);
    a.ok("batch 2 32 into the void");
    let cut = Instant::now();
    wait_until(Duration::from_secs(15), "peer 2 marked down", || {
        a.ok("stats")["stats"]["peers"][0]["down"] == true
    });
    println!("marked down {:?} after the cut", cut.elapsed());
    assert_eq!(a.stat("/peers/0/written"), 33, "the batch went out");
}
