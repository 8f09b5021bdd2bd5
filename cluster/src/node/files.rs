//! The node directory: what `tandem_archive::Archive::open` opens, held as separate parts so
//! the log can live inside the consensus core (as its `LogStore`) while the runtime writes the
//! node state, recording log and snapshots.
//!
//! `Archive` owns its `Log` and offers no way to move it out, and the core gives its store
//! back only by value (`Consensus::into_log`), so the runtime opens the same files the same
//! way `Archive::open` does: directory lock, node state, recording log, log (recovered up to
//! the node state's commit lower bound), snapshot store.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::consensus::{LogPosition, MemberId, NodeState, Snapshot, Term};
use tandem_archive::{
    ArchiveConfig, CONSENSUS_MODULE_SERVICE_ID, DirLock, EntryKind, LOG_DIR_NAME, Log, LogConfig,
    NodeStateFile, RecordingLog, SnapshotStore,
};

use super::config::NodeConfig;
use super::error::{NodeError, Result};

/// The node directory's files other than the log.
#[derive(Debug)]
pub(crate) struct NodeFiles {
    pub(crate) dir: PathBuf,
    pub(crate) node_state: StatePersister,
    pub(crate) recording: RecordingLog,
    pub(crate) snapshots: SnapshotStore,
    pub(crate) retained_snapshots: usize,
    _lock: DirLock,
}

/// What opening a directory found.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) files: NodeFiles,
    pub(crate) log: Log,
    /// `None`: a new (or wiped, or never-promoted learner's) directory.
    pub(crate) node_state: Option<NodeState>,
    pub(crate) snapshot: Option<Arc<Snapshot>>,
    /// The machine may have lost log data this member acknowledged (it rebooted since the
    /// directory was last opened, under `fsync = none`), and the member has not caught up
    /// since: it must rejoin as a learner (`Consensus::rejoin_as_learner`).
    pub(crate) rejoin_as_learner: bool,
}

/// Records the kernel's boot id of the last start in the node directory.
const BOOT_ID_FILE: &str = "boot-id";
/// Present while the member must rejoin as a learner after losing unsynced data.
const REJOIN_MARKER_FILE: &str = "rejoin-as-learner";

fn current_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

