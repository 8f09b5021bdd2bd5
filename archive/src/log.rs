//! The segmented, memory-mapped log.
//!
//! The log is a sequence of [frames](crate::frame) addressed by byte position,
//! stored in fixed-size [segments](crate::segment) in one directory:
//!
//! ```text
//! <log dir>/
//!   log.meta                       start position and segment length (checksummed)
//!   00000000000000000000.seg       bytes [0, L)
//!   00000000000067108864.seg       bytes [L, 2L)        (L = segment length, 64 MiB default)
//!   ...
//! ```
//!
//! Appends write in place into the mapping (claim, fill, commit), so a frame is
//! copied exactly once. The next segment is created, reserved and pre-faulted
//! on a background thread before the append path needs it. Reads iterate
//! frames zero copy from any frame boundary up to a limit (the caller's commit
//! position).
//!
//! # Recovery
//! [`Log::open`] validates every frame from the log start (length, version,
//! checksum over the frame and its position, terms never decreasing), stops at
//! the first invalid frame, zeroes everything after it and deletes later
//! segments. An invalid frame *below* the caller's durable position is not
//! truncated: it is reported as [`ArchiveError::Corrupted`].
//!
//! # `log.meta` format (version 1)
//!
//! ```text
//!  0       8       12      16              24              32      36
//! +-------+-------+-------+---------------+---------------+-------+
//! | magic |version|  zero | segment_len   | start_position| crc32c|
//! +-------+-------+-------+---------------+---------------+-------+
//! ```
//! magic = `b"TNDMLOG\0"`; crc32c covers bytes `0..32`. Written to a temporary
//! file, fsynced and renamed over the old one.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{ArchiveError, Result};
use crate::frame::{
    self, Decoded, Frame, FrameHeader, HEADER_LEN, PADDING_FRAME_TYPE, align_frame_len,
};
use crate::segment::{self, Segment};

const META_FILE: &str = "log.meta";
const META_MAGIC: &[u8; 8] = b"TNDMLOG\0";
const META_VERSION: u32 = 1;
const META_LEN: usize = 36;

/// Smallest allowed segment length.
pub const MIN_SEGMENT_LEN_BYTES: u64 = 64 * 1024;
/// Default segment length (64 MiB).
pub const DEFAULT_SEGMENT_LEN_BYTES: u64 = 64 * 1024 * 1024;
/// Default maximum frame length, header included (4 MiB).
pub const DEFAULT_MAX_FRAME_LEN_BYTES: usize = 4 * 1024 * 1024;

/// When appended frames are made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Never synced by the log: the page cache is the durability boundary
    /// (Aeron's default). Survives process crashes, not machine crashes.
    #[default]
    None,
    /// Synced when the caller calls [`Log::sync`] (once per batch of work).
    Batch,
    /// Synced on every append call before it returns.
    Every,
}

impl FromStr for Durability {
    type Err = ArchiveError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Durability::None),
            "batch" => Ok(Durability::Batch),
            "every" => Ok(Durability::Every),
            other => Err(ArchiveError::Config(format!(
                "unknown fsync mode {other:?}: expected none, batch or every"
            ))),
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::None => "none",
            Durability::Batch => "batch",
            Durability::Every => "every",
        })
    }
}

/// Configuration of a [`Log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Length of each segment file; a power of two, at least 64 KiB.
    pub segment_len_bytes: u64,
    /// Longest frame accepted, header included; at most the segment length.
    pub max_frame_len_bytes: usize,
    /// When appends are synced.
    pub durability: Durability,
    /// Create the next segment on a background thread before it is needed.
    pub prepare_next_segment: bool,
    /// Pre-fault new segments for writing.
    pub prefault: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_len_bytes: DEFAULT_SEGMENT_LEN_BYTES,
            max_frame_len_bytes: DEFAULT_MAX_FRAME_LEN_BYTES,
            durability: Durability::None,
            prepare_next_segment: true,
            prefault: true,
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<()> {
        let len = self.segment_len_bytes;
        if !len.is_power_of_two() || len < MIN_SEGMENT_LEN_BYTES {
            return Err(ArchiveError::Config(format!(
                "segment length {len} must be a power of two of at least {MIN_SEGMENT_LEN_BYTES} bytes"
            )));
        }
        if self.max_frame_len_bytes < HEADER_LEN || self.max_frame_len_bytes as u64 > len {
            return Err(ArchiveError::Config(format!(
                "maximum frame length {} must lie between {HEADER_LEN} and the segment length {len}",
                self.max_frame_len_bytes
            )));
        }
        Ok(())
    }
}

/// What [`Log::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// First position of the log.
    pub start_position: u64,
    /// Position after the last valid frame: where the next append goes.
    pub append_position: u64,
    /// Term of the last frame (0 for an empty log).
    pub last_term: u64,
    /// Non-zero bytes after the last valid frame that were zeroed.
    pub truncated_bytes: u64,
    /// Segment files after the last valid frame that were deleted.
    pub discarded_segments: usize,
    /// Why the scan stopped where it did (`None`: clean end of the log).
    pub stop_reason: Option<String>,
}

/// What [`Log::purge_below`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogPurge {
    /// Segment files deleted.
    pub segments_removed: usize,
    /// Bytes of segment files deleted.
    pub bytes_removed: u64,
    /// The log's start position afterwards.
    pub start_position: u64,
}

/// The background thread that creates, reserves and pre-faults the next
/// segment (`tandem-segment-prep`).
///
/// It must never slow the append path down, which runs on a busy-spinning
/// thread on small machines. So it runs at the lowest scheduling priority
/// (nice 19: it gets a core only when no ordinary thread wants it), faults the
/// pages in small chunks (each releases the process's mmap lock, see
/// `segment`), and sleeps as long after each chunk as the chunk took (at most
/// half a core, and the zeroing of 64 MiB does not flood the caches at once).
///
/// It also keeps off the CPU the requesting thread ran on when it asked, where
/// the process may run on another. Nice 19 alone was not enough: under EEVDF a
/// preparer waking from its pacing sleep is eligible before a thread that spins
/// without ever sleeping, and on a quiet machine a timer tick gave it the
/// spinning thread's CPU for 22 ms at a segment roll while the other CPU was
/// idle (perf `sched:sched_switch`, issue #7). Once the log waits for the
/// segment, the preparer stops sleeping and gets every CPU back (the waiting
/// thread restores its affinity: kept on a busy CPU at nice 19, it might not
/// run soon enough to do it itself).
struct Preparer {
    requests: Option<mpsc::Sender<(u64, Option<usize>)>>,
    ready: mpsc::Receiver<(u64, Result<Segment>)>,
    /// Set while the log is blocked waiting for the segment being prepared.
    urgent: Arc<AtomicBool>,
    /// The preparer thread's id and the CPUs it may use, once it has started.
    placement: Arc<OnceLock<(libc::pid_t, Vec<usize>)>>,
    thread: Option<JoinHandle<()>>,
}

