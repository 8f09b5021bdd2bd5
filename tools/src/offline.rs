//! Commands that change a stopped node's directory: `invalidate-latest-snapshot`,
//! `seed-recording-log-from-snapshot` and `purge-segments` on an offline directory. Each
//! refuses while a node runs there and holds the directory's writer lock while it works,
//! so a node cannot start under it.

use std::fmt::Write as _;

use serde_json::json;
use tandem_archive::{Archive, ArchiveConfig, DirLock, LogConfig, NodeStateFile, RecordingLog};

use crate::error::{Result, ToolError};
use crate::inspect::{entries_table, entry_json};
use crate::log_scan::LogFiles;
use crate::node_dir::NodeDir;
use crate::output::Outcome;

/// Refuses if a node runs in `dir`, then takes its writer lock.
fn lock_stopped(dir: &NodeDir, command: &'static str) -> Result<DirLock> {
    dir.require_stopped(command)?;
    DirLock::acquire(dir.path()).map_err(|e| match e {
        tandem_archive::ArchiveError::Locked { pid, .. } => ToolError::Running {
            dir: dir.path().to_path_buf(),
            command,
            pid: pid.map_or(0, u64::from),
        },
        other => other.into(),
    })
}

/// `invalidate-latest-snapshot`.
///
/// # Errors
/// [`ToolError::Running`]; no valid snapshot set; recording-log errors.
pub fn invalidate_latest_snapshot(dir: &NodeDir) -> Result<Outcome> {
    let _lock = lock_stopped(dir, "invalidate-latest-snapshot")?;
    let mut log = RecordingLog::open(dir.path())?;
    let latest = log.latest_snapshot_set().ok_or_else(|| {
        ToolError::Invalid(format!(
            "no valid snapshot set to invalidate in {}",
            log.path().display()
        ))
    })?;
    log.invalidate_latest_snapshot()?;
    let next = log.latest_snapshot_set();
    let mut text = format!(
        "invalidated the snapshot set at position {} term {} ({} entries)\n",
        latest.position,
        latest.term,
        latest.entries.len()
    );
    match &next {
        Some(s) => {
            let _ = writeln!(
                text,
                "the next start uses the snapshot set at position {} term {}",
                s.position, s.term
            );
        }
        None => text.push_str(
            "no valid snapshot set is left: the next start replays the log from its start\n",
        ),
    }
    let json = json!({
        "invalidated_position": latest.position,
        "invalidated_term": latest.term,
        "entries_invalidated": latest.entries.len(),
        "next_snapshot": next.map(|s| json!({ "position": s.position, "term": s.term })),
    });
    Ok(Outcome::ok(text, json))
}

/// `seed-recording-log-from-snapshot`.
///
/// # Errors
/// [`ToolError::Running`]; no valid snapshot set; recording-log errors.
pub fn seed_recording_log(dir: &NodeDir) -> Result<Outcome> {
    let _lock = lock_stopped(dir, "seed-recording-log-from-snapshot")?;
    let backup = RecordingLog::seed_from_snapshot(dir.path())?;
    let log = RecordingLog::open_read_only(dir.path())?;
    let mut text = format!(
        "rewrote {} from the snapshot set at position {}; the old file is {}\n",
        log.path().display(),
        log.latest_snapshot_set().map_or(0, |s| s.position),
        backup.display()
    );
    text.push_str(&entries_table(log.entries()));
    let json = json!({
        "path": log.path(),
        "backup": backup,
        "entries": log.entries().iter().map(entry_json).collect::<Vec<_>>(),
    });
    Ok(Outcome::ok(text, json))
}

/// `purge-segments` on a stopped node: opens the archive (which recovers the log as the
/// node's start would) and purges up to `up_to` within retention.
///
/// # Errors
/// [`ToolError::Running`]; archive errors.
pub fn purge_offline(dir: &NodeDir, up_to: u64) -> Result<Outcome> {
    dir.require_stopped("purge-segments")?;
    let state = NodeStateFile::open_existing(dir.path())?;
    let (cluster_id, member_id) = (state.state().cluster_id, state.state().member_id);
    drop(state);
    // The directory's own segment length; frames up to a whole segment are accepted so that
    // recovery never cuts a frame the node wrote with a larger maximum than the default.
    let segment_len_bytes = LogFiles::open(dir.path())?
        .map_or(LogConfig::default().segment_len_bytes, |l| {
            l.segment_len_bytes()
        });
    let config = ArchiveConfig {
        log: LogConfig {
            segment_len_bytes,
            max_frame_len_bytes: usize::try_from(segment_len_bytes).unwrap_or(usize::MAX),
            prepare_next_segment: false,
            prefault: false,
            ..LogConfig::default()
        },
        ..ArchiveConfig::default()
    };
    let (mut archive, _recovery) = Archive::open(dir.path(), cluster_id, member_id, config)
        .map_err(|e| match e {
            tandem_archive::ArchiveError::Locked { pid, .. } => ToolError::Running {
                dir: dir.path().to_path_buf(),
                command: "purge-segments",
                pid: pid.map_or(0, u64::from),
            },
            other => other.into(),
        })?;
    let r = archive.purge_segments(up_to)?;
    let text = format!(
        "purge-segments (offline): {} segments and {} snapshot files removed, {} bytes; log now starts at {} (limit {})\n",
        r.segments_removed,
        r.snapshots_removed,
        r.bytes_removed,
        r.start_position,
        r.limit_position
    );
    let json = json!({
        "mode": "offline",
        "segments_removed": r.segments_removed,
        "snapshots_removed": r.snapshots_removed,
        "bytes_removed": r.bytes_removed,
        "start_position": r.start_position,
        "limit_position": r.limit_position,
    });
    Ok(Outcome::ok(text, json))
}
