//! The command line: `cluster-tool <node-dir> <command> [options] [--json]`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tandem_cluster::control::Action;

use crate::error::{Result, ToolError};
use crate::node_dir::NodeDir;
use crate::output::{Outcome, Status};
use crate::{inspect, live, offline};

/// Operate a Tandem cluster member from the shell.
///
/// Exit status: 0 success; 1 when the command answers "no" (`is-leader` on a follower);
/// 2 on any failure, with one line on stderr.
#[derive(Debug, Parser)]
#[command(name = "cluster-tool", version)]
pub struct Cli {
    /// The member's directory.
    pub node_dir: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in the control file and node state, and a summary of the recording log,
    /// log and snapshots.
    Describe,
    /// The node's process id.
    Pid,
    /// Exit 0 if this member is the leader, 1 if not.
    IsLeader,
    /// Members, the leader, and each member's last known positions.
    ListMembers,
    /// Every recording-log entry.
    RecordingLog,
    /// The snapshot set and log range a restart would use.
    RecoveryPlan,
    /// Cluster-wide snapshot (forwarded to the leader); prints the snapshot position.
    Snapshot {
        /// Seconds to wait for every service to snapshot.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Marks the newest snapshot set invalid (stopped node only).
    InvalidateLatestSnapshot,
    /// Rewrites the recording log to start from the newest valid snapshot (stopped node
    /// only; the old file is kept as a backup).
    SeedRecordingLogFromSnapshot,
    /// Deletes log segments and snapshot files beyond retention on this member (running:
    /// through the control toggle; stopped: directly).
    PurgeSegments {
        /// Purge no log at or above this position (default: as far as retention allows).
        #[arg(long)]
        up_to: Option<u64>,
        /// Seconds to wait for a running node.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Suspends the service cluster-wide.
    Suspend {
        /// Seconds to wait.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Resumes a suspended service cluster-wide.
    Resume {
        /// Seconds to wait.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Snapshot, then every member stops.
    Shutdown {
        /// Seconds to wait.
        #[arg(long, default_value_t = 60.0)]
        timeout: f64,
    },
    /// Every member stops now, without a snapshot.
    Abort {
        /// Seconds to wait.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// This member stops, handing over leadership first if it leads.
    Stop {
        /// Seconds to wait.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// The node's error log, newest first.
    Errors,
    /// Counters and positions.
    Stat {
        /// Refresh in place every this many seconds until interrupted.
        #[arg(long)]
        watch: Option<f64>,
    },
    /// Checks every frame, snapshot, the node state and the recording log.
    Verify,
    /// Log frames in readable form (position, type, term, session, sequence, timestamp,
    /// payload length).
    Dump {
        /// First frame position (default: the log start).
        #[arg(long)]
        from: Option<u64>,
        /// At most this many frames.
        #[arg(long)]
        count: Option<u64>,
    },
    /// What the consensus module's newest snapshot holds (sessions, timers).
    DescribeLatestSnapshot,
}

fn seconds(s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| ToolError::Invalid(format!("{s} is not a number of seconds")))
}

/// Runs one command and returns its outcome. `stat --watch` prints through `out` itself
/// and never returns unless printing fails.
///
/// # Errors
/// Every failure of the command.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<Outcome> {
    let dir = NodeDir::open(&cli.node_dir)?;
    match &cli.command {
        Command::Describe => inspect::describe(&dir),
        Command::Pid => live::pid(&dir),
        Command::IsLeader => live::is_leader(&dir),
        Command::ListMembers => live::list_members(&dir),
        Command::RecordingLog => inspect::recording_log(&dir),
        Command::RecoveryPlan => inspect::recovery_plan(&dir),
        Command::Snapshot { timeout } => {
            live::action(&dir, "snapshot", Action::Snapshot, seconds(*timeout)?)
        }
        Command::InvalidateLatestSnapshot => offline::invalidate_latest_snapshot(&dir),
        Command::SeedRecordingLogFromSnapshot => offline::seed_recording_log(&dir),
        Command::PurgeSegments { up_to, timeout } => {
            let up_to = up_to.unwrap_or(u64::MAX);
            let timeout = seconds(*timeout)?;
            if dir.liveness()?.running_pid().is_some() {
                live::purge_running(&dir, up_to, timeout)
            } else {
                offline::purge_offline(&dir, up_to)
            }
        }
        Command::Suspend { timeout } => {
            live::action(&dir, "suspend", Action::Suspend, seconds(*timeout)?)
        }
        Command::Resume { timeout } => {
            live::action(&dir, "resume", Action::Resume, seconds(*timeout)?)
        }
        Command::Shutdown { timeout } => {
            live::action(&dir, "shutdown", Action::Shutdown, seconds(*timeout)?)
        }
        Command::Abort { timeout } => {
            live::action(&dir, "abort", Action::Abort, seconds(*timeout)?)
        }
        Command::Stop { timeout } => live::action(&dir, "stop", Action::Stop, seconds(*timeout)?),
        Command::Errors => live::errors(&dir),
        Command::Stat { watch: None } => {
            let control = dir.control()?;
            Ok(live::stat_outcome(&control, dir.is_running()?))
        }
        Command::Stat { watch: Some(s) } => {
            let period = seconds(*s)?;
            let control = dir.control()?;
            loop {
                // A failed lock probe (a node starting) is shown as not running this time.
                let o = live::stat_outcome(&control, dir.is_running().unwrap_or(false));
                let written = if cli.json {
                    writeln!(out, "{}", o.json)
                } else {
                    // Home the cursor and clear the screen: refreshed in place.
                    write!(out, "\x1b[H\x1b[2J{}", o.text)
                };
                written
                    .and_then(|()| out.flush())
                    .map_err(|e| ToolError::io("write", "stdout", e))?;
                std::thread::sleep(period);
            }
        }
        Command::Verify => inspect::verify(&dir),
        Command::Dump { from, count } => inspect::dump(&dir, *from, *count),
        Command::DescribeLatestSnapshot => inspect::describe_latest_snapshot(&dir),
    }
}

/// Prints an outcome and returns the process exit status (0, 1 or 2).
pub fn finish(
    result: Result<Outcome>,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32 {
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "cluster-tool: {e}");
            return 2;
        }
    };
    let printed = if json {
        serde_json::to_string_pretty(&outcome.json)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}"))
    } else {
        write!(out, "{}", outcome.text)
    };
    if let Err(e) = printed.and_then(|()| out.flush()) {
        let _ = writeln!(err, "cluster-tool: write output: {e}");
        return 2;
    }
    match outcome.status {
        Status::Ok => 0,
        Status::No => 1,
        Status::Failed(e) => {
            let _ = writeln!(err, "cluster-tool: {e}");
            2
        }
    }
}
