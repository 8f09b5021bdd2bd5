//! The control file's named counters.

/// A counter in the control file. The discriminant is the counter's slot, stable across
/// versions of the format: new counters take new slots, retired ones are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Counter {
    /// Datagrams received.
    DatagramsIn = 0,
    /// Datagrams sent.
    DatagramsOut = 1,
    /// Bytes received.
    BytesIn = 2,
    /// Bytes sent.
    BytesOut = 3,
    /// Datagrams dropped: length does not match the frame.
    DroppedBadLength = 4,
    /// Datagrams dropped: checksum mismatch.
    DroppedBadChecksum = 5,
    /// Datagrams dropped: unsupported protocol version.
    DroppedBadVersion = 6,
    /// Datagrams dropped: another cluster's id.
    DroppedWrongCluster = 7,
    /// Datagrams dropped: unknown member id.
    DroppedUnknownMember = 8,
    /// Client messages refused: unknown session (or a client address the node cannot
    /// represent).
    DroppedUnknownSession = 9,
    /// Member messages of an older term: answered with the current term, never acted on.
    DroppedStale = 10,
    /// Frames resent to peers or clients.
    Resends = 11,
    /// Elections started.
    Elections = 12,
    /// Snapshots taken.
    SnapshotsTaken = 13,
    /// Client sessions open now (a gauge).
    SessionsOpen = 14,
    /// Connects refused (on the leader): the authenticator said no, or the cluster held its
    /// maximum of sessions.
    SessionsRejected = 15,
    /// Timers fired.
    TimersFired = 16,
    /// Errors recorded in the error log.
    Errors = 17,
    /// Snapshot positions where this member's service state hash differed from the
    /// leader's (non-deterministic service code).
    StateDivergences = 18,
    /// Sessions closed (on the leader) because their client stopped reading its egress: it
    /// fell more than the configured bound of replies behind (slow consumers).
    SessionsDisconnectedSlow = 19,
    /// Client messages refused (on the leader) because they named a session opened from
    /// another address.
    DroppedSessionNotOwned = 20,
    /// Datagrams dropped: longer than this member accepts (the transport's
    /// `recv_max_datagram`, by default the largest UDP datagram, so 0 unless lowered; the log
    /// says which sender).
    DroppedOversize = 21,
}

impl Counter {
    /// Every named counter, in slot order.
    pub const ALL: [Self; 22] = [
        Self::DatagramsIn,
        Self::DatagramsOut,
        Self::BytesIn,
        Self::BytesOut,
        Self::DroppedBadLength,
        Self::DroppedBadChecksum,
        Self::DroppedBadVersion,
        Self::DroppedWrongCluster,
        Self::DroppedUnknownMember,
        Self::DroppedUnknownSession,
        Self::DroppedStale,
        Self::Resends,
        Self::Elections,
        Self::SnapshotsTaken,
        Self::SessionsOpen,
        Self::SessionsRejected,
        Self::TimersFired,
        Self::Errors,
        Self::StateDivergences,
        Self::SessionsDisconnectedSlow,
        Self::DroppedSessionNotOwned,
        Self::DroppedOversize,
    ];

    /// The counter's slot.
    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The counter's name for tools (snake case, stable).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::DatagramsIn => "datagrams_in",
            Self::DatagramsOut => "datagrams_out",
            Self::BytesIn => "bytes_in",
            Self::BytesOut => "bytes_out",
            Self::DroppedBadLength => "dropped_bad_length",
            Self::DroppedBadChecksum => "dropped_bad_checksum",
            Self::DroppedBadVersion => "dropped_bad_version",
            Self::DroppedWrongCluster => "dropped_wrong_cluster",
            Self::DroppedUnknownMember => "dropped_unknown_member",
            Self::DroppedUnknownSession => "dropped_unknown_session",
            Self::DroppedStale => "dropped_stale",
            Self::Resends => "resends",
            Self::Elections => "elections",
            Self::SnapshotsTaken => "snapshots_taken",
            Self::SessionsOpen => "sessions_open",
            Self::SessionsRejected => "sessions_rejected",
            Self::TimersFired => "timers_fired",
            Self::Errors => "errors",
            Self::StateDivergences => "state_divergences",
            Self::SessionsDisconnectedSlow => "sessions_disconnected_slow",
            Self::DroppedSessionNotOwned => "dropped_session_not_owned",
            Self::DroppedOversize => "dropped_oversize",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_dense_and_names_unique() {
        for (i, counter) in Counter::ALL.into_iter().enumerate() {
            assert_eq!(counter.index(), i);
        }
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        assert!(Counter::ALL.len() < super::super::layout::COUNTER_SLOTS);
    }
}
