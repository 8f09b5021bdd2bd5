//! A member's directory as the tool sees it: checks that it is one, and whether a node
//! process runs in it (the directory's writer lock and the control file's pid).

use std::path::{Path, PathBuf};

use tandem_archive::{
    DirLock, LOCK_FILE_NAME, LOG_DIR_NAME, NODE_STATE_FILE_NAME, RECORDING_LOG_FILE_NAME,
};
use tandem_cluster::control::{CONTROL_FILE_NAME, ControlFile};

use crate::error::{Result, ToolError};

/// Files whose presence makes a directory a node directory.
const MARKERS: [&str; 5] = [
    CONTROL_FILE_NAME,
    NODE_STATE_FILE_NAME,
    RECORDING_LOG_FILE_NAME,
    LOCK_FILE_NAME,
    LOG_DIR_NAME,
];

/// A checked node directory.
#[derive(Debug, Clone)]
pub struct NodeDir {
    path: PathBuf,
}

/// Whether a node runs in the directory, and how that was decided.
///
/// A node holds the directory's writer lock for as long as it runs, so where the directory
/// has a lock file the lock decides: a process that closed its node (a node embedded in a
/// larger program, or one of several nodes in a test process) still exists, but the node
/// does not run. Only a directory without a lock file falls back to the control file's pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Whether the directory has a lock file.
    pub lock_file_present: bool,
    /// The pid recorded by the live holder of the directory's writer lock.
    pub lock_holder_pid: Option<u32>,
    /// The pid in the control file, if there is a valid one.
    pub control_pid: Option<u64>,
    /// Whether the control file's process still exists.
    pub control_owner_alive: bool,
}

impl Liveness {
    /// The running node's pid: the lock holder's where there is a lock file, else the control
    /// file's live owner's.
    pub fn running_pid(&self) -> Option<u64> {
        if self.lock_file_present {
            self.lock_holder_pid.map(u64::from)
        } else {
            self.control_pid.filter(|_| self.control_owner_alive)
        }
    }

    /// Why no node runs (for error messages); meaningful when [`Liveness::running_pid`] is
    /// `None`.
    pub fn not_running_detail(&self) -> String {
        match self.control_pid {
            Some(p) if !self.control_owner_alive => {
                format!("process {p} named in {CONTROL_FILE_NAME} is gone")
            }
            Some(p) => format!(
                "nobody holds the directory lock: process {p} named in {CONTROL_FILE_NAME} has closed its node"
            ),
            None if self.lock_file_present => {
                format!("no {CONTROL_FILE_NAME} and nobody holds the directory lock")
            }
            None => format!("no {CONTROL_FILE_NAME} and no lock file"),
        }
    }
}

impl NodeDir {
    /// Checks that `path` exists, is a directory and holds at least one of a node's files.
    ///
    /// # Errors
    /// [`ToolError::NoSuchDirectory`], [`ToolError::NotADirectory`],
    /// [`ToolError::NotNodeDirectory`], or an I/O error.
    pub fn open(path: &Path) -> Result<NodeDir> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ToolError::NotADirectory {
                    dir: path.to_path_buf(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ToolError::NoSuchDirectory {
                    dir: path.to_path_buf(),
                });
            }
            Err(e) => return Err(ToolError::io("stat", path, e)),
        }
        if !MARKERS.iter().any(|m| path.join(m).exists()) {
            return Err(ToolError::NotNodeDirectory {
                dir: path.to_path_buf(),
            });
        }
        Ok(NodeDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory has a control file.
    pub fn has_control_file(&self) -> bool {
        self.path.join(CONTROL_FILE_NAME).exists()
    }

    /// Opens the control file.
    ///
    /// # Errors
    /// The control file's errors (not found, bad magic, version, ...), each naming it.
    pub fn control(&self) -> Result<ControlFile> {
        Ok(ControlFile::open(&self.path)?)
    }

    /// Opens the control file if there is one.
    ///
    /// # Errors
    /// As [`NodeDir::control`], except that a missing file is `Ok(None)`.
    pub fn control_if_present(&self) -> Result<Option<ControlFile>> {
        if self.has_control_file() {
            self.control().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Decides whether a node runs here, from the writer lock and the control file.
    ///
    /// # Errors
    /// Lock-file probe errors and control-file errors.
    pub fn liveness(&self) -> Result<Liveness> {
        let lock_file_present = self.path.join(LOCK_FILE_NAME).exists();
        let lock_holder_pid = DirLock::holder_pid(&self.path)?;
        let (control_pid, control_owner_alive) = match self.control_if_present()? {
            Some(c) => (Some(c.pid()), c.is_owner_alive()),
            None => (None, false),
        };
        Ok(Liveness {
            lock_file_present,
            lock_holder_pid,
            control_pid,
            control_owner_alive,
        })
    }

    /// Fails with [`ToolError::Running`] if a node runs here.
    ///
    /// # Errors
    /// [`ToolError::Running`]; the errors of [`NodeDir::liveness`].
    pub fn require_stopped(&self, command: &'static str) -> Result<()> {
        match self.liveness()?.running_pid() {
            Some(pid) => Err(ToolError::Running {
                dir: self.path.clone(),
                command,
                pid,
            }),
            None => Ok(()),
        }
    }

    /// Whether a node runs here (see [`Liveness`]).
    ///
    /// # Errors
    /// The errors of [`NodeDir::liveness`].
    pub fn is_running(&self) -> Result<bool> {
        Ok(self.liveness()?.running_pid().is_some())
    }

    /// Opens the control file of a running node.
    ///
    /// # Errors
    /// [`ToolError::NotRunning`] when there is no control file, its process is gone, or
    /// nobody holds the directory lock; control-file errors.
    pub fn require_running(&self, command: &'static str) -> Result<ControlFile> {
        let not_running = |detail: String| ToolError::NotRunning {
            dir: self.path.clone(),
            command,
            detail,
        };
        if !self.has_control_file() {
            return Err(not_running(format!("no {CONTROL_FILE_NAME}")));
        }
        let liveness = self.liveness()?;
        if liveness.running_pid().is_none() {
            let detail = match liveness.control_pid {
                Some(p) if !liveness.control_owner_alive => format!(
                    "process {p} named in {} is gone",
                    self.path.join(CONTROL_FILE_NAME).display()
                ),
                _ => liveness.not_running_detail(),
            };
            return Err(not_running(detail));
        }
        self.control()
    }
}
