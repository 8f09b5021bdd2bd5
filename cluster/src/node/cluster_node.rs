//! [`ClusterNode`] and [`NodeAgent`]: one member (consensus core, service container, archive,
//! control file and transport) as two agents, a [`NetworkAgent`] and a [`ConsensusAgent`],
//! linked by bounded lock-free pipes of preallocated buffers (`node::pipe`);
//! [`InProcessCluster`]: several members on one thread (`cluster` threading mode).
//!
//! # The consensus agent's duty cycle
//!
//! 1. Take what the network agent received from the inbound pipe; decode each message (peer
//!    messages from the peer socket, client messages from the client socket) and feed it to
//!    `Consensus::handle`; undecodable ones are dropped and counted.
//! 2. `Tick` with the monotonic clock (`AgentClock` nanoseconds since the node started;
//!    the core stamps cluster time from it, never from the wall clock).
//! 3. Carry out the commands in order: sends (onto the outbound pipe), durability (`fsync = none`: reported durable at
//!    once; `every`: the archive synced on append; `batch`: one `fdatasync` of the written
//!    segment per cycle, then reported), node state (written and fsynced, then
//!    `StatePersisted`), snapshots (file + recording-log entry), purge, control-file fields.
//! 4. `Flush` (the leader sends what it batched), carry out again, sync under `batch`.
//! 5. Act on the control toggle (cluster-wide actions go to the core as `Input::Operator`
//!    and are answered when the core reports them applied here; `stop` and `purge` act on
//!    this member); publish positions, counters and the status. When the core terminates
//!    (`stop`, or a `shutdown` / `abort` entry applied) the agent loop ends.
//!
//! # Threading
//!
//! The same agents run in every mode; only their placement on threads differs.
//!
//! * `shared`: one [`AgentRunner`] thread per member (`tandem-node-ID`) runs the member's
//!   [`NodeAgent`] (network agent, then consensus agent, each cycle) with the configured idle
//!   strategy, pinned to the first of the configured cores if any.
//! * `dedicated`: the network, consensus and service agents each on their own thread
//!   (`tandem-net-ID`, `tandem-cons-ID`, `tandem-svc-ID`), pinned to the first, second and
//!   third configured cores (`--cores` lists them in that order), each with the configured
//!   idle strategy (`spin` for the lowest latency on a machine with cores to spare). The
//!   service applies committed entries on its thread, ahead of the core, and the core replays
//!   the effects it recorded ([`crate::container::remote`], [`super::service_agent`]); until
//!   the core has started (recovery's replay) the service is called in line.
//! * `cluster`: [`InProcessCluster`] runs every member's [`NodeAgent`] in one
//!   [`ClusterAgent`] on one thread over an [`InProcHub`].

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::agent::{
    Agent, AgentClock, AgentError, AgentRunner, IdleStrategy, Termination, ThreadingMode,
};
use crate::codec::{Ingress, PeerMessage};
use crate::consensus::{
    Application, Authenticator, Command, Consensus, Input, LogPosition, LogStore, MemberId,
    OperatorAction, Outbox, Term,
};
use crate::container::ServiceContainer;
use crate::control::{
    Action, ActionResult, ControlFile, ControlIdent, Counter, MemberProgress, MemberRole,
    RequestId, ResultCode,
};
use crate::transport::{InProcHub, ReadinessGroup, Transport, TransportConfig, UdpConfig};
use tandem_archive::Durability;
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, Header, LeadershipTermEvent, Role, ServiceFactory,
    SessionId,
};

use super::config::NodeConfig;
use super::error::{NodeError, Result};
use super::files::NodeFiles;
use super::log_store::ArchiveLogStore;
use super::net::{NodeNetwork, client_addr, socket_addr};
use super::network_agent::{MemberLinks, NetworkAgent, Waker};
use super::pipe::Endpoint;
use super::service_agent::{PipeLink, ServiceAgent, ServiceLinks};
use crate::container::remote::{Forwarder, HashedApplication, SplitApp, encode_frames};

/// `dedicated`: committed bytes handed to the service agent per message, at most (below the
/// pipe's retained buffer size, so its buffers keep their capacity; a single larger frame
/// goes alone).
const FORWARD_BYTES: usize = 12 << 10;

/// A function computing a hash of the service's state (for cross-member comparison).
pub type StateHash<S> = Box<dyn Fn(&S) -> u64 + Send>;

/// Optional extras for a node.
pub struct NodeHooks<S> {
    /// Hash of the service state, published with the applied position after every duty cycle
    /// that applied something, and computed at every snapshot: the leader appends its hash to
    /// the log and every member with a hook compares it with its own at that position (a
    /// difference is logged, recorded in the control file's error log and counted in
    /// [`Counter::StateDivergences`]).
    pub state_hash: Option<StateHash<S>>,
    /// Replaces the accept-all authenticator.
    pub authenticator: Option<Box<dyn Authenticator + Send>>,
    /// Run over this in-process hub instead of UDP.
    pub hub: Option<InProcHub>,
    /// UDP on the `std` path: poll the member's sockets through this group, shared with the
    /// other transports the same thread polls (`cluster` threading), so an idle turn of that
    /// thread makes one `epoll_wait` in all ([`ReadinessGroup`]).
    pub readiness: Option<ReadinessGroup>,
}

impl<S> Default for NodeHooks<S> {
    fn default() -> Self {
        Self {
            state_hash: None,
            authenticator: None,
            hub: None,
            readiness: None,
        }
    }
}

impl<S> std::fmt::Debug for NodeHooks<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHooks")
            .field("state_hash", &self.state_hash.is_some())
            .field("authenticator", &self.authenticator.is_some())
            .field("hub", &self.hub.is_some())
            .field("readiness", &self.readiness.is_some())
            .finish()
    }
}

/// A point-in-time view of a node, published by its agent after every duty cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    /// The member.
    pub member_id: u32,
    /// Its role.
    pub role: Role,
    /// Its term.
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<u32>,
    /// Commit position.
    pub commit_position: u64,
    /// Applied position.
    pub applied_position: u64,
    /// Log end.
    pub log_end: u64,
    /// Log start.
    pub log_start: u64,
    /// `(applied position, state hash)` from the state-hash hook.
    pub state_hash: Option<(u64, u64)>,
    /// Whether the agent is running (false once stopped, killed or failed).
    pub running: bool,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Times the member became leader.
    pub leaderships: u64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    member_id: u32,
    status: Mutex<NodeStatus>,
    running: AtomicBool,
    /// Whether the member led at its last status publication (a scheduling hint for
    /// [`ClusterAgent`], read without the status lock).
    leading: AtomicBool,
    /// Whether the member was not a learner at its last status publication (the same hint:
    /// a learner's acknowledgement completes no quorum).
    voting: AtomicBool,
    /// The pipes and flags between the member's agents.
    links: Arc<MemberLinks>,
}

impl Shared {
    fn new(member_id: u32, links: Arc<MemberLinks>) -> Self {
        Self {
            member_id,
            status: Mutex::new(NodeStatus {
                member_id,
                role: Role::Follower,
                term: 0,
                leader: None,
                commit_position: 0,
                applied_position: 0,
                log_end: 0,
                log_start: 0,
                state_hash: None,
                running: true,
                snapshots_installed: 0,
                leaderships: 0,
            }),
            running: AtomicBool::new(true),
            leading: AtomicBool::new(false),
            voting: AtomicBool::new(true),
            links,
        }
    }

    fn status(&self) -> NodeStatus {
        let mut s = *self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.running = self.running.load(Ordering::Acquire);
        s
    }

    /// Publishes the state-hash hook's `hash` of the service applied up to `applied`.
    pub(crate) fn set_state_hash(&self, applied: u64, hash: u64) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state_hash = Some((applied, hash));
    }
}

fn member_role(role: Role) -> MemberRole {
    match role {
        Role::Follower => MemberRole::Follower,
        Role::Candidate => MemberRole::Candidate,
        Role::Leader => MemberRole::Leader,
        Role::Learner => MemberRole::Learner,
    }
}

/// How many `(snapshot position, own hash)` pairs a node keeps to compare with the leader's.
const SNAPSHOT_HASHES: usize = 16;

