//! A small in-process cluster for the samples' integration tests, generic over the service.
//!
//! `tandem_cluster::testkit::TestCluster` hosts only its own `TestService`, so this is the same
//! wiring (real consensus core and service container, an in-memory network that delivers in
//! order, storage durable at once, crash / restart / wipe) for any service, built from the
//! public `consensus`, `container` and `codec` modules. It adds a client that follows the
//! leader across a failover and resends what was not acknowledged.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use tandem_cluster::codec::client::{Egress, EventCode, Ingress};
use tandem_cluster::codec::peer::PeerMessage;
use tandem_cluster::consensus::{
    ClientAddr, Command, Config, Consensus, Input, LogPosition, MemLog, MemberId, NodeState,
    Outbox, SessionId, Snapshot,
};
use tandem_cluster::container::ServiceContainer;
use tandem_cluster::testkit::test_config;
use tandem_service_api::{ClusteredService, Role};

/// One member.
pub struct Node<S: ClusteredService> {
    pub core: Option<Consensus<MemLog>>,
    pub app: ServiceContainer<fn() -> S>,
    out: Outbox,
    stored_log: Option<MemLog>,
    node_state: Option<NodeState>,
    pub snapshots: Vec<Arc<Snapshot>>,
}

/// A client: one session, its sequence numbers, what is not acknowledged yet, and the replies
/// received (each once, in egress order).
pub struct Client {
    pub addr: u64,
    pub session: SessionId,
    next_seq: u64,
    unacked: BTreeMap<u64, Vec<u8>>,
    last_egress_seq: u64,
    pub replies: Vec<(u64, Vec<u8>)>,
    pub closed: bool,
}

pub struct Harness<S: ClusteredService> {
    pub nodes: Vec<Node<S>>,
    pub now_ns: i64,
    factory: fn() -> S,
    config: fn(MemberId, u32) -> Config,
    queue: VecDeque<(u32, u32, Vec<u8>)>,
    inbox: BTreeMap<u64, VecDeque<Vec<u8>>>,
}

/// The testkit's configuration with a longer session timeout (10 s), so that quiet clients
/// stay connected.
pub fn patient_config(id: MemberId, n: u32) -> Config {
    let mut c = test_config(id, n);
    c.session_timeout_ns = 10_000_000_000;
    c
}

impl<S: ClusteredService> Harness<S> {
    pub fn new(n: u32, factory: fn() -> S) -> Self {
        Self::with_config(n, factory, patient_config)
    }

    pub fn with_config(n: u32, factory: fn() -> S, config: fn(MemberId, u32) -> Config) -> Self {
        let mut h = Self {
            nodes: Vec::new(),
            now_ns: 0,
            factory,
            config,
            queue: VecDeque::new(),
            inbox: BTreeMap::new(),
        };
        for _ in 0..n {
            h.nodes.push(Node {
                core: None,
                app: ServiceContainer::new(factory),
                out: Outbox::new(),
                stored_log: Some(MemLog::new()),
                node_state: Some(NodeState::default()),
                snapshots: Vec::new(),
            });
        }
        for i in 0..n {
            h.start(i);
        }
        h
    }

    fn start(&mut self, i: u32) {
        let cfg = (self.config)(MemberId(i), self.nodes.len() as u32);
        let factory = self.factory;
        let n = &mut self.nodes[i as usize];
        let log = n.stored_log.take().unwrap_or_default();
        let mut core = Consensus::new(cfg, log, n.node_state, n.snapshots.last().cloned());
        n.app = ServiceContainer::new(factory);
        core.start(self.now_ns, &mut n.app, &mut n.out);
        n.core = Some(core);
        self.drain(i);
    }

    pub fn size(&self) -> u32 {
        self.nodes.len() as u32
    }

    pub fn is_up(&self, i: u32) -> bool {
        self.nodes[i as usize].core.is_some()
    }

    pub fn core(&self, i: u32) -> &Consensus<MemLog> {
        self.nodes[i as usize].core.as_ref().expect("member is up")
    }

    pub fn service(&self, i: u32) -> &S {
        self.nodes[i as usize].app.service().expect("started")
    }

    pub fn input(&mut self, i: u32, input: Input<'_>) {
        let n = &mut self.nodes[i as usize];
        if let Some(core) = n.core.as_mut() {
            core.handle(input, &mut n.app, &mut n.out);
        }
        self.drain(i);
    }

