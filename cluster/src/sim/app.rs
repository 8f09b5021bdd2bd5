//! [`RecordingApp`]: the real service container, wrapped so that the simulator sees every
//! callback the core applies (its log position and a hash of what it was), for the
//! apply-order invariant.

use crate::consensus::{Application, SessionId};
use crate::container::ServiceContainer;
use crate::container::remote::{InlineLink, SplitApp};
use tandem_service_api::{ClientSession, CloseReason, Cluster, Header, LeadershipTermEvent, Role};

use crate::sim::kv::{KvFactory, KvService};
use crate::sim::trace::{FNV_OFFSET, fnv_u64, fnv1a};

/// The hash that marks a (re)start of the service in [`RecordingApp::applied`].
pub const START_MARKER: u64 = u64::MAX;

/// One applied callback: the log position after its entry and a hash of its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Log position just after the entry.
    pub position: u64,
    /// Hash of the callback kind and arguments.
    pub hash: u64,
}

/// The service container plus a record of what it was given since the last drain.
#[derive(Debug)]
pub struct RecordingApp {
    /// The real container.
    pub container: ServiceContainer<KvFactory>,
    /// Callbacks since the simulator last looked.
    pub applied: Vec<Applied>,
    /// Set when `start` ran (a restart or a snapshot install): the position it started at.
    pub started_at: Option<u64>,
}

impl RecordingApp {
    /// A container with no service yet.
    pub fn new() -> Self {
        Self {
            container: ServiceContainer::new(KvService::default as KvFactory),
            applied: Vec::new(),
            started_at: None,
        }
    }

    /// The running service.
    pub fn service(&self) -> Option<&KvService> {
        self.container.service()
    }

    fn record(&mut self, cluster: &dyn Cluster, kind: u8, a: u64, b: u64, bytes: &[u8]) {
        let mut h = fnv1a(FNV_OFFSET, &[kind]);
        h = fnv_u64(fnv_u64(h, a), b);
        h = fnv_u64(fnv1a(h, bytes), cluster.time() as u64);
        self.applied.push(Applied {
            position: cluster.log_position(),
            hash: h,
        });
    }
}

impl Default for RecordingApp {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::container::remote::HashedApplication for RecordingApp {}

/// A member's service as the simulator runs it: called in line, or split (see
/// [`crate::sim::SimOptions::remote_service`]).
pub type SimApp = SplitApp<RecordingApp, InlineLink<RecordingApp>>;

impl Application for RecordingApp {
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        self.started_at = Some(cluster.log_position());
        self.applied.push(Applied {
            position: cluster.log_position(),
            hash: START_MARKER,
        });
        self.container.start(cluster, snapshot);
    }

    fn session_open(&mut self, cluster: &mut dyn Cluster, session: &ClientSession<'_>, ts: i64) {
        self.record(cluster, b'o', session.id.0, 0, session.principal);
        self.container.session_open(cluster, session, ts);
    }

    fn session_close(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        ts: i64,
        reason: CloseReason,
    ) {
        self.record(cluster, b'x', session.id.0, reason as u64, &[]);
        self.container.session_close(cluster, session, ts, reason);
    }

    fn message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        ts: i64,
        message: &[u8],
        header: &Header,
    ) {
        self.record(
            cluster,
            b'm',
            session.map_or(0, |s| s.0),
            header.sequence,
            message,
        );
        self.container
            .message(cluster, session, ts, message, header);
    }

    fn timer_event(&mut self, cluster: &mut dyn Cluster, correlation_id: u64, ts: i64) {
        self.record(cluster, b't', correlation_id, 0, &[]);
        self.container.timer_event(cluster, correlation_id, ts);
    }

    fn new_leadership_term(&mut self, cluster: &mut dyn Cluster, event: &LeadershipTermEvent) {
        self.record(
            cluster,
            b'l',
            event.term,
            u64::from(event.leader_member_id),
            &[],
        );
        self.container.new_leadership_term(cluster, event);
    }

    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        self.container.take_snapshot(out);
    }

    fn role_change(&mut self, role: Role) {
        self.container.role_change(role);
    }

    fn terminate(&mut self, cluster: &mut dyn Cluster) {
        self.container.terminate(cluster);
    }
}
