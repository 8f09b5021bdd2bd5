//! The writer lock of a member's directory.
//!
//! One process at a time may write a member's directory. [`DirLock::acquire`]
//! takes an exclusive advisory lock (`flock(2)`, through std's
//! [`File::try_lock`]) on `<dir>/tandem.lock` and writes the holder's pid into
//! it, so that a refused writer and `cluster-tool` can say who holds it. The
//! lock belongs to the open file description: it is released when the
//! [`DirLock`] is dropped or the process dies, whatever happens to the file.
//!
//! # File format (version 1)
//!
//! `tandem.lock` is plain text, read only by people and by [`DirLock::holder_pid`]:
//!
//! ```text
//! +------------------------------------------+
//! | "tandem-lock v1 pid=" <decimal pid> "\n" |
//! +------------------------------------------+
//! ```
//!
//! The pid is only meaningful while the lock is held: a file left behind by a
//! dead process names a pid that no longer holds anything, which is why
//! liveness is decided by the lock, never by the file's contents.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{ArchiveError, Result};

/// Name of the lock file inside a member's directory.
pub const LOCK_FILE_NAME: &str = "tandem.lock";

/// Prefix of the lock file's contents; the version of its format is part of it.
const LOCK_PREFIX: &str = "tandem-lock v1 pid=";

/// How many times [`DirLock::holder_pid`] re-reads a held lock file whose pid is
/// not yet written (the holder writes it just after locking).
const HOLDER_PID_READ_ATTEMPTS: u32 = 50;

/// The exclusive writer lock of a member's directory, released on drop.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    path: PathBuf,
    file: File,
}

impl DirLock {
    /// Takes the writer lock of `dir`, creating `<dir>/tandem.lock` if needed,
    /// and records this process's pid in it.
    ///
    /// The lock is per open file description, so a second `acquire` of the same
    /// directory is refused even from within the same process.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Locked`] (with the holder's pid when it can be read) if
    /// another writer holds the lock; [`ArchiveError::Io`] if the lock file
    /// cannot be opened, locked or written.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ArchiveError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = read_pid(&mut file);
                return Err(ArchiveError::Locked {
                    dir: dir.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(ArchiveError::io("lock", &path, e)),
        }
        let text = format!("{LOCK_PREFIX}{}\n", std::process::id());
        file.set_len(0)
            .map_err(|e| ArchiveError::io("truncate", &path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| ArchiveError::io("seek", &path, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| ArchiveError::io("write", &path, e))?;
        // The pid is informational; a crash that loses it costs nothing but a
        // less helpful message, so no fsync here.
        Ok(DirLock {
            dir: dir.to_path_buf(),
            path,
            file,
        })
    }

    /// Returns the pid of the live process holding the writer lock of `dir`, or
    /// `None` if no process holds it (including when the lock file does not exist).
    ///
    /// It probes with a shared lock, which it gives back at once: while it holds
    /// that probe, an [`acquire`](DirLock::acquire) by another process is refused.
    ///
    /// # Errors
    ///
    /// [`ArchiveError::Io`] if the lock file exists but cannot be opened or
    /// probed; [`ArchiveError::Corrupted`] if the lock is held but the file does
    /// not name a pid (it is not a Tandem lock file, or was overwritten).
    pub fn holder_pid(dir: &Path) -> Result<Option<u32>> {
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ArchiveError::io("open", &path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => {
                // Nobody holds it. Dropping the file releases our probe.
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => {
                for _ in 0..HOLDER_PID_READ_ATTEMPTS {
                    if let Some(pid) = read_pid(&mut file) {
                        return Ok(Some(pid));
                    }
                    // The holder locks first and writes its pid just after.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(ArchiveError::corrupted(
                    &path,
                    0,
                    "lock is held but the file names no pid",
                ))
            }
            Err(TryLockError::Error(e)) => Err(ArchiveError::io("lock", &path, e)),
        }
    }

    /// The directory this lock guards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Clear the pid while the lock is still held, so a reader never sees our
        // pid once we are gone. Best effort: the lock, not the text, is what counts.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot clear lock file pid");
        }
        // Closing the file (when `self.file` drops) releases the lock.
    }
}

/// Reads the pid recorded in a lock file, if it holds a well-formed one.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    // A lock file is a few bytes; refuse to read a huge file someone put there.
    file.take(64).read_to_string(&mut text).ok()?;
    text.strip_prefix(LOCK_PREFIX)?.trim_end().parse().ok()
}

/// Fsyncs a directory, making renames and creations inside it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let file = File::open(dir).map_err(|e| ArchiveError::io("open directory", dir, e))?;
    file.sync_all()
        .map_err(|e| ArchiveError::io("fsync directory", dir, e))
}
