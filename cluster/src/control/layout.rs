//! Word indices of the control file (format version 2). See the diagram in the module docs.

/// The file's magic: `"TNDMCTRL"` as a native-endian (little-endian) u64.
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"TNDMCTRL");
/// The format version this build writes and reads.
pub(super) const VERSION: u64 = 2;

/// Members a file has room for; member ids are below this.
pub(super) const MEMBERS_MAX: usize = 16;
/// Counter slots (named counters use the first; the rest are spare).
pub(super) const COUNTER_SLOTS: usize = 64;
/// Result slots: a request's result lives in slot `seq % RESULT_SLOTS`.
pub(super) const RESULT_SLOTS: usize = 8;
/// Error records in the ring.
pub(super) const ERROR_RECORDS: usize = 64;
/// Words in one error record.
pub(super) const ERROR_RECORD_WORDS: usize = 32;
/// Words before an error record's message.
pub(super) const ERROR_MESSAGE_WORD: usize = 3;
/// Bytes of message an error record holds.
pub(super) const ERROR_MESSAGE_MAX_BYTES: usize = (ERROR_RECORD_WORDS - ERROR_MESSAGE_WORD) * 8;

// Header: written once by `create` (magic last), read-only afterwards.
pub(super) const H_MAGIC: usize = 0;
pub(super) const H_VERSION: usize = 1;
pub(super) const H_FILE_LEN: usize = 2;
pub(super) const H_PID: usize = 3;
pub(super) const H_CLUSTER_ID: usize = 4;
pub(super) const H_MEMBER_ID: usize = 5;
pub(super) const H_MEMBER_COUNT: usize = 6;
pub(super) const H_START_TIMESTAMP_NS: usize = 7;
pub(super) const H_MEMBERS_MAX: usize = 8;
pub(super) const H_COUNTER_SLOTS: usize = 9;
pub(super) const H_ERROR_RECORDS: usize = 10;
pub(super) const H_ERROR_RECORD_BYTES: usize = 11;
pub(super) const H_MEMBERS_AREA_BYTES: usize = 12;
/// Words in the header.
pub(super) const HEADER_WORDS: usize = 16;

// Live fields: written by the node only.
pub(super) const L_ROLE: usize = 16;
pub(super) const L_TERM: usize = 17;
pub(super) const L_LEADER_ID: usize = 18;
pub(super) const L_ELECTION_STATE: usize = 19;
pub(super) const L_APPEND_POSITION: usize = 20;
pub(super) const L_COMMIT_POSITION: usize = 21;
pub(super) const L_DURABLE_POSITION: usize = 22;
pub(super) const L_LOG_START_POSITION: usize = 23;
pub(super) const L_SNAPSHOT_POSITION: usize = 24;
pub(super) const L_UPDATED_NS: usize = 25;

/// First word of the member table: `MEMBERS_MAX` slots of `MEMBER_WORDS` words.
pub(super) const MEMBERS: usize = 32;
pub(super) const MEMBER_WORDS: usize = 4;
pub(super) const M_APPEND_POSITION: usize = 0;
pub(super) const M_COMMIT_POSITION: usize = 1;
pub(super) const M_LAST_HEARD_NS: usize = 2;

/// First counter word.
pub(super) const COUNTERS: usize = MEMBERS + MEMBERS_MAX * MEMBER_WORDS;

// Control toggle: written by tools (claim, request, cancel) and the node (take, complete).
pub(super) const T_TOGGLE: usize = COUNTERS + COUNTER_SLOTS;
pub(super) const T_ARGUMENT: usize = T_TOGGLE + 1;
pub(super) const T_NEXT_SEQ: usize = T_TOGGLE + 2;

/// First result slot: `RESULT_SLOTS` slots of `RESULT_WORDS` words.
pub(super) const RESULTS: usize = T_TOGGLE + 8;
pub(super) const RESULT_WORDS: usize = 8;
pub(super) const R_SEQ: usize = 0;
pub(super) const R_ACTION: usize = 1;
pub(super) const R_CODE: usize = 2;
pub(super) const R_VALUE: usize = 3;
pub(super) const R_EXTRA: usize = 4;

/// The error ring's write counter (records ever written).
pub(super) const E_WRITE_COUNT: usize = RESULTS + RESULT_SLOTS * RESULT_WORDS;
/// First error record.
pub(super) const ERRORS: usize = E_WRITE_COUNT + 8;
pub(super) const E_SEQ: usize = 0;
pub(super) const E_TIMESTAMP_NS: usize = 1;
pub(super) const E_CODE_LEN: usize = 2;

/// First word of the members-endpoints area: written once by `create`, before the magic.
pub(super) const MEMBERS_AREA: usize = ERRORS + ERROR_RECORDS * ERROR_RECORD_WORDS;
/// Words in the members-endpoints area.
pub(super) const MEMBERS_AREA_WORDS: usize = 128;
/// Bytes in the members-endpoints area.
pub(super) const MEMBERS_AREA_BYTES: usize = MEMBERS_AREA_WORDS * 8;
/// The area's first word: the members list's length in bytes.
pub(super) const MA_LEN: usize = MEMBERS_AREA;
/// First word of the members list's UTF-8 text (zero padded).
pub(super) const MA_TEXT: usize = MEMBERS_AREA + 1;
/// The longest members list the area holds, in bytes.
pub(super) const MEMBERS_LIST_MAX_BYTES: usize = MEMBERS_AREA_BYTES - 8;

/// Words in the file.
pub(super) const FILE_WORDS: usize = MEMBERS_AREA + MEMBERS_AREA_WORDS;
/// Bytes in the file.
pub(super) const FILE_LEN_BYTES: usize = FILE_WORDS * 8;

// Toggle word: request sequence << 16 | phase << 8 | action code; 0 is NEUTRAL.
pub(super) const TOGGLE_NEUTRAL: u64 = 0;
pub(super) const PHASE_CLAIMED: u64 = 1;
pub(super) const PHASE_PENDING: u64 = 2;
pub(super) const PHASE_IN_PROGRESS: u64 = 3;

/// Packs a toggle word.
pub(super) const fn toggle_word(seq: u64, phase: u64, action_code: u64) -> u64 {
    (seq << 16) | (phase << 8) | action_code
}

/// Unpacks a toggle word into (sequence, phase, action code).
pub(super) const fn toggle_parts(word: u64) -> (u64, u64, u64) {
    (word >> 16, (word >> 8) & 0xff, word & 0xff)
}

const _: () = {
    assert!(L_UPDATED_NS < MEMBERS);
    assert!(MEMBERS * 8 == 256);
    assert!(COUNTERS * 8 == 768);
    assert!(T_TOGGLE * 8 == 1280);
    assert!(RESULTS * 8 == 1344);
    assert!(E_WRITE_COUNT * 8 == 1856);
    assert!(ERRORS * 8 == 1920);
    assert!(MEMBERS_AREA * 8 == 18_304);
    assert!(MEMBERS_LIST_MAX_BYTES == 1016);
    assert!(FILE_LEN_BYTES == 19_328);
    assert!(H_MEMBERS_AREA_BYTES < HEADER_WORDS);
    assert!(ERROR_MESSAGE_MAX_BYTES == 232);
    assert!(RESULTS.is_multiple_of(8) && ERRORS.is_multiple_of(8) && T_TOGGLE.is_multiple_of(8));
};
