//! [`NodeConfig`]: one member's configuration, from CLI flags ([`NodeArgs`]) and an optional
//! TOML file ([`FileConfig`]); a flag overrides the file, the file overrides the default.
//!
//! ```toml
//! member-id = 0
//! members = "0=127.0.0.1:9010,1=127.0.0.1:9020,2=127.0.0.1:9030"
//! dir = "/var/lib/tandem/node-0"
//! cluster-id = 7
//! election-timeout-ms = 1000
//! heartbeat-interval-ms = 100
//! session-timeout-ms = 10000
//! idle = "backoff"          # spin | noop | yield | backoff[=spins,yields,min_ns,max_ns] | sleep-ns=N | sleep-ms=N
//! threading = "shared"      # dedicated | shared | cluster
//! cores = "0-1"
//! io = "std"                # std | uring
//! fsync = "none"            # none | batch | every
//! segment-len-bytes = 67108864
//! retained-snapshots = 2
//! bootstrap = true          # a new directory is a founding voter, not a learner
//! max-sessions = 1024       # connects beyond it are rejected (same value on every member)
//! max-unacked-egress = 4096 # replies a client may leave unacknowledged before it is closed
//! ```

use std::path::{Path, PathBuf};

use crate::agent::{CoreList, IdleStrategy, ThreadingMode};
use crate::transport::{IoMode, MemberEndpoints};
use clap::Parser;
use serde::Deserialize;
use tandem_archive::Durability;

use super::error::{NodeError, Result};

/// A member's configuration (validated).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's id (an index into `members`).
    pub member_id: u32,
    /// Every member's client endpoint (peers talk on PORT+1).
    pub members: MemberEndpoints,
    /// The node directory (archive, node state, snapshots, control file).
    pub dir: PathBuf,
    /// The cluster id, recorded in the directory and in every datagram.
    pub cluster_id: u64,
    /// Base election timeout.
    pub election_timeout_ms: u64,
    /// Leader heartbeat interval.
    pub heartbeat_interval_ms: u64,
    /// Client session timeout.
    pub session_timeout_ms: u64,
    /// What an agent thread does when a duty cycle found no work.
    pub idle: IdleStrategy,
    /// How agents map onto threads.
    pub threading: ThreadingMode,
    /// Cores to pin agent threads to, taken in order: `shared`, the member's thread takes
    /// the first; `dedicated`, the network agent's thread the first, the consensus agent's
    /// the second and the service agent's the third (a thread with no core in the list is
    /// not pinned).
    pub cores: Option<CoreList>,
    /// UDP path.
    pub io: IoMode,
    /// When log appends are made durable.
    pub fsync: Durability,
    /// Log segment length (a power of two, at least 64 KiB).
    pub segment_len_bytes: u64,
    /// Snapshot sets kept by purge.
    pub retained_snapshots: usize,
    /// A new directory starts as a founding voter (first start of a new cluster) instead of a
    /// learner. Never set it for a member whose directory was wiped.
    pub bootstrap: bool,
    /// Largest datagram this member sends (header included). It receives datagrams of any
    /// UDP size, so clients and other members may be configured with another value.
    pub mtu: usize,
    /// Most open client sessions; a connect beyond it is rejected with the reason
    /// `TooManySessions`. Give every member the same value (it decides replicated state).
    pub max_sessions: usize,
    /// Most replies a session's client may leave unacknowledged: a client that stops reading
    /// its egress is closed (`CloseReason::SlowConsumer`) once it falls further behind.
    pub max_unacked_egress: u64,
}

