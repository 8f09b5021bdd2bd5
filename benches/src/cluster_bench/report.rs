//! [`Report`]: the one JSON document a run writes (stable keys; see the module docs of
//! `cluster_bench`), and the table printed on standard output.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::{Mode, Settings};
use super::floor::FloorResult;
use super::run::{ClusterResult, SnapshotImpact};
use super::targets::{self, TargetCheck};
use crate::peer::{LatencyRun, ThroughputRun};

/// Version of the JSON document's layout.
pub const REPORT_VERSION: u32 = 1;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Percentiles of one histogram, in µs, with the message counts.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Highest.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Messages sent in the measured period.
    pub sent: u64,
    /// Replies received for them.
    pub received: u64,
    /// Sent without a reply.
    pub lost: u64,
}

impl Percentiles {
    /// The figures of `run`.
    #[must_use]
    pub fn of(run: &LatencyRun) -> Self {
        let h = &run.hist;
        Self {
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p99_9_us: us(h.value_at_quantile(0.999)),
            p99_99_us: us(h.value_at_quantile(0.9999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
            sent: run.sent,
            received: run.received,
            lost: run.lost(),
        }
    }
}

/// The settings of the run.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigReport {
    /// `latency` or `throughput`.
    pub mode: &'static str,
    /// Members.
    pub cluster_size: u32,
    /// `udp` or `ipc`.
    pub transport: &'static str,
    /// `std` or `uring` (as asked; the node falls back to std if io_uring is unavailable).
    pub io: String,
    /// `cluster`, `shared` or `dedicated`.
    pub threading: &'static str,
    /// Members in their own processes.
    pub processes: bool,
    /// Idle strategy.
    pub idle: String,
    /// Cores pinned to.
    pub cores: Option<String>,
    /// Log durability.
    pub fsync: String,
    /// Message size in bytes.
    pub size: usize,
    /// Offered rate (latency mode).
    pub rate: Option<u64>,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Client sessions.
    pub clients: usize,
    /// Window per client.
    pub window: usize,
    /// Log segment length.
    pub segment_len_bytes: u64,
    /// Largest UDP datagram.
    pub mtu: usize,
    /// Snapshot time, if one was taken.
    pub snapshot_at_s: Option<f64>,
    /// The peer, if one ran.
    pub peer: Option<&'static str>,
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs of the machine (from /proc/cpuinfo; the process's own allowed CPUs
    /// where that cannot be read — after `--cores` pinned this thread, that would be 1).
    pub cpus: usize,
    /// CPU model (from /proc/cpuinfo).
    pub cpu_model: Option<String>,
    /// Kernel release.
    pub kernel: Option<String>,
}

impl Machine {
    /// This machine.
    #[must_use]
    pub fn here() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok();
        let cpu_model = cpuinfo.as_deref().and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        });
        let listed = cpuinfo.as_deref().map_or(0, |t| {
            t.lines()
                .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
                .count()
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_owned());
        Self {
            cpus: if listed > 0 {
                listed
            } else {
                std::thread::available_parallelism().map_or(1, usize::from)
            },
            cpu_model,
            kernel,
        }
    }
}

/// The floor's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    /// Round-trip percentiles and counts.
    #[serde(flatten)]
    pub latency: Percentiles,
    /// Throughput mode: echoed messages per second.
    pub msgs_per_s: Option<f64>,
    /// Throughput mode: echoed payload MB/s.
    pub mb_per_s: Option<f64>,
    /// What was measured.
    pub kind: String,
}

/// Cluster over twice the floor.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// p50 ratio.
    pub p50: Option<f64>,
    /// p99 ratio.
    pub p99: Option<f64>,
}

/// Throughput-mode figures.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputReport {
    /// Client messages (each with its own reply) per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// Replies counted.
    pub msgs: u64,
    /// Payload bytes counted.
    pub bytes: u64,
    /// Counting period.
    pub elapsed_s: f64,
    /// Messages in flight at most (clients × window).
    pub in_flight_max: usize,
    /// `--threading cluster`: CPU seconds the one driving thread used while counting.
    pub driver_cpu_s: Option<f64>,
    /// `--threading cluster`: messages per CPU-second of the driving thread (what it would
    /// sustain on a core of its own; a shared machine gives it less).
    pub msgs_per_cpu_s: Option<f64>,
}

