//! Client sessions on the leader (DESIGN §6): connect through the authenticator (its decision
//! goes into the log), exactly-once message ingress, re-attach, keep-alive, replies from the
//! reply cache.
//!
//! The leader appends a client message only if its sequence is exactly one more than the
//! highest it appended (or the session's applied sequence, at the start of its term); a
//! message already applied is answered from the reply cache; a message already in the log but
//! not applied is ignored (its reply will come); a message further ahead is refused with
//! `SequenceGap` naming the sequence the leader has. Duplicates that still reach the log are
//! dropped when applied, identically on every member.
//!
//! Containment of hostile or broken clients (each counted in [`crate::consensus::Counters`],
//! published in the control file):
//!
//! * **Ownership.** A session belongs to the client address that opened it (replicated in the
//!   session). Any message naming it from another address (a message, batch, keep-alive,
//!   attach or close) is refused with `UnknownSession` to the sender and never re-binds the
//!   session (`ingress_not_owned`); an unknown session likewise (`ingress_unknown_session`).
//!   A client re-attaches after failover from the same address, so failover is unaffected; a
//!   client that lost its address opens a new session. (Spoofed source addresses need
//!   network-level protection; UDP cannot tell.)
//! * **Maximum of sessions.** A connect is refused with `Rejected` and
//!   [`RejectCode::TooManySessions`] when the open sessions plus the opens this leader
//!   appended and has not applied reach `max_sessions`, without touching the log (so a flood
//!   of connects grows neither the log nor memory); the cap is checked again when an open is
//!   applied, identically on every member. A repeated connect whose session is open gets it
//!   back. Refusals count in `sessions_rejected`.
//! * **Slow consumers.** Clients acknowledge the replies they received (the highest egress
//!   sequence without a gap) in every batch and keep-alive batch, and in an attach. When a
//!   session's newest reply is more than `max_unacked_egress` ahead of its acknowledgement,
//!   the leader closes it through the log with `CloseReason::SlowConsumer`, so every member
//!   agrees (`sessions_disconnected_slow`). A new leader starts each session as acknowledged
//!   up to its current reply.

use crate::codec::client::{Egress, EventCode, Ingress, RejectCode};
use crate::codec::entry::{
    SESSION_MESSAGES_HEADER_LEN, SESSION_MESSAGES_RECORD_OVERHEAD, SessionOpenPayload,
    begin_session_messages, push_session_message,
};
use crate::codec::frame::EntryType;
use crate::consensus::Application;
use crate::consensus::command::Outbox;
use crate::consensus::core::{Consensus, LeaderSession};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{ClientAddr, SessionId};
use tandem_service_api::{CloseReason, Role};

/// What the leader does with a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// The session's next message: it goes into the log.
    Append,
    /// Already applied (answered from the reply cache) or already in the log: nothing more.
    Skip,
    /// Refused (the client was told why); the rest of its batch is not looked at.
    Refused,
}

/// Client messages admitted from one batch, not yet appended (see
/// `Consensus::stage_message`).
#[derive(Debug, Default)]
pub(super) struct StagedMessages {
    /// The `SessionMessages` payload so far.
    bytes: Vec<u8>,
    /// Messages in `bytes`.
    count: u64,
    /// Their session.
    session: SessionId,
    /// The first one's sequence.
    first_sequence: u64,
}

impl StagedMessages {
    /// Whether no message is staged.
    pub(super) fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The authenticator's decision on a connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    /// Open the session with this principal.
    Accept {
        /// Recorded with the session; visible to the service.
        principal: Vec<u8>,
    },
    /// Refuse it.
    Reject {
        /// Sent back to the client (bounded by the maximum message length).
        reason: Vec<u8>,
    },
}

/// Decides whether a connect may open a session. Runs on the leader only; its decision is
/// recorded in the log, so it may be non-deterministic.
pub trait Authenticator {
    /// Decides on `credentials`.
    fn authenticate(&mut self, credentials: &[u8]) -> AuthDecision;
}

/// Accepts every connect with an empty principal.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&mut self, _credentials: &[u8]) -> AuthDecision {
        AuthDecision::Accept {
            principal: Vec::new(),
        }
    }
}

