//! The command line ([`Cli`]) and the validated run settings ([`Settings`]).
//!
//! Parsers for idle strategies, threading modes, core lists, io paths and durability are the
//! node's own (`tandem_cluster::agent`, `tandem_cluster::transport`, `tandem_archive`), so a
//! flag means exactly what it means to `tandem-node`. A flag clap cannot parse is a usage
//! error (exit code 2, clap's message); values that parse but make no sense together are
//! [`BenchError::Usage`] (also exit code 2).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tandem_archive::Durability;
use tandem_cluster::agent::{CoreList, IdleStrategy, ThreadingMode};
use tandem_cluster::node::NodeArgs;
use tandem_cluster::transport::IoMode;

use super::error::{BenchError, Result};

/// Largest message a client may send (the consensus core's `max_message_bytes`).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Most unacknowledged messages per client (the cluster's reply cache holds 64 per session).
pub const MAX_WINDOW: usize = 64;
/// Default `--mtu`: what a member and a client use unless configured (as Aeron's default).
pub const DEFAULT_MTU: usize = 1408;
/// Smallest `--mtu` (a member's least).
pub const MIN_MTU: usize = 256;
/// Largest `--mtu` (the largest UDP payload over IPv4).
pub const MAX_MTU: usize = 65507;
/// Most clients in one run.
pub const MAX_CLIENTS: usize = 64;
/// Highest offered rate (the open-loop schedule's resolution is 1 ns per message).
pub const MAX_RATE: u64 = 100_000_000;
/// Longest duration or warm-up.
pub const MAX_SECONDS: f64 = 24.0 * 3600.0;

/// `cluster-bench`: end-to-end latency and throughput of a Tandem cluster, beside the floor of
/// the same transport measured in the same run (and, with a cargo feature, beside a peer).
#[derive(Debug, Parser)]
#[command(
    name = "cluster-bench",
    about = "End-to-end latency and throughput of a Tandem cluster, beside the transport's floor",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Internal sub-commands.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The benchmark's flags.
    #[command(flatten)]
    pub bench: BenchArgs,
}

/// Internal sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One member of a `--processes` run (started by cluster-bench itself; exits when its
    /// standard input closes).
    #[command(hide = true)]
    Member(NodeArgs),
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Open-loop round trips at `--rate`, corrected for coordinated omission.
    Latency,
    /// The highest sustained rate of client messages, each with its own reply.
    Throughput,
}

impl Mode {
    /// The flag value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Throughput => "throughput",
        }
    }
}

/// Which transport the members, the clients and the floor use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// UDP sockets on loopback.
    Udp,
    /// The in-process transport (`InProcHub`): in-memory queues, no sockets.
    Ipc,
}

impl TransportKind {
    /// The flag value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Ipc => "ipc",
        }
    }
}

/// A peer measured beside Tandem in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerKind {
    /// openraft, 3 members in one process on a single-threaded runtime (feature
    /// `peer-openraft`).
    Openraft,
    /// Aeron's own UDP or IPC ping-pong, embedded driver (feature `peer-aeron`).
    AeronTransport,
}

impl PeerKind {
    /// The flag value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Openraft => "openraft",
            Self::AeronTransport => "aeron-transport",
        }
    }

    /// The cargo feature that builds the peer.
    #[must_use]
    pub fn feature(self) -> &'static str {
        match self {
            Self::Openraft => "peer-openraft",
            Self::AeronTransport => "peer-aeron",
        }
    }

    /// Whether this binary was built with the peer.
    #[must_use]
    pub fn built(self) -> bool {
        match self {
            Self::Openraft => cfg!(feature = "peer-openraft"),
            Self::AeronTransport => cfg!(feature = "peer-aeron"),
        }
    }
}

fn parse_cluster_size(s: &str) -> Result<u32, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        "5" => Ok(5),
        other => Err(format!("{other:?} is not a cluster size: use 1, 3 or 5")),
    }
}

fn parse_idle(s: &str) -> Result<String, String> {
    s.parse::<IdleStrategy>()
        .map(|_| s.trim().to_owned())
        .map_err(|e| e.to_string())
}

fn parse_threading(s: &str) -> Result<ThreadingMode, String> {
    s.parse()
        .map_err(|e: tandem_cluster::agent::AgentError| e.to_string())
}

fn parse_cores(s: &str) -> Result<CoreList, String> {
    s.parse()
        .map_err(|e: tandem_cluster::agent::AgentError| e.to_string())
}

fn parse_io(s: &str) -> Result<IoMode, String> {
    s.parse()
        .map_err(|e: tandem_cluster::transport::TransportError| e.to_string())
}

