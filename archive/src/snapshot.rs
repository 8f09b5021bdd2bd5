//! The snapshot store: one file per snapshot of a service (or of the consensus
//! module) in `<dir>/snapshots/`.
//!
//! A snapshot is streamed into `<name>.tmp` by a [`SnapshotWriter`]; `finish`
//! appends a trailer holding the body length and a CRC-32C of everything
//! before it, fsyncs the file, renames it to its final name and fsyncs the
//! directory. So a snapshot file either does not exist under its final name
//! or is complete; a [`SnapshotReader`] checks the whole file anyway (a disk
//! can still corrupt it) before it hands out a byte of the body.
//!
//! For install-snapshot, the leader sends a snapshot's raw file bytes with
//! [`SnapshotStore::read_chunk`] and the follower writes them with a
//! [`RawSnapshotWriter`], which validates the whole file before it renames it
//! into place, so a follower never installs a torn or corrupted transfer.
//!
//! Files are named `snapshot-<position>-<term>-s<service id>.snap`, with
//! position and term as 20 zero-padded decimal digits, so names sort by
//! position: `snapshot-00000000000000065536-00000000000000000003-s-1.snap` is
//! the consensus module's snapshot at position 65536 in term 3. Names ending
//! in `.tmp` are unfinished writes; [`SnapshotStore::open`] removes them.
//!
//! # File format (version 1)
//!
//! All integers little-endian.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------------------------------------------------------+
//! |                     magic "TNDMSNAP" (8 bytes)                 |  0
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                       version (u32) = 1                       |  8
//! +---------------------------------------------------------------+
//! |                  header length (u32) = 64                     | 12
//! +---------------------------------------------------------------+
//! |                          term (u64)                           | 16
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                     log position (u64)                        | 24
//! |                                                               |
//! +---------------------------------------------------------------+
//! |                 timestamp (i64), cluster time                 | 32
//! |                                                               |
//! +---------------------------------------------------------------+
//! |           service id (i32), -1 = consensus module             | 40
//! +---------------------------------------------------------------+
//! |                     reserved, zero (20 bytes)                 | 44
//! +---------------------------------------------------------------+
//! |                 body: the service's bytes                     | 64
//! |                             ...                               |
//! +---------------------------------------------------------------+
//! |                    body length (u64)                          | 64 + body
//! |                                                               |
//! +---------------------------------------------------------------+
//! |     CRC-32C (u32) of header, body and body length             | 72 + body
//! +---------------------------------------------------------------+
//! |                 trailer magic "SNPE" (4 bytes)                | 76 + body
//! +---------------------------------------------------------------+
//! ```
//!
//! The header's term, position and service id must match the file name.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::dir_lock::sync_dir;
use crate::error::{ArchiveError, Result};

/// Name of the snapshot directory inside a member's directory.
pub const SNAPSHOTS_DIR_NAME: &str = "snapshots";

/// Version of the snapshot file format written by this code.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Length of a snapshot file's header in bytes.
pub const SNAPSHOT_HEADER_LEN_BYTES: u64 = 64;

/// Length of a snapshot file's trailer in bytes.
pub const SNAPSHOT_TRAILER_LEN_BYTES: u64 = 16;

const MAGIC: [u8; 8] = *b"TNDMSNAP";
const TRAILER_MAGIC: [u8; 4] = *b"SNPE";
const NAME_PREFIX: &str = "snapshot-";
const NAME_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".tmp";
const IO_BUFFER_LEN_BYTES: usize = 256 * 1024;

/// A snapshot file in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The term of the log at the snapshot's position.
    pub term: u64,
    /// The log position the snapshot was taken at.
    pub position: u64,
    /// The service it belongs to (-1 for the consensus module).
    pub service_id: i32,
    /// The file's length in bytes (header, body and trailer).
    pub file_len_bytes: u64,
    /// The file's path.
    pub path: PathBuf,
}

impl SnapshotMeta {
    /// The length of the body in bytes, as implied by the file length.
    pub fn body_len_bytes(&self) -> u64 {
        self.file_len_bytes
            .saturating_sub(SNAPSHOT_HEADER_LEN_BYTES + SNAPSHOT_TRAILER_LEN_BYTES)
    }
}

