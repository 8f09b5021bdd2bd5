//! `matching-engine`: the matching engine sample.
//!
//! ```text
//! matching-engine demo [--duration 10]          # a 3-member cluster in this process, with a failover
//! matching-engine node --member-id 0 --members 0=127.0.0.1:9010,1=127.0.0.1:9020,2=127.0.0.1:9030 --dir DIR --bootstrap
//! matching-engine client --members LIST --rate 5000 --duration 10
//! matching-engine client --members LIST buy 0 10@1000 sell 0 4@995 ioc cancel 0 1
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem_samples::cli::{self, ClientArgs, NodeCommand, matching};
use tandem_samples::matching::MatchingEngine;

/// The matching engine sample: central limit order books replicated by Tandem.
#[derive(Debug, Parser)]
#[command(name = "matching-engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// A 3-member cluster inside this process: clients, the leader killed half way, a
    /// snapshot and purge, the killed member restarted, and checks.
    Demo(matching::DemoArgs),
    /// Runs one cluster member until SIGINT/SIGTERM, `cluster-tool DIR stop`, or a
    /// cluster-wide shutdown/abort.
    Node(NodeCommand),
    /// Sends a load (`--rate`, `--duration`) or the orders given: `buy|sell INSTRUMENT
    /// QTY@PRICE [limit|ioc|market|post]`, `cancel INSTRUMENT ORDER_ID`, `modify INSTRUMENT
    /// ORDER_ID QTY@PRICE`.
    Client(ClientArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Demo(args) => matching::demo(&args),
        Command::Node(n) => match cli::node_config("matching-engine", &n.node) {
            Ok(cfg) => cli::run_node(
                "matching-engine",
                cfg,
                MatchingEngine::default,
                n.hooks(|s: &MatchingEngine| u64::from(s.state_hash())),
            ),
            Err(code) => code,
        },
        Command::Client(args) => matching::client(&args),
    }
}
