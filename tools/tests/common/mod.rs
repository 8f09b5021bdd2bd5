//! Shared fixtures: node directories built with the archive API, a runner for the real
//! `cluster-tool` binary, and a thread that plays a node behind a control file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tandem_archive::{
    Archive, ArchiveConfig, CONSENSUS_MODULE_SERVICE_ID, Durability, FrameHeader, LogConfig,
};
use tandem_cluster::consensus::snapshot::Snapshot;
use tandem_cluster::consensus::types::{LogPosition, Term};
use tandem_cluster::control::{Action, ActionResult, ControlFile, ControlIdent};

/// Segment length of the fixtures: the smallest the archive allows.
pub const SEG: u64 = 64 * 1024;
/// Payload length of every fixture frame (1048 bytes with header and alignment).
pub const PAYLOAD: usize = 1000;
pub const CLUSTER_ID: u64 = 7;
pub const MEMBER_ID: u32 = 1;
/// The members list a [`FakeNode`] writes into its control file.
pub const FAKE_MEMBERS: &str = "0=127.0.0.1:9010,1=127.0.0.1:9020,2=[::1]:9030";

/// What a run of the tool printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `cluster-tool <dir> <args...>`.
pub fn tool(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_cluster-tool"))
        .arg(dir)
        .args(args)
        .output()
        .expect("run cluster-tool");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts a failure: exit 2, one line on stderr containing every `needles`.
pub fn assert_fails(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, 2, "expected exit 2: {run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "one line on stderr: {run:?}");
    for n in needles {
        assert!(run.stderr.contains(n), "stderr lacks {n:?}: {run:?}");
    }
}

pub fn config() -> ArchiveConfig {
    ArchiveConfig {
        log: LogConfig {
            segment_len_bytes: SEG,
            max_frame_len_bytes: 8192,
            durability: Durability::None,
            prepare_next_segment: false,
            prefault: false,
        },
        ..ArchiveConfig::default()
    }
}

/// A node directory built with the archive API.
#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// Position of every frame appended, in order.
    pub frame_positions: Vec<u64>,
    /// Positions of the snapshot sets taken, oldest first.
    pub snapshot_positions: Vec<u64>,
    /// The log's append position.
    pub end: u64,
}

impl Fixture {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The segment file holding `position`.
    pub fn segment_path(&self, position: u64) -> PathBuf {
        self.path()
            .join("log")
            .join(format!("{:020}.seg", position & !(SEG - 1)))
    }

    pub fn snapshot_path(&self, term: u64, position: u64, service_id: i32) -> PathBuf {
        self.path()
            .join("snapshots")
            .join(tandem_archive::SnapshotStore::file_name(
                term, position, service_id,
            ))
    }
}

/// The module state of the fixture's consensus-module snapshots (the layout
/// `ModuleState::encode` documents): one session and one timer.
pub fn module_state_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.push(1u8); // version
    b.extend_from_slice(&5u64.to_le_bytes()); // next session id
    b.extend_from_slice(&123_456i64.to_le_bytes()); // cluster time
    b.extend_from_slice(&1u64.to_le_bytes()); // next service message id
    b.extend_from_slice(&0u64.to_le_bytes()); // last applied service message id
    b.extend_from_slice(&3u64.to_le_bytes()); // timers' next generation
    b.extend_from_slice(&1u32.to_le_bytes()); // sessions
    b.extend_from_slice(&4u64.to_le_bytes()); // id
    b.extend_from_slice(&99u64.to_le_bytes()); // client
    b.extend_from_slice(&11u64.to_le_bytes()); // correlation id
    b.extend_from_slice(&42u64.to_le_bytes()); // last seq
    b.extend_from_slice(&41u64.to_le_bytes()); // egress seq
    b.push(0); // not closing
    b.extend_from_slice(&5u32.to_le_bytes());
    b.extend_from_slice(b"alice");
    b.extend_from_slice(&0u32.to_le_bytes()); // cached replies
    b.extend_from_slice(&1u32.to_le_bytes()); // timers
    b.extend_from_slice(&77u64.to_le_bytes()); // correlation id
    b.extend_from_slice(&999i64.to_le_bytes()); // deadline
    b.extend_from_slice(&2u64.to_le_bytes()); // generation
    b.extend_from_slice(&0u32.to_le_bytes()); // pending service messages
    b
}