/// The snapshot files of a member's directory (see the module docs).
///
/// Open one store per directory, in the process holding the directory's lock:
/// opening removes unfinished (`.tmp`) files.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// Opens `<dir>/snapshots/`, creating it if needed, and removes unfinished
    /// snapshot files left by a crash.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the directory cannot be created or read.
    pub fn open(dir: &Path) -> Result<SnapshotStore> {
        let snapshots = dir.join(SNAPSHOTS_DIR_NAME);
        if !snapshots.is_dir() {
            std::fs::create_dir_all(&snapshots)
                .map_err(|e| ArchiveError::io("create directory", &snapshots, e))?;
            sync_dir(dir)?;
        }
        let store = SnapshotStore { dir: snapshots };
        let mut removed = false;
        for name in store.file_names()? {
            if name.ends_with(TMP_SUFFIX) {
                let path = store.dir.join(&name);
                tracing::info!(path = %path.display(), "removing unfinished snapshot file");
                std::fs::remove_file(&path).map_err(|e| ArchiveError::io("remove", &path, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&store.dir)?;
        }
        Ok(store)
    }

    /// The snapshot directory (`<dir>/snapshots`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name of a snapshot.
    pub fn file_name(term: u64, position: u64, service_id: i32) -> String {
        format!("{NAME_PREFIX}{position:020}-{term:020}-s{service_id}{NAME_SUFFIX}")
    }

    /// Starts writing a snapshot of `service_id` at `position` in `term`.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the temporary file cannot be created or written.
    pub fn writer(
        &self,
        term: u64,
        position: u64,
        service_id: i32,
        timestamp: i64,
    ) -> Result<SnapshotWriter> {
        let final_path = self.dir.join(Self::file_name(term, position, service_id));
        let tmp_path = tmp_path_of(&final_path);
        let file = create_tmp(&tmp_path)?;
        let header = encode_header(term, position, service_id, timestamp);
        let mut out = BufWriter::with_capacity(IO_BUFFER_LEN_BYTES, file);
        let mut writer = SnapshotWriter {
            out: None,
            dir: self.dir.clone(),
            tmp_path,
            final_path,
            term,
            position,
            service_id,
            crc: crc32c::crc32c(&header),
            body_len_bytes: 0,
        };
        out.write_all(&header)
            .map_err(|e| ArchiveError::io("write", &writer.tmp_path, e))?;
        writer.out = Some(out);
        Ok(writer)
    }

    /// Starts receiving the raw file bytes of a snapshot of `service_id` at
    /// `position` in `term` (as another member's [`read_chunk`](SnapshotStore::read_chunk) reads them).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the temporary file cannot be created.
    pub fn raw_writer(
        &self,
        term: u64,
        position: u64,
        service_id: i32,
    ) -> Result<RawSnapshotWriter> {
        let final_path = self.dir.join(Self::file_name(term, position, service_id));
        let tmp_path = tmp_path_of(&final_path);
        let file = create_tmp(&tmp_path)?;
        Ok(RawSnapshotWriter {
            file: Some(file),
            dir: self.dir.clone(),
            tmp_path,
            final_path,
            term,
            position,
            service_id,
            len_bytes: 0,
        })
    }

    /// Opens the snapshot of `service_id` at `position` (the newest term if
    /// there are several), validating the whole file, and returns a reader of
    /// its body.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::NotFound`] if there is no such snapshot;
    /// [`ArchiveError::Corrupted`] (naming the file and byte offset) if it is
    /// torn or corrupted; [`ArchiveError::Io`] on I/O failure.
    pub fn reader(&self, position: u64, service_id: i32) -> Result<SnapshotReader> {
        let meta = self.find(position, service_id)?;
        let mut file =
            File::open(&meta.path).map_err(|e| ArchiveError::io("open", &meta.path, e))?;
        let header = validate(
            &meta.path,
            &file,
            Some((meta.term, meta.position, meta.service_id)),
        )?;
        file.seek(SeekFrom::Start(SNAPSHOT_HEADER_LEN_BYTES))
            .map_err(|e| ArchiveError::io("seek", &meta.path, e))?;
        let body = BufReader::with_capacity(IO_BUFFER_LEN_BYTES, file).take(header.body_len_bytes);
        Ok(SnapshotReader {
            body,
            meta,
            timestamp: header.timestamp,
            body_len_bytes: header.body_len_bytes,
        })
    }

    /// Validates the whole snapshot of `service_id` at `position`.
    ///
    /// # Errors
    ///
    /// As [`reader`](SnapshotStore::reader).
    pub fn verify(&self, position: u64, service_id: i32) -> Result<SnapshotMeta> {
        Ok(self.reader(position, service_id)?.meta)
    }

    /// The snapshot of `service_id` at `position` (the newest term if there are
    /// several), without validating its contents.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::NotFound`] if there is none; [`ArchiveError::Io`] if the
    /// directory cannot be read.
    pub fn find(&self, position: u64, service_id: i32) -> Result<SnapshotMeta> {
        self.list()?
            .into_iter()
            .filter(|m| m.position == position && m.service_id == service_id)
            .max_by_key(|m| m.term)
            .ok_or_else(|| {
                ArchiveError::NotFound(format!(
                    "snapshot of service {service_id} at position {position} in {}",
                    self.dir.display()
                ))
            })
    }

    /// The length in bytes of the snapshot file of `service_id` at `position`.
    ///
    /// # Errors
    ///
    /// As [`find`](SnapshotStore::find).
    pub fn file_len(&self, position: u64, service_id: i32) -> Result<u64> {
        Ok(self.find(position, service_id)?.file_len_bytes)
    }

    /// Reads raw file bytes of the snapshot of `service_id` at `position`,
    /// from byte `offset`, into `buf`. Returns how many bytes were read: fewer
    /// than `buf.len()` only at the end of the file, 0 at or past it.
    ///
    /// # Errors
    ///
    /// As [`find`](SnapshotStore::find), and [`ArchiveError::Io`] if the read fails.
    pub fn read_chunk(
        &self,
        position: u64,
        service_id: i32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize> {
        let meta = self.find(position, service_id)?;
        let file = File::open(&meta.path).map_err(|e| ArchiveError::io("open", &meta.path, e))?;
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset.saturating_add(filled as u64)) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ArchiveError::io("read", &meta.path, e)),
            }
        }
        Ok(filled)
    }

    /// Every finished snapshot file (by name; contents are not checked),
    /// ordered by position, term and service id.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the directory cannot be read.
    pub fn list(&self) -> Result<Vec<SnapshotMeta>> {
        let mut metas = Vec::new();
        for name in self.file_names()? {
            let Some((term, position, service_id)) = parse_file_name(&name) else {
                continue;
            };
            let path = self.dir.join(&name);
            let file_len_bytes = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m.len(),
                Ok(_) => continue,
                // Deleted since the listing: not there any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ArchiveError::io("stat", &path, e)),
            };
            metas.push(SnapshotMeta {
                term,
                position,
                service_id,
                file_len_bytes,
                path,
            });
        }
        metas.sort_by_key(|m| (m.position, m.term, m.service_id));
        Ok(metas)
    }

    /// Deletes every snapshot file of `service_id` at `position` (of any term).
    /// Returns whether there was one.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if a file cannot be removed or the directory synced.
    pub fn delete(&self, position: u64, service_id: i32) -> Result<bool> {
        let mut deleted = false;
        for meta in self.list()? {
            if meta.position == position && meta.service_id == service_id {
                std::fs::remove_file(&meta.path)
                    .map_err(|e| ArchiveError::io("remove", &meta.path, e))?;
                deleted = true;
            }
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    /// Total length in bytes of the files in the snapshot directory
    /// (unfinished ones included).
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the directory cannot be read.
    pub fn disk_usage_bytes(&self) -> Result<u64> {
        let mut total = 0u64;
        for name in self.file_names()? {
            let path = self.dir.join(&name);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => total = total.saturating_add(m.len()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ArchiveError::io("stat", &path, e)),
            }
        }
        Ok(total)
    }

    fn file_names(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| ArchiveError::io("read directory", &self.dir, e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| ArchiveError::io("read directory", &self.dir, e))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// Streams a new snapshot's body into a temporary file; see
/// [`SnapshotStore::writer`]. Dropping it unfinished removes the file.
#[derive(Debug)]
pub struct SnapshotWriter {
    out: Option<BufWriter<File>>,
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    term: u64,
    position: u64,
    service_id: i32,
    crc: u32,
    body_len_bytes: u64,
}

impl SnapshotWriter {
    /// How many body bytes were written so far.
    pub fn body_len_bytes(&self) -> u64 {
        self.body_len_bytes
    }

    /// Writes the trailer, fsyncs the file, renames it to its final name and
    /// fsyncs the directory. Only then does the snapshot exist.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if any of these steps fails; the temporary file is
    /// then removed.
    pub fn finish(mut self) -> Result<SnapshotMeta> {
        let mut out = self
            .out
            .take()
            .expect("an unfinished writer holds its file");
        let trailer = encode_trailer(self.crc, self.body_len_bytes);
        let tmp_path = self.tmp_path.clone();
        let file = (|| {
            out.write_all(&trailer)?;
            out.flush()?;
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(file)
        })();
        let file = file.map_err(|e| {
            let _ = std::fs::remove_file(&tmp_path);
            ArchiveError::io("write", &tmp_path, e)
        })?;
        drop(file);
        let meta = SnapshotMeta {
            term: self.term,
            position: self.position,
            service_id: self.service_id,
            file_len_bytes: SNAPSHOT_HEADER_LEN_BYTES
                + self.body_len_bytes
                + SNAPSHOT_TRAILER_LEN_BYTES,
            path: self.final_path.clone(),
        };
        install(&self.dir, &self.tmp_path, &self.final_path)?;
        Ok(meta)
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .expect("an unfinished writer holds its file");
        let n = out.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.body_len_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out
            .as_mut()
            .expect("an unfinished writer holds its file")
            .flush()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            drop(out);
            remove_unfinished(&self.tmp_path);
        }
    }
}

/// Receives a snapshot's raw file bytes from another member; see
/// [`SnapshotStore::raw_writer`]. Dropping it unfinished removes the file.
#[derive(Debug)]
pub struct RawSnapshotWriter {
    file: Option<File>,
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    term: u64,
    position: u64,
    service_id: i32,
    len_bytes: u64,
}

impl RawSnapshotWriter {
    /// Writes `bytes` at file offset `offset`. Chunks may come in any order
    /// and may be re-sent; bytes never written read as zeros, which
    /// [`finish`](RawSnapshotWriter::finish) rejects.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the write fails.
    pub fn write_chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let file = self
            .file
            .as_ref()
            .expect("an unfinished writer holds its file");
        let end = offset.checked_add(bytes.len() as u64).ok_or_else(|| {
            ArchiveError::corrupted(
                &self.tmp_path,
                offset,
                "chunk ends beyond the largest file offset",
            )
        })?;
        file.write_all_at(bytes, offset)
            .map_err(|e| ArchiveError::io("write", &self.tmp_path, e))?;
        self.len_bytes = self.len_bytes.max(end);
        Ok(())
    }

    /// The end of the furthest chunk written so far.
    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Fsyncs the file, validates all of it (and that it is the snapshot this
    /// writer was opened for), renames it to its final name and fsyncs the
    /// directory.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Corrupted`] if the received file is not a valid snapshot
    /// of this term, position and service; [`ArchiveError::Io`] on I/O
    /// failure. The temporary file is removed on error.
    pub fn finish(mut self) -> Result<SnapshotMeta> {
        let file = self
            .file
            .take()
            .expect("an unfinished writer holds its file");
        let result = (|| {
            file.sync_all()
                .map_err(|e| ArchiveError::io("fsync", &self.tmp_path, e))?;
            validate(
                &self.tmp_path,
                &file,
                Some((self.term, self.position, self.service_id)),
            )
        })();
        drop(file);
        let header = match result {
            Ok(header) => header,
            Err(e) => {
                remove_unfinished(&self.tmp_path);
                return Err(e);
            }
        };
        install(&self.dir, &self.tmp_path, &self.final_path)?;
        Ok(SnapshotMeta {
            term: self.term,
            position: self.position,
            service_id: self.service_id,
            file_len_bytes: SNAPSHOT_HEADER_LEN_BYTES
                + header.body_len_bytes
                + SNAPSHOT_TRAILER_LEN_BYTES,
            path: self.final_path.clone(),
        })
    }
}

impl Drop for RawSnapshotWriter {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            drop(file);
            remove_unfinished(&self.tmp_path);
        }
    }
}

