//! Invariant 2: log matching. If two logs hold a frame ending at the same position with the
//! same term, all earlier frames are identical.
//!
//! Each member's log is mirrored as a list of frames with a *chain hash* (the hash of the
//! frame's bytes chained onto the previous frame's chain hash), so "all earlier frames are
//! identical" is "the chain hashes are equal". The checker remembers the chain hash of every
//! (end position, term) ever seen in any member's log, so it also holds across time (in Raft a
//! (position, term) pair names one entry and one prefix forever).

use std::collections::HashMap;

use crate::consensus::{LogPosition, LogStore, MemLog};

use crate::sim::invariants::{Check, Violation};
use crate::sim::trace::{FNV_OFFSET, fnv_u64, fnv1a};

/// Property name.
pub const PROPERTY: &str = "log-matching";

/// One mirrored frame.
#[derive(Debug, Clone, Copy)]
pub struct MirrorFrame {
    /// Start position.
    pub start: u64,
    /// End position.
    pub end: u64,
    /// Term.
    pub term: u64,
    /// Hash of the frame's bytes.
    pub hash: u64,
    /// Chain hash (`None` when the mirror's base is unknown).
    pub chain: Option<u64>,
    /// Cluster timestamp.
    pub timestamp: i64,
}

/// A member's mirrored log.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    base_end: u64,
    base_chain: Option<u64>,
    /// The frames after the base.
    pub frames: Vec<MirrorFrame>,
}

impl Mirror {
    fn end(&self) -> u64 {
        self.frames.last().map_or(self.base_end, |f| f.end)
    }

    fn chain_end(&self) -> Option<u64> {
        self.frames.last().map_or(self.base_chain, |f| f.chain)
    }

    /// The frame ending at `end`.
    pub fn frame_ending_at(&self, end: u64) -> Option<&MirrorFrame> {
        let i = self.frames.partition_point(|f| f.end < end);
        self.frames.get(i).filter(|f| f.end == end)
    }

    /// The chain hash at `end` (the base counts).
    pub fn chain_at(&self, end: u64) -> Option<u64> {
        if end == self.base_end {
            return self.base_chain;
        }
        self.frame_ending_at(end).and_then(|f| f.chain)
    }
}

/// The checker.
#[derive(Debug, Default)]
pub struct LogMatching {
    seen: HashMap<(u64, u64), u64>,
    /// One mirror per member.
    pub mirrors: Vec<Mirror>,
}

/// Hash of one frame's raw bytes.
pub fn frame_hash(raw: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, raw)
}

impl LogMatching {
    /// A checker for `members` members, all with empty logs.
    pub fn new(members: usize) -> Self {
        Self {
            seen: HashMap::new(),
            mirrors: vec![
                Mirror {
                    base_end: 0,
                    base_chain: Some(FNV_OFFSET),
                    frames: Vec::new(),
                };
                members
            ],
        }
    }

    /// Member `i`'s log was replaced (restart, snapshot install): it is mirrored from its start,
    /// whose chain hash (`base_chain`) is known from the committed log, or not.
    pub fn rebase(&mut self, i: usize, log: &MemLog, base_chain: Option<u64>) {
        let start = log.start().0;
        let chain = if start.0 == 0 {
            Some(FNV_OFFSET)
        } else {
            base_chain
        };
        self.mirrors[i] = Mirror {
            base_end: start.0,
            base_chain: chain,
            frames: Vec::new(),
        };
    }

    /// Brings member `i`'s mirror up to date after a step in which its log was truncated at
    /// `cut` (if any), and checks every new frame.
    pub fn sync(&mut self, i: usize, log: &MemLog, cut: Option<LogPosition>) -> Check {
        let m = &mut self.mirrors[i];
        let keep_to = cut.map_or(log.end().0, |c| c.0.min(log.end().0));
        while m.frames.last().is_some_and(|f| f.end > keep_to) {
            m.frames.pop();
        }
        if m.end() > log.end().0 || m.end() < log.start().0.0.min(log.end().0) {
            // The log moved under the mirror without a command saying so: rebuild.
            let start = log.start().0.0;
            *m = Mirror {
                base_end: start,
                base_chain: if start == 0 { Some(FNV_OFFSET) } else { None },
                frames: Vec::new(),
            };
        }
        let mut pos = LogPosition(m.end());
        while pos < log.end() {
            let raw = log.read_run(pos, 0, 1);
            let Some(frame) = log.read(pos) else {
                return Err(Violation::new(
                    PROPERTY,
                    format!("member {i}: no frame at {pos}"),
                ));
            };
            let hash = frame_hash(raw);
            let chain = m.chain_end().map(|c| fnv_u64(c, hash));
            let end = pos.0 + raw.len() as u64;
            let term = frame.header.term.0;
            m.frames.push(MirrorFrame {
                start: pos.0,
                end,
                term,
                hash,
                chain,
                timestamp: frame.header.timestamp,
            });
            if let Some(c) = chain {
                match self.seen.get(&(end, term)) {
                    Some(&other) if other != c => {
                        return Err(Violation::new(
                            PROPERTY,
                            format!(
                                "member {i}: frame ending at {end} in term {term} follows a \
                                 different prefix than another log's frame at the same place"
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        self.seen.insert((end, term), c);
                    }
                }
            }
            pos = LogPosition(end);
        }
        Ok(())
    }
}
