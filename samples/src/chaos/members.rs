//! The member processes: `kv-store node` or `matching-engine node`, each started inside its
//! own network namespace (`setns` before `exec`, so the mount namespace is the harness's own),
//! with its directory on a small tmpfs of its own (so that a full disk is one member's).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tandem_cluster::control::ControlFile;

use super::error::{ChaosError, Result, io};
use super::net::{Net, run};

/// The tmpfs size of each member's directory.
pub const DISK_BYTES: u64 = 48 * 1024 * 1024;
/// The log segment length the members use (small, so that a full disk is hit soon).
pub const SEGMENT_BYTES: u64 = 64 * 1024;

/// A member's process state as the harness left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Running.
    Up,
    /// Stopped with SIGSTOP.
    Paused,
    /// Not running (killed, or it exited).
    Down,
}

/// How to start the members.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The sample binary.
    pub bin: PathBuf,
    /// The members list.
    pub members: String,
    /// Election timeout.
    pub election_timeout_ms: u64,
    /// Members' threading mode (`shared` or `dedicated`).
    pub threading: String,
}

#[derive(Debug)]
struct Member {
    dir: PathBuf,
    log: PathBuf,
    netns: PathBuf,
    child: Option<Child>,
    state: State,
    mounted: bool,
    starts: u32,
}

/// All members.
#[derive(Debug)]
pub struct Members {
    launch: Launch,
    members: Vec<Member>,
}

impl Members {
    /// Mounts each member's tmpfs under `run_dir` (does not start them).
    ///
    /// # Errors
    /// An IO or `mount` error.
    pub fn new(net: &Net, run_dir: &Path, launch: Launch) -> Result<Self> {
        let mut this = Self {
            launch,
            members: Vec::new(),
        };
        for i in 0..net.size() {
            let dir = run_dir.join(format!("node-{i}"));
            std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
            this.members.push(Member {
                log: run_dir.join(format!("node-{i}.log")),
                dir,
                netns: net.netns_path(i),
                child: None,
                state: State::Down,
                mounted: false,
                starts: 0,
            });
            let m = this.members.last_mut().expect("just pushed");
            // Dropping `this` on a failed mount unmounts the ones before.
            run(Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={DISK_BYTES}"))
                .arg("tmpfs")
                .arg(&m.dir))?;
            m.mounted = true;
        }
        Ok(this)
    }

