//! [`ArchiveLogStore`]: the consensus core's [`LogStore`] over the archive's memory-mapped
//! [`Log`].
//!
//! Frames pass unchanged between the core, the segments and the wire (the cluster codec
//! writes the archive's frame layout). What the store adds:
//!
//! * **Logical start.** The archive purges whole segments; the core purges at any frame
//!   boundary at or below its newest snapshot. The store keeps the core's start position and
//!   the term of the frame ending there, and reads nothing below it.
//! * **Positions across padding.** The archive closes a segment's tail with padding (a padding
//!   frame, or fewer than 48 zero bytes) written together with the frame that follows at the
//!   next segment's base; it never serves padding ([`Log::raw_frames`] and [`Log::frames`] skip
//!   it) and places every appended frame itself ([`Log::append_encoded`] regenerates padding).
//!   The store reports where frames lie ([`LogStore::next_frame`], [`LogStore::read_frames`],
//!   the end returned by an append), so the core never counts bytes across a padding, and a
//!   follower's archive places each replicated frame where the leader's did (its CRC covers
//!   its position, so a frame that landed elsewhere is refused). Every member must use the
//!   same segment length.
//!
//! * **Operating errors.** The core's `LogStore` is infallible (it is pure and also runs over
//!   the simulator's memory log). An archive error while changing the log (a full disk when a
//!   segment is created, an I/O error syncing or deleting a segment, a replicated frame that
//!   does not validate where it would land) *poisons* the store instead of panicking: the
//!   first [`LogStoreError`] (operation, position, directory and the archive's error, which
//!   names the file) is kept, the log is left as the archive left it, and every later append,
//!   truncate or reset is refused. A refused append returns the archive's append position
//!   unchanged, so the core never counts (nor acknowledges) a frame that is not in the log.
//!   The runtime checks [`ArchiveLogStore::is_failed`] before carrying out the core's commands
//!   and stops the node with the error ([`ArchiveLogStore::take_error`]); nothing the core
//!   decided after the failure is sent. The check is one `bool` per command: the hot path
//!   keeps no other cost.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;

use crate::codec::frame::{EntryType, Frame, FrameHeader};
use crate::consensus::storage::{FrameRun, LocatedFrame};
use crate::consensus::{LogPosition, LogStore, SessionId, Term};
use tandem_archive::{FrameHeader as ArchiveHeader, HEADER_LEN, Log, align_frame_len};

/// The core's log over an archive [`Log`].
#[derive(Debug)]
pub struct ArchiveLogStore {
    log: Log,
    segment_len_bytes: u64,
    /// The core's log start (a frame boundary at or above the archive's start).
    start: LogPosition,
    /// Term of the frame ending at `start`.
    start_term: Term,
    /// The core's commit position as last reported by the runtime (truncation floor).
    commit_floor: Cell<u64>,
    /// An archive error poisoned the store: no change to the log is made any more.
    failed: bool,
    /// The first error, until the runtime takes it.
    error: RefCell<Option<LogStoreError>>,
}

/// An archive error while the consensus core changed the log: the node must stop (see the
/// module docs). Names the operation, the log position and directory; the archive's error
/// names the file (a segment that could not be reserved, synced or deleted).
#[derive(Debug, thiserror::Error)]
#[error("log {op} at position {position} in {dir} failed: {source}")]
pub struct LogStoreError {
    /// What failed: `append`, `append replicated frame`, `truncate` or `reset` (asked for by
    /// the core), or `sync` (the runtime's `fsync = batch` sync of the written segments).
    pub op: &'static str,
    /// The log position concerned (the append position for an append; the position asked
    /// for by a truncate or reset).
    pub position: u64,
    /// The log directory.
    pub dir: PathBuf,
    /// The archive's error.
    #[source]
    pub source: tandem_archive::ArchiveError,
}

fn archive_header(h: &FrameHeader) -> ArchiveHeader {
    ArchiveHeader {
        frame_type: h.entry_type as u16,
        flags: h.flags,
        term: h.term.0,
        session_id: h.session_id.0,
        sequence: h.sequence,
        timestamp: h.timestamp,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn located<'a>(f: &tandem_archive::Frame<'a>) -> Option<LocatedFrame<'a>> {
    Some(LocatedFrame {
        position: LogPosition(f.position),
        end: LogPosition(f.next_position()),
        frame: Frame {
            header: FrameHeader {
                entry_type: EntryType::from_code(f.header.frame_type).ok()?,
                flags: f.header.flags,
                term: Term(f.header.term),
                session_id: SessionId(f.header.session_id),
                sequence: f.header.sequence,
                timestamp: f.header.timestamp,
            },
            payload: f.payload,
            len_aligned: f.aligned_len(),
        },
    })
}

