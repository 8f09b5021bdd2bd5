//! The simulated disk of one member: the log store (as a [`MemLog`]: what the page cache
//! holds), the part of it that is really on disk (`durable_end`), the node state file, and
//! the snapshot files; fsync completions arrive late (slow disks) and in order.
//!
//! * `fsync = every`: each `Appended` gets its own fsync; `LogDurable` when it completes.
//! * `fsync = batch`: an `Appended` joins the fsync still queued (group commit).
//! * `fsync = none`: `LogDurable` at once; the bytes reach the disk only when the simulated
//!   page cache writes back (every few tens of milliseconds), so a machine crash loses them.
//!
//! The node state file is written and fsynced whatever the policy (DESIGN §4); snapshot files
//! are durable when taken or installed (written to a temporary name, fsynced, renamed).
//!
//! A **process crash** keeps everything (page cache survives); the runtime's recovery then
//! fsyncs what it found. A **machine crash** keeps the durable prefix, possibly some later
//! whole frames that happened to be written back, and may tear the write after them (recovery
//! finds a bad checksum there and truncates, which is what is modelled).

use std::collections::VecDeque;
use std::sync::Arc;

use crate::consensus::{Input, LogPosition, LogStore, MemLog, NodeState, Snapshot};

use crate::sim::rng::SimRng;

/// The log's fsync policy (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Durable when the OS writes back.
    None,
    /// Group commit.
    Batch,
    /// One fsync per write.
    Every,
}

impl FsyncPolicy {
    /// Its name, as in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Batch => "batch",
            Self::Every => "every",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum DiskOp {
    LogSync { to: LogPosition, epoch: u64 },
    State { id: u64, state: NodeState },
}

/// Snapshot files kept per member (the newest two valid ones are what retention promises;
/// one more so that invalidating the newest still leaves two).
pub const SNAPSHOTS_KEPT: usize = 3;

/// One member's disk.
#[derive(Debug)]
pub struct Disk {
    /// Log fsync policy.
    pub policy: FsyncPolicy,
    /// The log while the member is down (while it is up, its core holds it).
    pub log: Option<MemLog>,
    /// The node state file (`None`: new or wiped directory).
    pub node_state: Option<NodeState>,
    /// Snapshot files, oldest first.
    pub snapshots: Vec<Arc<Snapshot>>,
    /// How far the log is really on disk.
    pub durable_end: LogPosition,
    /// The core's truncation epoch, as last seen.
    pub epoch: u64,
    pending: VecDeque<(i64, DiskOp)>,
    /// Fsync latency range.
    pub latency_ns: (i64, i64),
    /// Until then the disk is slow (latency `slow_latency_ns`).
    pub slow_until_ns: i64,
    /// Latency while slow.
    pub slow_latency_ns: i64,
    /// Torn writes modelled at machine crashes.
    pub torn_writes: u64,
}

impl Disk {
    /// A freshly initialised member directory (node state written at cluster creation).
    pub fn new(policy: FsyncPolicy, latency_ns: (i64, i64)) -> Self {
        Self {
            policy,
            log: Some(MemLog::new()),
            node_state: Some(NodeState::default()),
            snapshots: Vec::new(),
            durable_end: LogPosition(0),
            epoch: 0,
            pending: VecDeque::new(),
            latency_ns,
            slow_until_ns: 0,
            slow_latency_ns: 0,
            torn_writes: 0,
        }
    }

    fn completion_time(&self, now_ns: i64, rng: &mut SimRng) -> i64 {
        let lat = if now_ns < self.slow_until_ns {
            self.slow_latency_ns
        } else {
            rng.range_i64(self.latency_ns.0, self.latency_ns.1)
        };
        let last = self.pending.back().map_or(i64::MIN, |p| p.0);
        last.max(now_ns + lat)
    }

    /// `Command::Appended`: returns the input to give back at once (`fsync = none`).
    pub fn appended(
        &mut self,
        now_ns: i64,
        to: LogPosition,
        epoch: u64,
        rng: &mut SimRng,
    ) -> Option<Input<'static>> {
        match self.policy {
            FsyncPolicy::None => Some(Input::LogDurable {
                position: to,
                epoch,
            }),
            FsyncPolicy::Batch => {
                if let Some((_, DiskOp::LogSync { to: t, epoch: e })) = self.pending.back_mut()
                    && *e == epoch
                    && *t <= to
                {
                    *t = to;
                    return None;
                }
                let at = self.completion_time(now_ns, rng);
                self.pending.push_back((at, DiskOp::LogSync { to, epoch }));
                None
            }
            FsyncPolicy::Every => {
                let at = self.completion_time(now_ns, rng);
                self.pending.push_back((at, DiskOp::LogSync { to, epoch }));
                None
            }
        }
    }

