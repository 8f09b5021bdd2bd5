//! Applying committed entries, in log order, to the module state and (through
//! [`Application`]) to the service; snapshots at snapshot markers.
//!
//! Exactly-once rules applied here, identically on every member: a client message is applied
//! only if its sequence is exactly one more than the session's last applied sequence (a
//! duplicate is dropped, a gap is dropped and counted); a message for a closing or unknown
//! session is dropped; a timer event whose generation is no longer current is ignored; a
//! service message whose id was already applied is dropped; a session-open that repeats an
//! open session's (client address, correlation id) reuses that session.

use std::sync::Arc;

use crate::codec::client::{Egress, EventCode, RejectCode};
use crate::codec::entry::{
    NewLeadershipTermPayload, OperatorActionPayload, SESSION_MESSAGES_HEADER_LEN,
    SESSION_MESSAGES_RECORD_OVERHEAD, SessionMessages, SessionOpenPayload, StateHashPayload,
    decode_session_close, decode_timer_event,
};
use crate::codec::frame::{EntryType, FRAME_HEADER_LEN, Frame, FrameHeader, frame_len_aligned};
use crate::consensus::command::{Command, Outbox};
use crate::consensus::core::{Consensus, LeaderSession};
use crate::consensus::sessions::{ReplyCache, Session};
use crate::consensus::snapshot::{Snapshot, SnapshotParts};
use crate::consensus::state::{ApplyContext, Limits, ModuleState};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{ClientAddr, LogPosition, OperatorAction, SessionId};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, Header, LeadershipTermEvent, Role, SnapshotWriter,
};

/// What the core applies committed entries through: the service container implements it
/// (see [`crate::container::ServiceContainer`]). Each call gets the [`Cluster`] handle for the
/// entry being applied.
pub trait Application {
    /// Build a fresh service and start it, from `snapshot` (the service's snapshot bytes) or
    /// empty. Called once at start and again whenever a snapshot is installed.
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>);
    /// A session opened.
    fn session_open(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        timestamp: i64,
    );
    /// A session closed.
    fn session_close(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        timestamp: i64,
        reason: CloseReason,
    );
    /// A client message (`session` is `Some`) or service message (`None`).
    fn message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        timestamp: i64,
        message: &[u8],
        header: &Header,
    );
    /// A timer fired.
    fn timer_event(&mut self, cluster: &mut dyn Cluster, correlation_id: u64, timestamp: i64);
    /// A new leadership term entry was applied.
    fn new_leadership_term(&mut self, cluster: &mut dyn Cluster, event: &LeadershipTermEvent);
    /// Write the service's snapshot into `out`.
    fn take_snapshot(&mut self, out: &mut Vec<u8>);
    /// The member's role changed.
    fn role_change(&mut self, role: Role);
    /// The member is stopping.
    fn terminate(&mut self, cluster: &mut dyn Cluster);
    /// Starts from a snapshot (its module part is what the core's module state was just set
    /// to) or empty: the core calls this, at start and when it installs a snapshot. The
    /// default starts the service with the snapshot's service part; a service applying on a
    /// thread of its own ([`crate::container::remote`]) also takes the module part, for its
    /// copy of the module state.
    fn start_from(&mut self, cluster: &mut dyn Cluster, snapshot: Option<SnapshotParts<'_>>) {
        self.start(cluster, snapshot.map(|p| p.service));
    }
    /// The log position up to which the application can apply now: the core applies committed
    /// entries up to here and no further. A service applying on a thread of its own is ahead
    /// of the core by what it has done ([`crate::container::remote`]); the default, a service
    /// called in line, has no limit.
    fn apply_limit(&mut self) -> u64 {
        u64::MAX
    }
    /// Whether the application has failed for good (a service on its own thread whose
    /// recorded effects could not be replayed): the core then applies nothing more and takes
    /// no snapshot, and the runtime stops. In-line services never fail this way.
    fn failed(&self) -> bool {
        false
    }
}

/// An application with no service: for tests and benchmarks of the core alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopApplication;

impl Application for NoopApplication {
    fn start(&mut self, _: &mut dyn Cluster, _: Option<&[u8]>) {}
    fn session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}
    fn session_close(
        &mut self,
        _: &mut dyn Cluster,
        _: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
    }
    fn message(&mut self, _: &mut dyn Cluster, _: Option<SessionId>, _: i64, _: &[u8], _: &Header) {
    }
    fn timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}
    fn new_leadership_term(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}
    fn take_snapshot(&mut self, _: &mut Vec<u8>) {}
    fn role_change(&mut self, _: Role) {}
    fn terminate(&mut self, _: &mut dyn Cluster) {}
}

