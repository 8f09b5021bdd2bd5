//! [`Consensus`]: one member's consensus core. Inputs in ([`Input`]), commands out ([`Outbox`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::codec::entry::StateHashPayload;
use crate::codec::frame::{EntryType, FrameHeader};
use crate::codec::peer::PeerMessage;
use crate::consensus::Application;
use crate::consensus::bugs::BugFlags;
use crate::consensus::clients::{AllowAll, Authenticator, StagedMessages};
use crate::consensus::command::{Command, NodeState, OperatorDone, Outbox};
use crate::consensus::config::Config;
use crate::consensus::election::ElectionState;
use crate::consensus::input::Input;
use crate::consensus::rng::SplitMix64;
use crate::consensus::snapshot::Snapshot;
use crate::consensus::state::{ApplyContext, Limits, ModuleState};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{ClientAddr, LogPosition, MemberId, OperatorAction, SessionId, Term};
use tandem_service_api::Role;

/// The most applied `StateHash` entries the core keeps for the runtime to take.
pub const STATE_HASH_REPORTS: usize = 16;

/// What the leader knows of one follower.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// Where the next append starts.
    pub(super) next: LogPosition,
    /// Highest position the follower acknowledged in this term.
    pub(super) matched: LogPosition,
    /// The follower said it is a learner (its position does not count).
    pub(super) learner: bool,
    pub(super) last_ack_ns: i64,
    pub(super) last_send_ns: i64,
    /// Last immediate resend (position, time), to damp resend storms.
    pub(super) last_resend: (LogPosition, i64),
    /// An install-snapshot in progress.
    pub(super) snapshot: Option<SnapshotSend>,
}

impl Peer {
    pub(super) fn new(next: LogPosition, now_ns: i64) -> Self {
        Self {
            next,
            matched: LogPosition(0),
            learner: false,
            last_ack_ns: now_ns,
            last_send_ns: i64::MIN / 2,
            last_resend: (LogPosition(u64::MAX), i64::MIN / 2),
            snapshot: None,
        }
    }
}

/// A snapshot being sent to a follower.
#[derive(Debug, Clone)]
pub(super) struct SnapshotSend {
    pub(super) snapshot: Arc<Snapshot>,
    pub(super) acked: u64,
    pub(super) last_send_ns: i64,
}

/// A snapshot being received from the leader.
#[derive(Debug, Clone)]
pub(super) struct IncomingSnapshot {
    pub(super) position: LogPosition,
    pub(super) total_len: u64,
    pub(super) bytes: Vec<u8>,
}

/// The leader's volatile view of a session.
#[derive(Debug, Clone)]
pub(super) struct LeaderSession {
    pub(super) last_heard_ns: i64,
    /// Highest client sequence this leader appended (or the applied one at term start).
    pub(super) appended_seq: u64,
    pub(super) addr: ClientAddr,
    pub(super) close_appended: bool,
    /// Highest egress sequence the client acknowledged (at term start: the session's egress
    /// sequence then, so a new leader never counts replies sent before it as unread).
    pub(super) acked_egress_seq: u64,
}

/// An operator request made on this member, not yet applied here.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingOperator {
    pub(super) action: OperatorAction,
    pub(super) id: u64,
    /// The leader it was last sent to (this member itself when it led and appended it).
    pub(super) sent_to: Option<MemberId>,
    pub(super) sent_ns: i64,
}

/// A leader that applied a shutdown or abort entry waits (bounded) until every other member
/// said it applied it too, so that none is left not knowing the entry committed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Terminating {
    pub(super) position: LogPosition,
    pub(super) deadline_ns: i64,
    /// Bit per member that acknowledged (own bit set).
    pub(super) acked: u64,
}

