//! The chaos soak: five real node processes under random faults, and an
//! exact reckoning of every message at the end.
//!
//! `cluster-soak run [--seconds N] [--seed S] [--secret]` starts five worker processes
//! (`cluster-soak node ID CONFIG INCARNATION`) on free loopback ports. Each
//! worker sends checksummed, numbered messages to its peers and logs every
//! send and every receipt on stdout. The driver meanwhile kills workers with
//! SIGKILL and restarts them on the same address, partitions and heals the
//! cluster through the fault controls, turns on drops and delays, and slows
//! consumers down. At the end it heals everything, lets the traffic drain,
//! and checks:
//! - no message corrupted and none delivered twice;
//! - per-pair FIFO among messages sent without an injected delay;
//! - for every worker that ended normally, per peer: every send attempt is
//!   acknowledged by the peer or counted as dropped with a cause
//!   (fault, queue_full, conn_lost, closed), exactly;
//! - what a peer acknowledged was logged as delivered, except for messages
//!   held by a peer incarnation that was killed (at most its inbox each);
//!   what was logged as delivered was acknowledged, or counted as lost with
//!   a broken connection (possibly delivered: the peer died before its ack).
//!
//! With `--secret` the cluster has a shared secret (every frame and ack
//! encrypted), which the workers read through `SecretEnv`, and no worker
//! may count a record that failed to verify (`auth_failed`).
//!
//! The last line is `soak: N passed, M failed`; the exit code is 0 only if
//! every check passed.

use cluster::fault::{FaultCmd, CUT_OUT};
use cluster::{Envelope, Node, Status};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NODES: i64 = 5;
const INBOX: u64 = 200;
/// The variable a `--secret` soak's workers read the secret from.
const SECRET_ENV: &str = "CLUSTER_SOAK_SECRET";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("node") if args.len() == 4 => worker(&args[1], &args[2], &args[3]),
        Some("run") => driver(&args[1..]),
        _ => {
            eprintln!("usage: cluster-soak run [--seconds N] [--seed S] [--secret]");
            2
        }
    };
    std::process::exit(code);
}

/// FNV-1a, enough to catch a corrupted payload.
fn checksum(b: &[u8]) -> u32 {
    b.iter().fold(0x811c9dc5u32, |h, &x| {
        (h ^ x as u32).wrapping_mul(0x01000193)
    })
}

/// A tiny deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------- worker --

/// Payload: incarnation (8), seq (8), delayed flag (1), filler, checksum (4).
fn payload(inc: u64, seq: u64, delayed: bool, rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&inc.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.push(delayed as u8);
    let fill = rng.below(48) as usize;
    p.extend((0..fill).map(|_| rng.next() as u8));
    let c = checksum(&p);
    p.extend_from_slice(&c.to_le_bytes());
    p
}

/// Decodes a payload: (incarnation, seq, delayed), or None if corrupt.
fn parse(p: &[u8]) -> Option<(u64, u64, bool)> {
    if p.len() < 21 {
        return None;
    }
    let (body, sum) = p.split_at(p.len() - 4);
    if checksum(body).to_le_bytes() != sum {
        return None;
    }
    let inc = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let seq = u64::from_le_bytes(body[8..16].try_into().ok()?);
    Some((inc, seq, body[16] == 1))
}

type Out = Arc<Mutex<std::io::LineWriter<std::io::Stdout>>>;

fn say(out: &Out, line: std::fmt::Arguments) {
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = o.write_fmt(line);
    let _ = o.write_all(b"\n");
}

