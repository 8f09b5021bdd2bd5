//! [`Echo`]: the service every member runs: it replies to each message with the message.

use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

/// Replies to every client message with the message itself, and counts what it applied
/// (its whole state, so a snapshot is a few bytes: the snapshot measurement is of the
/// cluster's own snapshot path, not of a large service state).
#[derive(Debug, Default)]
pub struct Echo {
    /// Messages applied.
    pub messages: u64,
    /// Payload bytes applied.
    pub bytes: u64,
}

/// The factory every member is given (a fresh service after an install-snapshot).
pub fn new_echo() -> Echo {
    Echo::default()
}

impl ClusteredService for Echo {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        if let Some(mut image) = snapshot {
            // A snapshot this service wrote: two counters. A short one is a bug elsewhere.
            self.messages = image.read_u64().expect("echo snapshot: message count");
            self.bytes = image.read_u64().expect("echo snapshot: byte count");
        }
    }

    fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}

    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        _: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
    }

    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _time: i64,
        message: &[u8],
        _: &Header,
    ) {
        self.messages += 1;
        self.bytes += message.len() as u64;
        if let Some(s) = session {
            // Egress goes to the session's reply cache on every member (the leader sends it);
            // a refusal (session closed meanwhile) leaves nothing to do.
            let _ = cluster.offer_egress(s, message);
        }
    }

    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}

    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        writer.write_u64(self.messages);
        writer.write_u64(self.bytes);
    }

    fn on_role_change(&mut self, _: Role) {}

    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}

    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}