/// The service container with the state-hash hook run at every snapshot the core takes, inside
/// the apply: the hash is of the state at exactly the snapshot position.
pub(crate) struct HashingApp<F: ServiceFactory> {
    pub(crate) container: ServiceContainer<F>,
    hook: Option<StateHash<F::Service>>,
    /// Hashes taken at snapshots, in the order of their `SnapshotTaken` commands.
    taken: VecDeque<u64>,
}

impl<F: ServiceFactory> HashingApp<F> {
    /// The hook's hash of the running service, if there are both.
    pub(crate) fn state_hash(&self) -> Option<u64> {
        let hook = self.hook.as_ref()?;
        self.container.service().map(hook)
    }
}

impl<F: ServiceFactory> HashedApplication for HashingApp<F> {
    fn take_snapshot_hash(&mut self) -> Option<u64> {
        self.taken.pop_back()
    }
}

/// The service as the core sees it: called in line (`shared`, `cluster`, and `dedicated`
/// until the core has started), or on its own thread behind a
/// [`crate::container::remote::RemoteApplication`] (`dedicated`, see
/// [`super::service_agent`]).
type NodeApp<F> = SplitApp<HashingApp<F>, PipeLink<F>>;

impl<F: ServiceFactory> SplitApp<HashingApp<F>, PipeLink<F>> {
    /// The state hash taken with the oldest snapshot not yet matched to its command.
    fn take_hash(&mut self) -> Option<u64> {
        match self {
            Self::Inline(a) => a.taken.pop_front(),
            Self::Remote(a) => a.take_snapshot_hash(),
        }
    }

    fn clear_hashes(&mut self) {
        match self {
            Self::Inline(a) => a.taken.clear(),
            Self::Remote(a) => a.clear_snapshot_hashes(),
        }
    }
}

impl<F: ServiceFactory> Application for HashingApp<F> {
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        self.container.start(cluster, snapshot);
    }
    fn session_open(&mut self, c: &mut dyn Cluster, s: &ClientSession<'_>, t: i64) {
        self.container.session_open(c, s, t);
    }
    fn session_close(
        &mut self,
        c: &mut dyn Cluster,
        s: &ClientSession<'_>,
        t: i64,
        r: CloseReason,
    ) {
        self.container.session_close(c, s, t, r);
    }
    fn message(&mut self, c: &mut dyn Cluster, s: Option<SessionId>, t: i64, m: &[u8], h: &Header) {
        self.container.message(c, s, t, m, h);
    }
    fn timer_event(&mut self, c: &mut dyn Cluster, id: u64, t: i64) {
        self.container.timer_event(c, id, t);
    }
    fn new_leadership_term(&mut self, c: &mut dyn Cluster, e: &LeadershipTermEvent) {
        self.container.new_leadership_term(c, e);
    }
    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        self.container.take_snapshot(out);
        if let Some(hook) = &self.hook
            && let Some(service) = self.container.service()
        {
            self.taken.push_back(hook(service));
        }
    }
    fn role_change(&mut self, role: Role) {
        self.container.role_change(role);
    }
    fn terminate(&mut self, c: &mut dyn Cluster) {
        self.container.terminate(c);
    }
}

/// Everything a running member owns; dropped as a whole on close or kill.
struct Inner<F: ServiceFactory> {
    cfg: NodeConfig,
    core: Consensus<ArchiveLogStore>,
    app: NodeApp<F>,
    /// `dedicated`: the links to the service agent (the service moves there once the core
    /// has started).
    service: Option<Arc<ServiceLinks<F>>>,
    /// `dedicated`: hands committed frames to the service agent.
    forwarder: Forwarder,
    /// `(snapshot position, own state hash)` for the newest snapshots taken here, oldest
    /// first (compared with the leader's `StateHash` entries).
    snapshot_hashes: VecDeque<(u64, u64)>,
    files: NodeFiles,
    /// The directory holds the rejoin-as-learner mark (see `files::unclean_restart`).
    rejoin_marker: bool,
    /// The pipes to and from the member's network agent.
    links: Arc<MemberLinks>,
    /// Wakes the network agent's thread when this cycle queued sends.
    waker: Waker,
    sends_queued: bool,
    control: Arc<ControlFile>,
    out: Outbox,
    done: Outbox,
    epoch: AgentClock,
    now_ns: i64,
    /// `batch`: the highest `Appended` end not yet synced, and its epoch.
    unsynced: Option<(LogPosition, u64)>,
    /// `batch`: the log is durable below here.
    synced_to: u64,
    sync_file: Option<(u64, File)>,
    hashed_at: u64,
    /// A cluster-wide action in progress: the toggle request, the core's request id, and
    /// when it was taken (node clock).
    operator_request: Option<(RequestId, u64, i64)>,
    stop_request: Option<RequestId>,
    purge_request: Option<(RequestId, u64)>,
    /// Why the node stopped: a message, or a typed error ([`NodeError::Log`]).
    failed: Option<Box<dyn std::error::Error + Send + Sync>>,
    last_progress_ns: i64,
    /// Client datagrams from addresses the core cannot represent (IPv6).
    unaddressable_clients: u64,
}

/// One member as an [`Agent`]: its [`NetworkAgent`] and [`ConsensusAgent`] composed on one
/// thread (the `shared` threading mode; several of them make the `cluster` mode). Build it
/// with [`NodeAgent::new`], run it with an [`AgentRunner`] (see [`ClusterNode`]) or inside an
/// [`InProcessCluster`], or split it with [`NodeAgent::into_parts`] to give each part a
/// thread of its own (`dedicated`).
///
/// A cycle runs the network agent, then the consensus agent: what arrived is handed over in
/// the same cycle, what the consensus agent sends leaves at the start of the next (which
/// follows at once, the cycle having done work).
pub struct NodeAgent<F: ServiceFactory> {
    network: NetworkAgent,
    consensus: ConsensusAgent<F>,
    name: String,
}

impl<F: ServiceFactory> std::fmt::Debug for NodeAgent<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeAgent")
            .field("name", &self.name)
            .field("network", &self.network)
            .field("consensus", &self.consensus)
            .finish()
    }
}

/// A member's consensus agent: the consensus core, the service container it applies
/// committed entries to, the archive log, node files and the control file. It exchanges
/// messages with the member's [`NetworkAgent`] through bounded lock-free pipes.
pub struct ConsensusAgent<F: ServiceFactory> {
    inner: Option<Inner<F>>,
    shared: Arc<Shared>,
    name: String,
    started: bool,
}

impl<F: ServiceFactory> std::fmt::Debug for ConsensusAgent<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusAgent")
            .field("name", &self.name)
            .field("running", &self.inner.is_some())
            .finish()
    }
}

