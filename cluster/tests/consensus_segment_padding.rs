//! The consensus core over the archive-backed store ([`ArchiveLogStore`]) with 64 KiB
//! segments: replication, truncation and leader changes across segment rolls, including tails
//! of 8..40 bytes (implicit padding, shorter than a frame header) and padding frames. The
//! core takes every position from the store, so nothing stalls at a roll and all members agree
//! on positions, frames and what was applied.

use std::collections::BTreeSet;

use tandem_archive::{Log, LogConfig};
use tandem_cluster::codec::client::{Egress, EventCode, Ingress};
use tandem_cluster::codec::peer::PeerMessage;
use tandem_cluster::consensus::{
    ClientAddr, Command, Consensus, Input, LogPosition, LogStore, MemberId, NodeState,
    NoopApplication, Outbox, SessionId, Term,
};
use tandem_cluster::node::ArchiveLogStore;
use tandem_cluster::testkit::test_config;
use tandem_service_api::Role;

const SEG: u64 = 64 * 1024;
const HEADER: u64 = 48;
const CLIENT: u64 = 7;

fn open_store(dir: &std::path::Path) -> ArchiveLogStore {
    let cfg = LogConfig {
        segment_len_bytes: SEG,
        max_frame_len_bytes: SEG as usize,
        prepare_next_segment: false,
        prefault: false,
        ..LogConfig::default()
    };
    let (log, _) = Log::open(dir, cfg, 0).expect("open log");
    let start = LogPosition(log.start_position());
    ArchiveLogStore::new(log, start, Term(0))
}

struct Member {
    dir: tempfile::TempDir,
    core: Option<Consensus<ArchiveLogStore>>,
    app: NoopApplication,
    out: Outbox,
    node_state: NodeState,
}

struct Cluster {
    members: Vec<Member>,
    now_ns: i64,
    queue: Vec<(u32, u32, Vec<u8>)>,
    blocked: BTreeSet<(u32, u32)>,
    client_inbox: Vec<Vec<u8>>,
    connects: u64,
}

impl Cluster {
    fn new(n: u32) -> Self {
        let mut c = Self {
            members: Vec::new(),
            now_ns: 0,
            queue: Vec::new(),
            blocked: BTreeSet::new(),
            client_inbox: Vec::new(),
            connects: 0,
        };
        for _ in 0..n {
            c.members.push(Member {
                dir: tempfile::tempdir().unwrap(),
                core: None,
                app: NoopApplication,
                out: Outbox::new(),
                node_state: NodeState::default(),
            });
        }
        for i in 0..n {
            c.start(i);
        }
        c
    }

    fn size(&self) -> u32 {
        self.members.len() as u32
    }

    fn start(&mut self, i: u32) {
        let cfg = test_config(MemberId(i), self.size());
        let m = &mut self.members[i as usize];
        let store = open_store(m.dir.path());
        let mut core = Consensus::new(cfg, store, Some(m.node_state), None);
        core.start(self.now_ns, &mut m.app, &mut m.out);
        m.core = Some(core);
        self.drain(i);
    }

    /// A process crash: the core and its mapped log go; the files stay.
    fn crash(&mut self, i: u32) {
        let m = &mut self.members[i as usize];
        drop(m.core.take());
        m.out.clear();
    }

    fn core(&self, i: u32) -> &Consensus<ArchiveLogStore> {
        self.members[i as usize].core.as_ref().expect("up")
    }

    fn is_up(&self, i: u32) -> bool {
        self.members[i as usize].core.is_some()
    }

    fn input(&mut self, i: u32, input: Input<'_>) {
        let m = &mut self.members[i as usize];
        if let Some(core) = m.core.as_mut() {
            core.handle(input, &mut m.app, &mut m.out);
        }
        self.drain(i);
    }