impl<L: LogStore> Consensus<L> {
    fn session_event(
        &self,
        to: ClientAddr,
        correlation_id: u64,
        session: SessionId,
        code: EventCode,
        value: u64,
        out: &mut Outbox,
    ) {
        let leader = if self.stopping.is_some() || self.terminating.is_some() {
            None
        } else {
            self.leader
        };
        out.send_client(
            to,
            &Egress::SessionEvent {
                correlation_id,
                session,
                code,
                leader,
                term: self.term,
                value,
            },
        );
    }

    pub(super) fn on_client(
        &mut self,
        from: ClientAddr,
        msg: Ingress<'_>,
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        if self.role != Role::Leader || self.stopping.is_some() || self.terminating.is_some() {
            let (correlation_id, session) = match msg {
                Ingress::Connect { correlation_id, .. } => (correlation_id, SessionId(0)),
                other => (0, other.session().unwrap_or(SessionId(0))),
            };
            self.session_event(from, correlation_id, session, EventCode::Redirect, 0, out);
            return;
        }
        if let Some(session) = msg.session() {
            // A session belongs to the address that opened it: anything naming it from
            // elsewhere is refused (and never re-binds it), so no one can inject messages into,
            // close, or redirect the egress of a session they do not own.
            match self.state.sessions.get(&session) {
                None => {
                    self.counters.ingress_unknown_session += 1;
                    self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
                    return;
                }
                Some(s) if s.client != from => {
                    self.counters.ingress_not_owned += 1;
                    self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
                    return;
                }
                Some(_) => {}
            }
        }
        if self.appends_held() {
            // Suspended by an operator: nothing new goes into the log until resumed; the
            // client retries (keep-alives and re-attaches are still answered below).
            let held = match msg {
                Ingress::Connect { correlation_id, .. } => Some((correlation_id, SessionId(0))),
                Ingress::Message { session, .. } | Ingress::Close { session } => Some((0, session)),
                Ingress::Batch(b) if !b.is_empty() => Some((0, b.session)),
                Ingress::Attach { .. } | Ingress::KeepAlive { .. } | Ingress::Batch(_) => None,
            };
            if let Some((correlation_id, session)) = held {
                self.session_event(from, correlation_id, session, EventCode::Busy, 0, out);
                return;
            }
        }
        match msg {
            Ingress::Message {
                session,
                sequence,
                payload,
            } => {
                if self.admit_client_message(from, session, sequence, payload, out) == Admit::Append
                {
                    self.append_entry(EntryType::SessionMessage, session, sequence, payload);
                    self.maybe_flush(app, out);
                }
            }
            Ingress::Batch(batch) => {
                let session = batch.session;
                let c = self.leader_session(session, from);
                c.acked_egress_seq = c.acked_egress_seq.max(batch.acked_egress_seq);
                if batch.is_empty() {
                    self.keep_alive(from, session, out);
                }
                // The batch's new messages go into the log as one frame (see `stage_message`).
                for (sequence, payload) in batch.iter() {
                    match self.admit_client_message(from, session, sequence, payload, out) {
                        Admit::Append => self.stage_message(session, sequence, payload),
                        Admit::Skip => {}
                        Admit::Refused => break,
                    }
                }
                if self.append_staged() {
                    self.maybe_flush(app, out);
                }
            }
            Ingress::Connect {
                correlation_id,
                credentials,
            } => self.on_connect(from, correlation_id, credentials, app, out),
            Ingress::Attach {
                session,
                last_egress_seq,
            } => {
                let last_seq = self.state.sessions[&session].last_seq;
                let c = self.leader_session(session, from);
                c.acked_egress_seq = c.acked_egress_seq.max(last_egress_seq);
                self.session_event(from, 0, session, EventCode::Ok, last_seq, out);
                let s = &self.state.sessions[&session];
                for (r, bytes) in s.replies.iter() {
                    if r.egress_seq > last_egress_seq {
                        out.send_reply(
                            from,
                            session,
                            r.egress_seq,
                            r.request_seq,
                            last_seq,
                            bytes,
                            self.cfg.max_reply_batch_bytes,
                        );
                    }
                }
            }
            Ingress::KeepAlive { session } => self.keep_alive(from, session, out),
            Ingress::Close { session } => {
                self.append_close(session, CloseReason::ClientAction);
                self.maybe_flush(app, out);
            }
        }
    }

