//! `game-server`: the game server sample.
//!
//! ```text
//! game-server node --member-id 0 --members 0=127.0.0.1:9110,1=127.0.0.1:9120,2=127.0.0.1:9130 --dir DIR --bootstrap
//! game-server client --members LIST --clients 8 --rate 400 --duration 10
//! game-server client --members LIST join 0 alice move 3 4 attack
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tandem_samples::cli::{self, ClientArgs, NodeCommand, game};
use tandem_samples::game::GameServer;

/// The game server sample: rooms, players and a fixed tick replicated by Tandem.
#[derive(Debug, Parser)]
#[command(name = "game-server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Runs one cluster member until SIGINT/SIGTERM, `cluster-tool DIR stop`, or a
    /// cluster-wide shutdown/abort.
    Node(NodeCommand),
    /// Sends a load of players (`--rate`, `--duration`, `--clients`) or the commands given:
    /// `join ROOM NAME`, `move VX VY`, `attack`, `heal`, `leave`.
    Client(ClientArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(n) => match cli::node_config("game-server", &n.node) {
            Ok(cfg) => cli::run_node(
                "game-server",
                cfg,
                GameServer::default,
                n.hooks(|s: &GameServer| u64::from(s.state_hash())),
            ),
            Err(code) => code,
        },
        Command::Client(args) => game::client(&args),
    }
}
