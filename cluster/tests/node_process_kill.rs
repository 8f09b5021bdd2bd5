//! Three real OS processes (`tandem-node`), the leader killed with SIGKILL under client load,
//! then restarted from its directory: the client carries on with no reply lost or doubled,
//! and the restarted member catches up (its control file's commit position reaches the
//! others').

#[path = "node_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tandem_cluster::control::ControlFile;
use tandem_cluster::node::{ClientConfig, ClientError, ClusterClient};

fn spawn(id: u32, members: &str, dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tandem-node"))
        .args([
            "--member-id",
            &id.to_string(),
            "--members",
            members,
            "--dir",
        ])
        .arg(dir)
        .args([
            "--cluster-id",
            "42",
            "--election-timeout-ms",
            "400",
            "--heartbeat-interval-ms",
            "40",
            "--segment-len-bytes",
            "1048576",
            "--idle",
            "backoff",
            "--bootstrap",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn leader_process_sigkilled_and_restarted() {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let dirs: Vec<PathBuf> = (0..3)
        .map(|i| root.path().join(format!("node-{i}")))
        .collect();
    let mut procs: Vec<Option<Child>> = (0..3)
        .map(|i| Some(spawn(i, &members, &dirs[i as usize])))
        .collect();
    let mut cc = ClientConfig::new(&members).unwrap();
    cc.cluster_id = 42;
    cc.window = 16;
    cc.resend_interval = Duration::from_millis(100);
    cc.leader_timeout = Duration::from_millis(500);
    let mut client = ClusterClient::new(cc).unwrap();
    client.connect(Duration::from_secs(30)).unwrap();
    let leader = client.leader() as usize;

    const N: u64 = 400;
    let mut replies: Vec<(u64, Vec<u8>)> = Vec::new();
    let (mut next, mut killed) = (0u64, None::<Instant>);
    let mut first_after: Option<Duration> = None;
    let start = Instant::now();
    while (replies.len() as u64) < N {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "stuck at {} replies",
            replies.len()
        );
        if next < N {
            match client.offer(format!("p-{next}").as_bytes()) {
                Ok(_) => next += 1,
                Err(ClientError::BackPressure { .. }) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let before = replies.len();
        client.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
        if killed.is_none() && replies.len() >= 150 {
            let mut p = procs[leader].take().unwrap();
            p.kill().unwrap(); // SIGKILL
            p.wait().unwrap();
            killed = Some(Instant::now());
        } else if let Some(k) = killed
            && first_after.is_none()
            && replies.len() > before
            && client.leader() as usize != leader
        {
            first_after = Some(k.elapsed());
        }
        if replies.len() == before {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    if let Some(d) = first_after {
        eprintln!(
            "PROCESS FAILOVER: SIGKILL -> first reply from the new leader {:.1} ms",
            d.as_secs_f64() * 1e3
        );
    }
    for (i, (seq, r)) in replies.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(r, format!("p-{i}").as_bytes());
    }
    procs[leader] = Some(spawn(leader as u32, &members, &dirs[leader]));
    wait_for(
        "restarted member catches up",
        Duration::from_secs(30),
        || {
            let commits: Vec<u64> = dirs
                .iter()
                .map(|d| ControlFile::open(d).map_or(0, |c| c.commit_position()))
                .collect();
            (commits[leader] > 0 && commits.iter().all(|&c| c == commits[0])).then_some(())
        },
    );
    for mut p in procs.into_iter().flatten() {
        // SIGTERM: a graceful stop.
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
        let status = p.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}
