//! An in-process, deterministic cluster for tests and benchmarks: members wired by an
//! in-memory network that delivers in order (links can be cut), storage that is durable at
//! once, a test service that records everything it applies, and crash, restart and wipe.
//!
//! It is not the simulator (no latency, loss, reordering or disk faults); it shows the core and
//! the container working end to end, and is small enough to read.

pub mod node;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::codec::client::{Egress, EventCode, Ingress};
use crate::codec::peer::PeerMessage;
use crate::consensus::{
    ClientAddr, Command, Config, Consensus, Input, LogPosition, LogStore, MemLog, MemberId,
    NodeState, Outbox, SessionId, Snapshot,
};
use crate::container::ServiceContainer;
use crate::container::remote::{InlineLink, SplitApp};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SnapshotImage, SnapshotWriter,
};

/// A service that records everything, for checking exactly-once and determinism.
///
/// Messages: `T` + id (u64 LE) + delay (i64 LE): schedule timer `id` at now + delay;
/// `X` + id: cancel timer `id`; `S` + bytes: offer `bytes` as a service message; `C`: close
/// the sending session; anything else: echoed back as the reply `re:` + message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestService {
    /// (session (0 for service messages), sequence, message) in the order applied.
    pub applied: Vec<(u64, u64, Vec<u8>)>,
    /// (correlation id, timestamp) of fired timers.
    pub timers_fired: Vec<(u64, i64)>,
    /// Sessions opened.
    pub opened: Vec<u64>,
    /// Sessions closed, with reasons.
    pub closed: Vec<(u64, CloseReason)>,
    /// Leadership terms seen.
    pub terms: Vec<u64>,
    /// Whether it was started from a snapshot.
    pub from_snapshot: bool,
}

impl ClusteredService for TestService {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        if let Some(mut img) = snapshot {
            self.from_snapshot = true;
            let n = img.read_u64().expect("count");
            for _ in 0..n {
                let s = img.read_u64().expect("session");
                let q = img.read_u64().expect("seq");
                let m = img.read_bytes().expect("message").to_vec();
                self.applied.push((s, q, m));
            }
            let n = img.read_u64().expect("count");
            for _ in 0..n {
                let id = img.read_u64().expect("id");
                let ts = img.read_i64().expect("ts");
                self.timers_fired.push((id, ts));
            }
        }
    }

    fn on_session_open(&mut self, _: &mut dyn Cluster, s: &ClientSession<'_>, _: i64) {
        self.opened.push(s.id.0);
    }

    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        s: &ClientSession<'_>,
        _: i64,
        r: CloseReason,
    ) {
        self.closed.push((s.id.0, r));
    }

    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        timestamp: i64,
        message: &[u8],
        header: &Header,
    ) {
        assert_eq!(cluster.time(), timestamp);
        self.applied.push((
            session.map_or(0, |s| s.0),
            header.sequence,
            message.to_vec(),
        ));
        let Some(session) = session else { return };
        match message.first() {
            Some(b'T') if message.len() == 17 => {
                let id = u64::from_le_bytes(message[1..9].try_into().expect("8"));
                let delay = i64::from_le_bytes(message[9..17].try_into().expect("8"));
                cluster.schedule_timer(id, timestamp + delay);
            }
            Some(b'X') if message.len() == 9 => {
                let id = u64::from_le_bytes(message[1..9].try_into().expect("8"));
                cluster.cancel_timer(id);
            }
            Some(b'S') => {
                cluster.offer(&message[1..]).expect("service offer");
            }
            Some(b'C') => {
                cluster.close_session(session);
            }
            _ => {
                let mut reply = Vec::with_capacity(message.len() + 3);
                reply.extend_from_slice(b"re:");
                reply.extend_from_slice(message);
                cluster.offer_egress(session, &reply).expect("reply");
            }
        }
    }

    fn on_timer_event(&mut self, _: &mut dyn Cluster, correlation_id: u64, timestamp: i64) {
        self.timers_fired.push((correlation_id, timestamp));
    }

    fn on_take_snapshot(&mut self, w: &mut SnapshotWriter<'_>) {
        w.write_u64(self.applied.len() as u64);
        for (s, q, m) in &self.applied {
            w.write_u64(*s);
            w.write_u64(*q);
            w.write_bytes(m);
        }
        w.write_u64(self.timers_fired.len() as u64);
        for (id, ts) in &self.timers_fired {
            w.write_u64(*id);
            w.write_i64(*ts);
        }
    }

    fn on_role_change(&mut self, _: Role) {}

    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, e: &LeadershipTermEvent) {
        self.terms.push(e.term);
    }

    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