/// Any `ClusteredService` can be driven directly (no factory: `start` restores into the same
/// instance, so prefer [`crate::container::ServiceContainer`] in nodes).
impl<S: tandem_service_api::ClusteredService> Application for S {
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        self.on_start(
            cluster,
            snapshot.map(tandem_service_api::SnapshotImage::new),
        );
    }
    fn session_open(&mut self, c: &mut dyn Cluster, s: &ClientSession<'_>, t: i64) {
        self.on_session_open(c, s, t);
    }
    fn session_close(
        &mut self,
        c: &mut dyn Cluster,
        s: &ClientSession<'_>,
        t: i64,
        r: CloseReason,
    ) {
        self.on_session_close(c, s, t, r);
    }
    fn message(&mut self, c: &mut dyn Cluster, s: Option<SessionId>, t: i64, m: &[u8], h: &Header) {
        self.on_session_message(c, s, t, m, h);
    }
    fn timer_event(&mut self, c: &mut dyn Cluster, id: u64, t: i64) {
        self.on_timer_event(c, id, t);
    }
    fn new_leadership_term(&mut self, c: &mut dyn Cluster, e: &LeadershipTermEvent) {
        self.on_new_leadership_term_event(c, e);
    }
    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        self.on_take_snapshot(&mut SnapshotWriter::new(out));
    }
    fn role_change(&mut self, role: Role) {
        self.on_role_change(role);
    }
    fn terminate(&mut self, c: &mut dyn Cluster) {
        self.on_terminate(c);
    }
}

/// The fixed inputs of applying an entry's module part: identical on every member (from the
/// replicated configuration), and on the core's side and a service thread's side alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplyRules {
    /// Limits of the replicated state.
    pub limits: Limits,
    /// This member.
    pub member_id: u32,
    /// The cap on open sessions.
    pub max_sessions: usize,
    /// Bug flag (`BugFlags::apply_duplicates`): apply a duplicate client message.
    pub apply_duplicates: bool,
}

/// What applying one entry's module and service parts leaves for the core to do after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing more.
    Nothing,
    /// A client message repeated one already applied (dropped, unless the bug flag is on).
    Duplicate,
    /// A client message skipped a sequence number (dropped).
    Gap,
    /// A `SessionMessages` entry: how many of its messages were duplicates and gaps (dropped
    /// as in [`Applied::Duplicate`] and [`Applied::Gap`]).
    Messages {
        /// Messages that repeated one already applied.
        duplicates: u64,
        /// Messages that skipped a sequence number.
        gaps: u64,
    },
    /// A session-open entry: the answer for the client (`code` `Ok` with `id`, or `Rejected`
    /// with `reject`).
    Opened {
        /// The client's egress address.
        client: ClientAddr,
        /// The client's correlation id.
        correlation_id: u64,
        /// The session (new or the one it repeats; 0 when rejected).
        id: SessionId,
        /// Accepted or rejected.
        code: EventCode,
        /// Why it was rejected.
        reject: RejectCode,
    },
    /// A session closed.
    Closed {
        /// The session.
        id: SessionId,
        /// Where its client was when it opened.
        client: ClientAddr,
        /// The last client sequence applied.
        last_seq: u64,
    },
    /// A timer-event entry of generation `generation`.
    Timer {
        /// The timer's correlation id.
        id: u64,
        /// The generation the entry carries.
        generation: u64,
    },
    /// A state-hash entry.
    StateHash(StateHashPayload),
    /// A snapshot marker: take a snapshot here.
    SnapshotMarker,
    /// An operator action.
    Operator(OperatorActionPayload),
}

/// Applies one client message with `sequence` (the exactly-once rules of the module docs)
/// and, if it is applied, hands it to `app`; returns [`Applied::Nothing`],
/// [`Applied::Duplicate`] or [`Applied::Gap`].
fn apply_session_message(
    ctx: &mut ApplyContext<'_>,
    rules: &ApplyRules,
    app: &mut dyn Application,
    h: FrameHeader,
    sequence: u64,
    message: &[u8],
    log_position: u64,
) -> Applied {
    let sid = h.session_id;
    let (apply, outcome) = match ctx.state.sessions.get_mut(&sid) {
        Some(s) if s.closing.is_none() => {
            if sequence == s.last_seq + 1 {
                s.last_seq = sequence;
                (true, Applied::Nothing)
            } else if sequence <= s.last_seq {
                (rules.apply_duplicates, Applied::Duplicate)
            } else {
                (false, Applied::Gap)
            }
        }
        _ => (false, Applied::Nothing),
    };
    if apply {
        let header = Header {
            log_position,
            term: h.term.0,
            timestamp: h.timestamp,
            sequence,
        };
        app.message(ctx, Some(sid), h.timestamp, message, &header);
    }
    outcome
}