fn write_durably(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let io = |e: std::io::Error| NodeError::Config(format!("cannot write {}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// Decides whether this start follows a machine crash that may have lost acknowledged log
/// data, and keeps that decision on disk until [`clear_rejoin_marker`] (a learner persists
/// nothing in its node state, so a second crash before it caught up must not make it a voter).
fn unclean_restart(dir: &Path, cfg: &NodeConfig, fresh: bool) -> Result<bool> {
    let marker = dir.join(REJOIN_MARKER_FILE);
    let boot_id = current_boot_id();
    let previous = std::fs::read_to_string(dir.join(BOOT_ID_FILE)).ok();
    let rebooted = match (&previous, &boot_id) {
        (Some(p), Some(b)) => p.trim() != b,
        // A used directory without a boot id: assume the worst.
        (None, _) => !fresh,
        (Some(_), None) => false,
    };
    if rebooted && !fresh && cfg.fsync == tandem_archive::Durability::None && !marker.exists() {
        tracing::warn!(
            dir = %dir.display(),
            "the machine restarted since this member last ran under fsync none: acknowledged \
             log data may be lost, so it rejoins as a non-voting learner until caught up"
        );
        write_durably(dir, REJOIN_MARKER_FILE, b"rejoin as learner\n")?;
    }
    if let Some(b) = &boot_id {
        write_durably(dir, BOOT_ID_FILE, format!("{b}\n").as_bytes())?;
    }
    Ok(marker.exists())
}

/// The member caught up and is a voter again: forget the mark.
pub(crate) fn clear_rejoin_marker(dir: &Path) -> Result<()> {
    let marker = dir.join(REJOIN_MARKER_FILE);
    match std::fs::remove_file(&marker) {
        Ok(()) => std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| NodeError::Config(format!("cannot sync {}: {e}", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NodeError::Config(format!(
            "cannot remove {}: {e}",
            marker.display()
        ))),
    }
}

fn archive_err(dir: &Path) -> impl FnOnce(tandem_archive::ArchiveError) -> NodeError + '_ {
    move |source| NodeError::Archive {
        dir: dir.to_path_buf(),
        source,
    }
}

impl NodeFiles {
    /// Opens (creating) the node directory as `Archive::open` does and loads the newest valid
    /// snapshot.
    pub(crate) fn open(cfg: &NodeConfig) -> Result<Opened> {
        let dir = cfg.dir.as_path();
        let archive_cfg = ArchiveConfig {
            log: LogConfig {
                segment_len_bytes: cfg.segment_len_bytes,
                durability: cfg.fsync,
                max_frame_len_bytes: (1 << 20).min(cfg.segment_len_bytes as usize),
                ..LogConfig::default()
            },
            retained_snapshot_sets: cfg.retained_snapshots,
        };
        std::fs::create_dir_all(dir).map_err(|e| {
            NodeError::Config(format!(
                "cannot create node directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = DirLock::acquire(dir).map_err(archive_err(dir))?;
        let mut node_state = NodeStateFile::open_or_create(dir, cfg.cluster_id, cfg.member_id)
            .map_err(archive_err(dir))?;
        let recording = RecordingLog::open(dir).map_err(archive_err(dir))?;
        // A state file never stored since creation belongs to a new directory or to a learner
        // that was never promoted: it must not vote, unless this is the founding start.
        let fresh = node_state.sequence() <= 1;
        let rejoin_as_learner = unclean_restart(dir, cfg, fresh)?;
        if fresh && cfg.bootstrap {
            let s = *node_state.state();
            node_state.store(&s).map_err(archive_err(dir))?;
        }
        let durable = node_state.state().commit_position_lower_bound;
        let (mut log, report) =
            Log::open(&dir.join(LOG_DIR_NAME), archive_cfg.log.clone(), durable)
                .map_err(archive_err(dir))?;
        if report.truncated_bytes > 0 || report.discarded_segments > 0 {
            tracing::warn!(dir = %dir.display(), ?report, "log recovery truncated a torn tail");
        }
        let snapshots = SnapshotStore::open(dir).map_err(archive_err(dir))?;
        let state = *node_state.state();
        let files = NodeFiles {
            dir: dir.to_path_buf(),
            node_state: StatePersister::spawn(dir, node_state, cfg.member_id)?,
            recording,
            snapshots,
            retained_snapshots: cfg.retained_snapshots,
            _lock: lock,
        };
        let snapshot = files.load_latest_snapshot()?;
        if let Some(s) = &snapshot
            && s.position.0 < log.start_position()
        {
            // The log from the snapshot on was purged: a newer snapshot set was lost from the
            // recording log (its last entry cut off as torn). Nothing to start from.
            return Err(NodeError::Snapshot {
                dir: dir.to_path_buf(),
                position: s.position.0,
                reason: format!(
                    "the newest valid snapshot lies below the log start {} (the recording log \
                     lost a newer snapshot set?): wipe the directory to rejoin as a learner",
                    log.start_position()
                ),
            });
        }
        let node_state = if fresh && !cfg.bootstrap {
            None
        } else {
            Some(NodeState {
                term: Term(state.current_term),
                voted_for: state.voted_for.map(MemberId),
                commit_lower_bound: LogPosition(state.commit_position_lower_bound),
            })
        };
        let mut rejoin_as_learner = rejoin_as_learner;
        if snapshot.is_none() && log.start_position() > 0 {
            // A snapshot install was interrupted before its file was stored, or the snapshots
            // were invalidated or lost: the log is of no use without one. Start empty (the
            // leader sends its snapshot again).
            tracing::warn!(dir = %dir.display(), "log starts above 0 without a snapshot: resetting it");
            log.reset(0, 0).map_err(archive_err(dir))?;
            if node_state.is_some() && !rejoin_as_learner {
                // It acknowledged entries it no longer holds: it must not vote (nor count for
                // a quorum) before it caught up again, across restarts too.
                tracing::warn!(dir = %dir.display(), "log data lost: rejoining as a non-voting learner");
                write_durably(dir, REJOIN_MARKER_FILE, b"rejoin as learner\n")?;
                rejoin_as_learner = true;
            }
        }
        Ok(Opened {
            files,
            log,
            node_state,
            snapshot,
            rejoin_as_learner,
        })
    }

    /// The newest valid snapshot set's consensus-module snapshot. A file that is missing,
    /// torn or corrupted stops the start with an error naming it (and the byte offset): the
    /// node never falls back silently. The operator chooses: `cluster-tool <dir>
    /// invalidate-latest-snapshot` (start from the previous set, whose log the retention
    /// policy kept), or wipe the directory (the member rejoins as a learner).
    fn load_latest_snapshot(&self) -> Result<Option<Arc<Snapshot>>> {
        let Some(set) = self.recording.valid_snapshot_sets().pop() else {
            return Ok(None);
        };
        let position = set.position;
        let unusable = |reason: String| NodeError::Snapshot {
            dir: self.dir.clone(),
            position,
            reason: format!(
                "{reason} (cluster-tool invalidate-latest-snapshot falls back to the previous \
                 snapshot; or wipe the directory to rejoin as a learner)"
            ),
        };
        let mut reader = self
            .snapshots
            .reader(position, CONSENSUS_MODULE_SERVICE_ID)
            .map_err(|e| unusable(e.to_string()))?;
        let path = reader.meta().path.clone();
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| unusable(format!("reading {}: {e}", path.display())))?;
        match Snapshot::from_bytes(bytes) {
            Ok(s) if s.position.0 == position => Ok(Some(Arc::new(s))),
            Ok(s) => Err(unusable(format!(
                "{} holds a snapshot at {}",
                path.display(),
                s.position
            ))),
            Err(e) => Err(unusable(format!("{} does not decode: {e}", path.display()))),
        }
    }

    /// Stores a snapshot (file written to a temporary name, fsynced, renamed) and records it.
    pub(crate) fn store_snapshot(&mut self, snapshot: &Snapshot) -> Result<()> {
        let (term, position) = (snapshot.term.0, snapshot.position.0);
        let exists = self.recording.entries().iter().any(|e| {
            e.valid
                && e.kind == EntryKind::Snapshot
                && e.position == position
                && e.term == term
                && e.service_id == CONSENSUS_MODULE_SERVICE_ID
        });
        if exists {
            return Ok(());
        }
        let dir = self.dir.clone();
        let mut w = self
            .snapshots
            .writer(
                term,
                position,
                CONSENSUS_MODULE_SERVICE_ID,
                snapshot.timestamp,
            )
            .map_err(archive_err(&dir))?;
        w.write_all(&snapshot.bytes)
            .map_err(|e| NodeError::Snapshot {
                dir: dir.clone(),
                position,
                reason: e.to_string(),
            })?;
        w.finish().map_err(archive_err(&dir))?;
        self.recording
            .append_snapshot(
                term,
                position,
                snapshot.timestamp,
                CONSENSUS_MODULE_SERVICE_ID,
            )
            .map_err(archive_err(&dir))?;
        Ok(())
    }

    /// Asks for the node state to be written and fsynced (on the persister's thread); the
    /// completion comes back through [`StatePersister::poll`]. The commit lower bound is
    /// clamped to `log_end` (what the archive holds), so a restart never finds its log ending
    /// below it.
    pub(crate) fn persist(&mut self, id: u64, state: &NodeState, log_end: u64) -> Result<()> {
        self.node_state.request(id, state, log_end)
    }

    /// The newest valid term in the recording log (0 if none).
    pub(crate) fn recorded_term(&self) -> u64 {
        self.recording.latest_term().map_or(0, |e| e.term)
    }

    /// Records that `term` began at `base` (skipped, with a warning, if it would not be above
    /// the newest valid entry).
    pub(crate) fn record_term(&mut self, term: u64, base: u64, timestamp: i64) -> Result<()> {
        if let Some(latest) = self.recording.latest_term()
            && (term <= latest.term || base < latest.position)
        {
            tracing::warn!(term, base, latest = ?latest, "term entry out of order; not recorded");
            return Ok(());
        }
        let dir = self.dir.clone();
        self.recording
            .append_term(term, base, timestamp)
            .map(|_| ())
            .map_err(archive_err(&dir))
    }

    /// Invalidates the `Term` entries of terms whose frames were discarded (base at or above
    /// `position`).
    pub(crate) fn invalidate_terms_from(&mut self, position: u64) -> Result<()> {
        let doomed: Vec<u64> = self
            .recording
            .entries()
            .iter()
            .filter(|e| e.valid && e.kind == EntryKind::Term && e.position >= position)
            .map(|e| e.index)
            .collect();
        let dir = self.dir.clone();
        for index in doomed {
            self.recording
                .invalidate_entry(index)
                .map_err(archive_err(&dir))?;
        }
        Ok(())
    }

    /// Positions of the valid snapshot sets.
    pub(crate) fn snapshot_positions(&self) -> Vec<u64> {
        self.recording
            .valid_snapshot_sets()
            .iter()
            .map(|s| s.position)
            .collect()
    }

    /// Deletes snapshot sets beyond retention that lie below `log_start`; returns how many.
    pub(crate) fn prune_snapshots(&mut self, log_start: u64) -> Result<usize> {
        let dir = self.dir.clone();
        let plan = tandem_archive::retention_plan(
            &self.snapshot_positions(),
            log_start,
            self.retained_snapshots,
        )
        .map_err(archive_err(&dir))?;
        let doomed: Vec<u64> = plan
            .snapshot_sets_to_delete
            .into_iter()
            .filter(|&p| p < log_start)
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let indices: Vec<u64> = self
            .recording
            .entries()
            .iter()
            .filter(|e| e.valid && e.kind == EntryKind::Snapshot && doomed.contains(&e.position))
            .map(|e| e.index)
            .collect();
        for index in indices {
            self.recording
                .invalidate_entry(index)
                .map_err(archive_err(&dir))?;
        }
        let mut removed = 0;
        for meta in self.snapshots.list().map_err(archive_err(&dir))? {
            if doomed.contains(&meta.position)
                && self
                    .snapshots
                    .delete(meta.position, meta.service_id)
                    .map_err(archive_err(&dir))?
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The highest position purge may go to under the retention policy.
    pub(crate) fn purge_limit(&self, up_to: u64, log_start: u64) -> u64 {
        match tandem_archive::retention_plan(
            &self.snapshot_positions(),
            log_start,
            self.retained_snapshots,
        ) {
            Ok(plan) => {
                tandem_archive::purge_limit(up_to, plan.retain_from_position, std::iter::empty())
            }
            Err(_) => log_start,
        }
    }
}

/// Writes the node state on a thread of its own (`tandem-state-ID`), so that an fsync never
/// stalls the consensus thread. Each heartbeat the core persists its commit lower bound; on a
/// disk busy writing back the mapped log, that fdatasync waited 100–250 ms behind it on the
/// hot thread (cluster-bench, 100 K msg/s). The core already treats every persist as
/// asynchronous: what depends on a term or vote waits for `Input::StatePersisted`.
///
/// Requests are carried out in order; a request that finds later ones queued behind it writes
/// only the newest (each holds the whole state) and completes them all at once.
#[derive(Debug)]
pub(crate) struct StatePersister {
    requests: Option<mpsc::Sender<(u64, NodeState, u64)>>,
    done: mpsc::Receiver<(u64, std::result::Result<(), String>)>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
    /// The highest request id sent and not yet completed: while there is none, a poll does
    /// not touch the channel (an empty `try_recv` costs a full fence, every duty cycle: perf,
    /// issue #7).
    awaiting: Option<u64>,
}

impl StatePersister {
    fn spawn(dir: &Path, mut file: NodeStateFile, member_id: u32) -> Result<Self> {
        let (req_tx, req_rx) = mpsc::channel::<(u64, NodeState, u64)>();
        let (done_tx, done_rx) = mpsc::channel();
        let thread_dir = dir.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!("tandem-state-{member_id}"))
            .spawn(move || {
                while let Ok(mut request) = req_rx.recv() {
                    while let Ok(later) = req_rx.try_recv() {
                        request = later;
                    }
                    let (id, state, log_end) = request;
                    let result = store_state(&mut file, &state, log_end)
                        .map_err(|e| format!("{}: {e}", thread_dir.display()));
                    let failed = result.is_err();
                    if done_tx.send((id, result)).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| {
                NodeError::Config(format!("cannot start the node-state writer thread: {e}"))
            })?;
        Ok(Self {
            requests: Some(req_tx),
            done: done_rx,
            thread: Some(thread),
            dir: dir.to_path_buf(),
            awaiting: None,
        })
    }

    fn request(&mut self, id: u64, state: &NodeState, log_end: u64) -> Result<()> {
        let sent = self
            .requests
            .as_ref()
            .is_some_and(|tx| tx.send((id, *state, log_end)).is_ok());
        if sent {
            self.awaiting = Some(self.awaiting.map_or(id, |a| a.max(id)));
            Ok(())
        } else {
            Err(NodeError::Config(format!(
                "{}: the node-state writer thread has stopped",
                self.dir.display()
            )))
        }
    }

    /// The highest request id completed since the last call, or the error that stopped the
    /// writer.
    pub(crate) fn poll(&mut self) -> std::result::Result<Option<u64>, String> {
        if self.awaiting.is_none() {
            return Ok(None);
        }
        let mut highest = None;
        loop {
            match self.done.try_recv() {
                Ok((id, Ok(()))) => {
                    highest = Some(id);
                    if self.awaiting.is_some_and(|a| id >= a) {
                        self.awaiting = None;
                    }
                }
                Ok((_, Err(e))) => return Err(e),
                Err(mpsc::TryRecvError::Empty) => return Ok(highest),
                // The writer holds the sending end until it exits: it has stopped.
                Err(mpsc::TryRecvError::Disconnected) => {
                    return match highest {
                        Some(id) => Ok(Some(id)),
                        None => Err(format!(
                            "{}: the node-state writer thread stopped",
                            self.dir.display()
                        )),
                    };
                }
            }
        }
    }
}

impl Drop for StatePersister {
    fn drop(&mut self) {
        // Queued requests are still written: the thread drains the channel, then sees it
        // closed.
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes and fsyncs `state` over `file`'s current state (the commit bound only grows, and is
/// clamped to `log_end`); a state equal to what is stored is not written again.
fn store_state(
    file: &mut NodeStateFile,
    state: &NodeState,
    log_end: u64,
) -> tandem_archive::Result<()> {
    let current = *file.state();
    let mut next = current;
    next.current_term = state.term.0;
    next.voted_for = state.voted_for.map(|m| m.0);
    next.commit_position_lower_bound = state
        .commit_lower_bound
        .0
        .min(log_end)
        .max(current.commit_position_lower_bound);
    if next == current && file.sequence() > 1 {
        return Ok(());
    }
    file.store(&next)
}