/// The factory type of the test service.
pub type TestFactory = fn() -> TestService;

/// How the members of a [`TestCluster`] run their service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// Called in line by the core (the `shared` and `cluster` threading modes).
    Inline,
    /// Split as in the `dedicated` threading mode ([`crate::container::remote`]): a service
    /// engine applies the committed frames and records the service's effects, the core
    /// replays them. Here the engine runs on the same thread, after every input.
    Remote,
}

/// Defines, for each named scenario `fn name(mode: ServiceMode)` in scope, two tests:
/// `inline::name` (the service called in line by the core) and `remote::name` (split as in
/// the `dedicated` threading mode: the service applies on its side, the core replays its
/// effects, and the test kit checks both copies of the module state stay equal).
#[macro_export]
macro_rules! in_both_service_modes {
    ($($name:ident),* $(,)?) => {
        mod inline {
            $(#[test]
            fn $name() {
                super::$name($crate::testkit::ServiceMode::Inline);
            })*
        }
        mod remote {
            $(#[test]
            fn $name() {
                super::$name($crate::testkit::ServiceMode::Remote);
            })*
        }
    };
}

/// A test member's service (built by `fn() -> S`), in either [`ServiceMode`].
pub type TestApp<S = TestService> =
    SplitApp<ServiceContainer<fn() -> S>, InlineLink<ServiceContainer<fn() -> S>>>;

/// One member: its core (while up), its container, its "disk".
#[derive(Debug)]
pub struct TestNode<S: ClusteredService = TestService> {
    /// The core, `None` while the member is down.
    pub core: Option<Consensus<MemLog>>,
    /// The service.
    pub app: TestApp<S>,
    /// Commands not yet carried out.
    pub out: Outbox,
    /// The log while the member is down.
    pub stored_log: Option<MemLog>,
    /// The node state file.
    pub node_state: Option<NodeState>,
    /// Stored snapshots, oldest first.
    pub snapshots: Vec<Arc<Snapshot>>,
    /// Commands seen, for tests (only kinds other than sends).
    pub events: Vec<Command>,
    /// With [`TestCluster::lazy_fsync`]: the log is durable below this position.
    pub synced: LogPosition,
}

/// A packet in flight between members.
#[derive(Debug, Clone)]
struct Packet {
    from: u32,
    to: u32,
    bytes: Vec<u8>,
}

/// The in-process cluster, of members running the service `S` ([`TestService`] by default;
/// any service with [`TestCluster::with_service`]).
#[derive(Debug)]
pub struct TestCluster<S: ClusteredService = TestService> {
    /// The members.
    pub nodes: Vec<TestNode<S>>,
    factory: fn() -> S,
    /// Current time.
    pub now_ns: i64,
    /// Time per tick.
    pub tick_ns: i64,
    queue: VecDeque<Packet>,
    delayed: Vec<(i64, Packet)>,
    /// Directed links that drop everything.
    pub blocked: BTreeSet<(u32, u32)>,
    /// Messages received by each client address.
    pub client_inbox: BTreeMap<u64, VecDeque<Vec<u8>>>,
    config: fn(MemberId, u32) -> Config,
    /// (term, leader) pairs ever seen: at most one leader per term is checked on every step.
    pub leaders_by_term: BTreeMap<u64, u32>,
    /// Network faults, off by default.
    pub chaos: Option<Chaos>,
    /// When set, appended frames become durable only at the next tick (like `fsync = batch`),
    /// and a crash loses what was not durable yet (a machine crash). Off by default: storage is
    /// durable at once.
    pub lazy_fsync: bool,
    /// How members run their service.
    pub mode: ServiceMode,
}

