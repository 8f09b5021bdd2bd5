//! openraft (crates.io, 0.9) as a peer of `cluster-bench`: the same workload through the most
//! complete Raft library in Rust, in the mode equivalent to Tandem's
//! `--threading cluster --fsync none` with the echo service.
//!
//! * 3 members in one process, each a [`Raft`] handle with an in-memory log that never syncs
//!   and an echo state machine that answers each write with its own payload ([`store`]);
//! * members connected by direct calls into each other's handles, no sockets ([`network`]);
//! * everything — the three members, their replication tasks and the clients — on one
//!   single-threaded (`current_thread`) tokio runtime;
//! * member 0 is initialised and elected before anything is measured; heartbeats every
//!   50 ms and election timeouts of 0.5–1 s keep a loaded single thread from losing its leader.
//!
//! A client request is a [`Raft::client_write`] on the leader, which returns once the entry is
//! committed by a quorum and applied; the reply (the echoed payload) is checked.

mod network;
mod store;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use ::openraft::metrics::WaitError;
use ::openraft::{Config, ConfigError, EmptyNode, Raft, SnapshotPolicy};
use tokio::task::{JoinError, JoinSet};

use super::{LatencyRun, OpenLoop, ThroughputRun};
use network::Router;
use store::{EchoMachine, LogStore};

