//! The recording log: the index of terms and snapshots a member recovers from.
//!
//! `<dir>/recording.log` is an append-only file of fixed-size entries:
//!
//! * a **Term** entry records that a term began at a base log position;
//! * a **Snapshot** entry records that a snapshot of one service (or of the
//!   consensus module itself, service id [`CONSENSUS_MODULE_SERVICE_ID`]) was
//!   taken at a log position in a term.
//!
//! Each entry carries a validity flag; invalidating an entry (for example with
//! `invalidate-latest-snapshot`) rewrites it in place with the flag cleared.
//! Every append and every flag change is written with `pwrite` and made
//! durable with `fdatasync` before the call returns.
//!
//! # Snapshot sets
//!
//! A *snapshot set* is the group of valid Snapshot entries with the same
//! position and term: one per service plus the consensus module's. The
//! consensus module appends the services' entries first and its own entry
//! last, so a set counts as **complete only once it holds the consensus
//! module's entry**; an incomplete set (a crash while appending the set) is
//! never used for recovery nor counted for retention.
//!
//! # Crash safety
//!
//! An append that a crash tears leaves a partial entry at the end of the file
//! (its length is not a multiple of the entry length) or a last entry whose
//! CRC fails. [`RecordingLog::open`] detects both, reports them through
//! [`RecordingLog::torn_tail_detected`], cuts the tail off and carries on: the
//! torn append had not returned, so nothing depended on it. An invalid entry
//! anywhere else is [`ArchiveError::Corrupted`]. In-place flag changes rely on
//! a 64-byte aligned write not being torn (an entry never straddles a 512-byte
//! sector); if one is, the entry fails its CRC and open reports it (or, for
//! the last entry, treats it as a torn tail and cuts it off, which drops the
//! entry whose invalidation was in progress).
//!
//! # File format (version 1)
//!
//! All integers little-endian. A 64-byte header, then entry `i` at byte
//! offset `64 + 64 * i`:
//!
//! ```text
//! Header (64 bytes)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                     magic "TNDMRLOG" (8 bytes)                 |  0
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                       version (u32) = 1                       |  8
//! +---------------------------------------------------------------+
//! |                   entry length (u32) = 64                     | 12
//! +---------------------------------------------------------------+
//! |                     reserved, zero (44 bytes)                 | 16
//! +---------------------------------------------------------------+
//! |                  CRC-32C of bytes 0..60 (u32)                 | 60
//! +---------------------------------------------------------------+
//!
//! Entry (64 bytes)
//! +---------------------------------------------------------------+
//! |                 entry index (u64), equal to i                 |  0
//! |                                                               |
//! +---------------+---------------+-------------------------------+
//! | kind (u8)     | valid (u8)    |      reserved (u16) = 0       |  8
//! | 1 Term        | 1 valid       |                               |
//! | 2 Snapshot    | 0 invalid     |                               |
//! +---------------+---------------+-------------------------------+
//! |       service id (i32): Snapshot only, -1 = consensus module  | 12
//! |                     (0 for Term entries)                      |
//! +---------------------------------------------------------------+
//! |                          term (u64)                           | 16
//! |                                                               |
//! +---------------------------------------------------------------+
//! |    position (u64): base position (Term), snapshot position    | 24
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                   timestamp (i64), cluster time               | 32
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                     reserved, zero (20 bytes)                 | 40
//! +---------------------------------------------------------------+
//! |                  CRC-32C of bytes 0..60 (u32)                 | 60
//! +---------------------------------------------------------------+
//! ```
//!
//! Valid Term entries must have strictly increasing terms and non-decreasing
//! base positions; a file where they do not is reported as corrupted.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::dir_lock::sync_dir;
use crate::error::{ArchiveError, Result};

/// Name of the recording log inside a member's directory.
pub const RECORDING_LOG_FILE_NAME: &str = "recording.log";

/// Version of the recording-log format written by this code.
pub const RECORDING_LOG_FORMAT_VERSION: u32 = 1;

