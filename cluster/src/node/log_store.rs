//! [`ArchiveLogStore`]: the consensus core's [`LogStore`] over the archive's memory-mapped
//! [`Log`].
//!
//! Frames pass unchanged between the core, the segments and the wire (the cluster codec
//! writes the archive's frame layout). What the store adds:
//!
//! * **Logical start.** The archive purges whole segments; the core purges at any frame
//!   boundary at or below its newest snapshot. The store keeps the core's start position and
//!   the term of the frame ending there, and reads nothing below it.
//! * **Padding.** The archive closes a segment's tail with a padding frame written together
//!   with the first frame of the next segment, never replicates padding and refuses it in
//!   `append_encoded`. The current core, however, advances a follower's next position by the
//!   bytes it sent (`prev + run length`) and walks frames contiguously, so it must see the
//!   padding as a frame. The store therefore serves every padding of 48 bytes or more as a
//!   padding frame (`EntryType::Padding`, term 0, zero payload) from [`LogStore::read`] and
//!   [`LogStore::read_run`], and a follower that receives one keeps it *pending* (its end
//!   moves to the segment boundary) until the next frame, which the archive then places at
//!   the segment boundary and pads itself. A padding of fewer than 48 bytes cannot be
//!   expressed as a cluster frame: it is served as an empty run (replication to that
//!   follower stalls at that position, logged); see the crate notes.
//!
//! Operating errors of the archive (a full disk, an I/O error) cannot be returned through
//! `LogStore` (its methods are infallible): they panic with the path and position.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use crate::codec::frame::{EntryType, Frame, FrameHeader, encode_frame};
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
    /// A padding received from the leader and not yet followed by a frame:
    /// (position, length). The archive's append position is `position`; ours is its end.
    pending_pad: Option<(u64, u64)>,
    /// Encoded padding frames (48 bytes or more) by position, as served by `read_run`.
    pads: BTreeMap<u64, Box<[u8]>>,
    /// Positions of paddings shorter than a frame header (not expressible as a frame).
    tiny_pads: BTreeSet<u64>,
    /// The core's commit position as last reported by the runtime (truncation floor).
    commit_floor: Cell<u64>,
    /// Times a tiny padding blocked a read.
    tiny_pad_stalls: Cell<u64>,
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

fn padding_header() -> FrameHeader {
    FrameHeader {
        entry_type: EntryType::Padding,
        flags: 0,
        term: Term(0),
        session_id: SessionId(0),
        sequence: 0,
        timestamp: 0,
    }
}

