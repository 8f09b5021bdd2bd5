//! Commands that only read a directory: `describe`, `recording-log`, `recovery-plan`,
//! `verify`, `dump` and `describe-latest-snapshot`. None of them changes a byte of it, so
//! they are safe on a running node.

use std::fmt::Write as _;

use serde_json::{Value, json};
use tandem_archive::{
    CONSENSUS_MODULE_SERVICE_ID, Entry, EntryKind, NodeStateFile, RecordingLog, SnapshotSet,
};
use tandem_cluster::codec::frame::EntryType;
use tandem_cluster::consensus::ElectionState;
use tandem_cluster::consensus::snapshot::Snapshot;
use tandem_cluster::consensus::state::{Limits, ModuleState};
use tandem_cluster::control::ControlFile;
use tandem_cluster::transport::MemberEndpoints;

use crate::error::{Result, ToolError};
use crate::log_scan::{LogFiles, ScannedFrame};
use crate::node_dir::NodeDir;
use crate::output::{Outcome, Status, opt, table};
use crate::snapshot_scan;

/// The name of an entry kind.
pub fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Term => "term",
        EntryKind::Snapshot => "snapshot",
    }
}

/// An entry as JSON (`service_id` is null for Term entries).
pub fn entry_json(e: &Entry) -> Value {
    json!({
        "index": e.index,
        "type": kind_name(e.kind),
        "term": e.term,
        "position": e.position,
        "service_id": (e.kind == EntryKind::Snapshot).then_some(e.service_id),
        "timestamp": e.timestamp,
        "valid": e.valid,
    })
}

/// Entries as a table.
pub fn entries_table(entries: &[Entry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.index.to_string(),
                kind_name(e.kind).to_string(),
                e.term.to_string(),
                e.position.to_string(),
                opt((e.kind == EntryKind::Snapshot).then_some(e.service_id)),
                e.timestamp.to_string(),
                if e.valid { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "index",
            "type",
            "term",
            "position",
            "service",
            "timestamp",
            "valid",
        ],
        &rows,
    )
}

/// A snapshot set as JSON.
pub fn set_json(set: &SnapshotSet) -> Value {
    json!({
        "term": set.term,
        "position": set.position,
        "entries": set.entries.iter().map(entry_json).collect::<Vec<_>>(),
    })
}

/// The election state's name for a code.
pub fn election_state_name(code: u64) -> String {
    u8::try_from(code)
        .ok()
        .and_then(ElectionState::from_code)
        .map_or_else(|| format!("UNKNOWN({code})"), |s| s.name().to_string())
}

/// The entry type's name for a frame type code.
pub fn entry_type_name(code: u16) -> String {
    match EntryType::from_code(code) {
        Ok(EntryType::Padding) => "padding".into(),
        Ok(EntryType::NewLeadershipTerm) => "new-leadership-term".into(),
        Ok(EntryType::SessionOpen) => "session-open".into(),
        Ok(EntryType::SessionClose) => "session-close".into(),
        Ok(EntryType::SessionMessage) => "session-message".into(),
        Ok(EntryType::TimerEvent) => "timer-event".into(),
        Ok(EntryType::SnapshotMarker) => "snapshot-marker".into(),
        Ok(EntryType::ServiceMessage) => "service-message".into(),
        Ok(EntryType::OperatorAction) => "operator-action".into(),
        Ok(EntryType::StateHash) => "state-hash".into(),
        Ok(EntryType::SessionMessages) => "session-messages".into(),
        Err(_) => format!("unknown({code})"),
    }
}

/// The log's start and end (append) positions, read without changing anything.
fn log_range(dir: &NodeDir) -> Result<(u64, u64)> {
    match LogFiles::open(dir.path())? {
        Some(log) => {
            let end = log.scan(false, |_| true)?;
            Ok((log.start_position(), end.end_position))
        }
        None => Ok((0, 0)),
    }
}