/// Applies the module part of the committed `frame` ending at `end` to `state` and calls
/// `app` for its service part, with a [`Cluster`] handle whose effects land in `state`. The
/// one definition of the exactly-once rules (module docs): the core runs it, and so does a
/// service applying on a thread of its own ([`crate::container::remote`]) on its copy of the
/// module state, so both copies stay equal.
pub fn apply_entry(
    state: &mut ModuleState,
    rules: &ApplyRules,
    role: Role,
    scratch: &mut Vec<u8>,
    frame: &Frame<'_>,
    end: LogPosition,
    app: &mut dyn Application,
) -> Applied {
    let h = frame.header;
    let ts = h.timestamp;
    state.cluster_time = state.cluster_time.max(ts);
    let mut ctx = ApplyContext {
        state,
        limits: rules.limits,
        member_id: rules.member_id,
        role,
        timestamp: ts,
        position: end.0,
        in_log: true,
    };
    match h.entry_type {
        EntryType::Padding => Applied::Nothing,
        EntryType::SessionMessage => {
            apply_session_message(&mut ctx, rules, app, h, h.sequence, frame.payload, end.0)
        }
        EntryType::SessionMessages => {
            let Ok(messages) = SessionMessages::decode(frame.payload) else {
                return Applied::Nothing;
            };
            // Each message is applied as a `SessionMessage` entry of its own would be. Its
            // log position is where its bytes end in the frame, so positions stay distinct and
            // increasing; the last one's is the frame's end, where the entry ends.
            let payload_start =
                end.0 - frame_len_aligned(frame.payload.len()) as u64 + FRAME_HEADER_LEN as u64;
            let last = messages.len() - 1;
            let (mut duplicates, mut gaps) = (0, 0);
            let mut offset = SESSION_MESSAGES_HEADER_LEN;
            for (i, message) in messages.enumerate() {
                offset += SESSION_MESSAGES_RECORD_OVERHEAD + message.len();
                let position = if i == last {
                    end.0
                } else {
                    payload_start + offset as u64
                };
                ctx.position = position;
                let sequence = h.sequence.wrapping_add(i as u64);
                match apply_session_message(&mut ctx, rules, app, h, sequence, message, position) {
                    Applied::Duplicate => duplicates += 1,
                    Applied::Gap => gaps += 1,
                    _ => {}
                }
            }
            Applied::Messages { duplicates, gaps }
        }
        EntryType::NewLeadershipTerm => {
            if let Ok(p) = NewLeadershipTermPayload::decode(frame.payload) {
                let event = LeadershipTermEvent {
                    term: h.term.0,
                    leader_member_id: p.leader.0,
                    term_base_position: p.term_base_position.0,
                    log_position: end.0,
                    timestamp: ts,
                };
                app.new_leadership_term(&mut ctx, &event);
            }
            Applied::Nothing
        }
        EntryType::SessionOpen => {
            let Ok(p) = SessionOpenPayload::decode(frame.payload) else {
                return Applied::Nothing;
            };
            let correlation_id = h.sequence;
            let existing = ctx
                .state
                .sessions
                .values()
                .find(|s| s.client == p.client && s.correlation_id == correlation_id)
                .map(|s| s.id);
            // The cap on sessions holds at apply too (the same on every member: `max_sessions`
            // is part of the replicated configuration, like the reply cache limits), for opens
            // appended before the cap was reached.
            let (code, id, reject) = if !p.accepted {
                (
                    EventCode::Rejected,
                    SessionId(0),
                    RejectCode::Authentication,
                )
            } else if let Some(id) = existing {
                (EventCode::Ok, id, RejectCode::Other(0))
            } else if ctx.state.sessions.len() >= rules.max_sessions {
                (
                    EventCode::Rejected,
                    SessionId(0),
                    RejectCode::TooManySessions,
                )
            } else {
                let id = SessionId(ctx.state.next_session_id);
                ctx.state.next_session_id += 1;
                ctx.state.sessions.insert(
                    id,
                    Session {
                        id,
                        client: p.client,
                        correlation_id,
                        principal: p.principal.to_vec(),
                        last_seq: 0,
                        egress_seq: 0,
                        closing: None,
                        replies: ReplyCache::default(),
                    },
                );
                scratch.clear();
                scratch.extend_from_slice(p.principal);
                let session = ClientSession {
                    id,
                    principal: scratch,
                };
                app.session_open(&mut ctx, &session, ts);
                (EventCode::Ok, id, RejectCode::Other(0))
            };
            Applied::Opened {
                client: p.client,
                correlation_id,
                id,
                code,
                reject,
            }
        }
        EntryType::SessionClose => {
            let reason = decode_session_close(frame.payload).unwrap_or(CloseReason::ClientAction);
            let Some(s) = ctx.state.sessions.remove(&h.session_id) else {
                return Applied::Nothing;
            };
            let session = ClientSession {
                id: s.id,
                principal: &s.principal,
            };
            app.session_close(&mut ctx, &session, ts, reason);
            Applied::Closed {
                id: s.id,
                client: s.client,
                last_seq: s.last_seq,
            }
        }
        EntryType::TimerEvent => {
            let Ok(id) = decode_timer_event(frame.payload) else {
                return Applied::Nothing;
            };
            if ctx.state.timers.fire(id, h.sequence) {
                app.timer_event(&mut ctx, id, ts);
            }
            Applied::Timer {
                id,
                generation: h.sequence,
            }
        }
        EntryType::ServiceMessage => {
            let id = h.sequence;
            if id > ctx.state.last_applied_service_msg_id {
                ctx.state.last_applied_service_msg_id = id;
                while ctx
                    .state
                    .pending_service
                    .front()
                    .is_some_and(|(p, _)| *p <= id)
                {
                    ctx.state.pending_service.pop_front();
                }
                let header = Header {
                    log_position: end.0,
                    term: h.term.0,
                    timestamp: ts,
                    sequence: id,
                };
                app.message(&mut ctx, None, ts, frame.payload, &header);
            }
            Applied::Nothing
        }
        // Never reaches the service: reported to the runtime, which compares the leader's hash
        // with its own at that snapshot position.
        EntryType::StateHash => {
            StateHashPayload::decode(frame.payload).map_or(Applied::Nothing, Applied::StateHash)
        }
        EntryType::SnapshotMarker => Applied::SnapshotMarker,
        EntryType::OperatorAction => {
            OperatorActionPayload::decode(frame.payload).map_or(Applied::Nothing, Applied::Operator)
        }
    }
}