    /// The leader's view of an open session owned by `from`, created if this leader has none
    /// yet; marks the client heard from now.
    fn leader_session(&mut self, session: SessionId, from: ClientAddr) -> &mut LeaderSession {
        let s = &self.state.sessions[&session];
        let (last_seq, egress_seq) = (s.last_seq, s.egress_seq);
        let now = self.now_ns;
        let c = self.clients.entry(session).or_insert(LeaderSession {
            last_heard_ns: now,
            appended_seq: last_seq,
            addr: from,
            close_appended: false,
            acked_egress_seq: egress_seq,
        });
        c.last_heard_ns = now;
        c.addr = from;
        c
    }

    fn keep_alive(&mut self, from: ClientAddr, session: SessionId, out: &mut Outbox) {
        let last_seq = self.state.sessions[&session].last_seq;
        if let Some(c) = self.clients.get_mut(&session) {
            c.last_heard_ns = self.now_ns;
        }
        out.send_client(
            from,
            &Egress::Ack {
                session,
                committed_seq: last_seq,
            },
        );
    }

    fn on_connect(
        &mut self,
        from: ClientAddr,
        correlation_id: u64,
        credentials: &[u8],
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        // A repeated connect whose open was applied (its answer was lost) gets the same
        // session back, even at the cap.
        let existing = self
            .state
            .sessions
            .values()
            .find(|s| s.client == from && s.correlation_id == correlation_id)
            .map(|s| s.id);
        if let Some(id) = existing {
            self.session_event(from, correlation_id, id, EventCode::Ok, 0, out);
            return;
        }
        if self.opens_term != self.term {
            self.opens_term = self.term;
            self.pending_opens.clear();
        }
        while self
            .pending_opens
            .front()
            .is_some_and(|end| *end <= self.applied)
        {
            self.pending_opens.pop_front();
        }
        if self.state.sessions.len() + self.pending_opens.len() >= self.cfg.max_sessions {
            self.counters.sessions_rejected += 1;
            self.session_event(
                from,
                correlation_id,
                SessionId(0),
                EventCode::Rejected,
                RejectCode::TooManySessions.code(),
                out,
            );
            return;
        }
        let (accepted, mut detail) = match self.authenticator.authenticate(credentials) {
            AuthDecision::Accept { principal } => (true, principal),
            AuthDecision::Reject { reason } => (false, reason),
        };
        detail.truncate(self.cfg.max_message_bytes / 2);
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        SessionOpenPayload {
            client: from,
            accepted,
            principal: &detail,
        }
        .encode(&mut payload);
        let end = self.append_entry(
            EntryType::SessionOpen,
            SessionId(0),
            correlation_id,
            &payload,
        );
        if accepted {
            self.pending_opens.push_back(end);
        }
        self.scratch = payload;
        self.maybe_flush(app, out);
    }

    /// The hot path: one client message on the leader (its session exists and belongs to
    /// `from`). Returns whether later messages of the same batch may follow it.
    /// Decides what becomes of one client message (module docs) and answers the client where
    /// it is not appended; [`Admit::Append`] counts it as appended, and the caller appends it.
    fn admit_client_message(
        &mut self,
        from: ClientAddr,
        session: SessionId,
        sequence: u64,
        payload: &[u8],
        out: &mut Outbox,
    ) -> Admit {
        let Some(s) = self.state.sessions.get(&session) else {
            self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
            return Admit::Refused;
        };
        if s.closing.is_some() {
            self.session_event(from, 0, session, EventCode::Closed, s.last_seq, out);
            return Admit::Refused;
        }
        let last_seq = s.last_seq;
        if payload.len() > self.cfg.max_message_bytes {
            self.session_event(from, 0, session, EventCode::Rejected, sequence, out);
            return Admit::Refused;
        }
        let c = self.leader_session(session, from);
        // Entries of earlier terms applied since this leader started count as appended.
        c.appended_seq = c.appended_seq.max(last_seq);
        if c.close_appended {
            return Admit::Refused;
        }
        if sequence <= last_seq {
            // Already applied: answer from the reply cache.
            let s = &self.state.sessions[&session];
            let mut any = false;
            for (r, bytes) in s.replies.iter() {
                if r.request_seq == sequence {
                    any = true;
                    out.send_reply(
                        from,
                        session,
                        r.egress_seq,
                        r.request_seq,
                        last_seq,
                        bytes,
                        self.cfg.max_reply_batch_bytes,
                    );
                }
            }
            if !any {
                out.send_client(
                    from,
                    &Egress::Ack {
                        session,
                        committed_seq: last_seq,
                    },
                );
            }
        } else if sequence <= c.appended_seq {
            // In the log, not applied yet: its reply will come.
        } else if sequence == c.appended_seq + 1 {
            c.appended_seq = sequence;
            return Admit::Append;
        } else {
            let have = c.appended_seq;
            self.session_event(from, 0, session, EventCode::SequenceGap, have, out);
            return Admit::Refused;
        }
        Admit::Skip
    }

