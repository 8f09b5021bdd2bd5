//! Elections: pre-vote (canvass), vote, leadership, learners catching up, leadership transfer.
//!
//! States are an explicit enum with numeric codes (Aeron's list, published for tools). The
//! core uses this subset:
//!
//! ```text
//!  INIT(0) ──timeout──▶ CANVASS(1) ──majority of pre-votes──▶ NOMINATE(2) ──term+vote durable──▶
//!  CANDIDATE_BALLOT(3) ──majority──▶ LEADER_READY(8)
//!  any ──append from a leader──▶ FOLLOWER_READY(16)      voted, no leader yet ──▶ FOLLOWER_BALLOT(4)
//!  new/wiped directory ──▶ FOLLOWER_CATCHUP(13) (learner) ──caught up──▶ FOLLOWER_READY(16)
//!  stopped ──▶ CLOSED(17)
//! ```
//!
//! Rules (DESIGN §5): a pre-vote is refused while the voter hears a live leader (it heard one
//! within the base election timeout) and never changes the voter's term; election timeouts are
//! randomised in `[t, 2t)` from the core's seeded PRNG; the candidate's new term and self-vote,
//! and a voter's adopted term and vote, are persisted (`PersistState`) before any message that
//! depends on them leaves (they wait in a deferred queue for `StatePersisted`); a vote needs a
//! log at least as up to date (last term, then last position); any message with a higher term
//! (except a pre-vote request) makes the receiver adopt the term and step down. Learners neither
//! vote nor canvass; they ask the members for their commit positions and become voters once
//! their log holds the highest commit position reported by a majority (not counting
//! themselves) *and* they have learned a commit position that lies in the current leader's own
//! term (so it covers every entry committed before, even one that only the wiped member knew
//! was committed); they then persist a vote for themselves in the current term, so that they
//! never vote twice in a term they may have voted in before the wipe.

use crate::codec::client::Egress;
use crate::codec::entry::NewLeadershipTermPayload;
use crate::codec::frame::EntryType;
use crate::codec::peer::PeerMessage;
use crate::consensus::Application;
use crate::consensus::command::{Command, Outbox};
use crate::consensus::core::{Consensus, LeaderSession, Peer};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{LogPosition, MemberId, SessionId, Term};
use tandem_service_api::Role;

/// Election states, with Aeron's numeric codes (see the module docs for the subset used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ElectionState {
    /// Starting, or a follower without a leader waiting for its election timeout.
    Init = 0,
    /// Asking for pre-votes.
    Canvass = 1,
    /// Won the pre-vote; waiting for the new term and self-vote to be durable.
    Nominate = 2,
    /// Asking for votes.
    CandidateBallot = 3,
    /// Voted in this term; waiting for the winner.
    FollowerBallot = 4,
    /// (Aeron) leader replicating its log before it is ready. Not used.
    LeaderLogReplication = 5,
    /// (Aeron) leader replaying. Not used.
    LeaderReplay = 6,
    /// (Aeron) leader initialising. Not used.
    LeaderInit = 7,
    /// Leading.
    LeaderReady = 8,
    /// (Aeron) follower replicating. Not used.
    FollowerLogReplication = 9,
    /// (Aeron) follower replaying. Not used.
    FollowerReplay = 10,
    /// (Aeron) catch-up init. Not used.
    FollowerCatchupInit = 11,
    /// (Aeron) catch-up await. Not used.
    FollowerCatchupAwait = 12,
    /// A learner catching up (new or wiped directory).
    FollowerCatchup = 13,
    /// (Aeron) follower log init. Not used.
    FollowerLogInit = 14,
    /// (Aeron) follower log await. Not used.
    FollowerLogAwait = 15,
    /// Following a known leader.
    FollowerReady = 16,
    /// Stopped.
    Closed = 17,
}