fn encode_padding(len: u64) -> Box<[u8]> {
    let len = len as usize;
    assert!(len >= HEADER_LEN && len.is_multiple_of(8));
    let mut out = Vec::with_capacity(len);
    encode_frame(&mut out, &padding_header(), &vec![0u8; len - HEADER_LEN]);
    debug_assert_eq!(out.len(), len);
    out.into_boxed_slice()
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl ArchiveLogStore {
    /// Wraps an opened (recovered) log. `start`/`start_term`: the core's log start (the newest
    /// snapshot's position and term when the log holds it, else the archive's start). Scans
    /// the log once for segment paddings.
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
        let mut store = Self {
            log,
            segment_len_bytes,
            start,
            start_term,
            pending_pad: None,
            pads: BTreeMap::new(),
            tiny_pads: BTreeSet::new(),
            commit_floor: Cell::new(0),
            tiny_pad_stalls: Cell::new(0),
        };
        store.scan_paddings();
        store
    }

    fn scan_paddings(&mut self) {
        let from = self.log.start_position();
        let end = self.log.append_position();
        let mut found = Vec::new();
        if let Ok(frames) = self.log.frames(from, end) {
            let mut prev_end = from;
            for f in frames {
                if f.position != prev_end {
                    found.push((prev_end, f.position - prev_end));
                }
                prev_end = f.next_position();
            }
        }
        for (at, len) in found {
            self.note_padding(at, len);
        }
    }

    fn note_padding(&mut self, at: u64, len: u64) {
        if len >= HEADER_LEN as u64 {
            self.pads.insert(at, encode_padding(len));
        } else {
            self.tiny_pads.insert(at);
        }
    }

    /// The archive log (read only: sync and positions for the runtime).
    pub fn archive_log(&self) -> &Log {
        &self.log
    }

    /// Makes appended frames durable (`Log::sync`): returns the durable position, which also
    /// covers a pending padding once everything before it is durable.
    ///
    /// # Errors
    /// The archive's sync error.
    pub fn sync(&mut self) -> tandem_archive::Result<u64> {
        let durable = self.log.sync()?;
        Ok(match self.pending_pad {
            Some((at, len)) if durable >= at => at + len,
            _ => durable,
        })
    }

    /// Tells the store the core's commit position (the floor a truncation may not go below).
    pub fn note_commit(&self, commit: LogPosition) {
        if commit.0 > self.commit_floor.get() {
            self.commit_floor.set(commit.0);
        }
    }

    /// Times replication stalled on a padding shorter than a frame header.
    pub fn tiny_pad_stalls(&self) -> u64 {
        self.tiny_pad_stalls.get()
    }

    /// Paddings the store knows (positions, for tests).
    pub fn padding_positions(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.pads.keys().copied().collect();
        v.extend(self.tiny_pads.iter().copied());
        v.sort_unstable();
        v
    }

    /// The archive's append position (below `end()` while a padding is pending).
    pub fn archive_end(&self) -> u64 {
        self.log.append_position()
    }

    fn segment_end(&self, position: u64) -> u64 {
        (position & !(self.segment_len_bytes - 1)) + self.segment_len_bytes
    }

    fn padding_at(&self, position: u64) -> Option<u64> {
        if let Some((at, len)) = self.pending_pad
            && at == position
        {
            return Some(len);
        }
        if self.pads.contains_key(&position) || self.tiny_pads.contains(&position) {
            return Some(self.segment_end(position) - position);
        }
        None
    }

    /// Records the padding the archive wrote if a frame of `aligned` bytes ending at
    /// `new_end` rolled over from `before`.
    fn after_append(&mut self, before: u64, new_end: u64, aligned: u64) {
        let at = new_end - aligned;
        if at != before {
            assert_eq!(
                at,
                self.segment_end(before),
                "a frame may only move to the next segment"
            );
            match self.pending_pad.take() {
                Some((pad_at, len)) => {
                    assert_eq!(
                        (pad_at, pad_at + len),
                        (before, at),
                        "replicated padding disagrees with the archive's segment roll"
                    );
                }
                None => self.note_padding(before, at - before),
            }
        } else {
            assert!(
                self.pending_pad.is_none(),
                "a frame after a replicated padding at {before} fitted in the padding: \
                 segment lengths differ between members, or a new leader's first frame fits \
                 in a padding it received (unsupported)"
            );
        }
    }
}

impl LogStore for ArchiveLogStore {
    fn start(&self) -> (LogPosition, Term) {
        (self.start, self.start_term)
    }

    fn end(&self) -> LogPosition {
        match self.pending_pad {
            Some((at, len)) => LogPosition(at + len),
            None => LogPosition(self.log.append_position()),
        }
    }

    fn term_at(&self, position: LogPosition) -> Option<Term> {
        if position < self.start || position > self.end() {
            return None;
        }
        if position == self.start {
            return Some(self.start_term);
        }
        if let Some((at, len)) = self.pending_pad
            && position.0 == at + len
        {
            return self.term_at(LogPosition(at));
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
        let mut byte = position.0 - 1;
        if let Some((at, _)) = self.pending_pad
            && byte >= at
        {
            if at <= self.start.0 {
                return self.start;
            }
            byte = at - 1;
        }
        let terms = self.log.term_starts();
        let idx = terms.partition_point(|&(_, s)| s <= byte);
        if idx == 0 {
            self.start
        } else {
            LogPosition(terms[idx - 1].1).max(self.start)
        }
    }

    fn read(&self, position: LogPosition) -> Option<Frame<'_>> {
        if position < self.start || position >= self.end() {
            return None;
        }
        if let Some(len) = self.padding_at(position.0) {
            return Some(Frame {
                header: padding_header(),
                payload: &[],
                len_aligned: len as usize,
            });
        }
        let f = self.log.frame_at(position.0).ok()?;
        if f.position != position.0 {
            return None;
        }
        Some(Frame {
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
        })
    }