/// Service id of the consensus module's own snapshot.
pub const CONSENSUS_MODULE_SERVICE_ID: i32 = -1;

/// Length of the file header in bytes.
pub const RECORDING_LOG_HEADER_LEN_BYTES: u64 = 64;

/// Length of one entry in bytes.
pub const RECORDING_LOG_ENTRY_LEN_BYTES: u64 = 64;

/// The most entries a recording log may hold (64 MiB of entries); a larger
/// file is rejected as corrupted rather than read into memory.
pub const RECORDING_LOG_ENTRIES_MAX: u64 = 1 << 20;

const MAGIC: [u8; 8] = *b"TNDMRLOG";
const CRC_OFFSET: usize = 60;
const KIND_TERM: u8 = 1;
const KIND_SNAPSHOT: u8 = 2;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A term began at `position`.
    Term,
    /// A snapshot of `service_id` was taken at `position`.
    Snapshot,
}

/// One entry of the recording log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The entry's index in the file, from 0.
    pub index: u64,
    /// What it records.
    pub kind: EntryKind,
    /// The term (of the log at `position` for a snapshot).
    pub term: u64,
    /// Base log position of the term, or the snapshot's log position.
    pub position: u64,
    /// Cluster time when the entry was made.
    pub timestamp: i64,
    /// The service a snapshot belongs to ([`CONSENSUS_MODULE_SERVICE_ID`] for
    /// the consensus module); 0 for Term entries.
    pub service_id: i32,
    /// Whether the entry is valid (not invalidated).
    pub valid: bool,
}

/// The complete, valid snapshots taken at one log position in one term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSet {
    /// The term of the set.
    pub term: u64,
    /// The log position the snapshots were taken at.
    pub position: u64,
    /// The set's entries, in file order; the consensus module's is among them.
    pub entries: Vec<Entry>,
}

impl SnapshotSet {
    /// The entry of the consensus module's own snapshot.
    pub fn consensus_module(&self) -> &Entry {
        self.entries
            .iter()
            .find(|e| e.service_id == CONSENSUS_MODULE_SERVICE_ID)
            .expect("a snapshot set always holds the consensus module's entry")
    }

    /// The entry of service `service_id`, if the set has one.
    pub fn service(&self, service_id: i32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.service_id == service_id)
    }

    /// The ids of the services (not the consensus module) in the set, ascending.
    pub fn service_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .entries
            .iter()
            .map(|e| e.service_id)
            .filter(|&id| id != CONSENSUS_MODULE_SERVICE_ID)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// What a member must do to rebuild its state on start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryPlan {
    /// The snapshot set to load, if there is one.
    pub snapshot: Option<SnapshotSet>,
    /// Replay the log from here (the snapshot's position, or the log start).
    pub replay_from_position: u64,
    /// Replay the log up to here (exclusive): the log's append position, or
    /// `replay_from_position` if the log ends below the snapshot.
    pub replay_to_position: u64,
    /// Every valid Term entry, oldest first.
    pub term_history: Vec<Entry>,
}

/// The recording log of a member's directory (see the module docs).
#[derive(Debug)]
pub struct RecordingLog {
    path: PathBuf,
    file: File,
    entries: Vec<Entry>,
    torn_tail_detected: bool,
    writable: bool,
}

impl RecordingLog {
    /// Opens `<dir>/recording.log` for writing, creating it empty if absent.
    /// A torn last entry is cut off (see [`torn_tail_detected`](RecordingLog::torn_tail_detected)).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Corrupted`] if the header or an entry other than the
    /// last is invalid, or Term entries go backwards; [`ArchiveError::Io`] on
    /// I/O failure.
    pub fn open(dir: &Path) -> Result<RecordingLog> {
        let path = dir.join(RECORDING_LOG_FILE_NAME);
        if !path.exists() {
            write_new_file(dir, &path, &[])?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ArchiveError::io("open", &path, e))?;
        let (entries, valid_len_bytes, torn) = load(&path, &file)?;
        if torn {
            tracing::warn!(path = %path.display(), valid_len_bytes, "recording log has a torn last entry; cutting it off");
            file.set_len(valid_len_bytes)
                .map_err(|e| ArchiveError::io("truncate", &path, e))?;
            file.sync_data()
                .map_err(|e| ArchiveError::io("fdatasync", &path, e))?;
        }
        Ok(RecordingLog {
            path,
            file,
            entries,
            torn_tail_detected: torn,
            writable: true,
        })
    }

