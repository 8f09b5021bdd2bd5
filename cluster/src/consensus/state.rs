//! The module's replicated state (sessions with reply caches, timers, pending service
//! messages, ids, cluster time) and the [`Cluster`] handle services see while it is applied.
//!
//! Everything here changes only when committed entries are applied, identically on every member,
//! and is written into every snapshot (`ModuleState::encode`, version 2, little-endian; version
//! 1 is the same without the trailing flags and still read):
//!
//! ```text
//! next_session_id u64, cluster_time i64, next_service_msg_id u64, last_applied_service_msg_id u64,
//! timers.next_generation u64,
//! session count u32, each: id u64, client u64, correlation_id u64, last_seq u64, egress_seq u64,
//!     closing u8 (0 none, 1 + close reason), principal (u32 len + bytes),
//!     reply count u32, each: egress_seq u64, request_seq u64, bytes (u32 len + bytes)
//! timer count u32, each: id u64, deadline i64, generation u64
//! pending service message count u32, each: id u64, bytes (u32 len + bytes)
//! flags u8 (bit 0: suspended by an operator)
//! ```

use std::collections::{BTreeMap, VecDeque};

use crate::codec::buf::{Reader, Writer};
use crate::consensus::sessions::{ReplyCache, Session};
use crate::consensus::timers::Timers;
use crate::consensus::types::{ClientAddr, SessionId};
use crate::error::CodecError;
use tandem_service_api::{ClientSession, CloseReason, Cluster, OfferError, Role};

/// Version of the module-state snapshot layout.
pub const MODULE_STATE_VERSION: u8 = 2;

/// Limits that bound the replicated state (from the configuration; identical on every member).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message.
    pub max_message_bytes: usize,
    /// Replies cached per session.
    pub reply_cache_entries: usize,
    /// Reply bytes cached per session.
    pub reply_cache_bytes: usize,
    /// Service messages waiting for the log.
    pub max_pending_service_messages: usize,
}

/// The consensus module's replicated state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleState {
    pub(crate) sessions: BTreeMap<SessionId, Session>,
    pub(crate) next_session_id: u64,
    pub(crate) timers: Timers,
    pub(crate) pending_service: VecDeque<(u64, Vec<u8>)>,
    pub(crate) next_service_msg_id: u64,
    pub(crate) last_applied_service_msg_id: u64,
    pub(crate) cluster_time: i64,
    /// An operator suspended the cluster (a `Suspend` entry was applied, no `Resume` since).
    pub(crate) suspended: bool,
    /// Replies offered during the current apply on the leader, to send (not replicated).
    pub(crate) new_replies: NewReplies,
    /// Sessions the service asked to close during the current apply (not replicated).
    pub(crate) new_closings: Vec<SessionId>,
    /// Service messages offered during the current apply (not replicated).
    pub(crate) new_service_messages: bool,
}

/// Replies the service offered during the current apply on the leader, with their bytes, for
/// it to send once the apply step is over.
///
/// The bytes are kept here rather than looked up in the session's reply cache then: one
/// `SessionMessages` entry applies up to a whole client batch, and its replies can be more than
/// the cache holds (it keeps the newest `reply_cache_entries`), so looking them up afterwards
/// would lose the oldest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NewReplies {
    /// `(session, egress sequence, request sequence, end of its bytes in `bytes`)`.
    entries: Vec<(SessionId, u64, u64, usize)>,
    bytes: Vec<u8>,
}

impl NewReplies {
    fn push(&mut self, session: SessionId, egress_seq: u64, request_seq: u64, message: &[u8]) {
        self.bytes.extend_from_slice(message);
        self.entries
            .push((session, egress_seq, request_seq, self.bytes.len()));
    }