    fn read_run(&self, from: LogPosition, max_bytes: usize, max_frames: usize) -> &[u8] {
        if from < self.start || from >= self.end() || max_frames == 0 {
            return &[];
        }
        if let Some(pad) = self.pads.get(&from.0) {
            return pad;
        }
        if self.tiny_pads.contains(&from.0) {
            self.tiny_pad_stalls.set(self.tiny_pad_stalls.get() + 1);
            tracing::error!(
                position = from.0,
                "a padding shorter than a frame header cannot be replicated by this core"
            );
            return &[];
        }
        let Ok(raw) = self
            .log
            .raw_frames(from.0, self.log.append_position(), max_bytes)
        else {
            return &[];
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
        &raw[..off.min(raw.len())]
    }

    fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> LogPosition {
        let before = self.log.append_position();
        let new_end = self
            .log
            .append(&archive_header(header), payload)
            .unwrap_or_else(|e| panic!("log append at {before} failed: {e}"));
        let aligned = align_frame_len(HEADER_LEN + payload.len()) as u64;
        self.after_append(before, new_end, aligned);
        LogPosition(new_end)
    }

    fn append_raw(&mut self, raw: &[u8]) -> LogPosition {
        assert!(raw.len() >= HEADER_LEN, "append_raw takes a whole frame");
        let frame_len = read_u32(raw, 0) as usize;
        assert!(
            frame_len >= HEADER_LEN && align_frame_len(frame_len) == raw.len(),
            "append_raw takes exactly one frame"
        );
        let frame_type = u16::from_le_bytes([raw[8], raw[9]]);
        if frame_type == EntryType::Padding as u16 {
            let at = self.end().0;
            assert!(self.pending_pad.is_none(), "two paddings in a row at {at}");
            let len = raw.len() as u64;
            assert_eq!(
                at + len,
                self.segment_end(at),
                "a replicated padding at {at} of {len} bytes does not close this member's \
                 segment: segment lengths differ between members"
            );
            self.pending_pad = Some((at, len));
            self.pads.insert(at, raw.to_vec().into_boxed_slice());
            return LogPosition(at + len);
        }
        let before = self.log.append_position();
        let new_end = self
            .log
            .append_encoded(raw)
            .unwrap_or_else(|e| panic!("replicated frame refused at {before}: {e}"));
        self.after_append(before, new_end, raw.len() as u64);
        LogPosition(new_end)
    }

    fn truncate(&mut self, position: LogPosition) {
        assert!(
            position >= self.start && position <= self.end(),
            "truncate at {position} outside {}..={}",
            self.start,
            self.end()
        );
        if let Some((at, len)) = self.pending_pad {
            if position.0 == at + len {
                return;
            }
            self.pending_pad = None;
            self.pads.remove(&at);
        }
        if position.0 < self.log.append_position() {
            self.log
                .truncate(position.0, self.commit_floor.get())
                .unwrap_or_else(|e| panic!("log truncate at {position} failed: {e}"));
        }
        let _ = self.pads.split_off(&position.0);
        let _ = self.tiny_pads.split_off(&position.0);
    }

    fn reset(&mut self, position: LogPosition, term: Term) {
        self.log
            .reset(position.0, term.0)
            .unwrap_or_else(|e| panic!("log reset to {position} failed: {e}"));
        self.pending_pad = None;
        self.pads.clear();
        self.tiny_pads.clear();
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
        let physical = below.0.min(self.log.append_position());
        if let Err(e) = self.log.purge_below(physical) {
            tracing::error!(position = below.0, error = %e, "purging log segments failed");
        }
        self.pads = self.pads.split_off(&below.0);
        self.tiny_pads = self.tiny_pads.split_off(&below.0);
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
    /// end, the next position advanced by the bytes sent, frames appended one by one.
    fn replicate(leader: &ArchiveLogStore, follower: &mut ArchiveLogStore) {
        let mut next = follower.end();
        while next < leader.end() {
            let run = leader.read_run(next, 8 * 1024, 16).to_vec();
            assert!(!run.is_empty(), "stalled at {next}");
            for item in FrameIter::new(&run) {
                let (_, raw) = item.unwrap();
                follower.append_raw(raw);
            }
            next = next.advance(run.len() as u64);
            assert_eq!(follower.end(), next, "positions agree");
        }
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
        assert_eq!(log.read_run(LogPosition(0), 10_000, 2).len(), 168);
        assert_eq!(log.read_run(LogPosition(0), 1, 64).len(), 112);
        assert_eq!(log.read_run(LogPosition(216), 1, 64).len(), 0);
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
    fn positions_agree_across_a_segment_roll_and_a_restart() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = open(d1.path());
        let mut follower = open(d2.path());
        // 1048-byte frames: 62 fit a 64 KiB segment, leaving a 560-byte padding.
        for i in 0..200u64 {
            leader.append(&hdr(1 + i / 70, i + 1), &[i as u8; 1000]);
            if i % 37 == 0 {
                replicate(&leader, &mut follower);
            }
        }
        replicate(&leader, &mut follower);
        assert_eq!(leader.end(), follower.end());
        assert_eq!(leader.padding_positions(), follower.padding_positions());
        assert_eq!(leader.padding_positions().len(), 3);
        // Walk both logs frame by frame as the core's apply loop does.
        let mut pos = leader.start().0;
        let mut seqs = Vec::new();
        while pos < leader.end() {
            let (a, b) = (leader.read(pos).unwrap(), follower.read(pos).unwrap());
            assert_eq!(a.header, b.header);
            assert_eq!(a.payload, b.payload);
            assert_eq!(leader.term_at(pos), follower.term_at(pos));
            if a.header.entry_type == EntryType::SessionMessage {
                seqs.push(a.header.sequence);
            }
            pos = pos.advance(a.len_aligned as u64);
        }
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        // Truncate at a padding, then at a segment start, on the follower.
        let pad = follower.padding_positions()[0];
        let seg_start = LogPosition((pad | (SEG - 1)) + 1);
        follower.truncate(seg_start);
        assert_eq!(follower.end(), seg_start);
        follower.truncate(LogPosition(pad));
        assert_eq!(follower.end(), LogPosition(pad));
        replicate(&leader, &mut follower);
        assert_eq!(follower.end(), leader.end());
        // Restart: paddings are found again.
        let end = leader.end();
        drop(leader);
        let leader = open(d1.path());
        assert_eq!(leader.end(), end);
        assert_eq!(leader.padding_positions(), follower.padding_positions());
        let dir3 = tempfile::tempdir().unwrap();
        let mut fresh = open(dir3.path());
        replicate(&leader, &mut fresh);
        assert_eq!(fresh.end(), end);
    }

    #[test]
    fn a_padding_shorter_than_a_header_cannot_be_replicated() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        // Five 13104-byte frames leave 16 bytes in the segment.
        for i in 0..6u64 {
            log.append(&hdr(1, i + 1), &vec![1u8; 13_104 - 48]);
        }
        let pad = 5 * 13_104;
        assert_eq!(log.padding_positions(), vec![pad]);
        let f = log.read(LogPosition(pad)).unwrap();
        assert_eq!(
            (f.header.entry_type, f.len_aligned),
            (EntryType::Padding, 16)
        );
        assert!(log.read_run(LogPosition(pad), 1 << 20, 64).is_empty());
        assert_eq!(log.tiny_pad_stalls(), 1);
    }
}