impl ElectionState {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The state for a code.
    pub fn from_code(code: u8) -> Option<Self> {
        use ElectionState::*;
        const ALL: [ElectionState; 18] = [
            Init,
            Canvass,
            Nominate,
            CandidateBallot,
            FollowerBallot,
            LeaderLogReplication,
            LeaderReplay,
            LeaderInit,
            LeaderReady,
            FollowerLogReplication,
            FollowerReplay,
            FollowerCatchupInit,
            FollowerCatchupAwait,
            FollowerCatchup,
            FollowerLogInit,
            FollowerLogAwait,
            FollowerReady,
            Closed,
        ];
        ALL.get(code as usize).copied()
    }

    /// The name tools show (Aeron's spelling).
    pub fn name(self) -> &'static str {
        use ElectionState::*;
        match self {
            Init => "INIT",
            Canvass => "CANVASS",
            Nominate => "NOMINATE",
            CandidateBallot => "CANDIDATE_BALLOT",
            FollowerBallot => "FOLLOWER_BALLOT",
            LeaderLogReplication => "LEADER_LOG_REPLICATION",
            LeaderReplay => "LEADER_REPLAY",
            LeaderInit => "LEADER_INIT",
            LeaderReady => "LEADER_READY",
            FollowerLogReplication => "FOLLOWER_LOG_REPLICATION",
            FollowerReplay => "FOLLOWER_REPLAY",
            FollowerCatchupInit => "FOLLOWER_CATCHUP_INIT",
            FollowerCatchupAwait => "FOLLOWER_CATCHUP_AWAIT",
            FollowerCatchup => "FOLLOWER_CATCHUP",
            FollowerLogInit => "FOLLOWER_LOG_INIT",
            FollowerLogAwait => "FOLLOWER_LOG_AWAIT",
            FollowerReady => "FOLLOWER_READY",
            Closed => "CLOSED",
        }
    }
}

impl<L: LogStore> Consensus<L> {
    /// A fresh randomised election deadline in `[t, 2t)` from now.
    pub(super) fn reset_election_deadline(&mut self) {
        let t = self.cfg.election_timeout_ns;
        self.election_deadline_ns = self.now_ns + t + self.rng.below(t as u64) as i64;
    }

    pub(super) fn set_election(&mut self, state: ElectionState, out: &mut Outbox) {
        if self.election != state {
            self.election = state;
            out.commands.push(Command::ElectionStateChanged { state });
        }
    }

    pub(super) fn set_role(
        &mut self,
        role: Role,
        leader: Option<MemberId>,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let changed = self.role != role;
        if changed || self.leader != leader {
            self.role = role;
            self.leader = leader;
            out.commands.push(Command::RoleChanged {
                role,
                term: self.term,
                leader,
            });
        }
        if changed {
            app.role_change(role);
        }
    }

    /// Adopts a higher term: forget the vote, step down, persist before answering.
    pub(super) fn adopt_term(&mut self, term: Term, app: &mut dyn Application, out: &mut Outbox) {
        assert!(term > self.term, "adopt_term({term}) from {}", self.term);
        self.term = term;
        self.voted_for = None;
        self.matched = self.log.start().0;
        self.last_ack_sent = LogPosition(0);
        if self.role == Role::Leader {
            self.leave_leadership();
        }
        let role = if self.learner {
            Role::Learner
        } else {
            Role::Follower
        };
        self.set_role(role, None, app, out);
        if !self.learner {
            self.set_election(ElectionState::Init, out);
        }
        self.persist(true, out);
    }

    /// Ballot, pre-vote or transfer timeout checks, for followers and candidates.
    pub(super) fn tick_election(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.learner || self.role == Role::Leader {
            return;
        }
        if self.now_ns >= self.election_deadline_ns {
            self.start_canvass(app, out);
        }
    }

    fn last_log(&self) -> (Term, LogPosition) {
        let end = self.log.end();
        (self.log.term_at(end).expect("end is in range"), end)
    }

