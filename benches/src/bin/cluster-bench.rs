//! `cluster-bench`: end-to-end latency and throughput of a Tandem cluster beside the floor of
//! its transport (and a peer, with the `peer-openraft` / `peer-aeron` features).
//!
//! ```sh
//! cargo run --release -p tandem-benches --bin cluster-bench -- \
//!     --mode latency --transport ipc --threading cluster --rate 100000 --size 64 --duration 10
//! cargo run --release -p tandem-benches --bin cluster-bench -- --mode throughput --size 64
//! ```
//!
//! See `tandem_benches::cluster_bench` for what is measured and the JSON document.

use std::process::ExitCode;

use clap::Parser;
use tandem_benches::cluster_bench::{Cli, main_with};

fn main() -> ExitCode {
    // Before any agent thread starts: once warm, the allocator makes no brk/mmap/munmap call
    // on the busy thread, which would wait for the mmap lock behind the segment preparers
    // (see `tandem_cluster::agent::retain_heap`).
    if !tandem_cluster::agent::retain_heap() {
        eprintln!(
            "cluster-bench: the allocator kept its defaults: tails may include mmap lock waits"
        );
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 2, --help and --version 0 (clap's codes).
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    match main_with(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-bench: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
