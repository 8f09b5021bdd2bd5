//! Shared code of the sample binaries (`matching-engine`, `kv-store`, `game-server`):
//!
//! * [`run_node`]: one cluster member until a signal, `cluster-tool DIR stop`, or a
//!   cluster-wide shutdown/abort;
//! * [`ClientArgs`] and [`load`]: a client that sends a load at a rate and prints a summary
//!   (sent, acknowledged, rejected, lost, latency percentiles);
//! * [`matching`], [`kv`] (with its HTTP front) and [`game`]: each service's requests,
//!   command-line commands and load profile; [`matching::demo`]: the embedded demo.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use tandem_cluster::node::{
    ClientConfig, ClusterClient, ClusterNode, NodeArgs, NodeConfig, NodeHooks,
};
use tandem_service_api::ServiceFactory;

pub mod game;
pub mod http;
pub mod kv;
pub mod load;
pub mod matching;

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag read by [`signalled`].
pub fn install_signal_handlers() {
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Whether SIGINT or SIGTERM arrived (after [`install_signal_handlers`]).
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// The `node` sub-command's flags: every flag of the node runtime.
#[derive(Debug, Clone, Args)]
pub struct NodeCommand {
    /// The node runtime's flags.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Install the service's state-hash hook: members compare their state hash at every
    /// snapshot position (`cluster-tool DIR stat`: `state_divergences`). Costs a hash of the
    /// whole state after every duty cycle that applied something.
    #[arg(long)]
    pub state_hash: bool,
}

impl NodeCommand {
    /// The node hooks: the state-hash hook `hash` when `--state-hash` was given.
    pub fn hooks<S: 'static>(&self, hash: fn(&S) -> u64) -> NodeHooks<S> {
        NodeHooks {
            state_hash: self
                .state_hash
                .then(|| Box::new(hash) as Box<dyn Fn(&S) -> u64 + Send>),
            ..NodeHooks::default()
        }
    }
}

/// Builds a node configuration from flags, printing the error (`Err` is the exit code).
///
/// # Errors
/// Exit code 2 for an invalid configuration.
pub fn node_config(program: &str, args: &NodeArgs) -> Result<NodeConfig, ExitCode> {
    NodeConfig::from_args(args).map_err(|e| {
        eprintln!("{program}: {e}");
        ExitCode::from(2)
    })
}

/// Runs one member until SIGINT/SIGTERM (graceful stop: a leader hands over first), a
/// `cluster-tool DIR stop`, or a cluster-wide `shutdown`/`abort`.
pub fn run_node<F>(
    program: &str,
    cfg: NodeConfig,
    factory: F,
    hooks: NodeHooks<F::Service>,
) -> ExitCode
where
    F: ServiceFactory + Send + 'static,
    F::Service: Send + 'static,
{
    // Before the member's threads start: once warm, the allocator makes no brk/mmap/munmap
    // call on a busy thread (see `tandem_cluster::agent::retain_heap`).
    if !tandem_cluster::agent::retain_heap() {
        eprintln!("{program}: the allocator kept its defaults: tails may include mmap lock waits");
    }
    install_signal_handlers();
    let member = cfg.member_id;
    let node = match ClusterNode::launch_with(cfg, factory, hooks) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{program}: member {member}: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "{program}: member {member} started (pid {}, dir {})",
        std::process::id(),
        node.dir().display()
    );
    let mut last_role = None;
    while !signalled() && node.is_running() {
        let s = node.status();
        if last_role != Some((s.role, s.term)) {
            last_role = Some((s.role, s.term));
            println!(
                "{program}: member {member}: {:?} in term {} (leader {})",
                s.role,
                s.term,
                s.leader.map_or("unknown".to_string(), |l| l.to_string())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = node.status();
    let result = if node.is_running() {
        node.stop(Duration::from_secs(5))
    } else {
        node.close()
    };
    println!(
        "{program}: member {member} stopped (term {}, commit position {})",
        s.term, s.commit_position
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: member {member}: {e}");
            ExitCode::from(1)
        }
    }
}

/// The `client` sub-command's flags.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Members list: `0=HOST:PORT,1=HOST:PORT,...` (client ports).
    #[arg(long)]
    pub members: String,
    /// Cluster id (as given to the nodes).
    #[arg(long, default_value_t = 0)]
    pub cluster_id: u64,
    /// Load: messages per second over all client sessions (0: as fast as the window allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Load: seconds to send for.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Load: client sessions (one thread each).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// Seconds to wait for a leader, and for the replies.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Commands to send instead of a load (see the binary's help).
    #[arg(trailing_var_arg = true)]
    pub commands: Vec<String>,
}

