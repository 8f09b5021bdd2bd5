//! The service container (its sans-IO part): runs a [`ClusteredService`] on the committed log.
//!
//! The consensus core walks committed frames in log order, applies the module's part of each
//! (session table, exactly-once filtering, timer generations) and hands the service's part to
//! the container through [`Application`]; the service sees a [`tandem_service_api::Cluster`]
//! handle whose effects (timers, replies, service messages, session closes) land in replicated
//! state at that same log position. The same container runs inside the simulator and inside a
//! node.
//!
//! * **Start and recovery**: [`crate::consensus::Consensus::start`] picks up the snapshot the
//!   runtime found (use [`newest_valid_snapshot`] to choose it), calls [`Application::start`]
//!   (the container builds a fresh service from its factory and calls `on_start` with the
//!   snapshot image), then replays the log up to the commit lower bound.
//! * **Install**: a snapshot received from the leader is started the same way, on a fresh
//!   service.
//! * **Snapshot at P**: at a snapshot marker ending at P, the container asks the service to
//!   write its state ([`ClusteredService::on_take_snapshot`]); the core stores it beside the
//!   module state in one checksummed [`Snapshot`].

pub mod remote;

use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    ServiceFactory, SessionId, SnapshotImage, SnapshotWriter,
};

use crate::consensus::{Application, Snapshot};

/// Runs services built by a factory.
#[derive(Debug)]
pub struct ServiceContainer<F: ServiceFactory> {
    factory: F,
    service: Option<F::Service>,
    starts: u64,
}

impl<F: ServiceFactory> ServiceContainer<F> {
    /// A container that builds its services with `factory` (no service until started).
    pub fn new(factory: F) -> Self {
        Self {
            factory,
            service: None,
            starts: 0,
        }
    }

    /// The running service, if started.
    pub fn service(&self) -> Option<&F::Service> {
        self.service.as_ref()
    }

    /// The running service, mutably (for the runtime's own hooks; never to change replicated
    /// state).
    pub fn service_mut(&mut self) -> Option<&mut F::Service> {
        self.service.as_mut()
    }

    /// How many services were started (1 + snapshots installed).
    pub fn starts(&self) -> u64 {
        self.starts
    }

    /// Runs the service's background work (outside the log).
    pub fn do_background_work(&mut self, now_ns: i64) -> usize {
        self.service
            .as_mut()
            .map_or(0, |s| s.do_background_work(now_ns))
    }

    fn running(&mut self) -> &mut F::Service {
        self.service
            .as_mut()
            .expect("the core starts the container before applying entries")
    }
}

impl<F: ServiceFactory> Application for ServiceContainer<F> {
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        let mut service = self.factory.new_service();
        service.on_start(cluster, snapshot.map(SnapshotImage::new));
        self.service = Some(service);
        self.starts += 1;
    }

    fn session_open(&mut self, cluster: &mut dyn Cluster, session: &ClientSession<'_>, ts: i64) {
        self.running().on_session_open(cluster, session, ts);
    }

    fn session_close(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        ts: i64,
        reason: CloseReason,
    ) {
        self.running()
            .on_session_close(cluster, session, ts, reason);
    }

    fn message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        ts: i64,
        message: &[u8],
        header: &Header,
    ) {
        self.running()
            .on_session_message(cluster, session, ts, message, header);
    }

    fn timer_event(&mut self, cluster: &mut dyn Cluster, correlation_id: u64, ts: i64) {
        self.running().on_timer_event(cluster, correlation_id, ts);
    }

    fn new_leadership_term(&mut self, cluster: &mut dyn Cluster, event: &LeadershipTermEvent) {
        self.running().on_new_leadership_term_event(cluster, event);
    }

    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        self.running()
            .on_take_snapshot(&mut SnapshotWriter::new(out));
    }

    fn role_change(&mut self, role: Role) {
        if let Some(s) = self.service.as_mut() {
            s.on_role_change(role);
        }
    }

    fn terminate(&mut self, cluster: &mut dyn Cluster) {
        if let Some(s) = self.service.as_mut() {
            s.on_terminate(cluster);
        }
    }
}

impl<F: ServiceFactory> remote::HashedApplication for ServiceContainer<F> {}

/// Recovery's choice: the valid snapshot with the highest position among `candidates` (each
/// the bytes of a stored snapshot; invalid ones, e.g. torn or corrupt, are skipped).
pub fn newest_valid_snapshot<I>(candidates: I) -> Option<Snapshot>
where
    I: IntoIterator<Item = Vec<u8>>,
{
    candidates
        .into_iter()
        .filter_map(|b| Snapshot::from_bytes(b).ok())
        .max_by_key(|s| s.position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::{LogPosition, Term};

    #[test]
    fn newest_valid_snapshot_skips_corrupt_ones() {
        let a = Snapshot::encode(LogPosition(100), Term(1), 0, b"m", b"s");
        let b = Snapshot::encode(LogPosition(200), Term(1), 0, b"m", b"s");
        let mut c = Snapshot::encode(LogPosition(300), Term(2), 0, b"m", b"s").bytes;
        let last = c.len() - 1;
        c[last] ^= 1;
        let chosen = newest_valid_snapshot([a.bytes.clone(), c, b.bytes.clone()]).unwrap();
        assert_eq!(chosen.position, LogPosition(200));
        assert!(newest_valid_snapshot(Vec::<Vec<u8>>::new()).is_none());
    }
}
