//! `cluster-bench member ...`: one member of a `--processes` run, in its own process.
//!
//! It runs the echo service with `ClusterNode` under the node flags it was given and exits
//! when its standard input closes (the benchmark closes it at the end, and the kernel closes
//! it if the benchmark dies), or with an error if its node stops by itself.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use tandem_cluster::node::{ClusterNode, NodeArgs, NodeConfig};

use super::echo::{Echo, new_echo};
use super::error::{BenchError, Result};

/// Runs one member until standard input closes.
///
/// # Errors
/// [`BenchError::Node`] for a bad configuration or a node that failed;
/// [`BenchError::Member`] if the node stopped by itself.
pub fn run_member(args: &NodeArgs) -> Result<()> {
    let cfg = NodeConfig::from_args(args)?;
    let member = cfg.member_id;
    let node = ClusterNode::launch(cfg, new_echo as fn() -> Echo)?;
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut sink = [0_u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = tx.send(());
        })
        .map_err(BenchError::io("stdin-watch thread"))?;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !node.is_running() {
            node.close()?;
            return Err(BenchError::Member {
                member,
                what: "its node stopped".into(),
            });
        }
    }
    node.close()?;
    Ok(())
}