/// Network faults for [`TestCluster`]: each packet is dropped, duplicated or delayed (sent to
/// the back of the queue, i.e. reordered) with the given probabilities (per mille), from a
/// seeded PRNG.
#[derive(Debug, Clone)]
pub struct Chaos {
    /// The PRNG.
    pub rng: crate::consensus::rng::SplitMix64,
    /// Drop probability, per mille.
    pub drop_per_mille: u64,
    /// Duplicate probability, per mille.
    pub dup_per_mille: u64,
    /// Reorder probability, per mille.
    pub reorder_per_mille: u64,
    /// Probability, per mille, that a packet is held back for up to `max_delay_ns` (delivered
    /// after later packets, possibly in a later term).
    pub delay_per_mille: u64,
    /// Longest hold-back.
    pub max_delay_ns: i64,
}

/// The configuration the test cluster uses by default: 100 ms election timeout, 10 ms
/// heartbeats, 1 s session timeout.
pub fn test_config(id: MemberId, n: u32) -> Config {
    let mut c = Config::new(id, n);
    c.election_timeout_ns = 100_000_000;
    c.heartbeat_interval_ns = 10_000_000;
    c.session_timeout_ns = 1_000_000_000;
    c.seed = 0xC0FFEE + u64::from(id.0);
    c
}

impl TestCluster {
    /// A new cluster of `n` members with [`test_config`], all started at time 0.
    pub fn new(n: u32) -> Self {
        Self::with_config(n, test_config)
    }

    /// A new cluster of `n` members with configurations from `config`.
    pub fn with_config(n: u32, config: fn(MemberId, u32) -> Config) -> Self {
        Self::with_config_in_mode(n, config, ServiceMode::Inline)
    }

    /// A new cluster of `n` members with [`test_config`], running their service in `mode`.
    pub fn in_mode(n: u32, mode: ServiceMode) -> Self {
        Self::with_config_in_mode(n, test_config, mode)
    }

    /// A new cluster of `n` members with configurations from `config`, running their service
    /// in `mode`.
    pub fn with_config_in_mode(
        n: u32,
        config: fn(MemberId, u32) -> Config,
        mode: ServiceMode,
    ) -> Self {
        Self::with_service(n, TestService::default, config, mode)
    }
}

impl<S: ClusteredService> TestCluster<S> {
    /// A new cluster of `n` members running services built by `factory`, with configurations
    /// from `config`, in `mode`, all started at time 0.
    pub fn with_service(
        n: u32,
        factory: fn() -> S,
        config: fn(MemberId, u32) -> Config,
        mode: ServiceMode,
    ) -> Self {
        let mut c = Self {
            factory,
            nodes: Vec::new(),
            now_ns: 0,
            tick_ns: 1_000_000,
            queue: VecDeque::new(),
            delayed: Vec::new(),
            blocked: BTreeSet::new(),
            client_inbox: BTreeMap::new(),
            config,
            leaders_by_term: BTreeMap::new(),
            chaos: None,
            lazy_fsync: false,
            mode,
        };
        for _ in 0..n {
            c.nodes.push(TestNode {
                core: None,
                app: TestApp::Inline(ServiceContainer::new(factory)),
                out: Outbox::new(),
                stored_log: Some(MemLog::new()),
                node_state: Some(NodeState::default()),
                snapshots: Vec::new(),
                events: Vec::new(),
                synced: LogPosition(0),
            });
        }
        for i in 0..n {
            c.start_node(i);
        }
        c.settle();
        c
    }

    fn start_node(&mut self, i: u32) {
        let cfg = (self.config)(MemberId(i), self.nodes.len() as u32);
        let n = &mut self.nodes[i as usize];
        let log = n.stored_log.take().unwrap_or_default();
        let snap = n.snapshots.last().cloned();
        let mut core = Consensus::new(cfg, log, n.node_state, snap);
        n.app = TestApp::Inline(ServiceContainer::new(self.factory));
        core.start(self.now_ns, &mut n.app, &mut n.out);
        if self.mode == ServiceMode::Remote {
            // As a node does once its core has started: the service moves behind the link.
            n.app.split_in_line(&core, InlineLink::new());
        }
        n.core = Some(core);
    }

