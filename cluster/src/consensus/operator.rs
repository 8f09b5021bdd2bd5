//! Cluster-wide operator actions (DESIGN §7, as in Aeron's `ClusterTool`): snapshot, suspend,
//! resume, shutdown, abort.
//!
//! * A request (`Input::Operator { action, id }`) is accepted on any member. The leader appends
//!   an `OperatorAction` entry naming the action, the member the request arrived on (its
//!   origin) and the request id. Any other member forwards it to the leader it knows
//!   (`PeerMessage::OperatorRequest`), again to every new leader and every election timeout,
//!   until it applies the entry; the leader appends a given `(origin, id)` once per term.
//! * Every member carries the action out when it APPLIES the entry, so all do it at the same
//!   log position:
//!   - `Snapshot`: a snapshot at the end of the entry (as at a snapshot marker).
//!   - `Suspend` / `Resume`: set / clear `suspended` in the replicated module state (so it
//!     survives snapshots, restarts and leader changes). While suspended the leader appends no
//!     new ingress (client messages, connects and closes are answered `Busy`: retry later;
//!     keep-alives and re-attaches are still answered), no timer events, no session timeouts
//!     and no service messages or service-initiated closes; they follow the `Resume`. A leader
//!     holds back from the moment it appends `Suspend` (and releases on appending `Resume`);
//!     a new leader finds the newest suspend/resume in its log.
//!   - `Shutdown`: a snapshot at the end of the entry, then the member terminates
//!     (`Command::Terminated`).
//!   - `Abort`: the member terminates (no snapshot).
//!
//!   A member other than the leader sends `PeerMessage::TerminationAck` before it terminates;
//!   the leader, which applies first, keeps heartbeating (appending nothing) until every other
//!   member acknowledged or an election timeout passed, so that every member learns the entry
//!   is committed; then it terminates. A shutdown or abort entry is acted on only when applied
//!   in the term it was appended in and not during recovery replay: after a restart of the
//!   cluster (or a leader change before it committed) it is skipped, so a restarted cluster
//!   does not stop again (a shutdown's snapshot is still taken); an origin still waiting for
//!   it asks the current leader again.
//! * On the origin, applying the entry completes the request: [`OperatorDone`] with the entry's
//!   end position (the snapshot position for `Snapshot` and `Shutdown`), taken with
//!   `Consensus::take_operator_done`.
//!
//! A request in flight when the leader fails may be lost (the runtime bounds the wait; the
//! operator retries) or, rarely, carried out twice (appended by the old leader and, repeated,
//! by the new one before the origin applied it): each action is idempotent but for an extra
//! snapshot.

use crate::codec::entry::OperatorActionPayload;
use crate::codec::frame::EntryType;
use crate::codec::peer::PeerMessage;
use crate::consensus::Application;
use crate::consensus::command::{OperatorDone, Outbox};
use crate::consensus::core::{Consensus, PendingOperator, Terminating};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{LogPosition, MemberId, OperatorAction, SessionId, Term};
use tandem_service_api::{CloseReason, Role};

impl<L: LogStore> Consensus<L> {
    /// `Input::Operator` on this member.
    pub(super) fn on_operator_request(
        &mut self,
        action: OperatorAction,
        id: u64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        self.operator_done = None;
        self.operator_pending = Some(PendingOperator {
            action,
            id,
            sent_to: None,
            sent_ns: self.now_ns,
        });
        self.send_operator_request(app, out);
    }

    /// Tick: repeats the pending request to a new leader, or every election timeout.
    pub(super) fn repeat_operator_request(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        let Some(p) = self.operator_pending else {
            return;
        };
        if p.sent_to != self.leader || self.now_ns - p.sent_ns >= self.cfg.election_timeout_ns {
            self.send_operator_request(app, out);
        }
    }

    /// Appends the pending request (leader) or sends it to the leader this member knows.
    fn send_operator_request(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        let Some(mut p) = self.operator_pending else {
            return;
        };
        let me = self.cfg.member_id;
        if self.role == Role::Leader {
            if self.stopping.is_some() || self.terminating.is_some() {
                // Leaving: the next leader gets it.
                return;
            }
            self.append_operator(me, p.action, p.id, app, out);
            p.sent_to = Some(me);
        } else if let Some(leader) = self.leader.filter(|&l| l != me) {
            out.send_peer(
                leader,
                &PeerMessage::OperatorRequest {
                    term: self.term,
                    from: me,
                    action: p.action,
                    id: p.id,
                },
            );
            p.sent_to = Some(leader);
        } else {
            p.sent_to = None;
        }
        p.sent_ns = self.now_ns;
        self.operator_pending = Some(p);
    }

    /// Leader: a request forwarded by `origin`.
    pub(super) fn on_forwarded_operator(
        &mut self,
        origin: MemberId,
        action: OperatorAction,
        id: u64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if self.role == Role::Leader && self.stopping.is_none() && self.terminating.is_none() {
            self.append_operator(origin, action, id, app, out);
        }
    }