impl<F: ServiceFactory> NodeAgent<F> {
    /// Opens the node directory, recovers (newest valid snapshot, then the log, replayed by
    /// the core up to the node state's commit lower bound), creates the control file and binds
    /// the transport. The core starts in [`Agent::on_start`].
    ///
    /// # Errors
    /// [`NodeError`] for an invalid configuration, a directory of another member or cluster,
    /// corruption at or below the recorded commit position, or a port in use.
    pub fn new(cfg: NodeConfig, factory: F, hooks: NodeHooks<F::Service>) -> Result<Self> {
        cfg.validate()?;
        let opened = NodeFiles::open(&cfg)?;
        let log = opened.log;
        let (start, start_term) = match &opened.snapshot {
            Some(s)
                if s.position.0 >= log.start_position()
                    && s.position.0 <= log.append_position() =>
            {
                let term = if s.position.0 > log.start_position() {
                    log.term_at(s.position.0 - 1).map_or(s.term, Term)
                } else {
                    s.term
                };
                (s.position, term)
            }
            _ => (LogPosition(log.start_position()), Term(log.last_term())),
        };
        let start_term = if start.0 == 0 { Term(0) } else { start_term };
        let store = ArchiveLogStore::new(log, start, start_term);
        let mut core = Consensus::new(
            cfg.core_config(),
            store,
            opened.node_state,
            opened.snapshot.clone(),
        );
        if opened.rejoin_as_learner {
            core.rejoin_as_learner();
        }
        let rejoin_marker = opened.rejoin_as_learner;
        if let Some(a) = hooks.authenticator {
            core.set_authenticator(a);
        }
        let control = ControlFile::create(
            &cfg.dir,
            ControlIdent {
                cluster_id: cfg.cluster_id,
                member_id: cfg.member_id,
                member_count: cfg.members.len() as u32,
            },
            &cfg.members.to_string(),
        )
        .map_err(|source| NodeError::Control {
            dir: cfg.dir.clone(),
            source,
        })?;
        let net = match &hooks.hub {
            Some(hub) => NodeNetwork::InProc(Box::new(hub.bind_member(cfg.member_id).map_err(
                |source| NodeError::Transport {
                    member_id: cfg.member_id,
                    source,
                },
            )?)),
            None => {
                let tc = TransportConfig {
                    cluster_id: cfg.cluster_id,
                    udp: UdpConfig {
                        mtu: cfg.mtu,
                        ..UdpConfig::default()
                    },
                    ..TransportConfig::default()
                };
                let mut t = Transport::bind_member(tc, cfg.members.clone(), cfg.member_id, cfg.io)
                    .map_err(|source| NodeError::Transport {
                        member_id: cfg.member_id,
                        source,
                    })?;
                if let Some(group) = &hooks.readiness
                    && let Err(e) = t.join_readiness_group(group)
                {
                    // Its own epoll set serves as well, at a system call more per cycle.
                    tracing::warn!(member = cfg.member_id, error = %e, "readiness group not joined");
                }
                if let Some(reason) = t.fallback_reason() {
                    tracing::warn!(
                        member = cfg.member_id,
                        reason,
                        "io_uring unavailable; using std sockets"
                    );
                }
                NodeNetwork::Udp(Box::new(t))
            }
        };
        let links = Arc::new(MemberLinks::new());
        let shared = Arc::new(Shared::new(cfg.member_id, Arc::clone(&links)));
        let member_id = cfg.member_id;
        if let Some(s) = &opened.snapshot {
            control.set_snapshot_position(s.position.0);
        }
        let control = Arc::new(control);
        let network = NetworkAgent::new(member_id, net, Arc::clone(&links), Arc::clone(&control));
        let consensus = ConsensusAgent {
            inner: Some(Inner {
                core,
                app: NodeApp::Inline(HashingApp {
                    container: ServiceContainer::new(factory),
                    hook: hooks.state_hash,
                    taken: VecDeque::new(),
                }),
                service: None,
                forwarder: Forwarder::new(LogPosition(0)),
                snapshot_hashes: VecDeque::new(),
                files: opened.files,
                rejoin_marker,
                links,
                waker: Waker::default(),
                sends_queued: false,
                control,
                out: Outbox::new(),
                done: Outbox::new(),
                epoch: AgentClock::start(),
                now_ns: 0,
                unsynced: None,
                synced_to: 0,
                sync_file: None,
                hashed_at: u64::MAX,
                operator_request: None,
                stop_request: None,
                purge_request: None,
                failed: None,
                last_progress_ns: 0,
                unaddressable_clients: 0,
                cfg,
            }),
            shared,
            name: format!("consensus-{member_id}"),
            started: false,
        };
        Ok(Self {
            network,
            consensus,
            name: format!("tandem-node-{member_id}"),
        })
    }

    /// The member's agents, to run each on a thread of its own (`dedicated`): the network
    /// agent, the consensus agent, and the service agent (the service applies committed
    /// entries there, ahead of the core, once the consensus agent has started).
    ///
    /// The consensus and service agents must run on two different threads: installing a
    /// snapshot, the consensus agent waits (up to 30 s) for the service to restart from it,
    /// and closing, for it to take the termination (up to 2 s).
    pub fn into_parts(mut self) -> (NetworkAgent, ConsensusAgent<F>, ServiceAgent<F>) {
        let links = Arc::new(ServiceLinks::new());
        if let Some(inner) = self.consensus.inner.as_mut() {
            inner.service = Some(Arc::clone(&links));
        }
        let service = ServiceAgent::new(
            self.consensus.shared.member_id,
            links,
            Arc::clone(&self.network.links),
            Arc::clone(&self.consensus.shared),
        );
        (self.network, self.consensus, service)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.consensus.shared
    }

    fn control(&self) -> &Arc<ControlFile> {
        &self.network.control
    }

    /// Whether this member led at its last status publication (at most a millisecond old;
    /// false once killed).
    pub fn leads(&self) -> bool {
        self.consensus.shared.leading.load(Ordering::Relaxed)
    }

    /// Whether this member still runs (false once killed or stopped).
    pub fn is_running(&self) -> bool {
        self.consensus.shared.running.load(Ordering::Acquire)
    }

    /// Whether this member votes (it was not a learner at its last status publication).
    pub fn votes(&self) -> bool {
        self.consensus.shared.voting.load(Ordering::Relaxed)
    }

    /// The latest published status (at most a millisecond old while the member runs).
    pub fn status(&self) -> NodeStatus {
        self.consensus.shared.status()
    }
}

/// The followers that complete `leader`'s quorum in a cluster of `n` (`n / 2` of them): the
/// members after the leader in member order that can (`counts`: running voters; a killed
/// member never answers, a learner's answer counts for no quorum), as a bit set of member
/// indexes.
fn quorum_followers(n: usize, leader: usize, counts: impl Fn(usize) -> bool) -> u64 {
    let mut set = 0u64;
    let mut left = n / 2;
    for k in 1..n {
        let i = (leader + k) % n;
        if left > 0 && counts(i) {
            set |= 1 << i;
            left -= 1;
        }
    }
    set
}

/// The members outside the leader's quorum, in member order.
fn outside_order(n: usize, leader: usize, quorum: u64, visit: impl FnMut(usize)) {
    (0..n)
        .filter(|&i| i != leader && quorum & (1 << i) == 0)
        .for_each(visit);
}

/// The path of an answer: the leader, its quorum's followers in member order after it, and
/// the leader again (once only without followers).
fn answer_order(n: usize, leader: usize, quorum: u64, mut visit: impl FnMut(usize)) {
    visit(leader);
    let mut any = false;
    for k in 1..n {
        let i = (leader + k) % n;
        if quorum & (1 << i) != 0 {
            visit(i);
            any = true;
        }
    }
    if any {
        visit(leader);
    }
}

/// Every member of one cluster on one thread: the `cluster` threading mode's agent (what
/// [`InProcessCluster`] runs, and `cluster-bench --threading cluster`).
///
/// A duty cycle runs every member once, in the order a round trip takes when members run in
/// parallel: the leader (it appends what clients sent and sends it to the followers), the
/// followers that complete its quorum (they append and acknowledge) and the leader again (it
/// commits, applies and answers), then the followers outside the quorum. A message a client
/// flushed before the cycle is answered within it. In member order, a follower that sat
/// between the leader's two turns, or both of a 3-member cluster's, lay on every round trip;
/// this order (first with the other followers at the start of the cycle) took the 3-member
/// in-process round trip at 100 K msg/s from p50 3.00-5.19 µs to 2.04-3.08 µs in six
/// alternating runs (`docs/PERFORMANCE.md`, "The cluster agent's order").
/// The quorum's followers are the running voters after the leader in member order (a killed
/// member never answers; a learner's answer completes no quorum). Without a known leader (an election)
/// the members run in member order.
///
/// Over UDP the thread does each datagram's kernel work (on loopback, the receiver's too) when
/// it sends it, so the leader holds what it sends to the followers outside the quorum until
/// the answer's path has run ([`Transport::hold_sends_to`]) and sends it then, in the same
/// cycle. [`ClusterAgent::do_work_answering`] puts the caller's clients inside the
/// cycle, before those followers run; [`Agent::do_work`] is that cycle without clients.
pub struct ClusterAgent<F: ServiceFactory> {
    members: Vec<NodeAgent<F>>,
    started: usize,
}

impl<F: ServiceFactory> std::fmt::Debug for ClusterAgent<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAgent")
            .field("members", &self.members)
            .field("started", &self.started)
            .finish()
    }
}