    fn drain(&mut self, i: u32) {
        loop {
            let n = &mut self.nodes[i as usize];
            if n.out.is_empty() {
                return;
            }
            let out = std::mem::take(&mut n.out);
            let mut follow_up = Vec::new();
            for c in &out.commands {
                match c {
                    Command::SendPeer { to, bytes } => {
                        self.queue
                            .push_back((i, to.0, out.bytes[bytes.clone()].to_vec()));
                    }
                    Command::SendClient { to, bytes } => {
                        self.inbox
                            .entry(to.0)
                            .or_default()
                            .push_back(out.bytes[bytes.clone()].to_vec());
                    }
                    Command::PersistState { id, state } => {
                        n.node_state = Some(*state);
                        follow_up.push(Input::StatePersisted { id: *id });
                    }
                    Command::Appended { to, epoch, .. } => follow_up.push(Input::LogDurable {
                        position: *to,
                        epoch: *epoch,
                    }),
                    Command::SnapshotTaken { snapshot }
                    | Command::SnapshotInstalled { snapshot, .. } => {
                        n.snapshots.push(snapshot.clone());
                    }
                    _ => {}
                }
            }
            for input in follow_up {
                if let Some(core) = n.core.as_mut() {
                    core.handle(input, &mut n.app, &mut n.out);
                }
            }
        }
    }

