//! Invariant 4: committed entries never change. Every (end position -> frame hash, chain hash)
//! any member ever reported as committed is kept; a member's committed frames must match it (a
//! frame ending where none ended before must not overlap a committed one), its commit position
//! never goes back within one incarnation, and never passes its log's end.

use std::collections::BTreeMap;

use crate::consensus::{Consensus, LogStore, MemLog};

use crate::sim::invariants::log_matching::{Mirror, MirrorFrame};
use crate::sim::invariants::{Check, Violation, cluster_time};

/// Property name.
pub const PROPERTY: &str = "committed-entries-never-change";

/// The committed log as observed so far, keyed by frame end.
#[derive(Debug, Default)]
pub struct CommittedLog {
    /// end position -> frame.
    pub frames: BTreeMap<u64, MirrorFrame>,
    /// Per member: the commit position already checked in this incarnation.
    pub seen: Vec<u64>,
}

impl CommittedLog {
    /// For `members` members.
    pub fn new(members: usize) -> Self {
        Self {
            frames: BTreeMap::new(),
            seen: vec![0; members],
        }
    }

    /// The chain hash of the committed frame ending at `end`, if known.
    pub fn chain_at(&self, end: u64) -> Option<u64> {
        self.frames.get(&end).and_then(|f| f.chain)
    }

    /// The highest committed end.
    pub fn end(&self) -> u64 {
        self.frames.last_key_value().map_or(0, |(e, _)| *e)
    }

    /// Member `i` restarted (or installed a snapshot) at `position`: its commit starts there.
    pub fn restart(&mut self, i: usize, position: u64) {
        self.seen[i] = position;
    }

    /// Records the frames member `i` newly committed (read from its mirror) and checks them.
    pub fn sync(&mut self, i: usize, core: &Consensus<MemLog>, mirror: &Mirror) -> Check {
        let commit = core.commit_position().0;
        let end = core.log_end().0;
        if commit < self.seen[i] {
            return Err(Violation::new(
                PROPERTY,
                format!(
                    "member {i}: commit position went back from {} to {commit}",
                    self.seen[i]
                ),
            ));
        }
        if commit > end && commit > core.log().start().0.0 {
            return Err(Violation::new(
                PROPERTY,
                format!(
                    "member {i}: commit position {commit} beyond its log end {end} (committed frames lost)"
                ),
            ));
        }
        let from = self.seen[i].max(core.log().start().0.0);
        self.seen[i] = commit;
        let first = mirror.frames.partition_point(|f| f.start < from);
        for f in mirror.frames[first..]
            .iter()
            .take_while(|f| f.end <= commit)
        {
            self.record(i, *f)?;
        }
        Ok(())
    }

    fn record(&mut self, i: usize, f: MirrorFrame) -> Check {
        if let Some(old) = self.frames.get(&f.end) {
            let chain_differs = matches!((old.chain, f.chain), (Some(a), Some(b)) if a != b);
            if old.hash != f.hash || old.start != f.start || chain_differs {
                return Err(Violation::new(
                    PROPERTY,
                    format!(
                        "member {i}: committed frame ending at {} (term {}) differs from the one \
                         committed before (term {})",
                        f.end, f.term, old.term
                    ),
                ));
            }
            return Ok(());
        }
        // Committed frames tile one history: a new one may not overlap one committed before
        // (which would then end elsewhere inside or after it).
        if let Some((_, old)) = self.frames.range(f.start + 1..).next()
            && old.start < f.end
        {
            return Err(Violation::new(
                PROPERTY,
                format!(
                    "member {i}: committed frame {}..{} (term {}) overlaps the frame {}..{} \
                     (term {}) committed before",
                    f.start, f.end, f.term, old.start, old.end, old.term
                ),
            ));
        }
        cluster_time::check_insert(&self.frames, &f)?;
        self.frames.insert(f.end, f);
        Ok(())
    }
}