impl<F: ServiceFactory> ClusterAgent<F> {
    /// The agent of `members`, in member order (their index is only the order of the cycle
    /// without a leader).
    ///
    /// # Panics
    /// If `members` is empty or holds more than 64.
    #[must_use]
    pub fn new(members: Vec<NodeAgent<F>>) -> Self {
        assert!(!members.is_empty(), "a cluster agent needs a member");
        assert!(
            members.len() <= 64,
            "a cluster agent runs at most 64 members"
        );
        Self {
            members,
            started: 0,
        }
    }

    /// The members, in the order given.
    pub fn members(&self) -> &[NodeAgent<F>] {
        &self.members
    }

    /// One duty cycle with the caller's clients in it: the answer's path (the leader, its
    /// quorum's followers, the leader), then `at_answer` (the clients' polls), then the
    /// followers outside the quorum. A client polled after the cycle would wait for their
    /// work; here it has its answer before, as when members run on their own machines.
    /// Without a known leader the members run in member order, then `at_answer`. Returns the
    /// work of both.
    ///
    /// Drive it through [`AgentInvoker::invoke_with`](crate::agent::AgentInvoker::invoke_with)
    /// so that a member's termination is seen.
    pub fn do_work_answering(&mut self, at_answer: impl FnOnce() -> usize) -> usize {
        let n = self.members.len();
        let Some(leader) = self.members.iter().position(NodeAgent::leads) else {
            let work: usize = self.members.iter_mut().map(|m| m.do_work()).sum();
            return work + at_answer();
        };
        let quorum = self.quorum(leader);
        let held = self.hold_outside(leader, quorum);
        let mut work = 0;
        answer_order(n, leader, quorum, |i| work += self.members[i].do_work());
        work += at_answer();
        if held {
            work += self.members[leader].network.release_held_sends();
        }
        outside_order(n, leader, quorum, |i| work += self.members[i].do_work());
        work
    }

    /// The followers that complete `leader`'s quorum: running voters ([`quorum_followers`]).
    fn quorum(&self, leader: usize) -> u64 {
        let m = &self.members;
        quorum_followers(m.len(), leader, |i| m[i].is_running() && m[i].votes())
    }

    /// Has the leader hold what it sends to the followers outside `quorum` until the
    /// answer's path has run (over UDP, each datagram's kernel work is done by this thread
    /// when it is sent: those to the other followers would lie on every round trip, where
    /// with members on their own machines they go out in parallel). Returns whether any
    /// follower is outside.
    fn hold_outside(&mut self, leader: usize, quorum: u64) -> bool {
        let mut ids = [0u32; 64];
        let mut k = 0;
        outside_order(self.members.len(), leader, quorum, |i| {
            ids[k] = self.members[i].network.member_id();
            k += 1;
        });
        if k > 0 {
            self.members[leader]
                .network
                .hold_sends_to(ids[..k].iter().copied());
        }
        k > 0
    }
}

impl<F: ServiceFactory> Agent for ClusterAgent<F> {
    /// Starts the members in order; if one fails, closes those already started (in order)
    /// and returns its error.
    fn on_start(&mut self) -> std::result::Result<(), AgentError> {
        while self.started < self.members.len() {
            if let Err(e) = self.members[self.started].on_start() {
                self.on_close();
                return Err(e);
            }
            self.started += 1;
        }
        Ok(())
    }

    /// [`ClusterAgent::do_work_answering`]'s cycle with no client in it.
    fn do_work(&mut self) -> usize {
        self.do_work_answering(|| 0)
    }

    fn termination(&mut self) -> Option<Termination> {
        self.members.iter_mut().find_map(|m| m.termination())
    }

    fn on_close(&mut self) {
        for m in &mut self.members[..self.started] {
            m.on_close();
        }
        self.started = 0;
    }

    fn role_name(&self) -> &str {
        "tandem-cluster"
    }
}

impl<F: ServiceFactory> Agent for NodeAgent<F> {
    fn on_start(&mut self) -> std::result::Result<(), AgentError> {
        self.network.on_start()?;
        if let Err(e) = self.consensus.on_start() {
            self.network.on_close();
            return Err(e);
        }
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        // What the consensus cycle queued leaves in this cycle, not the next (issue #7).
        self.network.do_work() + self.consensus.do_work() + self.network.send_queued()
    }

    fn termination(&mut self) -> Option<Termination> {
        self.consensus
            .termination()
            .or_else(|| self.network.termination())
    }

    fn on_close(&mut self) {
        // The consensus agent first: the network agent then sends what it queued last.
        self.consensus.on_close();
        self.network.on_close();
    }

    fn role_name(&self) -> &str {
        &self.name
    }
}

impl<F: ServiceFactory> ConsensusAgent<F> {
    fn handle_kill(&mut self) -> bool {
        if self.shared.links.kill.load(Ordering::Acquire) && self.inner.is_some() {
            // A crash: drop everything without a goodbye (page cache keeps what was written).
            self.inner = None;
            self.shared.running.store(false, Ordering::Release);
            self.shared.leading.store(false, Ordering::Relaxed);
        }
        self.inner.is_none()
    }
}

impl<F: ServiceFactory> Inner<F> {
    fn clock_ns(&self) -> i64 {
        self.epoch.elapsed_ns() as i64
    }

    fn fail(&mut self, what: String) {
        self.fail_with(what.into());
    }

    /// Stops the node with `error`: logged, recorded in the control file's error log, and
    /// returned by the agent's termination (the first one wins).
    fn fail_with(&mut self, error: Box<dyn std::error::Error + Send + Sync>) {
        let what = error.to_string();
        tracing::error!(member = self.cfg.member_id, "{what}");
        self.control.record_error(wall_ns(), 1, &what);
        self.control.increment(Counter::Errors);
        if self.failed.is_none() {
            self.failed = Some(error);
        }
    }

    /// Whether the log store failed: if so, stops the node with its error (once) and drops the
    /// commands the core queued, none of which may be carried out (see `log_store`).
    fn log_failed(&mut self) -> bool {
        if !self.core.log().is_failed() {
            return false;
        }
        if let Some(e) = self.core.log().take_error() {
            self.fail_with(Box::new(NodeError::Log(e)));
        }
        self.out.clear();
        true
    }

    /// Feeds what the network agent received (at most [`RECEIVES_PER_CYCLE`] messages) to
    /// the core; undecodable messages are dropped and counted.
    fn poll_network(&mut self) -> usize {
        let Self {
            links,
            core,
            app,
            out,
            unaddressable_clients,
            ..
        } = self;
        let mut n = 0;
        while n < RECEIVES_PER_CYCLE {
            let Some(m) = links.inbound.poll() else {
                break;
            };
            n += 1;
            // A failed log store takes no more input (the node stops after this cycle).
            if core.log().is_failed() {
                links.inbound.recycle(m.bytes);
                continue;
            }
            let decoded = match m.endpoint {
                Endpoint::Member(member_id) => PeerMessage::decode(&m.bytes).map(|msg| {
                    core.handle(
                        Input::Peer {
                            from: MemberId(member_id),
                            msg,
                        },
                        app,
                        out,
                    );
                }),
                Endpoint::Client(addr) => match client_addr(addr) {
                    Some(from) => Ingress::decode(&m.bytes)
                        .map(|msg| core.handle(Input::Client { from, msg }, app, out)),
                    None => {
                        *unaddressable_clients += 1;
                        Ok(())
                    }
                },
            };
            if let Err(e) = decoded {
                count_codec_drop(links, &e);
            }
            links.inbound.recycle(m.bytes);
        }
        n
    }

    /// Carries out every queued command (and what answering them queues), in order.
    fn run_commands(&mut self) -> usize {
        let mut work = 0;
        while !self.out.is_empty() {
            std::mem::swap(&mut self.out, &mut self.done);
            let commands = std::mem::take(&mut self.done.commands);
            for command in &commands {
                if self.log_failed() {
                    break;
                }
                work += 1;
                self.execute(command);
            }
            self.done.commands = commands;
            self.done.clear();
        }
        // Every hash taken at a snapshot was matched to its `SnapshotTaken` above.
        self.app.clear_hashes();
        self.check_state_hashes();
        work
    }