    /// `Command::Truncated` (the archive zeroes and syncs the discarded range).
    pub fn truncated(&mut self, position: LogPosition, epoch: u64) {
        self.durable_end = self.durable_end.min(position);
        self.epoch = epoch;
    }

    /// `Command::PersistState`.
    pub fn persist_state(&mut self, now_ns: i64, id: u64, state: NodeState, rng: &mut SimRng) {
        let at = self.completion_time(now_ns, rng);
        self.pending.push_back((at, DiskOp::State { id, state }));
    }

    /// `Command::SnapshotTaken`.
    pub fn snapshot_taken(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshots.push(snapshot);
        self.snapshots.sort_by_key(|s| s.position);
        self.snapshots.dedup_by_key(|s| s.position);
        while self.snapshots.len() > SNAPSHOTS_KEPT {
            self.snapshots.remove(0);
        }
    }

    /// `Command::SnapshotInstalled`: the log now starts (empty) at the snapshot.
    pub fn snapshot_installed(&mut self, snapshot: Arc<Snapshot>, epoch: u64) {
        self.durable_end = snapshot.position;
        self.epoch = epoch;
        self.snapshot_taken(snapshot);
    }

    /// Page-cache writeback (`fsync = none`): the log is on disk up to `end`.
    pub fn writeback(&mut self, end: LogPosition) {
        self.durable_end = end;
    }

    /// Completions due at `now_ns`, as inputs for the core, in order.
    pub fn due(&mut self, now_ns: i64, out: &mut Vec<Input<'static>>) {
        while self.pending.front().is_some_and(|p| p.0 <= now_ns) {
            let (_, op) = self.pending.pop_front().expect("checked");
            match op {
                DiskOp::LogSync { to, epoch } => {
                    if epoch == self.epoch {
                        self.durable_end = self.durable_end.max(to);
                    }
                    out.push(Input::LogDurable {
                        position: to,
                        epoch,
                    });
                }
                DiskOp::State { id, state } => {
                    self.node_state = Some(state);
                    out.push(Input::StatePersisted { id });
                }
            }
        }
    }

    /// The position of the purge retention allows: the older of the newest two snapshots.
    pub fn purge_point(&self) -> Option<LogPosition> {
        let n = self.snapshots.len();
        (n >= 2).then(|| self.snapshots[n - 2].position)
    }

    /// Operator: marks the newest snapshot invalid (as `cluster-tool invalidate-latest-snapshot`),
    /// if an older one remains.
    pub fn invalidate_latest(&mut self) -> bool {
        if self.snapshots.len() >= 2 {
            self.snapshots.pop();
            true
        } else {
            false
        }
    }

    /// The process died: the core gave its log back. The page cache keeps every write, and
    /// node-state writes already issued; recovery will fsync the log.
    pub fn process_crash(&mut self, log: MemLog) {
        while let Some((_, op)) = self.pending.pop_front() {
            if let DiskOp::State { state, .. } = op {
                self.node_state = Some(state);
            }
        }
        self.durable_end = log.end();
        self.log = Some(log);
    }

    /// The machine died: only what was durable survives (plus, by chance, some later whole
    /// frames, and a torn one after them that recovery discards).
    pub fn machine_crash(&mut self, log: MemLog, rng: &mut SimRng) {
        self.pending.clear();
        let (start, start_term) = log.start();
        let mut keep = self.durable_end.max(start).min(log.end());
        if self.policy != FsyncPolicy::Every && rng.chance(0.5) {
            // Some unsynced frames were written back before the power went.
            let extra = rng.below(8);
            for _ in 0..extra {
                match log.read(keep) {
                    Some(f) => keep = LogPosition(keep.0 + f.len_aligned as u64),
                    None => break,
                }
            }
        }
        if keep < log.end() && rng.chance(0.3) {
            self.torn_writes += 1;
        }
        let mut fresh = MemLog::new();
        if start.0 > 0 || start_term.0 > 0 {
            fresh.reset(start, start_term);
        }
        let mut pos = start;
        while pos < keep {
            let raw = log.read_run(pos, 0, 1);
            assert!(!raw.is_empty(), "frame boundary expected at {pos}");
            fresh.append_raw(raw);
            pos = LogPosition(pos.0 + raw.len() as u64);
        }
        assert_eq!(pos, keep, "durable end {keep} is not a frame boundary");
        self.durable_end = keep;
        self.log = Some(fresh);
    }

    /// The directory was wiped.
    pub fn wipe(&mut self) {
        self.pending.clear();
        self.log = Some(MemLog::new());
        self.node_state = None;
        self.snapshots.clear();
        self.durable_end = LogPosition(0);
    }

    /// Recovery's snapshot choice: the newest valid one.
    pub fn newest_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshots.last().cloned()
    }
}
