//! `cluster-bench`: end-to-end latency and throughput of a Tandem cluster through the real
//! node code (mmap'd archive with checksums, codec, consensus core, service container, an
//! echo service), measured with HdrHistogram beside the floor of the same transport in the
//! same run, and beside a peer when one is built in (DESIGN §8, issue 7).
//!
//! A run:
//! 1. pins the benchmark's thread if `--cores` is given;
//! 2. measures the **floor**: a ping-pong between two endpoints of the same transport, io
//!    path, threading and idle strategy, with the same load and histogram ([`floor`]);
//! 3. launches the cluster ([`harness`]), connects the clients and measures it ([`run`]):
//!    open loop at `--rate` from each message's intended send time in latency mode, a full
//!    window per client in throughput mode; optionally a snapshot during the measurement;
//! 4. runs the peer if `--peer` is given ([`peers`]);
//! 5. prints a table, writes `--json`, `--hgrm` and `--plot`.
//!
//! A progress line goes to standard error each second. The exit status is 0 on success, 2 for
//! a usage error, 1 if the run failed or Tandem lost a message.
//!
//! # The JSON document
//!
//! ```text
//! { "tool": "cluster-bench", "version": 1,
//!   "config":   { mode, cluster_size, transport, io, threading, processes, idle, cores, fsync,
//!                 size, rate, duration_s, warmup_s, clients, window, segment_len_bytes,
//!                 mtu, snapshot_at_s, peer },
//!   "machine":  { cpus, cpu_model, kernel },
//!   "latency_kind": "...",
//!   "cluster":  { p50_us, p90_us, p99_us, p99_9_us, p99_99_us, max_us, mean_us,
//!                 sent, received, lost },
//!   "floor":    { the same keys, msgs_per_s, mb_per_s, kind },
//!   "ratio":    { p50, p99 },                       // cluster / (2 × floor)
//!   "throughput": null | { msgs_per_s, mb_per_s, msgs, bytes, elapsed_s, in_flight_max,
//!                          driver_cpu_s, msgs_per_cpu_s },   // the last two: cluster threading
//!   "snapshot": null | { at_s, position, took_ms, failure, p99_9_us_without, p99_9_us_with,
//!                        max_us_without, max_us_with, count_without, count_with },
//!   "peer":     null | { name, p50_us ... lost (latency) | msgs_per_s, mb_per_s },
//!   "peer_ratio": null | { p50, p99 (peer / tandem) | msgs_per_s (tandem / peer) },
//!   "bad_replies": 0,
//!   "targets":  [ { name, key, bound, limit, value, met, machine, machine_matches } ],
//!   "files":    { hgrm: [...], plot } }
//! ```

pub mod config;
pub mod echo;
pub mod error;
pub mod floor;
pub mod harness;
pub mod hgrm;
pub mod member;
pub mod peers;
pub mod plot;
pub mod progress;
pub mod report;
pub mod run;
pub mod targets;

use std::path::{Path, PathBuf};

use tandem_cluster::agent::pin_current_thread;

pub use config::{BenchArgs, Cli, Command, Mode, PeerKind, Settings, TransportKind};
pub use error::{BenchError, Result};
pub use report::Report;

/// Runs what the command line asks: a benchmark, or (internally) one member process.
///
/// # Errors
/// See [`BenchError`]; [`BenchError::exit_code`] gives the process exit status.
pub fn main_with(cli: &Cli) -> Result<()> {
    match &cli.command {
        Some(Command::Member(args)) => member::run_member(args),
        None => {
            let s = Settings::from_args(&cli.bench)?;
            let report = run_bench(&s)?;
            let lost = report.cluster.lost;
            if lost > 0 {
                return Err(BenchError::Lost {
                    lost,
                    sent: report.cluster.sent,
                });
            }
            Ok(())
        }
    }
}

/// `NAME.hgrm` -> `NAME.<tag>.hgrm`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "latency".into(), |s| s.to_string_lossy().into_owned());
    let ext = path
        .extension()
        .map_or_else(|| "hgrm".into(), |e| e.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.{tag}.{ext}"))
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(BenchError::io(parent))?;
    }
    std::fs::write(path, text).map_err(BenchError::io(path))
}

/// Runs the benchmark the settings describe; prints the table and writes the files asked
/// for, then returns the report (also when Tandem lost messages: the caller decides).
///
/// # Errors
/// See [`BenchError`].
pub fn run_bench(s: &Settings) -> Result<Report> {
    if let Some(core) = s.bench_core() {
        pin_current_thread(core)?;
    }
    eprintln!(
        "[cluster-bench] floor: {} ping-pong, {} threading, idle {}",
        s.transport.name(),
        s.threading.name(),
        s.idle
    );
    let floor = floor::measure(s)?;
    eprintln!(
        "[cluster-bench] cluster: {} member(s){} over {}",
        s.cluster_size,
        if s.processes { " in processes" } else { "" },
        s.transport.name()
    );
    let mut dep = harness::Deployment::launch(s)?;
    let mut clients = dep.connect(s.clients)?;
    let measured = match s.mode {
        Mode::Latency => run::latency(&mut dep, &mut clients, s),
        Mode::Throughput => run::throughput(&mut dep, &mut clients, s),
    };
    for c in clients {
        c.close();
    }
    let closed = dep.close();
    let cluster = measured?;
    closed?;
    let peer = match s.peer {
        Some(p) => Some(peers::run(s, p)?),
        None => None,
    };
    let mut report = Report::build(s, &floor, &cluster, peer.as_ref());
    if let Some(path) = &s.hgrm {
        write(path, &hgrm::render(&cluster.run.hist))?;
        report.files.hgrm.push(path.display().to_string());
        let floor_path = sibling(path, "floor");
        write(&floor_path, &hgrm::render(&floor.run.hist))?;
        report.files.hgrm.push(floor_path.display().to_string());
        if let Some(report::PeerFigures::Latency(run)) = &peer {
            let peer_path = sibling(path, "peer");
            write(&peer_path, &hgrm::render(&run.hist))?;
            report.files.hgrm.push(peer_path.display().to_string());
        }
    }
    if let Some(path) = &s.plot {
        let mut curves = vec![
            plot::Curve {
                label: "tandem".into(),
                hist: &cluster.run.hist,
            },
            plot::Curve {
                label: format!("floor ({})", s.transport.name()),
                hist: &floor.run.hist,
            },
        ];
        if let (Some(report::PeerFigures::Latency(run)), Some(kind)) = (&peer, s.peer) {
            curves.push(plot::Curve {
                label: kind.name().into(),
                hist: &run.hist,
            });
        }
        let title = format!(
            "{} members, {}, {} threading, {} B{}",
            s.cluster_size,
            s.transport.name(),
            s.threading.name(),
            s.size,
            match s.mode {
                Mode::Latency => format!(" at {} msg/s", s.rate),
                Mode::Throughput => " at a full window".into(),
            }
        );
        plot::draw(path, &title, &curves)?;
        report.files.plot = Some(path.display().to_string());
    }
    print!("{}", report.table());
    if let Some(path) = &s.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| BenchError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write(path, &text)?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_and_peer_histograms_go_beside_the_cluster_one() {
        assert_eq!(
            sibling(Path::new("/tmp/out/run.hgrm"), "floor"),
            Path::new("/tmp/out/run.floor.hgrm")
        );
        assert_eq!(
            sibling(Path::new("run"), "peer"),
            Path::new("run.peer.hgrm")
        );
    }
}
