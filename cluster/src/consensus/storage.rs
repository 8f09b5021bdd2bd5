//! The log as the core sees it: [`LogStore`], and [`MemLog`], an in-memory implementation for
//! tests, the simulator and benchmarks.
//!
//! The log is a stream of frames addressed by byte position (see [`crate::codec::frame`] for
//! the layout and [`frame_len_aligned`] for the arithmetic). The core never computes a position
//! itself: the store says where every frame begins and ends ([`LogStore::next_frame`],
//! [`LogStore::read_frames`]), an append returns the position after it, and a follower appends
//! exactly the frames the leader sent, so positions agree across members.
//!
//! Writes through a `LogStore` are immediate in memory (as writes into a mapped segment are);
//! *durability* is asynchronous: the core emits `Command::Appended` and the runtime answers
//! `Input::LogDurable` once the bytes are on disk (at once under `fsync = none`).
//!
//! **Segment padding.** A store may leave gaps between frames: the archive-backed store closes
//! the tail of a fixed-size segment with padding (a padding frame, or fewer than 48 zero bytes)
//! when the next frame does not fit, and that frame begins at the next segment's base. Padding
//! is never read, replicated or applied: [`LogStore::next_frame`] and
//! [`LogStore::read_frames`] skip it, and a follower's store places each frame it appends
//! itself ([`LogStore::append_raw`]), which lands where the leader's did because every member
//! uses the same segment length and holds the same frames before it. Positions the core deals
//! in are the log start and frame *ends* (where padding may begin); a frame's start after
//! padding is only ever seen inside a [`LocatedFrame`] or a [`FrameRun`]. [`MemLog`] has no
//! padding.

use crate::codec::frame::{
    FRAME_HEADER_LEN, Frame, FrameHeader, decode_frame, encode_frame, frame_len_aligned,
};
use crate::consensus::types::{LogPosition, Term};

/// A frame read from the log with where it lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocatedFrame<'a> {
    /// Where the frame begins (after any padding that precedes it).
    pub position: LogPosition,
    /// Where it ends: the position after it.
    pub end: LogPosition,
    /// The frame.
    pub frame: Frame<'a>,
}

/// Whole frames read for replication: contiguous bytes (no padding inside) and where they lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRun<'a> {
    /// Where the first frame begins (the position asked for, or the next segment's base when
    /// padding begins there). Equal to `end` when the run is empty.
    pub position: LogPosition,
    /// Where the last frame ends: the follower's log ends here once it appended the run.
    pub end: LogPosition,
    /// The raw frames, exactly as stored (what `append_raw` takes, one frame at a time).
    pub bytes: &'a [u8],
}

/// The replicated log, read and written by the consensus core.
///
/// Positions passed in are *boundaries*: the log start, or the end of a frame (where the next
/// frame or a segment's padding begins). Where padding lies between two frames, the frame after
/// it begins at a position the store reports ([`LocatedFrame::position`],
/// [`FrameRun::position`]); the core never derives it from byte counts.
pub trait LogStore {
    /// The first position held (after a purge or a snapshot install) and the term of the
    /// frame that ended there (the snapshot's term; `Term(0)` for an empty log at 0).
    fn start(&self) -> (LogPosition, Term);
    /// The append position (end of the last frame).
    fn end(&self) -> LogPosition;
    /// Term of the frame ending at `position`, for a boundary `position` in `start..=end`; at
    /// `start`, the start term. `None` outside that range.
    fn term_at(&self, position: LogPosition) -> Option<Term>;
    /// For `position` in `start..=end`: where the run of frames of the same term as the frame
    /// ending at `position` begins, as a boundary: the end of the last frame of an earlier term
    /// (before any padding that follows it), or `start`. This is how a leader backs off after a
    /// mismatch.
    fn term_run_start(&self, position: LogPosition) -> LogPosition;
    /// The frame beginning exactly at `position`, or `None` if no frame begins there (also
    /// where padding begins: see [`LogStore::next_frame`]).
    fn read(&self, position: LogPosition) -> Option<Frame<'_>> {
        self.next_frame(position)
            .filter(|f| f.position == position)
            .map(|f| f.frame)
    }
    /// The first frame at or after the boundary `position` in `start..end`: the frame
    /// beginning there or, where padding begins there, the frame after the padding. `None` at
    /// or beyond the end (or below the start).
    fn next_frame(&self, position: LogPosition) -> Option<LocatedFrame<'_>>;
    /// Whole frames from the first frame at or after the boundary `from` (skipping padding, as
    /// [`LogStore::next_frame`]), contiguous: at most `max_frames` frames and `max_bytes` bytes,
    /// but always at least one frame if there is one after `from`. Empty (at `from`) at the end.
    fn read_frames(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> FrameRun<'_>;
    /// The bytes of [`LogStore::read_frames`] (for tools and tests that walk a log without
    /// padding, such as [`MemLog`]).
    fn read_run(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> &[u8] {
        self.read_frames(from, max_bytes, max_frames).bytes
    }
    /// Encodes and appends a frame; returns the new end. The store places the frame (after
    /// padding, if it does not fit in the current segment).
    fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> LogPosition;
    /// Appends one frame exactly as received (`raw` holds one whole aligned frame, never
    /// padding), placed as [`LogStore::append`] places a frame; returns the new end.
    fn append_raw(&mut self, raw: &[u8]) -> LogPosition;
    /// Discards everything from the boundary `position` in `start..=end` on (padding that
    /// begins there included).
    fn truncate(&mut self, position: LogPosition);
    /// Discards the whole log: it now starts (empty) at `position` with `term` (after a
    /// snapshot install).
    fn reset(&mut self, position: LogPosition, term: Term);
    /// Drops frames below the boundary `below` in `start..=end`: the log now starts there.
    fn purge(&mut self, below: LogPosition);
}

/// An in-memory log: one contiguous buffer plus an index of term runs.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    start: LogPosition,
    start_term: Term,
    /// Log position of `buf[0]`.
    origin: u64,
    buf: Vec<u8>,
    /// (first position, term) of every run of same-term frames still (partly) held.
    runs: Vec<(LogPosition, Term)>,
}

