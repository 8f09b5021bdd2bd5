//! Commands that read a node's control file or act through its control toggle: `pid`,
//! `is-leader`, `list-members`, `stat`, `errors`, and the actions (`snapshot`, `suspend`,
//! `resume`, `shutdown`, `abort`, `stop`, `purge-segments` on a running node).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tandem_cluster::control::{Action, ControlError, ControlFile, MemberRole, ResultCode};

use crate::error::{Result, ToolError};
use crate::inspect::election_state_name;
use crate::node_dir::NodeDir;
use crate::output::{Outcome, Status, opt, table};

/// `pid`: the running node's process id.
///
/// # Errors
/// [`ToolError::NotRunning`] when no node runs in the directory.
pub fn pid(dir: &NodeDir) -> Result<Outcome> {
    let liveness = dir.liveness()?;
    let pid = liveness
        .running_pid()
        .ok_or_else(|| ToolError::NotRunning {
            dir: dir.path().to_path_buf(),
            command: "pid",
            detail: liveness.not_running_detail(),
        })?;
    Ok(Outcome::ok(format!("{pid}\n"), json!({ "pid": pid })))
}

/// `is-leader`: exit 0 if this member leads, 1 if not.
///
/// # Errors
/// [`ToolError::NotRunning`].
pub fn is_leader(dir: &NodeDir) -> Result<Outcome> {
    let c = dir.require_running("is-leader")?;
    let role = c.role();
    let leader = role == Some(MemberRole::Leader);
    let role_name = role.map_or("unknown", MemberRole::name);
    let text = if leader {
        format!(
            "member {} is the leader (term {})\n",
            c.member_id(),
            c.term()
        )
    } else {
        format!(
            "member {} is not the leader: {role_name}, leader {} (term {})\n",
            c.member_id(),
            opt(c.leader_id()),
            c.term()
        )
    };
    Ok(Outcome {
        text,
        json: json!({
            "is_leader": leader,
            "role": role_name,
            "member_id": c.member_id(),
            "leader_id": c.leader_id(),
            "term": c.term(),
        }),
        status: if leader { Status::Ok } else { Status::No },
    })
}

/// `list-members`: every member, its client and peer endpoints, and what this one last knew
/// of it.
///
/// # Errors
/// No control file; a control file whose members area is damaged (naming the file and byte).
pub fn list_members(dir: &NodeDir) -> Result<Outcome> {
    let c = dir.control()?;
    let running = dir.is_running()?;
    let endpoints = c.member_endpoints()?;
    let me = c.member_id();
    let mut rows = Vec::new();
    let mut members = Vec::new();
    for id in 0..c.member_count() {
        let endpoint = endpoints.get(id);
        let client = endpoint.map(|e| e.client.to_string());
        let peer = endpoint.map(|e| e.peer.to_string());
        let p = c.member_progress(id).unwrap_or_default();
        let (append, commit) = if id == me {
            (c.append_position(), c.commit_position())
        } else {
            (p.append_position, p.commit_position)
        };
        let leader = c.leader_id() == Some(id);
        let last_heard = (id != me && p.last_heard_ns != 0).then_some(p.last_heard_ns);
        rows.push(vec![
            id.to_string(),
            if id == me { "self" } else { "" }.to_string()
                + if leader {
                    if id == me { ",leader" } else { "leader" }
                } else {
                    ""
                },
            client.clone().unwrap_or_else(|| "-".to_string()),
            peer.clone().unwrap_or_else(|| "-".to_string()),
            append.to_string(),
            commit.to_string(),
            opt(last_heard),
        ]);
        members.push(json!({
            "member_id": id,
            "self": id == me,
            "leader": leader,
            "endpoint": client,
            "peer_endpoint": peer,
            "append_position": append,
            "commit_position": commit,
            "last_heard_ns": last_heard,
        }));
    }
    let mut text = format!(
        "cluster {} member {} of {}, leader {}, term {}{}\n",
        c.cluster_id(),
        me,
        c.member_count(),
        opt(c.leader_id()),
        c.term(),
        if running {
            ""
        } else {
            " (node not running: last published values)"
        }
    );
    text.push_str(&table(
        &[
            "member",
            "role",
            "endpoint",
            "peer_endpoint",
            "append",
            "commit",
            "last_heard_ns",
        ],
        &rows,
    ));
    let json = json!({
        "cluster_id": c.cluster_id(),
        "member_id": me,
        "member_count": c.member_count(),
        "leader_id": c.leader_id(),
        "term": c.term(),
        "running": running,
        "members": members,
    });
    Ok(Outcome::ok(text, json))
}