fn parse_fsync(s: &str) -> Result<Durability, String> {
    s.parse()
        .map_err(|e: tandem_archive::ArchiveError| e.to_string())
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || !(0.0..=MAX_SECONDS).contains(&v) {
        return Err(format!("{s} s is outside 0..={MAX_SECONDS} s"));
    }
    Ok(v)
}

/// The benchmark's flags (see `cluster-bench --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum, default_value = "latency")]
    pub mode: Mode,
    /// Members in the cluster: 1, 3 or 5.
    #[arg(long, default_value = "3", value_parser = parse_cluster_size)]
    pub cluster_size: u32,
    /// Transport between members, clients and the floor's endpoints.
    #[arg(long, value_enum, default_value = "udp")]
    pub transport: TransportKind,
    /// UDP path: std or uring.
    #[arg(long, default_value = "std", value_parser = parse_io)]
    pub io: IoMode,
    /// Threading mode: cluster (one thread drives every member and the clients), shared (one
    /// thread per member), dedicated (three threads per member: network, consensus,
    /// service). Default: cluster, or shared with --processes.
    #[arg(long, value_parser = parse_threading)]
    pub threading: Option<ThreadingMode>,
    /// Each member in its own OS process (udp only; shared or dedicated threading).
    #[arg(long)]
    pub processes: bool,
    /// Idle strategy of every thread: spin, noop, yield, backoff, sleep-ns=N.
    #[arg(long, default_value = "backoff", value_parser = parse_idle)]
    pub idle: String,
    /// Cores to pin to, e.g. `0-3`: members take the first ones in order (one each with
    /// shared threading, three each with dedicated: network, consensus, service), the client
    /// thread the next (with cluster threading: the one thread takes the first).
    #[arg(long, value_parser = parse_cores)]
    pub cores: Option<CoreList>,
    /// Log durability: none, batch, every.
    #[arg(long, default_value = "none", value_parser = parse_fsync)]
    pub fsync: Durability,
    /// Message size in bytes (replies are the same size).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Offered rate in messages per second (latency mode).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Measured seconds (fractions allowed).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub duration: f64,
    /// Warm-up seconds before the measurement (not recorded).
    #[arg(long, default_value = "2", value_parser = parse_seconds)]
    pub warmup: f64,
    /// Write the results as one JSON document here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the cluster's histogram here in HdrHistogram's percentile-distribution format
    /// (µs); the floor's and the peer's go beside it (`NAME.floor.hgrm`, `NAME.peer.hgrm`).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Draw latency by percentile (log percentile axis) of cluster, floor and peer as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also run a peer in the same run: openraft or aeron-transport (cargo features
    /// `peer-openraft`, `peer-aeron`).
    #[arg(long, value_enum)]
    pub peer: Option<PeerKind>,
    /// Take a cluster-wide snapshot this many seconds into the measurement and report the
    /// p99.9 before it and from it on.
    #[arg(long, value_parser = parse_seconds)]
    pub snapshot_at: Option<f64>,
    /// Client sessions (default: 1 in latency mode, 4 in throughput mode); messages go to
    /// them in turn.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Most unacknowledged messages per client (at most 64, the cluster's reply cache).
    #[arg(long, default_value_t = MAX_WINDOW)]
    pub window: usize,
    /// Log segment length in bytes (a power of two, at least 64 KiB).
    #[arg(long, default_value_t = tandem_archive::DEFAULT_SEGMENT_LEN_BYTES)]
    pub segment_len_bytes: u64,
    /// Largest UDP datagram, header included, of the members, the clients and the floor's
    /// endpoints (Aeron's default is 1408 too; loopback carries up to 65507). A client batch
    /// holds at most 64 messages and what fits in one datagram; a longer message is sent in
    /// fragments.
    #[arg(long, default_value_t = DEFAULT_MTU)]
    pub mtu: usize,
    /// Directory for the members' directories (default: a new one under the system temp
    /// directory, removed at the end).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Validated settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What is measured.
    pub mode: Mode,
    /// Members.
    pub cluster_size: u32,
    /// Transport.
    pub transport: TransportKind,
    /// UDP path.
    pub io: IoMode,
    /// Threading mode.
    pub threading: ThreadingMode,
    /// Members in their own processes.
    pub processes: bool,
    /// Idle strategy of every thread.
    pub idle: IdleStrategy,
    /// The `--idle` text (handed to peers).
    pub idle_text: String,
    /// Cores to pin to.
    pub cores: Option<CoreList>,
    /// Log durability.
    pub fsync: Durability,
    /// Message size.
    pub size: usize,
    /// Offered rate (latency mode).
    pub rate: u64,
    /// Measured time.
    pub duration: Duration,
    /// Warm-up time.
    pub warmup: Duration,
    /// JSON output file.
    pub json: Option<PathBuf>,
    /// `.hgrm` output file (cluster).
    pub hgrm: Option<PathBuf>,
    /// SVG plot file.
    pub plot: Option<PathBuf>,
    /// Peer to run.
    pub peer: Option<PeerKind>,
    /// When to take a snapshot, from the start of the measurement.
    pub snapshot_at: Option<Duration>,
    /// Client sessions.
    pub clients: usize,
    /// Window per client.
    pub window: usize,
    /// Log segment length.
    pub segment_len_bytes: u64,
    /// Largest UDP datagram.
    pub mtu: usize,
    /// Base directory for the members.
    pub dir: Option<PathBuf>,
}

