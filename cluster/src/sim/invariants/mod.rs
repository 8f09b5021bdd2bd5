//! The invariant checkers, one per file. Safety checks run after every step (every input a
//! core handled); linearizability, exactly-once completeness and liveness run at the end.

pub mod apply_order;
pub mod cluster_time;
pub mod committed_stable;
pub mod exactly_once;
pub mod leader_completeness;
pub mod linearizability;
pub mod liveness;
pub mod log_matching;
pub mod single_leader;

use std::fmt;

/// A property that was violated, with what showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The property's short name (stable: tests match on it).
    pub property: &'static str,
    /// What happened.
    pub detail: String,
}

impl Violation {
    /// A violation of `property`.
    pub fn new(property: &'static str, detail: impl Into<String>) -> Self {
        Self {
            property,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.property, self.detail)
    }
}

/// The result of a check.
pub type Check = Result<(), Violation>;