/// The `stat` document of a control file; `running`: whether its node runs.
pub fn stat_outcome(c: &ControlFile, running: bool) -> Outcome {
    let counters: serde_json::Map<String, Value> = c
        .counters()
        .into_iter()
        .map(|(name, v)| (name.to_string(), json!(v)))
        .collect();
    let role = c.role().map_or("unknown", MemberRole::name);
    let mut text = String::new();
    let _ = writeln!(
        text,
        "member {} ({role}, term {}, leader {}, {}){}",
        c.member_id(),
        c.term(),
        opt(c.leader_id()),
        election_state_name(c.election_state()),
        if running { "" } else { " - node not running" }
    );
    let _ = writeln!(
        text,
        "positions: append {} commit {} durable {} log start {} snapshot {}",
        c.append_position(),
        c.commit_position(),
        c.durable_position(),
        c.log_start_position(),
        c.snapshot_position()
    );
    let rows: Vec<Vec<String>> = c
        .counters()
        .into_iter()
        .map(|(n, v)| vec![n.to_string(), v.to_string()])
        .collect();
    text.push_str(&table(&["counter", "value"], &rows));
    Outcome::ok(
        text,
        json!({
            "member_id": c.member_id(),
            "running": running,
            "role": role,
            "term": c.term(),
            "leader_id": c.leader_id(),
            "election_state": election_state_name(c.election_state()),
            "append_position": c.append_position(),
            "commit_position": c.commit_position(),
            "durable_position": c.durable_position(),
            "log_start_position": c.log_start_position(),
            "snapshot_position": c.snapshot_position(),
            "updated_ns": c.updated_ns(),
            "counters": counters,
        }),
    )
}

/// `errors`: the node's error log, newest first.
///
/// # Errors
/// No control file.
pub fn errors(dir: &NodeDir) -> Result<Outcome> {
    let c = dir.control()?;
    let records = c.errors();
    let mut text = format!(
        "{} errors recorded, {} kept\n",
        c.error_count(),
        records.len()
    );
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.index.to_string(),
                r.timestamp_ns.to_string(),
                r.code.to_string(),
                r.message.clone(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push_str(&table(&["index", "timestamp_ns", "code", "message"], &rows));
    }
    let json = json!({
        "error_count": c.error_count(),
        "errors": records.iter().map(|r| json!({
            "index": r.index,
            "timestamp_ns": r.timestamp_ns,
            "code": r.code,
            "message": r.message,
        })).collect::<Vec<_>>(),
    });
    Ok(Outcome::ok(text, json))
}

/// How long one look at the result slot lasts before the tool checks again whether the node
/// still runs.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// Sends `action` through the toggle and waits for the node's result.
///
/// For `stop`, `shutdown` and `abort` the node going away while the tool waits (its process
/// gone, or its directory lock released) counts as done (the result is `None`).
///
/// # Errors
/// [`ToolError::NotRunning`] (also when the node stops without answering any other action),
/// [`ToolError::Timeout`] (the request is withdrawn if the node has not taken it),
/// [`ToolError::Refused`], a busy toggle.
pub fn act(
    dir: &NodeDir,
    command: &'static str,
    action: Action,
    timeout: Duration,
) -> Result<(u64, Option<tandem_cluster::control::ActionResult>)> {
    let c = dir.require_running(command)?;
    let id = c.request(action)?;
    let stops = matches!(action, Action::Stop | Action::Shutdown | Action::Abort);
    let start = Instant::now();
    let waited = loop {
        let waited = start.elapsed();
        if waited >= timeout {
            break waited;
        }
        match c.wait_for(id, WAIT_SLICE.min(timeout - waited)) {
            Ok(r) => {
                return match r.code {
                    ResultCode::Ok => Ok((id.seq(), Some(r))),
                    code => Err(ToolError::Refused {
                        path: c.path().to_path_buf(),
                        action: action.name(),
                        request: id.seq(),
                        outcome: match code {
                            ResultCode::Rejected => "rejected",
                            ResultCode::Failed => "failed (see the node's error log)",
                            _ => "not supported",
                        },
                    }),
                };
            }
            Err(ControlError::OwnerDead { .. }) if stops => return Ok((id.seq(), None)),
            Err(ControlError::Timeout { .. }) => {
                // The process lives on but its node may have closed (lock released).
                if matches!(dir.is_running(), Ok(false)) {
                    if stops {
                        return Ok((id.seq(), None));
                    }
                    c.cancel(id);
                    return Err(ToolError::NotRunning {
                        dir: dir.path().to_path_buf(),
                        command,
                        detail: format!("the node stopped before completing request {}", id.seq()),
                    });
                }
            }
            Err(e) => {
                // Do not leave a request behind that the node would take later.
                c.cancel(id);
                return Err(e.into());
            }
        }
    };
    c.cancel(id);
    Err(ToolError::Timeout {
        path: c.path().to_path_buf(),
        action: action.name(),
        request: id.seq(),
        waited,
    })
}