impl ClientArgs {
    /// Whether a load was asked for (`--rate` or `--duration`, or no commands).
    pub fn is_load(&self) -> bool {
        self.rate.is_some() || self.duration.is_some() || self.commands.is_empty()
    }

    /// The client configuration.
    ///
    /// # Errors
    /// A message if the members list does not parse.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut cc = ClientConfig::new(&self.members).map_err(|e| e.to_string())?;
        cc.cluster_id = self.cluster_id;
        cc.resend_interval = Duration::from_millis(100);
        cc.leader_timeout = Duration::from_millis(500);
        Ok(cc)
    }

    /// A connected client.
    ///
    /// # Errors
    /// A message if the members list does not parse or no leader answered in time.
    pub fn connect(&self) -> Result<ClusterClient, String> {
        connect(self.client_config()?, secs(self.timeout))
    }
}

/// A UDP client connected within `timeout`.
///
/// # Errors
/// A message if no leader answered in time.
pub fn connect(cc: ClientConfig, timeout: Duration) -> Result<ClusterClient, String> {
    let mut c = ClusterClient::new(cc).map_err(|e| e.to_string())?;
    c.connect(timeout).map_err(|e| format!("connect: {e}"))?;
    Ok(c)
}

/// Seconds as a duration (negative and NaN as zero).
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 0.0 })
}

/// Sends `requests` (encoded) one after the other on one session and prints every reply
/// (`describe`), until each request has a reply and none came for a moment, or `timeout`.
///
/// # Errors
/// A message if the session failed.
pub fn send_commands(
    client: &mut ClusterClient,
    requests: &[(String, Vec<u8>)],
    timeout: Duration,
    mut describe: impl FnMut(&[u8]) -> String,
) -> Result<(), String> {
    let answered = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let mut seqs = Vec::new();
    let mut print = |seq: u64, reply: &[u8]| {
        answered.borrow_mut().insert(seq);
        println!("  reply to #{seq}: {}", describe(reply));
    };
    for (text, bytes) in requests {
        let seq = client
            .offer_blocking(bytes, timeout, &mut print)
            .map_err(|e| e.to_string())?;
        println!("#{seq}: {text}");
        seqs.push(seq);
    }
    let start = Instant::now();
    let mut last_reply = Instant::now();
    while start.elapsed() < timeout {
        let n = client.poll(&mut print).map_err(|e| e.to_string())?;
        if n > 0 {
            last_reply = Instant::now();
        }
        let all = seqs.iter().all(|s| answered.borrow().contains(s));
        if all && last_reply.elapsed() > Duration::from_millis(300) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if seqs.iter().all(|s| answered.borrow().contains(s)) {
        Ok(())
    } else {
        Err(format!("not every request was answered within {timeout:?}"))
    }
}

/// A members list of `n` members on free loopback ports (client port P, peer port P+1).
pub fn free_members(n: u32) -> String {
    let mut parts = Vec::new();
    let mut held = Vec::new();
    let mut id = 0;
    while id < n {
        let Ok(a) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(port) = a.local_addr().map(|a| a.port()) else {
            continue;
        };
        if port == u16::MAX {
            continue;
        }
        let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1)) else {
            continue;
        };
        parts.push(format!("{id}=127.0.0.1:{port}"));
        held.push((a, b));
        id += 1;
    }
    parts.join(",")
}

/// A directory under [`std::env::temp_dir`], removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<temp>/<prefix>-<pid>-<nanos>`.
    ///
    /// # Errors
    /// If the directory cannot be created.
    pub fn new(prefix: &str) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(Self(p))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits `words` into commands, each starting at a word in `keywords`.
///
/// # Errors
/// A message if the first word is not a keyword.
pub fn split_commands(words: &[String], keywords: &[&str]) -> Result<Vec<Vec<String>>, String> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for w in words {
        if keywords.contains(&w.as_str()) {
            out.push(vec![w.clone()]);
        } else if let Some(last) = out.last_mut() {
            last.push(w.clone());
        } else {
            return Err(format!(
                "unknown command {w:?}: expected one of {}",
                keywords.join(", ")
            ));
        }
    }
    Ok(out)
}
