//! `kv-store`: the key-value store sample, with an HTTP front on every member.
//!
//! ```text
//! kv-store node --member-id 0 --members 0=127.0.0.1:9210,1=127.0.0.1:9220,2=127.0.0.1:9230 --dir DIR --bootstrap --http 127.0.0.1:7001
//! curl 'http://127.0.0.1:7001/set?key=a&value=1'
//! kv-store client --members LIST set a 1 get a cas a 1 2 delete a
//! kv-store client --members LIST --rate 2000 --duration 10
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, Parser, Subcommand};
use tandem_cluster::node::{ClientConfig, NodeArgs, NodeHooks};
use tandem_samples::cli::{self, ClientArgs, kv};
use tandem_samples::kv::KvStore;

/// The key-value store sample: set, get, delete and compare-and-set through the log.
#[derive(Debug, Parser)]
#[command(name = "kv-store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct KvNode {
    #[command(flatten)]
    node: NodeArgs,
    /// Serve `GET /set?key=K&value=V`, `/get?key=K`, `/delete?key=K` on this address,
    /// forwarded through the cluster.
    #[arg(long)]
    http: Option<String>,
    /// Install the store's state-hash hook: members compare their state hash at every
    /// snapshot position (`cluster-tool DIR stat`: `state_divergences`).
    #[arg(long)]
    state_hash: bool,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Runs one cluster member until SIGINT/SIGTERM, `cluster-tool DIR stop`, or a
    /// cluster-wide shutdown/abort.
    Node(KvNode),
    /// Sends a load (`--rate`, `--duration`) or the commands given: `set KEY VALUE`,
    /// `get KEY`, `delete KEY`, `cas KEY EXPECTED|- NEW|-`.
    Client(ClientArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Node(n) => {
            let cfg = match cli::node_config("kv-store", &n.node) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let stop = Arc::new(AtomicBool::new(false));
            let http = match &n.http {
                Some(addr) => {
                    let mut cc = ClientConfig {
                        members: cfg.members.clone(),
                        ..ClientConfig::new("0=127.0.0.1:1").expect("valid")
                    };
                    cc.cluster_id = cfg.cluster_id;
                    cc.resend_interval = std::time::Duration::from_millis(100);
                    cc.leader_timeout = std::time::Duration::from_millis(500);
                    match kv::start_http(addr, cc, Arc::clone(&stop)) {
                        Ok(h) => Some(h),
                        Err(e) => {
                            eprintln!("kv-store: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                None => None,
            };
            let hooks = NodeHooks {
                state_hash: n.state_hash.then(|| {
                    Box::new(|s: &KvStore| u64::from(s.state_hash()))
                        as Box<dyn Fn(&KvStore) -> u64 + Send>
                }),
                ..NodeHooks::default()
            };
            let code = cli::run_node("kv-store", cfg, KvStore::default, hooks);
            stop.store(true, Ordering::Relaxed);
            if let Some(h) = http {
                let _ = h.join();
            }
            code
        }
        Command::Client(args) => kv::client(&args),
    }
}