impl ArchiveLogStore {
    /// Wraps an opened (recovered) log. `start`/`start_term`: the core's log start (the newest
    /// snapshot's position and term when the log holds it, else the archive's start).
    ///
    /// # Panics
    /// If `start` lies outside the archive's log.
    pub fn new(log: Log, start: LogPosition, start_term: Term) -> Self {
        assert!(
            start.0 >= log.start_position() && start.0 <= log.append_position(),
            "log start {start} outside the archive's log {}..={}",
            log.start_position(),
            log.append_position()
        );
        let segment_len_bytes = log.config().segment_len_bytes;
        Self {
            log,
            segment_len_bytes,
            start,
            start_term,
            commit_floor: Cell::new(0),
            failed: false,
            error: RefCell::new(None),
        }
    }

    /// Whether an archive error poisoned the store (the node must stop; see the module docs).
    #[inline]
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The error that poisoned the store, once (the store stays poisoned).
    pub fn take_error(&self) -> Option<LogStoreError> {
        self.error.borrow_mut().take()
    }

    /// Poisons the store with its first error.
    #[cold]
    fn poison(&mut self, op: &'static str, position: u64, source: tandem_archive::ArchiveError) {
        tracing::error!(op, position, dir = %self.log.dir().display(), error = %source, "log store failed");
        if !self.failed {
            self.failed = true;
            *self.error.get_mut() = Some(LogStoreError {
                op,
                position,
                dir: self.log.dir().to_path_buf(),
                source,
            });
        }
    }

    /// The archive log (read only: sync and positions for the runtime).
    pub fn archive_log(&self) -> &Log {
        &self.log
    }

    /// Makes appended frames durable (`Log::sync`): returns the durable position.
    ///
    /// # Errors
    /// The archive's sync error.
    pub fn sync(&mut self) -> tandem_archive::Result<u64> {
        self.log.sync()
    }

    /// Tells the store the core's commit position (the floor a truncation may not go below).
    pub fn note_commit(&self, commit: LogPosition) {
        if commit.0 > self.commit_floor.get() {
            self.commit_floor.set(commit.0);
        }
    }

    /// The archive's append position (the same as [`LogStore::end`]).
    pub fn archive_end(&self) -> u64 {
        self.log.append_position()
    }

    /// Where each segment padding in the log begins (walks the whole log: for tests and
    /// tools).
    pub fn padding_positions(&self) -> Vec<u64> {
        let mut found = Vec::new();
        if let Ok(frames) = self.log.frames(self.start.0, self.log.append_position()) {
            let mut prev_end = self.start.0;
            for f in frames {
                if f.position != prev_end {
                    found.push(prev_end);
                }
                prev_end = f.next_position();
            }
        }
        found
    }

    /// The boundary before the frame beginning at `at`: `at` itself, or, where padding closes
    /// the previous segment, the end of the last frame before it.
    fn boundary_before(&self, at: u64) -> u64 {
        if at <= self.start.0 || !at.is_multiple_of(self.segment_len_bytes) {
            return at;
        }
        let from = (at - self.segment_len_bytes).max(self.start.0);
        let Ok(frames) = self.log.frames(from, at) else {
            return at;
        };
        frames.last().map_or(from, |f| f.next_position())
    }
}

impl LogStore for ArchiveLogStore {
    fn start(&self) -> (LogPosition, Term) {
        (self.start, self.start_term)
    }

    fn end(&self) -> LogPosition {
        LogPosition(self.log.append_position())
    }

    fn term_at(&self, position: LogPosition) -> Option<Term> {
        if position < self.start || position > self.end() {
            return None;
        }
        if position == self.start {
            return Some(self.start_term);
        }
        Some(
            self.log
                .term_at(position.0 - 1)
                .map_or(self.start_term, Term),
        )
    }

    fn term_run_start(&self, position: LogPosition) -> LogPosition {
        if position <= self.start || position > self.end() {
            return self.start;
        }
        let byte = position.0 - 1;
        let terms = self.log.term_starts();
        let idx = terms.partition_point(|&(_, s)| s <= byte);
        if idx == 0 || terms[idx - 1].1 <= self.start.0 {
            return self.start;
        }
        // A term that begins at a segment base after padding: the run begins (as a boundary)
        // where the padding does.
        LogPosition(self.boundary_before(terms[idx - 1].1))
    }