/// Event counts, for tools and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Canvasses started.
    pub elections_started: u64,
    /// Times this member became leader.
    pub leaderships: u64,
    /// Times it stepped down.
    pub step_downs: u64,
    /// Appends it rejected (gap or mismatch).
    pub appends_rejected: u64,
    /// Duplicate client messages dropped when applied.
    pub duplicates_dropped: u64,
    /// Client messages dropped when applied because of a sequence gap.
    pub gaps_dropped: u64,
    /// Learner promotions.
    pub promotions: u64,
    /// Snapshots installed from a leader.
    pub snapshots_installed: u64,
    /// Snapshots taken at markers.
    pub snapshots_taken: u64,
    /// Connects refused (leader): the authenticator said no, or the cluster held its maximum
    /// of sessions.
    pub sessions_rejected: u64,
    /// Sessions closed (leader) because their client fell more than `max_unacked_egress`
    /// replies behind (slow consumers).
    pub sessions_disconnected_slow: u64,
    /// Client messages (leader) naming a session that does not exist.
    pub ingress_unknown_session: u64,
    /// Client messages (leader) naming a session opened from another address; not applied.
    pub ingress_not_owned: u64,
    /// Member messages of an older term (answered with this member's term, never acted on).
    pub stale_term_messages: u64,
}

/// One member's consensus core (DESIGN §5, §6): a pure state machine, generic over its log
/// store. Drive it with [`Consensus::start`] once, then [`Consensus::handle`] for every input;
/// carry out the commands it leaves in the [`Outbox`], in order.
///
/// Committed entries are applied inside `handle`, through the [`Application`] passed in (the
/// service container), so module state and service state change at exactly the same log
/// position on every member.
pub struct Consensus<L: LogStore> {
    pub(super) cfg: Config,
    pub(super) bugs: BugFlags,
    pub(super) limits: Limits,
    pub(super) log: L,
    pub(super) rng: SplitMix64,
    pub(super) now_ns: i64,
    pub(super) started: bool,
    pub(super) closed: bool,

    pub(super) term: Term,
    pub(super) voted_for: Option<MemberId>,
    pub(super) initial_node_state: Option<NodeState>,
    pub(super) persisted_commit_bound: LogPosition,
    pub(super) last_bound_persist_ns: i64,
    pub(super) next_persist_id: u64,
    pub(super) persisted_id: u64,
    pub(super) awaiting_persist: u64,
    pub(super) deferred: VecDeque<(u64, MemberId, Vec<u8>)>,

    pub(super) role: Role,
    pub(super) learner: bool,
    pub(super) election: ElectionState,
    pub(super) leader: Option<MemberId>,
    pub(super) election_deadline_ns: i64,
    pub(super) last_leader_contact_ns: Option<i64>,
    pub(super) votes: u32,
    pub(super) nominate_persist_id: u64,

    pub(super) commit: LogPosition,
    pub(super) reported_commit: LogPosition,
    pub(super) applied: LogPosition,
    pub(super) durable: LogPosition,
    pub(super) epoch: u64,
    pub(super) matched: LogPosition,
    pub(super) last_ack_sent: LogPosition,
    /// When this member last answered an append (`i64::MIN`: never).
    pub(super) last_answer_ns: i64,

    pub(super) peers: Vec<Peer>,
    pub(super) leader_term_start: LogPosition,
    pub(super) leader_since_ns: i64,
    pub(super) last_stamp_ns: i64,
    pub(super) unflushed_frames: usize,
    pub(super) unreported_from: Option<LogPosition>,
    pub(super) stopping: Option<i64>,
    pub(super) timer_fires: BTreeSet<(u64, u64)>,
    pub(super) clients: BTreeMap<SessionId, LeaderSession>,
    /// Leader: end positions of the session opens it appended in term `opens_term` and has
    /// not applied yet (they count toward `max_sessions`).
    pub(super) pending_opens: VecDeque<LogPosition>,
    pub(super) opens_term: Term,
    pub(super) service_appended_to: u64,

    pub(super) commit_replies: Vec<Option<LogPosition>>,
    pub(super) learner_target: Option<LogPosition>,
    pub(super) last_query_ns: i64,

    pub(super) latest_snapshot: Option<Arc<Snapshot>>,
    pub(super) incoming: Option<IncomingSnapshot>,

