//! Corrupted and hostile files in a member's directory, against a live 3-member cluster: bits
//! flipped and files truncated, in turn, in a log segment below the commit position, the tail
//! of the last segment, a snapshot, the node state file, the recording log and the control
//! file. What the member does:
//!
//! * a torn tail of the last segment is truncated at start and the member catches up from the
//!   leader;
//! * anything else stops the member at start with a typed `NodeError` naming the file and the
//!   position (byte offset), and `cluster-tool verify` reports the same file and position;
//!   the member, wiped, rejoins as a learner through install-snapshot and the cluster has lost
//!   nothing;
//! * the control file is not durable state (positions, counters and the error log are
//!   rebuilt by the running node): the member recreates it at every start, so a corrupted one
//!   is reported by `verify` while the member is down and replaced when it starts.
//!
//! One cluster at a time (`SERIAL`), as in `live.rs`.

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use cluster::*;
use common::tool;
use tandem_archive::{
    NODE_STATE_FILE_NAME, NodeStateFile, RECORDING_LOG_FILE_NAME, SNAPSHOTS_DIR_NAME,
};
use tandem_cluster::control::{Action, ResultCode};
use tandem_cluster::node::{ClusterNode, NodeError};
use tandem_service_api::Role;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const MESSAGE_BYTES: usize = 400;

/// A cluster with two snapshots and a log of several segments, its client, the messages sent,
/// and one follower (the victim) closed.
struct Setup {
    c: LiveCluster,
    client: tandem_cluster::node::ClusterClient,
    sent: u64,
    victim: usize,
    snapshots: [u64; 2],
}

fn snapshot(c: &LiveCluster, id: usize) -> u64 {
    let r = c
        .node(id)
        .request(Action::Snapshot, Duration::from_secs(20))
        .unwrap();
    assert_eq!(r.code, ResultCode::Ok, "{r:?}");
    r.value
}

fn setup() -> Setup {
    let mut c = LiveCluster::launch();
    let leader = c.leader();
    let mut client = c.client();
    send(&mut client, 0, 200, MESSAGE_BYTES);
    let first = snapshot(&c, leader);
    send(&mut client, 200, 100, MESSAGE_BYTES);
    let second = snapshot(&c, leader);
    send(&mut client, 300, 100, MESSAGE_BYTES);
    c.wait_applied(400);
    assert!(
        first > SEGMENT_LEN,
        "the first snapshot lies past the first segment"
    );
    let victim = c.others(leader)[0];
    let dir = c.dir(victim);
    // The commit lower bound is persisted a heartbeat after the commit moves.
    wait_for("the victim's commit bound persisted", LIMIT, || {
        let bound = NodeStateFile::open_existing(&dir)
            .ok()?
            .state()
            .commit_position_lower_bound;
        (bound >= second).then_some(())
    });
    wait_for("every member snapshotted", LIMIT, || {
        (0..3)
            .all(|i| c.node(i).control().snapshot_position() >= second)
            .then_some(())
    });
    c.close(victim);
    Setup {
        c,
        client,
        sent: 400,
        victim,
        snapshots: [first, second],
    }
}

fn commit_bound(dir: &Path) -> u64 {
    NodeStateFile::open_existing(dir)
        .unwrap()
        .state()
        .commit_position_lower_bound
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join("log").join(format!("{base:020}.seg"))
}

/// The segment files of `dir`, by base position.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("log"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let base = p
                .file_name()?
                .to_str()?
                .strip_suffix(".seg")?
                .parse()
                .ok()?;
            Some((base, p))
        })
        .collect();
    out.sort();
    out
}

/// The newest snapshot file (the consensus module's, which holds the service's bytes).
fn newest_snapshot_file(dir: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(SNAPSHOTS_DIR_NAME))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .collect();
    files.sort();
    files.pop().expect("a snapshot file")
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
    f.sync_all().unwrap();
}

