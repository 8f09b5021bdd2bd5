//! Benchmark of the consensus core alone: 3 in-memory members wired directly (no IO, no
//! threads), storage durable at once, a service that replies to every message.
//!
//! Measures committed client messages per second (64-byte messages, each with its own
//! sequence number and its own reply, at most 64 messages per append) and nanoseconds per
//! core step (one `Consensus::handle` call on any member).
//!
//! Run: `cargo bench -p tandem-benches --bench core`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem_cluster::codec::client::{Egress, EventCode, Ingress};
use tandem_cluster::codec::peer::PeerMessage;
use tandem_cluster::consensus::{
    ClientAddr, Command, Config, Consensus, Input, LogPosition, MemLog, MemberId, NodeState,
    Outbox, SessionId,
};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SnapshotImage, SnapshotWriter,
};

/// Replies with 8 bytes to every message.
#[derive(Default)]
struct Echo {
    count: u64,
}

impl ClusteredService for Echo {
    fn on_start(&mut self, _: &mut dyn Cluster, _: Option<SnapshotImage<'_>>) {}
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
        _: i64,
        _: &[u8],
        header: &Header,
    ) {
        self.count += 1;
        if let Some(s) = session {
            let _ = cluster.offer_egress(s, &header.sequence.to_le_bytes());
        }
    }
    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}
    fn on_take_snapshot(&mut self, w: &mut SnapshotWriter<'_>) {
        w.write_u64(self.count);
    }
    fn on_role_change(&mut self, _: Role) {}
    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}
    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

struct Bench {
    cores: Vec<Consensus<MemLog>>,
    apps: Vec<Echo>,
    outs: Vec<Outbox>,
    spare: Outbox,
    now_ns: i64,
    steps: u64,
    replies: u64,
    leader: usize,
    session: SessionId,
    next_seq: u64,
    payload: [u8; 64],
    since_purge: u64,
}

impl Bench {
    fn new() -> Self {
        let mut cores = Vec::new();
        let mut apps = Vec::new();
        let mut outs = Vec::new();
        for i in 0..3 {
            let mut cfg = Config::new(MemberId(i), 3);
            cfg.election_timeout_ns = 100_000_000;
            cfg.heartbeat_interval_ns = 10_000_000;
            cfg.session_timeout_ns = i64::MAX / 4;
            cfg.max_frames_per_append = 64;
            // The bench's client never acknowledges its egress (it has no socket to read):
            // no slow-consumer bound, or its session would be closed after 4096 replies.
            cfg.max_unacked_egress = u64::MAX;
            let mut core = Consensus::new(cfg, MemLog::new(), Some(NodeState::default()), None);
            let mut app = Echo::default();
            let mut out = Outbox::new();
            core.start(0, &mut app, &mut out);
            cores.push(core);
            apps.push(app);
            outs.push(out);
        }
        let mut b = Self {
            cores,
            apps,
            outs,
            spare: Outbox::new(),
            now_ns: 0,
            steps: 0,
            replies: 0,
            leader: 0,
            session: SessionId(0),
            next_seq: 1,
            payload: [7u8; 64],
            since_purge: 0,
        };
        while !b.cores.iter().any(|c| c.role() == Role::Leader) {
            b.now_ns += 1_000_000;
            for i in 0..3 {
                b.step(i, Input::Tick { now_ns: b.now_ns });
            }
            b.settle();
        }
        b.leader = b
            .cores
            .iter()
            .position(|c| c.role() == Role::Leader)
            .expect("leader");
        b.step(
            b.leader,
            Input::Client {
                from: ClientAddr(1),
                msg: Ingress::Connect {
                    correlation_id: 1,
                    credentials: b"",
                },
            },
        );
        b.step(b.leader, Input::Flush);
        b.settle();
        assert_ne!(b.session, SessionId(0), "session opened");
        b
    }

    #[inline]
    fn step(&mut self, i: usize, input: Input<'_>) {
        self.steps += 1;
        self.cores[i].handle(input, &mut self.apps[i], &mut self.outs[i]);
    }

