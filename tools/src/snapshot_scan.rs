//! A read-only view of a member's snapshot files.
//!
//! `tandem_archive::SnapshotStore::open` creates `snapshots/` and deletes unfinished
//! (`.tmp`) files — on a running node, the snapshot being written. The tool therefore lists
//! and validates the files itself, following the format `tandem_archive`'s `snapshot`
//! module documents: a 64-byte header (`TNDMSNAP`, version 1, header length 64, term,
//! position, timestamp, service id, zero), the body, and a 16-byte trailer (body length,
//! CRC-32C of everything before the CRC, `SNPE`).

use std::path::{Path, PathBuf};

use tandem_archive::{
    SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_LEN_BYTES, SNAPSHOT_TRAILER_LEN_BYTES,
    SNAPSHOTS_DIR_NAME, SnapshotStore,
};

use crate::error::{Result, ToolError};

const MAGIC: &[u8; 8] = b"TNDMSNAP";
const TRAILER_MAGIC: &[u8; 4] = b"SNPE";

/// A finished snapshot file (by its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Term in the name.
    pub term: u64,
    /// Position in the name.
    pub position: u64,
    /// Service id in the name (-1: the consensus module).
    pub service_id: i32,
    /// File length in bytes.
    pub file_len_bytes: u64,
    /// The file.
    pub path: PathBuf,
}

/// A snapshot file whose contents validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSnapshot {
    /// Cluster time in the header.
    pub timestamp: i64,
    /// The body.
    pub body: Vec<u8>,
}

/// Every finished snapshot file in `<node dir>/snapshots`, by position, term and service.
/// An absent directory holds none.
///
/// # Errors
/// I/O errors.
pub fn list(node_dir: &Path) -> Result<Vec<SnapshotFile>> {
    let dir = node_dir.join(SNAPSHOTS_DIR_NAME);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ToolError::io("list", &dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ToolError::io("list", &dir, e))?;
        let Some((term, position, service_id)) = entry.file_name().to_str().and_then(parse_name)
        else {
            continue;
        };
        let path = entry.path();
        let file_len_bytes = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m.len(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ToolError::io("stat", &path, e)),
        };
        files.push(SnapshotFile {
            term,
            position,
            service_id,
            file_len_bytes,
            path,
        });
    }
    files.sort_by_key(|f| (f.position, f.term, f.service_id));
    Ok(files)
}

/// Total length of the files in `<node dir>/snapshots` (unfinished ones included).
///
/// # Errors
/// I/O errors.
pub fn disk_usage_bytes(node_dir: &Path) -> Result<u64> {
    let dir = node_dir.join(SNAPSHOTS_DIR_NAME);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ToolError::io("list", &dir, e)),
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        if let Ok(m) = entry.metadata()
            && m.is_file()
        {
            total = total.saturating_add(m.len());
        }
    }
    Ok(total)
}

/// Reads and validates a whole snapshot file.
///
/// # Errors
/// [`ToolError::Corrupted`] naming the file and byte offset; I/O errors.
pub fn validate(file: &SnapshotFile) -> Result<ValidSnapshot> {
    let path = &file.path;
    let bytes = std::fs::read(path).map_err(|e| ToolError::io("read", path, e))?;
    let corrupted = |offset: u64, reason: String| ToolError::corrupted(path, offset, reason);
    let len = bytes.len() as u64;
    let (h_len, t_len) = (SNAPSHOT_HEADER_LEN_BYTES, SNAPSHOT_TRAILER_LEN_BYTES);
    if len < h_len + t_len {
        return Err(corrupted(
            len,
            format!("file of {len} bytes is too short for a snapshot (torn?)"),
        ));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    if &bytes[0..8] != MAGIC {
        return Err(corrupted(0, "not a snapshot file (bad magic)".into()));
    }
    let version = u32_at(8);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(corrupted(
            8,
            format!("snapshot format version {version} is not supported"),
        ));
    }
    if u64::from(u32_at(12)) != h_len {
        return Err(corrupted(
            12,
            format!("header length {} is not {h_len}", u32_at(12)),
        ));
    }
    let (term, position) = (u64_at(16), u64_at(24));
    let timestamp = u64_at(32) as i64;
    let service_id = u32_at(40) as i32;
    if bytes[44..h_len as usize].iter().any(|&b| b != 0) {
        return Err(corrupted(44, "non-zero reserved header bytes".into()));
    }
    if (term, position, service_id) != (file.term, file.position, file.service_id) {
        return Err(corrupted(
            16,
            format!(
                "header says term {term} position {position} service {service_id}, the name term {} position {} service {}",
                file.term, file.position, file.service_id
            ),
        ));
    }
    let trailer = (len - t_len) as usize;
    if &bytes[trailer + 12..trailer + 16] != TRAILER_MAGIC {
        return Err(corrupted(
            trailer as u64 + 12,
            "no snapshot trailer (torn or truncated file)".into(),
        ));
    }
    let body_len = u64_at(trailer);
    if body_len != trailer as u64 - h_len {
        return Err(corrupted(
            trailer as u64,
            format!(
                "trailer says the body is {body_len} bytes, the file holds {}",
                trailer as u64 - h_len
            ),
        ));
    }
    if crc32c::crc32c(&bytes[..trailer + 8]) != u32_at(trailer + 8) {
        return Err(corrupted(trailer as u64 + 8, "checksum mismatch".into()));
    }
    Ok(ValidSnapshot {
        timestamp,
        body: bytes[h_len as usize..trailer].to_vec(),
    })
}

/// Parses a snapshot file name; only the archive's canonical spelling counts.
fn parse_name(name: &str) -> Option<(u64, u64, i32)> {
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    let position: u64 = rest.get(0..20)?.parse().ok()?;
    let term: u64 = rest.get(21..41)?.parse().ok()?;
    let service_id: i32 = rest.get(41..)?.strip_prefix("-s")?.parse().ok()?;
    (SnapshotStore::file_name(term, position, service_id) == name)
        .then_some((term, position, service_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = SnapshotStore::file_name(3, 65536, -1);
        assert_eq!(parse_name(&name), Some((3, 65536, -1)));
        assert_eq!(parse_name(&format!("{name}.tmp")), None);
        assert_eq!(parse_name("snapshot-1-2-s0.snap"), None);
    }
}
