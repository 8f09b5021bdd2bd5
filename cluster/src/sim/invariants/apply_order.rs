//! Invariant 6: every member applies the same entries in the same order. Each callback the
//! service container gets is compared, by log position, against a global record: same content
//! at the same position, strictly increasing positions, only committed entries, and no entry
//! that another member applied in the same stretch of log is skipped.

use std::collections::BTreeMap;

use crate::sim::app::{Applied, START_MARKER};
use crate::sim::invariants::committed_stable::CommittedLog;
use crate::sim::invariants::{Check, Violation};

/// Property name.
pub const PROPERTY: &str = "same-apply-order";

#[derive(Debug, Clone, Copy)]
struct Record {
    hash: u64,
    /// Where the recording member's incarnation started applying.
    recorder_start: u64,
    recorder: usize,
}

/// The checker.
#[derive(Debug, Default)]
pub struct ApplyOrder {
    global: BTreeMap<u64, Record>,
    last: Vec<u64>,
    start: Vec<u64>,
    /// Callbacks checked (stats).
    pub checked: u64,
}

impl ApplyOrder {
    /// For `members` members.
    pub fn new(members: usize) -> Self {
        Self {
            global: BTreeMap::new(),
            last: vec![0; members],
            start: vec![0; members],
            checked: 0,
        }
    }

    /// Member `i`'s service (re)started at `position` (restart or snapshot install).
    pub fn started(&mut self, i: usize, position: u64) {
        self.last[i] = position;
        self.start[i] = position;
    }

    /// Checks what member `i` applied in one step.
    pub fn check(&mut self, i: usize, applied: &[Applied], committed: &CommittedLog) -> Check {
        for a in applied {
            let p = a.position;
            if a.hash == START_MARKER {
                self.started(i, p);
                continue;
            }
            self.checked += 1;
            if p <= self.last[i] {
                return Err(Violation::new(
                    PROPERTY,
                    format!(
                        "member {i} applied the entry ending at {p} after one ending at {}",
                        self.last[i]
                    ),
                ));
            }
            if !committed.frames.contains_key(&p) {
                return Err(Violation::new(
                    PROPERTY,
                    format!("member {i} applied the entry ending at {p}, which is not committed"),
                ));
            }
            if let Some((&q, r)) = self.global.range(self.last[i] + 1..p).next() {
                return Err(Violation::new(
                    PROPERTY,
                    format!(
                        "member {i} skipped the entry ending at {q} that member {} applied",
                        r.recorder
                    ),
                ));
            }
            match self.global.get(&p) {
                Some(r) if r.hash != a.hash => {
                    return Err(Violation::new(
                        PROPERTY,
                        format!(
                            "members {i} and {} applied different entries at {p}",
                            r.recorder
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    if let Some((&q, r)) = self.global.range(p + 1..).next()
                        && r.recorder_start < p
                    {
                        return Err(Violation::new(
                            PROPERTY,
                            format!(
                                "member {i} applied an entry at {p} that member {} passed over \
                                     (it applied {q} next)",
                                r.recorder
                            ),
                        ));
                    }
                    self.global.insert(
                        p,
                        Record {
                            hash: a.hash,
                            recorder_start: self.start[i],
                            recorder: i,
                        },
                    );
                }
            }
            self.last[i] = p;
        }
        Ok(())
    }
}