    /// Compares each `StateHash` entry the core applied with this member's own hash at that
    /// snapshot position (when it has one: no hook, a snapshot installed from the leader or
    /// taken before a restart leave nothing to compare).
    fn check_state_hashes(&mut self) {
        while let Some((position, leader_hash)) = self.core.take_state_hash_report() {
            let Some(&(_, own)) = self.snapshot_hashes.iter().find(|(p, _)| *p == position.0)
            else {
                continue;
            };
            if own == leader_hash {
                tracing::debug!(
                    member = self.cfg.member_id,
                    position = position.0,
                    hash = own,
                    "state hash matches the leader's"
                );
                continue;
            }
            let what = format!(
                "state divergence at snapshot position {}: leader's hash {leader_hash:#018x}, \
                 this member's {own:#018x} (non-deterministic service code?)",
                position.0
            );
            tracing::error!(member = self.cfg.member_id, "{what}");
            self.control.record_error(wall_ns(), 4, &what);
            self.control.increment(Counter::StateDivergences);
        }
    }

    /// A snapshot was taken at `position`: keep this member's hash there and, on the leader,
    /// have the core append it for the others to compare.
    fn snapshot_hash(&mut self, position: LogPosition) {
        let Some(hash) = self.app.take_hash() else {
            return;
        };
        self.snapshot_hashes.retain(|(p, _)| *p != position.0);
        if self.snapshot_hashes.len() >= SNAPSHOT_HASHES {
            self.snapshot_hashes.pop_front();
        }
        self.snapshot_hashes.push_back((position.0, hash));
        self.core.handle(
            Input::StateHash { position, hash },
            &mut self.app,
            &mut self.out,
        );
    }

    fn execute(&mut self, command: &Command) {
        match command {
            Command::SendPeer { to, bytes } => {
                let msg = &self.done.bytes[bytes.clone()];
                self.sends_queued = true;
                if !self.links.outbound.offer(Endpoint::Member(to.0), msg) {
                    tracing::debug!(
                        member = self.cfg.member_id,
                        to = to.0,
                        "outbound pipe full: peer send dropped"
                    );
                }
            }
            Command::SendClient { to, bytes } => {
                let msg = &self.done.bytes[bytes.clone()];
                self.sends_queued = true;
                if let Some(addr) = socket_addr(*to)
                    && !self.links.outbound.offer(Endpoint::Client(addr), msg)
                {
                    tracing::debug!(member = self.cfg.member_id, %addr, "outbound pipe full: client send dropped");
                }
            }
            Command::Appended { to, epoch, .. } => match self.cfg.fsync {
                Durability::None | Durability::Every => self.core.handle(
                    Input::LogDurable {
                        position: *to,
                        epoch: *epoch,
                    },
                    &mut self.app,
                    &mut self.out,
                ),
                Durability::Batch => {
                    self.unsynced = Some(match self.unsynced {
                        Some((p, e)) if e == *epoch => ((*to).max(p), e),
                        _ => (*to, *epoch),
                    });
                }
            },
            Command::Truncated { position, epoch } => {
                self.synced_to = self.synced_to.min(position.0);
                if let Err(e) = self.files.invalidate_terms_from(position.0) {
                    self.fail(format!("recording log: {e}"));
                }
                if self.unsynced.is_some_and(|(_, e)| e != *epoch) {
                    self.unsynced = None;
                }
            }
            Command::PersistState { id, state } => {
                // Written on the node-state thread; `poll_persisted` reports completion.
                let end = self.core.log().archive_end();
                if let Err(e) = self.files.persist(*id, state, end) {
                    self.fail(format!("node state not persisted: {e}"));
                }
            }
            Command::RoleChanged { role, term, leader } => {
                self.control.set_role(member_role(*role));
                self.control.set_term(term.0);
                self.control.set_leader_id(leader.map(|m| m.0));
                tracing::info!(member = self.cfg.member_id, ?role, term = term.0, leader = ?leader.map(|m| m.0), "role changed");
            }
            Command::ElectionStateChanged { state } => {
                self.control.set_election_state(u64::from(state.code()));
            }
            Command::CommitAdvanced { position } => {
                self.core.log().note_commit(*position);
                self.control.set_commit_position(position.0);
            }
            Command::SnapshotTaken { snapshot } => {
                match self.files.store_snapshot(snapshot) {
                    Ok(()) => {
                        self.control.set_snapshot_position(snapshot.position.0);
                        self.control.increment(Counter::SnapshotsTaken);
                    }
                    Err(e) => self.fail(format!("snapshot not stored: {e}")),
                }
                self.snapshot_hash(snapshot.position);
            }
            Command::SnapshotInstalled { snapshot, .. } => {
                self.unsynced = None;
                self.synced_to = snapshot.position.0;
                self.sync_file = None;
                if let Err(e) = self.files.invalidate_terms_from(snapshot.position.0 + 1) {
                    self.fail(format!("recording log: {e}"));
                }
                match self.files.store_snapshot(snapshot) {
                    Ok(()) => self.control.set_snapshot_position(snapshot.position.0),
                    Err(e) => self.fail(format!("installed snapshot not stored: {e}")),
                }
            }
            Command::Purged { position } => {
                self.sync_file = None;
                self.control.set_log_start_position(position.0);
                if let Err(e) = self.files.prune_snapshots(position.0) {
                    self.fail(format!("pruning snapshots failed: {e}"));
                }
                if let Some((req, _)) = self.purge_request.take() {
                    let _ = self.control.complete(req, ActionResult::ok(position.0));
                }
            }
            Command::Terminated => {
                tracing::info!(member = self.cfg.member_id, "member stopped");
                if let Some(req) = self.stop_request.take() {
                    let _ = self.control.complete(req, ActionResult::ok(0));
                }
            }
        }
    }

    /// Adds a recording-log `Term` entry for a term that began in the log since the last one.
    fn record_terms(&mut self) {
        let store = self.core.log();
        let Some(&(term, base)) = store.archive_log().term_starts().last() else {
            return;
        };
        if self.files.recorded_term() >= term {
            return;
        }
        let timestamp = store
            .read(LogPosition(base))
            .map_or(0, |f| f.header.timestamp);
        if let Err(e) = self.files.record_term(term, base, timestamp) {
            self.fail(format!("recording log: {e}"));
        }
    }

    /// `fsync = batch`: one data sync of the written segment(s) per duty cycle.
    fn sync_batch(&mut self) -> usize {
        let Some((to, epoch)) = self.unsynced.take() else {
            return 0;
        };
        let log = self.core.log().archive_log();
        let seg_len = log.config().segment_len_bytes;
        let from = self.synced_to.min(to.0);
        let mut ok = true;
        let mut failure = None;
        for (base, path) in log.segments() {
            if base + seg_len <= from || base >= to.0 {
                continue;
            }
            if !matches!(&self.sync_file, Some((b, _)) if *b == base) {
                match File::open(path) {
                    Ok(f) => self.sync_file = Some((base, f)),
                    Err(e) => {
                        tracing::error!(error = %e, path = %path.display(), "cannot open segment to sync");
                        ok = false;
                        continue;
                    }
                }
            }
            // fdatasync of the segment file writes back its dirty mapped pages too. A failed
            // one is not retried (the kernel may have dropped the pages and a retry could
            // succeed without them): the node stops, nothing unsynced is reported durable.
            if let Some((_, f)) = &self.sync_file
                && let Err(e) = f.sync_data()
            {
                let error = super::log_store::LogStoreError {
                    op: "sync",
                    position: from,
                    dir: log.dir().to_path_buf(),
                    source: tandem_archive::ArchiveError::io("fdatasync", path, e),
                };
                failure = Some(error);
                break;
            }
        }
        if let Some(error) = failure {
            self.fail_with(Box::new(NodeError::Log(error)));
            return 1;
        }
        if ok {
            self.synced_to = to.0;
            self.core.handle(
                Input::LogDurable {
                    position: to,
                    epoch,
                },
                &mut self.app,
                &mut self.out,
            );
        } else {
            self.unsynced = Some((to, epoch));
        }
        1
    }

