//! The node state: a member's current term, its vote in that term, a lower
//! bound of the commit position, and the identity of its directory.
//!
//! The consensus module persists the term and vote before it answers a vote
//! request or sends anything else that depends on them, so an update must be
//! durable, cheap (it sits on the election path) and proof against a write torn
//! by a crash. The file therefore holds two fixed slots, A and B. An update
//! writes the slot that does *not* hold the newest valid state, then calls
//! `fdatasync` once. On open, the valid slot with the highest update sequence
//! wins. A torn update leaves the slot it was writing invalid (its CRC fails)
//! or complete, so the state read back is never older than the last update that
//! completed.
//!
//! A slot that was complete but later fails its CRC (media corruption) makes
//! the file fall back to the other slot, one update older. That can only
//! happen through corruption of the disk itself, which this file cannot rule
//! out; both slots invalid is reported as [`ArchiveError::Corrupted`].
//!
//! # File format (version 1)
//!
//! `<dir>/node-state.dat`, [`NODE_STATE_FILE_LEN_BYTES`] long: slot A at offset 0, slot B
//! at offset 4096 (a separate page, so the two never share a sector). Each
//! slot is [`NODE_STATE_SLOT_LEN_BYTES`] bytes, little-endian:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                     magic "TNDMNODE" (8 bytes)                 |  0
//! |                                                               |
//! +-------------------------------+-------------------------------+
//! |        version (u16) = 1      |  flags (u16) bit 0: has vote  |  8
//! +-------------------------------+-------------------------------+
//! |                       reserved (u32) = 0                      | 12
//! +---------------------------------------------------------------+
//! |                  update sequence (u64), from 1                | 16
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                       current term (u64)                      | 24
//! |                                                               |
//! +---------------------------------------------------------------+
//! |               commit position lower bound (u64)               | 32
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                        cluster id (u64)                       | 40
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                        member id (u32)                        | 48
//! +---------------------------------------------------------------+
//! |            voted for (u32), 0 when flags has no vote          | 52
//! +---------------------------------------------------------------+
//! |                  CRC-32C of bytes 0..56 (u32)                 | 56
//! +---------------------------------------------------------------+
//! |                    zero up to 512 bytes                       | 60
//! +---------------------------------------------------------------+
//! ```
//!
//! A new file is written complete (slot A valid, slot B zeroed) under a
//! temporary name, fsynced and renamed into place, so a crash during creation
//! never leaves a half-created file behind.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::dir_lock::sync_dir;
use crate::error::{ArchiveError, Result};

/// Name of the node-state file inside a member's directory.
pub const NODE_STATE_FILE_NAME: &str = "node-state.dat";

/// Version of the node-state file format written by this code.
pub const NODE_STATE_FORMAT_VERSION: u16 = 1;

/// Length of one slot in bytes.
pub const NODE_STATE_SLOT_LEN_BYTES: usize = 512;

/// Byte offsets of slots A and B.
pub const NODE_STATE_SLOT_OFFSETS: [u64; 2] = [0, 4096];

/// Length of a node-state file in bytes.
pub const NODE_STATE_FILE_LEN_BYTES: u64 =
    NODE_STATE_SLOT_OFFSETS[1] + NODE_STATE_SLOT_LEN_BYTES as u64;

const MAGIC: [u8; 8] = *b"TNDMNODE";
const FLAG_HAS_VOTE: u16 = 1;
const CRC_OFFSET: usize = 56;
const ENCODED_LEN: usize = CRC_OFFSET + 4;

/// What the node state holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    /// The member's current term.
    pub current_term: u64,
    /// The member it voted for in `current_term`, if it voted.
    pub voted_for: Option<u32>,
    /// A position known to be committed (replay may go this far on restart).
    pub commit_position_lower_bound: u64,
    /// The cluster this directory belongs to.
    pub cluster_id: u64,
    /// The member this directory belongs to.
    pub member_id: u32,
}

impl NodeState {
    /// The state of a new directory: term 0, no vote, nothing known committed.
    pub fn new(cluster_id: u64, member_id: u32) -> NodeState {
        NodeState {
            current_term: 0,
            voted_for: None,
            commit_position_lower_bound: 0,
            cluster_id,
            member_id,
        }
    }
}

/// The node-state file of a member's directory (see the module docs).
#[derive(Debug)]
pub struct NodeStateFile {
    path: PathBuf,
    file: File,
    state: NodeState,
    sequence: u64,
    latest_slot: usize,
    created: bool,
    writable: bool,
}

