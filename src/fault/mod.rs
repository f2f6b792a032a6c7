//! The fault model shared by the mock network and real TCP nodes.
//!
//! Whether the n-th message from `a` to `b` is dropped, duplicated or
//! delayed, and by how much, is a pure function of `(seed, a, b, n)`
//! ([`decide`]), so a failing run replays the same faults. `n` counts the
//! messages from `a` to `b` that passed through the fault model since the
//! node started or its seed was last set.
//!
//! [`Faults`] holds one node's settings. When nothing is set, senders see a
//! single atomic flag and take no lock.

pub mod schedule;

use crate::config::BROADCAST;
use crate::error::{Error, Result, Status};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Cut direction: this node's messages to the peers are lost.
pub const CUT_OUT: i32 = 1;
/// Cut direction: the peers' messages to this node are lost.
pub const CUT_IN: i32 = 2;
/// Cut direction: both ways.
pub const CUT_BOTH: i32 = CUT_OUT | CUT_IN;

/// One change to a node's fault settings.
#[derive(Clone, Debug, PartialEq)]
pub enum FaultCmd {
    /// Probability in [0, 1] that a message this node sends is lost.
    Drop(f64),
    /// Maximum random delay of each message this node sends (0 = none).
    Delay(Duration),
    /// Probability in [0, 1] that a message this node sends arrives twice.
    Duplicate(f64),
    /// Cuts this node off from `peers` in `direction` (CUT_OUT, CUT_IN or
    /// CUT_BOTH); adds to the cuts already in place.
    Cut {
        /// The peers to cut.
        peers: Vec<i64>,
        /// CUT_OUT, CUT_IN or CUT_BOTH.
        direction: i32,
    },
    /// Removes every cut of this node (drop, delay and duplicate stay).
    Heal,
    /// Sets the seed of the decisions and restarts every message count.
    Seed(u64),
}

impl FaultCmd {
    /// Checks the command's values; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::new(Status::InvalidArg, m));
        match self {
            FaultCmd::Drop(p) | FaultCmd::Duplicate(p) if !(0.0..=1.0).contains(p) => {
                bad(format!("probability {p} is not in [0, 1]"))
            }
            FaultCmd::Cut { direction, .. } if !(CUT_OUT..=CUT_BOTH).contains(direction) => bad(
                format!("cut direction {direction} is not CUT_OUT (1), CUT_IN (2) or CUT_BOTH (3)"),
            ),
            FaultCmd::Cut { peers, .. } if peers.contains(&BROADCAST) => {
                bad("cannot cut BROADCAST (-1): name the peers".into())
            }
            _ => Ok(()),
        }
    }

    /// Builds a delay command from milliseconds, refusing negative values.
    pub fn delay_ms(ms: i64) -> Result<FaultCmd> {
        if ms < 0 {
            return Err(Error::new(
                Status::InvalidArg,
                format!("max delay {ms} ms is negative"),
            ));
        }
        Ok(FaultCmd::Delay(Duration::from_millis(ms as u64)))
    }
}

/// The probabilities and bound that [`decide`] draws from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Params {
    /// Drop probability.
    pub drop: f64,
    /// Duplicate probability.
    pub duplicate: f64,
    /// Maximum delay.
    pub max_delay: Duration,
}

/// The fate of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The message's number `n` on its link.
    pub seq: u64,
    /// Lost to the sender's out-cut.
    pub cut: bool,
    /// Lost to the drop probability.
    pub drop: bool,
    /// Delivered twice.
    pub duplicate: bool,
    /// Delay of the message and of its copy.
    pub delays: [Duration; 2],
}

impl Decision {
    /// The delay of each copy to deliver: one, or two when duplicated.
    pub fn copies(&self) -> &[Duration] {
        &self.delays[..1 + self.duplicate as usize]
    }
}

/// The splitmix64 finalizer: a good 64-bit mix.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One node's fault settings, locked for a run of decisions (see
/// [`Faults::decisions`]).
pub struct Decisions<'a>(std::sync::MutexGuard<'a, State>);

impl Decisions<'_> {
    /// Decides the fate of the next message from `me` to `to`, counting it.
    pub fn next(&mut self, me: i64, to: i64) -> Decision {
        let s = &mut *self.0;
        let next = s.next.entry(to).or_insert(0);
        let n = *next;
        *next += 1;
        let mut d = decide(s.seed, me, to, n, &s.params);
        d.cut = s.cut_out.contains(&to);
        d
    }

    /// Whether the messages are delayed.
    pub fn delays(&self) -> bool {
        !self.0.params.max_delay.is_zero()
    }
}

