//! One log segment: a fixed-size, pre-allocated, memory-mapped file.
//!
//! A segment holds the log bytes `[base_position, base_position + len)`. Its
//! file is named after its base position, zero padded to 20 decimal digits
//! (`00000000000067108864.seg`), so `ls` lists segments in log order.
//!
//! Space is reserved with `posix_fallocate` when the file is created, so a
//! full disk is an error at creation and never a `SIGBUS` inside the mapping.
//! The mapping is pre-faulted for writing (`MADV_POPULATE_WRITE`, or touching
//! every page where the kernel lacks it) so the append path takes no page
//! faults.
//!
//! # Pre-faulting in chunks
//! Faulting a page in holds the process's mmap lock for reading, and
//! `MADV_POPULATE_WRITE` holds it for the whole range it is given: 64 MiB took
//! about 25 ms on the dev VM (allocating and zeroing 16 384 page-cache pages and
//! ext4's `page_mkwrite` for each). Every thread of the process that needs the
//! lock for writing meanwhile (`brk` or `mmap`/`munmap` in the allocator,
//! `mprotect`) waits, and so does every page fault queued behind such a writer.
//! With three members rolling to a new segment at the same moment, the append
//! thread of `cluster-bench` sat 70 ms in `brk` behind three preparers (perf
//! `sched:sched_switch`, issue #7). So pages are faulted in chunks of
//! [`PREFAULT_CHUNK_BYTES`], each its own call that takes and releases the lock,
//! and the caller may pace between chunks (the background preparer sleeps; see
//! `Log`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use memmap2::{Advice, MmapMut, MmapOptions};

use crate::error::{ArchiveError, Result};

/// File name suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";

const PAGE_LEN: usize = 4096;

/// Bytes faulted in by one `MADV_POPULATE_WRITE` call (64 pages, about 0.1 ms
/// on the dev VM): the longest a writer of the process's mmap lock waits
/// behind one pre-faulting thread (see the module docs).
pub(crate) const PREFAULT_CHUNK_BYTES: usize = 256 * 1024;

/// Called after each pre-faulted chunk with the time the chunk took, so the
/// caller can pace the work (sleep, yield) or do nothing.
pub(crate) type Pace<'a> = &'a mut dyn FnMut(Duration);

/// The file name of the segment starting at `base_position`.
pub(crate) fn segment_file_name(base_position: u64) -> String {
    format!("{base_position:020}{SEGMENT_SUFFIX}")
}

/// Parses a segment file name back into its base position.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A mapped segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_position: u64,
    pub(crate) path: PathBuf,
    pub(crate) map: MmapMut,
    // Kept open for fdatasync and for the lifetime of the mapping.
    _file: File,
}

impl Segment {
    /// Creates (or re-creates, zero filled) the segment file for
    /// `base_position`, reserves its space, maps and optionally pre-faults it
    /// (in chunks, calling `pace` after each).
    ///
    /// # Errors
    /// [`ArchiveError::Reserve`] when the space cannot be reserved (disk full,
    /// file size limit); [`ArchiveError::Io`] for other failures. A file that
    /// could not be fully reserved is removed again.
    pub(crate) fn create(
        dir: &Path,
        base_position: u64,
        len_bytes: u64,
        prefault: bool,
        pace: Pace<'_>,
    ) -> Result<Segment> {
        let path = dir.join(segment_file_name(base_position));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| ArchiveError::io("create segment", &path, e))?;
        let reserve = || -> std::io::Result<()> {
            // SAFETY: posix_fallocate only reads its integer arguments and the fd,
            // which `file` keeps open for the duration of the call.
            let rc =
                unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len_bytes as libc::off_t) };
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            Ok(())
        };
        // A file-size limit (RLIMIT_FSIZE) raises SIGXFSZ on the extending call;
        // the default action would kill the process. Tandem treats it as an
        // error instead: the signal is ignored in `ignore_sigxfsz`.
        ignore_sigxfsz();
        if let Err(source) = reserve() {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(ArchiveError::Reserve {
                path,
                len_bytes,
                source,
            });
        }
        let mut segment = Self::map(path, file, base_position, len_bytes)?;
        if prefault {
            prefault_for_write(&mut segment.map, pace);
        }
        sync_dir(dir)?;
        Ok(segment)
    }

    /// Maps an existing segment file. Its length must be `len_bytes`.
    pub(crate) fn open(dir: &Path, base_position: u64, len_bytes: u64) -> Result<Segment> {
        let path = dir.join(segment_file_name(base_position));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ArchiveError::io("open segment", &path, e))?;
        let actual = file
            .metadata()
            .map_err(|e| ArchiveError::io("stat segment", &path, e))?
            .len();
        if actual != len_bytes {
            return Err(ArchiveError::corrupted(
                &path,
                base_position,
                format!("segment file is {actual} bytes, expected {len_bytes}"),
            ));
        }
        Self::map(path, file, base_position, len_bytes)
    }

    fn map(path: PathBuf, file: File, base_position: u64, len_bytes: u64) -> Result<Segment> {
        let len = usize::try_from(len_bytes)
            .map_err(|_| ArchiveError::Config(format!("segment length {len_bytes} too large")))?;
        // SAFETY: the file is opened read-write by this process and has exactly
        // `len` bytes reserved. Only the archive writes to segment files while it
        // holds the directory lock; other processes (tools) only read them. The
        // mapping lives no longer than `_file` and the `Segment`.
        let map = unsafe { MmapOptions::new().len(len).map_mut(&file) }
            .map_err(|e| ArchiveError::io("mmap segment", &path, e))?;
        Ok(Segment {
            base_position,
            path,
            map,
            _file: file,
        })
    }

    /// Length of the segment in bytes.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// End position (exclusive) of the segment.
    #[inline]
    pub(crate) fn end_position(&self) -> u64 {
        self.base_position + self.len()
    }

    /// Durably writes the bytes `[from, to)` (segment offsets) to the file.
    pub(crate) fn sync_range(&self, from: usize, to: usize) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        self.map
            .flush_range(from, to - from)
            .map_err(|e| ArchiveError::io("msync segment", &self.path, e))
    }
}