    pub(super) fn start_canvass(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        self.counters.elections_started += 1;
        self.reset_election_deadline();
        self.set_election(ElectionState::Canvass, out);
        self.votes = 1 << self.cfg.member_id.0;
        if self.cfg.member_count == 1 {
            self.nominate(false, app, out);
            return;
        }
        let (last_term, last_position) = self.last_log();
        let msg = PeerMessage::VoteRequest {
            pre_vote: true,
            transfer: false,
            term: self.term.next(),
            candidate: self.cfg.member_id,
            last_term,
            last_position,
        };
        for to in self.others() {
            out.send_peer(to, &msg);
        }
    }

    /// Won the pre-vote (or was handed leadership): new term, vote for self, persist, then ask.
    pub(super) fn nominate(&mut self, transfer: bool, app: &mut dyn Application, out: &mut Outbox) {
        self.term = self.term.next();
        self.voted_for = Some(self.cfg.member_id);
        self.matched = self.log.start().0;
        self.last_ack_sent = LogPosition(0);
        // Announce the new term even if the role stays Candidate.
        self.leader = None;
        if self.role == Role::Candidate {
            out.commands.push(Command::RoleChanged {
                role: Role::Candidate,
                term: self.term,
                leader: None,
            });
        } else {
            self.set_role(Role::Candidate, None, app, out);
        }
        self.votes = 1 << self.cfg.member_id.0;
        self.set_election(ElectionState::Nominate, out);
        self.reset_election_deadline();
        self.nominate_persist_id = self.persist(true, out);
        let (last_term, last_position) = self.last_log();
        let msg = PeerMessage::VoteRequest {
            pre_vote: false,
            transfer,
            term: self.term,
            candidate: self.cfg.member_id,
            last_term,
            last_position,
        };
        for to in self.others() {
            self.send_dependent(to, &msg, out);
        }
    }