impl ThroughputReport {
    fn of(t: &ThroughputRun, in_flight_max: usize) -> Self {
        Self {
            msgs_per_s: t.msgs_per_s(),
            mb_per_s: t.mb_per_s(),
            msgs: t.msgs,
            bytes: t.bytes,
            elapsed_s: t.elapsed.as_secs_f64(),
            in_flight_max,
            driver_cpu_s: t.driver_cpu.map(|d| d.as_secs_f64()),
            msgs_per_cpu_s: t.msgs_per_cpu_s(),
        }
    }
}

/// A snapshot's effect on latency.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    /// When it was requested, seconds into the measurement.
    pub at_s: f64,
    /// Its log position.
    pub position: Option<u64>,
    /// Request to answer, ms.
    pub took_ms: Option<f64>,
    /// How the request failed, if it did.
    pub failure: Option<String>,
    /// p99.9 of messages due before the request.
    pub p99_9_us_without: f64,
    /// p99.9 of messages due from the request on.
    pub p99_9_us_with: f64,
    /// Highest before.
    pub max_us_without: f64,
    /// Highest from the request on.
    pub max_us_with: f64,
    /// Messages before.
    pub count_without: u64,
    /// Messages from the request on.
    pub count_with: u64,
}

impl SnapshotReport {
    fn of(i: &SnapshotImpact) -> Self {
        let p999 = |h: &Histogram<u64>| us(h.value_at_quantile(0.999));
        Self {
            at_s: i.at.as_secs_f64(),
            position: i.position,
            took_ms: i.took.map(|d| d.as_secs_f64() * 1000.0),
            failure: i.failure.clone(),
            p99_9_us_without: p999(&i.without),
            p99_9_us_with: p999(&i.with),
            max_us_without: us(i.without.max()),
            max_us_with: us(i.with.max()),
            count_without: i.without.len(),
            count_with: i.with.len(),
        }
    }
}

/// What a peer measured.
#[derive(Debug, Clone)]
pub enum PeerFigures {
    /// Round trips.
    Latency(LatencyRun),
    /// Sustained throughput.
    Throughput(ThroughputRun),
}

/// A peer's figures.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    /// `openraft` or `aeron-transport`.
    pub name: &'static str,
    /// Latency figures (latency mode).
    #[serde(flatten)]
    pub latency: Option<Percentiles>,
    /// Throughput mode: messages per second.
    pub msgs_per_s: Option<f64>,
    /// Throughput mode: MB/s.
    pub mb_per_s: Option<f64>,
}

/// Peer against Tandem: peer / Tandem for latency, Tandem / peer for throughput (above 1:
/// Tandem is better).
#[derive(Debug, Clone, Serialize)]
pub struct PeerRatio {
    /// Peer p50 over Tandem p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// Peer p99 over Tandem p99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// Tandem msgs/s over the peer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
}

/// Files written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Files {
    /// `.hgrm` files (cluster, floor, peer).
    pub hgrm: Vec<String>,
    /// The SVG plot.
    pub plot: Option<String>,
}

/// The whole JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always `cluster-bench`.
    pub tool: &'static str,
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The settings.
    pub config: ConfigReport,
    /// The machine.
    pub machine: Machine,
    /// How `cluster` and `floor` latencies were taken.
    pub latency_kind: &'static str,
    /// Tandem's round trips.
    pub cluster: Percentiles,
    /// The transport's floor.
    pub floor: FloorReport,
    /// Cluster / (2 × floor).
    pub ratio: Ratio,
    /// Throughput mode.
    pub throughput: Option<ThroughputReport>,
    /// `--snapshot-at`.
    pub snapshot: Option<SnapshotReport>,
    /// `--peer`.
    pub peer: Option<PeerReport>,
    /// Peer against Tandem.
    pub peer_ratio: Option<PeerRatio>,
    /// Replies that were not the message echoed.
    pub bad_replies: u64,
    /// The targets that apply to this run, each checked ([`targets`]).
    pub targets: Vec<TargetCheck>,
    /// Files written.
    pub files: Files,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