/// Faults every page of a fresh mapping in for writing, [`PREFAULT_CHUNK_BYTES`]
/// at a time, calling `pace` after each chunk. Returns the number of chunks.
fn prefault_for_write(map: &mut MmapMut, pace: Pace<'_>) -> usize {
    let len = map.len();
    let mut chunks = 0;
    let mut populate = true;
    let mut offset = 0;
    while offset < len {
        let chunk = PREFAULT_CHUNK_BYTES.min(len - offset);
        let started = Instant::now();
        // MADV_POPULATE_WRITE needs Linux 5.14; where it is refused, the pages are
        // touched instead (from this chunk on).
        populate = populate
            && map
                .advise_range(Advice::PopulateWrite, offset, chunk)
                .is_ok();
        if !populate {
            for page in (offset..offset + chunk).step_by(PAGE_LEN) {
                let byte = map[page];
                // A volatile write of the byte that is already there: faults the
                // page in for writing without changing it, and cannot be
                // optimised away.
                let p: *mut u8 = &mut map[page];
                // SAFETY: `p` points into the mapping, which is valid for writes of
                // its whole length, and no other reference to this byte is live.
                unsafe { p.write_volatile(byte) };
            }
        }
        chunks += 1;
        offset += chunk;
        pace(started.elapsed());
    }
    chunks
}

/// Makes `SIGXFSZ` (file size limit exceeded) an `EFBIG` error instead of
/// process death, once per process.
fn ignore_sigxfsz() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: installing SIG_IGN for SIGXFSZ has no preconditions; it only
        // changes the disposition of a signal Tandem never handles otherwise.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
    });
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ArchiveError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        let a = segment_file_name(4096);
        let b = segment_file_name(1 << 40);
        assert!(a < b);
        assert_eq!(parse_segment_file_name(&a), Some(4096));
        assert_eq!(parse_segment_file_name(&b), Some(1 << 40));
        assert_eq!(parse_segment_file_name("123.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000x.seg"), None);
    }

    #[test]
    fn created_segment_is_zeroed_and_sized() {
        let dir = tempfile::tempdir().unwrap();
        let s = Segment::create(dir.path(), 65536, 65536, true, &mut |_| {}).unwrap();
        assert_eq!(s.len(), 65536);
        assert!(s.map.iter().all(|&b| b == 0));
        assert_eq!(std::fs::metadata(&s.path).unwrap().len(), 65536);
        let reopened = Segment::open(dir.path(), 65536, 65536).unwrap();
        assert_eq!(reopened.end_position(), 131072);
        assert!(Segment::open(dir.path(), 65536, 4096).is_err());
    }

    #[test]
    fn prefault_goes_chunk_by_chunk_and_paces_after_each() {
        let dir = tempfile::tempdir().unwrap();
        let len = 4 * PREFAULT_CHUNK_BYTES as u64 + 65536;
        let mut paced = 0;
        let s = Segment::create(dir.path(), 0, len, true, &mut |_| paced += 1).unwrap();
        assert_eq!(paced, 5, "four whole chunks and the 64 KiB rest");
        assert!(s.map.iter().all(|&b| b == 0));
        let mut unpaced = 0;
        let s = Segment::create(dir.path(), len, len, false, &mut |_| unpaced += 1).unwrap();
        assert_eq!(unpaced, 0, "no pre-faulting, no pacing");
        assert_eq!(s.len(), len);
    }
}