impl NodeStateFile {
    /// Opens `<dir>/node-state.dat`, creating it (term 0, no vote, commit 0) if
    /// it does not exist, and checks that it belongs to `cluster_id`/`member_id`.
    ///
    /// [`created`](NodeStateFile::created) tells whether the file was new: a
    /// member whose directory is new or was wiped must start as a learner.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::IdentityMismatch`] if the file belongs to another
    /// cluster or member; [`ArchiveError::Corrupted`] if neither slot holds a
    /// valid state or a slot has an unknown format version;
    /// [`ArchiveError::Io`] on I/O failure.
    pub fn open_or_create(dir: &Path, cluster_id: u64, member_id: u32) -> Result<NodeStateFile> {
        let path = dir.join(NODE_STATE_FILE_NAME);
        let created = if path.exists() {
            false
        } else {
            create_file(dir, &path, &NodeState::new(cluster_id, member_id))?;
            true
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ArchiveError::io("open", &path, e))?;
        let mut this = Self::load(path, file, true)?;
        this.created = created;
        if this.state.cluster_id != cluster_id || this.state.member_id != member_id {
            return Err(ArchiveError::IdentityMismatch {
                path: this.path,
                cluster_id,
                member_id,
                found_cluster_id: this.state.cluster_id,
                found_member_id: this.state.member_id,
            });
        }
        Ok(this)
    }

    /// Opens an existing `<dir>/node-state.dat` read-only, without checking its
    /// identity (for tools). [`store`](NodeStateFile::store) and
    /// [`update`](NodeStateFile::update) panic on a file opened this way.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the file does not exist or cannot be read;
    /// [`ArchiveError::Corrupted`] if neither slot holds a valid state.
    pub fn open_existing(dir: &Path) -> Result<NodeStateFile> {
        let path = dir.join(NODE_STATE_FILE_NAME);
        let file = File::open(&path).map_err(|e| ArchiveError::io("open", &path, e))?;
        Self::load(path, file, false)
    }

    fn load(path: PathBuf, file: File, writable: bool) -> Result<NodeStateFile> {
        let mut best: Option<(usize, u64, NodeState)> = None;
        for (slot, &offset) in NODE_STATE_SLOT_OFFSETS.iter().enumerate() {
            let mut buf = [0u8; NODE_STATE_SLOT_LEN_BYTES];
            let len = read_up_to(&file, &mut buf, offset)
                .map_err(|e| ArchiveError::io("read", &path, e))?;
            match decode_slot(&buf[..len]) {
                SlotContents::Valid { sequence, state } => {
                    if best
                        .as_ref()
                        .is_none_or(|&(_, best_sequence, _)| sequence > best_sequence)
                    {
                        best = Some((slot, sequence, state));
                    }
                }
                SlotContents::UnknownVersion(version) => {
                    return Err(ArchiveError::corrupted(
                        &path,
                        offset,
                        format!(
                            "node-state format version {version} is not supported (this build reads {NODE_STATE_FORMAT_VERSION})"
                        ),
                    ));
                }
                SlotContents::Invalid => {
                    tracing::debug!(path = %path.display(), offset, "node-state slot is not valid");
                }
            }
        }
        let Some((latest_slot, sequence, state)) = best else {
            return Err(ArchiveError::corrupted(
                &path,
                0,
                "neither node-state slot holds a valid state",
            ));
        };
        Ok(NodeStateFile {
            path,
            file,
            state,
            sequence,
            latest_slot,
            created: false,
            writable,
        })
    }

    /// Whether [`open_or_create`](NodeStateFile::open_or_create) created the file.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The newest state.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The update sequence of the newest state (1 for a new file).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Applies `f` to a copy of the state and durably stores the result.
    ///
    /// # Errors
    ///
    /// As [`store`](NodeStateFile::store).
    ///
    /// # Panics
    ///
    /// As [`store`](NodeStateFile::store).
    pub fn update(&mut self, f: impl FnOnce(&mut NodeState)) -> Result<()> {
        let mut next = self.state;
        f(&mut next);
        self.store(&next)
    }

