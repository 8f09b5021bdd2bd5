//! The log as the core sees it: [`LogStore`], and [`MemLog`], an in-memory implementation for
//! tests, the simulator and benchmarks.
//!
//! The log is a stream of frames addressed by byte position (see [`crate::codec::frame`] for
//! the layout and [`frame_len_aligned`] for the arithmetic). The core never computes a position
//! itself beyond what the store tells it: an append returns the position after it, and a
//! follower appends exactly the frames the leader sent, so positions agree across members.
//!
//! Writes through a `LogStore` are immediate in memory (as writes into a mapped segment are);
//! *durability* is asynchronous: the core emits `Command::Appended` and the runtime answers
//! `Input::LogDurable` once the bytes are on disk (at once under `fsync = none`).
//!
//! A store backed by the archive adds segment padding frames; the core skips padding when it
//! applies, and the leader replicates padding like any frame, so positions still agree.

use crate::codec::frame::{
    FRAME_HEADER_LEN, Frame, FrameHeader, decode_frame, encode_frame, frame_len_aligned,
};
use crate::consensus::types::{LogPosition, Term};

/// The replicated log, read and written by the consensus core.
pub trait LogStore {
    /// The first position held (after a purge or a snapshot install) and the term of the
    /// frame that ended there (the snapshot's term; `Term(0)` for an empty log at 0).
    fn start(&self) -> (LogPosition, Term);
    /// The append position (end of the last frame).
    fn end(&self) -> LogPosition;
    /// Term of the frame ending at `position`, for `position` in `start..=end`; at `start`,
    /// the start term. `None` outside that range.
    fn term_at(&self, position: LogPosition) -> Option<Term>;
    /// For `position` in `start..=end`: where the run of frames of the same term as the frame
    /// ending at `position` begins (never below `start`). Term runs begin on frame boundaries,
    /// so this is how a leader backs off after a mismatch.
    fn term_run_start(&self, position: LogPosition) -> LogPosition;
    /// The frame beginning at `position`, or `None` if no frame begins there.
    fn read(&self, position: LogPosition) -> Option<Frame<'_>>;
    /// The raw bytes of whole frames beginning at `from`: at most `max_frames` frames and
    /// `max_bytes` bytes, but always at least one frame if one begins at `from`.
    fn read_run(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> &[u8];
    /// Encodes and appends a frame; returns the new end.
    fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> LogPosition;
    /// Appends one frame exactly as received (`raw` holds one whole aligned frame); returns the
    /// new end.
    fn append_raw(&mut self, raw: &[u8]) -> LogPosition;
    /// Discards everything from `position` (a frame boundary in `start..=end`) on.
    fn truncate(&mut self, position: LogPosition);
    /// Discards the whole log: it now starts (empty) at `position` with `term` (after a
    /// snapshot install).
    fn reset(&mut self, position: LogPosition, term: Term);
    /// Drops frames below `below` (a frame boundary in `start..=end`): the log now starts there.
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

    fn read_run(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> &[u8] {
        if from < self.start || from >= self.end() {
            return &[];
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
        &self.buf[base..base + len]
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
