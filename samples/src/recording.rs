//! A [`Cluster`] that records what a service does, for unit tests of services without a
//! cluster.

use std::collections::{BTreeMap, BTreeSet};

use tandem_service_api::{ClientSession, Cluster, OfferError, Role, SessionId};

/// A stand-in [`Cluster`]: open sessions are a set, replies are recorded per session, timers in
/// a map, service messages in a list; time and log position are set by the test.
#[derive(Debug, Default, Clone)]
pub struct RecordingCluster {
    /// Cluster time returned by [`Cluster::time`].
    pub now_ns: i64,
    /// Log position returned by [`Cluster::log_position`].
    pub position: u64,
    /// Open sessions.
    pub sessions: BTreeSet<u64>,
    /// Replies offered to each session, oldest first.
    pub egress: BTreeMap<u64, Vec<Vec<u8>>>,
    /// Scheduled timers: correlation id -> deadline.
    pub timers: BTreeMap<u64, i64>,
    /// Messages offered into the log.
    pub offered: Vec<Vec<u8>>,
    /// Sessions the service asked to close.
    pub close_requests: Vec<u64>,
}

impl RecordingCluster {
    /// A recorder with sessions `sessions` open.
    pub fn with_sessions(sessions: impl IntoIterator<Item = u64>) -> Self {
        Self {
            sessions: sessions.into_iter().collect(),
            ..Self::default()
        }
    }

    /// Takes the replies recorded for `session`.
    pub fn take(&mut self, session: u64) -> Vec<Vec<u8>> {
        self.egress.remove(&session).unwrap_or_default()
    }
}

impl Cluster for RecordingCluster {
    fn member_id(&self) -> u32 {
        0
    }

    fn role(&self) -> Role {
        Role::Leader
    }

    fn time(&self) -> i64 {
        self.now_ns
    }

    fn log_position(&self) -> u64 {
        self.position
    }

    fn schedule_timer(&mut self, correlation_id: u64, deadline_ns: i64) {
        self.timers.insert(correlation_id, deadline_ns);
    }

    fn cancel_timer(&mut self, correlation_id: u64) -> bool {
        self.timers.remove(&correlation_id).is_some()
    }

    fn offer_egress(&mut self, session: SessionId, message: &[u8]) -> Result<(), OfferError> {
        if !self.sessions.contains(&session.0) {
            return Err(OfferError::UnknownSession);
        }
        self.egress
            .entry(session.0)
            .or_default()
            .push(message.to_vec());
        Ok(())
    }

    fn offer(&mut self, message: &[u8]) -> Result<(), OfferError> {
        self.offered.push(message.to_vec());
        Ok(())
    }

    fn close_session(&mut self, session: SessionId) -> bool {
        let open = self.sessions.contains(&session.0);
        if open {
            self.close_requests.push(session.0);
        }
        open
    }

    fn session(&self, session: SessionId) -> Option<ClientSession<'_>> {
        self.sessions.contains(&session.0).then_some(ClientSession {
            id: session,
            principal: &[],
        })
    }

    fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn for_each_session(&self, f: &mut dyn FnMut(ClientSession<'_>)) {
        for &id in &self.sessions {
            f(ClientSession {
                id: SessionId(id),
                principal: &[],
            });
        }
    }
}
