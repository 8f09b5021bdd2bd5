//! The stale-suffix fault, drawn on half the seeds: it leaves a follower holding frames of an
//! older term beyond what the next leader's log shares with it, and lets the next leader's
//! heartbeats and resends reach it while that suffix is still there.
//!
//! Random faults rarely produce this: a new leader's first append carries its
//! new-leadership-term entry from where its log ends and truncates any stale suffix at once, and
//! a resend after a rejection carries frames up to the suffix and past it. So on these seeds:
//!
//! * every member sends one frame per append (and keeps a small window of unacknowledged
//!   bytes, so that a rejection sets off a few resends, not one per frame of the log): a resend
//!   from below a stale suffix then carries only frames the follower already holds;
//! * with five members or more, the fault waits for a leader `O` with a frame `f` of its term
//!   that has reached some followers but is not committed, and splits `O` and `B` (the
//!   follower with the longest log) from the others `R`. What `O` appends meanwhile (frames on
//!   their way when the split came, client requests after it) reaches `B` only. `R` elects a
//!   new leader, whose log ends after `f`; the split heals as soon as it is elected, so its
//!   first append (sent into the split) is lost, and the next message `B` gets does not match
//!   its log: `B` points the leader at its commit position, below `f`, and the first resend
//!   from there matches without reaching the stale suffix. A correct follower then
//!   acknowledges and commits no further than that resend's end; the next resends truncate
//!   the suffix.
//!
//! The fault only cuts links, chooses when, and sets the replication limits; it never changes
//! or forges a message. It draws from its own generator, so seeds without it run as before.

use tandem_service_api::Role;

use crate::consensus::{LogPosition, LogStore};
use crate::sim::network::{Endpoint, Network};
use crate::sim::rng::SimRng;
use crate::sim::trace::fnv_u64;
use crate::sim::world::Member;

/// Longest a split waits for the majority side to elect a leader.
const SPLIT_MAX_NS: i64 = 2_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Nothing until `at`.
    Idle { at: i64 },
    /// Waiting for the moment described in the module docs.
    Armed,
    /// `{old, follower}` are cut from the others, whose next leader must be of a higher term.
    Split {
        old: usize,
        follower: usize,
        term: u64,
        until: i64,
    },
    /// Healed after the new leader was elected; no other partition until `until`.
    Aftermath { until: i64 },
}

/// The fault's state for one scenario.
#[derive(Debug)]
pub struct StaleSuffix {
    rng: SimRng,
    phase: Phase,
    /// Splits made (stats).
    pub splits: u64,
    /// Splits after which the majority side elected a leader (stats).
    pub elected: u64,
}

impl StaleSuffix {
    /// Whether the scenario of `seed` has this fault, and if so the fault.
    pub fn draw(seed: u64) -> Option<Self> {
        let mut rng = SimRng::new(fnv_u64(seed, 0x57a1e));
        if !rng.chance(0.5) {
            return None;
        }
        let at = rng.range_i64(100_000_000, 600_000_000);
        Some(Self {
            rng,
            phase: Phase::Idle { at },
            splits: 0,
            elected: 0,
        })
    }

    /// Whether the fault owns the network now (no random partition may start or heal).
    pub fn holds_network(&self) -> bool {
        matches!(self.phase, Phase::Split { .. } | Phase::Aftermath { .. })
    }

    /// One step of the fault phase. `free` says no other partition is active.
    pub fn step(&mut self, now_ns: i64, members: &[Member], net: &mut Network, free: bool) {
        match self.phase {
            Phase::Idle { at } => {
                if now_ns >= at {
                    self.phase = Phase::Armed;
                }
            }
            Phase::Armed => {
                // With three members the two sides of the split would be `{O, B}` and one
                // member, which cannot elect anyone.
                if members.len() < 5 {
                    return;
                }
                if !free || !net.blocked.is_empty() {
                    return;
                }
                if let Some((old, follower, term)) = moment(members) {
                    for x in [old, follower] {
                        for y in 0..members.len() {
                            if y != old && y != follower {
                                net.cut(Endpoint::Member(x as u32), Endpoint::Member(y as u32));
                            }
                        }
                    }
                    self.splits += 1;
                    self.phase = Phase::Split {
                        old,
                        follower,
                        term,
                        until: now_ns + SPLIT_MAX_NS,
                    };
                }
            }
            Phase::Split {
                old,
                follower,
                term,
                until,
            } => {
                let elected = members.iter().enumerate().any(|(i, m)| {
                    i != old
                        && i != follower
                        && m.core
                            .as_ref()
                            .is_some_and(|c| c.role() == Role::Leader && c.term().0 > term)
                });
                if elected {
                    self.elected += 1;
                    net.heal();
                    let until = now_ns + self.rng.range_i64(200_000_000, 500_000_000);
                    self.phase = Phase::Aftermath { until };
                } else if now_ns >= until {
                    net.heal();
                    self.idle(now_ns);
                }
            }
            Phase::Aftermath { until } => {
                if now_ns >= until {
                    self.idle(now_ns);
                }
            }
        }
    }

    fn idle(&mut self, now_ns: i64) {
        let at = now_ns + self.rng.range_i64(20_000_000, 200_000_000);
        self.phase = Phase::Idle { at };
    }
}

/// The moment to split, if now: every member up and a voter, one leader `O` in the highest
/// term, `B` the follower with the longest log, and the others' longest log ending at a frame
/// of `O`'s term that `O` has not committed (what `O` holds beyond it is on its way to `B`,
/// whose link to `O` stays up). Returns (`O`, `B`, `O`'s term).
fn moment(members: &[Member]) -> Option<(usize, usize, u64)> {
    let cores: Vec<_> = members
        .iter()
        .map(|m| m.core.as_ref())
        .collect::<Option<_>>()?;
    if cores.iter().any(|c| c.is_learner()) {
        return None;
    }
    let mut leaders = cores
        .iter()
        .enumerate()
        .filter(|(_, c)| c.role() == Role::Leader);
    let (old, leader) = leaders.next()?;
    if leaders.next().is_some() {
        return None;
    }
    let term = leader.term();
    if cores.iter().any(|c| c.term() != term) {
        return None;
    }
    let (follower, _) = cores
        .iter()
        .enumerate()
        .filter(|(i, c)| *i != old && c.role() == Role::Follower)
        .max_by_key(|(i, c)| (c.log_end(), std::cmp::Reverse(*i)))?;
    let others_end: LogPosition = cores
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old && *i != follower)
        .map(|(_, c)| c.log_end())
        .max()?;
    let ok = leader.commit_position() < others_end
        && others_end <= leader.log_end()
        && leader.log().term_at(others_end) == Some(term);
    ok.then_some((old, follower, term.0))
}