fn worker(id: &str, config: &str, inc: &str) -> i32 {
    let (Ok(id), Ok(inc)) = (id.parse::<i64>(), inc.parse::<u64>()) else {
        return 2;
    };
    let node = match Node::new(id, config) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("worker {id}: {e}");
            return 1;
        }
    };
    let out: Out = Arc::new(Mutex::new(std::io::LineWriter::new(std::io::stdout())));
    let sending = Arc::new(AtomicBool::new(true));
    let delayed = Arc::new(AtomicBool::new(false));
    let slow_ms = Arc::new(AtomicU64::new(0));
    say(&out, format_args!("U"));
    let sender = {
        let (node, out, sending, delayed) =
            (node.clone(), out.clone(), sending.clone(), delayed.clone());
        std::thread::spawn(move || {
            let peers = node.peers();
            let mut seq: HashMap<i64, u64> = HashMap::new();
            let mut rng = Rng(0x9e3779b97f4a7c15 ^ (id as u64) << 32 ^ inc);
            while sending.load(Ordering::Acquire) {
                let to = peers[rng.below(peers.len() as u64) as usize];
                let s = seq.entry(to).or_insert(0);
                let d = delayed.load(Ordering::Acquire);
                let p = payload(inc, *s, d, &mut rng);
                let rc = match node.send(Envelope::new(to, *s as i64, 0, &p), Some(Duration::ZERO))
                {
                    Ok(()) => 0,
                    Err(e) if e.status == Status::Closed => break,
                    Err(e) => e.status as i32,
                };
                say(&out, format_args!("S {to} {s} {rc}"));
                *s += 1;
                std::thread::sleep(Duration::from_micros(700));
            }
        })
    };
    let receiver = {
        let (node, out, slow) = (node.clone(), out.clone(), slow_ms.clone());
        std::thread::spawn(move || {
            while let Ok(e) = node.recv(None) {
                match parse(&e.data) {
                    Some((inc, seq, d)) if seq == e.msg_id as u64 => {
                        say(&out, format_args!("R {} {inc} {seq} {}", e.pid, d as u8))
                    }
                    _ => say(&out, format_args!("BAD {}", e.pid)),
                }
                let ms = slow.load(Ordering::Acquire);
                if ms > 0 {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
        })
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| w.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let r = match w.first().copied() {
            Some("cut") => node.fault(&FaultCmd::Cut {
                peers: w[1..].iter().filter_map(|v| v.parse().ok()).collect(),
                direction: CUT_OUT,
            }),
            Some("heal") => node.fault(&FaultCmd::Heal),
            Some("drop") => node.fault(&FaultCmd::Drop(num(1))),
            Some("delay") => {
                // Flagged as delayed from before the delay starts until after
                // it stops: an undelayed-looking message is never delayed.
                let on = num(1) > 0.0;
                if on {
                    delayed.store(true, Ordering::Release);
                }
                let r = FaultCmd::delay_ms(num(1) as i64).and_then(|c| node.fault(&c));
                if !on {
                    delayed.store(false, Ordering::Release);
                }
                r
            }
            Some("slow") => {
                slow_ms.store(num(1) as u64, Ordering::Release);
                Ok(())
            }
            Some("quiesce") => {
                sending.store(false, Ordering::Release);
                Ok(())
            }
            Some("stats") => {
                say(&out, format_args!("T {}", node.stats()));
                Ok(())
            }
            Some("quit") => break,
            _ => Ok(()),
        };
        if let Err(e) = r {
            eprintln!("worker {id}: {line}: {e}");
        }
    }
    sending.store(false, Ordering::Release);
    let _ = sender.join();
    node.close();
    let _ = receiver.join();
    say(&out, format_args!("F {}", node.stats()));
    0
}

// ---------------------------------------------------------------- driver --

/// Everything the workers said, keyed by (node, incarnation).
#[derive(Default)]
struct Log {
    /// (from, inc, to) -> send attempts, and of those the ones refused.
    attempts: BTreeMap<(i64, u64, i64), u64>,
    /// (from, inc, to) -> messages logged as delivered.
    delivered: HashMap<(i64, u64, i64), u64>,
    /// (from, inc, to, seq) seen, for duplicates.
    seen: HashSet<(i64, u64, i64, u64)>,
    /// (from, inc, to, to_inc) -> last undelayed seq, for FIFO.
    last: HashMap<(i64, u64, i64, u64), u64>,
    corrupt: u64,
    duplicates: u64,
    reordered: u64,
    /// (node, inc) -> latest stats (T or F line).
    stats: HashMap<(i64, u64), serde_json::Value>,
    /// incarnations that ended normally.
    finished: HashSet<(i64, u64)>,
    up: HashSet<(i64, u64)>,
}

impl Log {
    fn line(&mut self, id: i64, inc: u64, line: &str) {
        let w: Vec<&str> = line.splitn(5, ' ').collect();
        let n = |i: usize| w.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match w[0] {
            "U" => {
                self.up.insert((id, inc));
            }
            "S" => *self.attempts.entry((id, inc, n(1) as i64)).or_default() += 1,
            "R" => {
                let (from, finc, seq, delayed) = (n(1) as i64, n(2), n(3), n(4) == 1);
                if !self.seen.insert((from, finc, id, seq)) {
                    self.duplicates += 1;
                }
                *self.delivered.entry((from, finc, id)).or_default() += 1;
                if !delayed {
                    let last = self.last.entry((from, finc, id, inc)).or_insert(seq);
                    if seq < *last {
                        self.reordered += 1;
                        if self.reordered <= 5 {
                            eprintln!(
                                "soak: FIFO: {from}#{finc} -> {id}#{inc}: seq {seq} after {}",
                                *last
                            );
                        }
                    }
                    *last = seq;
                }
            }
            "BAD" => self.corrupt += 1,
            "T" | "F" => {
                if let Ok(v) = serde_json::from_str(line[2..].trim()) {
                    self.stats.insert((id, inc), v);
                }
                if w[0] == "F" {
                    self.finished.insert((id, inc));
                }
            }
            _ => {}
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    inc: u64,
}

struct Soak {
    config: String,
    log: Arc<Mutex<Log>>,
    workers: BTreeMap<i64, Option<Worker>>,
    next_inc: u64,
    /// (killed node, inc killed, time) for the reckoning.
    kills: Vec<(i64, u64)>,
    faults: BTreeMap<&'static str, u64>,
}

impl Soak {
    fn spawn(&mut self, id: i64) {
        self.next_inc += 1;
        let inc = self.next_inc;
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["node", &id.to_string(), &self.config, &inc.to_string()])
            .env(SECRET_ENV, "the soak's shared secret")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start a worker");
        let stdout = child.stdout.take().expect("piped");
        let stdin = child.stdin.take().expect("piped");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .line(id, inc, &line);
            }
        });
        self.workers.insert(id, Some(Worker { child, stdin, inc }));
        self.wait_for(&format!("worker {id} to start"), |l| {
            l.up.contains(&(id, inc))
        });
    }

    fn tell(&mut self, id: i64, cmd: &str) {
        if let Some(Some(w)) = self.workers.get_mut(&id) {
            let _ = writeln!(w.stdin, "{cmd}");
        }
    }

    fn tell_all(&mut self, cmd: &str) {
        for id in 1..=NODES {
            self.tell(id, cmd);
        }
    }

    fn kill(&mut self, id: i64) {
        if let Some(Some(mut w)) = self.workers.insert(id, None) {
            let _ = w.child.kill();
            let _ = w.child.wait();
            self.kills.push((id, w.inc));
            *self.faults.entry("kill -9").or_default() += 1;
        }
    }

    fn wait_for(&self, what: &str, f: impl Fn(&Log) -> bool) {
        let end = Instant::now() + Duration::from_secs(30);
        while !f(&self.log.lock().unwrap_or_else(|e| e.into_inner())) {
            if Instant::now() > end {
                panic!("soak: timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn inc(&self, id: i64) -> u64 {
        self.workers[&id].as_ref().map_or(0, |w| w.inc)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn driver(args: &[String]) -> i32 {
    let opt = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = opt("--seconds", 20);
    let seed = opt("--seed", 1);
    let peers: Vec<String> = (1..=NODES)
        .map(|i| format!(r#"{{"Id":{i},"Address":"127.0.0.1:{}"}}"#, free_port()))
        .collect();
    let secret = args.iter().any(|a| a == "--secret");
    let config = format!(
        r#"{{"Peers":[{}],"InboxSize":{INBOX},"OutboxSize":500,"CloseLingerMs":200,"ReconnectMaxMs":200{}}}"#,
        peers.join(","),
        if secret {
            format!(r#","SecretEnv":"{SECRET_ENV}""#)
        } else {
            String::new()
        }
    );
    let mut soak = Soak {
        config,
        log: Arc::default(),
        workers: BTreeMap::new(),
        next_inc: 0,
        kills: Vec::new(),
        faults: BTreeMap::new(),
    };
    for id in 1..=NODES {
        soak.spawn(id);
    }
    let sealed = if secret { ", with a secret" } else { "" };
    println!("soak: {NODES} node processes, {seconds} s of faults, seed {seed}{sealed}");
    let mut rng = Rng(seed.wrapping_mul(0x9e3779b97f4a7c15) | 1);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let id = 1 + rng.below(NODES as u64) as i64;
        match rng.below(6) {
            0 => {
                soak.kill(id);
                std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
                soak.spawn(id);
            }
            1 => {
                let split = 1 + rng.below(NODES as u64 - 1) as i64;
                // Each side cuts its sends to the other, so every loss is
                // counted by its sender.
                let side = |a: i64| (1..=NODES).filter(move |&b| (b <= split) != (a <= split));
                for a in 1..=NODES {
                    let others: Vec<String> = side(a).map(|b| b.to_string()).collect();
                    soak.tell(a, &format!("cut {}", others.join(" ")));
                }
                *soak.faults.entry("partition").or_default() += 1;
                std::thread::sleep(Duration::from_millis(200 + rng.below(500)));
                soak.tell_all("heal");
            }
            2 => {
                soak.tell(id, "drop 0.2");
                *soak.faults.entry("drop 20%").or_default() += 1;
                std::thread::sleep(Duration::from_millis(200 + rng.below(400)));
                soak.tell(id, "drop 0");
            }
            3 => {
                soak.tell(id, "delay 30");
                *soak.faults.entry("delay ≤30ms").or_default() += 1;
                std::thread::sleep(Duration::from_millis(200 + rng.below(400)));
                soak.tell(id, "delay 0");
            }
            4 => {
                soak.tell(id, "slow 2");
                *soak.faults.entry("slow consumer").or_default() += 1;
                std::thread::sleep(Duration::from_millis(300 + rng.below(400)));
                soak.tell(id, "slow 0");
            }
            _ => std::thread::sleep(Duration::from_millis(100 + rng.below(200))),
        }
    }
    // Calm: everything healed, senders stop, traffic drains.
    soak.tell_all("heal");
    soak.tell_all("drop 0");
    soak.tell_all("delay 0");
    soak.tell_all("slow 0");
    soak.tell_all("quiesce");
    let drained = |log: &Log, incs: &[(i64, u64)]| {
        incs.iter().all(|k| {
            log.stats.get(k).is_some_and(|s| {
                s["inbox_depth"] == 0
                    && s["peers"].as_array().is_some_and(|ps| {
                        ps.iter().all(|p| {
                            let n = |k: &str| p.pointer(k).and_then(|v| v.as_u64()).unwrap_or(0);
                            n("/queue_depth") == 0
                                && n("/written") == n("/acked") + n("/dropped/conn_lost")
                        })
                    })
            })
        })
    };
    let incs: Vec<(i64, u64)> = (1..=NODES).map(|id| (id, soak.inc(id))).collect();
    let calm_end = Instant::now() + Duration::from_secs(30);
    loop {
        soak.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stats
            .clear();
        soak.tell_all("stats");
        std::thread::sleep(Duration::from_millis(100));
        if drained(&soak.log.lock().unwrap_or_else(|e| e.into_inner()), &incs) {
            break;
        }
        if Instant::now() > calm_end {
            println!("soak: traffic did not drain in 30 s");
            let log = soak.log.lock().unwrap_or_else(|e| e.into_inner());
            for k in &incs {
                println!(
                    "  {k:?}: {}",
                    log.stats
                        .get(k)
                        .map_or("no stats".into(), |v| v.to_string())
                );
            }
            return 1;
        }
    }
    soak.tell_all("quit");
    for id in 1..=NODES {
        if let Some(Some(mut w)) = soak.workers.insert(id, None) {
            let _ = w.child.wait();
        }
    }
    soak.wait_for("final stats", |l| {
        incs.iter().all(|k| l.finished.contains(k))
    });
    reckon(&soak)
}

/// Checks everything the soak promises; prints the figures and the verdict.
fn reckon(soak: &Soak) -> i32 {
    let log = soak.log.lock().unwrap_or_else(|e| e.into_inner());
    let (mut passed, mut failed) = (0u32, 0u32);
    let mut check = |ok: bool, what: String| {
        if ok {
            passed += 1;
        } else {
            failed += 1;
            println!("FAILED: {what}");
        }
    };
    let attempts: u64 = log.attempts.values().sum();
    let delivered: u64 = log.delivered.values().sum();
    println!("soak: {attempts} messages sent, {delivered} delivered");
    println!("soak: faults injected: {:?}", soak.faults);
    check(
        log.corrupt == 0,
        format!("{} corrupted messages", log.corrupt),
    );
    check(
        log.duplicates == 0,
        format!("{} duplicates", log.duplicates),
    );
    check(
        log.reordered == 0,
        format!("{} FIFO violations", log.reordered),
    );
    let mut causes: BTreeMap<&str, u64> = BTreeMap::new();
    let mut crash_lost = 0;
    for &(id, inc) in &log.finished {
        let stats = &log.stats[&(id, inc)];
        // Kills cut records short (bad_frames), but an honest peer's record
        // never fails to verify.
        check(
            stats["auth_failed"] == 0,
            format!("{id}#{inc}: auth_failed {}", stats["auth_failed"]),
        );
        for p in stats["peers"].as_array().into_iter().flatten() {
            let n = |k: &str| p.pointer(k).and_then(|v| v.as_u64()).unwrap_or(0);
            let to = n("/id") as i64;
            let tried = log.attempts.get(&(id, inc, to)).copied().unwrap_or(0);
            let dropped: u64 = ["fault", "queue_full", "conn_lost", "closed"]
                .iter()
                .map(|c| {
                    let v = n(&format!("/dropped/{c}"));
                    *causes.entry(c).or_default() += v;
                    v
                })
                .sum();
            let acked = n("/acked");
            check(
                tried == acked + dropped,
                format!("{id}#{inc} -> {to}: {tried} sent != {acked} acked + {dropped} dropped"),
            );
            // Acknowledged but never logged: only a killed receiver may
            // lose those, at most what its inbox held. Logged but never
            // acknowledged: only frames counted as lost with a broken
            // connection ("possibly not delivered": the receiver was killed
            // between taking them in and acknowledging them).
            let got = log.delivered.get(&(id, inc, to)).copied().unwrap_or(0);
            let kills = soak.kills.iter().filter(|k| k.0 == to).count() as u64;
            let lost = acked as i64 - got as i64;
            crash_lost += lost.max(0) as u64;
            check(
                got <= acked + n("/dropped/conn_lost") && lost <= (kills * (INBOX + 1)) as i64,
                format!(
                    "{id}#{inc} -> {to}: {acked} acked, {got} delivered, {kills} kills of {to}"
                ),
            );
        }
    }
    println!(
        "soak: dropped and counted by cause: {causes:?}; lost with killed receivers: {crash_lost}"
    );
    println!("soak: {passed} passed, {failed} failed");
    (failed > 0) as i32
}
