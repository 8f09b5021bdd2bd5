//! Tandem operator tools: the `cluster-tool` binary (DESIGN §7).
//!
//! `cluster-tool <node-dir> <command> [options] [--json]` reads a member's control file,
//! node state, recording log, log and snapshots, and acts through the control toggle.
//! Every command prints text, or one JSON document with `--json`; exit status 0 on
//! success, 1 where the command answers "no", 2 with one line on stderr on failure.
//!
//! Commands that only read never change a byte of the directory (they work on a running
//! node): the log and snapshot files are read with plain reads by [`log_scan`] and
//! [`snapshot_scan`] rather than through the archive's recovering `open`s. Commands that
//! write (`invalidate-latest-snapshot`, `seed-recording-log-from-snapshot`, offline
//! `purge-segments`) refuse while a node runs and hold the directory's lock meanwhile.
#![warn(missing_docs)]

pub mod cli;
mod error;
pub mod inspect;
pub mod live;
pub mod log_scan;
pub mod node_dir;
pub mod offline;
pub mod output;
pub mod snapshot_scan;

pub use error::{Result, ToolError};