    pub(super) fn on_vote_request(
        &mut self,
        from: MemberId,
        msg: PeerMessage<'_>,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let PeerMessage::VoteRequest {
            pre_vote,
            transfer,
            term,
            last_term,
            last_position,
            ..
        } = msg
        else {
            unreachable!("dispatch")
        };
        let (my_last_term, my_end) = self.last_log();
        let log_ok = (last_term, last_position) >= (my_last_term, my_end);
        if self.learner && !self.bugs.wiped_member_votes {
            if term > self.term && !pre_vote {
                self.adopt_term(term, app, out);
            }
            let reply = PeerMessage::VoteResponse {
                pre_vote,
                term: self.term,
                voter: self.cfg.member_id,
                granted: false,
            };
            self.send_dependent(from, &reply, out);
            return;
        }
        if pre_vote {
            let leader_live = self.role == Role::Leader
                || (self.leader.is_some()
                    && self
                        .last_leader_contact_ns
                        .is_some_and(|t| self.now_ns - t < self.cfg.election_timeout_ns));
            let granted = term > self.term && log_ok && (!leader_live || transfer);
            let reply = PeerMessage::VoteResponse {
                pre_vote: true,
                term: if granted { term } else { self.term },
                voter: self.cfg.member_id,
                granted,
            };
            self.send_dependent(from, &reply, out);
            return;
        }
        if term > self.term {
            self.adopt_term(term, app, out);
        }
        let free = self.voted_for.is_none()
            || self.voted_for == Some(from)
            || self.bugs.vote_twice_in_term;
        let granted = term == self.term && log_ok && free && self.role != Role::Leader;
        if granted {
            if self.voted_for != Some(from) {
                self.voted_for = Some(from);
                self.persist(true, out);
            }
            self.reset_election_deadline();
            if self.role == Role::Follower {
                self.set_election(ElectionState::FollowerBallot, out);
            }
        }
        let reply = PeerMessage::VoteResponse {
            pre_vote: false,
            term: self.term,
            voter: self.cfg.member_id,
            granted,
        };
        self.send_dependent(from, &reply, out);
    }

    pub(super) fn on_vote_response(
        &mut self,
        from: MemberId,
        msg: PeerMessage<'_>,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let PeerMessage::VoteResponse {
            pre_vote,
            term,
            granted,
            ..
        } = msg
        else {
            unreachable!("dispatch")
        };
        if pre_vote {
            if term > self.term && !granted {
                self.adopt_term(term, app, out);
                return;
            }
            if granted && self.election == ElectionState::Canvass && term == self.term.next() {
                self.votes |= 1 << from.0;
                if self.votes.count_ones() as usize >= self.cfg.majority() {
                    self.nominate(false, app, out);
                }
            }
            return;
        }
        if term > self.term {
            self.adopt_term(term, app, out);
            return;
        }
        if term == self.term
            && granted
            && self.role == Role::Candidate
            && self.election == ElectionState::CandidateBallot
        {
            self.votes |= 1 << from.0;
            if self.votes.count_ones() as usize >= self.cfg.majority() {
                self.become_leader(app, out);
            }
        }
    }

    /// Won the election: append the new-leadership-term entry and start replicating.
    pub(super) fn become_leader(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        assert_eq!(self.role, Role::Candidate);
        assert_eq!(self.voted_for, Some(self.cfg.member_id));
        assert!(
            self.persisted_id >= self.nominate_persist_id,
            "leader step-up before its term and vote are durable"
        );
        let end = self.log.end();
        let now = self.now_ns;
        for p in self.peers.iter_mut() {
            *p = Peer::new(end, now);
        }
        self.leader_term_start = end;
        self.leader_since_ns = now;
        self.timer_fires.clear();
        self.clients.clear();
        self.operator_appended.iter_mut().for_each(|a| *a = None);
        self.scan_suspension();
        self.set_role(Role::Leader, Some(self.cfg.member_id), app, out);
        self.set_election(ElectionState::LeaderReady, out);
        self.counters.leaderships += 1;
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        NewLeadershipTermPayload {
            leader: self.cfg.member_id,
            term_base_position: end,
        }
        .encode(&mut payload);
        self.append_entry(EntryType::NewLeadershipTerm, SessionId(0), 0, &payload);
        self.scratch = payload;
        // A new leader restarts every session's keep-alive clock and tells every client.
        let sessions: Vec<(SessionId, u64, crate::consensus::types::ClientAddr, u64)> = self
            .state
            .sessions
            .values()
            .map(|s| (s.id, s.last_seq, s.client, s.egress_seq))
            .collect();
        for (id, last_seq, addr, egress_seq) in sessions {
            self.clients.insert(
                id,
                LeaderSession {
                    last_heard_ns: now,
                    appended_seq: last_seq,
                    addr,
                    close_appended: false,
                    acked_egress_seq: egress_seq,
                },
            );
            out.send_client(
                addr,
                &Egress::NewLeader {
                    session: id,
                    leader: self.cfg.member_id,
                    term: self.term,
                },
            );
        }
        // Work the previous leader may have left: service closes and service messages (held
        // back while suspended).
        self.service_appended_to = self.state.last_applied_service_msg_id;
        self.release_held_appends();
        self.flush(app, out);
    }

    /// Leader bookkeeping to drop when leadership ends.
    pub(super) fn leave_leadership(&mut self) {
        self.suspend_appended = None;
        self.clients.clear();
        self.timer_fires.clear();
        self.stopping = None;
        for p in &mut self.peers {
            p.snapshot = None;
        }
    }

    pub(super) fn step_down(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.role == Role::Leader {
            self.leave_leadership();
        }
        self.counters.step_downs += 1;
        self.set_role(Role::Follower, None, app, out);
        self.set_election(ElectionState::Init, out);
        self.reset_election_deadline();
    }

    /// A leader's hand-over: start an election now, skipping the pre-vote.
    pub(super) fn on_timeout_now(
        &mut self,
        term: Term,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if term == self.term && self.role == Role::Follower && !self.learner {
            self.nominate(true, app, out);
        }
    }

    /// A leader hands leadership to its most up-to-date follower, then stops.
    pub(super) fn try_transfer(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        let Some(deadline) = self.stopping else {
            return;
        };
        let end = self.log.end();
        let best = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i as u32 != self.cfg.member_id.0 && !p.learner)
            .max_by_key(|(i, p)| (p.matched, std::cmp::Reverse(*i)))
            .map(|(i, p)| (MemberId(i as u32), p.matched));
        match best {
            Some((to, matched)) if matched >= end => {
                out.send_peer(
                    to,
                    &PeerMessage::TimeoutNow {
                        term: self.term,
                        leader: self.cfg.member_id,
                    },
                );
                self.terminate(app, out);
            }
            _ if self.now_ns >= deadline => self.terminate(app, out),
            _ => {}
        }
    }

    pub(super) fn terminate(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.closed {
            return;
        }
        {
            let mut ctx = self.context(self.state.cluster_time, self.applied, false);
            app.terminate(&mut ctx);
        }
        if self.role == Role::Leader {
            self.leave_leadership();
            let role = Role::Follower;
            self.set_role(role, None, app, out);
        }
        self.closed = true;
        self.set_election(ElectionState::Closed, out);
        out.commands.push(Command::Terminated);
    }

    // ---- learners ---------------------------------------------------------------------------

    pub(super) fn send_commit_queries(&mut self, out: &mut Outbox) {
        self.last_query_ns = self.now_ns;
        let msg = PeerMessage::CommitQuery {
            term: self.term,
            from: self.cfg.member_id,
        };
        for to in self.others() {
            out.send_peer(to, &msg);
        }
    }

    pub(super) fn on_commit_query(&mut self, from: MemberId, out: &mut Outbox) {
        let msg = PeerMessage::CommitReply {
            term: self.term,
            from: self.cfg.member_id,
            commit: self.commit,
            learner: self.learner,
        };
        self.send_dependent(from, &msg, out);
    }

    pub(super) fn on_commit_reply(
        &mut self,
        from: MemberId,
        commit: LogPosition,
        learner: bool,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if !self.learner || learner {
            return;
        }
        self.commit_replies[from.index()] = Some(commit);
        let known = self.commit_replies.iter().flatten().count();
        if known >= self.cfg.majority() {
            let target = self.commit_replies.iter().flatten().max().copied();
            self.learner_target = target;
        }
        self.maybe_promote(app, out);
    }

    /// A learner that holds the commit position it learned from a majority becomes a voter.
    pub(super) fn maybe_promote(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if !self.learner {
            return;
        }
        let Some(target) = self.learner_target else {
            return;
        };
        // Also require a commit position inside the current term: then the leader has
        // committed an entry of its own term, so its commit covers every entry committed in
        // earlier terms, including any the members that answered did not know committed yet
        // (the old leader that knew may be the member that was wiped).
        let current_term_commit = self.log.term_at(self.commit) == Some(self.term);
        if self.commit >= target && self.durable >= target && current_term_commit {
            self.learner = false;
            // Occupy this term's vote (a wiped member may have voted in it before it lost its
            // directory); a member that rejoined as a learner keeps the vote it already cast.
            if self.voted_for.is_none() {
                self.voted_for = Some(self.cfg.member_id);
            }
            self.persist(true, out);
            let leader = self.leader;
            self.set_role(Role::Follower, leader, app, out);
            let state = if leader.is_some() {
                ElectionState::FollowerReady
            } else {
                ElectionState::Init
            };
            self.set_election(state, out);
            self.reset_election_deadline();
            self.counters.promotions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in 0..18u8 {
            let s = ElectionState::from_code(code).unwrap();
            assert_eq!(s.code(), code);
            assert!(!s.name().is_empty());
        }
        assert_eq!(ElectionState::from_code(18), None);
        assert_eq!(ElectionState::LeaderReady.code(), 8);
        assert_eq!(ElectionState::Closed.name(), "CLOSED");
    }
}
