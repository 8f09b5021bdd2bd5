//! `ControlFile`: the node's and the tools' view of `<node-dir>/control.dat`.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::action::{Action, ActionResult, RequestId, ResultCode};
use super::counter::Counter;
use super::error::ControlError;
use super::fields::{ControlIdent, ErrorRecord, MemberProgress, MemberRole};
use super::layout::*;
use super::mapping::{Mapping, pid_alive};
use crate::transport::MemberEndpoints;

/// The control file's name inside a node directory.
pub const CONTROL_FILE_NAME: &str = "control.dat";

const NO_LEADER: u64 = u64::MAX;
const WAIT_POLL: Duration = Duration::from_millis(1);

/// A mapped control file. The node creates it with [`ControlFile::create`] and is the single
/// writer of the live fields, counters, error log and results; tools open it with
/// [`ControlFile::open`], read it, and write only the control toggle (through
/// [`ControlFile::request`] and [`ControlFile::cancel`]). All methods take `&self`; the type
/// is `Send + Sync`, so one mapping can be shared by a node's threads.
#[derive(Debug)]
pub struct ControlFile {
    path: PathBuf,
    map: Mapping,
}

impl ControlFile {
    /// Creates `<dir>/control.dat` for this process, replacing a stale one from an earlier run
    /// (by renaming a new file over it, so tools that still map the old one are unharmed).
    /// `members` is the members list as given to the node (`0=HOST:PORT,1=HOST:PORT,...`,
    /// client endpoints, as [`MemberEndpoints::parse`] reads it); it is stored as given in the
    /// members area and read back by [`ControlFile::member_endpoints`].
    ///
    /// # Errors
    ///
    /// [`ControlError::InvalidIdent`] unless `member_id < member_count <= 16` and `members`
    /// parses and lists exactly the ids `0..member_count`;
    /// [`ControlError::MembersListTooLong`] if it is longer than
    /// [`MEMBERS_LIST_MAX_BYTES`](super::MEMBERS_LIST_MAX_BYTES); directory and I/O errors
    /// naming the path.
    pub fn create(
        dir: impl AsRef<Path>,
        ident: ControlIdent,
        members: &str,
    ) -> Result<Self, ControlError> {
        let dir = dir.as_ref();
        if ident.member_count == 0 || ident.member_count as usize > MEMBERS_MAX {
            return Err(ControlError::InvalidIdent {
                reason: format!(
                    "member count {} is not 1 to {MEMBERS_MAX}",
                    ident.member_count
                ),
            });
        }
        if ident.member_id >= ident.member_count {
            return Err(ControlError::InvalidIdent {
                reason: format!(
                    "member id {} is not below the member count {}",
                    ident.member_id, ident.member_count
                ),
            });
        }
        let list = members.trim();
        if list.len() > MEMBERS_LIST_MAX_BYTES {
            return Err(ControlError::MembersListTooLong {
                list: list.to_owned(),
                len_bytes: list.len(),
                max_bytes: MEMBERS_LIST_MAX_BYTES,
            });
        }
        let parsed = MemberEndpoints::parse(list).map_err(|e| ControlError::InvalidIdent {
            reason: format!("members list {list:?}: {e}"),
        })?;
        if parsed.len() != ident.member_count as usize
            || parsed.iter().any(|m| m.id >= ident.member_count)
        {
            return Err(ControlError::InvalidIdent {
                reason: format!(
                    "members list {list:?} does not list exactly the member ids 0 to {}",
                    ident.member_count - 1
                ),
            });
        }
        check_dir(dir)?;
        let path = dir.join(CONTROL_FILE_NAME);
        let tmp = dir.join(format!("{CONTROL_FILE_NAME}.tmp"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ControlError::Io { path, source }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // Written, not just sized: every page is allocated now, so a full disk later (the
        // node directory on a small tmpfs) can never turn a store into the mapping into a
        // SIGBUS; a full disk now is an error here.
        (&file)
            .write_all(&vec![0_u8; FILE_LEN_BYTES])
            .map_err(io(&tmp))?;
        let map = Mapping::map(&file).map_err(io(&tmp))?;
        let words = map.words();
        let start_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        for (index, value) in [
            (H_VERSION, VERSION),
            (H_FILE_LEN, FILE_LEN_BYTES as u64),
            (H_PID, u64::from(std::process::id())),
            (H_CLUSTER_ID, ident.cluster_id),
            (H_MEMBER_ID, u64::from(ident.member_id)),
            (H_MEMBER_COUNT, u64::from(ident.member_count)),
            (H_START_TIMESTAMP_NS, start_ns),
            (H_MEMBERS_MAX, MEMBERS_MAX as u64),
            (H_COUNTER_SLOTS, COUNTER_SLOTS as u64),
            (H_ERROR_RECORDS, ERROR_RECORDS as u64),
            (H_ERROR_RECORD_BYTES, (ERROR_RECORD_WORDS * 8) as u64),
            (H_MEMBERS_AREA_BYTES, MEMBERS_AREA_BYTES as u64),
            (L_LEADER_ID, NO_LEADER),
            (MA_LEN, list.len() as u64),
        ] {
            words[index].store(value, Ordering::Relaxed);
        }
        for (i, chunk) in list.as_bytes().chunks(8).enumerate() {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            words[MA_TEXT + i].store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        words[H_MAGIC].store(MAGIC, Ordering::Release);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        tracing::debug!(path = %path.display(), ?ident, "created control file");
        Ok(Self { path, map })
    }

    /// Opens `<dir>/control.dat` as a tool, checking magic, version and length first.
    ///
    /// # Errors
    ///
    /// [`ControlError::DirNotFound`], [`ControlError::NotADirectory`],
    /// [`ControlError::NotFound`] (no control file: not a node directory),
    /// [`ControlError::BadMagic`], [`ControlError::Uninitialised`],
    /// [`ControlError::Version`], [`ControlError::Truncated`], [`ControlError::Corrupt`] or
    /// [`ControlError::Io`]; each names the file. Never panics on a bad file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ControlError> {
        let dir = dir.as_ref();
        check_dir(dir)?;
        let path = dir.join(CONTROL_FILE_NAME);
        let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ControlError::NotFound { path });
            }
            Err(source) => return Err(ControlError::Io { path, source }),
        };
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ControlError::Io { path, source }
        };
        let len_bytes = file.metadata().map_err(io(&path))?.len();
        // Read the header with plain reads before mapping anything.
        let mut header = [0_u8; HEADER_WORDS * 8];
        let header_len = usize::try_from(len_bytes).map_or(header.len(), |l| l.min(header.len()));
        file.read_exact(&mut header[..header_len])
            .map_err(io(&path))?;
        let word = |i: usize| u64::from_ne_bytes(header[i * 8..i * 8 + 8].try_into().unwrap());
        let truncated = || ControlError::Truncated {
            path: path.clone(),
            len_bytes,
            expected_bytes: FILE_LEN_BYTES as u64,
        };
        if header_len < 16 {
            return Err(truncated());
        }
        match word(H_MAGIC) {
            MAGIC => {}
            0 => return Err(ControlError::Uninitialised { path }),
            found => return Err(ControlError::BadMagic { path, found }),
        }
        if word(H_VERSION) != VERSION {
            return Err(ControlError::Version {
                path,
                found: word(H_VERSION),
                expected: VERSION,
            });
        }
        if len_bytes < FILE_LEN_BYTES as u64 {
            return Err(truncated());
        }
        for (index, what, expected) in [
            (H_FILE_LEN, "file length", FILE_LEN_BYTES as u64),
            (H_MEMBERS_MAX, "member slots", MEMBERS_MAX as u64),
            (H_COUNTER_SLOTS, "counter slots", COUNTER_SLOTS as u64),
            (H_ERROR_RECORDS, "error records", ERROR_RECORDS as u64),
            (
                H_ERROR_RECORD_BYTES,
                "error record length",
                (ERROR_RECORD_WORDS * 8) as u64,
            ),
            (
                H_MEMBERS_AREA_BYTES,
                "members area length",
                MEMBERS_AREA_BYTES as u64,
            ),
        ] {
            if word(index) != expected {
                return Err(ControlError::Corrupt {
                    path,
                    what,
                    value: word(index),
                });
            }
        }
        if len_bytes != FILE_LEN_BYTES as u64 {
            return Err(ControlError::Corrupt {
                path,
                what: "actual file length",
                value: len_bytes,
            });
        }
        let count = word(H_MEMBER_COUNT);
        if count == 0 || count > MEMBERS_MAX as u64 {
            return Err(ControlError::Corrupt {
                path,
                what: "member count",
                value: count,
            });
        }
        if word(H_MEMBER_ID) >= count {
            return Err(ControlError::Corrupt {
                path,
                what: "member id",
                value: word(H_MEMBER_ID),
            });
        }
        let map = Mapping::map(&file).map_err(io(&path))?;
        Ok(Self { path, map })
    }

    /// The control file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[inline]
    fn word(&self, index: usize) -> &AtomicU64 {
        &self.map.words()[index]
    }

    #[inline]
    fn get(&self, index: usize) -> u64 {
        self.word(index).load(Ordering::Acquire)
    }

    #[inline]
    fn set(&self, index: usize, value: u64) {
        self.word(index).store(value, Ordering::Release);
    }

    // ---- header -------------------------------------------------------------------------

    /// The format version.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.get(H_VERSION)
    }

    /// The node's process id.
    #[must_use]
    pub fn pid(&self) -> u64 {
        self.get(H_PID)
    }

    /// The cluster's id.
    #[must_use]
    pub fn cluster_id(&self) -> u64 {
        self.get(H_CLUSTER_ID)
    }

    /// This member's id.
    #[must_use]
    pub fn member_id(&self) -> u32 {
        u32::try_from(self.get(H_MEMBER_ID)).unwrap_or(u32::MAX)
    }

    /// The number of members in the cluster.
    #[must_use]
    pub fn member_count(&self) -> u32 {
        u32::try_from(self.get(H_MEMBER_COUNT)).unwrap_or(u32::MAX)
    }

    /// The members list the node was given: each member's id and client endpoint (its peer
    /// endpoint is the client port + 1). Read from the members area, written once at
    /// creation.
    ///
    /// # Errors
    ///
    /// [`ControlError::BadMembers`], naming the file and byte offset, if the area's length is
    /// out of range, its text is not UTF-8 or not a members list, or the list does not match
    /// the header's member count and id. Never panics on a bad file.
    pub fn member_endpoints(&self) -> Result<MemberEndpoints, ControlError> {
        let bad =
            |word_index: usize, extra_bytes: usize, reason: String| ControlError::BadMembers {
                path: self.path.clone(),
                offset: (word_index * 8 + extra_bytes) as u64,
                reason,
            };
        let len = self.get(MA_LEN);
        let len = match usize::try_from(len) {
            Ok(len) if (1..=MEMBERS_LIST_MAX_BYTES).contains(&len) => len,
            _ => {
                return Err(bad(
                    MA_LEN,
                    0,
                    format!("length {len} is not 1 to {MEMBERS_LIST_MAX_BYTES} bytes"),
                ));
            }
        };
        let mut bytes = Vec::with_capacity(len.next_multiple_of(8));
        for i in 0..len.div_ceil(8) {
            bytes.extend_from_slice(&self.get(MA_TEXT + i).to_le_bytes());
        }
        bytes.truncate(len);
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| bad(MA_TEXT, e.valid_up_to(), format!("not UTF-8 ({e})")))?;
        let members =
            MemberEndpoints::parse(text).map_err(|e| bad(MA_TEXT, 0, format!("{text:?}: {e}")))?;
        let count = self.member_count();
        if members.len() != count as usize
            || members.iter().any(|m| m.id >= count)
            || members.get(self.member_id()).is_none()
        {
            return Err(bad(
                MA_TEXT,
                0,
                format!(
                    "{text:?} does not list exactly the member ids 0 to {} of the header",
                    count.saturating_sub(1)
                ),
            ));
        }
        Ok(members)
    }

    /// When the node created the file (Unix epoch ns).
    #[must_use]
    pub fn start_timestamp_ns(&self) -> u64 {
        self.get(H_START_TIMESTAMP_NS)
    }

    /// Whether the process that created the file still exists (`kill(pid, 0)`). A stale file
    /// left by a dead node answers false. (A pid reused by an unrelated process after a
    /// reboot answers true; compare `start_timestamp_ns` with the boot time if that matters.)
    #[must_use]
    pub fn is_owner_alive(&self) -> bool {
        pid_alive(self.pid())
    }

    // ---- live fields (node writes) --------------------------------------------------------

    /// Publishes this member's role.
    pub fn set_role(&self, role: MemberRole) {
        self.set(L_ROLE, role.code());
    }

    /// This member's role (`None` for a code this build does not know).
    #[must_use]
    pub fn role(&self) -> Option<MemberRole> {
        MemberRole::from_code(self.get(L_ROLE))
    }

    /// Publishes the current term.
    pub fn set_term(&self, term: u64) {
        self.set(L_TERM, term);
    }

    /// The current term.
    #[must_use]
    pub fn term(&self) -> u64 {
        self.get(L_TERM)
    }

    /// Publishes the leader's id, or none.
    pub fn set_leader_id(&self, leader: Option<u32>) {
        self.set(L_LEADER_ID, leader.map_or(NO_LEADER, u64::from));
    }

    /// The leader's id, if known.
    #[must_use]
    pub fn leader_id(&self) -> Option<u32> {
        u32::try_from(self.get(L_LEADER_ID)).ok()
    }

    /// Publishes the election state code (the consensus core's election state enum).
    pub fn set_election_state(&self, code: u64) {
        self.set(L_ELECTION_STATE, code);
    }

    /// The election state code.
    #[must_use]
    pub fn election_state(&self) -> u64 {
        self.get(L_ELECTION_STATE)
    }

    /// Publishes the append position.
    #[inline]
    pub fn set_append_position(&self, position: u64) {
        self.set(L_APPEND_POSITION, position);
    }

    /// The append position.
    #[must_use]
    pub fn append_position(&self) -> u64 {
        self.get(L_APPEND_POSITION)
    }

    /// Publishes the commit position.
    #[inline]
    pub fn set_commit_position(&self, position: u64) {
        self.set(L_COMMIT_POSITION, position);
    }

    /// The commit position.
    #[must_use]
    pub fn commit_position(&self) -> u64 {
        self.get(L_COMMIT_POSITION)
    }

    /// Publishes the durable (fsynced) position.
    #[inline]
    pub fn set_durable_position(&self, position: u64) {
        self.set(L_DURABLE_POSITION, position);
    }

    /// The durable position.
    #[must_use]
    pub fn durable_position(&self) -> u64 {
        self.get(L_DURABLE_POSITION)
    }

    /// Publishes the log start position (below it, segments were purged).
    pub fn set_log_start_position(&self, position: u64) {
        self.set(L_LOG_START_POSITION, position);
    }

    /// The log start position.
    #[must_use]
    pub fn log_start_position(&self) -> u64 {
        self.get(L_LOG_START_POSITION)
    }

    /// Publishes the latest snapshot's position.
    pub fn set_snapshot_position(&self, position: u64) {
        self.set(L_SNAPSHOT_POSITION, position);
    }

    /// The latest snapshot's position.
    #[must_use]
    pub fn snapshot_position(&self) -> u64 {
        self.get(L_SNAPSHOT_POSITION)
    }

    /// Publishes the node's clock (ns) at its latest update: a liveness beat for tools.
    #[inline]
    pub fn set_updated_ns(&self, now_ns: u64) {
        self.set(L_UPDATED_NS, now_ns);
    }

    /// The node's clock at its latest update.
    #[must_use]
    pub fn updated_ns(&self) -> u64 {
        self.get(L_UPDATED_NS)
    }

    /// Publishes what this member knows of member `member_id`.
    ///
    /// # Panics
    ///
    /// If `member_id` is not below 16 (a bug: member ids are checked at configuration).
    pub fn set_member_progress(&self, member_id: u32, progress: MemberProgress) {
        let base = member_base(member_id).expect("member id below 16");
        self.set(base + M_APPEND_POSITION, progress.append_position);
        self.set(base + M_COMMIT_POSITION, progress.commit_position);
        self.set(base + M_LAST_HEARD_NS, progress.last_heard_ns);
    }

    /// What this member knows of member `member_id` (`None` if it is not below the member
    /// count). The three fields are read one by one, not as one snapshot.
    #[must_use]
    pub fn member_progress(&self, member_id: u32) -> Option<MemberProgress> {
        if member_id >= self.member_count() {
            return None;
        }
        let base = member_base(member_id)?;
        Some(MemberProgress {
            append_position: self.get(base + M_APPEND_POSITION),
            commit_position: self.get(base + M_COMMIT_POSITION),
            last_heard_ns: self.get(base + M_LAST_HEARD_NS),
        })
    }

    // ---- counters -----------------------------------------------------------------------

    /// Adds `n` to a counter (atomic, so several agent threads may count).
    #[inline]
    pub fn add(&self, counter: Counter, n: u64) {
        self.word(COUNTERS + counter.index())
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to a counter.
    #[inline]
    pub fn increment(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Sets a counter (for gauges such as [`Counter::SessionsOpen`]).
    #[inline]
    pub fn set_counter(&self, counter: Counter, value: u64) {
        self.word(COUNTERS + counter.index())
            .store(value, Ordering::Relaxed);
    }

    /// A counter's value.
    #[must_use]
    pub fn counter(&self, counter: Counter) -> u64 {
        self.word(COUNTERS + counter.index())
            .load(Ordering::Relaxed)
    }

    /// Every named counter with its value, in slot order.
    #[must_use]
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        Counter::ALL
            .into_iter()
            .map(|c| (c.name(), self.counter(c)))
            .collect()
    }

    // ---- error log ----------------------------------------------------------------------

    /// Appends an error to the ring (overwriting the oldest once full) and counts it in
    /// [`Counter::Errors`]. The message is cut to 232 bytes on a character boundary. Does not
    /// allocate; safe to call from several threads.
    pub fn record_error(&self, timestamp_ns: u64, code: u32, message: &str) {
        let index = self.word(E_WRITE_COUNT).fetch_add(1, Ordering::AcqRel);
        let base = error_base(index);
        let mut len = message.len().min(ERROR_MESSAGE_MAX_BYTES);
        while !message.is_char_boundary(len) {
            len -= 1;
        }
        let bytes = &message.as_bytes()[..len];
        // Seqlock write: mark the record in progress, write it, then publish its sequence.
        self.word(base + E_SEQ).store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word(base + E_TIMESTAMP_NS)
            .store(timestamp_ns, Ordering::Relaxed);
        self.word(base + E_CODE_LEN)
            .store(u64::from(code) | ((len as u64) << 32), Ordering::Relaxed);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut word = [0_u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.word(base + ERROR_MESSAGE_WORD + i)
                .store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.word(base + E_SEQ).store(index + 1, Ordering::Release);
        self.increment(Counter::Errors);
    }

    /// Errors ever recorded (the ring keeps the newest 64).
    #[must_use]
    pub fn error_count(&self) -> u64 {
        self.get(E_WRITE_COUNT)
    }

    /// The newest errors still in the ring, newest first. Records being written or
    /// overwritten while read are left out.
    #[must_use]
    pub fn errors(&self) -> Vec<ErrorRecord> {
        let count = self.word(E_WRITE_COUNT).load(Ordering::Acquire);
        let oldest = count.saturating_sub(ERROR_RECORDS as u64);
        let mut records = Vec::new();
        for index in (oldest..count).rev() {
            if let Some(record) = self.read_error(index) {
                // Re-read the counter: a record the writers have since lapped is discarded.
                let count_now = self.word(E_WRITE_COUNT).load(Ordering::Acquire);
                if count_now.saturating_sub(ERROR_RECORDS as u64) <= index {
                    records.push(record);
                }
            }
        }
        records
    }

    fn read_error(&self, index: u64) -> Option<ErrorRecord> {
        let base = error_base(index);
        let seq = self.word(base + E_SEQ).load(Ordering::Acquire);
        if seq != index + 1 {
            return None;
        }
        let timestamp_ns = self.word(base + E_TIMESTAMP_NS).load(Ordering::Relaxed);
        let code_len = self.word(base + E_CODE_LEN).load(Ordering::Relaxed);
        let mut bytes = [0_u8; ERROR_MESSAGE_MAX_BYTES];
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let word = self
                .word(base + ERROR_MESSAGE_WORD + i)
                .load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        fence(Ordering::Acquire);
        if self.word(base + E_SEQ).load(Ordering::Relaxed) != seq {
            return None;
        }
        let len = usize::try_from(code_len >> 32)
            .unwrap_or(usize::MAX)
            .min(ERROR_MESSAGE_MAX_BYTES);
        Some(ErrorRecord {
            index,
            timestamp_ns,
            code: code_len as u32,
            message: String::from_utf8_lossy(&bytes[..len]).into_owned(),
        })
    }

    // ---- control toggle: tool side ------------------------------------------------------

    /// Asks the node to take `action`.
    ///
    /// # Errors
    ///
    /// [`ControlError::Busy`] if another request is pending or in progress.
    pub fn request(&self, action: Action) -> Result<RequestId, ControlError> {
        let seq = self.word(T_NEXT_SEQ).fetch_add(1, Ordering::AcqRel) + 1;
        let id = RequestId::new(seq, action);
        let claimed = toggle_word(seq, PHASE_CLAIMED, action.code());
        if let Err(current) = self.word(T_TOGGLE).compare_exchange(
            TOGGLE_NEUTRAL,
            claimed,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(ControlError::Busy {
                path: self.path.clone(),
                pending: describe_toggle(current),
            });
        }
        // Only the claimant writes the argument; the node reads it after seeing PENDING.
        self.word(T_ARGUMENT)
            .store(id.argument(), Ordering::Relaxed);
        self.set(T_TOGGLE, toggle_word(seq, PHASE_PENDING, action.code()));
        Ok(id)
    }

    /// Withdraws a request the node has not yet taken. Returns whether it was withdrawn.
    pub fn cancel(&self, request: RequestId) -> bool {
        let code = request.action().code();
        [PHASE_PENDING, PHASE_CLAIMED].into_iter().any(|phase| {
            self.word(T_TOGGLE)
                .compare_exchange(
                    toggle_word(request.seq(), phase, code),
                    TOGGLE_NEUTRAL,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        })
    }

    /// The node's result for `request`, if it has completed it and the result is still held.
    #[must_use]
    pub fn result(&self, request: RequestId) -> Option<ActionResult> {
        let base = result_base(request.seq());
        let seq = self.word(base + R_SEQ).load(Ordering::Acquire);
        if seq != request.seq() {
            return None;
        }
        let code = self.word(base + R_CODE).load(Ordering::Relaxed);
        let value = self.word(base + R_VALUE).load(Ordering::Relaxed);
        let extra = self.word(base + R_EXTRA).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if self.word(base + R_SEQ).load(Ordering::Relaxed) != seq {
            return None;
        }
        Some(ActionResult {
            code: ResultCode::from_code(code)?,
            value,
            extra,
        })
    }

    /// Waits (sleeping 1 ms between looks) until the node completes `request`.
    ///
    /// # Errors
    ///
    /// [`ControlError::Timeout`] naming the action; [`ControlError::OwnerDead`] if the node's
    /// process is gone; [`ControlError::ResultLost`] if later requests overwrote the result.
    pub fn wait_for(
        &self,
        request: RequestId,
        timeout: Duration,
    ) -> Result<ActionResult, ControlError> {
        let start = Instant::now();
        let action = request.action().name();
        loop {
            if let Some(result) = self.result(request) {
                return Ok(result);
            }
            let slot_seq = self.get(result_base(request.seq()) + R_SEQ);
            if slot_seq > request.seq() {
                return Err(ControlError::ResultLost {
                    path: self.path.clone(),
                    action,
                    request: request.seq(),
                });
            }
            if !self.is_owner_alive() {
                return Err(ControlError::OwnerDead {
                    path: self.path.clone(),
                    pid: self.pid(),
                    action,
                    request: request.seq(),
                });
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(ControlError::Timeout {
                    path: self.path.clone(),
                    action,
                    request: request.seq(),
                    waited,
                });
            }
            std::thread::sleep(WAIT_POLL.min(timeout - waited));
        }
    }

    // ---- control toggle: node side ------------------------------------------------------

    /// Takes a pending request, if any, marking it in progress; each request is returned
    /// once. A request with an unknown action code is completed at once as
    /// [`ResultCode::Unsupported`]. One atomic load when there is none.
    pub fn poll_request(&self) -> Option<(RequestId, Action)> {
        let word = self.get(T_TOGGLE);
        let (seq, phase, code) = toggle_parts(word);
        if phase != PHASE_PENDING {
            return None;
        }
        let argument = self.word(T_ARGUMENT).load(Ordering::Relaxed);
        let taken = toggle_word(seq, PHASE_IN_PROGRESS, code);
        self.word(T_TOGGLE)
            .compare_exchange(word, taken, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        match Action::from_code(code, argument) {
            Some(action) => Some((RequestId::new(seq, action), action)),
            None => {
                tracing::warn!(path = %self.path.display(), code, "unknown control action");
                self.publish_result(seq, code, ActionResult::with_code(ResultCode::Unsupported));
                self.set(T_TOGGLE, TOGGLE_NEUTRAL);
                None
            }
        }
    }

    /// Publishes the result of a request taken with [`ControlFile::poll_request`] and sets the
    /// toggle back to NEUTRAL.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotInProgress`] if `request` is not the request in progress.
    pub fn complete(&self, request: RequestId, result: ActionResult) -> Result<(), ControlError> {
        let code = request.action().code();
        let in_progress = toggle_word(request.seq(), PHASE_IN_PROGRESS, code);
        if self.get(T_TOGGLE) != in_progress {
            return Err(ControlError::NotInProgress {
                path: self.path.clone(),
                request: request.seq(),
            });
        }
        self.publish_result(request.seq(), code, result);
        self.set(T_TOGGLE, TOGGLE_NEUTRAL);
        Ok(())
    }

    /// The request pending or in progress, if any, as (sequence, action name, in progress).
    #[must_use]
    pub fn pending_request(&self) -> Option<(u64, &'static str, bool)> {
        let (seq, phase, code) = toggle_parts(self.get(T_TOGGLE));
        (phase != 0).then(|| (seq, Action::name_of_code(code), phase == PHASE_IN_PROGRESS))
    }

    fn publish_result(&self, seq: u64, action_code: u64, result: ActionResult) {
        let base = result_base(seq);
        self.word(base + R_SEQ).store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word(base + R_ACTION)
            .store(action_code, Ordering::Relaxed);
        self.word(base + R_CODE)
            .store(result.code.code(), Ordering::Relaxed);
        self.word(base + R_VALUE)
            .store(result.value, Ordering::Relaxed);
        self.word(base + R_EXTRA)
            .store(result.extra, Ordering::Relaxed);
        self.word(base + R_SEQ).store(seq, Ordering::Release);
    }
}

fn check_dir(dir: &Path) -> Result<(), ControlError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(ControlError::NotADirectory {
            dir: dir.to_owned(),
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err(ControlError::DirNotFound {
            dir: dir.to_owned(),
        }),
        Err(source) => Err(ControlError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

fn member_base(member_id: u32) -> Option<usize> {
    let id = member_id as usize;
    (id < MEMBERS_MAX).then_some(MEMBERS + id * MEMBER_WORDS)
}

fn error_base(index: u64) -> usize {
    ERRORS + (index % ERROR_RECORDS as u64) as usize * ERROR_RECORD_WORDS
}

fn result_base(seq: u64) -> usize {
    RESULTS + (seq % RESULT_SLOTS as u64) as usize * RESULT_WORDS
}

fn describe_toggle(word: u64) -> String {
    let (seq, phase, code) = toggle_parts(word);
    let state = match phase {
        PHASE_CLAIMED => "being requested",
        PHASE_PENDING => "pending",
        PHASE_IN_PROGRESS => "in progress",
        _ => "in an unknown state",
    };
    format!("{} request {seq} {state}", Action::name_of_code(code))
}