/// Reads a validated snapshot's body; see [`SnapshotStore::reader`].
#[derive(Debug)]
pub struct SnapshotReader {
    body: std::io::Take<BufReader<File>>,
    meta: SnapshotMeta,
    timestamp: i64,
    body_len_bytes: u64,
}

impl SnapshotReader {
    /// The snapshot file.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The cluster time recorded in the snapshot's header.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// The length of the body in bytes.
    pub fn body_len_bytes(&self) -> u64 {
        self.body_len_bytes
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.body.read(buf)
    }
}

fn tmp_path_of(final_path: &Path) -> PathBuf {
    let mut name = final_path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

fn create_tmp(tmp_path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp_path)
        .map_err(|e| ArchiveError::io("create", tmp_path, e))
}

fn remove_unfinished(tmp_path: &Path) {
    if let Err(e) = std::fs::remove_file(tmp_path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %tmp_path.display(), error = %e, "cannot remove unfinished snapshot file");
    }
}

/// Renames a finished, fsynced temporary file into place and fsyncs the directory.
fn install(dir: &Path, tmp_path: &Path, final_path: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp_path, final_path) {
        remove_unfinished(tmp_path);
        return Err(ArchiveError::io("rename", tmp_path, e));
    }
    sync_dir(dir)
}

fn parse_file_name(name: &str) -> Option<(u64, u64, i32)> {
    let rest = name.strip_prefix(NAME_PREFIX)?.strip_suffix(NAME_SUFFIX)?;
    let position_digits = rest.get(0..20)?;
    let term_digits = rest.get(21..41)?;
    let service_text = rest.get(41..)?.strip_prefix("-s")?;
    if !position_digits
        .bytes()
        .chain(term_digits.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let position = position_digits.parse().ok()?;
    let term = term_digits.parse().ok()?;
    let service_id: i32 = service_text.parse().ok()?;
    // Only the canonical spelling counts (no "+1", "007", ...).
    (SnapshotStore::file_name(term, position, service_id) == name)
        .then_some((term, position, service_id))
}

fn encode_header(
    term: u64,
    position: u64,
    service_id: i32,
    timestamp: i64,
) -> [u8; SNAPSHOT_HEADER_LEN_BYTES as usize] {
    let mut b = [0u8; SNAPSHOT_HEADER_LEN_BYTES as usize];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&(SNAPSHOT_HEADER_LEN_BYTES as u32).to_le_bytes());
    b[16..24].copy_from_slice(&term.to_le_bytes());
    b[24..32].copy_from_slice(&position.to_le_bytes());
    b[32..40].copy_from_slice(&timestamp.to_le_bytes());
    b[40..44].copy_from_slice(&service_id.to_le_bytes());
    b
}