/// `snapshot`, `suspend`, `resume`, `shutdown`, `abort`, `stop`.
///
/// # Errors
/// As [`act`].
pub fn action(
    dir: &NodeDir,
    command: &'static str,
    action: Action,
    timeout: Duration,
) -> Result<Outcome> {
    let (request, result) = act(dir, command, action, timeout)?;
    let exited = result.is_none();
    let (text, json) = match action {
        Action::Snapshot => {
            let position = result.map_or(0, |r| r.value);
            (
                format!("snapshot taken at position {position}\n"),
                json!({
                    "action": command, "request": request, "result": "ok",
                    "snapshot_position": position,
                }),
            )
        }
        _ => (
            format!(
                "{command}: done{}\n",
                if exited { " (node process exited)" } else { "" }
            ),
            json!({
                "action": command, "request": request, "result": "ok",
                "process_exited": exited,
            }),
        ),
    };
    Ok(Outcome::ok(text, json))
}

/// The log segments and snapshot files in a node directory: path, length, and whether it is
/// a segment. Files that vanish while listed are left out.
fn purgeable_files(dir: &NodeDir) -> Result<Vec<(std::path::PathBuf, u64, bool)>> {
    let mut files = Vec::new();
    if let Some(log) = crate::log_scan::LogFiles::open(dir.path())? {
        for path in log.segments().values() {
            if let Ok(m) = std::fs::metadata(path) {
                files.push((path.clone(), m.len(), true));
            }
        }
    }
    for f in crate::snapshot_scan::list(dir.path())? {
        files.push((f.path, f.file_len_bytes, false));
    }
    Ok(files)
}

/// `purge-segments` on a running node, through the toggle. The node reports the new log
/// start; what it removed is what the tool listed before and finds gone after.
///
/// # Errors
/// As [`act`].
pub fn purge_running(dir: &NodeDir, up_to: u64, timeout: Duration) -> Result<Outcome> {
    let before = purgeable_files(dir)?;
    let (request, result) = act(dir, "purge-segments", Action::Purge(up_to), timeout)?;
    let r = result.expect("purge never counts a vanished process as done");
    let after: std::collections::HashSet<_> = purgeable_files(dir)?
        .into_iter()
        .map(|(path, _, _)| path)
        .collect();
    let (mut segments, mut snapshots, mut bytes) = (0u64, 0u64, 0u64);
    for (path, len, segment) in &before {
        if !after.contains(path) {
            if *segment {
                segments += 1;
            } else {
                snapshots += 1;
            }
            bytes += len;
        }
    }
    let text = format!(
        "purge-segments (running node, request {request}): {segments} segments and {snapshots} snapshot files removed, {bytes} bytes; log now starts at {}\n",
        r.value
    );
    let json = json!({
        "mode": "running",
        "request": request,
        "segments_removed": segments,
        "snapshots_removed": snapshots,
        "bytes_removed": bytes,
        "start_position": r.value,
        "limit_position": Value::Null,
    });
    Ok(Outcome::ok(text, json))
}
