//! A partition-and-heal run of five mock servers on the virtual clock,
//! printed as its trace (JSON lines): the scenario of the README's
//! picture and of the determinism tests.
//!
//! ```sh
//! cargo run --example partition_heal -- 7 1 | cargo run --bin cluster-trace > run.svg
//! ```
//!
//! Arguments: the seed (default 7) and the rounds of broadcasts per phase
//! (default 1). The same arguments print the same trace, byte for byte.

use cluster::{Clock, Envelope, FaultCmd, MockCluster, Result, BROADCAST};
use std::time::Duration;

/// Runs the scenario and returns its trace. Five servers, each sending
/// with a random delay of up to 1 s and server 3 losing 10% of what it
/// sends; server 5 duplicates 20%. Three phases of `rounds` broadcasts by
/// every server, one virtual second apart: all together; split into
/// {1, 2} | {3, 4, 5}, with the link 3 -> 5 held; healed, the held link
/// released. Everything is received without waiting, on one thread.
pub fn scenario(seed: u64, rounds: i64) -> Result<String> {
    let mock = MockCluster::new(None, seed)?;
    mock.set_clock(Clock::Virtual)?;
    mock.trace(true);
    let nodes = (1..=5)
        .map(|id| mock.add_server(id))
        .collect::<Result<Vec<_>>>()?;
    for n in &nodes {
        n.fault(&FaultCmd::Delay(Duration::from_secs(1)))?;
    }
    nodes[2].fault(&FaultCmd::Drop(0.1))?;
    nodes[4].fault(&FaultCmd::Duplicate(0.2))?;
    let mut msg_id = 0;
    let mut phase = |what: &str| -> Result<()> {
        for _ in 0..rounds {
            for n in &nodes {
                msg_id += 1;
                let text = format!("{what} {msg_id} from {}", n.pid());
                n.send(Envelope::new(BROADCAST, msg_id, 1, text.as_bytes()), None)?;
            }
        }
        mock.advance(Duration::from_secs(1))?;
        for n in &nodes {
            while n.recv(Some(Duration::ZERO)).is_ok() {}
        }
        Ok(())
    };
    phase("together")?;
    mock.partition(&[vec![1, 2], vec![3, 4, 5]])?;
    mock.hold(3, 5)?;
    phase("split")?;
    mock.heal()?;
    mock.release(3, 5, false)?;
    phase("healed")?;
    mock.run_until_idle()?;
    let trace = mock.take_trace();
    mock.close();
    Ok(trace)
}

#[allow(dead_code)] // the tests include this file for `scenario`
fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args
        .next()
        .map_or(7, |s| s.parse().expect("seed: a number"));
    let rounds = args
        .next()
        .map_or(1, |s| s.parse().expect("rounds: a number"));
    match scenario(seed, rounds) {
        Ok(trace) => print!("{trace}"),
        Err(e) => {
            eprintln!("partition_heal: {e}");
            std::process::exit(1);
        }
    }
}