    pub(super) operator_pending: Option<PendingOperator>,
    pub(super) operator_done: Option<OperatorDone>,
    /// `StateHash` entries applied (not in recovery replay) and not yet taken, oldest first;
    /// bounded by [`STATE_HASH_REPORTS`].
    pub(super) state_hash_reports: VecDeque<(LogPosition, u64)>,
    /// Leader: per origin member, the last operator request id appended in this term.
    pub(super) operator_appended: Vec<Option<u64>>,
    /// Leader: the suspension state after the newest suspend/resume in its log (applied or
    /// not); `None` = as applied (`state.suspended`).
    pub(super) suspend_appended: Option<bool>,
    pub(super) terminating: Option<Terminating>,
    /// Recovery replay in `start` (operator shutdown/abort entries are not acted on).
    pub(super) replaying: bool,

    pub(super) state: ModuleState,
    pub(super) authenticator: Box<dyn Authenticator + Send>,
    pub(super) scratch: Vec<u8>,
    /// Messages of a client batch admitted and not yet appended (empty between inputs).
    pub(super) staged: StagedMessages,
    pub(super) scratch_pairs: Vec<(u64, u64)>,
    pub(super) counters: Counters,
}

impl<L: LogStore> std::fmt::Debug for Consensus<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consensus")
            .field("member", &self.cfg.member_id)
            .field("role", &self.role)
            .field("term", &self.term)
            .field("election", &self.election)
            .field("commit", &self.commit)
            .field("applied", &self.applied)
            .field("end", &self.log.end())
            .finish_non_exhaustive()
    }
}

impl<L: LogStore> Consensus<L> {
    /// A member's core over `log` (what recovery found on disk).
    ///
    /// * `node_state`: the node state file, or `None` for a new or wiped directory: the member
    ///   then starts as a learner (unless the `wiped_member_votes` bug is on). When a cluster is
    ///   created, every member's directory is initialised with `NodeState::default()` (term 0,
    ///   no vote), so the first members are voters.
    /// * `snapshot`: the newest valid snapshot, if any (recovery loads it, then replays the log
    ///   up to the commit lower bound in `node_state`).
    ///
    /// # Panics
    /// On an invalid configuration, or if the log starts above position 0 with no snapshot.
    pub fn new(
        cfg: Config,
        log: L,
        node_state: Option<NodeState>,
        snapshot: Option<Arc<Snapshot>>,
    ) -> Self {
        cfg.validate();
        let bugs = cfg.bugs.effective();
        let limits = Limits {
            max_message_bytes: cfg.max_message_bytes,
            reply_cache_entries: cfg.reply_cache_entries,
            reply_cache_bytes: cfg.reply_cache_bytes,
            max_pending_service_messages: cfg.max_pending_service_messages,
        };
        let learner = node_state.is_none() && !bugs.wiped_member_votes;
        let ns = node_state.unwrap_or_default();
        let n = cfg.member_count as usize;
        Self {
            rng: SplitMix64::new(cfg.seed),
            bugs,
            limits,
            log,
            now_ns: 0,
            started: false,
            closed: false,
            term: ns.term,
            voted_for: ns.voted_for,
            initial_node_state: node_state,
            persisted_commit_bound: ns.commit_lower_bound,
            last_bound_persist_ns: 0,
            next_persist_id: 1,
            persisted_id: 0,
            awaiting_persist: 0,
            deferred: VecDeque::new(),
            role: if learner {
                Role::Learner
            } else {
                Role::Follower
            },
            learner,
            election: ElectionState::Init,
            leader: None,
            election_deadline_ns: 0,
            last_leader_contact_ns: None,
            votes: 0,
            nominate_persist_id: 0,
            commit: LogPosition(0),
            reported_commit: LogPosition(0),
            applied: LogPosition(0),
            durable: LogPosition(0),
            epoch: 0,
            matched: LogPosition(0),
            last_ack_sent: LogPosition(0),
            last_answer_ns: i64::MIN,
            peers: (0..n).map(|_| Peer::new(LogPosition(0), 0)).collect(),
            leader_term_start: LogPosition(0),
            leader_since_ns: 0,
            last_stamp_ns: i64::MIN,
            unflushed_frames: 0,
            unreported_from: None,
            stopping: None,
            timer_fires: BTreeSet::new(),
            clients: BTreeMap::new(),
            pending_opens: VecDeque::new(),
            opens_term: Term(0),
            service_appended_to: 0,
            commit_replies: vec![None; n],
            learner_target: None,
            last_query_ns: 0,
            latest_snapshot: snapshot,
            incoming: None,
            operator_pending: None,
            operator_done: None,
            state_hash_reports: VecDeque::new(),
            operator_appended: vec![None; n],
            suspend_appended: None,
            terminating: None,
            replaying: false,
            state: ModuleState::default(),
            authenticator: Box::new(AllowAll),
            scratch: Vec::with_capacity(256),
            staged: StagedMessages::default(),
            scratch_pairs: Vec::new(),
            counters: Counters::default(),
            cfg,
        }
    }

