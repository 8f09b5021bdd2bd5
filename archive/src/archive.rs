//! One member's archive directory: the lock, node state, recording log, log
//! and snapshots together, with retention, purge and holds.
//!
//! ```text
//! <node dir>/
//!   tandem.lock          one writer per directory (pid inside)
//!   node-state.dat       term, vote, commit lower bound, cluster and member id
//!   recording.log        Term and Snapshot entries
//!   log/                 log.meta and the segment files
//!   snapshots/           snapshot files
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::dir_lock::DirLock;
use crate::error::{ArchiveError, Result};
use crate::log::{Log, LogConfig, RecoveryReport};
use crate::node_state::NodeStateFile;
use crate::recording_log::{RecordingLog, RecoveryPlan};
use crate::retention::{
    DEFAULT_RETAINED_SNAPSHOT_SETS, RetentionPlan, purge_limit, retention_plan,
};
use crate::snapshot::SnapshotStore;

/// Name of the log's subdirectory.
pub const LOG_DIR_NAME: &str = "log";

/// Configuration of an [`Archive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveConfig {
    /// The log's configuration.
    pub log: LogConfig,
    /// How many valid snapshot sets purge keeps (at least 1; default 2, so
    /// `invalidate-latest-snapshot` always has a set to fall back to).
    pub retained_snapshot_sets: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            log: LogConfig::default(),
            retained_snapshot_sets: DEFAULT_RETAINED_SNAPSHOT_SETS,
        }
    }
}

/// What [`Archive::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveRecovery {
    /// The node-state file was created now: the directory is new or was
    /// wiped, so the member must join as a non-voting learner.
    pub node_state_created: bool,
    /// The log's recovery.
    pub log: RecoveryReport,
    /// The recording log's last entry was torn and cut off.
    pub recording_log_torn_tail: bool,
}

/// What [`Archive::purge_segments`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Segment files deleted.
    pub segments_removed: usize,
    /// Snapshot files deleted.
    pub snapshots_removed: usize,
    /// Bytes of files deleted (segments and snapshots).
    pub bytes_removed: u64,
    /// The log's start position afterwards.
    pub start_position: u64,
    /// The position purge was allowed to go up to (retention, holds and the
    /// caller's limit together).
    pub limit_position: u64,
}

#[derive(Debug, Default)]
struct Holds {
    next_id: u64,
    positions: BTreeMap<u64, u64>,
}

/// Keeps purge away from everything at or above a position while it lives:
/// log segments holding positions at or above it and snapshot sets at or
/// above it. Released on drop.
#[derive(Debug)]
pub struct Hold {
    holds: Arc<Mutex<Holds>>,
    id: u64,
    position: u64,
}

impl Hold {
    /// The held position.
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.positions.remove(&self.id);
    }
}

/// One member's archive directory.
#[derive(Debug)]
pub struct Archive {
    dir: PathBuf,
    config: ArchiveConfig,
    node_state: NodeStateFile,
    recording_log: RecordingLog,
    log: Log,
    snapshots: SnapshotStore,
    holds: Arc<Mutex<Holds>>,
    // Dropped last: the lock outlives every file it guards.
    _lock: DirLock,
}

