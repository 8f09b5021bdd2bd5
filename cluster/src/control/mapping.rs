//! The only `unsafe` of the control module: viewing a shared file mapping as 64-bit atomics,
//! and asking the kernel whether a pid exists.

use std::fs::File;
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::AtomicU64;

use memmap2::MmapRaw;

/// A read-write shared mapping of a whole file, seen as a slice of `AtomicU64` words.
///
/// Every access to the mapped bytes goes through those atomics, so a node and any number of
/// tools (threads or processes) may read and write them concurrently. No `&[u8]` or `&mut`
/// view of the bytes is ever made. As with every shared mapping, truncating the file while it
/// is mapped makes later accesses raise `SIGBUS`; nodes replace a control file by renaming a
/// new one over it, never by truncating it.
#[derive(Debug)]
pub(super) struct Mapping {
    map: MmapRaw,
    len_words: usize,
}

impl Mapping {
    /// Maps all of `file` (its current length) shared and writable.
    ///
    /// # Errors
    ///
    /// The `mmap` error, or `InvalidData` if the length is zero or not a multiple of eight
    /// or the mapping is not aligned for `AtomicU64` (mappings are page aligned, so this does
    /// not happen).
    pub(super) fn map(file: &File) -> io::Result<Self> {
        let map = MmapRaw::map_raw(file)?;
        let len_bytes = map.len();
        if len_bytes == 0 || !len_bytes.is_multiple_of(size_of::<AtomicU64>()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("mapping length {len_bytes} is not a positive multiple of 8"),
            ));
        }
        if map.as_ptr().align_offset(align_of::<AtomicU64>()) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "mapping is not aligned for 64-bit atomics",
            ));
        }
        Ok(Self {
            map,
            len_words: len_bytes / size_of::<AtomicU64>(),
        })
    }

    /// The mapping as words.
    #[inline]
    pub(super) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `map` checked that the pointer is non-null and aligned for `AtomicU64` and
        // that the mapping is `len_words * 8` bytes long. The mapping stays valid for as long
        // as `self.map` lives, which bounds the returned lifetime. `AtomicU64` has the size
        // and alignment of `u64` and every bit pattern is a valid value, so any file content
        // is fine. All access is atomic (through the `UnsafeCell` inside `AtomicU64`), so
        // shared references are sound while this process and others write the same memory;
        // nothing ever makes a non-atomic or `&mut` reference to these bytes.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.len_words) }
    }
}

/// Whether a process with this pid exists (`kill(pid, 0)`; EPERM counts as existing).
pub(super) fn pid_alive(pid: u64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        // 0 and negative pids name process groups, never one node.
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists and may
    // be signalled. It has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