/// `corrupted <file> at position <n>` out of an error text.
fn corrupted_clause(text: &str) -> Option<String> {
    let start = text.find("corrupted ")?;
    let rest = &text[start..];
    let at = rest.find(" at position ")?;
    let digits = rest[at + 13..]
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(rest.len() - at - 13);
    Some(rest[..at + 13 + digits].to_string())
}

fn launch(c: &LiveCluster, id: usize, bootstrap: bool) -> Result<ClusterNode, NodeError> {
    let mut cfg = config(id as u32, &c.members, c.root.path());
    cfg.bootstrap = bootstrap;
    ClusterNode::launch_with(cfg, Echo::default, hooks())
}

/// The member refuses to start, naming `file` and `position`; `verify` names the same.
fn assert_refused(c: &LiveCluster, id: usize, file: &Path, position: u64) {
    let err = launch(c, id, true).expect_err("a corrupted directory must not start");
    let text = err.to_string();
    let file_text = file.display().to_string();
    assert!(text.contains(&file_text), "error names {file_text}: {text}");
    let clause = corrupted_clause(&text).unwrap_or_else(|| panic!("no file/position in: {text}"));
    assert!(
        clause.ends_with(&format!(" at position {position}")),
        "error names position {position}: {text}"
    );
    common::wait_unlocked(&c.dir(id));
    let run = tool(&c.dir(id), &["verify"]);
    assert_ne!(run.code, 0, "verify fails: {run:?}");
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains(&clause),
        "verify reports the same file and position ({clause}): {out}"
    );
}

/// Wipes member `id`'s directory (after every member purged its log up to retention, so the
/// leader's log starts at a snapshot) and starts it empty: it is a learner, installs the
/// leader's snapshot, catches up and the cluster has every message once.
fn wipe_and_rejoin(s: &mut Setup) {
    let id = s.victim;
    for i in s.c.others(id) {
        let r =
            s.c.node(i)
                .request(Action::Purge(u64::MAX), Duration::from_secs(20))
                .unwrap();
        assert_eq!(r.code, ResultCode::Ok, "purge on member {i}: {r:?}");
        assert!(
            s.c.node(i).status().log_start >= s.snapshots[0],
            "member {i}'s log starts at a snapshot"
        );
    }
    std::fs::remove_dir_all(s.c.dir(id)).unwrap();
    s.c.nodes[id] = Some(launch(&s.c, id, false).unwrap());
    assert_eq!(
        s.c.node(id).role(),
        Role::Learner,
        "a wiped member is a learner"
    );
    wait_for("install-snapshot", LIMIT, || {
        (s.c.node(id).status().snapshots_installed >= 1).then_some(())
    });
    send(&mut s.client, s.sent, 20, MESSAGE_BYTES);
    s.sent += 20;
    s.c.wait_applied(s.sent);
    wait_for("promoted to follower", LIMIT, || {
        (s.c.node(id).role() == Role::Follower).then_some(())
    });
}

/// Restarts member `id` normally and checks it caught up with the others.
fn restart_and_catch_up(s: &mut Setup) {
    let id = s.victim;
    s.c.nodes[id] = Some(launch(&s.c, id, true).expect("the member starts"));
    send(&mut s.client, s.sent, 20, MESSAGE_BYTES);
    s.sent += 20;
    s.c.wait_applied(s.sent);
}

#[test]
fn log_segment_below_the_commit_position() {
    let _g = serial();
    let mut s = setup();
    let dir = s.c.dir(s.victim);
    let bound = commit_bound(&dir);
    let (base, path) = segments(&dir)[1].clone();
    assert!(
        base + SEGMENT_LEN <= bound,
        "segment 1 lies below the commit bound {bound}"
    );
    let pristine = std::fs::read(&path).unwrap();

    // A bit flipped in the header of the segment's first frame (it begins at the base).
    flip(&path, 20);
    assert_refused(&s.c, s.victim, &path, base);
    // A bit flipped in a payload further in.
    std::fs::write(&path, &pristine).unwrap();
    flip(&path, 64);
    assert_refused(&s.c, s.victim, &path, base);
    // The segment cut short.
    std::fs::write(&path, &pristine).unwrap();
    truncate(&path, SEGMENT_LEN / 2);
    assert_refused(&s.c, s.victim, &path, base);

    wipe_and_rejoin(&mut s);
}