    fn drain(&mut self, i: u32) {
        loop {
            let m = &mut self.members[i as usize];
            if m.out.is_empty() {
                return;
            }
            let out = std::mem::take(&mut m.out);
            let mut follow: Vec<Input<'static>> = Vec::new();
            for c in &out.commands {
                match c {
                    Command::SendPeer { to, bytes } if !self.blocked.contains(&(i, to.0)) => {
                        self.queue
                            .push((i, to.0, out.bytes[bytes.clone()].to_vec()));
                    }
                    Command::SendClient { bytes, .. } => {
                        self.client_inbox.push(out.bytes[bytes.clone()].to_vec());
                    }
                    Command::PersistState { id, state } => {
                        m.node_state = *state;
                        follow.push(Input::StatePersisted { id: *id });
                    }
                    Command::Appended { to, epoch, .. } => follow.push(Input::LogDurable {
                        position: *to,
                        epoch: *epoch,
                    }),
                    Command::CommitAdvanced { position } => {
                        if let Some(core) = m.core.as_ref() {
                            core.log().note_commit(*position);
                        }
                    }
                    _ => {}
                }
            }
            for input in follow {
                if let Some(core) = m.core.as_mut() {
                    core.handle(input, &mut m.app, &mut m.out);
                }
            }
        }
    }

    fn settle(&mut self) {
        let mut budget = 1_000_000u32;
        while !self.queue.is_empty() {
            let batch = std::mem::take(&mut self.queue);
            for (from, to, bytes) in batch {
                budget -= 1;
                assert!(budget > 0, "network never settles");
                if self.blocked.contains(&(from, to)) || !self.is_up(to) {
                    continue;
                }
                let msg = PeerMessage::decode(&bytes).expect("valid peer message");
                self.input(
                    to,
                    Input::Peer {
                        from: MemberId(from),
                        msg,
                    },
                );
            }
        }
    }

    fn tick(&mut self) {
        self.now_ns += 1_000_000;
        for i in 0..self.size() {
            let now_ns = self.now_ns;
            self.input(i, Input::Tick { now_ns });
        }
        self.settle();
    }

    fn flush(&mut self) {
        for i in 0..self.size() {
            self.input(i, Input::Flush);
        }
        self.settle();
    }

    fn leader(&self) -> Option<u32> {
        (0..self.size())
            .filter(|&i| self.is_up(i) && self.core(i).role() == Role::Leader)
            .max_by_key(|&i| self.core(i).term())
    }

    fn await_leader(&mut self, not: Option<u32>) -> u32 {
        for _ in 0..5_000 {
            if let Some(l) = self.leader().filter(|&l| Some(l) != not) {
                // Its new-leadership-term entry committed everywhere reachable.
                if self.core(l).commit_position() >= self.core(l).log_end() {
                    return l;
                }
            }
            self.tick();
        }
        panic!("no leader");
    }

    fn isolate(&mut self, i: u32) {
        for j in 0..self.size() {
            if j != i {
                self.blocked.insert((i, j));
                self.blocked.insert((j, i));
            }
        }
    }

    fn heal(&mut self) {
        self.blocked.clear();
    }

    fn client(&mut self, leader: u32, msg: Ingress<'_>) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        let msg = Ingress::decode(&bytes).expect("valid ingress");
        self.input(
            leader,
            Input::Client {
                from: ClientAddr(CLIENT),
                msg,
            },
        );
    }

    fn connect(&mut self) -> SessionId {
        let leader = self.await_leader(None);
        self.client_inbox.clear();
        self.connects += 1;
        let correlation = self.connects;
        self.client(
            leader,
            Ingress::Connect {
                correlation_id: correlation,
                credentials: b"",
            },
        );
        for _ in 0..2_000 {
            self.flush();
            for m in std::mem::take(&mut self.client_inbox) {
                if let Ok(Egress::SessionEvent {
                    code: EventCode::Ok,
                    session,
                    correlation_id,
                    ..
                }) = Egress::decode(&m)
                    && correlation_id == correlation
                {
                    return session;
                }
            }
            self.tick();
        }
        panic!("no session");
    }

    /// The members' logs agree frame by frame up to the shortest common commit, and every up
    /// member holds the same paddings below it.
    fn check_agreement(&self) {
        let up: Vec<u32> = (0..self.size()).filter(|&i| self.is_up(i)).collect();
        for w in up.windows(2) {
            let (a, b) = (self.core(w[0]).log(), self.core(w[1]).log());
            let to = self
                .core(w[0])
                .commit_position()
                .min(self.core(w[1]).commit_position());
            let mut pos = LogPosition(0);
            while pos < to {
                let fa = a.next_frame(pos).expect("committed frame a");
                let fb = b.next_frame(pos).expect("committed frame b");
                assert_eq!(fa, fb, "members {} and {} differ after {pos}", w[0], w[1]);
                pos = fa.end;
            }
            let pads = |s: &ArchiveLogStore| -> Vec<u64> {
                s.padding_positions()
                    .into_iter()
                    .filter(|&p| p < to.0)
                    .collect()
            };
            assert_eq!(pads(a), pads(b));
        }
    }
}

