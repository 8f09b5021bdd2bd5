//! Invariant 1: at most one leader per term (over the whole run, not only at one instant).

use std::collections::BTreeMap;

use crate::sim::invariants::{Check, Violation};

/// Property name.
pub const PROPERTY: &str = "single-leader-per-term";

/// Every (term, leader) ever seen.
#[derive(Debug, Default)]
pub struct SingleLeader {
    leaders: BTreeMap<u64, u32>,
}

impl SingleLeader {
    /// Member `member` is leader in `term` now.
    pub fn observe(&mut self, term: u64, member: u32) -> Check {
        match self.leaders.insert(term, member) {
            Some(other) if other != member => Err(Violation::new(
                PROPERTY,
                format!("members {other} and {member} both led term {term}"),
            )),
            _ => Ok(()),
        }
    }

    /// Terms that had a leader.
    pub fn terms_led(&self) -> usize {
        self.leaders.len()
    }
}