/// `recording-log`: every entry of the recording log.
///
/// # Errors
/// Recording-log errors (missing, corrupted).
pub fn recording_log(dir: &NodeDir) -> Result<Outcome> {
    let log = RecordingLog::open_read_only(dir.path())?;
    let mut text = format!("{}: {} entries", log.path().display(), log.entries().len());
    if log.torn_tail_detected() {
        text.push_str(" (torn last entry ignored)");
    }
    text.push('\n');
    text.push_str(&entries_table(log.entries()));
    let json = json!({
        "path": log.path(),
        "torn_tail": log.torn_tail_detected(),
        "entries": log.entries().iter().map(entry_json).collect::<Vec<_>>(),
    });
    Ok(Outcome::ok(text, json))
}

/// `recovery-plan`: the snapshot set and log range a restart would use.
///
/// # Errors
/// Recording-log and log errors; [`ToolError::Archive`] when the plan needs purged log.
pub fn recovery_plan(dir: &NodeDir) -> Result<Outcome> {
    let log = RecordingLog::open_read_only(dir.path())?;
    let (start, end) = log_range(dir)?;
    let plan = log.recovery_plan(start, end)?;
    let mut text = String::new();
    match &plan.snapshot {
        Some(set) => {
            let _ = writeln!(
                text,
                "snapshot set: position {} term {} ({} snapshots: services {})",
                set.position,
                set.term,
                set.entries.len(),
                set.entries
                    .iter()
                    .map(|e| e.service_id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        None => text.push_str("snapshot set: none (replay from the log start)\n"),
    }
    let _ = writeln!(
        text,
        "replay log: [{}, {}) ({} bytes)",
        plan.replay_from_position,
        plan.replay_to_position,
        plan.replay_to_position - plan.replay_from_position
    );
    let _ = writeln!(text, "log on disk: [{start}, {end})");
    text.push_str("term history:\n");
    text.push_str(&entries_table(&plan.term_history));
    let json = json!({
        "snapshot": plan.snapshot.as_ref().map(set_json),
        "replay_from_position": plan.replay_from_position,
        "replay_to_position": plan.replay_to_position,
        "log_start_position": start,
        "log_end_position": end,
        "term_history": plan.term_history.iter().map(entry_json).collect::<Vec<_>>(),
    });
    Ok(Outcome::ok(text, json))
}

fn control_json(c: &ControlFile) -> Value {
    json!({
        "path": c.path(),
        "pid": c.pid(),
        "owner_alive": c.is_owner_alive(),
        "cluster_id": c.cluster_id(),
        "member_id": c.member_id(),
        "member_count": c.member_count(),
        "role": c.role().map(|r| r.name()),
        "term": c.term(),
        "leader_id": c.leader_id(),
        "election_state": election_state_name(c.election_state()),
        "election_state_code": c.election_state(),
        "append_position": c.append_position(),
        "commit_position": c.commit_position(),
        "durable_position": c.durable_position(),
        "log_start_position": c.log_start_position(),
        "snapshot_position": c.snapshot_position(),
        "updated_ns": c.updated_ns(),
        "start_timestamp_ns": c.start_timestamp_ns(),
        "pending_request": c.pending_request().map(|(seq, action, in_progress)| json!({
            "request": seq, "action": action, "in_progress": in_progress,
        })),
        "error_count": c.error_count(),
    })
}

/// Each member's client and peer endpoints, keyed by member id.
fn members_json(members: &MemberEndpoints) -> Value {
    members
        .iter()
        .map(|m| {
            (
                m.id.to_string(),
                json!({ "endpoint": m.client.to_string(), "peer_endpoint": m.peer.to_string() }),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Runs a section of `describe`, keeping its error (and the first error overall).
fn section(first: &mut Option<ToolError>, f: impl FnOnce() -> Result<Value>) -> Value {
    match f() {
        Ok(v) => v,
        Err(e) => {
            let v = json!({ "error": e.to_string() });
            first.get_or_insert(e);
            v
        }
    }
}

/// `describe`: the control file, node state, recording log, log and snapshots.
///
/// # Errors
/// Liveness probe errors; damaged files are reported in their section and make the exit
/// status 2.
pub fn describe(dir: &NodeDir) -> Result<Outcome> {
    let mut first: Option<ToolError> = None;
    let liveness = dir.liveness();
    let running_pid = liveness.as_ref().ok().and_then(|l| l.running_pid());
    // A damaged members area is reported in `control.members` and fails describe, but the
    // rest of the control file is still shown.
    let mut members_error = None;
    let control = section(&mut first, || {
        Ok(dir.control_if_present()?.map_or(Value::Null, |c| {
            let mut v = control_json(&c);
            v["members"] = match c.member_endpoints() {
                Ok(members) => members_json(&members),
                Err(e) => {
                    let v = json!({ "error": e.to_string() });
                    members_error = Some(e);
                    v
                }
            };
            v
        }))
    });
    if let Some(e) = members_error {
        first.get_or_insert(e.into());
    }
    let node_state = section(&mut first, || {
        if !dir
            .path()
            .join(tandem_archive::NODE_STATE_FILE_NAME)
            .exists()
        {
            return Ok(Value::Null);
        }
        let f = NodeStateFile::open_existing(dir.path())?;
        let s = f.state();
        Ok(json!({
            "path": f.path(),
            "current_term": s.current_term,
            "voted_for": s.voted_for,
            "commit_position_lower_bound": s.commit_position_lower_bound,
            "cluster_id": s.cluster_id,
            "member_id": s.member_id,
        }))
    });
    let recording = section(&mut first, || {
        if !dir
            .path()
            .join(tandem_archive::RECORDING_LOG_FILE_NAME)
            .exists()
        {
            return Ok(Value::Null);
        }
        let log = RecordingLog::open_read_only(dir.path())?;
        let sets = log.valid_snapshot_sets();
        Ok(json!({
            "path": log.path(),
            "entries": log.entries().len(),
            "terms": log.entries().iter().filter(|e| e.valid && e.kind == EntryKind::Term).count(),
            "latest_term": log.latest_term().map(|e| e.term),
            "latest_term_position": log.latest_term().map(|e| e.position),
            "valid_snapshot_sets": sets.len(),
            "latest_snapshot_position": sets.last().map(|s| s.position),
            "torn_tail": log.torn_tail_detected(),
        }))
    });
    let log = section(&mut first, || {
        let Some(log) = LogFiles::open(dir.path())? else {
            return Ok(Value::Null);
        };
        let end = log.scan(false, |_| true)?;
        Ok(json!({
            "dir": log.dir(),
            "segment_len_bytes": log.segment_len_bytes(),
            "segments": log.segments().len(),
            "start_position": log.start_position(),
            "end_position": end.end_position,
            "frames": end.frames,
            "disk_bytes": log.disk_usage_bytes()?,
            "problem": end.problem.map(|p| p.to_string()),
        }))
    });
    let snapshots = section(&mut first, || {
        let files = snapshot_scan::list(dir.path())?;
        let mut positions: Vec<u64> = files.iter().map(|f| f.position).collect();
        positions.dedup();
        Ok(json!({
            "files": files.len(),
            "positions": positions,
            "disk_bytes": snapshot_scan::disk_usage_bytes(dir.path())?,
        }))
    });
    let disk_used =
        log["disk_bytes"].as_u64().unwrap_or(0) + snapshots["disk_bytes"].as_u64().unwrap_or(0);
    // A lock probe that fails (the lock taken a moment ago, its pid not yet written) leaves
    // "running" unknown; it is not a failure of describe.
    let liveness_error = liveness.err().map(|e| e.to_string());
    let json = json!({
        "node_dir": dir.path(),
        "running": running_pid.is_some(),
        "pid": running_pid,
        "liveness_error": liveness_error,
        "control": control,
        "node_state": node_state,
        "recording_log": recording,
        "log": log,
        "snapshots": snapshots,
        "disk_used_bytes": disk_used,
    });
    let text = describe_text(&json);
    Ok(Outcome {
        text,
        json,
        status: first.map_or(Status::Ok, Status::Failed),
    })
}

/// Renders a JSON object as indented `key: value` lines.
fn describe_text(v: &Value) -> String {
    fn walk(out: &mut String, v: &Value, indent: usize) {
        let Some(map) = v.as_object() else { return };
        for (k, v) in map {
            let pad = "  ".repeat(indent);
            match v {
                Value::Object(_) => {
                    let _ = writeln!(out, "{pad}{k}:");
                    walk(out, v, indent + 1);
                }
                Value::Null => {
                    let _ = writeln!(out, "{pad}{k}: -");
                }
                Value::String(s) => {
                    let _ = writeln!(out, "{pad}{k}: {s}");
                }
                other => {
                    let _ = writeln!(out, "{pad}{k}: {other}");
                }
            }
        }
    }
    let mut out = String::new();
    walk(&mut out, v, 0);
    out
}

/// `verify`: every frame of every segment, every snapshot file, the node state, the
/// recording log and `log.meta`. Reports every problem; the first decides the error line.
///
/// # Errors
/// Only errors that stop the check itself (I/O); corruption is reported in the outcome.
pub fn verify(dir: &NodeDir) -> Result<Outcome> {
    let mut problems: Vec<ToolError> = Vec::new();
    let mut text = String::new();
    let mut report = serde_json::Map::new();

    // On a running node, the commit position it publishes.
    let running_commit = match (dir.liveness()?.running_pid(), dir.control_if_present()) {
        (Some(_), Ok(Some(c))) => Some(c.commit_position()),
        _ => None,
    };

    // Node state.
    let mut commit_lower_bound = 0;
    let node_state_path = dir.path().join(tandem_archive::NODE_STATE_FILE_NAME);
    if node_state_path.exists() {
        match NodeStateFile::open_existing(dir.path()) {
            Ok(f) => {
                commit_lower_bound = f.state().commit_position_lower_bound;
                let _ = writeln!(text, "ok      {}", f.path().display());
                report.insert("node_state".into(), json!("ok"));
            }
            Err(e) => {
                let e = ToolError::from(e);
                let _ = writeln!(text, "FAILED  {e}");
                report.insert("node_state".into(), json!(e.to_string()));
                problems.push(e);
            }
        }
    } else {
        let _ = writeln!(text, "absent  {}", node_state_path.display());
        report.insert("node_state".into(), Value::Null);
    }

    // Recording log.
    let mut recording: Option<RecordingLog> = None;
    let rl_path = dir.path().join(tandem_archive::RECORDING_LOG_FILE_NAME);
    if rl_path.exists() {
        match RecordingLog::open_read_only(dir.path()) {
            Ok(log) if log.torn_tail_detected() => {
                let e = ToolError::corrupted(
                    &rl_path,
                    tandem_archive::RECORDING_LOG_HEADER_LEN_BYTES
                        + tandem_archive::RECORDING_LOG_ENTRY_LEN_BYTES
                            * log.entries().len() as u64,
                    "torn last entry (the node cuts it off when it starts)",
                );
                let _ = writeln!(text, "FAILED  {e}");
                report.insert("recording_log".into(), json!(e.to_string()));
                problems.push(e);
                recording = Some(log);
            }
            Ok(log) => {
                let _ = writeln!(
                    text,
                    "ok      {} ({} entries)",
                    log.path().display(),
                    log.entries().len()
                );
                report.insert("recording_log".into(), json!("ok"));
                recording = Some(log);
            }
            Err(e) => {
                let e = ToolError::from(e);
                let _ = writeln!(text, "FAILED  {e}");
                report.insert("recording_log".into(), json!(e.to_string()));
                problems.push(e);
            }
        }
    } else {
        let _ = writeln!(text, "absent  {}", rl_path.display());
        report.insert("recording_log".into(), Value::Null);
    }

    // Log.
    match LogFiles::open(dir.path()) {
        Ok(Some(log)) => {
            let end = log.scan(true, |_| true)?;
            let mut log_problem = end.problem;
            // On a running node the frames past the commit position may be mid-append:
            // what is found there is not corruption.
            if let (Some(limit), Some(ToolError::Corrupted { position, .. })) =
                (running_commit, &log_problem)
                && *position >= limit
            {
                let _ = writeln!(
                    text,
                    "note    the node is running: {} at or past the commit position {limit} ignored",
                    log_problem.take().expect("matched")
                );
            }
            if log_problem.is_none() && end.end_position < commit_lower_bound {
                log_problem = Some(ToolError::corrupted(
                    log.segment_path(end.end_position),
                    end.end_position,
                    format!(
                        "log ends below the commit position lower bound {commit_lower_bound} in {}",
                        tandem_archive::NODE_STATE_FILE_NAME
                    ),
                ));
            }
            let status = match &log_problem {
                None => {
                    let _ = writeln!(
                        text,
                        "ok      {}: {} frames, {} payload bytes, positions [{}, {}) in {} segments",
                        log.dir().display(),
                        end.frames,
                        end.payload_bytes,
                        log.start_position(),
                        end.end_position,
                        log.segments().len()
                    );
                    json!("ok")
                }
                Some(e) => {
                    let _ = writeln!(text, "FAILED  {e} (after {} valid frames)", end.frames);
                    json!(e.to_string())
                }
            };
            report.insert(
                "log".into(),
                json!({
                    "status": status,
                    "frames": end.frames,
                    "payload_bytes": end.payload_bytes,
                    "start_position": log.start_position(),
                    "end_position": end.end_position,
                    "segments": log.segments().len(),
                }),
            );
            problems.extend(log_problem);
        }
        Ok(None) => {
            report.insert("log".into(), Value::Null);
            let _ = writeln!(text, "absent  {}", dir.path().join("log").display());
        }
        Err(e) => {
            let _ = writeln!(text, "FAILED  {e}");
            report.insert("log".into(), json!({ "status": e.to_string() }));
            problems.push(e);
        }
    }

    // Snapshots, and the recording log's references to them.
    let files = snapshot_scan::list(dir.path())?;
    let mut snaps = Vec::new();
    for f in &files {
        match snapshot_scan::validate(f) {
            Ok(_) => {
                let _ = writeln!(text, "ok      {}", f.path.display());
                snaps.push(json!({ "path": f.path, "status": "ok" }));
            }
            Err(e) => {
                let _ = writeln!(text, "FAILED  {e}");
                snaps.push(json!({ "path": f.path, "status": e.to_string() }));
                problems.push(e);
            }
        }
    }
    if let Some(log) = &recording {
        for set in log.valid_snapshot_sets() {
            for e in &set.entries {
                let present = files.iter().any(|f| {
                    f.position == e.position && f.term == e.term && f.service_id == e.service_id
                });
                if !present {
                    let p = ToolError::corrupted(
                        log.path(),
                        tandem_archive::RECORDING_LOG_HEADER_LEN_BYTES
                            + tandem_archive::RECORDING_LOG_ENTRY_LEN_BYTES * e.index,
                        format!(
                            "entry {} names a snapshot of service {} at position {} term {} that is not in {}",
                            e.index,
                            e.service_id,
                            e.position,
                            e.term,
                            tandem_archive::SNAPSHOTS_DIR_NAME
                        ),
                    );
                    let _ = writeln!(text, "FAILED  {p}");
                    problems.push(p);
                }
            }
        }
    }
    report.insert("snapshots".into(), Value::Array(snaps));

    // The control file, if any.
    if dir.has_control_file() {
        match dir.control() {
            Ok(c) => {
                let _ = writeln!(text, "ok      {}", c.path().display());
                report.insert("control".into(), json!("ok"));
            }
            Err(e) => {
                let _ = writeln!(text, "FAILED  {e}");
                report.insert("control".into(), json!(e.to_string()));
                problems.push(e);
            }
        }
    }

    report.insert(
        "problems".into(),
        json!(problems.iter().map(ToString::to_string).collect::<Vec<_>>()),
    );
    report.insert("ok".into(), json!(problems.is_empty()));
    let _ = writeln!(
        text,
        "verify: {}",
        if problems.is_empty() {
            "ok".to_string()
        } else {
            format!("{} problem(s)", problems.len())
        }
    );
    let status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Failed(problems.swap_remove(0))
    };
    Ok(Outcome {
        text,
        json: Value::Object(report),
        status,
    })
}

fn frame_json(f: &ScannedFrame) -> Value {
    json!({
        "position": f.position,
        "type": entry_type_name(f.frame_type),
        "term": f.term,
        "session_id": f.session_id,
        "sequence": f.sequence,
        "timestamp": f.timestamp,
        "length": f.payload_len,
    })
}

/// `dump`: frames from `from` (default: the log start), at most `count`.
///
/// # Errors
/// No log; `from` outside the log or not a frame boundary. Corruption met on the way is
/// reported after the frames before it.
pub fn dump(dir: &NodeDir, from: Option<u64>, count: Option<u64>) -> Result<Outcome> {
    let log = LogFiles::open(dir.path())?.ok_or_else(|| {
        ToolError::Invalid(format!("{} has no log", dir.path().join("log").display()))
    })?;
    let from = from.unwrap_or(log.start_position());
    if from < log.start_position() {
        return Err(ToolError::Invalid(format!(
            "position {from} is below the log start {} (purged)",
            log.start_position()
        )));
    }
    let count = count.unwrap_or(u64::MAX);
    let mut frames: Vec<ScannedFrame> = Vec::new();
    let mut boundary = from == log.start_position();
    let end = log.scan(false, |f| {
        if f.position == from {
            boundary = true;
        }
        if f.position >= from {
            if frames.len() as u64 >= count {
                return false;
            }
            frames.push(*f);
        }
        true
    })?;
    if !boundary && from != end.end_position {
        if from > end.end_position && end.problem.is_none() {
            return Err(ToolError::Invalid(format!(
                "position {from} is beyond the end of the log {}",
                end.end_position
            )));
        }
        if end.problem.is_none() || from < end.end_position {
            return Err(ToolError::Invalid(format!(
                "position {from} is not a frame boundary in {}",
                log.segment_path(from).display()
            )));
        }
    }
    let rows: Vec<Vec<String>> = frames
        .iter()
        .map(|f| {
            vec![
                f.position.to_string(),
                entry_type_name(f.frame_type),
                f.term.to_string(),
                f.session_id.to_string(),
                f.sequence.to_string(),
                f.timestamp.to_string(),
                f.payload_len.to_string(),
            ]
        })
        .collect();
    let text = table(
        &[
            "position",
            "type",
            "term",
            "session",
            "sequence",
            "timestamp",
            "length",
        ],
        &rows,
    );
    let json = json!({
        "from": from,
        "frames": frames.iter().map(frame_json).collect::<Vec<_>>(),
    });
    let status = match end.problem {
        Some(p) if (frames.len() as u64) < count => Status::Failed(p),
        _ => Status::Ok,
    };
    Ok(Outcome { text, json, status })
}

/// `describe-latest-snapshot`: the newest valid snapshot set and what the consensus
/// module's snapshot holds (sessions, timers, ids).
///
/// # Errors
/// No valid snapshot set; a missing or corrupted snapshot file; a module snapshot that does
/// not decode.
pub fn describe_latest_snapshot(dir: &NodeDir) -> Result<Outcome> {
    let log = RecordingLog::open_read_only(dir.path())?;
    let set = log.latest_snapshot_set().ok_or_else(|| {
        ToolError::Invalid(format!("no valid snapshot set in {}", log.path().display()))
    })?;
    let files = snapshot_scan::list(dir.path())?;
    let mut text = format!(
        "snapshot set at position {} term {}\n",
        set.position, set.term
    );
    let mut entries = Vec::new();
    let mut module: Option<ModuleState> = None;
    let mut rows = Vec::new();
    for e in &set.entries {
        let file = files
            .iter()
            .find(|f| {
                f.position == e.position && f.term == e.term && f.service_id == e.service_id
            })
            .ok_or_else(|| {
                ToolError::Invalid(format!(
                    "snapshot of service {} at position {} term {} (recording log entry {}) is missing from {}",
                    e.service_id,
                    e.position,
                    e.term,
                    e.index,
                    dir.path().join(tandem_archive::SNAPSHOTS_DIR_NAME).display()
                ))
            })?;
        let valid = snapshot_scan::validate(file)?;
        if e.service_id == CONSENSUS_MODULE_SERVICE_ID {
            module = Some(decode_module(&file.path, &valid.body)?);
        }
        rows.push(vec![
            e.service_id.to_string(),
            valid.timestamp.to_string(),
            valid.body.len().to_string(),
            file.path.display().to_string(),
        ]);
        entries.push(json!({
            "service_id": e.service_id,
            "timestamp": valid.timestamp,
            "body_len_bytes": valid.body.len(),
            "path": file.path,
        }));
    }
    text.push_str(&table(&["service", "timestamp", "bytes", "file"], &rows));
    let module = module.expect("a snapshot set holds the consensus module's entry");
    let sessions: Vec<Value> = module
        .sessions()
        .values()
        .map(|s| {
            json!({
                "session_id": s.id.0,
                "client": s.client.0,
                "correlation_id": s.correlation_id,
                "principal": String::from_utf8_lossy(&s.principal),
                "last_sequence": s.last_seq,
                "egress_sequence": s.egress_seq,
                "closing": s.closing.map(|r| format!("{r:?}")),
                "cached_replies": s.replies.len(),
            })
        })
        .collect();
    let timers: Vec<Value> = module
        .timers()
        .iter()
        .map(|(id, deadline, generation)| {
            json!({ "correlation_id": id, "deadline": deadline, "generation": generation })
        })
        .collect();
    let pending = module.pending_service_messages().count();
    let _ = writeln!(
        text,
        "consensus module: cluster time {}, {} sessions, {} timers, {} pending service messages",
        module.cluster_time(),
        sessions.len(),
        timers.len(),
        pending
    );
    if !sessions.is_empty() {
        let rows: Vec<Vec<String>> = module
            .sessions()
            .values()
            .map(|s| {
                vec![
                    s.id.0.to_string(),
                    s.client.0.to_string(),
                    String::from_utf8_lossy(&s.principal).into_owned(),
                    s.last_seq.to_string(),
                    s.egress_seq.to_string(),
                    s.replies.len().to_string(),
                    opt(s.closing.map(|r| format!("{r:?}"))),
                ]
            })
            .collect();
        text.push_str("sessions:\n");
        text.push_str(&table(
            &[
                "session",
                "client",
                "principal",
                "last_seq",
                "egress_seq",
                "replies",
                "closing",
            ],
            &rows,
        ));
    }
    if !timers.is_empty() {
        let rows: Vec<Vec<String>> = module
            .timers()
            .iter()
            .map(|(id, d, g)| vec![id.to_string(), d.to_string(), g.to_string()])
            .collect();
        text.push_str("timers:\n");
        text.push_str(&table(&["correlation_id", "deadline", "generation"], &rows));
    }
    let json = json!({
        "position": set.position,
        "term": set.term,
        "entries": entries,
        "module": {
            "cluster_time": module.cluster_time(),
            "sessions": sessions,
            "timers": timers,
            "pending_service_messages": pending,
        },
    });
    Ok(Outcome::ok(text, json))
}

/// Decodes the consensus module's snapshot body: a whole consensus `Snapshot` (module and
/// service parts, checksummed) or the bare module state.
fn decode_module(path: &std::path::Path, body: &[u8]) -> Result<ModuleState> {
    let limits = Limits {
        max_message_bytes: usize::MAX,
        reply_cache_entries: usize::MAX,
        reply_cache_bytes: usize::MAX,
        max_pending_service_messages: usize::MAX,
    };
    let wrapped = Snapshot::from_bytes(body.to_vec());
    let module_bytes = match &wrapped {
        Ok(s) => s.parts().module.to_vec(),
        Err(_) => body.to_vec(),
    };
    ModuleState::decode(&module_bytes, &limits).map_err(|e| {
        ToolError::corrupted(
            path,
            tandem_archive::SNAPSHOT_HEADER_LEN_BYTES,
            format!("consensus module snapshot does not decode: {e}"),
        )
    })
}