    fn poll_control(&mut self) -> usize {
        let Some((req, action)) = self.control.poll_request() else {
            return 0;
        };
        match action {
            Action::Snapshot => self.start_operator(req, OperatorAction::Snapshot),
            Action::Suspend => self.start_operator(req, OperatorAction::Suspend),
            Action::Resume => self.start_operator(req, OperatorAction::Resume),
            Action::Shutdown => self.start_operator(req, OperatorAction::Shutdown),
            Action::Abort => self.start_operator(req, OperatorAction::Abort),
            Action::Stop => {
                self.stop_request = Some(req);
                self.core.handle(Input::Stop, &mut self.app, &mut self.out);
            }
            Action::Purge(up_to) => {
                let start = self.core.log().start().0.0;
                let limit = self.files.purge_limit(up_to, start);
                let limit = limit.min(self.core.latest_snapshot().map_or(0, |s| s.position.0));
                self.purge_request = Some((req, limit));
                self.core.handle(
                    Input::Purge {
                        position: LogPosition(limit),
                    },
                    &mut self.app,
                    &mut self.out,
                );
                let purged = self
                    .out
                    .commands
                    .iter()
                    .any(|c| matches!(c, Command::Purged { .. }));
                if !purged {
                    self.purge_request = None;
                    let _ = self.control.complete(
                        req,
                        ActionResult {
                            code: ResultCode::Rejected,
                            value: start,
                            extra: 0,
                        },
                    );
                }
            }
        }
        1
    }

    /// A cluster-wide action, on any member: through the core (forwarded to the leader and
    /// carried out by every member when it applies the entry); answered in
    /// [`Inner::complete_operator`].
    fn start_operator(&mut self, req: RequestId, action: OperatorAction) {
        if self.operator_request.is_some() || self.core.is_closed() {
            let _ = self
                .control
                .complete(req, ActionResult::with_code(ResultCode::Rejected));
            return;
        }
        // Unique across restarts of this member, so an entry appended for an earlier
        // incarnation never completes this request.
        let id = wall_ns().max(1);
        self.operator_request = Some((req, id, self.now_ns));
        self.core
            .handle(Input::Operator { action, id }, &mut self.app, &mut self.out);
    }

    /// Answers the cluster-wide action in progress once the core applied its entry here (after
    /// the snapshot was stored, for `snapshot` and `shutdown`: value = the snapshot position;
    /// otherwise the entry's end position), or fails it after [`OPERATOR_TIMEOUT_NS`] (no
    /// leader, or the request was lost with a leader: the operator retries).
    fn complete_operator(&mut self) {
        let Some((req, id, since)) = self.operator_request else {
            return;
        };
        if let Some(done) = self.core.take_operator_done() {
            if done.id != id {
                return;
            }
            self.operator_request = None;
            tracing::info!(member = self.cfg.member_id, action = %done.action, position = done.position.0, "operator action done");
            let _ = self
                .control
                .complete(req, ActionResult::ok(done.position.0));
        } else if self.now_ns - since >= OPERATOR_TIMEOUT_NS {
            self.operator_request = None;
            self.core.cancel_operator_request();
            let what = format!(
                "{} request not carried out within {} s (no leader, or the request was lost \
                 with a leader): retry",
                req.action(),
                OPERATOR_TIMEOUT_NS / 1_000_000_000
            );
            tracing::warn!(member = self.cfg.member_id, "{what}");
            self.control.record_error(wall_ns(), 3, &what);
            let _ = self
                .control
                .complete(req, ActionResult::with_code(ResultCode::Failed));
        }
    }

    fn publish(&mut self, shared: &Shared) {
        if self.rejoin_marker && !self.core.is_learner() {
            match super::files::clear_rejoin_marker(&self.cfg.dir) {
                Ok(()) => self.rejoin_marker = false,
                Err(e) => tracing::error!(error = %e, "cannot clear the rejoin-as-learner mark"),
            }
        }
        let core = &self.core;
        let c = &self.control;
        let store = core.log();
        c.set_append_position(store.end().0);
        c.set_durable_position(core.durable_position().0);
        c.set_log_start_position(store.start().0.0);
        c.set_updated_ns(self.now_ns as u64);
        let counters = core.counters();
        c.set_counter(Counter::Elections, counters.elections_started);
        c.set_counter(Counter::SessionsRejected, counters.sessions_rejected);
        c.set_counter(
            Counter::SessionsDisconnectedSlow,
            counters.sessions_disconnected_slow,
        );
        c.set_counter(Counter::DroppedSessionNotOwned, counters.ingress_not_owned);
        c.set_counter(
            Counter::DroppedUnknownSession,
            counters.ingress_unknown_session + self.unaddressable_clients,
        );
        c.set_counter(Counter::DroppedStale, counters.stale_term_messages);
        c.set_counter(
            Counter::SessionsOpen,
            core.module_state().sessions().len() as u64,
        );
        // (The network agent publishes the traffic counters.)
        let commit = core.commit_position().0;
        if core.role() == Role::Leader {
            let now_ns = self.now_ns as u64;
            core.for_each_follower_position(|member, p| {
                c.set_member_progress(
                    member,
                    MemberProgress {
                        append_position: p.0,
                        commit_position: commit,
                        last_heard_ns: now_ns,
                    },
                );
            });
        }
        let applied = core.applied_position().0;
        // The hash is computed before the lock is taken, which is then taken once.
        let mut hashed = None;
        if let NodeApp::Inline(app) = &self.app
            && applied != self.hashed_at
            && let Some(hash) = app.state_hash()
        {
            hashed = Some((applied, hash));
            self.hashed_at = applied;
        }
        let mut s = shared.status.lock().unwrap_or_else(|p| p.into_inner());
        if hashed.is_some() {
            s.state_hash = hashed;
        }
        s.role = core.role();
        shared
            .leading
            .store(s.role == Role::Leader, Ordering::Relaxed);
        shared
            .voting
            .store(s.role != Role::Learner, Ordering::Relaxed);
        s.term = core.term().0;
        s.leader = core.leader().map(|m| m.0);
        s.commit_position = commit;
        s.applied_position = applied;
        s.log_end = store.end().0;
        s.log_start = store.start().0.0;
        s.snapshots_installed = counters.snapshots_installed;
        s.leaderships = counters.leaderships;
    }

    /// Tells the core which node-state writes have completed (they run on the node-state
    /// thread, see `files::StatePersister`); a failed write stops the node.
    fn poll_persisted(&mut self) -> usize {
        match self.files.node_state.poll() {
            Ok(Some(id)) => {
                self.core
                    .handle(Input::StatePersisted { id }, &mut self.app, &mut self.out);
                1
            }
            Ok(None) => 0,
            Err(e) => {
                self.fail(format!("node state not persisted: {e}"));
                0
            }
        }
    }

    /// `dedicated`, once the core has started: hands the service, a copy of the module state
    /// and the applied position to the service agent, which applies from then on.
    fn hand_over_service(&mut self) {
        let Some(links) = self.service.clone() else {
            return;
        };
        let link = PipeLink::new(Arc::clone(&links), &self.links.consensus_thread);
        self.app.split(&self.core, link, |engine, _| {
            *links.handover.lock().unwrap_or_else(|p| p.into_inner()) = Some(engine);
        });
        self.forwarder = Forwarder::new(self.core.applied_position());
    }

    /// `dedicated`: hands newly committed frames to the service agent and applies what it
    /// has applied (replaying its effects on the module state; replies leave from here).
    fn pump_service(&mut self) -> usize {
        let NodeApp::Remote(remote) = &mut self.app else {
            return 0;
        };
        let link = remote.link_mut();
        let mut work = self.forwarder.forward(
            self.core.log(),
            self.core.applied_position(),
            self.core.commit_position(),
            FORWARD_BYTES,
            |position, frames| link.send_frames(|buf| encode_frames(buf, position, frames)),
        );
        remote.link_mut().wake();
        let applied = self.core.applied_position();
        self.core.handle(Input::Apply, &mut self.app, &mut self.out);
        if self.core.applied_position() != applied {
            work += 1;
        }
        if let NodeApp::Remote(remote) = &mut self.app
            && let Some(source) = remote.take_error()
        {
            let member_id = self.cfg.member_id;
            self.fail_with(Box::new(NodeError::Service { member_id, source }));
        }
        work + self.run_commands()
    }