impl Report {
    /// Builds the document.
    #[must_use]
    pub fn build(
        s: &Settings,
        floor: &FloorResult,
        cluster: &ClusterResult,
        peer: Option<&PeerFigures>,
    ) -> Self {
        let c = Percentiles::of(&cluster.run);
        let f = Percentiles::of(&floor.run);
        let in_flight_max = s.clients * s.window;
        let (peer_report, peer_ratio) = match (s.peer, peer) {
            (Some(kind), Some(PeerFigures::Latency(run))) => {
                let p = Percentiles::of(run);
                let r = PeerRatio {
                    p50: ratio(p.p50_us, c.p50_us),
                    p99: ratio(p.p99_us, c.p99_us),
                    msgs_per_s: None,
                };
                (
                    Some(PeerReport {
                        name: kind.name(),
                        latency: Some(p),
                        msgs_per_s: None,
                        mb_per_s: None,
                    }),
                    Some(r),
                )
            }
            (Some(kind), Some(PeerFigures::Throughput(t))) => {
                let tandem = cluster.throughput.map_or(0.0, |t| t.msgs_per_s());
                (
                    Some(PeerReport {
                        name: kind.name(),
                        latency: None,
                        msgs_per_s: Some(t.msgs_per_s()),
                        mb_per_s: Some(t.mb_per_s()),
                    }),
                    Some(PeerRatio {
                        p50: None,
                        p99: None,
                        msgs_per_s: ratio(tandem, t.msgs_per_s()),
                    }),
                )
            }
            _ => (None, None),
        };
        let mut report = Self {
            tool: "cluster-bench",
            version: REPORT_VERSION,
            config: ConfigReport {
                mode: s.mode.name(),
                cluster_size: s.cluster_size,
                transport: s.transport.name(),
                io: s.io.to_string(),
                threading: s.threading.name(),
                processes: s.processes,
                idle: s.idle.to_string(),
                cores: s.cores.as_ref().map(ToString::to_string),
                fsync: s.fsync.to_string(),
                size: s.size,
                rate: (s.mode == Mode::Latency).then_some(s.rate),
                duration_s: s.duration.as_secs_f64(),
                warmup_s: s.warmup.as_secs_f64(),
                clients: s.clients,
                window: s.window,
                segment_len_bytes: s.segment_len_bytes,
                mtu: s.mtu,
                snapshot_at_s: s.snapshot_at.map(|d| d.as_secs_f64()),
                peer: s.peer.map(|p| p.name()),
            },
            machine: Machine::here(),
            latency_kind: match s.mode {
                Mode::Latency => {
                    "open loop at the offered rate, from each message's intended send time \
                     (coordinated omission corrected)"
                }
                Mode::Throughput => "closed loop at a full window, from each message's send time",
            },
            ratio: Ratio {
                p50: ratio(c.p50_us, 2.0 * f.p50_us),
                p99: ratio(c.p99_us, 2.0 * f.p99_us),
            },
            cluster: c,
            floor: FloorReport {
                latency: f,
                msgs_per_s: floor.throughput.map(|t| t.msgs_per_s()),
                mb_per_s: floor.throughput.map(|t| t.mb_per_s()),
                kind: floor.kind.clone(),
            },
            throughput: cluster
                .throughput
                .as_ref()
                .map(|t| ThroughputReport::of(t, in_flight_max)),
            snapshot: cluster.snapshot.as_ref().map(SnapshotReport::of),
            peer: peer_report,
            peer_ratio,
            bad_replies: cluster.bad_replies,
            targets: Vec::new(),
            files: Files::default(),
        };
        report.targets = targets::check(&report);
        report
    }

