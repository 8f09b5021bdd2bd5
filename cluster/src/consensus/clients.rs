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

use crate::codec::client::{Egress, EventCode, Ingress, encode_reply};
use crate::codec::entry::SessionOpenPayload;
use crate::codec::frame::EntryType;
use crate::consensus::Application;
use crate::consensus::command::Outbox;
use crate::consensus::core::{Consensus, LeaderSession};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{ClientAddr, SessionId};
use tandem_service_api::{CloseReason, Role};

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
                Ingress::Attach { session, .. }
                | Ingress::Message { session, .. }
                | Ingress::KeepAlive { session }
                | Ingress::Close { session } => (0, session),
            };
            self.session_event(from, correlation_id, session, EventCode::Redirect, 0, out);
            return;
        }
        if self.appends_held() {
            // Suspended by an operator: nothing new goes into the log until resumed; the
            // client retries (keep-alives and re-attaches are still answered below).
            let held = match msg {
                Ingress::Connect { correlation_id, .. } => Some((correlation_id, SessionId(0))),
                Ingress::Message { session, .. } | Ingress::Close { session } => Some((0, session)),
                Ingress::Attach { .. } | Ingress::KeepAlive { .. } => None,
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
            } => self.on_client_message(from, session, sequence, payload, app, out),
            Ingress::Connect {
                correlation_id,
                credentials,
            } => {
                if self.state.sessions.len() >= self.cfg.max_sessions {
                    self.session_event(from, correlation_id, SessionId(0), EventCode::Busy, 0, out);
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
                self.append_entry(
                    EntryType::SessionOpen,
                    SessionId(0),
                    correlation_id,
                    &payload,
                );
                self.scratch = payload;
                self.maybe_flush(app, out);
            }
            Ingress::Attach {
                session,
                last_egress_seq,
            } => {
                let Some(s) = self.state.sessions.get(&session) else {
                    self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
                    return;
                };
                let last_seq = s.last_seq;
                let now = self.now_ns;
                let c = self.clients.entry(session).or_insert(LeaderSession {
                    last_heard_ns: now,
                    appended_seq: last_seq,
                    addr: from,
                    close_appended: false,
                });
                c.addr = from;
                c.last_heard_ns = now;
                self.session_event(from, 0, session, EventCode::Ok, last_seq, out);
                let s = &self.state.sessions[&session];
                for (r, bytes) in s.replies.iter() {
                    if r.egress_seq > last_egress_seq {
                        let start = out.bytes.len();
                        encode_reply(
                            &mut out.bytes,
                            session,
                            r.egress_seq,
                            r.request_seq,
                            last_seq,
                            bytes,
                        );
                        out.finish_client(from, start);
                    }
                }
            }
            Ingress::KeepAlive { session } => {
                let Some(s) = self.state.sessions.get(&session) else {
                    self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
                    return;
                };
                let last_seq = s.last_seq;
                if let Some(c) = self.clients.get_mut(&session) {
                    c.last_heard_ns = self.now_ns;
                    c.addr = from;
                }
                out.send_client(
                    from,
                    &Egress::Ack {
                        session,
                        committed_seq: last_seq,
                    },
                );
            }
            Ingress::Close { session } => {
                if self.state.sessions.contains_key(&session) {
                    self.append_close(session, CloseReason::ClientAction);
                    self.maybe_flush(app, out);
                } else {
                    self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
                }
            }
        }
    }

    /// The hot path: one client message on the leader.
    fn on_client_message(
        &mut self,
        from: ClientAddr,
        session: SessionId,
        sequence: u64,
        payload: &[u8],
        app: &mut dyn Application,
        out: &mut Outbox,
    ) {
        let Some(s) = self.state.sessions.get(&session) else {
            self.session_event(from, 0, session, EventCode::UnknownSession, 0, out);
            return;
        };
        if s.closing.is_some() {
            self.session_event(from, 0, session, EventCode::Closed, s.last_seq, out);
            return;
        }
        let last_seq = s.last_seq;
        if payload.len() > self.cfg.max_message_bytes {
            self.session_event(from, 0, session, EventCode::Rejected, sequence, out);
            return;
        }
        let now = self.now_ns;
        let c = self.clients.entry(session).or_insert(LeaderSession {
            last_heard_ns: now,
            appended_seq: last_seq,
            addr: from,
            close_appended: false,
        });
        c.last_heard_ns = now;
        c.addr = from;
        // Entries of earlier terms applied since this leader started count as appended.
        c.appended_seq = c.appended_seq.max(last_seq);
        if c.close_appended {
            return;
        }
        if sequence <= last_seq {
            // Already applied: answer from the reply cache.
            let s = &self.state.sessions[&session];
            let mut any = false;
            for (r, bytes) in s.replies.iter() {
                if r.request_seq == sequence {
                    any = true;
                    let start = out.bytes.len();
                    encode_reply(
                        &mut out.bytes,
                        session,
                        r.egress_seq,
                        r.request_seq,
                        last_seq,
                        bytes,
                    );
                    out.finish_client(from, start);
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
            self.append_entry(EntryType::SessionMessage, session, sequence, payload);
            self.maybe_flush(app, out);
        } else {
            let have = c.appended_seq;
            self.session_event(from, 0, session, EventCode::SequenceGap, have, out);
        }
    }

    fn maybe_flush(&mut self, app: &mut dyn Application, out: &mut Outbox) {
        if self.unflushed_frames >= self.cfg.max_frames_per_append {
            self.flush(app, out);
        }
    }

    /// Leader, after applying: send the replies the service offered.
    pub(super) fn send_new_replies(&mut self, out: &mut Outbox) {
        for i in 0..self.state.new_replies.len() {
            let (session, egress_seq) = self.state.new_replies[i];
            let Some(s) = self.state.sessions.get(&session) else {
                continue;
            };
            let Some((r, bytes)) = s.replies.get(egress_seq) else {
                continue;
            };
            let to = self.clients.get(&session).map_or(s.client, |c| c.addr);
            let start = out.bytes.len();
            encode_reply(
                &mut out.bytes,
                session,
                egress_seq,
                r.request_seq,
                s.last_seq,
                bytes,
            );
            out.finish_client(to, start);
        }
        self.state.new_replies.clear();
    }
}
