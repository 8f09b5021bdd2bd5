//! `tandem-sim`: runs simulator scenarios, one per seed.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tandem_cluster::sim::invariants::liveness::LIVENESS_BOUND_NS;
use tandem_cluster::sim::{SimOptions, run_seed};

/// Deterministic simulation of a Tandem cluster.
#[derive(Debug, Parser)]
#[command(name = "tandem-sim")]
struct Args {
    /// Number of seeds (scenarios) to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start_seed: u64,
    /// Members in the cluster (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(3..=5))]
    cluster_size: u32,
    /// Print one line per seed with its trace hash and stats.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Core assertions are reported per seed; keep their default panic output off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let opts = SimOptions {
        cluster_size: args.cluster_size,
        ..SimOptions::default()
    };
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    for seed in args.start_seed..args.start_seed + args.seeds {
        let o = run_seed(seed, &opts);
        if args.verbose {
            let s = &o.stats;
            println!(
                "seed {seed} trace {:016x} fsync {} virtual {} ms inputs {} delivered {} ops {} \
                 crashes {}/{}/{} (process/machine/wipe) partitions {} terms {} snapshots {} installs {} failovers {}",
                o.trace_hash,
                o.fsync,
                s.virtual_ns / 1_000_000,
                s.inputs,
                s.delivered,
                s.ops_completed,
                s.process_crashes,
                s.machine_crashes,
                s.wipes,
                s.partitions,
                s.terms_led,
                s.snapshots,
                s.installs,
                s.failovers
            );
        }
        match &o.violation {
            None => passed += 1,
            Some(v) => {
                failed += 1;
                println!("FAILED seed {seed}: {} ({})", v.property, v.detail);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{passed} passed, {failed} failed ({:.1} seeds/s; liveness bound {} ms after faults stop)",
        (passed + failed) as f64 / secs.max(1e-9),
        LIVENESS_BOUND_NS / 1_000_000
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