    fn next_frame(&self, position: LogPosition) -> Option<LocatedFrame<'_>> {
        if position < self.start || position >= self.end() {
            return None;
        }
        let f = self
            .log
            .frames(position.0, self.log.append_position())
            .ok()?
            .next()?;
        located(&f)
    }

    fn read_frames(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> FrameRun<'_> {
        let empty = FrameRun {
            position: from,
            end: from,
            bytes: &[],
        };
        if from < self.start || from >= self.end() || max_frames == 0 {
            return empty;
        }
        let append = self.log.append_position();
        // Where the first frame lies (past any padding at `from`).
        let Some(first) = self
            .log
            .frames(from.0, append)
            .ok()
            .and_then(|mut f| f.next())
            .map(|f| f.position)
        else {
            return empty;
        };
        let Ok(raw) = self.log.raw_frames(first, append, max_bytes) else {
            return empty;
        };
        let (mut off, mut n) = (0usize, 0usize);
        while off + HEADER_LEN <= raw.len() && n < max_frames {
            let len = read_u32(raw, off) as usize;
            if len < HEADER_LEN {
                break;
            }
            off += align_frame_len(len);
            n += 1;
        }
        let off = off.min(raw.len());
        FrameRun {
            position: LogPosition(first),
            end: LogPosition(first + off as u64),
            bytes: &raw[..off],
        }
    }

    fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> LogPosition {
        let before = self.log.append_position();
        if self.failed {
            return LogPosition(before);
        }
        match self.log.append(&archive_header(header), payload) {
            Ok(end) => LogPosition(end),
            Err(e) => {
                self.poison("append", before, e);
                // Under `fsync = every` the frame may be in the log and only its sync failed.
                LogPosition(self.log.append_position())
            }
        }
    }

    fn append_raw(&mut self, raw: &[u8]) -> LogPosition {
        assert!(raw.len() >= HEADER_LEN, "append_raw takes a whole frame");
        let frame_len = read_u32(raw, 0) as usize;
        assert!(
            frame_len >= HEADER_LEN && align_frame_len(frame_len) == raw.len(),
            "append_raw takes exactly one frame"
        );
        let before = self.log.append_position();
        if self.failed {
            return LogPosition(before);
        }
        match self.log.append_encoded(raw) {
            Ok(end) => LogPosition(end),
            Err(e) => {
                // A full disk, or a frame whose checksum does not match where it lands here
                // (segment lengths must agree across members).
                self.poison("append replicated frame", before, e);
                LogPosition(self.log.append_position())
            }
        }
    }

    fn truncate(&mut self, position: LogPosition) {
        assert!(
            position >= self.start && position <= self.end(),
            "truncate at {position} outside {}..={}",
            self.start,
            self.end()
        );
        if self.failed {
            return;
        }
        if let Err(e) = self.log.truncate(position.0, self.commit_floor.get()) {
            self.poison("truncate", position.0, e);
        }
    }

    fn reset(&mut self, position: LogPosition, term: Term) {
        if self.failed {
            return;
        }
        if let Err(e) = self.log.reset(position.0, term.0) {
            self.poison("reset", position.0, e);
            return;
        }
        self.start = position;
        self.start_term = term;
        self.commit_floor.set(position.0);
    }

    fn purge(&mut self, below: LogPosition) {
        assert!(
            below >= self.start && below <= self.end(),
            "purge {below} outside the log"
        );
        let term = self.term_at(below).expect("in range");
        self.start = below;
        self.start_term = term;
        if let Err(e) = self.log.purge_below(below.0) {
            tracing::error!(position = below.0, error = %e, "purging log segments failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::FrameIter;
    use tandem_archive::LogConfig;

    const SEG: u64 = 64 * 1024;

    fn open(dir: &std::path::Path) -> ArchiveLogStore {
        let cfg = LogConfig {
            segment_len_bytes: SEG,
            max_frame_len_bytes: SEG as usize,
            prepare_next_segment: false,
            prefault: false,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(dir, cfg, 0).unwrap();
        let start = LogPosition(log.start_position());
        ArchiveLogStore::new(log, start, Term(0))
    }

    fn hdr(term: u64, seq: u64) -> FrameHeader {
        FrameHeader {
            entry_type: EntryType::SessionMessage,
            flags: 0,
            term: Term(term),
            session_id: SessionId(1),
            sequence: seq,
            timestamp: seq as i64,
        }
    }

    /// Replicates `leader` into `follower` the way the core does: runs from the follower's
    /// end, the next position taken from the run, frames appended one by one.
    fn replicate(leader: &ArchiveLogStore, follower: &mut ArchiveLogStore) {
        let mut next = follower.end();
        while next < leader.end() {
            let run = leader.read_frames(next, 8 * 1024, 16);
            assert!(!run.bytes.is_empty(), "stalled at {next}");
            for item in FrameIter::new(run.bytes) {
                let (_, raw) = item.unwrap();
                follower.append_raw(raw);
            }
            next = run.end;
            assert_eq!(follower.end(), next, "positions agree");
        }
    }

    /// Payload length of a frame that leaves `tail` bytes in the segment after `end`.
    fn payload_leaving(end: LogPosition, tail: u64) -> usize {
        let room = SEG - end.0 % SEG;
        assert!(room >= tail + HEADER_LEN as u64);
        (room - tail) as usize - HEADER_LEN
    }

    #[test]
    fn positions_terms_and_reads_follow_the_core_contract() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        assert_eq!(log.append(&hdr(1, 1), &[0u8; 64]), LogPosition(112));
        assert_eq!(log.append(&hdr(1, 2), &[0u8; 1]), LogPosition(168));
        assert_eq!(log.append(&hdr(2, 3), &[]), LogPosition(216));
        assert_eq!(log.term_at(LogPosition(0)), Some(Term(0)));
        assert_eq!(log.term_at(LogPosition(112)), Some(Term(1)));
        assert_eq!(log.term_at(LogPosition(168)), Some(Term(1)));
        assert_eq!(log.term_at(LogPosition(216)), Some(Term(2)));
        assert_eq!(log.term_at(LogPosition(217)), None);
        assert_eq!(log.term_run_start(LogPosition(168)), LogPosition(0));
        assert_eq!(log.term_run_start(LogPosition(216)), LogPosition(168));
        let f = log.read(LogPosition(112)).unwrap();
        assert_eq!((f.payload.len(), f.header.sequence), (1, 2));
        assert!(log.read(LogPosition(113)).is_none());
        let n = log.next_frame(LogPosition(112)).unwrap();
        assert_eq!((n.position, n.end), (LogPosition(112), LogPosition(168)));
        assert_eq!(log.read_run(LogPosition(0), 10_000, 2).len(), 168);
        assert_eq!(log.read_frames(LogPosition(0), 1, 64).end, LogPosition(112));
        assert!(log.read_frames(LogPosition(216), 1, 64).bytes.is_empty());
    }

    #[test]
    fn truncate_reset_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for (i, t) in [1, 1, 2, 2, 3].into_iter().enumerate() {
            log.append(&hdr(t, i as u64 + 1), &[7u8; 10]);
        }
        assert_eq!(log.end(), LogPosition(5 * 64));
        log.truncate(LogPosition(3 * 64));
        assert_eq!(log.end(), LogPosition(192));
        assert_eq!(log.term_at(LogPosition(192)), Some(Term(2)));
        let dir2 = tempfile::tempdir().unwrap();
        let mut copy = open(dir2.path());
        replicate(&log, &mut copy);
        assert_eq!(copy.end(), log.end());
        log.purge(LogPosition(128));
        assert_eq!(log.start(), (LogPosition(128), Term(1)));
        assert_eq!(log.term_at(LogPosition(192)), Some(Term(2)));
        assert!(log.read(LogPosition(64)).is_none());
        assert!(log.read(LogPosition(128)).is_some());
        log.reset(LogPosition(4096), Term(5));
        assert_eq!(log.end(), LogPosition(4096));
        assert_eq!(log.term_at(LogPosition(4096)), Some(Term(5)));
        assert_eq!(log.append(&hdr(5, 9), &[]), LogPosition(4144));
    }

    #[test]
    fn tiny_and_large_paddings_replicate_and_truncate() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open(d1.path());
        let mut follower = open(d2.path());
        let mut seq = 0u64;
        let mut pads = Vec::new();
        // Every tail from 8 to 40 bytes (implicit padding), then a few padding frames.
        for (k, tail) in (8..=40).step_by(8).chain([48, 560, 4000]).enumerate() {
            let term = 1 + 2 * k as u64;
            seq += 1;
            let end = leader.end();
            let n = payload_leaving(end, tail);
            let end = leader.append(&hdr(term, seq), &vec![seq as u8; n]);
            assert_eq!(SEG - end.0 % SEG, tail);
            pads.push(end.0);
            // The next frame does not fit in the tail: it lands at the next segment's base.
            seq += 1;
            let big = tail as usize + 100;
            let after = leader.append(&hdr(term + 1, seq), &vec![1u8; big]);
            assert_eq!(after.0 % SEG, frame_len(big) as u64);
            assert_eq!(
                leader.term_run_start(after),
                end,
                "a run begins where padding does"
            );
            let f = leader.next_frame(end).unwrap();
            assert_eq!(f.position.0, end.0 + tail);
            assert!(leader.read(end).is_none());
            replicate(&leader, &mut follower);
        }
        assert_eq!(follower.end(), leader.end());
        assert_eq!(leader.padding_positions(), pads);
        assert_eq!(follower.padding_positions(), pads);
        // Truncate at a (tiny) padding, and at the base after one, then catch up again.
        follower.truncate(LogPosition(pads[4] + (SEG - pads[4] % SEG)));
        follower.truncate(LogPosition(pads[2]));
        assert_eq!(follower.end(), LogPosition(pads[2]));
        assert_eq!(
            follower.term_at(LogPosition(pads[2])),
            leader.term_at(LogPosition(pads[2]))
        );
        replicate(&leader, &mut follower);
        assert_eq!(follower.end(), leader.end());
        // A different frame that fits in the tail goes where the padding was (a new leader's
        // log that ended at the padding).
        follower.truncate(LogPosition(pads[6]));
        let end = follower.append(&hdr(99, 1), &[]);
        assert_eq!(end.0, pads[6] + 48);
        // Restart: nothing to rebuild; reads skip the paddings.
        drop(follower);
        let end = leader.end();
        drop(leader);
        let leader = open(d1.path());
        assert_eq!(leader.end(), end);
        assert_eq!(leader.padding_positions(), pads);
        let dir3 = tempfile::tempdir().unwrap();
        let mut fresh = open(dir3.path());
        replicate(&leader, &mut fresh);
        assert_eq!(fresh.end(), end);
        let mut pos = leader.start().0;
        let mut n = 0;
        while let Some(f) = leader.next_frame(pos) {
            let g = fresh.next_frame(pos).unwrap();
            assert_eq!(f, g);
            pos = f.end;
            n += 1;
        }
        assert_eq!((pos, n), (end, seq));
    }

    #[test]
    fn an_archive_error_poisons_the_store_instead_of_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let end = log.append(&hdr(1, 1), &[1u8; 10]);
        assert!(!log.is_failed());
        // A frame longer than the archive takes: refused, nothing appended.
        let after = log.append(&hdr(1, 2), &vec![0u8; SEG as usize + 1]);
        assert_eq!(after, end, "a refused append does not move the end");
        assert!(log.is_failed());
        let err = log.take_error().expect("the first error");
        assert_eq!((err.op, err.position), ("append", end.0));
        assert!(
            err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        assert!(log.take_error().is_none(), "handed out once");
        // Poisoned: no change is made any more, and nothing panics.
        assert_eq!(log.append(&hdr(1, 3), &[]), end);
        log.truncate(LogPosition(0));
        assert_eq!(log.end(), end);
        log.reset(LogPosition(4096), Term(2));
        assert_eq!(log.start(), (LogPosition(0), Term(0)));
        assert!(
            log.read(LogPosition(0)).is_some(),
            "what was appended stays readable"
        );
    }

    #[test]
    fn a_replicated_frame_that_does_not_validate_here_poisons_the_store() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open(d1.path());
        let mut follower = open(d2.path());
        leader.append(&hdr(1, 1), &[5u8; 16]);
        let second = leader.append(&hdr(1, 2), &[6u8; 16]);
        // The second frame offered first: its checksum covers another position.
        let run = leader.read_frames(LogPosition(64), 1 << 16, 1);
        assert_eq!(run.end, second);
        assert_eq!(follower.append_raw(run.bytes), LogPosition(0));
        assert!(follower.is_failed());
        let err = follower.take_error().unwrap();
        assert_eq!((err.op, err.position), ("append replicated frame", 0));
        // Nothing of it is in the log.
        assert_eq!(follower.end(), LogPosition(0));
    }

    fn frame_len(payload: usize) -> usize {
        align_frame_len(HEADER_LEN + payload)
    }
}
