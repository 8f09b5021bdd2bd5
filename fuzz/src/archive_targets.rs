//! Fuzz entry points for the archive's file parsers: the log recovery scan, the node state,
//! the recording log and the snapshot reader. Each takes arbitrary bytes, lays them out as the
//! file(s) concerned in a scratch directory, opens them the way a node does and then uses what
//! it got. Whatever the bytes: no panic, no hang, no unbounded allocation; an error names the
//! file. Shared by the cargo-fuzz targets (`fuzz/fuzz_targets`) and the normal test suite
//! (`archive/tests/fuzz_regressions.rs`, which includes this file by path).

use std::io::Read;
use std::path::{Path, PathBuf};

use tandem_archive::{
    ArchiveError, FrameHeader, HEADER_LEN, LOG_DIR_NAME, Log, LogConfig, NODE_STATE_FILE_NAME,
    NodeStateFile, RECORDING_LOG_FILE_NAME, RecordingLog, SNAPSHOTS_DIR_NAME, SnapshotStore,
    align_frame_len, encode_frame,
};

/// Segment length of the fuzzed logs (the smallest allowed).
pub const SEGMENT_BYTES: u64 = 64 * 1024;

/// A scratch directory emptied before each use (on `/dev/shm` when there is one: no disk I/O).
pub fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "tandem-fuzz-{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn config() -> LogConfig {
    LogConfig {
        segment_len_bytes: SEGMENT_BYTES,
        max_frame_len_bytes: SEGMENT_BYTES as usize,
        prepare_next_segment: false,
        prefault: false,
        ..LogConfig::default()
    }
}

/// Reads little-endian integers off the front of the fuzz input (zero when it runs out).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
    fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// Builds a log from the input (valid frames, raw bytes, bit flips and cuts at fuzzed places,
/// over one or two segments), then recovers it with a fuzzed durable position, walks and
/// verifies what was recovered, appends, truncates and reopens.
pub fn recovery_scan(data: &[u8]) {
    let dir = scratch("log");
    let log_dir = dir.join(LOG_DIR_NAME);
    let mut input = Input(data);
    // A valid log first (log.meta, segment 0), so the fuzz reaches the frame scan.
    {
        let (mut log, _) = Log::open(&log_dir, config(), 0).expect("empty log");
        let mut term = 1u64;
        let frames = input.u8() % 32;
        for i in 0..frames {
            term += u64::from(input.u8() % 2);
            let len = usize::from(input.u16()) % 9000;
            let header = FrameHeader {
                frame_type: 1 + u16::from(input.u8() % 4),
                flags: 0,
                term,
                session_id: u64::from(i),
                sequence: u64::from(i),
                timestamp: i64::from(i),
            };
            let payload = vec![i; len];
            log.append(&header, &payload).expect("append");
        }
    }
    // Then damage: each op overwrites bytes, flips a bit, writes an encoded frame at a
    // fuzzed position, or cuts / extends a segment file.
    let ops = input.u8() % 16;
    for _ in 0..ops {
        let op = input.u8() % 5;
        let seg = u64::from(input.u8() % 2);
        let path = log_dir.join(format!("{:020}.seg", seg * SEGMENT_BYTES));
        let Ok(mut bytes) = std::fs::read(&path) else {
            if op == 4 {
                let _ = std::fs::write(&path, vec![0u8; SEGMENT_BYTES as usize]);
            }
            continue;
        };
        let at = (input.u32() as usize) % (SEGMENT_BYTES as usize);
        match op {
            0 => {
                let n = usize::from(input.u8());
                let raw = input.bytes(n).to_vec();
                let end = (at + raw.len()).min(bytes.len());
                if at < end {
                    bytes[at..end].copy_from_slice(&raw[..end - at]);
                }
            }
            1 => {
                if at < bytes.len() {
                    bytes[at] ^= 1 << (input.u8() % 8);
                }
            }
            2 => {
                // A frame valid at its position (so the scan goes past it).
                let at = at & !7;
                let len = usize::from(input.u16()) % 512;
                let header = FrameHeader {
                    frame_type: input.u16(),
                    flags: input.u8(),
                    term: u64::from(input.u8()),
                    session_id: 0,
                    sequence: 0,
                    timestamp: 0,
                };
                let mut out = Vec::new();
                encode_frame(
                    &mut out,
                    seg * SEGMENT_BYTES + at as u64,
                    &header,
                    &vec![7; len],
                );
                out.resize(align_frame_len(out.len().max(HEADER_LEN)), 0);
                let end = (at + out.len()).min(bytes.len());
                if at < end {
                    bytes[at..end].copy_from_slice(&out[..end - at]);
                }
            }
            3 => bytes.truncate(at),
            _ => bytes.resize(bytes.len() + usize::from(input.u8()) * 8, 0),
        }
        std::fs::write(&path, &bytes).expect("write segment");
    }
    let durable = u64::from(input.u32()) % (2 * SEGMENT_BYTES);
    let Ok((mut log, report)) = Log::open(&log_dir, config(), durable) else {
        return;
    };
    let (start, end) = (log.start_position(), log.append_position());
    assert_eq!(report.append_position, end);
    assert!(
        end >= durable,
        "recovery never ends below the durable position"
    );
    assert!(start <= end);
    let mut prev = start;
    let mut last_term = 0;
    for f in log
        .frames(start, end)
        .expect("recovered log reads from its start")
    {
        assert!(f.position >= prev && f.next_position() <= end);
        assert!(
            f.header.term >= last_term,
            "terms never decrease after recovery"
        );
        last_term = f.header.term;
        prev = f.next_position();
    }
    log.verify(start, end).expect("a recovered log verifies");
    let term = log.last_term().max(1);
    let header = FrameHeader {
        frame_type: 1,
        flags: 0,
        term,
        session_id: 1,
        sequence: 1,
        timestamp: 1,
    };
    let after = log
        .append(&header, b"after recovery")
        .expect("append after recovery");
    assert!(after > end);
    log.truncate(end, 0).expect("truncate back");
    drop(log);
    let (log, _) = Log::open(&log_dir, config(), end).expect("reopen");
    assert_eq!(log.append_position(), end);
}