impl Settings {
    /// Checks the flags against each other.
    ///
    /// # Errors
    /// [`BenchError::Usage`] naming the offending flag; [`BenchError::PeerNotBuilt`] for a peer
    /// this binary was built without.
    pub fn from_args(a: &BenchArgs) -> Result<Self> {
        let usage = |m: String| Err(BenchError::Usage(m));
        if a.size == 0 || a.size > MAX_MESSAGE_BYTES {
            return usage(format!(
                "--size {} must be in 1..={MAX_MESSAGE_BYTES} bytes",
                a.size
            ));
        }
        if a.rate == 0 || a.rate > MAX_RATE {
            return usage(format!(
                "--rate {} must be in 1..={MAX_RATE} messages/s",
                a.rate
            ));
        }
        if a.duration <= 0.0 {
            return usage("--duration must be above 0 s".into());
        }
        let clients = a.clients.unwrap_or(match a.mode {
            Mode::Latency => 1,
            Mode::Throughput => 4,
        });
        if clients == 0 || clients > MAX_CLIENTS {
            return usage(format!("--clients {clients} must be in 1..={MAX_CLIENTS}"));
        }
        if a.window == 0 || a.window > MAX_WINDOW {
            return usage(format!(
                "--window {} must be in 1..={MAX_WINDOW} (the cluster's reply cache per session)",
                a.window
            ));
        }
        let threading = a.threading.unwrap_or(if a.processes {
            ThreadingMode::Shared
        } else {
            ThreadingMode::Cluster
        });
        if a.processes && a.transport == TransportKind::Ipc {
            return usage("--processes needs --transport udp (ipc is in-process only)".into());
        }
        if a.processes && threading == ThreadingMode::Cluster {
            return usage(
                "--processes needs --threading shared or dedicated (cluster threading drives \
                 every member from one thread)"
                    .into(),
            );
        }
        if let Some(cores) = &a.cores {
            cores
                .check()
                .map_err(|e| BenchError::Usage(format!("--cores: {e}")))?;
        }
        if !a.segment_len_bytes.is_power_of_two()
            || a.segment_len_bytes < tandem_archive::MIN_SEGMENT_LEN_BYTES
        {
            return usage(format!(
                "--segment-len-bytes {} must be a power of two of at least 64 KiB",
                a.segment_len_bytes
            ));
        }
        if !(MIN_MTU..=MAX_MTU).contains(&a.mtu) {
            return usage(format!(
                "--mtu {} must be in {MIN_MTU}..={MAX_MTU} bytes",
                a.mtu
            ));
        }
        let snapshot_at = match a.snapshot_at {
            Some(s) if s <= 0.0 || s >= a.duration => {
                return usage(format!(
                    "--snapshot-at {s} must fall inside the measurement (0 < S < --duration {})",
                    a.duration
                ));
            }
            Some(s) => Some(Duration::from_secs_f64(s)),
            None => None,
        };
        if let Some(peer) = a.peer {
            if !peer.built() {
                return Err(BenchError::PeerNotBuilt {
                    peer: peer.name(),
                    feature: peer.feature(),
                });
            }
            if peer == PeerKind::AeronTransport && a.mode == Mode::Throughput {
                return usage(
                    "--peer aeron-transport is a ping-pong: use it with --mode latency".into(),
                );
            }
        }
        let idle = a
            .idle
            .parse()
            .map_err(|e| BenchError::Usage(format!("--idle: {e}")))?;
        Ok(Self {
            mode: a.mode,
            cluster_size: a.cluster_size,
            transport: a.transport,
            io: a.io,
            threading,
            processes: a.processes,
            idle,
            idle_text: a.idle.clone(),
            cores: a.cores.clone(),
            fsync: a.fsync,
            size: a.size,
            rate: a.rate,
            duration: Duration::from_secs_f64(a.duration),
            warmup: Duration::from_secs_f64(a.warmup),
            json: a.json.clone(),
            hgrm: a.hgrm.clone(),
            plot: a.plot.clone(),
            peer: a.peer,
            snapshot_at,
            clients,
            window: a.window,
            segment_len_bytes: a.segment_len_bytes,
            mtu: a.mtu,
            dir: a.dir.clone(),
        })
    }

