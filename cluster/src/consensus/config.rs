//! Configuration of the consensus core.

use crate::consensus::bugs::BugFlags;
use crate::consensus::types::MemberId;

/// Configuration of one member's consensus core. Times are in nanoseconds of the clock the
/// runtime passes in `Input::Tick`.
#[derive(Debug, Clone)]
pub struct Config {
    /// This member.
    pub member_id: MemberId,
    /// Members are `0..member_count` (3 or 5 in practice; at most [`Config::MAX_MEMBERS`]).
    pub member_count: u32,
    /// Base election timeout: a follower that hears no leader for a random time in
    /// `[t, 2t)` canvasses; a leader that hears no majority for `t` steps down.
    pub election_timeout_ns: i64,
    /// How often the leader sends heartbeats (empty appends) to an idle follower.
    pub heartbeat_interval_ns: i64,
    /// A client session silent this long is closed through the log.
    pub session_timeout_ns: i64,
    /// Most frames in one append (and frames the leader buffers before it sends).
    pub max_frames_per_append: usize,
    /// Most frame bytes in one append (a bigger single frame is still sent alone).
    pub max_append_bytes: usize,
    /// Most bytes sent to a follower and not yet acknowledged (the per-follower window).
    pub max_inflight_bytes: u64,
    /// Bytes per install-snapshot chunk.
    pub snapshot_chunk_bytes: usize,
    /// Largest client, service or reply message.
    pub max_message_bytes: usize,
    /// Replies kept per session (the reply cache), by count. A client should keep at most this
    /// many messages unacknowledged: a retried message whose reply was evicted is answered with
    /// an `Ack` only.
    pub reply_cache_entries: usize,
    /// Replies kept per session (the reply cache), by bytes.
    pub reply_cache_bytes: usize,
    /// Most open sessions: a connect beyond it is refused (`Rejected`, reason
    /// `TooManySessions`), on the leader and again when the open is applied. Must be the same
    /// on every member (it decides replicated state).
    pub max_sessions: usize,
    /// Most replies the leader sends a session beyond the highest egress sequence its client
    /// acknowledged (in its batches and keep-alives, or an attach). A client that stops
    /// reading falls behind by more and is closed through the log with
    /// `CloseReason::SlowConsumer` (a slow consumer), so every member agrees.
    pub max_unacked_egress: u64,
    /// Most bytes of one `Replies` batch to a client (the replies of a step for one session
    /// travel together): one datagram's payload. A reply larger than this goes alone.
    pub max_reply_batch_bytes: usize,
    /// Most service messages waiting for the log.
    pub max_pending_service_messages: usize,
    /// Seed of the core's PRNG (election jitter).
    pub seed: u64,
    /// Deliberate bugs (test builds and the `bugs` feature only; see [`BugFlags`]).
    pub bugs: BugFlags,
}

impl Config {
    /// Most members a cluster may have.
    pub const MAX_MEMBERS: u32 = 15;

    /// A configuration with Tandem's defaults for member `member_id` of `member_count`.
    pub fn new(member_id: MemberId, member_count: u32) -> Self {
        Self {
            member_id,
            member_count,
            election_timeout_ns: 1_000_000_000,
            heartbeat_interval_ns: 100_000_000,
            session_timeout_ns: 10_000_000_000,
            max_frames_per_append: 64,
            max_append_bytes: 64 * 1024,
            max_inflight_bytes: 4 * 1024 * 1024,
            snapshot_chunk_bytes: 32 * 1024,
            max_message_bytes: 32 * 1024,
            reply_cache_entries: 64,
            reply_cache_bytes: 64 * 1024,
            max_sessions: 1024,
            max_unacked_egress: 4096,
            max_reply_batch_bytes: 1408 - crate::transport::frame::HEADER_LEN,
            max_pending_service_messages: 1024,
            seed: 0x7A4D_E11A ^ u64::from(member_id.0),
            bugs: BugFlags::default(),
        }
    }

    /// Votes (or acknowledgements) that make a majority.
    pub fn majority(&self) -> usize {
        self.member_count as usize / 2 + 1
    }

    /// Checks the configuration.
    ///
    /// # Panics
    /// On an impossible configuration (a bug in the caller).
    pub fn validate(&self) {
        assert!(self.member_count >= 1 && self.member_count <= Self::MAX_MEMBERS);
        assert!(
            self.member_id.0 < self.member_count,
            "member id outside the cluster"
        );
        assert!(self.election_timeout_ns > 0 && self.heartbeat_interval_ns > 0);
        assert!(self.heartbeat_interval_ns < self.election_timeout_ns);
        assert!(self.max_frames_per_append >= 1 && self.max_append_bytes >= 64);
        assert!(self.max_inflight_bytes >= self.max_append_bytes as u64);
        assert!(self.snapshot_chunk_bytes >= 64);
        assert!(self.reply_cache_entries >= 1);
        assert!(self.max_sessions >= 1 && self.max_unacked_egress >= 1);
        assert!(self.reply_cache_bytes >= self.max_message_bytes);
    }
}