    /// Stages an admitted message of a client batch for [`Consensus::append_staged`]. The
    /// messages staged are consecutive messages of one session (each admitted one is the
    /// session's next), so they go into the log as one `SessionMessages` frame: one header
    /// and one checksum for the batch instead of one per message (48 of the 112 log bytes of
    /// a 64-byte message). A frame's payload stays within `max_message_bytes`: a message
    /// that would pass it closes the frame staged so far.
    fn stage_message(&mut self, session: SessionId, sequence: u64, payload: &[u8]) {
        let staged = &self.staged;
        if staged.count > 0
            && staged.bytes.len() + SESSION_MESSAGES_RECORD_OVERHEAD + payload.len()
                > self.cfg.max_message_bytes
        {
            self.append_staged();
        }
        let staged = &mut self.staged;
        if staged.count == 0 {
            begin_session_messages(&mut staged.bytes);
            staged.session = session;
            staged.first_sequence = sequence;
        }
        debug_assert_eq!(staged.session, session);
        debug_assert_eq!(staged.first_sequence + staged.count, sequence);
        push_session_message(&mut staged.bytes, payload);
        staged.count += 1;
    }

    /// Appends the staged messages, if any: one message as a `SessionMessage` entry, more as
    /// one `SessionMessages` entry. Returns whether it appended.
    fn append_staged(&mut self) -> bool {
        let count = std::mem::take(&mut self.staged.count);
        if count == 0 {
            return false;
        }
        let bytes = std::mem::take(&mut self.staged.bytes);
        let (session, first) = (self.staged.session, self.staged.first_sequence);
        if count == 1 {
            let message = &bytes[SESSION_MESSAGES_HEADER_LEN + SESSION_MESSAGES_RECORD_OVERHEAD..];
            self.append_entry(EntryType::SessionMessage, session, first, message);
        } else {
            self.append_entry(EntryType::SessionMessages, session, first, &bytes);
        }
        self.staged.bytes = bytes;
        true
    }

    fn maybe_flush(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.unflushed_frames >= self.cfg.max_frames_per_append {
            self.flush(app, out);
        }
    }

    /// Leader, after applying: send the replies the service offered (a session's consecutive
    /// replies join one batch, see [`Outbox::send_reply`]).
    pub(super) fn send_new_replies(&mut self, out: &mut Outbox) {
        let replies = std::mem::take(&mut self.state.new_replies);
        for i in 0..replies.len() {
            let (session, egress_seq, request_seq, bytes) = replies.get(i);
            let Some(s) = self.state.sessions.get(&session) else {
                continue;
            };
            let to = self.clients.get(&session).map_or(s.client, |c| c.addr);
            out.send_reply(
                to,
                session,
                egress_seq,
                request_seq,
                s.last_seq,
                bytes,
                self.cfg.max_reply_batch_bytes,
            );
            let behind = self.clients.get(&session).is_some_and(|c| {
                !c.close_appended
                    && s.egress_seq.saturating_sub(c.acked_egress_seq) > self.cfg.max_unacked_egress
            });
            if behind && !self.appends_held() {
                // A slow consumer: closed through the log, so every member agrees.
                self.counters.sessions_disconnected_slow += 1;
                self.append_close(session, CloseReason::SlowConsumer);
            }
        }
        self.state.new_replies = replies;
        self.state.new_replies.clear();
    }
}
