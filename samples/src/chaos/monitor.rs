//! Availability: polls every member's control file (memory-mapped, readable from the root
//! namespace through the filesystem) every 10 ms and records the intervals without a leader.
//!
//! The cluster has a leader when some running member says it leads in term T and a majority
//! of the members (itself included, learners not) are running and follow it in term T. A
//! member the harness has killed or paused does not count, whatever its file still says.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_cluster::control::{ControlFile, MemberRole};

/// What the fault scheduler tells the monitor, and the monitor tells back.
#[derive(Debug)]
pub struct Shared {
    /// Per member: 0 up, 1 paused, 2 down (set by the scheduler).
    pub states: Vec<AtomicU8>,
    /// Index of the current fault (0 = none yet; set by the scheduler).
    pub fault: AtomicUsize,
    /// The leader the monitor saw last (-1: none).
    pub leader: AtomicI64,
    /// Leader changes seen.
    pub leader_changes: AtomicUsize,
    stop: AtomicBool,
}

/// An interval without a leader.
#[derive(Debug, Clone, Copy)]
pub struct Gap {
    /// Start (seconds since the run began).
    pub start_s: f64,
    /// Length.
    pub len_s: f64,
    /// The fault in force when it began.
    pub fault: usize,
}

/// The monitor thread.
#[derive(Debug)]
pub struct Monitor {
    shared: Arc<Shared>,
    gaps: Arc<Mutex<Vec<Gap>>>,
    thread: Option<JoinHandle<()>>,
}

impl Shared {
    /// For `n` members, all down.
    pub fn new(n: u32) -> Self {
        Self {
            states: (0..n).map(|_| AtomicU8::new(2)).collect(),
            fault: AtomicUsize::new(0),
            leader: AtomicI64::new(-1),
            leader_changes: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// The leader the monitor saw last.
    pub fn leader(&self) -> Option<u32> {
        u32::try_from(self.leader.load(Ordering::Relaxed)).ok()
    }
}

/// The leader as the control files say (see the module docs), given which members are up.
pub fn leader_of(dirs: &[PathBuf], up: &[bool]) -> Option<u32> {
    let files: Vec<Option<ControlFile>> = dirs
        .iter()
        .zip(up)
        .map(|(d, &u)| if u { ControlFile::open(d).ok() } else { None })
        .collect();
    let majority = dirs.len() / 2 + 1;
    for (l, f) in files.iter().enumerate() {
        let Some(f) = f else { continue };
        if f.role() != Some(MemberRole::Leader) {
            continue;
        }
        let term = f.term();
        let followers = files
            .iter()
            .enumerate()
            .filter(|(m, g)| {
                g.as_ref().is_some_and(|g| {
                    *m != l
                        && g.term() == term
                        && g.role() == Some(MemberRole::Follower)
                        && g.leader_id() == Some(l as u32)
                })
            })
            .count();
        if followers + 1 >= majority {
            return Some(l as u32);
        }
    }
    None
}

impl Monitor {
    /// Starts polling the control files in `dirs`; times are measured from `t0`.
    ///
    /// # Errors
    /// If the thread cannot be spawned.
    pub fn start(dirs: Vec<PathBuf>, shared: Arc<Shared>, t0: Instant) -> std::io::Result<Self> {
        let gaps = Arc::new(Mutex::new(Vec::new()));
        let (s, g) = (Arc::clone(&shared), Arc::clone(&gaps));
        let thread = std::thread::Builder::new()
            .name("chaos-monitor".into())
            .spawn(move || {
                let mut since: Option<(Instant, usize)> = None;
                let mut last: Option<u32> = None;
                while !s.stop.load(Ordering::Relaxed) {
                    let up: Vec<bool> = s
                        .states
                        .iter()
                        .map(|a| a.load(Ordering::Relaxed) == 0)
                        .collect();
                    let leader = leader_of(&dirs, &up);
                    s.leader
                        .store(leader.map_or(-1, i64::from), Ordering::Relaxed);
                    if leader.is_some() && leader != last {
                        s.leader_changes.fetch_add(1, Ordering::Relaxed);
                        last = leader;
                    }
                    let now = Instant::now();
                    match (leader, since) {
                        (None, None) => since = Some((now, s.fault.load(Ordering::Relaxed))),
                        (Some(_), Some((start, fault))) => {
                            g.lock().unwrap_or_else(|e| e.into_inner()).push(Gap {
                                start_s: start.duration_since(t0).as_secs_f64(),
                                len_s: now.duration_since(start).as_secs_f64(),
                                fault,
                            });
                            since = None;
                        }
                        _ => {}
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                if let Some((start, fault)) = since {
                    g.lock().unwrap_or_else(|e| e.into_inner()).push(Gap {
                        start_s: start.duration_since(t0).as_secs_f64(),
                        len_s: start.elapsed().as_secs_f64(),
                        fault,
                    });
                }
            })?;
        Ok(Self {
            shared,
            gaps,
            thread: Some(thread),
        })
    }

    /// Stops the thread and returns the intervals without a leader.
    pub fn finish(mut self) -> Vec<Gap> {
        self.stop_thread();
        std::mem::take(&mut *self.gaps.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn stop_thread(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop_thread();
    }
}