    /// Carries out every member's commands until none are left.
    fn settle(&mut self) {
        loop {
            let mut any = false;
            for i in 0..3 {
                if self.outs[i].is_empty() {
                    continue;
                }
                any = true;
                std::mem::swap(&mut self.outs[i], &mut self.spare);
                let out = std::mem::take(&mut self.spare);
                for c in &out.commands {
                    match c {
                        Command::SendPeer { to, bytes } => {
                            let msg =
                                PeerMessage::decode(&out.bytes[bytes.clone()]).expect("valid");
                            let j = to.index();
                            self.steps += 1;
                            self.cores[j].handle(
                                Input::Peer {
                                    from: MemberId(i as u32),
                                    msg,
                                },
                                &mut self.apps[j],
                                &mut self.outs[j],
                            );
                        }
                        Command::SendClient { bytes, .. } => {
                            // Decoded as the client would (a reply batch validates its
                            // records), so the figure includes the egress the leader wrote.
                            match Egress::decode(&out.bytes[bytes.clone()]) {
                                Ok(Egress::Reply { .. }) => self.replies += 1,
                                Ok(Egress::Replies(batch)) => self.replies += batch.len() as u64,
                                Ok(Egress::SessionEvent {
                                    code: EventCode::Ok,
                                    session,
                                    ..
                                }) => self.session = session,
                                _ => {}
                            }
                        }
                        Command::PersistState { id, .. } => {
                            self.step(i, Input::StatePersisted { id: *id });
                        }
                        Command::Appended { to, epoch, .. } => {
                            self.step(
                                i,
                                Input::LogDurable {
                                    position: *to,
                                    epoch: *epoch,
                                },
                            );
                        }
                        _ => {}
                    }
                }
                self.spare = out;
                self.spare.clear();
            }
            if !any {
                return;
            }
        }
    }

    /// Sends `n` messages (64 per append) and settles until all are committed and answered.
    fn run_batch(&mut self, n: u64) {
        let l = self.leader;
        for _ in 0..n {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.steps += 1;
            self.cores[l].handle(
                Input::Client {
                    from: ClientAddr(1),
                    msg: Ingress::Message {
                        session: self.session,
                        sequence: seq,
                        payload: &self.payload,
                    },
                },
                &mut self.apps[l],
                &mut self.outs[l],
            );
            if seq.is_multiple_of(64) {
                self.settle();
            }
        }
        self.step(l, Input::Flush);
        self.settle();
        self.since_purge += n;
        if self.since_purge >= 1 << 16 {
            self.since_purge = 0;
            self.compact();
        }
    }

    /// Snapshot and purge, as retention would, so the in-memory logs stay small.
    fn compact(&mut self) {
        let l = self.leader;
        self.step(l, Input::TakeSnapshot);
        self.settle();
        self.step(l, Input::Flush);
        self.settle();
        for i in 0..3 {
            let Some(p) = self.cores[i].latest_snapshot().map(|s| s.position) else {
                continue;
            };
            self.step(i, Input::Purge { position: p });
        }
        self.settle();
    }
}

fn committed_messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_3_members");
    g.throughput(Throughput::Elements(64 * 16));
    g.measurement_time(Duration::from_secs(5));
    let mut b = Bench::new();
    g.bench_function("commit_1024_msgs_64B_with_replies", |bench| {
        bench.iter(|| {
            b.run_batch(64 * 16);
            black_box(b.replies)
        })
    });
    g.finish();
    let total = b.next_seq - 1;
    // The leader applied everything; followers learn the last commit with the next append.
    assert_eq!(b.apps[b.leader].count, total, "all applied on the leader");
    assert_eq!(b.replies, total, "every message answered");
    assert!(b.apps.iter().all(|a| a.count + 64 * 16 >= total));
    assert!(b.cores.iter().all(|c| c.commit_position() > LogPosition(0)));

    // A plain summary with the per-step figure criterion does not compute (same, warmed-up
    // cluster).
    let n = 4096 * 1024u64;
    let (steps0, replies0) = (b.steps, b.replies);
    let t = Instant::now();
    let mut sent = 0;
    while sent < n {
        b.run_batch(64 * 16);
        sent += 64 * 16;
    }
    let el = t.elapsed();
    let steps = b.steps - steps0;
    let replies = b.replies - replies0;
    assert_eq!(replies, n, "every message answered");
    eprintln!(
        "summary: {n} committed 64-byte messages with replies in {:.3} s = {:.2} M msg/s; \
         {steps} core steps, {:.1} ns/step, {:.2} steps/msg",
        el.as_secs_f64(),
        n as f64 / el.as_secs_f64() / 1e6,
        el.as_nanos() as f64 / steps as f64,
        steps as f64 / n as f64
    );
}

criterion_group!(benches, committed_messages);
criterion_main!(benches);