/// Encodes the trailer; `crc` covers the header and body so far.
fn encode_trailer(crc: u32, body_len_bytes: u64) -> [u8; SNAPSHOT_TRAILER_LEN_BYTES as usize] {
    let mut b = [0u8; SNAPSHOT_TRAILER_LEN_BYTES as usize];
    b[0..8].copy_from_slice(&body_len_bytes.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &b[0..8]);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
    b[12..16].copy_from_slice(&TRAILER_MAGIC);
    b
}

/// What validation learned from a snapshot file.
struct ValidHeader {
    timestamp: i64,
    body_len_bytes: u64,
}

/// Checks a whole snapshot file: header, trailer, length and CRC, and that it
/// is the snapshot `expected` (term, position, service id) names.
fn validate(path: &Path, file: &File, expected: Option<(u64, u64, i32)>) -> Result<ValidHeader> {
    let len_bytes = file
        .metadata()
        .map_err(|e| ArchiveError::io("stat", path, e))?
        .len();
    let corrupted = |offset: u64, reason: String| ArchiveError::corrupted(path, offset, reason);
    if len_bytes < SNAPSHOT_HEADER_LEN_BYTES + SNAPSHOT_TRAILER_LEN_BYTES {
        return Err(corrupted(
            len_bytes,
            format!("file of {len_bytes} bytes is too short for a snapshot (torn?)"),
        ));
    }
    let mut h = [0u8; SNAPSHOT_HEADER_LEN_BYTES as usize];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| ArchiveError::io("read", path, e))?;
    if h[0..8] != MAGIC {
        return Err(corrupted(0, "not a snapshot file (bad magic)".into()));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(corrupted(
            8,
            format!(
                "snapshot format version {version} is not supported (this build reads {SNAPSHOT_FORMAT_VERSION})"
            ),
        ));
    }
    let header_len = u32::from_le_bytes(h[12..16].try_into().expect("4 bytes"));
    if u64::from(header_len) != SNAPSHOT_HEADER_LEN_BYTES {
        return Err(corrupted(
            12,
            format!("header length {header_len} is not {SNAPSHOT_HEADER_LEN_BYTES}"),
        ));
    }
    let term = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    let position = u64::from_le_bytes(h[24..32].try_into().expect("8 bytes"));
    let timestamp = i64::from_le_bytes(h[32..40].try_into().expect("8 bytes"));
    let service_id = i32::from_le_bytes(h[40..44].try_into().expect("4 bytes"));
    if h[44..].iter().any(|&b| b != 0) {
        return Err(corrupted(44, "non-zero reserved header bytes".into()));
    }
    if let Some(expected) = expected
        && expected != (term, position, service_id)
    {
        return Err(corrupted(
            16,
            format!(
                "header says term {term} position {position} service {service_id}, expected term {} position {} service {}",
                expected.0, expected.1, expected.2
            ),
        ));
    }

    let trailer_offset = len_bytes - SNAPSHOT_TRAILER_LEN_BYTES;
    let mut t = [0u8; SNAPSHOT_TRAILER_LEN_BYTES as usize];
    file.read_exact_at(&mut t, trailer_offset)
        .map_err(|e| ArchiveError::io("read", path, e))?;
    if t[12..16] != TRAILER_MAGIC {
        return Err(corrupted(
            trailer_offset + 12,
            "no snapshot trailer (torn or truncated file)".into(),
        ));
    }
    let body_len_bytes = u64::from_le_bytes(t[0..8].try_into().expect("8 bytes"));
    let actual_body_len_bytes = trailer_offset - SNAPSHOT_HEADER_LEN_BYTES;
    if body_len_bytes != actual_body_len_bytes {
        return Err(corrupted(
            trailer_offset,
            format!(
                "trailer says the body is {body_len_bytes} bytes, the file holds {actual_body_len_bytes}"
            ),
        ));
    }
    let stored_crc = u32::from_le_bytes(t[8..12].try_into().expect("4 bytes"));

    let mut crc = crc32c::crc32c(&h);
    let mut buf = vec![0u8; IO_BUFFER_LEN_BYTES];
    let crc_end = trailer_offset + 8;
    let mut offset = SNAPSHOT_HEADER_LEN_BYTES;
    while offset < crc_end {
        let n = (crc_end - offset).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset)
            .map_err(|e| ArchiveError::io("read", path, e))?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        offset += n as u64;
    }
    if crc != stored_crc {
        return Err(corrupted(
            trailer_offset + 8,
            format!(
                "checksum mismatch over the {len_bytes}-byte file (stored {stored_crc:#010x}, computed {crc:#010x})"
            ),
        ));
    }
    Ok(ValidHeader {
        timestamp,
        body_len_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort_by_position() {
        for (term, position, service) in [(0, 0, 0), (3, 65536, -1), (u64::MAX, u64::MAX, i32::MAX)]
        {
            let name = SnapshotStore::file_name(term, position, service);
            assert_eq!(parse_file_name(&name), Some((term, position, service)));
        }
        assert!(SnapshotStore::file_name(9, 999, 0) < SnapshotStore::file_name(1, 1000, 0));
        for bad in [
            "snapshot-1-2-s3.snap",
            "snapshot-00000000000000065536-00000000000000000003-s+1.snap",
            "snapshot-00000000000000065536-00000000000000000003-s-1.snap.tmp",
            "snapshot-0000000000000006553x-00000000000000000003-s1.snap",
            "snapshot-99999999999999999999-00000000000000000003-s1.snap",
            "other",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