    /// Whether no reply is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every reply.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes.clear();
    }

    /// Replies waiting.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The `i`th reply: `(session, egress sequence, request sequence, bytes)`.
    pub(crate) fn get(&self, i: usize) -> (SessionId, u64, u64, &[u8]) {
        let (session, egress_seq, request_seq, end) = self.entries[i];
        let start = if i == 0 { 0 } else { self.entries[i - 1].3 };
        (session, egress_seq, request_seq, &self.bytes[start..end])
    }
}

impl Default for ModuleState {
    fn default() -> Self {
        Self {
            sessions: BTreeMap::new(),
            next_session_id: 1,
            timers: Timers::default(),
            pending_service: VecDeque::new(),
            next_service_msg_id: 1,
            last_applied_service_msg_id: 0,
            cluster_time: 0,
            suspended: false,
            new_replies: NewReplies::default(),
            new_closings: Vec::new(),
            new_service_messages: false,
        }
    }
}

impl ModuleState {
    /// The open sessions, by id.
    pub fn sessions(&self) -> &BTreeMap<SessionId, Session> {
        &self.sessions
    }

    /// The timers.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// Cluster time of the last applied entry.
    pub fn cluster_time(&self) -> i64 {
        self.cluster_time
    }

    /// Whether an operator suspended the cluster (applied `Suspend`, no `Resume` since).
    pub fn is_suspended(&self) -> bool {
        self.suspended
    }

    /// Service messages offered and not yet applied from the log: (id, bytes).
    pub fn pending_service_messages(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        self.pending_service
            .iter()
            .map(|(id, b)| (*id, b.as_slice()))
    }

    /// Writes the state (see the module docs for the layout).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u8(MODULE_STATE_VERSION);
        out.put_u64(self.next_session_id);
        out.put_i64(self.cluster_time);
        out.put_u64(self.next_service_msg_id);
        out.put_u64(self.last_applied_service_msg_id);
        out.put_u64(self.timers.next_generation());
        out.put_u32(self.sessions.len() as u32);
        for s in self.sessions.values() {
            out.put_u64(s.id.0);
            out.put_u64(s.client.0);
            out.put_u64(s.correlation_id);
            out.put_u64(s.last_seq);
            out.put_u64(s.egress_seq);
            out.put_u8(s.closing.map_or(0, |r| r as u8 + 1));
            out.put_var_bytes(&s.principal);
            out.put_u32(s.replies.len() as u32);
            for (r, bytes) in s.replies.iter() {
                out.put_u64(r.egress_seq);
                out.put_u64(r.request_seq);
                out.put_var_bytes(bytes);
            }
        }
        out.put_u32(self.timers.len() as u32);
        for (id, deadline, generation) in self.timers.iter() {
            out.put_u64(id);
            out.put_i64(deadline);
            out.put_u64(generation);
        }
        out.put_u32(self.pending_service.len() as u32);
        for (id, bytes) in &self.pending_service {
            out.put_u64(*id);
            out.put_var_bytes(bytes);
        }
        out.put_u8(u8::from(self.suspended));
    }

    /// Reads a state written by [`ModuleState::encode`].
    ///
    /// # Errors
    /// A [`CodecError`] on malformed input.
    pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes, "module state");
        let version = r.u8()?;
        if version != MODULE_STATE_VERSION && version != 1 {
            return Err(CodecError::Version {
                what: "module state",
                version,
            });
        }
        let mut s = ModuleState {
            next_session_id: r.u64()?,
            cluster_time: r.i64()?,
            next_service_msg_id: r.u64()?,
            last_applied_service_msg_id: r.u64()?,
            ..ModuleState::default()
        };
        let next_generation = r.u64()?;
        let count = r.u32()?;
        for _ in 0..count {
            let id = SessionId(r.u64()?);
            let client = ClientAddr(r.u64()?);
            let correlation_id = r.u64()?;
            let last_seq = r.u64()?;
            let egress_seq = r.u64()?;
            let closing = match r.u8()? {
                0 => None,
                c => Some(CloseReason::from_code(c - 1).ok_or(CodecError::Invalid {
                    what: "closing reason",
                    value: u64::from(c),
                })?),
            };
            let principal = r.var_bytes()?.to_vec();
            let mut replies = ReplyCache::default();
            let replies_count = r.u32()?;
            for _ in 0..replies_count {
                let egress = r.u64()?;
                let request = r.u64()?;
                let bytes = r.var_bytes()?;
                if bytes.len() > limits.reply_cache_bytes {
                    return Err(CodecError::Invalid {
                        what: "cached reply length",
                        value: bytes.len() as u64,
                    });
                }
                replies.push(
                    egress,
                    request,
                    bytes,
                    limits.reply_cache_entries,
                    limits.reply_cache_bytes,
                );
            }
            s.sessions.insert(
                id,
                Session {
                    id,
                    client,
                    correlation_id,
                    principal,
                    last_seq,
                    egress_seq,
                    closing,
                    replies,
                },
            );
        }
        let count = r.u32()?;
        let mut timers = Vec::with_capacity(count.min(1 << 16) as usize);
        for _ in 0..count {
            let id = r.u64()?;
            let deadline = r.i64()?;
            let generation = r.u64()?;
            if generation > next_generation {
                return Err(CodecError::Invalid {
                    what: "timer generation",
                    value: generation,
                });
            }
            timers.push((id, deadline, generation));
        }
        s.timers = Timers::restore(timers, next_generation);
        let count = r.u32()?;
        for _ in 0..count {
            let id = r.u64()?;
            s.pending_service.push_back((id, r.var_bytes()?.to_vec()));
        }
        if version >= 2 {
            let flags = r.u8()?;
            if flags > 1 {
                return Err(CodecError::Invalid {
                    what: "module state flags",
                    value: u64::from(flags),
                });
            }
            s.suspended = flags & 1 != 0;
        }
        r.finish()?;
        Ok(s)
    }
}