/// Hashes a peer id with [`mix`].
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ b as u64);
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.0 = mix(self.0 ^ id as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A pseudo-random 64-bit value for `(seed, a, b, n)` and a `salt` naming
/// which decision it is for.
pub fn hash(seed: u64, a: i64, b: i64, n: u64, salt: u64) -> u64 {
    mix(seed ^ mix(a as u64 ^ mix(b as u64 ^ mix(n ^ mix(salt)))))
}

/// A uniform value in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The fate of the `n`-th message from `a` to `b`: a pure function.
pub fn decide(seed: u64, a: i64, b: i64, n: u64, p: &Params) -> Decision {
    let h = |salt| hash(seed, a, b, n, salt);
    let max_us = p.max_delay.as_micros() as u64;
    let delay = |salt| {
        if max_us == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(h(salt) % (max_us + 1))
        }
    };
    Decision {
        seq: n,
        cut: false,
        drop: p.drop > 0.0 && unit(h(1)) < p.drop,
        duplicate: p.duplicate > 0.0 && unit(h(2)) < p.duplicate,
        delays: [delay(3), delay(4)],
    }
}

/// A permutation of `0..len` drawn from `seed`: Fisher-Yates over [`hash`].
pub fn shuffle<T>(items: &mut [T], seed: u64, a: i64, b: i64) {
    for i in (1..items.len()).rev() {
        let j = (hash(seed, a, b, i as u64, 5) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[derive(Debug, Default)]
struct State {
    seed: u64,
    params: Params,
    cut_out: HashSet<i64>,
    cut_in: HashSet<i64>,
    /// The number of the next message to each peer: looked up on every
    /// message, so hashed with [`mix`], not SipHash (peer ids are not
    /// chosen by an attacker).
    next: HashMap<i64, u64, BuildHasherDefault<IdHasher>>,
}

impl State {
    fn any(&self) -> bool {
        self.params != Params::default() || !self.cut_out.is_empty() || !self.cut_in.is_empty()
    }
}

/// One node's fault settings and its per-link message counts.
#[derive(Debug, Default)]
pub struct Faults {
    active: AtomicBool,
    /// Whether `state` cuts any sender off: the senders to this node look
    /// here, not under its lock, on every message.
    cutting_in: AtomicBool,
    state: Mutex<State>,
}

impl Faults {
    /// No faults, decisions drawn from `seed`.
    pub fn new(seed: u64) -> Faults {
        let f = Faults::default();
        f.lock().seed = seed;
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any fault is set; one atomic load, no lock.
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Applies a validated command.
    pub fn apply(&self, cmd: &FaultCmd) -> Result<()> {
        cmd.validate()?;
        let mut s = self.lock();
        match cmd {
            FaultCmd::Drop(p) => s.params.drop = *p,
            FaultCmd::Duplicate(p) => s.params.duplicate = *p,
            FaultCmd::Delay(d) => s.params.max_delay = *d,
            FaultCmd::Cut { peers, direction } => {
                if direction & CUT_OUT != 0 {
                    s.cut_out.extend(peers);
                }
                if direction & CUT_IN != 0 {
                    s.cut_in.extend(peers);
                }
            }
            FaultCmd::Heal => {
                s.cut_out.clear();
                s.cut_in.clear();
            }
            FaultCmd::Seed(seed) => {
                s.seed = *seed;
                s.next.clear();
            }
        }
        self.active.store(s.any(), Ordering::Release);
        self.cutting_in
            .store(!s.cut_in.is_empty(), Ordering::Release);
        Ok(())
    }

    /// Decides the fate of the next message from `me` to `to`, counting it.
    pub fn decide(&self, me: i64, to: i64) -> Decision {
        self.decisions().next(me, to)
    }

    /// The decisions of a run of messages, made under one lock. Take no
    /// other node's fault lock while holding it.
    pub fn decisions(&self) -> Decisions<'_> {
        Decisions(self.lock())
    }

    /// Whether messages from `from` to this node are lost to an in-cut.
    #[inline]
    pub fn cuts_in(&self, from: i64) -> bool {
        self.cutting_in.load(Ordering::Acquire) && self.lock().cut_in.contains(&from)
    }

    /// The seed decisions are drawn from.
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// The current settings as JSON, for the stats.
    pub fn describe(&self) -> serde_json::Value {
        let s = self.lock();
        let mut out: Vec<i64> = s.cut_out.iter().copied().collect();
        let mut inn: Vec<i64> = s.cut_in.iter().copied().collect();
        out.sort_unstable();
        inn.sort_unstable();
        serde_json::json!({
            "seed": s.seed,
            "drop": s.params.drop,
            "duplicate": s.params.duplicate,
            "max_delay_ms": s.params.max_delay.as_secs_f64() * 1000.0,
            "cut_out": out,
            "cut_in": inn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_a_pure_function() {
        let p = Params {
            drop: 0.3,
            duplicate: 0.2,
            max_delay: Duration::from_millis(100),
        };
        for n in 0..100 {
            assert_eq!(decide(7, 1, 2, n, &p), decide(7, 1, 2, n, &p));
        }
        let a: Vec<bool> = (0..64).map(|n| decide(7, 1, 2, n, &p).drop).collect();
        let b: Vec<bool> = (0..64).map(|n| decide(8, 1, 2, n, &p).drop).collect();
        let c: Vec<bool> = (0..64).map(|n| decide(7, 2, 1, n, &p).drop).collect();
        assert_ne!(a, b, "the seed matters");
        assert_ne!(a, c, "the direction matters");
    }

    #[test]
    fn rates_and_delays_follow_the_params() {
        let p = Params {
            drop: 0.3,
            duplicate: 0.1,
            max_delay: Duration::from_millis(10),
        };
        let ds: Vec<Decision> = (0..10_000).map(|n| decide(1, 3, 4, n, &p)).collect();
        let drops = ds.iter().filter(|d| d.drop).count();
        let dups = ds.iter().filter(|d| d.duplicate).count();
        // 0.3 * 10000 = 3000, sd ~ 46: six sd either way.
        assert!((2725..=3275).contains(&drops), "{drops} drops");
        assert!((820..=1180).contains(&dups), "{dups} duplicates");
        assert!(ds.iter().all(|d| d.delays[0] <= p.max_delay));
        let distinct: HashSet<Duration> = ds.iter().map(|d| d.delays[0]).collect();
        assert!(distinct.len() > 1000, "delays spread over the range");
        let none = decide(1, 3, 4, 0, &Params::default());
        assert!(!none.drop && !none.duplicate && none.delays == [Duration::ZERO; 2]);
    }

    #[test]
    fn faults_count_per_link_and_seed_restarts() {
        let f = Faults::new(9);
        assert!(!f.is_active());
        f.apply(&FaultCmd::Drop(0.5)).unwrap();
        assert!(f.is_active());
        let first: Vec<Decision> = (0..20).map(|_| f.decide(1, 2)).collect();
        assert_eq!(first[19].seq, 19);
        assert_eq!(f.decide(1, 3).seq, 0, "each link counts on its own");
        f.apply(&FaultCmd::Seed(9)).unwrap();
        let again: Vec<Decision> = (0..20).map(|_| f.decide(1, 2)).collect();
        assert_eq!(first, again);
        f.apply(&FaultCmd::Drop(0.0)).unwrap();
        assert!(!f.is_active());
    }

    #[test]
    fn cuts_and_heal() {
        let f = Faults::new(0);
        f.apply(&FaultCmd::Cut {
            peers: vec![2, 3],
            direction: CUT_OUT,
        })
        .unwrap();
        f.apply(&FaultCmd::Cut {
            peers: vec![4],
            direction: CUT_IN,
        })
        .unwrap();
        assert!(f.decide(1, 2).cut && !f.decide(1, 4).cut);
        assert!(f.cuts_in(4) && !f.cuts_in(2));
        f.apply(&FaultCmd::Heal).unwrap();
        assert!(!f.is_active() && !f.decide(1, 2).cut && !f.cuts_in(4));
    }

    #[test]
    fn bad_commands_are_refused() {
        let f = Faults::new(0);
        for cmd in [
            FaultCmd::Drop(1.5),
            FaultCmd::Drop(f64::NAN),
            FaultCmd::Duplicate(-0.1),
            FaultCmd::Cut {
                peers: vec![1],
                direction: 0,
            },
            FaultCmd::Cut {
                peers: vec![1],
                direction: 4,
            },
            FaultCmd::Cut {
                peers: vec![BROADCAST],
                direction: CUT_OUT,
            },
        ] {
            assert_eq!(f.apply(&cmd).unwrap_err().status, Status::InvalidArg);
        }
        assert!(FaultCmd::delay_ms(-1).is_err());
        assert!(!f.is_active());
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, 3, 1, 2);
        shuffle(&mut b, 3, 1, 2);
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        a.sort_unstable();
        assert_eq!(a, (0..50).collect::<Vec<_>>());
    }
}