/// Whether applying an operator action takes a snapshot at its position.
pub fn operator_takes_snapshot(action: OperatorAction) -> bool {
    matches!(action, OperatorAction::Snapshot | OperatorAction::Shutdown)
}

impl<L: LogStore> Consensus<L> {
    /// The rules [`apply_entry`] applies with on this member.
    pub fn apply_rules(&self) -> ApplyRules {
        ApplyRules {
            limits: self.limits,
            member_id: self.cfg.member_id.0,
            max_sessions: self.cfg.max_sessions,
            apply_duplicates: self.bugs.apply_duplicates,
        }
    }

    /// Applies every committed, unapplied frame, in order, up to what `app` can apply now
    /// ([`Application::apply_limit`]).
    pub(super) fn apply_committed(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        let limit = self.commit.min(LogPosition(app.apply_limit()));
        let rules = self.apply_rules();
        while self.applied < limit && !app.failed() {
            let pos = self.applied;
            // The next frame, past any segment padding at `pos`; the store says where it ends.
            let located = self.log.next_frame(pos).unwrap_or_else(|| {
                panic!(
                    "member {}: committed frame missing at {pos}",
                    self.cfg.member_id
                )
            });
            if located.position >= limit {
                // Only padding lies between what was applied and the limit.
                break;
            }
            let (frame, end) = (located.frame, located.end);
            assert!(
                end <= self.commit,
                "commit position {} inside the frame at {pos}",
                self.commit
            );
            if end > limit {
                // The application has not reached this frame yet.
                break;
            }
            let h = frame.header;
            let ts = h.timestamp;
            let leader = self.role == Role::Leader;
            let applied = apply_entry(
                &mut self.state,
                &rules,
                self.role,
                &mut self.scratch,
                &frame,
                end,
                app,
            );
            if app.failed() {
                // Not applied: the service's part could not be replayed.
                return;
            }
            match applied {
                Applied::Nothing => {}
                Applied::Duplicate => self.counters.duplicates_dropped += 1,
                Applied::Gap => self.counters.gaps_dropped += 1,
                Applied::Messages { duplicates, gaps } => {
                    self.counters.duplicates_dropped += duplicates;
                    self.counters.gaps_dropped += gaps;
                }
                Applied::Opened {
                    client,
                    correlation_id,
                    id,
                    code,
                    reject,
                } => {
                    if leader {
                        if code == EventCode::Ok {
                            let now = self.now_ns;
                            self.clients.entry(id).or_insert(LeaderSession {
                                last_heard_ns: now,
                                appended_seq: 0,
                                addr: client,
                                close_appended: false,
                                acked_egress_seq: 0,
                            });
                        } else {
                            self.counters.sessions_rejected += 1;
                        }
                        out.send_client(
                            client,
                            &Egress::SessionEvent {
                                correlation_id,
                                session: id,
                                code,
                                leader: Some(self.cfg.member_id),
                                term: self.term,
                                value: if code == EventCode::Ok {
                                    0
                                } else {
                                    reject.code()
                                },
                            },
                        );
                    }
                }
                Applied::Closed {
                    id,
                    client,
                    last_seq,
                } => {
                    if leader {
                        let to = self.clients.remove(&id).map_or(client, |c| c.addr);
                        out.send_client(
                            to,
                            &Egress::SessionEvent {
                                correlation_id: 0,
                                session: id,
                                code: EventCode::Closed,
                                leader: Some(self.cfg.member_id),
                                term: self.term,
                                value: last_seq,
                            },
                        );
                    }
                }
                Applied::Timer { id, generation } => {
                    if leader {
                        self.timer_fires.remove(&(id, generation));
                    }
                }
                Applied::StateHash(p) => {
                    if !self.replaying {
                        if self.state_hash_reports.len()
                            >= crate::consensus::core::STATE_HASH_REPORTS
                        {
                            self.state_hash_reports.pop_front();
                        }
                        self.state_hash_reports.push_back((p.position, p.hash));
                    }
                }
                Applied::SnapshotMarker => {
                    self.applied = end;
                    self.take_snapshot(end, h.term, ts, app, out);
                    continue;
                }
                Applied::Operator(p) => {
                    self.applied = end;
                    self.apply_operator(p, end, h.term, ts, app, out);
                    if self.closed {
                        // Shutdown or abort: nothing more is applied.
                        return;
                    }
                    self.after_apply(out);
                    continue;
                }
            }
            self.applied = end;
            self.after_apply(out);
        }
    }