/// The [`Cluster`] handle given to the service while an entry is applied.
#[derive(Debug)]
pub struct ApplyContext<'a> {
    pub(crate) state: &'a mut ModuleState,
    pub(crate) limits: Limits,
    pub(crate) member_id: u32,
    pub(crate) role: Role,
    pub(crate) timestamp: i64,
    pub(crate) position: u64,
    /// False outside log callbacks (role changes): offers are refused there.
    pub(crate) in_log: bool,
}

impl Cluster for ApplyContext<'_> {
    fn member_id(&self) -> u32 {
        self.member_id
    }

    fn role(&self) -> Role {
        self.role
    }

    fn time(&self) -> i64 {
        self.timestamp
    }

    fn log_position(&self) -> u64 {
        self.position
    }

    fn schedule_timer(&mut self, correlation_id: u64, deadline_ns: i64) {
        self.state.timers.schedule(correlation_id, deadline_ns);
    }

    fn cancel_timer(&mut self, correlation_id: u64) -> bool {
        self.state.timers.cancel(correlation_id)
    }

    fn offer_egress(&mut self, session: SessionId, message: &[u8]) -> Result<(), OfferError> {
        if !self.in_log {
            return Err(OfferError::NotInLogCallback);
        }
        if message.len() > self.limits.max_message_bytes {
            return Err(OfferError::TooLarge);
        }
        let s = self
            .state
            .sessions
            .get_mut(&session)
            .ok_or(OfferError::UnknownSession)?;
        s.egress_seq += 1;
        s.replies.push(
            s.egress_seq,
            s.last_seq,
            message,
            self.limits.reply_cache_entries,
            self.limits.reply_cache_bytes,
        );
        if self.role == Role::Leader {
            // Only a leader sends replies; the others have them in the reply cache.
            self.state
                .new_replies
                .push(session, s.egress_seq, s.last_seq, message);
        }
        Ok(())
    }

    fn offer(&mut self, message: &[u8]) -> Result<(), OfferError> {
        if !self.in_log {
            return Err(OfferError::NotInLogCallback);
        }
        if message.len() > self.limits.max_message_bytes {
            return Err(OfferError::TooLarge);
        }
        if self.state.pending_service.len() >= self.limits.max_pending_service_messages {
            return Err(OfferError::BackPressured);
        }
        let id = self.state.next_service_msg_id;
        self.state.next_service_msg_id += 1;
        self.state.pending_service.push_back((id, message.to_vec()));
        self.state.new_service_messages = true;
        Ok(())
    }

    fn close_session(&mut self, session: SessionId) -> bool {
        if !self.in_log {
            return false;
        }
        match self.state.sessions.get_mut(&session) {
            Some(s) if s.closing.is_none() => {
                s.closing = Some(CloseReason::ServiceAction);
                self.state.new_closings.push(session);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    fn session(&self, session: SessionId) -> Option<ClientSession<'_>> {
        self.state.sessions.get(&session).map(|s| ClientSession {
            id: s.id,
            principal: &s.principal,
        })
    }

    fn session_count(&self) -> usize {
        self.state.sessions.len()
    }

    fn for_each_session(&self, f: &mut dyn FnMut(ClientSession<'_>)) {
        for s in self.state.sessions.values() {
            f(ClientSession {
                id: s.id,
                principal: &s.principal,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_message_bytes: 64,
            reply_cache_entries: 4,
            reply_cache_bytes: 256,
            max_pending_service_messages: 2,
        }
    }

    #[test]
    fn encode_decode_round_trip_and_handle_rules() {
        let mut st = ModuleState::default();
        st.sessions.insert(
            SessionId(1),
            Session {
                id: SessionId(1),
                client: ClientAddr(5),
                correlation_id: 9,
                principal: b"p".to_vec(),
                last_seq: 3,
                egress_seq: 0,
                closing: None,
                replies: ReplyCache::default(),
            },
        );
        let mut ctx = ApplyContext {
            state: &mut st,
            limits: limits(),
            member_id: 0,
            role: Role::Follower,
            timestamp: 10,
            position: 64,
            in_log: true,
        };
        assert_eq!(ctx.offer_egress(SessionId(1), b"r1"), Ok(()));
        assert_eq!(
            ctx.offer_egress(SessionId(2), b"r1"),
            Err(OfferError::UnknownSession)
        );
        assert_eq!(
            ctx.offer_egress(SessionId(1), &[0; 65]),
            Err(OfferError::TooLarge)
        );
        assert_eq!(ctx.offer(b"s1"), Ok(()));
        assert_eq!(ctx.offer(b"s2"), Ok(()));
        assert_eq!(ctx.offer(b"s3"), Err(OfferError::BackPressured));
        ctx.schedule_timer(4, 100);
        assert!(ctx.close_session(SessionId(1)));
        assert!(!ctx.close_session(SessionId(7)));
        let mut b = Vec::new();
        st.encode(&mut b);
        let mut back = ModuleState::decode(&b, &limits()).unwrap();
        back.new_replies = st.new_replies.clone();
        back.new_closings = st.new_closings.clone();
        back.new_service_messages = st.new_service_messages;
        assert_eq!(back, st);
        for cut in 0..b.len() {
            assert!(ModuleState::decode(&b[..cut], &limits()).is_err());
        }
        // The suspended flag round-trips; version 1 (no flags byte) still reads.
        st.suspended = true;
        let mut b = Vec::new();
        st.encode(&mut b);
        let back = ModuleState::decode(&b, &limits()).unwrap();
        assert!(back.is_suspended());
        let mut v1 = b.clone();
        v1[0] = 1;
        v1.pop();
        assert!(!ModuleState::decode(&v1, &limits()).unwrap().is_suspended());
        let mut bad = b;
        *bad.last_mut().unwrap() = 2;
        assert!(ModuleState::decode(&bad, &limits()).is_err());
    }
}