    /// The core the `index`-th pinned thread takes, if `--cores` names one.
    #[must_use]
    pub fn core(&self, index: usize) -> Option<usize> {
        self.cores.as_ref().and_then(|c| c.get(index))
    }

    /// Threads of one member that take a core of their own: three with dedicated threading
    /// (network, consensus, service), one otherwise.
    #[must_use]
    pub fn threads_per_member(&self) -> usize {
        match self.threading {
            ThreadingMode::Dedicated => 3,
            ThreadingMode::Shared | ThreadingMode::Cluster => 1,
        }
    }

    /// The cores member `id`'s threads are pinned to (in the node's order: network,
    /// consensus, service), if `--cores` names any for it.
    #[must_use]
    pub fn member_cores(&self, id: u32) -> Option<CoreList> {
        let per = self.threads_per_member();
        let first = id as usize * per;
        let cores: Vec<usize> = (first..first + per).map_while(|i| self.core(i)).collect();
        (!cores.is_empty()).then(|| CoreList::from(cores))
    }

    /// The core of the benchmark's own thread (clients, floor pinger, peers): the one after
    /// the members' (the first with cluster threading, whose one thread runs everything).
    #[must_use]
    pub fn bench_core(&self) -> Option<usize> {
        match self.threading {
            ThreadingMode::Cluster => self.core(0),
            ThreadingMode::Shared | ThreadingMode::Dedicated => {
                self.core(self.cluster_size as usize * self.threads_per_member())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Settings, String> {
        let cli = Cli::try_parse_from(std::iter::once("cluster-bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        Settings::from_args(&cli.bench).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_safe_on_two_cores() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.threading, ThreadingMode::Cluster);
        assert_eq!(s.idle, IdleStrategy::backoff());
        assert_eq!(s.cluster_size, 3);
        assert_eq!(s.clients, 1);
        assert_eq!(s.mtu, 1408);
        let s = parse(&["--processes"]).unwrap();
        assert_eq!(s.threading, ThreadingMode::Shared);
    }

    #[test]
    fn contradictions_are_usage_errors() {
        for (args, needle) in [
            (&["--cluster-size", "4"][..], "cluster size"),
            (&["--size", "0"][..], "--size"),
            (&["--rate", "0"][..], "--rate"),
            (&["--processes", "--transport", "ipc"][..], "--processes"),
            (
                &["--processes", "--threading", "cluster"][..],
                "--processes",
            ),
            (&["--idle", "sometimes"][..], "sometimes"),
            (&["--snapshot-at", "20"][..], "--snapshot-at"),
            (&["--window", "65"][..], "--window"),
            (&["--duration", "-1"][..], "-1"),
            (&["--mtu", "255"][..], "--mtu 255"),
            (&["--mtu", "65508"][..], "--mtu 65508"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn dedicated_members_take_three_cores_each_and_the_clients_the_next() {
        // Core lists set directly: `--cores` is checked against this machine's cores.
        let with = |args: &[&str], cores: &[usize]| {
            let mut s = parse(args).unwrap();
            s.cores = Some(CoreList::from(cores.to_vec()));
            s
        };
        let s = with(
            &["--threading", "dedicated"],
            &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        );
        assert_eq!(s.member_cores(0).unwrap().as_slice(), &[2, 3, 4]);
        assert_eq!(s.member_cores(2).unwrap().as_slice(), &[8, 9, 10]);
        assert_eq!(s.bench_core(), Some(11));
        let s = with(&["--threading", "shared"], &[0, 1, 2, 3]);
        assert_eq!(s.member_cores(1).unwrap().as_slice(), &[1]);
        assert_eq!(s.bench_core(), Some(3));
        let s = with(&["--threading", "dedicated"], &[0, 1, 2, 3, 4]);
        assert_eq!(s.member_cores(1).unwrap().as_slice(), &[3, 4]);
        assert!(s.member_cores(2).is_none());
        assert_eq!(s.bench_core(), None);
        let s = with(&[], &[5]);
        assert_eq!(s.bench_core(), Some(5));
        assert!(parse(&[]).unwrap().member_cores(0).is_none());
    }

    #[test]
    fn idle_keeps_its_text_for_peers() {
        let s = parse(&["--idle", "sleep-ns=1000"]).unwrap();
        assert_eq!(s.idle_text, "sleep-ns=1000");
        assert_eq!(s.idle, IdleStrategy::Sleeping(Duration::from_micros(1)));
    }
}