    /// [`ServiceMode::Remote`]: hands member `i`'s engine the newly committed frames and has
    /// the core apply (and replay) what the engine applied.
    ///
    /// # Panics
    /// If the replay failed: the split diverged from the engine.
    fn pump(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        if let Some(core) = n.core.as_mut()
            && let Some(e) = n.app.pump(core, &mut n.out, usize::MAX)
        {
            panic!("member {i}: {e}");
        }
    }

    /// The configured member count.
    pub fn size(&self) -> u32 {
        self.nodes.len() as u32
    }

    /// Member `i`'s core (panics if down).
    pub fn core(&self, i: u32) -> &Consensus<MemLog> {
        self.nodes[i as usize].core.as_ref().expect("member is up")
    }

    /// Member `i`'s service (panics if not started).
    pub fn service(&self, i: u32) -> &S {
        self.nodes[i as usize]
            .app
            .app()
            .and_then(ServiceContainer::service)
            .expect("started")
    }

    /// In [`ServiceMode::Remote`], member `i`'s engine's copy of the module state, when it
    /// applied as far as the core (it equals the core's then).
    pub fn engine_module_state(&self, i: u32) -> Option<&crate::consensus::ModuleState> {
        let n = &self.nodes[i as usize];
        n.app.engine_state_at(n.core.as_ref()?)
    }

    /// Whether member `i` is up.
    pub fn is_up(&self, i: u32) -> bool {
        self.nodes[i as usize].core.is_some()
    }

    /// Feeds `input` to member `i` (if up) and carries out its commands.
    pub fn input(&mut self, i: u32, input: Input<'_>) {
        let n = &mut self.nodes[i as usize];
        if let Some(core) = n.core.as_mut() {
            core.handle(input, &mut n.app, &mut n.out);
        }
        self.pump(i);
        self.drain(i);
    }

    /// Carries out member `i`'s commands until none are left.
    fn drain(&mut self, i: u32) {
        loop {
            let n = &mut self.nodes[i as usize];
            if n.out.is_empty() {
                return;
            }
            let out = std::mem::take(&mut n.out);
            let mut follow_up: Vec<Input<'static>> = Vec::new();
            for c in &out.commands {
                match c {
                    Command::SendPeer { to, bytes } => {
                        if !self.blocked.contains(&(i, to.0)) {
                            self.queue.push_back(Packet {
                                from: i,
                                to: to.0,
                                bytes: out.bytes[bytes.clone()].to_vec(),
                            });
                        }
                    }
                    Command::SendClient { to, bytes } => {
                        self.client_inbox
                            .entry(to.0)
                            .or_default()
                            .push_back(out.bytes[bytes.clone()].to_vec());
                    }
                    Command::PersistState { id, state } => {
                        n.node_state = Some(*state);
                        follow_up.push(Input::StatePersisted { id: *id });
                    }
                    Command::Appended { to, epoch, .. } => {
                        if !self.lazy_fsync {
                            n.synced = *to;
                            follow_up.push(Input::LogDurable {
                                position: *to,
                                epoch: *epoch,
                            });
                        }
                    }
                    Command::Truncated { position, .. } => {
                        n.synced = n.synced.min(*position);
                        n.events.push(c.clone());
                    }
                    Command::SnapshotTaken { snapshot } => {
                        n.snapshots.push(snapshot.clone());
                        n.events.push(c.clone());
                    }
                    Command::SnapshotInstalled { snapshot, .. } => {
                        n.snapshots.push(snapshot.clone());
                        n.synced = snapshot.position;
                        n.events.push(c.clone());
                    }
                    other => n.events.push(other.clone()),
                }
            }
            let mut reuse = out;
            reuse.clear();
            let n = &mut self.nodes[i as usize];
            if n.out.is_empty() {
                n.out = reuse;
            }
            for input in follow_up {
                if let Some(core) = n.core.as_mut() {
                    core.handle(input, &mut n.app, &mut n.out);
                }
            }
            self.pump(i);
            self.check_leaders();
        }
    }

    fn check_leaders(&mut self) {
        for (i, n) in self.nodes.iter().enumerate() {
            if let Some(c) = n.core.as_ref().filter(|c| c.role() == Role::Leader) {
                let prev = self.leaders_by_term.insert(c.term().0, i as u32);
                assert!(
                    prev.is_none_or(|p| p == i as u32),
                    "two leaders in {}: {} and {i}",
                    c.term(),
                    prev.unwrap_or(0)
                );
            }
        }
    }