    /// Leader duties that follow from what was just applied; followers just forget them.
    /// While suspended the leader holds service closes and service messages back (they stay
    /// in the module state and follow the resume).
    fn after_apply(&mut self, out: &mut Outbox) {
        if self.role == Role::Leader && self.appends_held() {
            if !self.state.new_replies.is_empty() {
                self.send_new_replies(out);
            }
            self.state.new_closings.clear();
            self.state.new_service_messages = false;
        } else if self.role == Role::Leader {
            if !self.state.new_replies.is_empty() {
                self.send_new_replies(out);
            }
            if !self.state.new_closings.is_empty() {
                let closings = std::mem::take(&mut self.state.new_closings);
                for &id in &closings {
                    self.append_close(id, CloseReason::ServiceAction);
                }
                self.state.new_closings = closings;
                self.state.new_closings.clear();
            }
            if self.state.new_service_messages {
                self.state.new_service_messages = false;
                self.append_pending_service_messages();
            }
        } else {
            self.state.new_replies.clear();
            self.state.new_closings.clear();
            self.state.new_service_messages = false;
        }
    }

    pub(super) fn take_snapshot(
        &mut self,
        position: LogPosition,
        term: crate::consensus::types::Term,
        timestamp: i64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let mut module = Vec::new();
        self.state.encode(&mut module);
        let mut service = Vec::new();
        app.take_snapshot(&mut service);
        if app.failed() {
            // No snapshot without the service's part.
            return;
        }
        let snapshot = Arc::new(Snapshot::encode(
            position, term, timestamp, &module, &service,
        ));
        self.latest_snapshot = Some(snapshot.clone());
        self.counters.snapshots_taken += 1;
        out.commands.push(Command::SnapshotTaken { snapshot });
    }
}