#[test]
fn torn_tail_of_the_last_segment_is_truncated_and_caught_up() {
    let _g = serial();
    let mut s = setup();
    let dir = s.c.dir(s.victim);
    let run = tool(&dir, &["verify", "--json"]);
    assert_eq!(run.code, 0, "a cleanly closed member verifies: {run:?}");
    let end = run.json()["log"]["end_position"].as_u64().unwrap();
    // The segment holding the end (a later, prepared one may exist, empty).
    let base = end - end % SEGMENT_LEN;
    let path = segment_path(&dir, base);
    assert!(segments(&dir).iter().any(|(b, _)| *b == base));
    // Half a frame written past the end: a length, a checksum and part of a header.
    let mut bytes = std::fs::read(&path).unwrap();
    let off = (end - base) as usize;
    bytes[off..off + 4].copy_from_slice(&480u32.to_le_bytes());
    bytes[off + 4..off + 30].fill(0xA5);
    std::fs::write(&path, bytes).unwrap();
    // verify reports where the torn frame is; the node truncates there.
    let run = tool(&dir, &["verify"]);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains(&format!("corrupted {} at position {end}", path.display())),
        "{out}"
    );
    restart_and_catch_up(&mut s);
    s.c.close(s.victim);
    let run = tool(&dir, &["verify"]);
    assert_eq!(run.code, 0, "the restarted member's log verifies: {run:?}");
    s.c.restart(s.victim);
    s.c.wait_applied(s.sent);
}

#[test]
fn snapshot_flipped_or_truncated() {
    let _g = serial();
    let mut s = setup();
    let dir = s.c.dir(s.victim);
    let path = newest_snapshot_file(&dir);
    let pristine = std::fs::read(&path).unwrap();
    // A bit flipped in the body: the checksum in the trailer fails.
    flip(&path, 70);
    let err = launch(&s.c, s.victim, true).expect_err("a corrupted snapshot must not start");
    assert!(matches!(err, NodeError::Snapshot { position, .. } if position == s.snapshots[1]));
    let clause = corrupted_clause(&err.to_string()).expect("file and position");
    assert!(clause.contains(&path.display().to_string()), "{err}");
    common::wait_unlocked(&dir);
    let run = tool(&dir, &["verify"]);
    assert_ne!(run.code, 0);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains(&clause), "verify reports {clause}: {out}");
    // Cut short.
    std::fs::write(&path, &pristine).unwrap();
    truncate(&path, pristine.len() as u64 / 2);
    let err = launch(&s.c, s.victim, true).expect_err("a torn snapshot must not start");
    let clause = corrupted_clause(&err.to_string()).expect("file and position");
    assert!(clause.contains(&path.display().to_string()), "{err}");
    common::wait_unlocked(&dir);
    let run = tool(&dir, &["verify"]);
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains(&clause), "verify reports {clause}: {out}");

    wipe_and_rejoin(&mut s);
}

#[test]
fn node_state_flipped_or_truncated() {
    let _g = serial();
    let mut s = setup();
    let dir = s.c.dir(s.victim);
    let path = dir.join(NODE_STATE_FILE_NAME);
    let pristine = std::fs::read(&path).unwrap();
    // One slot flipped: the other slot (one update older) is used, as documented; both
    // flipped: nothing valid is left.
    flip(&path, 24);
    flip(&path, 4096 + 24);
    assert_refused(&s.c, s.victim, &path, 0);
    std::fs::write(&path, &pristine).unwrap();
    truncate(&path, 40);
    assert_refused(&s.c, s.victim, &path, 0);

    wipe_and_rejoin(&mut s);
}

