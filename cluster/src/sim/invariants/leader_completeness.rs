//! Invariant 3: leader completeness. Every committed entry (of a term up to T) is in the log
//! of every leader of term T. Checked whenever a leader is seen and the committed log grew or
//! the leader is new, by comparing chain hashes (so the whole prefix is compared at once).

use crate::sim::invariants::committed_stable::CommittedLog;
use crate::sim::invariants::log_matching::Mirror;
use crate::sim::invariants::{Check, Violation};

/// Property name.
pub const PROPERTY: &str = "leader-completeness";

/// What was already checked per member: (term, committed end).
#[derive(Debug, Default)]
pub struct LeaderCompleteness {
    checked: Vec<(u64, u64)>,
}

impl LeaderCompleteness {
    /// For `members` members.
    pub fn new(members: usize) -> Self {
        Self {
            checked: vec![(u64::MAX, 0); members],
        }
    }

    /// Member `i` leads `term` with log start `log_start` and mirror `mirror`.
    pub fn check(
        &mut self,
        i: usize,
        term: u64,
        log_start: u64,
        mirror: &Mirror,
        committed: &CommittedLog,
    ) -> Check {
        let key = (term, committed.end());
        if self.checked[i] == key {
            return Ok(());
        }
        self.checked[i] = key;
        // The newest committed frame of a term <= the leader's (terms never decrease along the log).
        let Some((_, f)) = committed.frames.iter().rev().find(|(_, f)| f.term <= term) else {
            return Ok(());
        };
        if f.end <= log_start {
            return Ok(()); // covered by the leader's snapshot
        }
        let ok = match mirror.frame_ending_at(f.end) {
            Some(m) => match (m.chain, f.chain) {
                (Some(a), Some(b)) => a == b,
                _ => m.hash == f.hash,
            },
            None => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Violation::new(
                PROPERTY,
                format!(
                    "member {i} leads term {term} but lacks the committed frame ending at {} (term {})",
                    f.end, f.term
                ),
            ))
        }
    }
}