    /// Leader: appends the entry for `(origin, id)` unless it did in this term, and sends it.
    fn append_operator(
        &mut self,
        origin: MemberId,
        action: OperatorAction,
        id: u64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let slot = &mut self.operator_appended[origin.index()];
        if *slot == Some(id) {
            return;
        }
        *slot = Some(id);
        match action {
            OperatorAction::Suspend => self.suspend_appended = Some(true),
            OperatorAction::Resume => self.suspend_appended = Some(false),
            _ => {}
        }
        let mut payload = [0u8; OperatorActionPayload::LEN];
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        OperatorActionPayload { action, origin, id }.encode(&mut buf);
        payload.copy_from_slice(&buf);
        self.scratch = buf;
        self.append_entry(EntryType::OperatorAction, SessionId(0), 0, &payload);
        self.flush(app, out);
    }

    /// Whether the leader holds back new ingress, timers and service messages.
    pub(super) fn appends_held(&self) -> bool {
        self.terminating.is_some() || self.is_suspended()
    }

    /// New leader: the suspension state after the newest suspend/resume in its log, applied
    /// or not.
    pub(super) fn scan_suspension(&mut self) {
        let mut found = None;
        let mut pos = self.applied;
        let end = self.log.end();
        while pos < end {
            let Some(f) = self.log.read(pos) else {
                break;
            };
            if f.header.entry_type == EntryType::OperatorAction
                && let Ok(p) = OperatorActionPayload::decode(f.payload)
            {
                match p.action {
                    OperatorAction::Suspend => found = Some(true),
                    OperatorAction::Resume => found = Some(false),
                    _ => {}
                }
            }
            pos = pos.advance(f.len_aligned as u64);
        }
        self.suspend_appended = found;
    }

    /// Leader, once appends are no longer held: service-initiated closes and service messages
    /// held back while suspended.
    pub(super) fn release_held_appends(&mut self) {
        if self.role != Role::Leader || self.appends_held() {
            return;
        }
        let closing: Vec<(SessionId, CloseReason)> = self
            .state
            .sessions
            .values()
            .filter_map(|s| s.closing.map(|r| (s.id, r)))
            .collect();
        for (id, reason) in closing {
            self.append_close(id, reason);
        }
        self.append_pending_service_messages();
    }

    /// Applies an `OperatorAction` entry ending at `end` (`applied` already moved there).
    pub(super) fn apply_operator(
        &mut self,
        p: OperatorActionPayload,
        end: LogPosition,
        term: Term,
        timestamp: i64,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let live = !self.replaying && term == self.term;
        match p.action {
            OperatorAction::Snapshot => self.take_snapshot(end, term, timestamp, app, out),
            OperatorAction::Suspend => self.state.suspended = true,
            OperatorAction::Resume => {
                self.state.suspended = false;
                self.release_held_appends();
                if self.role == Role::Leader {
                    self.flush(app, out);
                }
            }
            OperatorAction::Shutdown => self.take_snapshot(end, term, timestamp, app, out),
            OperatorAction::Abort => {}
        }
        let stops = matches!(p.action, OperatorAction::Shutdown | OperatorAction::Abort);
        if p.origin == self.cfg.member_id
            && let Some(pending) = self.operator_pending.as_mut()
            && pending.id == p.id
            && pending.action == p.action
        {
            if stops && !live {
                // Appended by an earlier leader and committed by a later one: skipped. Ask
                // the current leader again (at the next tick); it appends it in its own term.
                pending.sent_to = None;
            } else {
                self.operator_pending = None;
                self.operator_done = Some(OperatorDone {
                    action: p.action,
                    id: p.id,
                    position: end,
                });
            }
        }
        if stops && live {
            self.begin_termination(end, app, out);
        }
    }

    /// After applying a live shutdown or abort entry.
    fn begin_termination(
        &mut self,
        position: LogPosition,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if self.role == Role::Leader {
            let me = self.cfg.member_id.index();
            self.terminating = Some(Terminating {
                position,
                deadline_ns: self.now_ns + self.cfg.election_timeout_ns,
                acked: 1 << me,
            });
            // Heartbeat everyone at the next tick: the append carries the commit position.
            for (i, peer) in self.peers.iter_mut().enumerate() {
                if i != me {
                    peer.last_send_ns = i64::MIN / 2;
                }
            }
            self.check_termination(app, out);
        } else {
            if let Some(leader) = self.leader.filter(|&l| l != self.cfg.member_id) {
                out.send_peer(
                    leader,
                    &PeerMessage::TerminationAck {
                        term: self.term,
                        from: self.cfg.member_id,
                        position,
                    },
                );
            }
            self.terminate(app, out);
        }
    }

    /// Leader: another member applied the shutdown or abort entry.
    pub(super) fn on_termination_ack(
        &mut self,
        from: MemberId,
        position: LogPosition,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if let Some(t) = self.terminating.as_mut()
            && position >= t.position
        {
            t.acked |= 1 << from.index();
            self.check_termination(app, out);
        }
    }

    /// Terminates a leader that applied a shutdown or abort once every member acknowledged it
    /// or its deadline passed.
    pub(super) fn check_termination(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        let Some(t) = self.terminating else {
            return;
        };
        let all = (1u64 << self.cfg.member_count) - 1;
        if t.acked & all == all || self.now_ns >= t.deadline_ns {
            self.terminating = None;
            self.flush(app, out);
            self.terminate(app, out);
        }
    }
}