    /// Opens an existing `<dir>/recording.log` read-only (for tools). A torn
    /// last entry is ignored but left in the file. The methods that change the
    /// log panic on a log opened this way.
    ///
    /// # Errors
    ///
    /// As [`open`](RecordingLog::open), and [`ArchiveError::Io`] if the file
    /// does not exist.
    pub fn open_read_only(dir: &Path) -> Result<RecordingLog> {
        let path = dir.join(RECORDING_LOG_FILE_NAME);
        let file = File::open(&path).map_err(|e| ArchiveError::io("open", &path, e))?;
        let (entries, _, torn) = load(&path, &file)?;
        Ok(RecordingLog {
            path,
            file,
            entries,
            torn_tail_detected: torn,
            writable: false,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether opening found (and, for [`open`](RecordingLog::open), cut off) a torn last entry.
    pub fn torn_tail_detected(&self) -> bool {
        self.torn_tail_detected
    }

    /// All entries, valid or not, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The newest valid Term entry.
    pub fn latest_term(&self) -> Option<&Entry> {
        self.valid_terms().last()
    }

    /// The term of the log at `position`: that of the newest valid Term entry
    /// whose base position is at or below it.
    pub fn term_at(&self, position: u64) -> Option<u64> {
        self.term_entry_at(position).map(|e| e.term)
    }

    /// The valid Term entry for term `term`.
    pub fn term_entry(&self, term: u64) -> Option<&Entry> {
        self.valid_terms().find(|e| e.term == term)
    }

    fn term_entry_at(&self, position: u64) -> Option<&Entry> {
        self.valid_terms().rev().find(|e| e.position <= position)
    }

    fn valid_terms(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.valid && e.kind == EntryKind::Term)
    }

    /// Appends a Term entry: term `term` began at `base_position`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the write or sync fails (the entry is then not
    /// part of the log, and a partial write is cut off on the next open).
    ///
    /// # Panics
    ///
    /// If `term` is not above the newest valid term, or `base_position` is
    /// below its base position (a bug in the caller), or the log is read-only.
    pub fn append_term(&mut self, term: u64, base_position: u64, timestamp: i64) -> Result<&Entry> {
        if let Some(latest) = self.latest_term() {
            assert!(
                term > latest.term,
                "term {term} is not above the newest term {}",
                latest.term
            );
            assert!(
                base_position >= latest.position,
                "term {term} base position {base_position} is below term {}'s base {}",
                latest.term,
                latest.position
            );
        }
        self.append(EntryKind::Term, term, base_position, timestamp, 0)
    }

    /// Appends a Snapshot entry for service `service_id` (or
    /// [`CONSENSUS_MODULE_SERVICE_ID`]). Append a set's service entries first
    /// and the consensus module's last: the set is complete from then on.
    ///
    /// # Errors
    ///
    /// As [`append_term`](RecordingLog::append_term).
    ///
    /// # Panics
    ///
    /// If `service_id` is below [`CONSENSUS_MODULE_SERVICE_ID`], or a valid
    /// entry for the same service, term and position exists, or the log is read-only.
    pub fn append_snapshot(
        &mut self,
        term: u64,
        position: u64,
        timestamp: i64,
        service_id: i32,
    ) -> Result<&Entry> {
        assert!(
            service_id >= CONSENSUS_MODULE_SERVICE_ID,
            "bad service id {service_id}"
        );
        assert!(
            !self.entries.iter().any(|e| e.valid
                && e.kind == EntryKind::Snapshot
                && (e.term, e.position, e.service_id) == (term, position, service_id)),
            "duplicate snapshot entry: term {term} position {position} service {service_id}"
        );
        self.append(EntryKind::Snapshot, term, position, timestamp, service_id)
    }

    fn append(
        &mut self,
        kind: EntryKind,
        term: u64,
        position: u64,
        timestamp: i64,
        service_id: i32,
    ) -> Result<&Entry> {
        assert!(
            self.writable,
            "append to a read-only recording log {}",
            self.path.display()
        );
        let index = self.entries.len() as u64;
        if index >= RECORDING_LOG_ENTRIES_MAX {
            return Err(ArchiveError::Config(format!(
                "{} is full ({RECORDING_LOG_ENTRIES_MAX} entries); seed it from a snapshot",
                self.path.display()
            )));
        }
        let entry = Entry {
            index,
            kind,
            term,
            position,
            timestamp,
            service_id,
            valid: true,
        };
        self.write_entry(&entry)?;
        self.entries.push(entry);
        Ok(&self.entries[self.entries.len() - 1])
    }

    fn write_entry(&self, entry: &Entry) -> Result<()> {
        let offset = entry_offset(entry.index);
        self.file
            .write_all_at(&encode_entry(entry), offset)
            .map_err(|e| ArchiveError::io("write", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| ArchiveError::io("fdatasync", &self.path, e))
    }

    /// Marks entry `index` invalid. Returns `false` if it already was.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::NotFound`] if there is no such entry;
    /// [`ArchiveError::Io`] if the write or sync fails.
    ///
    /// # Panics
    ///
    /// If the log is read-only.
    pub fn invalidate_entry(&mut self, index: u64) -> Result<bool> {
        assert!(
            self.writable,
            "invalidate in a read-only recording log {}",
            self.path.display()
        );
        let Some(&entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
        else {
            return Err(ArchiveError::NotFound(format!(
                "recording log entry {index} in {}",
                self.path.display()
            )));
        };
        if !entry.valid {
            return Ok(false);
        }
        let invalid = Entry {
            valid: false,
            ..entry
        };
        self.write_entry(&invalid)?;
        self.entries[index as usize] = invalid;
        Ok(true)
    }

    /// Invalidates the newest snapshot set: every valid Snapshot entry at the
    /// position of the newest complete set. Returns `false` if there is none.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if a write fails (entries invalidated before it stay
    /// invalidated, which leaves the set incomplete or gone, never half-used).
    ///
    /// # Panics
    ///
    /// If the log is read-only.
    pub fn invalidate_latest_snapshot(&mut self) -> Result<bool> {
        let Some(latest) = self.latest_snapshot_set() else {
            return Ok(false);
        };
        // The consensus module's entry goes first: once it is gone the set is
        // incomplete and can no longer be used, whatever happens next.
        let mut targets: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.valid && e.kind == EntryKind::Snapshot && e.position == latest.position)
            .map(|e| e.index)
            .collect();
        targets.sort_by_key(|&i| {
            (
                self.entries[i as usize].service_id != CONSENSUS_MODULE_SERVICE_ID,
                i,
            )
        });
        for index in targets {
            self.invalidate_entry(index)?;
        }
        Ok(true)
    }

    /// The complete valid snapshot sets, oldest first (by position, then term).
    pub fn valid_snapshot_sets(&self) -> Vec<SnapshotSet> {
        let mut sets: Vec<SnapshotSet> = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| e.valid && e.kind == EntryKind::Snapshot)
        {
            match sets
                .iter_mut()
                .find(|s| (s.position, s.term) == (e.position, e.term))
            {
                Some(set) => set.entries.push(*e),
                None => sets.push(SnapshotSet {
                    term: e.term,
                    position: e.position,
                    entries: vec![*e],
                }),
            }
        }
        sets.retain(|s| {
            s.entries
                .iter()
                .any(|e| e.service_id == CONSENSUS_MODULE_SERVICE_ID)
        });
        sets.sort_by_key(|s| (s.position, s.term));
        sets
    }

    /// The newest complete valid snapshot set.
    pub fn latest_snapshot_set(&self) -> Option<SnapshotSet> {
        self.valid_snapshot_sets().pop()
    }

    /// Plans recovery for a log holding `[log_start_position, log_append_position)`:
    /// load the newest complete snapshot set, then replay the log from its
    /// position (or from the log start if there is none) to the append position.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::BelowLogStart`] if the log no longer holds what the
    /// replay needs: there is no snapshot and the log does not start at 0, or
    /// the newest snapshot lies below the log start.
    pub fn recovery_plan(
        &self,
        log_start_position: u64,
        log_append_position: u64,
    ) -> Result<RecoveryPlan> {
        assert!(
            log_start_position <= log_append_position,
            "log start {log_start_position} above append position {log_append_position}"
        );
        let snapshot = self.latest_snapshot_set();
        let replay_from_position = snapshot.as_ref().map_or(0, |s| s.position);
        if replay_from_position < log_start_position {
            return Err(ArchiveError::BelowLogStart {
                position: replay_from_position,
                start_position: log_start_position,
            });
        }
        Ok(RecoveryPlan {
            snapshot,
            replay_from_position,
            replay_to_position: log_append_position.max(replay_from_position),
            term_history: self.valid_terms().copied().collect(),
        })
    }

    /// Rewrites `<dir>/recording.log` so that it starts from the newest
    /// complete snapshot set: it keeps the Term entry covering the set's
    /// position, the later valid Term entries and the set's entries (renumbered
    /// from 0), and drops the rest. The old file is kept as
    /// `recording.log.bak-<n>` (the first unused `n` from 1), whose path is
    /// returned. The new file is written under a temporary name, fsynced and
    /// renamed into place, and the directory fsynced. The caller must hold the
    /// directory's lock and have no [`RecordingLog`] of it open.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::NotFound`] if there is no complete valid snapshot set or
    /// no Term entry covers it; errors of [`open`](RecordingLog::open);
    /// [`ArchiveError::Io`] on I/O failure.
    pub fn seed_from_snapshot(dir: &Path) -> Result<PathBuf> {
        let log = RecordingLog::open(dir)?;
        let set = log.latest_snapshot_set().ok_or_else(|| {
            ArchiveError::NotFound(format!("no valid snapshot set in {}", log.path.display()))
        })?;
        let covering = *log.term_entry_at(set.position).ok_or_else(|| {
            ArchiveError::NotFound(format!(
                "no term entry covers snapshot position {} in {}",
                set.position,
                log.path.display()
            ))
        })?;
        let mut kept: Vec<Entry> = vec![covering];
        kept.extend(set.entries.iter().copied());
        kept.extend(
            log.valid_terms()
                .filter(|e| e.index > covering.index)
                .copied(),
        );
        for (i, e) in kept.iter_mut().enumerate() {
            e.index = i as u64;
        }
        drop(log);

        let path = dir.join(RECORDING_LOG_FILE_NAME);
        let backup = (1u32..)
            .map(|n| dir.join(format!("{RECORDING_LOG_FILE_NAME}.bak-{n}")))
            .find(|p| !p.exists())
            .expect("some backup name is free");
        std::fs::copy(&path, &backup).map_err(|e| ArchiveError::io("copy", &backup, e))?;
        File::open(&backup)
            .and_then(|f| f.sync_all())
            .map_err(|e| ArchiveError::io("fsync", &backup, e))?;
        write_new_file(dir, &path, &kept)?;
        Ok(backup)
    }
}

fn entry_offset(index: u64) -> u64 {
    RECORDING_LOG_HEADER_LEN_BYTES + index * RECORDING_LOG_ENTRY_LEN_BYTES
}

/// Writes a complete recording log under a temporary name, fsyncs it, renames
/// it to `path` and fsyncs `dir`.
fn write_new_file(dir: &Path, path: &Path, entries: &[Entry]) -> Result<()> {
    let tmp = dir.join(format!("{RECORDING_LOG_FILE_NAME}.tmp"));
    let mut bytes = Vec::with_capacity(
        (RECORDING_LOG_HEADER_LEN_BYTES + RECORDING_LOG_ENTRY_LEN_BYTES * entries.len() as u64)
            as usize,
    );
    bytes.extend_from_slice(&encode_header());
    for e in entries {
        bytes.extend_from_slice(&encode_entry(e));
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| ArchiveError::io("create", &tmp, e))?;
    file.write_all_at(&bytes, 0)
        .map_err(|e| ArchiveError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| ArchiveError::io("fsync", &tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| ArchiveError::io("rename", &tmp, e))?;
    sync_dir(dir)
}

/// Reads and validates a whole recording log. Returns the entries, the length
/// of the valid part of the file, and whether a torn tail was found beyond it.
fn load(path: &Path, file: &File) -> Result<(Vec<Entry>, u64, bool)> {
    let len_bytes = file
        .metadata()
        .map_err(|e| ArchiveError::io("stat", path, e))?
        .len();
    if len_bytes < RECORDING_LOG_HEADER_LEN_BYTES {
        return Err(ArchiveError::corrupted(
            path,
            0,
            format!("file of {len_bytes} bytes is shorter than its header"),
        ));
    }
    if len_bytes > entry_offset(RECORDING_LOG_ENTRIES_MAX + 1) {
        return Err(ArchiveError::corrupted(
            path,
            entry_offset(RECORDING_LOG_ENTRIES_MAX),
            "file is longer than the most entries a recording log holds",
        ));
    }
    let mut bytes = vec![0u8; len_bytes as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(|e| ArchiveError::io("read", path, e))?;
    check_header(path, &bytes[..RECORDING_LOG_HEADER_LEN_BYTES as usize])?;

    let body = &bytes[RECORDING_LOG_HEADER_LEN_BYTES as usize..];
    let full_entries = body.len() / RECORDING_LOG_ENTRY_LEN_BYTES as usize;
    let partial = !body
        .len()
        .is_multiple_of(RECORDING_LOG_ENTRY_LEN_BYTES as usize);
    let mut entries = Vec::with_capacity(full_entries);
    let mut torn = partial;
    for (i, chunk) in body
        .chunks_exact(RECORDING_LOG_ENTRY_LEN_BYTES as usize)
        .enumerate()
    {
        let offset = entry_offset(i as u64);
        match decode_entry(chunk, i as u64) {
            Ok(entry) => entries.push(entry),
            // Only the last append can be torn, and only if no partial entry follows it.
            Err(_) if i + 1 == full_entries && !partial => {
                torn = true;
            }
            Err(reason) => return Err(ArchiveError::corrupted(path, offset, reason)),
        }
    }

    let mut previous: Option<&Entry> = None;
    for e in entries
        .iter()
        .filter(|e| e.valid && e.kind == EntryKind::Term)
    {
        if let Some(p) = previous
            && (e.term <= p.term || e.position < p.position)
        {
            return Err(ArchiveError::corrupted(
                path,
                entry_offset(e.index),
                format!(
                    "term entry {} (term {} base {}) does not follow term {} base {}",
                    e.index, e.term, e.position, p.term, p.position
                ),
            ));
        }
        previous = Some(e);
    }
    let valid_len_bytes = entry_offset(entries.len() as u64);
    Ok((entries, valid_len_bytes, torn))
}

fn check_header(path: &Path, b: &[u8]) -> Result<()> {
    if b[0..8] != MAGIC {
        return Err(ArchiveError::corrupted(
            path,
            0,
            "not a recording log (bad magic)",
        ));
    }
    if crc32c::crc32c(&b[..CRC_OFFSET]) != u32_at(b, CRC_OFFSET) {
        return Err(ArchiveError::corrupted(path, 0, "header checksum mismatch"));
    }
    let version = u32_at(b, 8);
    if version != RECORDING_LOG_FORMAT_VERSION {
        return Err(ArchiveError::corrupted(
            path,
            8,
            format!(
                "recording log format version {version} is not supported (this build reads {RECORDING_LOG_FORMAT_VERSION})"
            ),
        ));
    }
    let entry_len = u32_at(b, 12);
    if u64::from(entry_len) != RECORDING_LOG_ENTRY_LEN_BYTES {
        return Err(ArchiveError::corrupted(
            path,
            12,
            format!("entry length {entry_len} is not {RECORDING_LOG_ENTRY_LEN_BYTES}"),
        ));
    }
    Ok(())
}

fn encode_header() -> [u8; RECORDING_LOG_HEADER_LEN_BYTES as usize] {
    let mut b = [0u8; RECORDING_LOG_HEADER_LEN_BYTES as usize];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&RECORDING_LOG_FORMAT_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&(RECORDING_LOG_ENTRY_LEN_BYTES as u32).to_le_bytes());
    let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
    b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn encode_entry(e: &Entry) -> [u8; RECORDING_LOG_ENTRY_LEN_BYTES as usize] {
    let mut b = [0u8; RECORDING_LOG_ENTRY_LEN_BYTES as usize];
    b[0..8].copy_from_slice(&e.index.to_le_bytes());
    b[8] = match e.kind {
        EntryKind::Term => KIND_TERM,
        EntryKind::Snapshot => KIND_SNAPSHOT,
    };
    b[9] = u8::from(e.valid);
    b[12..16].copy_from_slice(&e.service_id.to_le_bytes());
    b[16..24].copy_from_slice(&e.term.to_le_bytes());
    b[24..32].copy_from_slice(&e.position.to_le_bytes());
    b[32..40].copy_from_slice(&e.timestamp.to_le_bytes());
    let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
    b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_entry(b: &[u8], expected_index: u64) -> Result<Entry, String> {
    if crc32c::crc32c(&b[..CRC_OFFSET]) != u32_at(b, CRC_OFFSET) {
        return Err(format!("entry {expected_index} checksum mismatch"));
    }
    let index = u64_at(b, 0);
    if index != expected_index {
        return Err(format!("entry at slot {expected_index} has index {index}"));
    }
    let kind = match b[8] {
        KIND_TERM => EntryKind::Term,
        KIND_SNAPSHOT => EntryKind::Snapshot,
        other => return Err(format!("entry {index} has unknown kind {other}")),
    };
    let valid = match b[9] {
        0 => false,
        1 => true,
        other => return Err(format!("entry {index} has bad valid flag {other}")),
    };
    let service_id = i32::from_le_bytes([b[12], b[13], b[14], b[15]]);
    if b[10..12] != [0, 0] || b[40..CRC_OFFSET].iter().any(|&x| x != 0) {
        return Err(format!("entry {index} has non-zero reserved bytes"));
    }
    match kind {
        EntryKind::Term if service_id != 0 => {
            return Err(format!("term entry {index} has service id {service_id}"));
        }
        EntryKind::Snapshot if service_id < CONSENSUS_MODULE_SERVICE_ID => {
            return Err(format!(
                "snapshot entry {index} has bad service id {service_id}"
            ));
        }
        _ => {}
    }
    Ok(Entry {
        index,
        kind,
        term: u64_at(b, 16),
        position: u64_at(b, 24),
        timestamp: i64::from_le_bytes(b[32..40].try_into().expect("8 bytes")),
        service_id,
        valid,
    })
}

fn u64_at(b: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(b[offset..offset + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(b[offset..offset + 4].try_into().expect("4 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_bit_flips() {
        let e = Entry {
            index: 3,
            kind: EntryKind::Snapshot,
            term: 4,
            position: 1 << 40,
            timestamp: -5,
            service_id: CONSENSUS_MODULE_SERVICE_ID,
            valid: true,
        };
        let b = encode_entry(&e);
        assert_eq!(decode_entry(&b, 3), Ok(e));
        assert!(decode_entry(&b, 4).is_err());
        for bit in 0..b.len() * 8 {
            let mut flipped = b;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_entry(&flipped, 3).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn header_round_trip() {
        let h = encode_header();
        assert!(check_header(Path::new("x"), &h).is_ok());
        let mut bad = h;
        bad[20] ^= 1;
        assert!(check_header(Path::new("x"), &bad).is_err());
    }
}