#[test]
fn recording_log_flipped_or_truncated() {
    let _g = serial();
    let mut s = setup();
    let dir = s.c.dir(s.victim);
    let path = dir.join(RECORDING_LOG_FILE_NAME);
    let pristine = std::fs::read(&path).unwrap();
    assert!(pristine.len() >= 64 + 3 * 64, "header and several entries");
    // The first entry (not the last, which a crash may tear).
    flip(&path, 64 + 20);
    assert_refused(&s.c, s.victim, &path, 64);
    // The header.
    std::fs::write(&path, &pristine).unwrap();
    flip(&path, 8);
    assert_refused(&s.c, s.victim, &path, 0);
    // Cut inside the header.
    std::fs::write(&path, &pristine).unwrap();
    truncate(&path, 40);
    assert_refused(&s.c, s.victim, &path, 0);
    // The last entry damaged reads as an append a crash tore: it is cut off (documented).
    // Here it is the newest snapshot set's entry, so the member starts from the previous set,
    // whose log the retention policy kept, replays and catches up.
    std::fs::write(&path, &pristine).unwrap();
    let last = pristine.len() as u64 - 64;
    flip(&path, last + 20);
    restart_and_catch_up(&mut s);
    s.c.close(s.victim);

    wipe_and_rejoin(&mut s);
}

#[test]
fn control_file_is_recreated_at_start() {
    let _g = serial();
    let mut s = setup();
    let dir = s.c.dir(s.victim);
    let path = dir.join(tandem_cluster::control::CONTROL_FILE_NAME);
    flip(&path, 0);
    truncate(&path, 100);
    let run = tool(&dir, &["verify"]);
    assert_ne!(
        run.code, 0,
        "verify reports the damaged control file: {run:?}"
    );
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains(&path.display().to_string()), "{out}");
    // Not durable state: the member starts, writes a new one and catches up.
    restart_and_catch_up(&mut s);
    assert!(s.c.node(s.victim).control().errors().is_empty());
    s.c.close(s.victim);
    let run = tool(&dir, &["verify"]);
    assert_eq!(run.code, 0, "the recreated control file verifies: {run:?}");
}

#[test]
fn a_member_that_lost_its_snapshots_rejoins_as_a_learner() {
    let _g = serial();
    let mut s = setup();
    let victim = s.victim;
    let dir = s.c.dir(victim);
    // Every member purges its log up to retention (the victim offline): logs now start at
    // or above a segment base above 0.
    for i in s.c.others(victim) {
        let r =
            s.c.node(i)
                .request(Action::Purge(u64::MAX), Duration::from_secs(20))
                .unwrap();
        assert_eq!(r.code, ResultCode::Ok, "purge on member {i}: {r:?}");
    }
    let run = tool(&dir, &["purge-segments"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !segment_path(&dir, 0).exists(),
        "the victim's first segment was purged"
    );
    // Both snapshot sets invalidated: the log, which starts above 0, is of no use alone.
    for _ in 0..2 {
        let run = tool(&dir, &["invalidate-latest-snapshot"]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    // It restarts with an empty log: it acknowledged entries it no longer holds, so it must
    // not vote until it caught up again (install-snapshot).
    s.c.nodes[victim] = Some(launch(&s.c, victim, true).expect("the member starts"));
    assert_eq!(
        s.c.node(victim).role(),
        Role::Learner,
        "it lost data: a learner"
    );
    wait_for("install-snapshot", LIMIT, || {
        (s.c.node(victim).status().snapshots_installed >= 1).then_some(())
    });
    send(&mut s.client, s.sent, 20, MESSAGE_BYTES);
    s.sent += 20;
    s.c.wait_applied(s.sent);
    wait_for("promoted to follower", LIMIT, || {
        (s.c.node(victim).role() == Role::Follower).then_some(())
    });
}