impl NodeConfig {
    /// A configuration with defaults for member `member_id` of `members` in `dir`.
    ///
    /// # Errors
    /// [`NodeError::Config`] if the members list does not parse or lacks `member_id`.
    pub fn new(member_id: u32, members: &str, dir: impl Into<PathBuf>) -> Result<Self> {
        let members = MemberEndpoints::parse(members)
            .map_err(|e| NodeError::Config(format!("members list {members:?}: {e}")))?;
        let cfg = Self {
            member_id,
            members,
            dir: dir.into(),
            cluster_id: 0,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            session_timeout_ms: 10_000,
            idle: IdleStrategy::backoff(),
            threading: ThreadingMode::Shared,
            cores: None,
            io: IoMode::Std,
            fsync: Durability::None,
            segment_len_bytes: tandem_archive::DEFAULT_SEGMENT_LEN_BYTES,
            retained_snapshots: tandem_archive::DEFAULT_RETAINED_SNAPSHOT_SETS,
            bootstrap: false,
            mtu: 1408,
            max_sessions: 1024,
            max_unacked_egress: 4096,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the values against each other.
    ///
    /// # Errors
    /// [`NodeError::Config`] naming the offending value.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(NodeError::Config(m));
        let n = self.members.len() as u32;
        if n == 0 || n > crate::consensus::Config::MAX_MEMBERS {
            return err(format!("{n} members: expected 1 to 15"));
        }
        if self.members.get(self.member_id).is_none() {
            return err(format!(
                "member id {} is not in the members list {}",
                self.member_id, self.members
            ));
        }
        for i in 0..n {
            if self.members.get(i).is_none() {
                return err(format!("member ids must be 0..{n}; {i} is missing"));
            }
        }
        if self.heartbeat_interval_ms == 0 || self.election_timeout_ms == 0 {
            return err("timeouts must be positive".into());
        }
        if self.heartbeat_interval_ms >= self.election_timeout_ms {
            return err(format!(
                "heartbeat interval {} ms must be below the election timeout {} ms",
                self.heartbeat_interval_ms, self.election_timeout_ms
            ));
        }
        if self.session_timeout_ms <= self.heartbeat_interval_ms {
            return err("session timeout must exceed the heartbeat interval".into());
        }
        if !self.segment_len_bytes.is_power_of_two()
            || self.segment_len_bytes < tandem_archive::MIN_SEGMENT_LEN_BYTES
        {
            return err(format!(
                "segment length {} must be a power of two of at least 64 KiB",
                self.segment_len_bytes
            ));
        }
        if self.retained_snapshots == 0 {
            return err("retained snapshots must be at least 1".into());
        }
        if !(256..=65507).contains(&self.mtu) {
            return err(format!("mtu {} must be in 256..=65507", self.mtu));
        }
        if self.max_sessions == 0 || self.max_unacked_egress == 0 {
            return err("max sessions and max unacknowledged egress must be at least 1".into());
        }
        Ok(())
    }

    /// Builds the configuration from parsed flags (reading `--config` if given).
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] if the file cannot be read or parsed;
    /// [`NodeError::Config`] for a missing or invalid value.
    pub fn from_args(args: &NodeArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let missing = |what: &str| NodeError::Config(format!("{what} is required (flag or file)"));
        let member_id = args
            .member_id
            .or(file.member_id)
            .ok_or_else(|| missing("--member-id"))?;
        let members = args
            .members
            .clone()
            .or(file.members.clone())
            .ok_or_else(|| missing("--members"))?;
        let dir = args
            .dir
            .clone()
            .or(file.dir.clone())
            .ok_or_else(|| missing("--dir"))?;
        let mut cfg = Self::new(member_id, &members, dir)?;
        macro_rules! pick {
            ($field:ident) => {
                if let Some(v) = args.$field.clone().or(file.$field.clone()) {
                    cfg.$field = v;
                }
            };
        }
        pick!(cluster_id);
        pick!(election_timeout_ms);
        pick!(heartbeat_interval_ms);
        pick!(session_timeout_ms);
        pick!(segment_len_bytes);
        pick!(retained_snapshots);
        pick!(mtu);
        pick!(max_sessions);
        pick!(max_unacked_egress);
        if let Some(v) = args.idle.as_ref().or(file.idle.as_ref()) {
            cfg.idle = v
                .parse()
                .map_err(|e| NodeError::Config(format!("idle strategy: {e}")))?;
        }
        if let Some(v) = args.threading.as_ref().or(file.threading.as_ref()) {
            cfg.threading = v
                .parse()
                .map_err(|e| NodeError::Config(format!("threading mode: {e}")))?;
        }
        if let Some(v) = args.cores.as_ref().or(file.cores.as_ref()) {
            cfg.cores = Some(
                v.parse()
                    .map_err(|e| NodeError::Config(format!("cores: {e}")))?,
            );
        }
        if let Some(v) = args.io.as_ref().or(file.io.as_ref()) {
            cfg.io = v
                .parse()
                .map_err(|e| NodeError::Config(format!("io mode: {e}")))?;
        }
        if let Some(v) = args.fsync.as_ref().or(file.fsync.as_ref()) {
            cfg.fsync = v
                .parse()
                .map_err(|e| NodeError::Config(format!("fsync: {e}")))?;
        }
        cfg.bootstrap = args.bootstrap || file.bootstrap.unwrap_or(false);
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses `argv` (including the program name) into a configuration.
    ///
    /// # Errors
    /// As [`NodeConfig::from_args`]; a clap usage error is reported as [`NodeError::Config`].
    pub fn parse_from<I, T>(argv: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = NodeArgs::try_parse_from(argv).map_err(|e| NodeError::Config(e.to_string()))?;
        Self::from_args(&args)
    }

    /// Consensus core configuration derived from this one.
    pub fn core_config(&self) -> crate::consensus::Config {
        let ms = 1_000_000i64;
        let mut c = crate::consensus::Config::new(
            crate::consensus::MemberId(self.member_id),
            self.members.len() as u32,
        );
        c.election_timeout_ns = self.election_timeout_ms as i64 * ms;
        c.heartbeat_interval_ns = self.heartbeat_interval_ms as i64 * ms;
        c.session_timeout_ns = self.session_timeout_ms as i64 * ms;
        c.max_sessions = self.max_sessions;
        c.max_unacked_egress = self.max_unacked_egress;
        c.max_reply_batch_bytes = self.mtu - crate::transport::frame::HEADER_LEN;
        c
    }
}

/// Command-line flags of a node (every value optional here; required ones are checked when
/// merged with the file).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "tandem-node", about = "Runs one Tandem cluster member")]
pub struct NodeArgs {
    /// TOML file with any of the settings below (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This member's id.
    #[arg(long)]
    pub member_id: Option<u32>,
    /// Members list: `0=HOST:PORT,1=HOST:PORT,...` (client ports; peers use PORT+1).
    #[arg(long)]
    pub members: Option<String>,
    /// Node directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Cluster id.
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// Election timeout in milliseconds.
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Heartbeat interval in milliseconds.
    #[arg(long)]
    pub heartbeat_interval_ms: Option<u64>,
    /// Session timeout in milliseconds.
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,
    /// Idle strategy: spin, noop, yield, backoff, sleep-ns=N, sleep-ms=N.
    #[arg(long)]
    pub idle: Option<String>,
    /// Threading mode: dedicated, shared, cluster.
    #[arg(long)]
    pub threading: Option<String>,
    /// Cores to pin to, e.g. `0,1` or `0-3`.
    #[arg(long)]
    pub cores: Option<String>,
    /// UDP path: std or uring.
    #[arg(long)]
    pub io: Option<String>,
    /// Log durability: none, batch, every.
    #[arg(long)]
    pub fsync: Option<String>,
    /// Log segment length in bytes.
    #[arg(long)]
    pub segment_len_bytes: Option<u64>,
    /// Snapshot sets kept by purge.
    #[arg(long)]
    pub retained_snapshots: Option<usize>,
    /// Largest datagram in bytes.
    #[arg(long)]
    pub mtu: Option<usize>,
    /// Most open client sessions (the same on every member).
    #[arg(long)]
    pub max_sessions: Option<usize>,
    /// Most replies a client may leave unacknowledged before it is closed as a slow consumer.
    #[arg(long)]
    pub max_unacked_egress: Option<u64>,
    /// Initialise a new directory as a founding voter (first start of a new cluster).
    #[arg(long)]
    pub bootstrap: bool,
}

/// The optional TOML configuration file (kebab-case keys, every key optional, unknown keys
/// refused).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    /// See [`NodeConfig::member_id`].
    pub member_id: Option<u32>,
    /// See [`NodeConfig::members`].
    pub members: Option<String>,
    /// See [`NodeConfig::dir`].
    pub dir: Option<PathBuf>,
    /// See [`NodeConfig::cluster_id`].
    pub cluster_id: Option<u64>,
    /// See [`NodeConfig::election_timeout_ms`].
    pub election_timeout_ms: Option<u64>,
    /// See [`NodeConfig::heartbeat_interval_ms`].
    pub heartbeat_interval_ms: Option<u64>,
    /// See [`NodeConfig::session_timeout_ms`].
    pub session_timeout_ms: Option<u64>,
    /// See [`NodeConfig::idle`].
    pub idle: Option<String>,
    /// See [`NodeConfig::threading`].
    pub threading: Option<String>,
    /// See [`NodeConfig::cores`].
    pub cores: Option<String>,
    /// See [`NodeConfig::io`].
    pub io: Option<String>,
    /// See [`NodeConfig::fsync`].
    pub fsync: Option<String>,
    /// See [`NodeConfig::segment_len_bytes`].
    pub segment_len_bytes: Option<u64>,
    /// See [`NodeConfig::retained_snapshots`].
    pub retained_snapshots: Option<usize>,
    /// See [`NodeConfig::mtu`].
    pub mtu: Option<usize>,
    /// See [`NodeConfig::max_sessions`].
    pub max_sessions: Option<usize>,
    /// See [`NodeConfig::max_unacked_egress`].
    pub max_unacked_egress: Option<u64>,
    /// See [`NodeConfig::bootstrap`].
    pub bootstrap: Option<bool>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// [`NodeError::ConfigFile`] naming the file and the problem (line and column from the
    /// parser).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| NodeError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| NodeError::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBERS: &str = "0=127.0.0.1:9010,1=127.0.0.1:9020,2=127.0.0.1:9030";

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            format!(
                "member-id = 1\nmembers = \"{MEMBERS}\"\ndir = \"/tmp/x\"\nfsync = \"batch\"\nidle = \"yield\"\nmax-sessions = 8\nmax-unacked-egress = 100\n"
            ),
        )
        .unwrap();
        let cfg = NodeConfig::parse_from([
            "tandem-node",
            "--config",
            file.to_str().unwrap(),
            "--idle",
            "sleep-ms=1",
            "--threading",
            "dedicated",
            "--max-unacked-egress",
            "50",
        ])
        .unwrap();
        assert_eq!(cfg.max_sessions, 8);
        assert_eq!(cfg.max_unacked_egress, 50);
        assert_eq!(cfg.core_config().max_sessions, 8);
        assert_eq!(cfg.core_config().max_unacked_egress, 50);
        assert_eq!(cfg.member_id, 1);
        assert_eq!(cfg.fsync, Durability::Batch);
        assert_eq!(
            cfg.idle,
            IdleStrategy::Sleeping(std::time::Duration::from_millis(1))
        );
        assert_eq!(cfg.threading, ThreadingMode::Dedicated);
        assert_eq!(cfg.members.len(), 3);
    }

    #[test]
    fn errors_are_clear() {
        let e = NodeConfig::parse_from(["tandem-node", "--members", MEMBERS]).unwrap_err();
        assert!(e.to_string().contains("--member-id is required"), "{e}");
        let e = NodeConfig::parse_from([
            "tandem-node",
            "--member-id",
            "5",
            "--members",
            MEMBERS,
            "--dir",
            "/tmp/x",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("member id 5"), "{e}");
        let e = NodeConfig::parse_from([
            "tandem-node",
            "--member-id",
            "0",
            "--members",
            MEMBERS,
            "--dir",
            "/tmp/x",
            "--fsync",
            "sometimes",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("fsync"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "member-idd = 1\n").unwrap();
        let e = FileConfig::load(&file).unwrap_err();
        assert!(e.to_string().contains("bad.toml"), "{e}");
    }
}