::openraft::declare_raft_types!(
    /// openraft type configuration of the bench: a write is its payload, the reply echoes it.
    pub(crate) Echo:
        D = Vec<u8>,
        R = Vec<u8>,
        NodeId = u64,
        Node = EmptyNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// Members of the cluster.
const MEMBERS: u64 = 3;
/// The member initialised first, which becomes the leader every write goes to.
const LEADER: u64 = 0;
/// How long start-up (election and the first commit on every member) may take.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long writes still outstanding at the end of a run may take before they count as lost.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Logs between two snapshots; a snapshot lets the log be purged, so memory stays bounded in
/// long throughput runs.
const LOGS_PER_SNAPSHOT: u64 = 100_000;
/// Below this gap to the next send the open-loop sender yields instead of sleeping: tokio's
/// timer has millisecond resolution, too coarse for schedules of thousands of messages a
/// second.
const SLEEP_SLACK: Duration = Duration::from_millis(2);

/// Why an openraft run failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// An argument is out of range.
    #[error("invalid openraft peer argument: {0}")]
    InvalidArgument(&'static str),
    /// The tokio runtime could not be built.
    #[error("could not build the single-threaded tokio runtime for openraft: {0}")]
    Runtime(#[source] std::io::Error),
    /// openraft rejected the configuration.
    #[error("openraft rejected the bench configuration: {0}")]
    Config(#[source] Box<ConfigError>),
    /// A member could not be started.
    #[error("starting openraft member {id} failed: {source}")]
    Start {
        /// The member.
        id: u64,
        /// What openraft reported.
        #[source]
        source: Box<Fatal<u64>>,
    },
    /// The cluster could not be initialised.
    #[error("initialising the openraft cluster failed: {0}")]
    Initialize(#[source] Box<RaftError<u64, InitializeError<u64, EmptyNode>>>),
    /// No leader was elected, or not every member applied its first entry, in time.
    #[error("openraft cluster not ready: {0}")]
    NotReady(#[source] WaitError),
    /// A client write failed.
    #[error("openraft client write failed: {0}")]
    Write(#[source] Box<RaftError<u64, ClientWriteError<u64, EmptyNode>>>),
    /// A reply did not echo the write.
    #[error("openraft reply of {got} bytes to a {expected}-byte write")]
    BadReply {
        /// Bytes written.
        expected: usize,
        /// Bytes in the reply.
        got: usize,
    },
    /// A client task panicked or was cancelled.
    #[error("openraft client task failed: {0}")]
    Task(#[source] JoinError),
    /// Client tasks did not finish within the drain limit after a throughput run.
    #[error("{stuck} openraft client tasks still waiting {limit:?} after the run ended")]
    Stalled {
        /// Tasks still waiting.
        stuck: usize,
        /// How long they were given.
        limit: Duration,
    },
}

/// Open-loop latency: `size`-byte writes issued at `rate` per second on the [`OpenLoop`]
/// schedule, each without waiting for earlier ones; each round trip is recorded from its
/// intended send time. Writes due in the first `warmup` are not counted; those due in the
/// following `duration` are. Writes still outstanding 10 s after the last one was due count
/// as lost.
///
/// Blocks the calling thread, which runs the whole cluster and the clients. Between sends
/// less than 2 ms apart the sender yields to the runtime instead of sleeping (tokio's timer
/// ticks in milliseconds), so at such rates the thread stays busy for the whole run.
///
/// # Errors
///
/// A zero `rate` or `duration`, or a call from inside a tokio runtime
/// ([`PeerError::InvalidArgument`]); a cluster that does not start, a failed write or a reply
/// that does not echo its write.
pub fn latency(
    size: usize,
    rate: u64,
    warmup: Duration,
    duration: Duration,
) -> Result<LatencyRun, PeerError> {
    if rate == 0 {
        return Err(PeerError::InvalidArgument(
            "rate must be at least 1 message/s",
        ));
    }
    if duration.is_zero() {
        return Err(PeerError::InvalidArgument("duration must be above zero"));
    }
    runtime()?.block_on(async {
        let cluster = Cluster::start(LOGS_PER_SNAPSHOT).await?;
        let run = open_loop(cluster.leader(), size, rate, warmup, duration).await;
        cluster.shutdown().await;
        run
    })
}

/// Throughput: `concurrency` client tasks each looping on `size`-byte writes, counting the
/// writes whose reply arrives after `warmup` and within the following `duration`. Blocks the
/// calling thread, which runs the whole cluster and the clients.
///
/// # Errors
///
/// A zero `concurrency` or `duration`, or a call from inside a tokio runtime
/// ([`PeerError::InvalidArgument`]); a cluster that does not start, a failed write, a reply
/// that does not echo its write, or clients still waiting 10 s after the end.
pub fn throughput(
    size: usize,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<ThroughputRun, PeerError> {
    if concurrency == 0 {
        return Err(PeerError::InvalidArgument("concurrency must be at least 1"));
    }
    if duration.is_zero() {
        return Err(PeerError::InvalidArgument("duration must be above zero"));
    }
    runtime()?.block_on(async {
        let cluster = Cluster::start(LOGS_PER_SNAPSHOT).await?;
        let run = closed_loop(cluster.leader(), size, concurrency, warmup, duration).await;
        cluster.shutdown().await;
        run
    })
}

/// The single-threaded runtime a run blocks the calling thread on.
fn runtime() -> Result<tokio::runtime::Runtime, PeerError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PeerError::InvalidArgument(
            "a run blocks its thread and must not be called from inside a tokio runtime",
        ));
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(PeerError::Runtime)
}

/// Three openraft members on the current runtime, with member [`LEADER`] elected.
struct Cluster {
    rafts: Vec<Raft<Echo>>,
    #[cfg_attr(not(test), allow(dead_code))]
    machines: Vec<EchoMachine>,
    router: Router,
}

impl Cluster {
    /// Starts the members, initialises the cluster on [`LEADER`] and waits until it leads and
    /// every member applied the leader's first entry.
    async fn start(logs_per_snapshot: u64) -> Result<Self, PeerError> {
        let config = Config {
            cluster_name: "tandem-bench-openraft".to_owned(),
            heartbeat_interval: 50,
            election_timeout_min: 500,
            election_timeout_max: 1_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(logs_per_snapshot),
            max_in_snapshot_log_to_keep: 1_000,
            ..Config::default()
        };
        let config = Arc::new(
            config
                .validate()
                .map_err(|e| PeerError::Config(Box::new(e)))?,
        );
        let router = Router::default();
        let mut cluster = Self {
            rafts: Vec::new(),
            machines: Vec::new(),
            router: router.clone(),
        };
        for id in 0..MEMBERS {
            let machine = EchoMachine::default();
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                LogStore::default(),
                machine.clone(),
            )
            .await
            .map_err(|source| PeerError::Start {
                id,
                source: Box::new(source),
            });
            let raft = match raft {
                Ok(raft) => raft,
                Err(e) => {
                    cluster.shutdown().await;
                    return Err(e);
                }
            };
            router.register(id, raft.clone());
            cluster.rafts.push(raft);
            cluster.machines.push(machine);
        }
        match cluster.elect().await {
            Ok(()) => Ok(cluster),
            Err(e) => {
                cluster.shutdown().await;
                Err(e)
            }
        }
    }

    async fn elect(&self) -> Result<(), PeerError> {
        let members: BTreeMap<u64, EmptyNode> =
            (0..MEMBERS).map(|id| (id, EmptyNode::new())).collect();
        self.leader()
            .initialize(members)
            .await
            .map_err(|e| PeerError::Initialize(Box::new(e)))?;
        let metrics = self
            .leader()
            .wait(Some(START_LIMIT))
            .current_leader(LEADER, "member 0 elected")
            .await
            .map_err(PeerError::NotReady)?;
        // The leader's first entry (its blank entry once elected) applied everywhere: every
        // member is up and replicating before the clock starts.
        let first = metrics.last_log_index;
        for raft in &self.rafts {
            raft.wait(Some(START_LIMIT))
                .applied_index_at_least(first, "leader's first entry applied")
                .await
                .map_err(PeerError::NotReady)?;
        }
        Ok(())
    }

    fn leader(&self) -> &Raft<Echo> {
        &self.rafts[LEADER as usize]
    }

    /// Stops every member. A member that fails to stop is already gone: nothing to report.
    async fn shutdown(self) {
        self.router.clear();
        for raft in &self.rafts {
            // A shutdown error only says the member's core task had already ended.
            let _ = raft.shutdown().await;
        }
    }
}

/// One write and its echo, returning when it completed.
async fn write(raft: Raft<Echo>, payload: Vec<u8>) -> Result<Instant, PeerError> {
    let expected = payload.len();
    let reply = raft
        .client_write(payload)
        .await
        .map_err(|e| PeerError::Write(Box::new(e)))?;
    let done = Instant::now();
    if reply.data.len() != expected {
        return Err(PeerError::BadReply {
            expected,
            got: reply.data.len(),
        });
    }
    Ok(done)
}

/// A write of the open-loop run: its index, whether it is measured, and how it ended.
type Outcome = (u64, bool, Result<Instant, PeerError>);

async fn open_loop(
    leader: &Raft<Echo>,
    size: usize,
    rate: u64,
    warmup: Duration,
    duration: Duration,
) -> Result<LatencyRun, PeerError> {
    let payload = vec![0xA5_u8; size];
    let start = Instant::now();
    let schedule = OpenLoop::new(start, rate);
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut run = LatencyRun::new();
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut next: u64 = 0;

    let finish = |outcome: Result<Outcome, JoinError>, run: &mut LatencyRun| {
        let (i, measured, result) = outcome.map_err(PeerError::Task)?;
        let done = result?;
        if measured {
            run.record(schedule.latency_ns(i, done));
        }
        Ok::<(), PeerError>(())
    };

    while schedule.intended(next) < end {
        let due = schedule.due(Instant::now());
        while next < due && schedule.intended(next) < end {
            let measured = schedule.intended(next) >= measure_from;
            run.sent += u64::from(measured);
            let (i, raft, data) = (next, leader.clone(), payload.clone());
            tasks.spawn(async move { (i, measured, write(raft, data).await) });
            next += 1;
        }
        while let Some(outcome) = tasks.try_join_next() {
            finish(outcome, &mut run)?;
        }
        let wait = schedule
            .intended(next)
            .saturating_duration_since(Instant::now());
        if wait > SLEEP_SLACK {
            tokio::time::sleep(wait - SLEEP_SLACK).await;
        } else {
            tokio::task::yield_now().await;
        }
    }

    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    while let Ok(Some(outcome)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        finish(outcome, &mut run)?;
    }
    // Whatever is still outstanding counts as lost (`sent` - `received`).
    tasks.abort_all();
    Ok(run)
}

async fn closed_loop(
    leader: &Raft<Echo>,
    size: usize,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<ThroughputRun, PeerError> {
    let payload = vec![0x5A_u8; size];
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let mut tasks: JoinSet<Result<u64, PeerError>> = JoinSet::new();
    for _ in 0..concurrency {
        let (raft, payload) = (leader.clone(), payload.clone());
        tasks.spawn(async move {
            let mut counted = 0_u64;
            loop {
                let done = write(raft.clone(), payload.clone()).await?;
                if done >= end {
                    return Ok(counted);
                }
                counted += u64::from(done >= measure_from);
            }
        });
    }

    let deadline = tokio::time::Instant::from_std(end) + DRAIN_LIMIT;
    let mut msgs = 0_u64;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(outcome)) => msgs += outcome.map_err(PeerError::Task)??,
            Ok(None) => break,
            Err(_) => {
                return Err(PeerError::Stalled {
                    stuck: tasks.len(),
                    limit: DRAIN_LIMIT,
                });
            }
        }
    }
    Ok(ThroughputRun {
        msgs,
        bytes: msgs * size as u64,
        elapsed: duration,
        driver_cpu: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_run_at_a_low_rate_gets_every_reply() {
        let run = latency(64, 200, Duration::from_millis(200), Duration::from_secs(1))
            .expect("latency run");
        assert!(run.sent > 0, "nothing sent");
        assert_eq!(run.received, run.sent);
        assert_eq!(run.lost(), 0);
        assert_eq!(run.hist.len(), run.sent);
        // 200/s for 1 s: about 200 measured writes (the schedule is exact, not the clock).
        assert!((195..=205).contains(&run.sent), "sent {}", run.sent);
        assert!(run.hist.min() > 0);
    }

    #[test]
    fn throughput_run_counts_completed_writes() {
        let run = throughput(
            32,
            16,
            Duration::from_millis(100),
            Duration::from_millis(500),
        )
        .expect("throughput run");
        assert!(run.msgs > 0, "no write completed");
        assert_eq!(run.bytes, run.msgs * 32);
        assert_eq!(run.elapsed, Duration::from_millis(500));
    }

    #[test]
    fn errors_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<PeerError>();
    }

    #[test]
    fn bad_arguments_are_typed_errors() {
        let d = Duration::from_millis(10);
        assert!(matches!(
            latency(8, 0, d, d),
            Err(PeerError::InvalidArgument(_))
        ));
        assert!(matches!(
            latency(8, 10, d, Duration::ZERO),
            Err(PeerError::InvalidArgument(_))
        ));
        assert!(matches!(
            throughput(8, 0, d, d),
            Err(PeerError::InvalidArgument(_))
        ));
        let inside = runtime()
            .expect("runtime")
            .block_on(async { latency(8, 10, d, d) });
        assert!(matches!(inside, Err(PeerError::InvalidArgument(_))));
    }

    /// Every member applies every write, and snapshots let the leader purge its log.
    #[test]
    fn writes_reach_every_member_and_the_log_is_purged_after_snapshots() {
        // A snapshot every 100 logs; 1000 logs are kept behind the last one, so 1500 writes
        // make the leader purge some.
        const WRITES: u64 = 1_500;
        runtime().expect("runtime").block_on(async {
            let cluster = Cluster::start(100).await.expect("cluster starts");
            for i in 0..WRITES {
                let reply = cluster
                    .leader()
                    .client_write(i.to_le_bytes().to_vec())
                    .await
                    .expect("write");
                assert_eq!(reply.data, i.to_le_bytes().to_vec(), "echo");
            }
            let last = cluster.leader().metrics().borrow().last_log_index;
            for (raft, machine) in cluster.rafts.iter().zip(&cluster.machines) {
                raft.wait(Some(Duration::from_secs(30)))
                    .applied_index_at_least(last, "all writes applied")
                    .await
                    .expect("member applies every write");
                assert_eq!(machine.writes_applied(), WRITES);
            }
            let snapshot = cluster
                .leader()
                .wait(Some(Duration::from_secs(30)))
                .metrics(|m| m.purged.is_some(), "log purged")
                .await
                .expect("leader snapshots and purges")
                .snapshot;
            assert!(snapshot.is_some_and(|id| id.index >= 1_000));
            cluster.shutdown().await;
        });
    }

    /// Figures for the report: `cargo test --release -p tandem-benches --features
    /// peer-openraft --lib -- --ignored --nocapture openraft_figures`.
    #[test]
    #[ignore = "a timing measurement, not a check: needs a release build and a quiet machine; the README's Benchmarks section has the command (cargo test -p tandem-benches --release --features peer-openraft --lib -- --ignored --nocapture openraft_figures)"]
    fn openraft_figures() {
        let secs = |s| Duration::from_secs(s);
        let run = latency(64, 5_000, secs(1), secs(5)).expect("latency run");
        let us = |q: f64| run.hist.value_at_quantile(q) as f64 / 1e3;
        println!(
            "openraft latency 64 B at 5000/s: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, \
             p99.9 {:.1} us, max {:.1} us; sent {} received {} lost {}",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            run.hist.max() as f64 / 1e3,
            run.sent,
            run.received,
            run.lost()
        );
        for concurrency in [1, 256] {
            let run = throughput(64, concurrency, secs(1), secs(5)).expect("throughput run");
            println!(
                "openraft throughput 64 B, {concurrency} clients: {:.0} writes/s, {:.1} MB/s",
                run.msgs_per_s(),
                run.mb_per_s()
            );
        }
    }
}