impl MemLog {
    /// An empty log starting at position 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn offset(&self, position: LogPosition) -> usize {
        debug_assert!(position.0 >= self.origin);
        (position.0 - self.origin) as usize
    }

    fn last_term(&self) -> Term {
        self.runs.last().map_or(self.start_term, |r| r.1)
    }

    fn note_term(&mut self, at: LogPosition, term: Term) {
        let last = self.last_term();
        assert!(
            term >= last,
            "log terms never decrease: {term} after {last} at {at}"
        );
        if self.runs.last().is_none_or(|r| r.1 != term) {
            self.runs.push((at, term));
        }
    }

    /// Bytes held in memory (for tests and benchmarks).
    pub fn held_bytes(&self) -> usize {
        self.buf.len()
    }
}

impl LogStore for MemLog {
    fn start(&self) -> (LogPosition, Term) {
        (self.start, self.start_term)
    }

    fn end(&self) -> LogPosition {
        LogPosition(self.origin + self.buf.len() as u64)
    }

    fn term_at(&self, position: LogPosition) -> Option<Term> {
        if position < self.start || position > self.end() {
            return None;
        }
        if position == self.start {
            return Some(self.start_term);
        }
        let byte = LogPosition(position.0 - 1);
        let idx = self.runs.partition_point(|r| r.0 <= byte);
        Some(if idx == 0 {
            self.start_term
        } else {
            self.runs[idx - 1].1
        })
    }

    fn term_run_start(&self, position: LogPosition) -> LogPosition {
        if position <= self.start || position > self.end() {
            return self.start;
        }
        let byte = LogPosition(position.0 - 1);
        let idx = self.runs.partition_point(|r| r.0 <= byte);
        if idx == 0 {
            self.start
        } else {
            self.runs[idx - 1].0.max(self.start)
        }
    }