    /// The human-readable summary.
    #[must_use]
    pub fn table(&self) -> String {
        let mut out = String::new();
        let cfg = &self.config;
        let _ = writeln!(
            out,
            "cluster-bench {}: {} member(s){}, {} (io {}), {} threading, idle {}, fsync {}, {} B{}, {} s (+{} s warm-up)",
            cfg.mode,
            cfg.cluster_size,
            if cfg.processes { " in processes" } else { "" },
            cfg.transport,
            cfg.io,
            cfg.threading,
            cfg.idle,
            cfg.fsync,
            cfg.size,
            cfg.rate.map_or_else(
                || format!(", {} in flight", cfg.clients * cfg.window),
                |r| format!(" at {r} msg/s")
            ),
            cfg.duration_s,
            cfg.warmup_s,
        );
        let _ = writeln!(out, "latency: {}", self.latency_kind);
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>6}",
            "(us)", "p50", "p90", "p99", "p99.9", "p99.99", "max", "sent", "received", "lost"
        );
        let mut row = |name: &str, p: &Percentiles| {
            let _ = writeln!(
                out,
                "{:<18} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>10} {:>10} {:>6}",
                name,
                p.p50_us,
                p.p90_us,
                p.p99_us,
                p.p99_9_us,
                p.p99_99_us,
                p.max_us,
                p.sent,
                p.received,
                p.lost
            );
        };
        row("tandem", &self.cluster);
        row("floor", &self.floor.latency);
        if let Some(PeerReport {
            name,
            latency: Some(p),
            ..
        }) = &self.peer
        {
            row(name, p);
        }
        let f = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "ratio cluster / (2 x floor): p50 {}  p99 {}   (floor: {})",
            f(self.ratio.p50),
            f(self.ratio.p99),
            self.floor.kind
        );
        if let Some(t) = &self.throughput {
            let _ = writeln!(
                out,
                "throughput: {:.0} msg/s, {:.1} MB/s ({} replies in {:.1} s, {} in flight at most)",
                t.msgs_per_s, t.mb_per_s, t.msgs, t.elapsed_s, t.in_flight_max
            );
            if let (Some(cpu), Some(per_cpu)) = (t.driver_cpu_s, t.msgs_per_cpu_s) {
                let _ = writeln!(
                    out,
                    "driving thread: {cpu:.2} s of CPU in {:.1} s ({:.0} %), {per_cpu:.0} msg per CPU-second",
                    t.elapsed_s,
                    100.0 * cpu / t.elapsed_s.max(1e-9)
                );
            }
            if let Some(m) = self.floor.msgs_per_s {
                let _ = writeln!(out, "floor throughput: {m:.0} msg/s");
            }
        }
        if let Some(PeerReport {
            name,
            msgs_per_s: Some(m),
            ..
        }) = &self.peer
        {
            let _ = writeln!(out, "{name} throughput: {m:.0} msg/s");
        }
        if let Some(r) = &self.peer_ratio {
            let _ = writeln!(
                out,
                "peer ratio (peer / tandem latency, tandem / peer throughput): p50 {}  p99 {}  msgs/s {}",
                f(r.p50),
                f(r.p99),
                f(r.msgs_per_s)
            );
        }
        if let Some(snap) = &self.snapshot {
            let _ = writeln!(
                out,
                "snapshot at {:.1} s (position {}, {} ms): p99.9 {:.2} us without, {:.2} us with; max {:.2} / {:.2} us{}",
                snap.at_s,
                snap.position.map_or_else(|| "?".into(), |p| p.to_string()),
                f(snap.took_ms),
                snap.p99_9_us_without,
                snap.p99_9_us_with,
                snap.max_us_without,
                snap.max_us_with,
                snap.failure
                    .as_ref()
                    .map_or_else(String::new, |e| format!(" (request failed: {e})"))
            );
        }
        if self.bad_replies > 0 {
            let _ = writeln!(
                out,
                "replies that were not the message: {}",
                self.bad_replies
            );
        }
        for line in targets::lines(&self.targets, self.machine.cpus) {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_counts_the_machines_cpus_not_the_threads_allowed_ones() {
        let m = Machine::here();
        let allowed = std::thread::available_parallelism().map_or(1, usize::from);
        assert!(m.cpus >= allowed, "{} < {allowed}", m.cpus);
        if std::path::Path::new("/proc/cpuinfo").exists() {
            assert!(m.cpu_model.is_some() || std::env::consts::ARCH != "x86_64");
        }
    }
}