    /// Delivers every packet in flight (and what they cause) until the network is quiet.
    pub fn settle(&mut self) {
        for i in 0..self.size() {
            self.drain(i);
        }
        let mut budget = 10_000_000u64;
        while let Some(p) = self.queue.pop_front() {
            budget -= 1;
            assert!(budget > 0, "network never settles");
            if self.blocked.contains(&(p.from, p.to)) || !self.is_up(p.to) {
                continue;
            }
            if let Some(ch) = self.chaos.as_mut() {
                let r = ch.rng.below(1000);
                if r < ch.drop_per_mille {
                    continue;
                }
                if r < ch.drop_per_mille + ch.dup_per_mille {
                    self.queue.push_back(p.clone());
                } else if r < ch.drop_per_mille + ch.dup_per_mille + ch.reorder_per_mille
                    && !self.queue.is_empty()
                {
                    self.queue.push_back(p);
                    continue;
                } else if r < ch.drop_per_mille
                    + ch.dup_per_mille
                    + ch.reorder_per_mille
                    + ch.delay_per_mille
                {
                    let at = self.now_ns + 1 + ch.rng.below(ch.max_delay_ns.max(1) as u64) as i64;
                    self.delayed.push((at, p));
                    continue;
                }
            }
            let msg = PeerMessage::decode(&p.bytes).expect("valid peer message");
            self.input(
                p.to,
                Input::Peer {
                    from: MemberId(p.from),
                    msg,
                },
            );
        }
    }