/// Sends one message of `payload` bytes through the leader and lets it commit everywhere
/// reachable.
fn offer(c: &mut Cluster, leader: u32, session: SessionId, seq: &mut u64, payload: usize) {
    *seq += 1;
    let body = vec![(*seq % 251) as u8; payload];
    c.client(
        leader,
        Ingress::Message {
            session,
            sequence: *seq,
            payload: &body,
        },
    );
    c.flush();
}

/// Payload of a message whose frame leaves `tail` bytes in the leader's current segment, or
/// `None` when more than `max` bytes would be needed.
fn payload_leaving(end: LogPosition, tail: u64, max: u64) -> Option<usize> {
    let room = SEG - end.0 % SEG;
    (room >= tail + HEADER && room - tail - HEADER <= max).then(|| (room - tail - HEADER) as usize)
}

/// Fills the leader's segment up to a tail of `tail` bytes (the next frame rolls over).
fn leave_tail(c: &mut Cluster, leader: u32, session: SessionId, seq: &mut u64, tail: u64) {
    for _ in 0..100 {
        let end = c.core(leader).log_end();
        if let Some(n) = payload_leaving(end, tail, 6_000) {
            offer(c, leader, session, seq, n);
            let end = c.core(leader).log_end();
            assert_eq!(SEG - end.0 % SEG, tail, "tail left at {end}");
            return;
        }
        offer(c, leader, session, seq, 3_000);
    }
    let last: Vec<String> = c
        .client_inbox
        .iter()
        .rev()
        .take(3)
        .map(|m| format!("{:?}", Egress::decode(m)))
        .collect();
    panic!(
        "the leader's log does not grow: {:?} {:?} {last:?}",
        c.core(leader).role(),
        c.core(leader).log_end()
    );
}

fn tails_of(store: &ArchiveLogStore) -> BTreeSet<u64> {
    store
        .padding_positions()
        .into_iter()
        .map(|p| SEG - p % SEG)
        .collect()
}

#[test]
fn replication_crosses_many_segment_rolls_with_tiny_tails() {
    let mut c = Cluster::new(3);
    let session = c.connect();
    let leader = c.await_leader(None);
    let mut seq = 0u64;
    for round in 0..30u64 {
        let tail = [8, 16, 24, 32, 40, 48, 400][round as usize % 7];
        leave_tail(&mut c, leader, session, &mut seq, tail);
        // The next frame rolls over; its size varies.
        offer(&mut c, leader, session, &mut seq, 100 + round as usize * 37);
        let end = c.core(leader).log_end();
        assert_eq!(c.core(leader).commit_position(), end);
        assert_eq!(c.core(leader).applied_position(), end);
        for _ in 0..11 {
            c.tick();
        }
        for i in 0..3 {
            assert_eq!(
                c.core(i).log_end(),
                end,
                "member {i} caught up at round {round}"
            );
            assert_eq!(c.core(i).commit_position(), end, "member {i}");
            assert_eq!(c.core(i).applied_position(), end, "member {i}");
        }
    }
    assert!(c.core(leader).log_end().0 > 20 * SEG);
    let tails = tails_of(c.core(leader).log());
    for t in [8, 16, 24, 32, 40, 48, 400] {
        assert!(tails.contains(&t), "a tail of {t} bytes: {tails:?}");
    }
    c.check_agreement();
}