/// Builds a directory with `frames` frames (term 1 for the first half, term 2 after) and a
/// snapshot set (service 0 and the consensus module) after each frame index in
/// `snapshot_after`.
pub fn fixture(frames: usize, snapshot_after: &[usize]) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut archive, _) =
        Archive::open(dir.path(), CLUSTER_ID, MEMBER_ID, config()).expect("open archive");
    let mut frame_positions = Vec::new();
    let mut snapshot_positions = Vec::new();
    let half = frames / 2;
    archive
        .recording_log_mut()
        .append_term(1, 0, 10)
        .expect("term 1");
    for i in 0..frames {
        let term = if i < half { 1 } else { 2 };
        if i == half {
            let base = archive.log().append_position();
            archive
                .recording_log_mut()
                .append_term(2, base, 20)
                .expect("term 2");
        }
        let header = FrameHeader {
            frame_type: 4,
            flags: 0,
            term,
            session_id: 3,
            sequence: i as u64,
            timestamp: 1_000 + i as i64,
        };
        frame_positions.push(archive.log().append_position());
        archive
            .log_mut()
            .append(&header, &[i as u8; PAYLOAD])
            .expect("append");
        if snapshot_after.contains(&i) {
            let position = archive.log().append_position();
            let ts = 5_000 + i as i64;
            for service_id in [0, CONSENSUS_MODULE_SERVICE_ID] {
                let body = if service_id == CONSENSUS_MODULE_SERVICE_ID {
                    Snapshot::encode(
                        LogPosition(position),
                        Term(term),
                        ts,
                        &module_state_bytes(),
                        b"",
                    )
                    .bytes
                } else {
                    vec![0xAB; 3000]
                };
                let mut w = archive
                    .snapshots()
                    .writer(term, position, service_id, ts)
                    .expect("snapshot writer");
                std::io::Write::write_all(&mut w, &body).expect("write snapshot");
                w.finish().expect("finish snapshot");
                archive
                    .recording_log_mut()
                    .append_snapshot(term, position, ts, service_id)
                    .expect("snapshot entry");
            }
            snapshot_positions.push(position);
        }
    }
    archive.log_mut().sync().expect("sync");
    let end = archive.log().append_position();
    drop(archive);
    wait_unlocked(dir.path());
    Fixture {
        dir,
        frame_positions,
        snapshot_positions,
        end,
    }
}

/// Flips one bit of a file at byte `offset`.
pub fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset as usize] ^= 0x10;
    std::fs::write(path, bytes).expect("write");
}

/// Every file under `dir` with its contents, for "nothing changed" checks.
pub fn snapshot_tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// How the fake node answers a request.
pub type Answer = Box<dyn Fn(Action) -> ActionResult + Send>;

/// A thread playing a node behind a control file: it holds the directory's writer lock as a
/// node does, answers toggle requests with `answer` and records the actions it saw.
pub struct FakeNode {
    pub control: Arc<ControlFile>,
    lock: Option<tandem_archive::DirLock>,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<Action>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Creates `<dir>/control.dat` for member `member_id` of 3, without answering requests.
    pub fn silent(dir: &Path, member_id: u32) -> FakeNode {
        let lock = tandem_archive::DirLock::acquire(dir).expect("lock the node directory");
        let control = ControlFile::create(
            dir,
            ControlIdent {
                cluster_id: CLUSTER_ID,
                member_id,
                member_count: 3,
            },
            FAKE_MEMBERS,
        )
        .expect("create control file");
        FakeNode {
            control: Arc::new(control),
            lock: Some(lock),
            stop: Arc::new(AtomicBool::new(false)),
            seen: Arc::default(),
            thread: None,
        }
    }

    /// As [`FakeNode::silent`], answering every request with `answer`.
    pub fn answering(dir: &Path, member_id: u32, answer: Answer) -> FakeNode {
        let mut node = FakeNode::silent(dir, member_id);
        let (control, stop, seen) = (
            Arc::clone(&node.control),
            Arc::clone(&node.stop),
            Arc::clone(&node.seen),
        );
        node.thread = Some(std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                if let Some((id, action)) = control.poll_request() {
                    seen.lock().unwrap().push(action);
                    // A node takes a moment: the tool must wait for completion.
                    std::thread::sleep(Duration::from_millis(50));
                    control.complete(id, answer(action)).expect("complete");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
        node
    }

    /// The actions the node was asked for.
    pub fn seen(&self) -> Vec<Action> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(lock) = self.lock.take() {
            let dir = lock.dir().to_path_buf();
            drop(lock);
            wait_unlocked(&dir);
        }
    }
}

/// A pid that no process has (a child that has exited and been reaped).
pub fn dead_pid() -> u64 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait");
    u64::from(pid)
}

/// Rewrites the pid in a control file (word 3), making it name another process.
pub fn set_control_pid(dir: &Path, pid: u64) {
    let path = dir.join(tandem_cluster::control::CONTROL_FILE_NAME);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open control file");
    std::os::unix::fs::FileExt::write_all_at(&file, &pid.to_ne_bytes(), 24)
        .expect("write control file");
}

/// Waits until nobody holds the directory's lock. A child process that another test thread
/// forks while this one holds the lock keeps a copy of the locked descriptor until it execs,
/// so the lock can outlive the `Archive` for a moment.
pub fn wait_unlocked(dir: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !matches!(tandem_archive::DirLock::holder_pid(dir), Ok(None)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} stays locked",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