    /// Durably stores `next`: writes the slot not holding the newest state and
    /// `fdatasync`s the file. When it returns `Ok`, a crash cannot lose `next`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the write or the sync fails; the in-memory state
    /// is then unchanged and the file still holds the previous state (or `next`).
    ///
    /// # Panics
    ///
    /// On a bug in the caller: the term decreases, the vote changes within a
    /// term once cast, the commit lower bound decreases, the identity changes,
    /// or the file was opened with [`open_existing`](NodeStateFile::open_existing).
    pub fn store(&mut self, next: &NodeState) -> Result<()> {
        let current = self.state;
        assert!(
            self.writable,
            "store on a read-only node-state file {}",
            self.path.display()
        );
        assert_eq!(
            (next.cluster_id, next.member_id),
            (current.cluster_id, current.member_id),
            "node-state identity must not change"
        );
        assert!(
            next.current_term >= current.current_term,
            "term must not decrease: {} -> {}",
            current.current_term,
            next.current_term
        );
        if next.current_term == current.current_term && current.voted_for.is_some() {
            assert_eq!(
                next.voted_for, current.voted_for,
                "vote must not change within term {}",
                current.current_term
            );
        }
        assert!(
            next.commit_position_lower_bound >= current.commit_position_lower_bound,
            "commit position lower bound must not decrease: {} -> {}",
            current.commit_position_lower_bound,
            next.commit_position_lower_bound
        );

        let sequence = self
            .sequence
            .checked_add(1)
            .expect("node-state update sequence overflow");
        let target_slot = 1 - self.latest_slot;
        let slot = encode_slot(sequence, next);
        let offset = NODE_STATE_SLOT_OFFSETS[target_slot];
        self.file
            .write_all_at(&slot, offset)
            .map_err(|e| ArchiveError::io("write", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| ArchiveError::io("fdatasync", &self.path, e))?;
        self.state = *next;
        self.sequence = sequence;
        self.latest_slot = target_slot;
        Ok(())
    }
}

/// Writes a complete new file under a temporary name and renames it into place.
fn create_file(dir: &Path, path: &Path, state: &NodeState) -> Result<()> {
    let tmp = dir.join(format!("{NODE_STATE_FILE_NAME}.tmp"));
    let mut bytes = vec![0u8; NODE_STATE_FILE_LEN_BYTES as usize];
    bytes[..NODE_STATE_SLOT_LEN_BYTES].copy_from_slice(&encode_slot(1, state));
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

/// Reads as many bytes as exist at `offset`, up to `buf.len()`.
fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn encode_slot(sequence: u64, state: &NodeState) -> [u8; NODE_STATE_SLOT_LEN_BYTES] {
    let mut b = [0u8; NODE_STATE_SLOT_LEN_BYTES];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..10].copy_from_slice(&NODE_STATE_FORMAT_VERSION.to_le_bytes());
    let flags = if state.voted_for.is_some() {
        FLAG_HAS_VOTE
    } else {
        0
    };
    b[10..12].copy_from_slice(&flags.to_le_bytes());
    b[16..24].copy_from_slice(&sequence.to_le_bytes());
    b[24..32].copy_from_slice(&state.current_term.to_le_bytes());
    b[32..40].copy_from_slice(&state.commit_position_lower_bound.to_le_bytes());
    b[40..48].copy_from_slice(&state.cluster_id.to_le_bytes());
    b[48..52].copy_from_slice(&state.member_id.to_le_bytes());
    b[52..56].copy_from_slice(&state.voted_for.unwrap_or(0).to_le_bytes());
    let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
    b[CRC_OFFSET..ENCODED_LEN].copy_from_slice(&crc.to_le_bytes());
    b
}

enum SlotContents {
    Valid { sequence: u64, state: NodeState },
    UnknownVersion(u16),
    Invalid,
}

fn decode_slot(b: &[u8]) -> SlotContents {
    if b.len() < ENCODED_LEN || b[0..8] != MAGIC {
        return SlotContents::Invalid;
    }
    let crc = u32_at(b, CRC_OFFSET);
    if crc32c::crc32c(&b[..CRC_OFFSET]) != crc {
        return SlotContents::Invalid;
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != NODE_STATE_FORMAT_VERSION {
        return SlotContents::UnknownVersion(version);
    }
    let flags = u16::from_le_bytes([b[10], b[11]]);
    let sequence = u64_at(b, 16);
    if flags & !FLAG_HAS_VOTE != 0 || u32_at(b, 12) != 0 || sequence == 0 {
        return SlotContents::Invalid;
    }
    let vote = u32_at(b, 52);
    let voted_for = if flags & FLAG_HAS_VOTE != 0 {
        Some(vote)
    } else if vote == 0 {
        None
    } else {
        return SlotContents::Invalid;
    };
    SlotContents::Valid {
        sequence,
        state: NodeState {
            current_term: u64_at(b, 24),
            voted_for,
            commit_position_lower_bound: u64_at(b, 32),
            cluster_id: u64_at(b, 40),
            member_id: u32_at(b, 48),
        },
    }
}

fn u64_at(b: &[u8], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&b[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

fn u32_at(b: &[u8], offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&b[offset..offset + 4]);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_round_trip() {
        let state = NodeState {
            current_term: 7,
            voted_for: Some(2),
            commit_position_lower_bound: 4096,
            cluster_id: 99,
            member_id: 1,
        };
        let b = encode_slot(3, &state);
        match decode_slot(&b) {
            SlotContents::Valid {
                sequence,
                state: back,
            } => {
                assert_eq!(sequence, 3);
                assert_eq!(back, state);
            }
            _ => panic!("slot did not decode"),
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let state = NodeState::new(5, 0);
        let b = encode_slot(1, &state);
        for bit in 0..ENCODED_LEN * 8 {
            let mut flipped = b;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(decode_slot(&flipped), SlotContents::Invalid),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn every_prefix_is_invalid_or_complete() {
        let state = NodeState {
            voted_for: Some(4),
            current_term: 12,
            ..NodeState::new(5, 0)
        };
        let b = encode_slot(9, &state);
        for len in 0..NODE_STATE_SLOT_LEN_BYTES {
            let mut torn = [0u8; NODE_STATE_SLOT_LEN_BYTES];
            torn[..len].copy_from_slice(&b[..len]);
            match decode_slot(&torn) {
                SlotContents::Invalid => assert!(len < ENCODED_LEN),
                SlotContents::Valid {
                    sequence,
                    state: back,
                } => {
                    assert_eq!((sequence, back), (9, state));
                }
                SlotContents::UnknownVersion(_) => {
                    panic!("prefix {len} decoded as another version")
                }
            }
        }
    }
}