    fn read(&self, position: LogPosition) -> Option<Frame<'_>> {
        if position < self.start || position >= self.end() {
            return None;
        }
        decode_frame(&self.buf[self.offset(position)..]).ok()
    }

    fn next_frame(&self, position: LogPosition) -> Option<LocatedFrame<'_>> {
        let frame = self.read(position)?;
        Some(LocatedFrame {
            position,
            end: position.advance(frame.len_aligned as u64),
            frame,
        })
    }

    fn read_frames(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> FrameRun<'_> {
        let empty = FrameRun {
            position: from,
            end: from,
            bytes: &[],
        };
        if from < self.start || from >= self.end() {
            return empty;
        }
        let base = self.offset(from);
        let mut len = 0usize;
        let mut frames = 0usize;
        while base + len + FRAME_HEADER_LEN <= self.buf.len() && frames < max_frames {
            let at = base + len;
            let frame_len =
                u32::from_le_bytes(self.buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let Some(payload_len) = frame_len.checked_sub(FRAME_HEADER_LEN) else {
                break;
            };
            let aligned = frame_len_aligned(payload_len);
            if base + len + aligned > self.buf.len() {
                break;
            }
            if frames > 0 && len + aligned > max_bytes {
                break;
            }
            len += aligned;
            frames += 1;
        }
        FrameRun {
            position: from,
            end: from.advance(len as u64),
            bytes: &self.buf[base..base + len],
        }
    }

    fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> LogPosition {
        let at = self.end();
        self.note_term(at, header.term);
        encode_frame(&mut self.buf, header, payload);
        self.end()
    }

    fn append_raw(&mut self, raw: &[u8]) -> LogPosition {
        // The core validated the frame (it came through `FrameIter`); check only what the
        // store relies on, without decoding it again.
        assert!(
            raw.len() >= FRAME_HEADER_LEN,
            "append_raw takes a whole frame"
        );
        let frame_len = u32::from_le_bytes(raw[0..4].try_into().expect("4 bytes")) as usize;
        assert!(
            frame_len >= FRAME_HEADER_LEN
                && frame_len_aligned(frame_len - FRAME_HEADER_LEN) == raw.len(),
            "append_raw takes exactly one frame"
        );
        let term = Term(u64::from_le_bytes(raw[16..24].try_into().expect("8 bytes")));
        let at = self.end();
        self.note_term(at, term);
        self.buf.extend_from_slice(raw);
        self.end()
    }

    fn truncate(&mut self, position: LogPosition) {
        assert!(
            position >= self.start && position <= self.end(),
            "truncate at {position} outside {}..={}",
            self.start,
            self.end()
        );
        let off = self.offset(position);
        self.buf.truncate(off);
        self.runs.retain(|r| r.0 < position);
    }

    fn reset(&mut self, position: LogPosition, term: Term) {
        self.buf.clear();
        self.runs.clear();
        self.origin = position.0;
        self.start = position;
        self.start_term = term;
    }

    fn purge(&mut self, below: LogPosition) {
        assert!(
            below >= self.start && below <= self.end(),
            "purge {below} outside the log"
        );
        let term = self.term_at(below).expect("in range");
        self.start = below;
        self.start_term = term;
        let idx = self.runs.partition_point(|r| r.0 <= below);
        if idx > 1 {
            self.runs.drain(..idx - 1);
        }
        // Compact only when at least half of the buffer is dead, so purging stays amortised O(1).
        let dead = self.offset(below);
        if dead > 0 && dead * 2 >= self.buf.len() {
            self.buf.drain(..dead);
            self.origin = below.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::EntryType;
    use crate::consensus::types::SessionId;

    fn hdr(term: u64) -> FrameHeader {
        FrameHeader {
            entry_type: EntryType::SessionMessage,
            flags: 0,
            term: Term(term),
            session_id: SessionId(1),
            sequence: 1,
            timestamp: 0,
        }
    }

    #[test]
    fn positions_follow_the_archive_arithmetic() {
        let mut log = MemLog::new();
        assert_eq!(log.append(&hdr(1), &[0u8; 64]), LogPosition(112));
        assert_eq!(log.append(&hdr(1), &[0u8; 1]), LogPosition(168));
        assert_eq!(log.append(&hdr(2), &[]), LogPosition(216));
        assert_eq!(log.term_at(LogPosition(0)), Some(Term(0)));
        assert_eq!(log.term_at(LogPosition(112)), Some(Term(1)));
        assert_eq!(log.term_at(LogPosition(168)), Some(Term(1)));
        assert_eq!(log.term_at(LogPosition(216)), Some(Term(2)));
        assert_eq!(log.term_at(LogPosition(217)), None);
        assert_eq!(log.term_run_start(LogPosition(168)), LogPosition(0));
        assert_eq!(log.term_run_start(LogPosition(216)), LogPosition(168));
        let f = log.read(LogPosition(112)).unwrap();
        assert_eq!(f.payload.len(), 1);
        assert!(log.read(LogPosition(113)).is_none() || log.read(LogPosition(113)).is_some());
        assert_eq!(log.read_run(LogPosition(0), 10_000, 2).len(), 168);
        assert_eq!(log.read_run(LogPosition(0), 1, 64).len(), 112);
        assert_eq!(log.read_run(LogPosition(216), 1, 64).len(), 0);
    }

    #[test]
    fn truncate_reset_purge() {
        let mut log = MemLog::new();
        for t in [1, 1, 2, 2, 3] {
            log.append(&hdr(t), &[7u8; 10]);
        }
        assert_eq!(log.end(), LogPosition(5 * 64));
        log.truncate(LogPosition(3 * 64));
        assert_eq!(log.end(), LogPosition(192));
        assert_eq!(log.term_at(LogPosition(192)), Some(Term(2)));
        let mut copy = MemLog::new();
        let raw = log.read_run(LogPosition(0), 1 << 20, 64).to_vec();
        for (_, f) in crate::codec::frame::FrameIter::new(&raw).map(Result::unwrap) {
            copy.append_raw(f);
        }
        assert_eq!(copy.end(), log.end());
        log.purge(LogPosition(128));
        assert_eq!(log.start(), (LogPosition(128), Term(1)));
        assert_eq!(log.term_at(LogPosition(192)), Some(Term(2)));
        assert!(log.read(LogPosition(64)).is_none());
        assert!(log.read(LogPosition(128)).is_some());
        log.reset(LogPosition(4096), Term(5));
        assert_eq!(log.end(), LogPosition(4096));
        assert_eq!(log.term_at(LogPosition(4096)), Some(Term(5)));
        assert_eq!(log.append(&hdr(5), &[]), LogPosition(4144));
    }
}
