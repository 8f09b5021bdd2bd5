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

/// Whether a node process runs in the directory, and how that was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// The pid recorded by the live holder of the directory's writer lock.
    pub lock_holder_pid: Option<u32>,
    /// The pid in the control file, if there is a valid one.
    pub control_pid: Option<u64>,
    /// Whether the control file's process still exists.
    pub control_owner_alive: bool,
}

impl Liveness {
    /// The running node's pid: the lock holder's, else the control file's live owner's.
    pub fn running_pid(&self) -> Option<u64> {
        self.lock_holder_pid
            .map(u64::from)
            .or(self.control_pid.filter(|_| self.control_owner_alive))
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
        let lock_holder_pid = DirLock::holder_pid(&self.path)?;
        let (control_pid, control_owner_alive) = match self.control_if_present()? {
            Some(c) => (Some(c.pid()), c.is_owner_alive()),
            None => (None, false),
        };
        Ok(Liveness {
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

    /// Opens the control file of a running node.
    ///
    /// # Errors
    /// [`ToolError::NotRunning`] when there is no control file or its process is gone;
    /// control-file errors.
    pub fn require_running(&self, command: &'static str) -> Result<ControlFile> {
        let not_running = |detail: String| ToolError::NotRunning {
            dir: self.path.clone(),
            command,
            detail,
        };
        if !self.has_control_file() {
            return Err(not_running(format!("no {CONTROL_FILE_NAME}")));
        }
        let control = self.control()?;
        if !control.is_owner_alive() {
            return Err(not_running(format!(
                "process {} named in {} is gone",
                control.pid(),
                control.path().display()
            )));
        }
        Ok(control)
    }
}
