//! Deliberate bugs, to show that the simulator's checks are not vacuous.
//!
//! [`BugFlags`] always exists (so configurations compile the same everywhere) but a flag is
//! **honoured only when the crate is built with `cfg(test)` or the cargo feature `bugs`**; in
//! any other build every flag reads as off, and the code paths compile away. To switch one on
//! from another crate's tests (the simulator):
//!
//! ```toml
//! [dev-dependencies]
//! tandem-cluster = { workspace = true, features = ["bugs"] }
//! ```
//!
//! then set the field in [`crate::consensus::Config::bugs`], e.g.
//! `config.bugs.vote_twice_in_term = true`.
//!
//! | flag | what the member then does wrong |
//! |------|----------------------------------|
//! | `vote_twice_in_term` | grants a vote to any up-to-date candidate, even after voting for another in the same term |
//! | `commit_without_majority` | a leader commits its own append position without waiting for a majority |
//! | `skip_prev_term_check` | a follower accepts an append whose (previous position, previous term) does not match its log |
//! | `ack_beyond_match` | a follower acknowledges (and commits up to) its whole log, not the end of the last append it matched |
//! | `replay_past_commit_bound` | recovery replays (applies) the whole log, not only up to the commit lower bound |
//! | `wiped_member_votes` | a member started from a new or wiped directory votes at once instead of staying a learner |
//! | `truncate_below_commit` | a follower truncates at the first overlapping frame of any append, without the commit-position assertion: duplicated or reordered appends shorten its log, even below its commit |
//! | `apply_duplicates` | a client message whose sequence was already applied is applied again |

/// Which deliberate bugs are switched on. All off by default. See the module docs for how to
/// enable them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BugFlags {
    /// Vote for a second candidate in the same term.
    pub vote_twice_in_term: bool,
    /// Leader commits without a majority.
    pub commit_without_majority: bool,
    /// Follower skips the previous-term check of an append.
    pub skip_prev_term_check: bool,
    /// Follower acknowledges beyond its matched position.
    pub ack_beyond_match: bool,
    /// Recovery replays past the commit lower bound.
    pub replay_past_commit_bound: bool,
    /// A wiped member votes (is not a learner).
    pub wiped_member_votes: bool,
    /// Truncation below the commit position is allowed (and happens on duplicated appends).
    pub truncate_below_commit: bool,
    /// Duplicate client messages are applied again.
    pub apply_duplicates: bool,
}

impl BugFlags {
    /// Whether any flag is honoured in this build.
    pub const HONOURED: bool = cfg!(any(test, feature = "bugs"));

    /// The flags as this build honours them: all off unless built with `cfg(test)` or the
    /// `bugs` feature.
    #[inline(always)]
    pub fn effective(self) -> Self {
        if Self::HONOURED {
            self
        } else {
            Self::default()
        }
    }
}