    fn cycle(&mut self, shared: &Shared) -> usize {
        if self.failed.is_some() {
            return 0;
        }
        self.now_ns = self.clock_ns();
        let mut work = self.poll_network();
        self.core.handle(
            Input::Tick {
                now_ns: self.now_ns,
            },
            &mut self.app,
            &mut self.out,
        );
        work += self.run_commands();
        work += self.poll_persisted();
        work += self.run_commands();
        self.core.handle(Input::Flush, &mut self.app, &mut self.out);
        work += self.run_commands();
        if self.cfg.fsync == Durability::Batch {
            work += self.sync_batch();
            work += self.run_commands();
        }
        work += self.pump_service();
        work += self.poll_control();
        work += self.run_commands();
        self.complete_operator();
        self.record_terms();
        if std::mem::take(&mut self.sends_queued) {
            self.waker.wake(&self.links.network_thread);
        }
        if let NodeApp::Inline(app) = &mut self.app {
            work += app.container.do_background_work(self.now_ns);
        }
        // Publishing costs atomics, one uncontended lock and the state hash: at most once a
        // millisecond, so the per-message path stays free of locks.
        if self.now_ns - self.last_progress_ns >= 1_000_000 {
            self.last_progress_ns = self.now_ns;
            self.publish(shared);
        }
        work
    }
}

/// How long a node waits for a cluster-wide action it forwarded to be applied before it
/// answers `Failed` (the tool's own timeout may be shorter; the operator then retries once the
/// toggle is free again).
const OPERATOR_TIMEOUT_NS: i64 = 30_000_000_000;

/// Inbound messages the consensus agent takes from the network agent per duty cycle, at most.
const RECEIVES_PER_CYCLE: usize = 1024;

/// Counts an undecodable message (the network agent publishes the sums with its own counts).
fn count_codec_drop(links: &MemberLinks, e: &crate::CodecError) {
    let counter = match e {
        crate::CodecError::Version { .. } => &links.decode_bad_version,
        _ => &links.decode_bad_length,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl<F: ServiceFactory> Agent for ConsensusAgent<F> {
    fn on_start(&mut self) -> std::result::Result<(), AgentError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let Some(inner) = self.inner.as_mut() else {
            return Ok(());
        };
        inner.epoch = AgentClock::start();
        inner.waker.register(&inner.links.consensus_thread);
        let Inner { core, app, out, .. } = inner;
        core.start(0, app, out);
        inner.run_commands();
        inner.hand_over_service();
        inner.publish(&self.shared);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        if self.handle_kill() {
            return 0;
        }
        let inner = self.inner.as_mut().expect("checked");
        inner.cycle(&self.shared)
    }

    fn termination(&mut self) -> Option<Termination> {
        let inner = self.inner.as_mut()?;
        if self.shared.links.network_closed.load(Ordering::Acquire) && !inner.core.is_closed() {
            inner.fail(format!(
                "member {}: the network agent stopped",
                inner.cfg.member_id
            ));
        }
        if let NodeApp::Remote(remote) = &mut inner.app
            && remote.link_mut().service_closed()
            && !inner.core.is_closed()
        {
            let member_id = inner.cfg.member_id;
            inner.fail_with(Box::new(NodeError::Service {
                member_id,
                source: crate::SplitError::ServiceStopped,
            }));
        }
        if let Some(error) = inner.failed.take() {
            return Some(Termination::Failed(AgentError::failed("node", error)));
        }
        inner.core.is_closed().then_some(Termination::Done)
    }

    fn on_close(&mut self) {
        if let Some(inner) = self.inner.as_mut() {
            if let SplitApp::Remote(remote) = &mut inner.app {
                remote.link_mut().flush_before_close();
            }
            inner.publish(&self.shared);
            inner.complete_operator();
            if let Some(req) = inner.stop_request.take() {
                let _ = inner.control.complete(req, ActionResult::ok(0));
            }
            if let Some((req, _, _)) = inner.operator_request.take() {
                // Closed before the action was applied here.
                let _ = inner
                    .control
                    .complete(req, ActionResult::with_code(ResultCode::Failed));
            }
        }
        self.inner = None;
        self.shared.running.store(false, Ordering::Release);
        self.shared
            .links
            .consensus_closed
            .store(true, Ordering::Release);
    }

    fn role_name(&self) -> &str {
        &self.name
    }
}

/// A running member: its agents on their threads (per [`NodeConfig::threading`]: `shared`,
/// one thread `tandem-node-ID` running the network and consensus agents; `dedicated`,
/// `tandem-net-ID`, `tandem-cons-ID` and `tandem-svc-ID`, pinned to the first, second and
/// third of [`NodeConfig::cores`] when given). Dropping it stops and joins every thread (without
/// handing over leadership: a crash as far as the cluster can tell); use
/// [`ClusterNode::stop`] for a graceful stop.
#[derive(Debug)]
pub struct ClusterNode {
    shared: Arc<Shared>,
    control: Arc<ControlFile>,
    /// In the order they are closed: the consensus agent's (or the composed member's) first,
    /// then the network agent's, which sends what the consensus agent queued last.
    runners: Vec<AgentRunner>,
    dir: std::path::PathBuf,
}

impl ClusterNode {
    /// Launches member `config.member_id` with services from `factory`, over UDP.
    ///
    /// # Errors
    /// As [`NodeAgent::new`]; [`NodeError::Agent`] if the thread cannot start;
    /// [`NodeError::Config`] for the `cluster` threading mode (use [`InProcessCluster`]).
    pub fn launch<F>(config: NodeConfig, factory: F) -> Result<Self>
    where
        F: ServiceFactory + Send + 'static,
        F::Service: Send + 'static,
    {
        Self::launch_with(config, factory, NodeHooks::default())
    }

    /// [`ClusterNode::launch`] with hooks (state hash, authenticator, in-process hub).
    ///
    /// # Errors
    /// As [`ClusterNode::launch`].
    pub fn launch_with<F>(
        config: NodeConfig,
        factory: F,
        hooks: NodeHooks<F::Service>,
    ) -> Result<Self>
    where
        F: ServiceFactory + Send + 'static,
        F::Service: Send + 'static,
    {
        if config.threading == ThreadingMode::Cluster {
            return Err(NodeError::Config(
                "threading mode `cluster` drives several members: use InProcessCluster".into(),
            ));
        }
        let member_id = config.member_id;
        let idle = config.idle.clone();
        let core = |i: usize| config.cores.as_ref().and_then(|c| c.get(i));
        let cores = [core(0), core(1), core(2)];
        let threading = config.threading;
        let dir = config.dir.clone();
        let agent = NodeAgent::new(config, factory, hooks)?;
        let shared = Arc::clone(agent.shared());
        let control = Arc::clone(agent.control());
        let err = |source| NodeError::Agent { member_id, source };
        let runners = match threading {
            ThreadingMode::Dedicated => {
                let (network, consensus, service) = agent.into_parts();
                let net_runner = AgentRunner::start(
                    network,
                    idle.clone(),
                    format!("tandem-net-{member_id}"),
                    cores[0],
                )
                .map_err(err)?;
                // On failure the runners started are dropped, which stops and joins them.
                let cons_runner = AgentRunner::start(
                    consensus,
                    idle.clone(),
                    format!("tandem-cons-{member_id}"),
                    cores[1],
                )
                .map_err(err)?;
                let svc_runner =
                    AgentRunner::start(service, idle, format!("tandem-svc-{member_id}"), cores[2])
                        .map_err(err)?;
                vec![cons_runner, svc_runner, net_runner]
            }
            ThreadingMode::Shared | ThreadingMode::Cluster => {
                let name = agent.name.clone();
                vec![AgentRunner::start(agent, idle, name, cores[0]).map_err(err)?]
            }
        };
        Ok(Self {
            shared,
            control,
            runners,
            dir,
        })
    }

    /// This member's id.
    pub fn member_id(&self) -> u32 {
        self.shared.member_id
    }

    /// The node directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The latest published status.
    pub fn status(&self) -> NodeStatus {
        self.shared.status()
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.status().role
    }

    /// The leader this member knows.
    pub fn leader(&self) -> Option<u32> {
        self.status().leader
    }

    /// The commit position.
    pub fn commit_position(&self) -> u64 {
        self.status().commit_position
    }

    /// `(applied position, hash)` from the state-hash hook.
    pub fn state_hash(&self) -> Option<(u64, u64)> {
        self.status().state_hash
    }

    /// The control file (counters, positions, error log, toggle).
    pub fn control(&self) -> &ControlFile {
        &self.control
    }

    /// Asks the node to act through its control toggle, as `cluster-tool` does, and waits.
    ///
    /// # Errors
    /// [`NodeError::Control`] if the toggle is busy or no answer came within `timeout`.
    pub fn request(&self, action: Action, timeout: Duration) -> Result<ActionResult> {
        let err = |source| NodeError::Control {
            dir: self.dir.clone(),
            source,
        };
        let req = self.control.request(action).map_err(err)?;
        self.control.wait_for(req, timeout).map_err(err)
    }

    /// Whether the agent is still running.
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }

    /// Stops gracefully (a leader hands over leadership first), then joins the thread.
    ///
    /// # Errors
    /// As [`ClusterNode::close`].
    pub fn stop(self, timeout: Duration) -> Result<()> {
        let _ = self.request(Action::Stop, timeout);
        self.close()
    }

    /// Stops the agent where it is (no handover: to the cluster this is a crash) and joins
    /// its thread; the directory lock and sockets are released.
    ///
    /// # Errors
    /// [`NodeError::Agent`] if the agent had failed or panicked.
    pub fn close(mut self) -> Result<()> {
        let member_id = self.member_id();
        let mut result = Ok(());
        // In order (see `runners`); every thread is joined whatever the others report.
        for r in self.runners.drain(..) {
            if let Err(source) = r.close()
                && result.is_ok()
            {
                result = Err(NodeError::Agent { member_id, source });
            }
        }
        result
    }

    /// The names of the threads running this member's agents, in the order they are closed.
    pub fn thread_names(&self) -> Vec<String> {
        self.runners
            .iter()
            .map(|r| r.thread_name().to_owned())
            .collect()
    }
}