    /// Marks this member as having possibly lost log data it had acknowledged: a machine crash
    /// under `fsync = none` (the page cache, and with it the unsynced tail, is gone). Like a
    /// wiped member it rejoins as a non-voting learner, keeping its term and vote, and becomes
    /// a voter again only once it has caught up to a commit position learned from a majority
    /// in the current leader's term. Without this a member whose acknowledgement made an entry
    /// committed could, having lost it, elect a leader that lacks it. A learner persists
    /// nothing, so the runtime must remember the mark until [`Consensus::is_learner`] turns
    /// false. Call before [`Consensus::start`].
    ///
    /// # Panics
    /// If called after `start`.
    pub fn rejoin_as_learner(&mut self) {
        assert!(
            !self.started,
            "rejoin_as_learner must be called before start"
        );
        if !self.bugs.wiped_member_votes {
            self.learner = true;
            self.role = Role::Learner;
        }
    }

    /// Replaces the authenticator the leader runs on connects (default: accept all, empty
    /// principal).
    pub fn set_authenticator(&mut self, authenticator: Box<dyn Authenticator + Send>) {
        self.authenticator = authenticator;
    }

    /// Recovers and starts the member at time `now_ns`: loads the snapshot into the module
    /// state and (through `app`) the service, replays the log up to the commit lower bound, and
    /// starts as a follower (or learner).
    ///
    /// # Panics
    /// If called twice, or if the log cannot hold what the snapshot and node state say.
    pub fn start(&mut self, now_ns: i64, app: &mut dyn Application, out: &mut Outbox) {
        assert!(!self.started, "start called twice");
        self.started = true;
        self.now_ns = now_ns;
        let (log_start, _) = self.log.start();
        match self.latest_snapshot.clone() {
            Some(snap) => {
                let parts = snap.parts();
                assert!(
                    log_start <= snap.position,
                    "log starts at {log_start}, above the snapshot at {}",
                    snap.position
                );
                if self.log.end() < snap.position {
                    self.log.reset(snap.position, snap.term);
                }
                self.state = ModuleState::decode(parts.module, &self.limits)
                    .expect("a valid snapshot holds a valid module state");
                self.applied = snap.position;
                self.commit = snap.position;
                let mut ctx = self.context(snap.timestamp, snap.position, true);
                app.start_from(&mut ctx, Some(parts));
            }
            None => {
                assert_eq!(
                    log_start,
                    LogPosition(0),
                    "a log that starts above 0 needs a snapshot"
                );
                let mut ctx = self.context(0, LogPosition(0), true);
                app.start_from(&mut ctx, None);
            }
        }
        // Replay only up to the commit lower bound: beyond it the log may hold entries that were
        // never committed (they will be committed, or truncated, as the leader confirms).
        let end = self.log.end();
        let bound = if self.bugs.replay_past_commit_bound {
            end
        } else {
            self.persisted_commit_bound.min(end)
        };
        if bound > self.commit {
            self.commit = bound;
            self.replaying = true;
            self.apply_committed(app, out);
            self.replaying = false;
        }
        self.reported_commit = self.commit;
        self.matched = self.log.start().0;
        self.durable = end;
        self.last_ack_sent = LogPosition(0);
        self.last_stamp_ns = self.state.cluster_time;
        let mut pos = self.applied;
        while let Some(f) = self.log.next_frame(pos) {
            self.last_stamp_ns = self.last_stamp_ns.max(f.frame.header.timestamp);
            pos = f.end;
        }
        self.reset_election_deadline();
        out.commands.push(Command::RoleChanged {
            role: self.role,
            term: self.term,
            leader: None,
        });
        if self.learner {
            self.set_election(ElectionState::FollowerCatchup, out);
            self.send_commit_queries(out);
        } else {
            out.commands.push(Command::ElectionStateChanged {
                state: self.election,
            });
        }
        app.role_change(self.role);
    }