#[test]
fn a_follower_truncates_at_a_padding_and_a_new_leader_ends_before_one() {
    // Tiny tails (the new leader's first frame rolls over too) and a padding frame large
    // enough for it (the new leader's first frame goes where the old leader's padding was).
    for tail in [8u64, 24, 40, 800] {
        let mut c = Cluster::new(3);
        let session = c.connect();
        let old = c.await_leader(None);
        let mut seq = 0u64;
        for _ in 0..3 {
            leave_tail(&mut c, old, session, &mut seq, 16);
            offer(&mut c, old, session, &mut seq, 500);
        }
        leave_tail(&mut c, old, session, &mut seq, tail);
        let pad_at = c.core(old).log_end();
        // The old leader rolls over alone: a padding and frames in the next segment that no
        // one else gets.
        c.isolate(old);
        for _ in 0..3 {
            offer(&mut c, old, session, &mut seq, 1_000);
        }
        assert!(c.core(old).log_end().0 > pad_at.0 + tail);
        assert!(c.core(old).log().padding_positions().contains(&pad_at.0));
        // The others elect a leader whose log ends where the padding begins.
        let new = c.await_leader(Some(old));
        assert_ne!(new, old);
        let first = c
            .core(new)
            .log()
            .next_frame(pad_at)
            .expect("new leader's first frame");
        if tail < HEADER + 56 {
            assert_eq!(first.position.0, pad_at.0 + tail, "rolled over");
        } else {
            assert_eq!(first.position, pad_at, "fitted in the old padding");
        }
        // Reconnecting: the old leader truncates at the padding and takes the new frames.
        c.heal();
        for _ in 0..300 {
            c.tick();
        }
        let end = c.core(new).log_end();
        for i in 0..3 {
            assert_eq!(c.core(i).log_end(), end, "member {i}");
            assert_eq!(c.core(i).commit_position(), end, "member {i}");
        }
        // More rolls under the new leader, the old one following.
        let session = c.connect();
        let leader = c.await_leader(None);
        let mut seq = 0u64;
        for t in [8, 32, 40] {
            leave_tail(&mut c, leader, session, &mut seq, t);
            offer(&mut c, leader, session, &mut seq, 200);
        }
        for _ in 0..11 {
            c.tick();
        }
        let end = c.core(leader).log_end();
        for i in 0..3 {
            assert_eq!(c.core(i).log_end(), end, "member {i}");
            assert_eq!(c.core(i).applied_position(), end, "member {i}");
        }
        c.check_agreement();
    }
}

#[test]
fn a_new_leader_with_the_rolled_frame_and_a_follower_restart() {
    let mut c = Cluster::new(3);
    let session = c.connect();
    let old = c.await_leader(None);
    let mut seq = 0u64;
    leave_tail(&mut c, old, session, &mut seq, 32);
    let pad_at = c.core(old).log_end();
    // One follower gets the frame after the padding, the other does not; the old leader dies.
    let (f1, f2) = {
        let f: Vec<u32> = (0..3).filter(|&i| i != old).collect();
        (f[0], f[1])
    };
    c.blocked.insert((old, f2));
    offer(&mut c, old, session, &mut seq, 2_000);
    assert!(c.core(f1).log_end() > pad_at);
    assert_eq!(c.core(f2).log_end(), pad_at);
    c.crash(old);
    c.heal();
    // f1 has the longer log: it wins, and f2 (whose log ends just before the padding) takes
    // the frame after it.
    let new = c.await_leader(Some(old));
    assert_eq!(new, f1);
    assert_eq!(c.core(f2).log_end(), c.core(f1).log_end());
    // The old leader comes back (its log holds the same frames) and a follower restarts
    // with its log ending just before a padding, while the leader rolls on.
    c.start(old);
    let session = c.connect();
    let mut seq = 0u64;
    leave_tail(&mut c, new, session, &mut seq, 8);
    c.crash(f2);
    for t in [16, 40, 24] {
        offer(&mut c, new, session, &mut seq, 300);
        leave_tail(&mut c, new, session, &mut seq, t);
    }
    offer(&mut c, new, session, &mut seq, 300);
    for _ in 0..11 {
        c.tick();
    }
    assert_eq!(c.core(old).commit_position(), c.core(new).log_end());
    c.start(f2);
    for _ in 0..300 {
        c.tick();
    }
    let end = c.core(new).log_end();
    for i in 0..3 {
        assert_eq!(c.core(i).log_end(), end, "member {i}");
        assert_eq!(c.core(i).commit_position(), end, "member {i}");
        assert_eq!(c.core(i).applied_position(), end, "member {i}");
    }
    c.check_agreement();
}