/// Nice value of the segment preparer thread (the lowest priority).
const PREPARER_NICE: libc::c_int = 19;

impl Preparer {
    fn spawn(dir: PathBuf, len_bytes: u64, prefault: bool) -> Result<Preparer> {
        let (req_tx, req_rx) = mpsc::channel::<(u64, Option<usize>)>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let urgent = Arc::new(AtomicBool::new(false));
        let hurry = Arc::clone(&urgent);
        let placement = Arc::new(OnceLock::new());
        let placed = Arc::clone(&placement);
        let thread = std::thread::Builder::new()
            .name("tandem-segment-prep".into())
            .spawn(move || {
                lower_thread_priority(PREPARER_NICE);
                let allowed = thread_cpus();
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                let _ = placed.set((tid, allowed.clone()));
                let mut pace = |took: Duration| {
                    if !hurry.load(Ordering::Acquire) {
                        std::thread::sleep(took);
                    }
                };
                for (base, requester_cpu) in req_rx {
                    let mut confined = !hurry.load(Ordering::Acquire)
                        && requester_cpu
                            .and_then(|cpu| cpus_without(&allowed, cpu))
                            .is_some_and(|cpus| set_thread_cpus(0, &cpus));
                    if confined && hurry.load(Ordering::Acquire) {
                        // The log began to wait (and widened us) just before we narrowed.
                        confined = !set_thread_cpus(0, &allowed);
                    }
                    let result = Segment::create(&dir, base, len_bytes, prefault, &mut pace);
                    if confined {
                        set_thread_cpus(0, &allowed);
                    }
                    if ready_tx.send((base, result)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| ArchiveError::io("spawn segment preparer", PathBuf::new(), e))?;
        Ok(Preparer {
            requests: Some(req_tx),
            ready: ready_rx,
            urgent,
            placement,
            thread: Some(thread),
        })
    }

    /// Waits for the segment being prepared, telling the preparer to hurry.
    fn wait(&self) -> std::result::Result<(u64, Result<Segment>), mpsc::RecvError> {
        let ready = match self.ready.try_recv() {
            Ok(ready) => Ok(ready),
            Err(_) => {
                self.hurry();
                self.ready.recv()
            }
        };
        self.urgent.store(false, Ordering::Release);
        ready
    }

    /// Tells the preparer to stop pacing the segment it prepares now (the log
    /// needs it at once).
    fn hurry(&self) {
        self.urgent.store(true, Ordering::Release);
        if let Some((tid, cpus)) = self.placement.get() {
            set_thread_cpus(*tid, cpus);
        }
    }
}

/// The CPUs the calling thread may run on (empty if they cannot be read).
fn thread_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes
    // into `set`, a live local; pid 0 is the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE, the size of `set`.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// `allowed` without `cpu`, if `cpu` is one of them and at least one other
/// remains.
fn cpus_without(allowed: &[usize], cpu: usize) -> Option<Vec<usize>> {
    let rest: Vec<usize> = allowed.iter().copied().filter(|&c| c != cpu).collect();
    (rest.len() < allowed.len() && !rest.is_empty()).then_some(rest)
}

/// Restricts thread `tid` (0: the calling thread) to `cpus`; returns whether it
/// was done.
fn set_thread_cpus(tid: libc::pid_t, cpus: &[usize]) -> bool {
    if cpus.is_empty() {
        return false;
    }
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: CPU_SET writes the bit of `cpu`, below CPU_SETSIZE (the ids
        // come from `thread_cpus`), in a live local set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity reads `size_of::<cpu_set_t>()` bytes from a
    // live local; `tid` is a thread of this process or 0 (the calling thread).
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Gives the calling thread the nice value `nice` (Linux: a thread's own
/// priority). Best effort: a refusal leaves the thread as it was.
fn lower_thread_priority(nice: libc::c_int) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority only reads its integer arguments; on Linux
    // PRIO_PROCESS with a thread id changes that thread alone.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc != 0 {
        tracing::debug!(
            nice,
            error = %std::io::Error::last_os_error(),
            "segment preparer keeps its priority"
        );
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.requests = None;
        self.hurry();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The segmented, memory-mapped log. One writer per directory.
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segment_shift: u32,
    start_position: u64,
    append_position: u64,
    durable_position: u64,
    last_term: u64,
    /// `(term, position of the first frame of that term)`, ascending.
    terms: Vec<(u64, u64)>,
    /// Contiguous segments from the one holding `start_position`.
    segments: VecDeque<Segment>,
    preparer: Option<Preparer>,
    /// Base position of the segment being prepared, if any.
    pending: Option<u64>,
    /// Positions recently proven to be frame boundaries (see [`BoundaryHints`]).
    hints: BoundaryHints,
}

/// Number of [`BoundaryHints`] slots.
const BOUNDARY_HINT_SLOTS: usize = 16;
/// A slot no position maps to (logs never reach it).
const NO_HINT: u64 = u64::MAX;

/// A small direct-mapped cache of positions known to be frame boundaries in the log as it
/// is now: the end of each frame a reader walked, of each run [`Log::raw_frames`] returned,
/// and every position [`Log::check_boundary`] verified.
///
/// Reading from a position starts by proving it is a frame boundary: decoding the frame
/// there and checking its CRC, which covers the position. The node's readers (the apply
/// cursor, one replication cursor per follower) start each read where their previous one
/// ended, so without the cache every committed frame had its CRC computed a second time
/// when applied (perf: ~15 % of the driving thread in `--mode throughput`). A boundary stays
/// one until the log is truncated or reset, which clear the cache (they take `&mut self`, so
/// no reader is active). Relaxed atomics keep [`Log`] `Sync`; a lost or evicted hint only
/// costs the CRC again.
#[derive(Debug)]
struct BoundaryHints([AtomicU64; BOUNDARY_HINT_SLOTS]);

impl BoundaryHints {
    fn new() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(NO_HINT)))
    }

    #[inline]
    fn slot(&self, position: u64) -> &AtomicU64 {
        &self.0[(position / frame::FRAME_ALIGNMENT as u64) as usize % BOUNDARY_HINT_SLOTS]
    }

    #[inline]
    fn note(&self, position: u64) {
        self.slot(position).store(position, Ordering::Relaxed);
    }

    #[inline]
    fn knows(&self, position: u64) -> bool {
        self.slot(position).load(Ordering::Relaxed) == position
    }

    fn clear(&mut self) {
        for slot in &mut self.0 {
            *slot.get_mut() = NO_HINT;
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("start_position", &self.start_position)
            .field("append_position", &self.append_position)
            .field("durable_position", &self.durable_position)
            .field("last_term", &self.last_term)
            .field("segments", &self.segments.len())
            .finish()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir` and recovers it.
    ///
    /// `durable_position` is the position the caller knows was durable (the
    /// commit position it recorded): an invalid or missing frame below it is
    /// corruption, not a torn tail.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] for a bad configuration or one whose segment
    /// length differs from the directory's; [`ArchiveError::Corrupted`] when the
    /// valid log ends below `durable_position` or a file is damaged;
    /// [`ArchiveError::Io`] for I/O failures.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        durable_position: u64,
    ) -> Result<(Log, RecoveryReport)> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(|e| ArchiveError::io("create log directory", dir, e))?;
        let start_position = match read_meta(dir)? {
            Some((segment_len, start)) => {
                if segment_len != config.segment_len_bytes {
                    return Err(ArchiveError::Config(format!(
                        "{} was written with segment length {segment_len}, not {}",
                        dir.join(META_FILE).display(),
                        config.segment_len_bytes
                    )));
                }
                start
            }
            None => {
                write_meta(dir, config.segment_len_bytes, 0)?;
                0
            }
        };
        let mut log = Log {
            dir: dir.to_path_buf(),
            segment_shift: config.segment_len_bytes.trailing_zeros(),
            config,
            start_position,
            append_position: start_position,
            durable_position: start_position,
            last_term: 0,
            terms: Vec::new(),
            segments: VecDeque::new(),
            preparer: None,
            pending: None,
            hints: BoundaryHints::new(),
        };
        let report = log.recover(durable_position)?;
        if log.config.prepare_next_segment {
            log.preparer = Some(Preparer::spawn(
                log.dir.clone(),
                log.config.segment_len_bytes,
                log.config.prefault,
            )?);
            let next = log.segments.back().map_or_else(
                || log.segment_base(log.start_position),
                |s| s.end_position(),
            );
            if log.segments.is_empty()
                && let Some(p) = &log.preparer
            {
                // The first append needs this segment: no pacing.
                p.hurry();
            }
            log.request_preparation(next);
        }
        Ok((log, report))
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration the log runs with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// First position of the log (positions below were purged or precede an
    /// installed snapshot).
    pub fn start_position(&self) -> u64 {
        self.start_position
    }

    /// Position where the next frame will be appended.
    pub fn append_position(&self) -> u64 {
        self.append_position
    }

    /// Position up to which the log is durable under its [`Durability`]. Under
    /// [`Durability::None`] this is the append position: the page cache is the
    /// durability boundary by policy.
    pub fn durable_position(&self) -> u64 {
        match self.config.durability {
            Durability::None => self.append_position,
            Durability::Batch | Durability::Every => self.durable_position,
        }
    }

    /// Term of the last frame in the log (or set by [`Log::reset`]).
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// The term of the frame holding the byte at `position`, if that byte lies
    /// within `[start_position, append_position)`. The term of the frame that
    /// *ends* at `p` is `term_at(p - 1)`.
    pub fn term_at(&self, position: u64) -> Option<u64> {
        if position < self.start_position || position >= self.append_position {
            return None;
        }
        let idx = self.terms.partition_point(|&(_, start)| start <= position);
        (idx > 0).then(|| self.terms[idx - 1].0)
    }

    /// `(term, first position of the term)` for every term in the log, ascending.
    pub fn term_starts(&self) -> &[(u64, u64)] {
        &self.terms
    }

    /// Number of segment files in use.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base positions and paths of the segment files in use, ascending.
    pub fn segments(&self) -> impl Iterator<Item = (u64, &Path)> + '_ {
        self.segments
            .iter()
            .map(|s| (s.base_position, s.path.as_path()))
    }

    #[inline]
    fn segment_base(&self, position: u64) -> u64 {
        position & !(self.config.segment_len_bytes - 1)
    }

    #[inline]
    fn segment_index(&self, position: u64) -> Option<usize> {
        let first = self.segments.front()?.base_position;
        if position < first {
            return None;
        }
        let idx = ((position - first) >> self.segment_shift) as usize;
        (idx < self.segments.len()).then_some(idx)
    }

    // ---------------------------------------------------------------- append

    /// Claims space for a frame with `payload_len` bytes of payload. Write the
    /// payload through [`Claim::payload_mut`], then [`Claim::commit`]; a claim
    /// dropped without commit is zeroed and leaves the log unchanged.
    ///
    /// # Panics
    /// If `header.frame_type` is the padding type or `header.term` is lower
    /// than the last term (both are bugs of the caller).
    ///
    /// # Errors
    /// [`ArchiveError::FrameTooLong`] above the maximum frame length;
    /// [`ArchiveError::Reserve`] when a new segment cannot be created.
    pub fn claim(&mut self, header: FrameHeader, payload_len: usize) -> Result<Claim<'_>> {
        self.check_local_header(&header);
        let frame_len = HEADER_LEN + payload_len;
        if frame_len > self.config.max_frame_len_bytes {
            return Err(ArchiveError::FrameTooLong {
                len_bytes: frame_len,
                max_bytes: self.config.max_frame_len_bytes,
            });
        }
        let position = self.reserve(align_frame_len(frame_len))?;
        Ok(Claim {
            from: self.append_position,
            log: self,
            position,
            frame_len,
            header,
            committed: false,
        })
    }

    /// Appends one frame and returns the new append position.
    ///
    /// # Panics
    /// As [`Log::claim`].
    ///
    /// # Errors
    /// As [`Log::claim`], plus sync failures under [`Durability::Every`].
    pub fn append(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<u64> {
        let mut claim = self.claim(*header, payload.len())?;
        claim.payload_mut().copy_from_slice(payload);
        claim.commit()
    }

    /// Appends several frames and syncs once (under [`Durability::Every`])
    /// at the end. Returns the new append position. Frames appended before an
    /// error stay appended.
    ///
    /// # Errors
    /// As [`Log::append`].
    pub fn append_batch<'p, I>(&mut self, frames: I) -> Result<u64>
    where
        I: IntoIterator<Item = (FrameHeader, &'p [u8])>,
    {
        let from = self.append_position;
        for (header, payload) in frames {
            let mut claim = self.claim(header, payload.len())?;
            claim.payload_mut().copy_from_slice(payload);
            claim.seal();
        }
        if self.config.durability == Durability::Every {
            self.sync_between(from, self.append_position)?;
        }
        Ok(self.append_position)
    }

    /// Appends already encoded frames (aligned, back to back, as produced by
    /// [`crate::encode_frame`] padded to 8 bytes or as returned by
    /// [`Log::raw_frames`] on another member). Each frame's checksum must match
    /// the position it lands at here, which proves both logs agree on where it
    /// belongs. Returns the new append position.
    ///
    /// # Errors
    /// [`ArchiveError::InvalidFrame`] for a frame that does not validate at its
    /// position (nothing of it, nor of the frames after it, is appended);
    /// [`ArchiveError::Reserve`] when a new segment cannot be created.
    pub fn append_encoded(&mut self, mut bytes: &[u8]) -> Result<u64> {
        let from = self.append_position;
        while !bytes.is_empty() {
            if bytes.len() < HEADER_LEN {
                return Err(self.invalid_frame("trailing bytes shorter than a frame header"));
            }
            let frame_len = frame::read_frame_len(bytes) as usize;
            if frame_len < HEADER_LEN {
                return Err(self.invalid_frame("frame length shorter than the header"));
            }
            if frame_len > self.config.max_frame_len_bytes {
                return Err(ArchiveError::FrameTooLong {
                    len_bytes: frame_len,
                    max_bytes: self.config.max_frame_len_bytes,
                });
            }
            let aligned = align_frame_len(frame_len);
            if aligned > bytes.len() && frame_len != bytes.len() {
                return Err(self.invalid_frame("frame extends past the end of the buffer"));
            }
            let position = self.reserve(aligned)?;
            let max_frame_len = self.config.max_frame_len_bytes;
            let last_term = self.last_term;
            let idx = self
                .segment_index(position)
                .expect("reserved segment is mapped");
            let seg = &mut self.segments[idx];
            let off = (position - seg.base_position) as usize;
            let slot = &mut seg.map[off..off + aligned];
            slot[..frame_len].copy_from_slice(&bytes[..frame_len]);
            let verdict = match frame::decode(&seg.map[off..], position, max_frame_len) {
                Decoded::Frame(f) if f.header.term < last_term => {
                    Err("term lower than the log's last term")
                }
                Decoded::Frame(f) => Ok(f.header.term),
                Decoded::Padding(_) => Err("padding frames are not replicated"),
                Decoded::End => Err("frame length is zero"),
                Decoded::Invalid(reason) => Err(reason),
            };
            match verdict {
                Ok(term) => {
                    self.finish_append(position, aligned, term);
                    bytes = &bytes[aligned.min(bytes.len())..];
                }
                Err(reason) => {
                    self.segments[idx].map[off..off + aligned].fill(0);
                    return Err(ArchiveError::InvalidFrame {
                        position,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        if self.config.durability == Durability::Every {
            self.sync_between(from, self.append_position)?;
        }
        Ok(self.append_position)
    }

    fn invalid_frame(&self, reason: &str) -> ArchiveError {
        ArchiveError::InvalidFrame {
            position: self.append_position,
            reason: reason.to_string(),
        }
    }

    fn check_local_header(&self, header: &FrameHeader) {
        assert!(
            header.frame_type != PADDING_FRAME_TYPE,
            "frame type {PADDING_FRAME_TYPE} is reserved for padding"
        );
        assert!(
            header.term >= self.last_term,
            "appending term {} after term {} at position {}",
            header.term,
            self.last_term,
            self.append_position
        );
    }

    #[inline]
    fn note_term(&mut self, term: u64, position: u64) {
        if self.terms.last().is_none_or(|&(t, _)| t != term) {
            debug_assert!(term >= self.last_term);
            self.terms.push((term, position));
        }
        self.last_term = term;
    }

    /// Makes room for `aligned_len` bytes at the append position, closing the
    /// current segment with padding and rolling to the next one if the frame
    /// does not fit. Returns the position the frame goes to.
    fn reserve(&mut self, aligned_len: usize) -> Result<u64> {
        let seg_len = self.config.segment_len_bytes;
        let position = self.append_position;
        let offset = position & (seg_len - 1);
        let remaining = seg_len - offset;
        if offset != 0 && aligned_len as u64 > remaining {
            // The frame goes to the next segment; the padding that closes this
            // one is written when the frame is committed (`finish_append`), so an
            // abandoned or refused frame leaves the log exactly as it was.
            let next_base = position + remaining;
            self.ensure_segment(next_base)?;
            Ok(next_base)
        } else {
            self.ensure_segment(self.segment_base(position))?;
            Ok(position)
        }
    }

    /// Makes the frame of `aligned_len` bytes at `position` (returned by
    /// `reserve` and already sealed) part of the log: closes the previous
    /// segment with padding if the frame rolled over, advances the append
    /// position and the term index.
    fn finish_append(&mut self, position: u64, aligned_len: usize, term: u64) {
        let pad_at = self.append_position;
        if position != pad_at {
            let remaining = position - pad_at;
            debug_assert_eq!(
                position,
                self.segment_base(pad_at) + self.config.segment_len_bytes
            );
            if remaining >= HEADER_LEN as u64 {
                let idx = self
                    .segment_index(pad_at)
                    .expect("current segment is mapped");
                let seg = &mut self.segments[idx];
                let off = (pad_at - seg.base_position) as usize;
                let pad = &mut seg.map[off..off + HEADER_LEN];
                frame::write_header(
                    pad,
                    &FrameHeader {
                        frame_type: PADDING_FRAME_TYPE,
                        ..FrameHeader::default()
                    },
                );
                frame::seal(pad, remaining as u32, pad_at);
            }
        }
        self.note_term(term, position);
        self.append_position = position + aligned_len as u64;
    }

    /// Makes sure the segment starting at `base` is mapped (it is the current
    /// one or the next one).
    fn ensure_segment(&mut self, base: u64) -> Result<()> {
        if self
            .segments
            .back()
            .is_some_and(|s| s.base_position >= base)
        {
            debug_assert!(self.segment_index(base).is_some());
            return Ok(());
        }
        let expected = match self.segments.back() {
            Some(last) => last.end_position(),
            None => self.segment_base(self.start_position),
        };
        assert_eq!(base, expected, "segments must be added in order");
        let segment = self.take_prepared(base)?;
        self.segments.push_back(segment);
        self.request_preparation(base + self.config.segment_len_bytes);
        Ok(())
    }

    fn take_prepared(&mut self, base: u64) -> Result<Segment> {
        if let (Some(p), Some(pending)) = (&self.preparer, self.pending.take()) {
            match p.wait() {
                Ok((b, result)) => {
                    debug_assert_eq!(b, pending);
                    match result {
                        Ok(segment) if b == base => return Ok(segment),
                        Ok(stale) => {
                            let path = stale.path.clone();
                            drop(stale);
                            let _ = fs::remove_file(path);
                        }
                        // A preparation that failed (a full disk, say) is retried now rather
                        // than reported: the condition may have cleared since, and if not the
                        // synchronous attempt below reports it afresh.
                        Err(_) => {}
                    }
                }
                Err(_) => {
                    self.preparer = None;
                }
            }
        }
        Segment::create(
            &self.dir,
            base,
            self.config.segment_len_bytes,
            self.config.prefault,
            &mut |_| {},
        )
    }

    fn request_preparation(&mut self, base: u64) {
        if self.pending.is_some() {
            return;
        }
        // SAFETY: sched_getcpu has no preconditions (-1 when unknown).
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).ok();
        if let Some(p) = &self.preparer
            && let Some(tx) = &p.requests
            && tx.send((base, cpu)).is_ok()
        {
            self.pending = Some(base);
        }
    }

    // ---------------------------------------------------------- durability

    /// Makes everything appended so far durable (msync of the dirty range).
    /// A no-op under [`Durability::None`].
    ///
    /// # Errors
    /// [`ArchiveError::Io`] when the sync fails.
    pub fn sync(&mut self) -> Result<u64> {
        if self.config.durability != Durability::None
            && self.durable_position < self.append_position
        {
            self.sync_between(self.durable_position, self.append_position)?;
        }
        Ok(self.durable_position())
    }

    fn sync_between(&mut self, from: u64, to: u64) -> Result<()> {
        self.sync_range(from, to)?;
        if to > self.durable_position {
            self.durable_position = to;
        }
        Ok(())
    }

    fn sync_range(&self, from: u64, to: u64) -> Result<()> {
        let mut pos = from.max(self.segments.front().map_or(to, |s| s.base_position));
        while pos < to {
            let Some(idx) = self.segment_index(pos) else {
                break;
            };
            let seg = &self.segments[idx];
            let end = to.min(seg.end_position());
            seg.sync_range(
                (pos - seg.base_position) as usize,
                (end - seg.base_position) as usize,
            )?;
            pos = end;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- read

    /// Iterates the frames in `[from, limit)`, zero copy. `from` must be a frame
    /// boundary within the log; `limit` is clamped to the append position and
    /// should be a frame boundary (the commit position).
    ///
    /// # Errors
    /// [`ArchiveError::BelowLogStart`], [`ArchiveError::BeyondAppendPosition`],
    /// or [`ArchiveError::NotFrameBoundary`] when no valid frame starts at `from`.
    pub fn frames(&self, from: u64, limit: u64) -> Result<Frames<'_>> {
        let limit = limit.min(self.append_position);
        self.check_boundary(from)?;
        Ok(Frames {
            log: self,
            position: from,
            limit,
            seg_base: 0,
            seg_bytes: &[],
        })
    }

    /// Reads and validates the single frame at `position`.
    ///
    /// # Errors
    /// As [`Log::frames`]; also [`ArchiveError::BeyondAppendPosition`] when
    /// `position` is the append position (no frame there yet).
    pub fn frame_at(&self, position: u64) -> Result<Frame<'_>> {
        self.frames(position, self.append_position)?.next().ok_or(
            ArchiveError::BeyondAppendPosition {
                position,
                append_position: self.append_position,
            },
        )
    }

    /// The encoded bytes of whole frames from `from`, contiguous in one
    /// segment, at most `max_len` bytes (but at least one frame) and not past
    /// `limit`: what a leader ships to a follower's [`Log::append_encoded`].
    /// Returns an empty slice at `limit`.
    ///
    /// # Errors
    /// As [`Log::frames`].
    pub fn raw_frames(&self, from: u64, limit: u64, max_len: usize) -> Result<&[u8]> {
        let limit = limit.min(self.append_position);
        self.check_boundary(from)?;
        let mut position = from;
        // Skip padding so the slice starts on a data frame.
        loop {
            if position >= limit {
                return Ok(&[]);
            }
            let idx = self
                .segment_index(position)
                .expect("position within log is mapped");
            let seg = &self.segments[idx];
            let off = (position - seg.base_position) as usize;
            match frame::decode_trusted(&seg.map[off..], position) {
                Some(Err(pad)) => position += pad,
                Some(Ok(_)) => break,
                None => return Ok(&[]),
            }
        }
        let idx = self
            .segment_index(position)
            .expect("position within log is mapped");
        let seg = &self.segments[idx];
        let start_off = (position - seg.base_position) as usize;
        let mut end = position;
        while end < limit {
            let off = (end - seg.base_position) as usize;
            if off >= seg.map.len() {
                break;
            }
            match frame::decode_trusted(&seg.map[off..], end) {
                Some(Ok(f)) => {
                    let next = f.next_position();
                    if end > position && (next - position) as usize > max_len {
                        break;
                    }
                    end = next;
                }
                _ => break,
            }
        }
        self.hints.note(end);
        Ok(&seg.map[start_off..(end - seg.base_position) as usize])
    }

    fn check_boundary(&self, position: u64) -> Result<()> {
        if position < self.start_position {
            return Err(ArchiveError::BelowLogStart {
                position,
                start_position: self.start_position,
            });
        }
        if position > self.append_position {
            return Err(ArchiveError::BeyondAppendPosition {
                position,
                append_position: self.append_position,
            });
        }
        if position == self.append_position || self.hints.knows(position) {
            return Ok(());
        }
        let idx = self
            .segment_index(position)
            .expect("position within log is mapped");
        let seg = &self.segments[idx];
        let off = (position - seg.base_position) as usize;
        if !position.is_multiple_of(frame::FRAME_ALIGNMENT as u64) {
            return Err(ArchiveError::NotFrameBoundary {
                file: seg.path.clone(),
                position,
            });
        }
        match frame::decode(&seg.map[off..], position, self.config.max_frame_len_bytes) {
            Decoded::Frame(_) | Decoded::Padding(_) => {
                self.hints.note(position);
                Ok(())
            }
            Decoded::End | Decoded::Invalid(_) => Err(ArchiveError::NotFrameBoundary {
                file: seg.path.clone(),
                position,
            }),
        }
    }

    /// Validates every frame in `[from, limit)` including checksums (what
    /// recovery does) and returns the number of frames and payload bytes.
    ///
    /// # Errors
    /// As [`Log::frames`]; [`ArchiveError::Corrupted`] at the first frame that
    /// does not validate.
    pub fn verify(&self, from: u64, limit: u64) -> Result<(u64, u64)> {
        self.check_boundary(from)?;
        let limit = limit.min(self.append_position);
        let (mut frames, mut bytes) = (0u64, 0u64);
        let mut position = from;
        let mut last_term = 0;
        while position < limit {
            let idx = self
                .segment_index(position)
                .expect("position within log is mapped");
            let seg = &self.segments[idx];
            let seg_end = seg.end_position().min(limit);
            let map = &seg.map[..];
            while position < seg_end {
                let off = (position - seg.base_position) as usize;
                match frame::decode(&map[off..], position, self.config.max_frame_len_bytes) {
                    Decoded::Frame(f) if f.header.term >= last_term => {
                        last_term = f.header.term;
                        frames += 1;
                        bytes += f.payload.len() as u64;
                        position = f.next_position();
                    }
                    Decoded::Frame(_) => {
                        return Err(ArchiveError::corrupted(
                            &seg.path,
                            position,
                            "term decreased",
                        ));
                    }
                    Decoded::Padding(n) => position += n,
                    Decoded::End => {
                        return Err(ArchiveError::corrupted(
                            &seg.path,
                            position,
                            "log ends early",
                        ));
                    }
                    Decoded::Invalid(reason) => {
                        return Err(ArchiveError::corrupted(&seg.path, position, reason));
                    }
                }
            }
        }
        Ok((frames, bytes))
    }

    // ------------------------------------------------------------ truncate

    /// Discards every frame from `position` on and zeroes the discarded bytes
    /// (synced under `batch`/`every`), so no discarded frame can be read back,
    /// even after a restart. Later segment files are deleted.
    ///
    /// # Panics
    /// If `position < commit_position`: discarding committed data is a bug.
    ///
    /// # Errors
    /// [`ArchiveError::NotFrameBoundary`], [`ArchiveError::BelowLogStart`],
    /// [`ArchiveError::BeyondAppendPosition`], or I/O errors.
    pub fn truncate(&mut self, position: u64, commit_position: u64) -> Result<()> {
        assert!(
            position >= commit_position,
            "truncate at {position} would discard committed data below {commit_position} in {}",
            self.dir.display()
        );
        self.check_boundary(position)?;
        if position == self.append_position {
            return Ok(());
        }
        self.hints.clear();
        self.discard_from(position)?;
        self.append_position = position;
        self.durable_position = self.durable_position.min(position);
        let keep = self.terms.partition_point(|&(_, start)| start < position);
        self.terms.truncate(keep);
        self.last_term = self.terms.last().map_or(0, |&(t, _)| t);
        Ok(())
    }

    /// Zeroes `[position, end of written data)` and deletes later segments.
    fn discard_from(&mut self, position: u64) -> Result<()> {
        let sync = self.config.durability != Durability::None;
        if let Some(idx) = self.segment_index(position) {
            let seg = &mut self.segments[idx];
            let off = (position - seg.base_position) as usize;
            let written_end =
                (self.append_position.min(seg.end_position()) - seg.base_position) as usize;
            if written_end > off {
                seg.map[off..written_end].fill(0);
                if sync {
                    seg.sync_range(off, written_end)?;
                }
            }
            let removed: Vec<Segment> = self.segments.drain(idx + 1..).collect();
            self.delete_segments(removed)?;
        }
        Ok(())
    }

    fn delete_segments(&self, removed: Vec<Segment>) -> Result<u64> {
        let mut bytes = 0;
        let any = !removed.is_empty();
        for seg in removed {
            bytes += seg.len();
            let path = seg.path.clone();
            drop(seg);
            fs::remove_file(&path).map_err(|e| ArchiveError::io("delete segment", &path, e))?;
        }
        if any {
            segment::sync_dir(&self.dir)?;
        }
        Ok(bytes)
    }

    // --------------------------------------------------------------- purge

    /// Deletes the segments lying wholly below `position` (never the one the
    /// append position is in) and persists the new start position first.
    /// Retention (which positions must be kept) is the caller's decision; see
    /// `Archive::purge_segments`.
    ///
    /// # Errors
    /// I/O errors writing `log.meta` or deleting files.
    pub fn purge_below(&mut self, position: u64) -> Result<LogPurge> {
        let position = position.min(self.append_position);
        let mut count = 0;
        while count + 1 < self.segments.len() && self.segments[count].end_position() <= position {
            count += 1;
        }
        if count == 0 {
            return Ok(LogPurge {
                start_position: self.start_position,
                ..LogPurge::default()
            });
        }
        let new_start = self.segments[count].base_position.max(self.start_position);
        write_meta(&self.dir, self.config.segment_len_bytes, new_start)?;
        self.start_position = new_start;
        let removed: Vec<Segment> = self.segments.drain(..count).collect();
        let bytes_removed = self.delete_segments(removed)?;
        // Keep the term entry that covers the new start.
        let first_kept = self
            .terms
            .partition_point(|&(_, start)| start <= new_start)
            .saturating_sub(1);
        self.terms.drain(..first_kept);
        Ok(LogPurge {
            segments_removed: count,
            bytes_removed,
            start_position: new_start,
        })
    }

    /// Discards the whole log and restarts it empty at `position` with
    /// `last_term` (after a snapshot at `position` was installed from another
    /// member). `position` must be 8-byte aligned.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] for a misaligned position; I/O errors.
    pub fn reset(&mut self, position: u64, last_term: u64) -> Result<()> {
        if !position.is_multiple_of(frame::FRAME_ALIGNMENT as u64) {
            return Err(ArchiveError::Config(format!(
                "log start {position} is not 8-byte aligned"
            )));
        }
        // The new start is made durable first: a crash before the segments are
        // gone leaves old bytes only at or above the new start, which recovery
        // validates like any other tail.
        write_meta(&self.dir, self.config.segment_len_bytes, position)?;
        let removed: Vec<Segment> = self.segments.drain(..).collect();
        self.delete_segments(removed)?;
        self.start_position = position;
        self.append_position = position;
        self.durable_position = position;
        self.last_term = last_term;
        self.terms.clear();
        self.hints.clear();
        Ok(())
    }

    // ------------------------------------------------------------ recovery

    fn recover(&mut self, durable_position: u64) -> Result<RecoveryReport> {
        let seg_len = self.config.segment_len_bytes;
        let mut files = list_segment_files(&self.dir)?;
        let first_base = self.segment_base(self.start_position);
        // Leftovers of an interrupted purge or reset.
        for path in files.range(..first_base).map(|(_, p)| p) {
            fs::remove_file(path)
                .map_err(|e| ArchiveError::io("delete purged segment", path, e))?;
        }
        files = files.split_off(&first_base);

        let mut position = self.start_position;
        // End of the last data frame: the log never ends on padding (padding is
        // written only together with the frame that follows it).
        let mut frames_end = self.start_position;
        let mut stop_reason: Option<String> = None;
        let mut stop_file: Option<PathBuf> = None;
        // Where the frame that stopped the scan lies (past `frames_end` when segment padding
        // came between them).
        let mut stop_position: Option<u64> = None;
        'segments: loop {
            let base = self.segment_base(position);
            if !files.contains_key(&base) {
                if position != base {
                    // A frame ended mid-segment and the segment file is missing.
                    stop_reason = Some("segment file missing".into());
                }
                break;
            }
            let segment = match Segment::open(&self.dir, base, seg_len) {
                Ok(s) => s,
                Err(e) if position >= durable_position && position == base => {
                    // A segment whose creation was interrupted: not part of the log.
                    stop_reason = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(e),
            };
            files.remove(&base);
            self.segments.push_back(segment);
            let seg = self.segments.back().expect("just pushed");
            loop {
                let off = (position - base) as usize;
                if off as u64 == seg_len {
                    continue 'segments;
                }
                match frame::decode(&seg.map[off..], position, self.config.max_frame_len_bytes) {
                    Decoded::Frame(f) => {
                        if f.header.term < self.last_term {
                            stop_reason = Some(format!(
                                "term {} after term {}",
                                f.header.term, self.last_term
                            ));
                            stop_file = Some(seg.path.clone());
                            stop_position = Some(position);
                            break 'segments;
                        }
                        let (term, next) = (f.header.term, f.next_position());
                        if self.terms.last().is_none_or(|&(t, _)| t != term) {
                            self.terms.push((term, position));
                        }
                        self.last_term = term;
                        position = next;
                        frames_end = next;
                    }
                    Decoded::Padding(n) => {
                        position += n;
                        continue 'segments;
                    }
                    Decoded::End => break 'segments,
                    Decoded::Invalid(reason) => {
                        stop_reason = Some(reason.to_string());
                        stop_file = Some(seg.path.clone());
                        stop_position = Some(position);
                        break 'segments;
                    }
                }
            }
        }

        position = frames_end;
        if position < durable_position {
            let file = stop_file.unwrap_or_else(|| {
                self.dir
                    .join(segment::segment_file_name(self.segment_base(position)))
            });
            let reason = stop_reason.unwrap_or_else(|| "log ends".into());
            return Err(ArchiveError::corrupted(
                file,
                stop_position.unwrap_or(position),
                format!("{reason}, below the durable position {durable_position}"),
            ));
        }

        // Zero the invalid tail of the last segment, delete everything after.
        let mut truncated_bytes = 0;
        if let Some(idx) = self.segment_index(position) {
            let seg = &mut self.segments[idx];
            let off = (position - seg.base_position) as usize;
            let tail = &mut seg.map[off..];
            if let Some(last) = last_non_zero(tail) {
                tail[..=last].fill(0);
                seg.sync_range(off, off + last + 1)?;
                truncated_bytes = last as u64 + 1;
            }
            let later: Vec<Segment> = self.segments.drain(idx + 1..).collect();
            self.delete_segments(later)?;
        }
        let discarded_segments = files.len();
        for path in files.values() {
            fs::remove_file(path)
                .map_err(|e| ArchiveError::io("delete segment after log end", path, e))?;
        }
        if discarded_segments > 0 {
            segment::sync_dir(&self.dir)?;
        }
        self.append_position = position;
        self.durable_position = position;
        Ok(RecoveryReport {
            start_position: self.start_position,
            append_position: position,
            last_term: self.last_term,
            truncated_bytes,
            discarded_segments,
            stop_reason: if truncated_bytes > 0 || discarded_segments > 0 {
                stop_reason
            } else {
                None
            },
        })
    }
}

/// Index of the last non-zero byte, scanning eight bytes at a time.
fn last_non_zero(bytes: &[u8]) -> Option<usize> {
    let (head, words) = bytes.split_at(bytes.len() % 8);
    for (i, chunk) in words.chunks_exact(8).enumerate().rev() {
        let word = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
        if word != 0 {
            let base = head.len() + i * 8;
            return chunk.iter().rposition(|&b| b != 0).map(|j| base + j);
        }
    }
    head.iter().rposition(|&b| b != 0)
}

fn list_segment_files(dir: &Path) -> Result<std::collections::BTreeMap<u64, PathBuf>> {
    let mut files = std::collections::BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| ArchiveError::io("list log directory", dir, e))? {
        let entry = entry.map_err(|e| ArchiveError::io("list log directory", dir, e))?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_segment_file_name)
        {
            files.insert(base, entry.path());
        }
    }
    Ok(files)
}

fn read_meta(dir: &Path) -> Result<Option<(u64, u64)>> {
    let path = dir.join(META_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ArchiveError::io("read log meta", &path, e)),
    };
    if bytes.len() != META_LEN {
        return Err(ArchiveError::corrupted(
            &path,
            0,
            format!("{} bytes, expected {META_LEN}", bytes.len()),
        ));
    }
    if &bytes[0..8] != META_MAGIC {
        return Err(ArchiveError::corrupted(&path, 0, "bad magic"));
    }
    let crc = u32::from_le_bytes(bytes[32..36].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..32]) != crc {
        return Err(ArchiveError::corrupted(&path, 32, "checksum mismatch"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != META_VERSION {
        return Err(ArchiveError::corrupted(
            &path,
            8,
            format!("unknown version {version}"),
        ));
    }
    let segment_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    let start = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    if !start.is_multiple_of(frame::FRAME_ALIGNMENT as u64) {
        return Err(ArchiveError::corrupted(
            &path,
            24,
            format!("start position {start} not aligned"),
        ));
    }
    Ok(Some((segment_len, start)))
}

fn write_meta(dir: &Path, segment_len: u64, start: u64) -> Result<()> {
    let mut bytes = [0u8; META_LEN];
    bytes[0..8].copy_from_slice(META_MAGIC);
    bytes[8..12].copy_from_slice(&META_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&segment_len.to_le_bytes());
    bytes[24..32].copy_from_slice(&start.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..32]);
    bytes[32..36].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let path = dir.join(META_FILE);
    let mut f = fs::File::create(&tmp).map_err(|e| ArchiveError::io("create", &tmp, e))?;
    f.write_all(&bytes)
        .map_err(|e| ArchiveError::io("write", &tmp, e))?;
    f.sync_all()
        .map_err(|e| ArchiveError::io("fsync", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| ArchiveError::io("rename", &path, e))?;
    segment::sync_dir(dir)
}

/// Space claimed for one frame; see [`Log::claim`].
#[derive(Debug)]
pub struct Claim<'a> {
    log: &'a mut Log,
    /// The append position when the claim was made: a rolled-over frame also makes the
    /// padding between it and this position part of the log, which `Every` must sync too.
    from: u64,
    position: u64,
    frame_len: usize,
    header: FrameHeader,
    committed: bool,
}

impl Claim<'_> {
    /// Log position of the claimed frame.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The payload bytes to fill, in place in the mapping.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let idx = self
            .log
            .segment_index(self.position)
            .expect("claimed segment is mapped");
        let seg = &mut self.log.segments[idx];
        let off = (self.position - seg.base_position) as usize;
        &mut seg.map[off + HEADER_LEN..off + self.frame_len]
    }

    fn seal(&mut self) -> u64 {
        let idx = self
            .log
            .segment_index(self.position)
            .expect("claimed segment is mapped");
        let seg = &mut self.log.segments[idx];
        let off = (self.position - seg.base_position) as usize;
        let frame = &mut seg.map[off..off + self.frame_len];
        frame::write_header(frame, &self.header);
        frame::seal(frame, self.frame_len as u32, self.position);
        let aligned = align_frame_len(self.frame_len);
        self.log
            .finish_append(self.position, aligned, self.header.term);
        self.committed = true;
        self.position + aligned as u64
    }

    /// Seals the frame (header and checksum) and makes it part of the log;
    /// returns the new append position.
    ///
    /// # Errors
    /// Sync failures under [`Durability::Every`] (the frame stays appended).
    pub fn commit(mut self) -> Result<u64> {
        let from = self.from;
        let next = self.seal();
        if self.log.config.durability == Durability::Every {
            self.log.sync_between(from, next)?;
        }
        Ok(next)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let idx = self
                .log
                .segment_index(self.position)
                .expect("claimed segment is mapped");
            let seg = &mut self.log.segments[idx];
            let off = (self.position - seg.base_position) as usize;
            seg.map[off..off + align_frame_len(self.frame_len)].fill(0);
        }
    }
}

/// Iterator over frames; see [`Log::frames`].
#[derive(Debug)]
pub struct Frames<'a> {
    log: &'a Log,
    position: u64,
    limit: u64,
    /// The segment being read: its base position and bytes.
    seg_base: u64,
    seg_bytes: &'a [u8],
}

impl<'a> Frames<'a> {
    /// Position of the next frame the iterator would yield.
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Frame<'a>;

    fn next(&mut self) -> Option<Frame<'a>> {
        loop {
            if self.position >= self.limit {
                return None;
            }
            let mut off = self.position.wrapping_sub(self.seg_base);
            if off >= self.seg_bytes.len() as u64 {
                let log: &'a Log = self.log;
                let idx = log
                    .segment_index(self.position)
                    .expect("position within log is mapped");
                let seg = &log.segments[idx];
                self.seg_base = seg.base_position;
                self.seg_bytes = &seg.map[..];
                off = self.position - self.seg_base;
            }
            match frame::decode_trusted(&self.seg_bytes[off as usize..], self.position)? {
                Ok(f) => {
                    let next = f.next_position();
                    if next > self.limit {
                        return None;
                    }
                    self.position = next;
                    self.log.hints.note(next);
                    return Some(f);
                }
                Err(pad) => self.position += pad,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nice values of this process's threads named `tandem-segment-prep` (the kernel keeps
    /// the first 15 bytes of a thread's name).
    fn preparer_nice_values() -> Vec<i64> {
        let mut found = Vec::new();
        for task in fs::read_dir("/proc/self/task").expect("procfs").flatten() {
            let path = task.path();
            let (Ok(comm), Ok(stat)) = (
                fs::read_to_string(path.join("comm")),
                fs::read_to_string(path.join("stat")),
            ) else {
                continue; // the thread ended meanwhile
            };
            if comm.trim_end() != "tandem-segment-" {
                continue;
            }
            // Fields after the parenthesised name start at field 3 (state); nice is field 19.
            let after_name = &stat[stat.rfind(')').expect("stat has a name") + 1..];
            let nice = after_name
                .split_whitespace()
                .nth(16)
                .and_then(|f| f.parse().ok())
                .expect("nice field");
            found.push(nice);
        }
        found
    }

    #[test]
    fn the_preparer_keeps_off_the_requesting_cpu_only_when_another_remains() {
        assert_eq!(cpus_without(&[0, 1, 2], 1), Some(vec![0, 2]));
        assert_eq!(cpus_without(&[0, 1], 0), Some(vec![1]));
        assert_eq!(cpus_without(&[3], 3), None, "the only CPU");
        assert_eq!(cpus_without(&[0, 1], 5), None, "not one of them");
        assert_eq!(cpus_without(&[], 0), None);
        let mine = thread_cpus();
        assert!(!mine.is_empty(), "a thread runs on at least one CPU");
        assert!(set_thread_cpus(0, &mine), "a thread may keep its own CPUs");
        assert!(!set_thread_cpus(0, &[]));
    }

    #[test]
    fn boundary_hints_never_outlive_a_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_len_bytes: MIN_SEGMENT_LEN_BYTES,
            max_frame_len_bytes: 4096,
            prepare_next_segment: false,
            prefault: false,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(dir.path(), config, 0).unwrap();
        let header = FrameHeader {
            frame_type: 1,
            term: 1,
            ..FrameHeader::default()
        };
        let p1 = log.append(&header, &[1; 100]).unwrap();
        let p2 = log.append(&header, &[2; 100]).unwrap();
        let p3 = log.append(&header, &[3; 100]).unwrap();
        log.append(&header, &[4; 100]).unwrap();
        // Walking the log proves (and remembers) every boundary in it.
        assert_eq!(log.frames(0, log.append_position()).unwrap().count(), 4);
        assert_eq!(log.frame_at(p2).unwrap().payload, &[3; 100]);
        assert!(log.frame_at(p2 + 8).is_err(), "inside a frame");
        // A different suffix: p2 and p3 now lie inside one longer frame.
        log.truncate(p1, 0).unwrap();
        let end = log.append(&header, &[5; 400]).unwrap();
        assert!(end > p3);
        for inside in [p2, p3] {
            assert!(
                matches!(
                    log.frames(inside, end),
                    Err(ArchiveError::NotFrameBoundary { position, .. }) if position == inside
                ),
                "{inside} is no longer a boundary"
            );
        }
        assert_eq!(log.frame_at(p1).unwrap().payload, &[5; 400]);
        // Reset forgets them too.
        log.reset(end, 1).unwrap();
        assert!(matches!(
            log.frames(p1, end),
            Err(ArchiveError::BelowLogStart { .. })
        ));
    }

    #[test]
    fn segment_preparer_runs_at_the_lowest_priority_and_the_log_still_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_len_bytes: MIN_SEGMENT_LEN_BYTES,
            max_frame_len_bytes: 4096,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(dir.path(), config, 0).unwrap();
        // The thread lowers its own priority as it starts: wait (bounded) until it has.
        let mut nice = preparer_nice_values();
        for _ in 0..10_000 {
            if !nice.is_empty() && nice.iter().all(|&n| n == i64::from(PREPARER_NICE)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
            nice = preparer_nice_values();
        }
        assert!(!nice.is_empty(), "the preparer thread is running");
        assert!(
            nice.iter().all(|&n| n == i64::from(PREPARER_NICE)),
            "preparers at nice {PREPARER_NICE}: {nice:?}"
        );
        // Three segments' worth of frames: each roll takes a segment the paced preparer made.
        let payload = [7u8; 1000];
        let header = FrameHeader {
            frame_type: 1,
            term: 1,
            ..FrameHeader::default()
        };
        while log.append_position() < 3 * MIN_SEGMENT_LEN_BYTES {
            log.append(&header, &payload).unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        // Whole frames per segment (padding closes each), and the one that opened the fourth.
        let per_segment = MIN_SEGMENT_LEN_BYTES / align_frame_len(HEADER_LEN + 1000) as u64;
        let frames = log.frames(0, log.append_position()).unwrap().count();
        assert_eq!(frames as u64, 3 * per_segment + 1);
    }
}