    /// Handles one input; appends the resulting commands to `out`.
    ///
    /// # Panics
    /// If called before [`Consensus::start`], or when an invariant of the core breaks (a bug).
    pub fn handle(&mut self, input: Input<'_>, app: &mut dyn Application, out: &mut Outbox) {
        assert!(self.started, "handle before start");
        if self.closed {
            return;
        }
        match input {
            Input::Tick { now_ns } => {
                self.now_ns = self.now_ns.max(now_ns);
                self.tick(app, out);
            }
            Input::Peer { from, msg } => {
                if from.0 < self.cfg.member_count && from != self.cfg.member_id {
                    if msg.term() < self.term && !matches!(msg, PeerMessage::CommitQuery { .. }) {
                        self.counters.stale_term_messages += 1;
                    }
                    self.on_peer(from, msg, app, out);
                }
            }
            Input::Client { from, msg } => self.on_client(from, msg, app, out),
            Input::Flush => self.flush(app, out),
            Input::Apply => self.apply_committed(app, out),
            Input::LogDurable { position, epoch } => self.on_log_durable(position, epoch, app, out),
            Input::StatePersisted { id } => self.on_state_persisted(id, app, out),
            Input::TakeSnapshot => self.on_take_snapshot_request(app, out),
            Input::Purge { position } => self.on_purge(position, out),
            Input::Stop => {
                if self.role == Role::Leader && self.cfg.member_count > 1 {
                    self.stopping = Some(self.now_ns + self.cfg.election_timeout_ns);
                    self.flush(app, out);
                    self.try_transfer(app, out);
                } else {
                    self.terminate(app, out);
                }
            }
            Input::Operator { action, id } => self.on_operator_request(action, id, app, out),
            Input::StateHash { position, hash } => {
                self.on_state_hash(position, hash, app, out);
            }
        }
        if self.terminating.is_some() {
            self.check_termination(app, out);
        }
        if self.commit != self.reported_commit {
            self.reported_commit = self.commit;
            out.commands.push(Command::CommitAdvanced {
                position: self.commit,
            });
        }
    }