    /// One tick: time advances, every member ticks and flushes, the network settles.
    pub fn tick(&mut self) {
        self.now_ns += self.tick_ns;
        let now = self.now_ns;
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, p) = self.delayed.swap_remove(i);
                self.queue.push_back(p);
            } else {
                i += 1;
            }
        }
        if self.lazy_fsync {
            for i in 0..self.size() {
                let Some(core) = self.nodes[i as usize].core.as_ref() else {
                    continue;
                };
                let (end, epoch) = (core.log_end(), core.epoch());
                self.nodes[i as usize].synced = end;
                self.input(
                    i,
                    Input::LogDurable {
                        position: end,
                        epoch,
                    },
                );
            }
        }
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

    /// Flushes every member (end of a duty cycle) and settles.
    pub fn flush(&mut self) {
        for i in 0..self.size() {
            self.input(i, Input::Flush);
        }
        self.settle();
    }

    /// Ticks for `duration_ns`.
    pub fn run_for(&mut self, duration_ns: i64) {
        let until = self.now_ns + duration_ns;
        while self.now_ns < until {
            self.tick();
        }
    }

    /// Ticks until `pred` holds or `max_ns` passes; returns whether it holds.
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

    /// The up member that leads in the highest term, if any.
    pub fn leader(&self) -> Option<u32> {
        (0..self.size())
            .filter(|&i| self.is_up(i) && self.core(i).role() == Role::Leader)
            .max_by_key(|&i| self.core(i).term())
    }

    /// Runs until a leader that a majority follows exists; returns it.
    ///
    /// # Panics
    /// If none emerges within 5 s.
    pub fn await_leader(&mut self) -> u32 {
        let ok = self.run_until(5_000_000_000, |c| {
            c.leader().is_some_and(|l| {
                let term = c.core(l).term();
                let followers = (0..c.size())
                    .filter(|&i| {
                        c.is_up(i)
                            && c.core(i).term() == term
                            && c.core(i).leader() == Some(MemberId(l))
                    })
                    .count();
                followers > c.nodes.len() / 2
            })
        });
        assert!(ok, "no leader within 5 s");
        self.leader().expect("leader")
    }

    /// A client at `client` sends `msg` to member `to` (delivered at once).
    pub fn client_send(&mut self, client: u64, to: u32, msg: Ingress<'_>) {
        let mut bytes = Vec::new();
        msg.encode(&mut bytes);
        let decoded = Ingress::decode(&bytes).expect("valid ingress");
        self.input(
            to,
            Input::Client {
                from: ClientAddr(client),
                msg: decoded,
            },
        );
    }

    /// Takes what client `client` received.
    pub fn take_client(&mut self, client: u64) -> Vec<Vec<u8>> {
        self.client_inbox
            .get_mut(&client)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Connects client `client` through the leader; returns its session.
    ///
    /// # Panics
    /// If no session opens within 2 s.
    pub fn connect(&mut self, client: u64) -> SessionId {
        let leader = self.await_leader();
        self.client_send(
            client,
            leader,
            Ingress::Connect {
                correlation_id: 77,
                credentials: b"",
            },
        );
        self.flush();
        let mut got = None;
        for _ in 0..2000 {
            for m in self.take_client(client) {
                if let Ok(Egress::SessionEvent {
                    code: EventCode::Ok,
                    session,
                    correlation_id: 77,
                    ..
                }) = Egress::decode(&m)
                {
                    got = Some(session);
                }
            }
            if got.is_some() {
                break;
            }
            self.tick();
        }
        got.expect("session opened")
    }

    /// Crashes member `i`: its core is dropped; its node state and snapshots are kept, and its
    /// log too (up to what was durable, with [`TestCluster::lazy_fsync`]).
    pub fn crash(&mut self, i: u32) {
        let lose_unsynced = self.lazy_fsync;
        let n = &mut self.nodes[i as usize];
        if let Some(core) = n.core.take() {
            let mut log = core.into_log();
            if lose_unsynced && n.synced < log.end() {
                let keep = n.synced.max(log.start().0);
                log.truncate(keep);
            }
            n.stored_log = Some(log);
        }
        n.out.clear();
    }

    /// Restarts a crashed member from its disk.
    pub fn restart(&mut self, i: u32) {
        assert!(!self.is_up(i));
        self.start_node(i);
        self.drain(i);
    }

    /// Crashes member `i`, wipes its directory, and restarts it (it comes back as a learner).
    pub fn wipe_and_restart(&mut self, i: u32) {
        self.crash(i);
        let n = &mut self.nodes[i as usize];
        n.stored_log = Some(MemLog::new());
        n.node_state = None;
        n.snapshots.clear();
        self.restart(i);
    }

    /// Cuts every link between `group` and the others.
    pub fn partition(&mut self, group: &[u32]) {
        for &a in group {
            for b in 0..self.size() {
                if !group.contains(&b) {
                    self.blocked.insert((a, b));
                    self.blocked.insert((b, a));
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}

impl TestCluster {
    /// Checks that every pair of up members agrees on the frames both have committed, holds the
    /// same module state when both applied up to the same position, and that every member's
    /// service applied the same sequence of messages up to its position.
    ///
    /// # Panics
    /// On a disagreement.
    pub fn check_consistency(&self) {
        let up: Vec<u32> = (0..self.size()).filter(|&i| self.is_up(i)).collect();
        for w in up.windows(2) {
            let (a, b) = (self.core(w[0]), self.core(w[1]));
            let from = a.log().start().0.max(b.log().start().0);
            let to = a.commit_position().min(b.commit_position());
            let mut pos = from;
            while pos < to {
                let fa = a.log().read(pos).expect("committed frame a");
                let fb = b.log().read(pos).expect("committed frame b");
                assert_eq!(fa, fb, "members {} and {} differ at {pos}", w[0], w[1]);
                pos = pos.advance(fa.len_aligned as u64);
            }
            if a.applied_position() == b.applied_position() {
                assert_eq!(
                    a.module_state(),
                    b.module_state(),
                    "members {} and {} applied the same log into different module state",
                    w[0],
                    w[1]
                );
            }
            for &m in w {
                if let Some(engine) = self.engine_module_state(m) {
                    assert!(
                        same_replicated_state(engine, self.core(m).module_state()),
                        "member {m}: the service engine's module state differs from the core's"
                    );
                }
            }
            let (sa, sb) = (self.service(w[0]), self.service(w[1]));
            let n = sa.applied.len().min(sb.applied.len());
            assert_eq!(sa.applied[..n], sb.applied[..n], "services diverged");
        }
    }
}

/// Whether two module states are equal in what is replicated (the leader-only transient
/// fields aside).
fn same_replicated_state(
    a: &crate::consensus::ModuleState,
    b: &crate::consensus::ModuleState,
) -> bool {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    a.encode(&mut x);
    b.encode(&mut y);
    x == y
}