    pub fn settle(&mut self) {
        let mut budget = 10_000_000u64;
        while let Some((from, to, bytes)) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "network never settles");
            if !self.is_up(to) {
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

    pub fn tick(&mut self) {
        self.now_ns += 1_000_000;
        for i in 0..self.size() {
            self.input(
                i,
                Input::Tick {
                    now_ns: self.now_ns,
                },
            );
        }
        self.settle();
    }

    pub fn flush(&mut self) {
        for i in 0..self.size() {
            self.input(i, Input::Flush);
        }
        self.settle();
    }

    pub fn run_for(&mut self, duration_ns: i64) {
        let until = self.now_ns + duration_ns;
        while self.now_ns < until {
            self.tick();
        }
    }

    pub fn run_until(&mut self, max_ns: i64, pred: impl Fn(&Self) -> bool) -> bool {
        let until = self.now_ns + max_ns;
        while self.now_ns < until {
            if pred(self) {
                return true;
            }
            self.tick();
        }
        pred(self)
    }

    pub fn leader(&self) -> Option<u32> {
        (0..self.size())
            .filter(|&i| self.is_up(i) && self.core(i).role() == Role::Leader)
            .max_by_key(|&i| self.core(i).term())
    }

    /// Runs until a leader that a majority follows exists; returns it.
    pub fn await_leader(&mut self) -> u32 {
        let ok = self.run_until(5_000_000_000, |h| {
            h.leader().is_some_and(|l| {
                let term = h.core(l).term();
                let followers = (0..h.size())
                    .filter(|&i| {
                        h.is_up(i)
                            && h.core(i).term() == term
                            && h.core(i).leader() == Some(MemberId(l))
                    })
                    .count();
                followers > h.nodes.len() / 2
            })
        });
        assert!(ok, "no leader within 5 s");
        self.leader().expect("leader")
    }

    fn client_send(&mut self, addr: u64, to: u32, msg: Ingress<'_>) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        let decoded = Ingress::decode(&bytes).expect("valid ingress");
        self.input(
            to,
            Input::Client {
                from: ClientAddr(addr),
                msg: decoded,
            },
        );
    }

    /// Opens a session for a client listening at `addr`.
    pub fn connect(&mut self, addr: u64) -> Client {
        let leader = self.await_leader();
        self.client_send(
            addr,
            leader,
            Ingress::Connect {
                correlation_id: addr,
                credentials: b"",
            },
        );
        self.flush();
        for _ in 0..2000 {
            for m in self
                .inbox
                .get_mut(&addr)
                .map(std::mem::take)
                .unwrap_or_default()
            {
                if let Ok(Egress::SessionEvent {
                    code: EventCode::Ok,
                    session,
                    correlation_id,
                    ..
                }) = Egress::decode(&m)
                    && correlation_id == addr
                {
                    return Client {
                        addr,
                        session,
                        next_seq: 1,
                        unacked: BTreeMap::new(),
                        last_egress_seq: 0,
                        replies: Vec::new(),
                        closed: false,
                    };
                }
            }
            self.tick();
        }
        panic!("session for client {addr} did not open");
    }

    /// Sends `payload` on `client`'s session to the current leader (no waiting).
    pub fn send(&mut self, client: &mut Client, payload: &[u8]) {
        let seq = client.next_seq;
        client.next_seq += 1;
        client.unacked.insert(seq, payload.to_vec());
        if let Some(leader) = self.leader() {
            self.client_send(
                client.addr,
                leader,
                Ingress::Message {
                    session: client.session,
                    sequence: seq,
                    payload,
                },
            );
        }
    }

    /// Re-attaches `client` to the current leader and resends what it has not seen
    /// acknowledged (duplicates are dropped by the cluster).
    pub fn reattach(&mut self, client: &mut Client) {
        let leader = self.await_leader();
        self.client_send(
            client.addr,
            leader,
            Ingress::Attach {
                session: client.session,
                last_egress_seq: client.last_egress_seq,
            },
        );
        let pending: Vec<(u64, Vec<u8>)> = client
            .unacked
            .iter()
            .map(|(s, p)| (*s, p.clone()))
            .collect();
        for (seq, payload) in pending {
            self.client_send(
                client.addr,
                leader,
                Ingress::Message {
                    session: client.session,
                    sequence: seq,
                    payload: &payload,
                },
            );
        }
    }

    /// Keeps `client`'s session alive.
    pub fn keep_alive(&mut self, client: &Client) {
        if let Some(leader) = self.leader() {
            self.client_send(
                client.addr,
                leader,
                Ingress::KeepAlive {
                    session: client.session,
                },
            );
        }
    }

    /// Closes `client`'s session.
    pub fn close(&mut self, client: &Client) {
        let leader = self.await_leader();
        self.client_send(
            client.addr,
            leader,
            Ingress::Close {
                session: client.session,
            },
        );
    }

    /// Moves what arrived for `client` into it: replies (once each), acknowledgements.
    pub fn poll(&mut self, client: &mut Client) {
        let msgs = self
            .inbox
            .get_mut(&client.addr)
            .map(std::mem::take)
            .unwrap_or_default();
        for m in msgs {
            match Egress::decode(&m).expect("valid egress") {
                Egress::Reply {
                    egress_seq,
                    request_seq,
                    committed_seq,
                    payload,
                    ..
                } => {
                    client.unacked.retain(|&s, _| s > committed_seq);
                    if egress_seq > client.last_egress_seq {
                        assert_eq!(egress_seq, client.last_egress_seq + 1, "reply gap");
                        client.last_egress_seq = egress_seq;
                        client.replies.push((request_seq, payload.to_vec()));
                    }
                }
                Egress::Ack { committed_seq, .. } => {
                    client.unacked.retain(|&s, _| s > committed_seq);
                }
                Egress::SessionEvent {
                    code: EventCode::Closed,
                    ..
                } => client.closed = true,
                _ => {}
            }
        }
    }

    /// Ticks until every client has every message acknowledged.
    pub fn await_acked(&mut self, clients: &mut [Client]) {
        self.flush();
        for _ in 0..5000 {
            for c in clients.iter_mut() {
                self.poll(c);
            }
            if clients.iter().all(|c| c.unacked.is_empty()) {
                return;
            }
            self.tick();
        }
        panic!("messages not acknowledged within 5 s");
    }

    /// Ticks until every up member has applied everything the leader committed.
    pub fn await_applied(&mut self) {
        let ok = self.run_until(5_000_000_000, |h| {
            let Some(l) = h.leader() else { return false };
            let commit = h.core(l).commit_position();
            (0..h.size())
                .filter(|&i| h.is_up(i))
                .all(|i| h.core(i).applied_position() == commit)
        });
        assert!(ok, "members did not converge within 5 s");
    }

    /// The leader takes a snapshot; waits until every up member stored one.
    pub fn snapshot(&mut self) -> LogPosition {
        let leader = self.await_leader();
        let before: Vec<usize> = self.nodes.iter().map(|n| n.snapshots.len()).collect();
        self.input(leader, Input::TakeSnapshot);
        self.flush();
        let ok = self.run_until(5_000_000_000, |h| {
            (0..h.size())
                .filter(|&i| h.is_up(i))
                .all(|i| h.nodes[i as usize].snapshots.len() > before[i as usize])
        });
        assert!(ok, "snapshot not taken everywhere");
        self.nodes[leader as usize]
            .snapshots
            .last()
            .expect("snapshot")
            .position
    }

    /// Drops the log below `position` on every up member.
    pub fn purge(&mut self, position: LogPosition) {
        for i in 0..self.size() {
            self.input(i, Input::Purge { position });
        }
    }

    pub fn crash(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        if let Some(core) = n.core.take() {
            n.stored_log = Some(core.into_log());
        }
        n.out.clear();
        self.queue.retain(|(_, to, _)| *to != i);
    }

    pub fn restart(&mut self, i: u32) {
        assert!(!self.is_up(i));
        self.start(i);
    }

    /// Crashes member `i`, wipes its directory and restarts it (it rejoins as a learner and
    /// catches up from the leader's snapshot and log).
    pub fn wipe_and_restart(&mut self, i: u32) {
        self.crash(i);
        let n = &mut self.nodes[i as usize];
        n.stored_log = Some(MemLog::new());
        n.node_state = None;
        n.snapshots.clear();
        self.restart(i);
    }

    /// The state hash of every up member, by `hash`.
    pub fn hashes(&self, hash: impl Fn(&S) -> u32) -> Vec<(u32, u32)> {
        (0..self.size())
            .filter(|&i| self.is_up(i))
            .map(|i| (i, hash(self.service(i))))
            .collect()
    }

    /// Asserts that every up member holds the same state (by `hash`); returns it.
    pub fn assert_same_state(&mut self, hash: impl Fn(&S) -> u32) -> u32 {
        self.await_applied();
        let hashes = self.hashes(hash);
        assert!(hashes.len() >= 2);
        assert!(
            hashes.windows(2).all(|w| w[0].1 == w[1].1),
            "members hold different state: {hashes:?}"
        );
        hashes[0].1
    }
}
