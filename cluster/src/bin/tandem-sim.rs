//! `tandem-sim`: runs simulator scenarios, one per seed.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use tandem_cluster::consensus::BugFlags;
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
    /// Deliberate core bugs to switch on, by flag name (e.g. `ack_beyond_match`); honoured only
    /// when tandem-cluster is built with the `bugs` feature.
    #[arg(long = "bug", value_parser = parse_bug)]
    bugs: Vec<String>,
    /// How members run their service: `inline` (called by the core, as in the `shared` and
    /// `cluster` threading modes) or `remote` (split as in `dedicated`: a service engine
    /// applies and records its effects, the core replays them).
    #[arg(long, default_value = "inline", value_parser = ["inline", "remote"])]
    service: String,
}

/// The deliberate bugs, by flag name.
const BUG_NAMES: [&str; 8] = [
    "vote_twice_in_term",
    "commit_without_majority",
    "skip_prev_term_check",
    "ack_beyond_match",
    "replay_past_commit_bound",
    "wiped_member_votes",
    "truncate_below_commit",
    "apply_duplicates",
];

fn parse_bug(name: &str) -> Result<String, String> {
    if BUG_NAMES.contains(&name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "unknown bug {name:?}; one of {}",
            BUG_NAMES.join(", ")
        ))
    }
}

fn bug_flags(names: &[String]) -> BugFlags {
    let mut b = BugFlags::default();
    for name in names {
        let flag = match name.as_str() {
            "vote_twice_in_term" => &mut b.vote_twice_in_term,
            "commit_without_majority" => &mut b.commit_without_majority,
            "skip_prev_term_check" => &mut b.skip_prev_term_check,
            "ack_beyond_match" => &mut b.ack_beyond_match,
            "replay_past_commit_bound" => &mut b.replay_past_commit_bound,
            "wiped_member_votes" => &mut b.wiped_member_votes,
            "truncate_below_commit" => &mut b.truncate_below_commit,
            _ => &mut b.apply_duplicates,
        };
        *flag = true;
    }
    b
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Core assertions are reported per seed; keep their default panic output off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let bugs = bug_flags(&args.bugs);
    if bugs != BugFlags::default() && !BugFlags::HONOURED {
        eprintln!("--bug needs tandem-cluster built with the `bugs` feature");
        return ExitCode::FAILURE;
    }
    let opts = SimOptions {
        cluster_size: args.cluster_size,
        bugs,
        remote_service: args.service == "remote",
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
                 crashes {}/{}/{} (process/machine/wipe) partitions {} terms {} snapshots {} installs {} failovers {} stale splits {}/{}",
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
                s.failovers,
                s.stale_splits.0,
                s.stale_splits.1
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
