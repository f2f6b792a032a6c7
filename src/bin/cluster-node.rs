//! `cluster-node <id> <config-json-or-path>`: one real TCP node in its own
//! process, driven by line commands on stdin, answering one JSON object per
//! line on stdout. For chaos tests that span processes.
//!
//! On start it prints `{"ok":true,"ready":true,"pid":<id>}` once the node
//! listens (or `{"ok":false,...}` and exits 1). Then, one answer per command:
//!
//! | command                      | effect |
//! |------------------------------|--------|
//! | `send <to> <msg_id> <text>`  | unicast text (kind 1); the rest of the line is the text |
//! | `bcast <msg_id> <text>`      | broadcast text |
//! | `batch <to> <count> <text>`  | `count` messages of text (msg_ids 0..count) to `to` in one batch |
//! | `recv <timeout_ms>`          | `{"ok":true,"pid":..,"msg_id":..,"kind":..,"text":".."}` (text lossy UTF-8) |
//! | `cut <out\|in\|both> <ids..>` | cut this node off from the peers |
//! | `heal`                       | remove every cut |
//! | `drop <p>` / `dup <p>`       | drop / duplicate probability of sends |
//! | `delay <max_ms>`             | uniform random delay of sends |
//! | `seed <n>`                   | seed of the fault decisions |
//! | `stats`                      | `{"ok":true,"stats":{..}}` |
//! | `peers`                      | `{"ok":true,"peers":[..]}` |
//! | `quit`                       | close the node and exit 0 (so does end of input) |
//!
//! Errors answer `{"ok":false,"code":"CLUSTER_E_..","error":".."}` and the
//! process goes on.

use cluster::fault::{CUT_BOTH, CUT_IN, CUT_OUT};
use cluster::{Envelope, Error, FaultCmd, Node, Outgoing, Status, BROADCAST};
use serde_json::{json, Value};
use std::io::{BufRead, Write};

fn bad(msg: impl Into<String>) -> Error {
    Error::new(Status::InvalidArg, msg)
}

fn num<T: std::str::FromStr>(word: Option<&str>, what: &str) -> Result<T, Error> {
    let w = word.ok_or_else(|| bad(format!("missing {what}")))?;
    w.parse()
        .map_err(|_| bad(format!("{what} {w:?} is not a number")))
}

/// Runs one command line; `None` for quit.
fn run(node: &Node, line: &str) -> Option<Result<Value, Error>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
    let mut words = rest.split_whitespace();
    let ok = |v: Value| Some(Ok(v));
    let done = |r: cluster::Result<()>| Some(r.map(|()| json!({"ok": true})));
    let fault = |r: Result<FaultCmd, Error>| {
        Some(r.and_then(|c| node.fault(&c).map(|()| json!({"ok": true}))))
    };
    match cmd {
        "send" | "bcast" => {
            let parts = if cmd == "send" { 3 } else { 2 };
            let mut it = rest.splitn(parts, ' ');
            let to = if cmd == "send" {
                match num(it.next(), "destination id") {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                }
            } else {
                BROADCAST
            };
            let msg_id = match num(it.next(), "msg_id") {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            };
            let text = it.next().unwrap_or("");
            done(node.send(Envelope::new(to, msg_id, 1, text.as_bytes()), None))
        }
        "batch" => {
            let mut it = rest.splitn(3, ' ');
            let (to, count) = match (num(it.next(), "destination id"), num(it.next(), "count")) {
                (Ok(t), Ok(c)) => (t, c),
                (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
            };
            let data = it.next().unwrap_or("").as_bytes();
            let msgs: Vec<Outgoing> = (0..count)
                .map(|msg_id| Outgoing {
                    to,
                    msg_id,
                    kind: 1,
                    data,
                })
                .collect();
            done(node.send_copies(&msgs, None).1)
        }
        "recv" => {
            let ms: i64 = match num(words.next(), "timeout_ms") {
                Ok(m) => m,
                Err(e) => return Some(Err(e)),
            };
            Some(node.recv(cluster::sync::timeout_from_ms(ms)).map(|e| {
                json!({"ok": true, "pid": e.pid, "msg_id": e.msg_id, "kind": e.kind,
                               "text": String::from_utf8_lossy(&e.data)})
            }))
        }
        "cut" => {
            let dir = match words.next() {
                Some("out") => CUT_OUT,
                Some("in") => CUT_IN,
                Some("both") => CUT_BOTH,
                other => {
                    return Some(Err(bad(format!(
                        "cut direction {other:?}: out, in or both"
                    ))))
                }
            };
            let peers: Result<Vec<i64>, Error> = words.map(|w| num(Some(w), "peer id")).collect();
            fault(peers.map(|peers| FaultCmd::Cut {
                peers,
                direction: dir,
            }))
        }
        "heal" => fault(Ok(FaultCmd::Heal)),
        "drop" => fault(num(words.next(), "probability").map(FaultCmd::Drop)),
        "dup" => fault(num(words.next(), "probability").map(FaultCmd::Duplicate)),
        "delay" => fault(num(words.next(), "max_ms").and_then(FaultCmd::delay_ms)),
        "seed" => fault(num(words.next(), "seed").map(FaultCmd::Seed)),
        "stats" => ok(json!({"ok": true, "stats": node.stats()})),
        "peers" => ok(json!({"ok": true, "peers": node.peers()})),
        "quit" => None,
        "" => Some(Err(bad("empty command"))),
        other => Some(Err(bad(format!("unknown command {other:?}")))),
    }
}

fn answer(v: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn error(e: &Error) -> Value {
    json!({"ok": false, "code": e.status.name(), "error": e.message})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        answer(json!({"ok": false, "error": "usage: cluster-node <id> <config-json-or-path>"}));
        std::process::exit(2);
    }
    let started = args[1]
        .parse::<i64>()
        .map_err(|_| bad(format!("id {:?} is not a number", args[1])))
        .and_then(|id| Node::new(id, &args[2]));
    let node = match started {
        Ok(n) => n,
        Err(e) => {
            answer(error(&e));
            std::process::exit(1);
        }
    };
    answer(json!({"ok": true, "ready": true, "pid": node.pid()}));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match run(&node, &line) {
            Some(Ok(v)) => answer(v),
            Some(Err(e)) => answer(error(&e)),
            None => break,
        }
    }
    node.close();
}