/// The node-state file: the input is the file (either slot, any length).
pub fn node_state(data: &[u8]) {
    let dir = scratch("state");
    std::fs::write(dir.join(NODE_STATE_FILE_NAME), data).expect("write");
    match NodeStateFile::open_existing(&dir) {
        Ok(f) => {
            let s = *f.state();
            let seq = f.sequence();
            drop(f);
            // As a node opens it: writable, checking the identity.
            let mut f = match NodeStateFile::open_or_create(&dir, s.cluster_id, s.member_id) {
                Ok(f) => f,
                Err(e) => return assert_names(&e, NODE_STATE_FILE_NAME),
            };
            assert_eq!(*f.state(), s);
            f.store(&s).expect("store after open");
            let again = NodeStateFile::open_existing(&dir).expect("reopen");
            assert_eq!(*again.state(), s);
            assert!(again.sequence() > seq);
        }
        Err(e) => assert_names(&e, NODE_STATE_FILE_NAME),
    }
}

/// The recording log: the input is the file.
pub fn recording_log(data: &[u8]) {
    let dir = scratch("rlog");
    std::fs::write(dir.join(RECORDING_LOG_FILE_NAME), data).expect("write");
    match RecordingLog::open_read_only(&dir) {
        Ok(r) => {
            let _ = r.valid_snapshot_sets();
            let _ = r.latest_snapshot_set();
            let _ = r.latest_term();
            for e in r.entries() {
                let _ = r.term_at(e.position);
            }
        }
        Err(e) => {
            assert_names(&e, RECORDING_LOG_FILE_NAME);
            return;
        }
    }
    match RecordingLog::open(&dir) {
        Ok(mut r) => {
            let n = r.entries().len();
            let _ = r.invalidate_latest_snapshot();
            let latest = r.latest_term().map_or((0, 0), |e| (e.term, e.position));
            if latest.0 < u64::MAX && r.append_term(latest.0 + 1, latest.1, 0).is_ok() {
                let again = RecordingLog::open_read_only(&dir).expect("reopen after append");
                assert_eq!(again.entries().len(), n + 1);
            }
        }
        Err(e) => assert_names(&e, RECORDING_LOG_FILE_NAME),
    }
}

/// The snapshot reader and the install-snapshot writer: the input is a snapshot file, read
/// from the store (as a restart does) and received in chunks (as install-snapshot does).
pub fn snapshot(data: &[u8]) {
    let dir = scratch("snap");
    let store = SnapshotStore::open(&dir).expect("store");
    let (term, position, service) = (3, 4096, -1);
    let name = SnapshotStore::file_name(term, position, service);
    std::fs::write(dir.join(SNAPSHOTS_DIR_NAME).join(&name), data).expect("write");
    match store.reader(position, service) {
        Ok(mut r) => {
            let len = r.body_len_bytes();
            assert!(len <= data.len() as u64);
            let mut body = Vec::new();
            r.read_to_end(&mut body).expect("a validated body reads");
            assert_eq!(body.len() as u64, len);
        }
        Err(e) => assert_names(&e, &name),
    }
    // The same bytes received from a leader, in fuzzed chunk sizes.
    let dir2 = scratch("snap-raw");
    let store2 = SnapshotStore::open(&dir2).expect("store");
    let mut w = store2
        .raw_writer(term, position, service)
        .expect("raw writer");
    let chunk = 1 + data.first().map_or(0, |&b| usize::from(b)) * 7;
    let mut offset = 0;
    for c in data.chunks(chunk) {
        if w.write_chunk(offset as u64, c).is_err() {
            return;
        }
        offset += c.len();
    }
    if w.finish().is_ok() {
        store2
            .verify(position, service)
            .expect("an accepted transfer verifies");
    }
}

fn assert_names(e: &ArchiveError, file: &str) {
    let text = e.to_string();
    assert!(
        text.contains(file) || matches!(e, ArchiveError::Io { .. }),
        "error does not name {file}: {text}"
    );
}