impl Archive {
    /// Opens (creating if needed) the archive in `dir` for `cluster_id` and
    /// `member_id`: takes the directory lock, loads the node state and the
    /// recording log, and recovers the log, treating the node state's commit
    /// lower bound as durable.
    ///
    /// # Errors
    /// [`ArchiveError::Locked`] when another writer holds the directory;
    /// [`ArchiveError::IdentityMismatch`] when it belongs to another member or
    /// cluster; [`ArchiveError::Corrupted`] for damaged files; I/O errors.
    pub fn open(
        dir: &Path,
        cluster_id: u64,
        member_id: u32,
        config: ArchiveConfig,
    ) -> Result<(Archive, ArchiveRecovery)> {
        if config.retained_snapshot_sets == 0 {
            return Err(ArchiveError::Config(
                "retained snapshot sets must be at least 1".into(),
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| ArchiveError::io("create node directory", dir, e))?;
        let lock = DirLock::acquire(dir)?;
        let node_state = NodeStateFile::open_or_create(dir, cluster_id, member_id)?;
        let recording_log = RecordingLog::open(dir)?;
        let durable = node_state.state().commit_position_lower_bound;
        let (log, log_report) = Log::open(&dir.join(LOG_DIR_NAME), config.log.clone(), durable)?;
        let snapshots = SnapshotStore::open(dir)?;
        let recovery = ArchiveRecovery {
            node_state_created: node_state.created(),
            log: log_report,
            recording_log_torn_tail: recording_log.torn_tail_detected(),
        };
        let archive = Archive {
            dir: dir.to_path_buf(),
            config,
            node_state,
            recording_log,
            log,
            snapshots,
            holds: Arc::default(),
            _lock: lock,
        };
        Ok((archive, recovery))
    }

    /// The node directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &ArchiveConfig {
        &self.config
    }

    /// The log.
    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The log, for appending and truncating.
    pub fn log_mut(&mut self) -> &mut Log {
        &mut self.log
    }

    /// The node state.
    pub fn node_state(&self) -> &NodeStateFile {
        &self.node_state
    }

    /// The node state, for updates.
    pub fn node_state_mut(&mut self) -> &mut NodeStateFile {
        &mut self.node_state
    }

    /// The recording log.
    pub fn recording_log(&self) -> &RecordingLog {
        &self.recording_log
    }

    /// The recording log, for appends and invalidation.
    pub fn recording_log_mut(&mut self) -> &mut RecordingLog {
        &mut self.recording_log
    }

    /// The snapshot store.
    pub fn snapshots(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// The snapshot set and log range a restart would use now.
    ///
    /// # Errors
    /// [`ArchiveError::BelowLogStart`] when the plan would need purged log.
    pub fn recovery_plan(&self) -> Result<RecoveryPlan> {
        self.recording_log
            .recovery_plan(self.log.start_position(), self.log.append_position())
    }

    /// Keeps purge away from `position` and everything above it until the
    /// returned guard is dropped (a lagging member being caught up from the
    /// log, or a snapshot being streamed to another member).
    pub fn hold(&self, position: u64) -> Hold {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let id = holds.next_id;
        holds.next_id += 1;
        holds.positions.insert(id, position);
        Hold {
            holds: Arc::clone(&self.holds),
            id,
            position,
        }
    }

    /// The lowest position held, if any hold is live.
    pub fn lowest_hold(&self) -> Option<u64> {
        let holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        holds.positions.values().copied().min()
    }

    /// What retention keeps now.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] for a retention count of 0.
    pub fn retention(&self) -> Result<RetentionPlan> {
        let positions: Vec<u64> = self
            .recording_log
            .valid_snapshot_sets()
            .iter()
            .map(|s| s.position)
            .collect();
        retention_plan(
            &positions,
            self.log.start_position(),
            self.config.retained_snapshot_sets,
        )
    }

    /// Deletes log segments lying wholly below `up_to`, the retention point
    /// (the oldest retained snapshot set) and every hold; deletes the files of
    /// snapshot sets beyond retention (and marks them invalid in the recording
    /// log first, so no plan can pick them); persists the new log start.
    ///
    /// # Errors
    /// I/O errors; the archive stays consistent whatever step fails.
    pub fn purge_segments(&mut self, up_to: u64) -> Result<PurgeReport> {
        let plan = self.retention()?;
        let lowest_hold = self.lowest_hold();
        let limit = purge_limit(up_to, plan.retain_from_position, lowest_hold.into_iter());
        let mut report = PurgeReport {
            limit_position: limit,
            ..PurgeReport::default()
        };

        // Snapshot sets beyond retention, unless held.
        let doomed: Vec<u64> = plan
            .snapshot_sets_to_delete
            .iter()
            .copied()
            .filter(|&p| p < limit && lowest_hold.is_none_or(|h| p < h))
            .collect();
        if !doomed.is_empty() {
            let indices: Vec<u64> = self
                .recording_log
                .entries()
                .iter()
                .filter(|e| {
                    e.valid
                        && e.kind == crate::recording_log::EntryKind::Snapshot
                        && doomed.contains(&e.position)
                })
                .map(|e| e.index)
                .collect();
            for index in indices {
                self.recording_log.invalidate_entry(index)?;
            }
        }
        // Snapshot files no valid set refers to, below the limit: the doomed
        // sets and older invalidated ones.
        let live: Vec<u64> = self
            .recording_log
            .valid_snapshot_sets()
            .iter()
            .map(|s| s.position)
            .collect();
        for meta in self.snapshots.list()? {
            if meta.position < limit
                && !live.contains(&meta.position)
                && lowest_hold.is_none_or(|h| meta.position < h)
                && self.snapshots.delete(meta.position, meta.service_id)?
            {
                report.snapshots_removed += 1;
                report.bytes_removed += meta.file_len_bytes;
            }
        }

        let log_purge = self.log.purge_below(limit)?;
        report.segments_removed = log_purge.segments_removed;
        report.bytes_removed += log_purge.bytes_removed;
        report.start_position = log_purge.start_position;
        Ok(report)
    }
}
