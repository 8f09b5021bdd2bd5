//! `tandem-node`: runs one cluster member with an echo service until SIGINT/SIGTERM or a
//! `stop`/`shutdown` request through the control toggle (`cluster-tool <dir> stop`).
//!
//! ```text
//! tandem-node --member-id 0 --members 0=127.0.0.1:9010,1=127.0.0.1:9020,2=127.0.0.1:9030 \
//!             --dir /tmp/tandem/node-0 --bootstrap [--config node.toml] [--fsync batch] ...
//! ```
//! The basis of the samples' `node` sub-commands and of the multi-process kill test.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use tandem_cluster::node::{ClusterNode, NodeArgs, NodeConfig};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Echoes every message back to its session; counts messages (kept in snapshots).
#[derive(Debug, Default)]
struct EchoService {
    messages: u64,
}

impl ClusteredService for EchoService {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        if let Some(mut image) = snapshot {
            self.messages = image.read_u64().unwrap_or(0);
        }
    }
    fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}
    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        _: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
    }
    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _: i64,
        message: &[u8],
        _: &Header,
    ) {
        self.messages += 1;
        if let Some(s) = session {
            let _ = cluster.offer_egress(s, message);
        }
    }
    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}
    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        writer.write_u64(self.messages);
    }
    fn on_role_change(&mut self, _: Role) {}
    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}
    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

fn main() -> ExitCode {
    // Before the member's threads start: once warm, the allocator makes no brk/mmap/munmap
    // call on a busy thread (see `tandem_cluster::agent::retain_heap`).
    if !tandem_cluster::agent::retain_heap() {
        eprintln!(
            "tandem-node: the allocator kept its defaults: tails may include mmap lock waits"
        );
    }
    let args = NodeArgs::parse();
    let cfg = match NodeConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tandem-node: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let member = cfg.member_id;
    let node = match ClusterNode::launch(cfg, EchoService::default) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tandem-node: member {member}: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "{{\"event\":\"started\",\"member\":{member},\"pid\":{},\"dir\":\"{}\"}}",
        std::process::id(),
        node.dir().display()
    );
    while !SIGNALLED.load(Ordering::SeqCst) && node.is_running() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = node.status();
    let result = if node.is_running() {
        node.stop(Duration::from_secs(5))
    } else {
        node.close()
    };
    println!(
        "{{\"event\":\"stopped\",\"member\":{member},\"term\":{},\"commit\":{}}}",
        s.term, s.commit_position
    );
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-node: member {member}: {e}");
            ExitCode::from(1)
        }
    }
}
