//! The "Write your own service" example from the README, compiled and run
//! against a recording cluster so the README cannot drift from the API.

use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

#[derive(Default)]
struct Counter {
    total: u64,
}

const TICK: u64 = 1; // a timer's correlation id

impl ClusteredService for Counter {
    // Called once; with the newest snapshot when there is one.
    fn on_start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        if let Some(mut image) = snapshot {
            self.total = image.read_u64().expect("total");
        }
        cluster.schedule_timer(TICK, cluster.time() + 1_000_000_000);
    }
    // Each client message, in log order; replies go to the session (exactly once: a client
    // that fails over gets missed replies from the reply cache, never a second execution).
    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _time: i64,
        message: &[u8],
        _: &Header,
    ) {
        self.total += message.len() as u64;
        if let Some(s) = session {
            let _ = cluster.offer_egress(s, &self.total.to_le_bytes());
        }
    }
    // Timers are log entries too: every member fires them at the same point.
    fn on_timer_event(&mut self, cluster: &mut dyn Cluster, _id: u64, now: i64) {
        cluster.schedule_timer(TICK, now + 1_000_000_000);
    }
    // The whole state; with the log after it, enough to rebuild the service.
    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        writer.write_u64(self.total);
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
    fn on_role_change(&mut self, _: Role) {}
    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}
    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

#[test]
fn the_readme_service_counts_replies_and_rearms_its_timer() {
    use tandem_samples::RecordingCluster;
    let mut cluster = RecordingCluster::with_sessions([7]);
    cluster.now_ns = 5;
    let mut counter = Counter::default();
    counter.on_start(&mut cluster, None);
    assert_eq!(cluster.timers.get(&TICK), Some(&1_000_000_005));
    let header = Header {
        log_position: 64,
        term: 1,
        timestamp: 5,
        sequence: 1,
    };
    counter.on_session_message(&mut cluster, Some(SessionId(7)), 5, b"abc", &header);
    counter.on_session_message(&mut cluster, Some(SessionId(7)), 5, b"de", &header);
    assert_eq!(
        cluster.take(7),
        vec![3u64.to_le_bytes().to_vec(), 5u64.to_le_bytes().to_vec()]
    );
    counter.on_timer_event(&mut cluster, TICK, 2_000_000_000);
    assert_eq!(cluster.timers.get(&TICK), Some(&3_000_000_000));
}