/// Several members driven by one thread (`cluster` threading mode) over an in-process hub.
#[derive(Debug)]
pub struct InProcessCluster {
    hub: InProcHub,
    members: Vec<(Arc<Shared>, Arc<ControlFile>)>,
    runner: Option<AgentRunner>,
}

impl InProcessCluster {
    /// Builds every member from `configs` (one factory call per member) on a new hub and runs
    /// them all on one thread with `idle`.
    ///
    /// # Errors
    /// As [`NodeAgent::new`] for any member; [`NodeError::Agent`] if the thread cannot start.
    pub fn launch<F, M>(
        configs: Vec<NodeConfig>,
        mut make_factory: M,
        mut state_hash: impl FnMut() -> Option<StateHash<F::Service>>,
        idle: IdleStrategy,
    ) -> Result<Self>
    where
        F: ServiceFactory + Send + 'static,
        F::Service: Send + 'static,
        M: FnMut(u32) -> F,
    {
        let hub = InProcHub::new(4096, 1 << 20);
        let mut agents = Vec::new();
        let mut members = Vec::new();
        for cfg in configs {
            let id = cfg.member_id;
            let hooks = NodeHooks {
                state_hash: state_hash(),
                authenticator: None,
                hub: Some(hub.clone()),
                readiness: None,
            };
            let agent = NodeAgent::new(cfg, make_factory(id), hooks)?;
            members.push((Arc::clone(agent.shared()), Arc::clone(agent.control())));
            agents.push(agent);
        }
        let runner = AgentRunner::start(ClusterAgent::new(agents), idle, "tandem-cluster", None)
            .map_err(|source| NodeError::Agent {
                member_id: u32::MAX,
                source,
            })?;
        Ok(Self {
            hub,
            members,
            runner: Some(runner),
        })
    }

    /// The hub (for clients).
    pub fn hub(&self) -> &InProcHub {
        &self.hub
    }

    /// Status of member `id`.
    ///
    /// # Panics
    /// If `id` is not a member.
    pub fn status(&self, id: u32) -> NodeStatus {
        self.members[id as usize].0.status()
    }

    /// Control file of member `id`.
    ///
    /// # Panics
    /// If `id` is not a member.
    pub fn control(&self, id: u32) -> &ControlFile {
        &self.members[id as usize].1
    }

    /// Crashes member `id` (its agent drops everything at its next cycle; the others go on).
    ///
    /// # Panics
    /// If `id` is not a member.
    pub fn kill(&self, id: u32) {
        self.members[id as usize]
            .0
            .links
            .kill
            .store(true, Ordering::Release);
    }

    /// Stops every member and joins the thread.
    ///
    /// # Errors
    /// [`NodeError::Agent`] if an agent failed or panicked.
    pub fn close(mut self) -> Result<()> {
        match self.runner.take() {
            Some(r) => r.close().map_err(|source| NodeError::Agent {
                member_id: u32::MAX,
                source,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{answer_order, outside_order, quorum_followers};

    /// One cycle's order: the answer's path, then the followers outside the quorum.
    fn order(n: usize, leader: usize, running: &[usize]) -> Vec<usize> {
        let quorum = quorum_followers(n, leader, |i| running.contains(&i));
        let mut seen = Vec::new();
        answer_order(n, leader, quorum, |i| seen.push(i));
        outside_order(n, leader, quorum, |i| seen.push(i));
        seen
    }

    #[test]
    fn a_cycle_runs_the_leader_around_the_followers_that_complete_its_quorum() {
        // One member: itself, once.
        assert_eq!(order(1, 0, &[0]), vec![0]);
        // Three: leader, next follower, leader, then the follower outside the quorum.
        assert_eq!(order(3, 0, &[0, 1, 2]), vec![0, 1, 0, 2]);
        assert_eq!(order(3, 1, &[0, 1, 2]), vec![1, 2, 1, 0]);
        assert_eq!(order(3, 2, &[0, 1, 2]), vec![2, 0, 2, 1]);
        // Five: two followers complete the quorum.
        assert_eq!(order(5, 3, &[0, 1, 2, 3, 4]), vec![3, 4, 0, 3, 1, 2]);
        // A killed follower or a learner is not counted on: the next voter takes its place.
        assert_eq!(order(3, 0, &[0, 2]), vec![0, 2, 0, 1]);
        assert_eq!(order(5, 3, &[0, 1, 2, 3]), vec![3, 0, 1, 3, 2, 4]);
        // Every member runs in every cycle, the leader twice where it has a quorum to hear.
        for n in [1usize, 2, 3, 4, 5, 7] {
            for leader in 0..n {
                let all: Vec<usize> = (0..n).collect();
                let seen = order(n, leader, &all);
                for i in 0..n {
                    let times = seen.iter().filter(|&&j| j == i).count();
                    let want = if i == leader && n > 1 { 2 } else { 1 };
                    assert_eq!(times, want, "n {n}, leader {leader}, member {i}: {seen:?}");
                }
            }
        }
    }

    #[test]
    fn the_answer_path_and_the_other_followers_split_the_cycle() {
        for n in [1usize, 3, 5] {
            for leader in 0..n {
                let quorum = quorum_followers(n, leader, |_| true);
                let (mut answer, mut outside) = (Vec::new(), Vec::new());
                answer_order(n, leader, quorum, |i| answer.push(i));
                outside_order(n, leader, quorum, |i| outside.push(i));
                // The answer's path starts and ends at the leader; nobody outside is on it.
                assert_eq!(answer.first(), Some(&leader));
                assert_eq!(answer.last(), Some(&leader));
                assert!(
                    outside.iter().all(|i| !answer.contains(i)),
                    "{answer:?} {outside:?}"
                );
                assert_eq!(outside.len(), (n - 1) - n / 2);
            }
        }
    }
}