    /// Members.
    pub fn len(&self) -> u32 {
        self.members.len() as u32
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s state.
    pub fn state(&self, i: u32) -> State {
        self.members[i as usize].state
    }

    /// Member `i`'s directory.
    pub fn dir(&self, i: u32) -> &Path {
        &self.members[i as usize].dir
    }

    /// Member `i`'s log file (its stdout and stderr, all its starts).
    pub fn log(&self, i: u32) -> &Path {
        &self.members[i as usize].log
    }

    /// Member `i`'s control file, if it can be opened.
    pub fn control(&self, i: u32) -> Option<ControlFile> {
        ControlFile::open(self.dir(i)).ok()
    }

    /// Starts member `i` (`bootstrap`: as a founding voter of a new directory).
    ///
    /// # Errors
    /// [`ChaosError::Spawn`].
    pub fn start(&mut self, i: u32, bootstrap: bool) -> Result<()> {
        let l = &self.launch;
        let m = &mut self.members[i as usize];
        assert!(m.child.is_none(), "member {i} is already running");
        let spawn_err = |source| ChaosError::Spawn {
            member: i,
            bin: l.bin.clone(),
            source,
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(spawn_err)?;
        m.starts += 1;
        let _ = writeln!(log, "---- start {} (bootstrap {bootstrap}) ----", m.starts);
        let ns = File::open(&m.netns).map_err(spawn_err)?;
        let ns_fd = ns.as_raw_fd();
        let mut cmd = Command::new(&l.bin);
        cmd.args([
            "node",
            "--member-id",
            &i.to_string(),
            "--members",
            &l.members,
        ])
        .arg("--dir")
        .arg(&m.dir)
        .args([
            "--cluster-id",
            "7",
            "--election-timeout-ms",
            &l.election_timeout_ms.to_string(),
            "--heartbeat-interval-ms",
            &(l.election_timeout_ms / 10).max(1).to_string(),
            "--idle",
            "backoff",
            "--threading",
            &l.threading,
            "--segment-len-bytes",
            &SEGMENT_BYTES.to_string(),
            "--state-hash",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(spawn_err)?)
        .stderr(log);
        if bootstrap {
            cmd.arg("--bootstrap");
        }
        // SAFETY: between fork and exec the closure makes only async-signal-safe system calls
        // (setns, prctl) on a descriptor opened before the fork, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The member dies with the harness, even if the harness is killed.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        drop(ns);
        m.child = Some(child);
        m.state = State::Up;
        Ok(())
    }

    fn signal(&self, i: u32, sig: libc::c_int) {
        if let Some(c) = &self.members[i as usize].child {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        }
    }

    /// SIGKILLs member `i` and reaps it.
    pub fn kill(&mut self, i: u32) {
        self.signal(i, libc::SIGKILL);
        let m = &mut self.members[i as usize];
        if let Some(mut c) = m.child.take() {
            let _ = c.wait();
        }
        m.state = State::Down;
    }

    /// SIGSTOPs member `i`.
    pub fn pause(&mut self, i: u32) {
        if self.state(i) == State::Up {
            self.signal(i, libc::SIGSTOP);
            self.members[i as usize].state = State::Paused;
        }
    }

    /// SIGCONTs member `i`.
    pub fn resume(&mut self, i: u32) {
        if self.state(i) == State::Paused {
            self.signal(i, libc::SIGCONT);
            self.members[i as usize].state = State::Up;
        }
    }

    /// Members that exited by themselves since the last look, with their exit status.
    pub fn reap(&mut self) -> Vec<(u32, ExitStatus)> {
        let mut out = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            if let Some(c) = &mut m.child
                && let Ok(Some(status)) = c.try_wait()
            {
                m.child = None;
                m.state = State::Down;
                out.push((i as u32, status));
            }
        }
        out
    }

    /// Empties member `i`'s directory (it must be down).
    ///
    /// # Errors
    /// An IO error.
    pub fn wipe(&mut self, i: u32) -> Result<()> {
        assert_eq!(self.state(i), State::Down, "wipe of a running member");
        let dir = self.dir(i).to_path_buf();
        for e in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
            let p = e.map_err(io("read", &dir))?.path();
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
            } else {
                std::fs::remove_file(&p).map_err(io("remove", &p))?;
            }
        }
        Ok(())
    }

    /// Fills member `i`'s tmpfs with a file until the disk is full; returns the bytes written.
    ///
    /// # Errors
    /// An IO error other than "no space".
    pub fn fill_disk(&mut self, i: u32) -> Result<u64> {
        let path = self.filler(i);
        let mut f = File::create(&path).map_err(io("create", &path))?;
        let chunk = vec![0xA5_u8; 64 * 1024];
        let mut written = 0_u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(io("write", &path)(e)),
            }
        }
        let _ = f.flush();
        Ok(written)
    }

    /// Removes member `i`'s filler file.
    pub fn free_disk(&mut self, i: u32) {
        let _ = std::fs::remove_file(self.filler(i));
    }

    fn filler(&self, i: u32) -> PathBuf {
        self.dir(i).join("chaos-filler")
    }

    /// Times member `i` was started.
    pub fn starts(&self, i: u32) -> u32 {
        self.members[i as usize].starts
    }

    /// Stops every member (SIGCONT then SIGKILL) and unmounts their directories.
    pub fn teardown(&mut self) {
        for i in 0..self.len() {
            self.signal(i, libc::SIGCONT);
            self.kill(i);
        }
        for m in &mut self.members {
            if m.mounted {
                let ok = run(Command::new("umount").arg(&m.dir)).is_ok()
                    || run(Command::new("umount").arg("-l").arg(&m.dir)).is_ok();
                m.mounted = !ok;
            }
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Waits up to `timeout` for `f` to hold, looking every 20 ms.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