    fn on_peer(
        &mut self,
        from: MemberId,
        msg: PeerMessage<'_>,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        match msg {
            PeerMessage::VoteRequest { .. } => self.on_vote_request(from, msg, app, out),
            PeerMessage::VoteResponse { .. } => self.on_vote_response(from, msg, app, out),
            PeerMessage::Append {
                term,
                leader,
                prev_position,
                prev_term,
                commit,
                frames,
            } => self.on_append(
                from,
                term,
                leader,
                prev_position,
                prev_term,
                commit,
                frames,
                app,
                out,
            ),
            PeerMessage::AppendResponse {
                term,
                success,
                learner,
                position,
                hint_term,
                ..
            } => {
                self.on_append_response(from, term, success, learner, position, hint_term, app, out)
            }
            PeerMessage::InstallSnapshot {
                term,
                snapshot_position,
                snapshot_term,
                total_len,
                offset,
                chunk,
                ..
            } => self.on_install_snapshot(
                from,
                term,
                snapshot_position,
                snapshot_term,
                total_len,
                offset,
                chunk,
                app,
                out,
            ),
            PeerMessage::SnapshotResponse {
                term,
                snapshot_position,
                next_offset,
                ..
            } => self.on_snapshot_response(from, term, snapshot_position, next_offset, app, out),
            PeerMessage::TimeoutNow { term, .. } => {
                if term > self.term {
                    self.adopt_term(term, app, out);
                }
                self.on_timeout_now(term, app, out);
            }
            // A learner's term is only what it heard: it never makes a voter step down.
            PeerMessage::CommitQuery { .. } => self.on_commit_query(from, out),
            PeerMessage::CommitReply {
                term,
                commit,
                learner,
                ..
            } => {
                if term > self.term {
                    self.adopt_term(term, app, out);
                }
                self.on_commit_reply(from, commit, learner, app, out);
            }
            PeerMessage::OperatorRequest {
                term,
                from: origin,
                action,
                id,
            } => {
                if term > self.term {
                    // A leader that hears of a newer term is stale: step down, drop the request
                    // (its origin repeats it to the new leader).
                    self.adopt_term(term, app, out);
                } else if origin == from {
                    self.on_forwarded_operator(origin, action, id, app, out);
                }
            }
            PeerMessage::TerminationAck { term, position, .. } => {
                if term > self.term {
                    self.adopt_term(term, app, out);
                }
                self.on_termination_ack(from, position, app, out);
            }
        }
    }

    fn tick(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        match self.role {
            Role::Leader => self.leader_tick(app, out),
            Role::Learner => {
                if self.learner_target.is_none()
                    && self.now_ns - self.last_query_ns >= self.cfg.heartbeat_interval_ns
                {
                    self.send_commit_queries(out);
                }
            }
            Role::Follower | Role::Candidate => self.tick_election(app, out),
        }
        if self.operator_pending.is_some() && !self.closed {
            self.repeat_operator_request(app, out);
        }
        if !self.learner
            && self.commit > self.persisted_commit_bound
            && self.now_ns - self.last_bound_persist_ns >= self.cfg.heartbeat_interval_ns
        {
            self.persist(false, out);
        }
    }

    // ---- persistence ------------------------------------------------------------------------

    /// Issues a `PersistState` of the current term, vote and commit bound; returns its id. A
    /// `blocking` persist holds back every dependent message until it completes.
    pub(super) fn persist(&mut self, blocking: bool, out: &mut Outbox) -> u64 {
        if self.learner {
            // A learner persists nothing: if it crashes it must start as a learner again.
            return 0;
        }
        let id = self.next_persist_id;
        self.next_persist_id += 1;
        self.persisted_commit_bound = self.persisted_commit_bound.max(self.commit);
        self.last_bound_persist_ns = self.now_ns;
        out.commands.push(Command::PersistState {
            id,
            state: NodeState {
                term: self.term,
                voted_for: self.voted_for,
                commit_lower_bound: self.persisted_commit_bound,
            },
        });
        if blocking {
            self.awaiting_persist = id;
        }
        id
    }

    /// Sends a message whose content depends on the term or vote: held until the latest
    /// blocking persist is durable.
    pub(super) fn send_dependent(&mut self, to: MemberId, msg: &PeerMessage<'_>, out: &mut Outbox) {
        if self.awaiting_persist > self.persisted_id {
            const MAX_DEFERRED: usize = 4096;
            if self.deferred.len() >= MAX_DEFERRED {
                self.deferred.pop_front();
            }
            let mut bytes = Vec::new();
            msg.encode(&mut bytes);
            self.deferred.push_back((self.awaiting_persist, to, bytes));
        } else {
            out.send_peer(to, msg);
        }
    }

    fn on_state_persisted(&mut self, id: u64, app: &mut dyn Application, out: &mut Outbox) {
        if id < self.next_persist_id {
            self.persisted_id = self.persisted_id.max(id);
        }
        while self
            .deferred
            .front()
            .is_some_and(|(wait, _, _)| *wait <= self.persisted_id)
        {
            let (_, to, bytes) = self.deferred.pop_front().expect("checked");
            out.send_peer_raw(to, &bytes);
        }
        if self.election == ElectionState::Nominate && self.persisted_id >= self.nominate_persist_id
        {
            self.set_election(ElectionState::CandidateBallot, out);
            if self.votes.count_ones() as usize >= self.cfg.majority() {
                self.become_leader(app, out);
            }
        }
    }

    // ---- helpers ----------------------------------------------------------------------------

    /// The other members.
    pub(super) fn others(&self) -> impl Iterator<Item = MemberId> + use<L> {
        let me = self.cfg.member_id.0;
        (0..self.cfg.member_count)
            .filter(move |&i| i != me)
            .map(MemberId)
    }

    /// A `Cluster` handle over the module state.
    pub(super) fn context(
        &mut self,
        timestamp: i64,
        position: LogPosition,
        in_log: bool,
    ) -> ApplyContext<'_> {
        ApplyContext {
            state: &mut self.state,
            limits: self.limits,
            member_id: self.cfg.member_id.0,
            role: self.role,
            timestamp,
            position: position.0,
            in_log,
        }
    }

    /// Leader: appends an entry stamped with max(previous stamp, clock).
    pub(super) fn append_entry(
        &mut self,
        entry_type: EntryType,
        session_id: SessionId,
        sequence: u64,
        payload: &[u8],
    ) -> LogPosition {
        debug_assert_eq!(self.role, Role::Leader);
        debug_assert!(
            self.staged.is_empty(),
            "a staged client batch is appended first"
        );
        let timestamp = self.last_stamp_ns.max(self.now_ns);
        self.last_stamp_ns = timestamp;
        let from = self.log.end();
        let header = FrameHeader {
            entry_type,
            flags: 0,
            term: self.term,
            session_id,
            sequence,
            timestamp,
        };
        let end = self.log.append(&header, payload);
        self.unreported_from.get_or_insert(from);
        self.unflushed_frames += 1;
        end
    }

    /// Reports buffered appends to the runtime and replicates them.
    pub(super) fn flush(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(from) = self.unreported_from.take() {
            out.commands.push(Command::Appended {
                from,
                to: self.log.end(),
                epoch: self.epoch,
            });
        }
        self.unflushed_frames = 0;
        self.replicate_all(out);
        if self.bugs.commit_without_majority {
            self.advance_leader_commit(app, out);
        }
    }

    fn on_take_snapshot_request(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.role == Role::Leader && self.stopping.is_none() && self.terminating.is_none() {
            self.append_entry(EntryType::SnapshotMarker, SessionId(0), 0, &[]);
            self.flush(app, out);
        }
    }

    fn on_state_hash(
        &mut self,
        position: LogPosition,
        hash: u64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if self.role == Role::Leader
            && self.stopping.is_none()
            && self.terminating.is_none()
            && position.0 > 0
            && position <= self.applied
        {
            let mut payload = [0u8; StateHashPayload::LEN];
            let mut buf = std::mem::take(&mut self.scratch);
            buf.clear();
            StateHashPayload { position, hash }.encode(&mut buf);
            payload.copy_from_slice(&buf);
            self.scratch = buf;
            self.append_entry(EntryType::StateHash, SessionId(0), 0, &payload);
            self.flush(app, out);
        }
    }

    fn on_purge(&mut self, position: LogPosition, out: &mut Outbox) {
        let Some(snap) = &self.latest_snapshot else {
            return;
        };
        let (start, _) = self.log.start();
        if position > snap.position || position <= start || position > self.applied {
            return;
        }
        self.log.purge(position);
        out.commands.push(Command::Purged { position });
    }

    // ---- accessors --------------------------------------------------------------------------

    /// This member.
    pub fn member_id(&self) -> MemberId {
        self.cfg.member_id
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Whether this member is a learner (new or wiped directory, not caught up yet).
    pub fn is_learner(&self) -> bool {
        self.learner
    }
    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }
    /// The vote cast in the current term.
    pub fn voted_for(&self) -> Option<MemberId> {
        self.voted_for
    }
    /// The leader this member knows of.
    pub fn leader(&self) -> Option<MemberId> {
        self.leader
    }
    /// The election state.
    pub fn election_state(&self) -> ElectionState {
        self.election
    }
    /// The commit position.
    pub fn commit_position(&self) -> LogPosition {
        self.commit
    }
    /// The position applied to module and service state.
    pub fn applied_position(&self) -> LogPosition {
        self.applied
    }
    /// The durable log position (as reported by the runtime).
    pub fn durable_position(&self) -> LogPosition {
        self.durable
    }
    /// The follower's matched position in the current term.
    pub fn matched_position(&self) -> LogPosition {
        self.matched
    }
    /// The append position.
    pub fn log_end(&self) -> LogPosition {
        self.log.end()
    }
    /// The current truncation epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Gives the log store back (a crash: the runtime or simulator keeps what was durable).
    pub fn into_log(self) -> L {
        self.log
    }
    /// The log store.
    pub fn log(&self) -> &L {
        &self.log
    }
    /// The replicated module state.
    pub fn module_state(&self) -> &ModuleState {
        &self.state
    }
    /// The newest snapshot this member took or installed.
    pub fn latest_snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.latest_snapshot.as_ref()
    }
    /// Whether the member stopped.
    pub fn is_closed(&self) -> bool {
        self.closed
    }
    /// Takes the completion of the operator request made on this member with
    /// `Input::Operator`, once the member applied its entry (for `Snapshot` and `Shutdown`,
    /// after the snapshot was taken: its `SnapshotTaken` command precedes this). Check after
    /// every `handle` that may apply entries; a shutdown or abort completes in the same call
    /// that emits `Command::Terminated`.
    pub fn take_operator_done(&mut self) -> Option<OperatorDone> {
        self.operator_done.take()
    }
    /// Takes the oldest `StateHash` entry applied here and not taken yet: `(snapshot
    /// position, the leader's hash there)`. Entries applied in recovery replay are not
    /// reported; at most [`STATE_HASH_REPORTS`] are kept (the oldest are dropped).
    pub fn take_state_hash_report(&mut self) -> Option<(LogPosition, u64)> {
        self.state_hash_reports.pop_front()
    }
    /// The `StateHash` reports not taken yet, oldest first (see
    /// [`Consensus::take_state_hash_report`]).
    pub fn state_hash_reports(&self) -> impl Iterator<Item = (LogPosition, u64)> + '_ {
        self.state_hash_reports.iter().copied()
    }
    /// The operator request made on this member and not completed yet, if any.
    pub fn pending_operator(&self) -> Option<(OperatorAction, u64)> {
        self.operator_pending.map(|p| (p.action, p.id))
    }
    /// Forgets the operator request made here (the runtime gave up waiting): it is no longer
    /// repeated to the leader, and its entry, if the leader appended it, completes nothing.
    pub fn cancel_operator_request(&mut self) {
        self.operator_pending = None;
    }
    /// Whether the leader holds new ingress, timers and service messages back: suspended
    /// (as it appended; others: as applied), or terminating after a shutdown or abort.
    pub fn is_suspended(&self) -> bool {
        self.suspend_appended.unwrap_or(self.state.suspended)
    }
    /// Event counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }
    /// The node state as last issued in a `PersistState` (or as given at construction).
    pub fn node_state(&self) -> NodeState {
        NodeState {
            term: self.term,
            voted_for: self.voted_for,
            commit_lower_bound: self.persisted_commit_bound,
        }
    }
    /// The node state given at construction (`None` for a new or wiped directory).
    pub fn initial_node_state(&self) -> Option<NodeState> {
        self.initial_node_state
    }
    /// Leader only: each member's acknowledged position in this term (own entry: durable).
    pub fn follower_positions(&self) -> Vec<LogPosition> {
        let mut positions = Vec::with_capacity(self.peers.len());
        self.for_each_follower_position(|_, p| positions.push(p));
        positions
    }
    /// [`Consensus::follower_positions`] without allocating: `f(member id, position)` for
    /// every member, in member order.
    pub fn for_each_follower_position(&self, mut f: impl FnMut(u32, LogPosition)) {
        for (i, p) in self.peers.iter().enumerate() {
            let i = i as u32;
            f(
                i,
                if i == self.cfg.member_id.0 {
                    self.durable
                } else {
                    p.matched
                },
            );
        }
    }
}
