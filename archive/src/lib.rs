//! Tandem's archive: the replicated log in memory-mapped segments, the node
//! state, the recording log, snapshots, retention and purge.
//!
//! The archive knows nothing of Raft: it stores frames at byte positions,
//! small checksummed state files and snapshot files, and enforces the rules
//! that keep them recoverable (see `DESIGN.md` §4).
#![warn(missing_docs)]

mod archive;
mod dir_lock;
mod error;
mod frame;
mod log;
mod node_state;
mod recording_log;
mod retention;
mod segment;
mod snapshot;

pub use archive::{Archive, ArchiveConfig, ArchiveRecovery, Hold, LOG_DIR_NAME, PurgeReport};
pub use dir_lock::{DirLock, LOCK_FILE_NAME};
pub use error::{ArchiveError, Result};
pub use frame::{
    FRAME_ALIGNMENT, FRAME_FORMAT_VERSION, Frame, FrameHeader, HEADER_LEN, PADDING_FRAME_TYPE,
    align_frame_len, aligned_frame_len, encode_frame,
};
pub use log::{
    Claim, DEFAULT_MAX_FRAME_LEN_BYTES, DEFAULT_SEGMENT_LEN_BYTES, Durability, Frames, Log,
    LogConfig, LogPurge, MIN_SEGMENT_LEN_BYTES, RecoveryReport,
};
pub use node_state::{
    NODE_STATE_FILE_LEN_BYTES, NODE_STATE_FILE_NAME, NODE_STATE_FORMAT_VERSION,
    NODE_STATE_SLOT_LEN_BYTES, NODE_STATE_SLOT_OFFSETS, NodeState, NodeStateFile,
};
pub use recording_log::{
    CONSENSUS_MODULE_SERVICE_ID, Entry, EntryKind, RECORDING_LOG_ENTRIES_MAX,
    RECORDING_LOG_ENTRY_LEN_BYTES, RECORDING_LOG_FILE_NAME, RECORDING_LOG_FORMAT_VERSION,
    RECORDING_LOG_HEADER_LEN_BYTES, RecordingLog, RecoveryPlan, SnapshotSet,
};
pub use retention::{DEFAULT_RETAINED_SNAPSHOT_SETS, RetentionPlan, purge_limit, retention_plan};
pub use snapshot::{
    RawSnapshotWriter, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_LEN_BYTES,
    SNAPSHOT_TRAILER_LEN_BYTES, SNAPSHOTS_DIR_NAME, SnapshotMeta, SnapshotReader, SnapshotStore,
    SnapshotWriter,
};
