//! The API a Tandem service author programs against.
//!
//! A service is one type implementing [`ClusteredService`]. Tandem runs it on every member of
//! the cluster and feeds every copy the same totally ordered, committed log of client messages,
//! timer events and session events, so every copy goes through the same states. A callback gets
//! a [`Cluster`] handle through which the service acts on the cluster: it schedules timers,
//! replies to client sessions, offers messages of its own into the log and closes sessions.
//! Every such action is deterministic: it depends only on the log, never on which member leads,
//! so it returns the same result on every member (DESIGN §6).
//!
//! A node is given a [`ServiceFactory`] rather than a service, so that it can build a fresh
//! service whenever a snapshot is installed.
//!
//! # Rules a service must keep
//!
//! * Replicated state changes only inside the log callbacks (`on_start`, `on_session_*`,
//!   `on_timer_event`, `on_new_leadership_term_event`), never in
//!   [`ClusteredService::do_background_work`] or [`ClusteredService::on_role_change`].
//! * No clock, randomness, thread or IO may influence replicated state: use [`Cluster::time`]
//!   (cluster time, from the log) instead of the wall clock.
//! * Callbacks borrow message bytes straight from the log: copy what must outlive the call.
//!
//! # Example: a key-value store
//!
//! Requests are `b'P' key_len:u8 key value` (put) and `b'G' key_len:u8 key` (get); every request
//! gets a reply. A timer expires the whole store every hour of cluster time, to show timers.
//!
//! ```
//! use std::collections::BTreeMap;
//! use tandem_service_api::{
//!     ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
//!     SessionId, SnapshotImage, SnapshotWriter,
//! };
//!
//! const EXPIRY_TIMER: u64 = 1;
//! const HOUR_NS: i64 = 3_600_000_000_000;
//!
//! #[derive(Default)]
//! struct KvStore {
//!     map: BTreeMap<Vec<u8>, Vec<u8>>,
//! }
//!
//! impl ClusteredService for KvStore {
//!     fn on_start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
//!         if let Some(mut image) = snapshot {
//!             let count = image.read_u64().expect("count");
//!             for _ in 0..count {
//!                 let key = image.read_bytes().expect("key").to_vec();
//!                 let value = image.read_bytes().expect("value").to_vec();
//!                 self.map.insert(key, value);
//!             }
//!         } else {
//!             cluster.schedule_timer(EXPIRY_TIMER, cluster.time() + HOUR_NS);
//!         }
//!     }
//!
//!     fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}
//!
//!     fn on_session_close(
//!         &mut self,
//!         _: &mut dyn Cluster,
//!         _: &ClientSession<'_>,
//!         _: i64,
//!         _: CloseReason,
//!     ) {
//!     }
//!
//!     fn on_session_message(
//!         &mut self,
//!         cluster: &mut dyn Cluster,
//!         session: Option<SessionId>,
//!         _timestamp: i64,
//!         message: &[u8],
//!         _header: &Header,
//!     ) {
//!         let Some(session) = session else { return };
//!         let (op, key_len) = match message {
//!             [op, len, ..] => (*op, *len as usize),
//!             _ => return,
//!         };
//!         let Some(key) = message.get(2..2 + key_len) else { return };
//!         match op {
//!             b'P' => {
//!                 self.map.insert(key.to_vec(), message[2 + key_len..].to_vec());
//!                 let _ = cluster.offer_egress(session, b"OK");
//!             }
//!             b'G' => {
//!                 let value = self.map.get(key).map(Vec::as_slice).unwrap_or(b"");
//!                 let _ = cluster.offer_egress(session, value);
//!             }
//!             _ => {
//!                 let _ = cluster.offer_egress(session, b"ERR");
//!             }
//!         }
//!     }
//!
//!     fn on_timer_event(&mut self, cluster: &mut dyn Cluster, correlation_id: u64, now: i64) {
//!         if correlation_id == EXPIRY_TIMER {
//!             self.map.clear();
//!             cluster.schedule_timer(EXPIRY_TIMER, now + HOUR_NS);
//!         }
//!     }
//!
//!     fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
//!         writer.write_u64(self.map.len() as u64);
//!         for (key, value) in &self.map {
//!             writer.write_bytes(key);
//!             writer.write_bytes(value);
//!         }
//!     }
//!
//!     fn on_role_change(&mut self, _: Role) {}
//!
//!     fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}
//!
//!     fn on_terminate(&mut self, _: &mut dyn Cluster) {}
//! }
//!
//! // A snapshot round trip, without a cluster: what a member does when it installs one.
//! let mut store = KvStore::default();
//! store.map.insert(b"k".to_vec(), b"v".to_vec());
//! let mut bytes = Vec::new();
//! store.on_take_snapshot(&mut SnapshotWriter::new(&mut bytes));
//! let mut image = SnapshotImage::new(&bytes);
//! assert_eq!(image.read_u64(), Some(1));
//! assert_eq!(image.read_bytes(), Some(&b"k"[..]));
//! assert_eq!(image.read_bytes(), Some(&b"v"[..]));
//! assert!(image.is_empty());
//!
//! // A node takes a factory, so that it can build a fresh service for a snapshot.
//! fn takes_factory<F: tandem_service_api::ServiceFactory>(_: F) {}
//! takes_factory(KvStore::default);
//! ```
#![deny(missing_docs)]

use std::fmt;

/// Identifies a client session. Assigned by the cluster when the session-open entry is applied,
/// so it is the same on every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session-{}", self.0)
    }
}

/// The role of a member in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Follows a leader (or waits for one). The default role.
    Follower = 0,
    /// Asking for votes.
    Candidate = 1,
    /// Leads: orders the log, talks to clients.
    Leader = 2,
    /// A member whose directory was new or wiped: it receives the log but does not vote and
    /// does not count toward a quorum until it has caught up.
    Learner = 3,
}

impl Role {
    /// The numeric code of the role (as published to tools).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The role for a numeric code, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Follower),
            1 => Some(Self::Candidate),
            2 => Some(Self::Leader),
            3 => Some(Self::Learner),
            _ => None,
        }
    }
}

/// Why a session was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The client asked to close it.
    ClientAction = 0,
    /// The service closed it with [`Cluster::close_session`].
    ServiceAction = 1,
    /// The client stayed silent past the session timeout.
    Timeout = 2,
    /// The client stopped reading its egress: it fell further behind than the cluster's
    /// bound on unacknowledged replies (a slow consumer).
    SlowConsumer = 3,
}

impl CloseReason {
    /// The reason for a numeric code, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::ClientAction),
            1 => Some(Self::ServiceAction),
            2 => Some(Self::Timeout),
            3 => Some(Self::SlowConsumer),
            _ => None,
        }
    }
}

/// A client session as the service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSession<'a> {
    /// The session id.
    pub id: SessionId,
    /// The principal the authenticator recorded for this session (empty when none).
    pub principal: &'a [u8],
}

/// Where a message sits in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Log position just after the message: the end of its frame, or, for a message of a
    /// client batch the leader appended as one frame, where its bytes end inside that frame
    /// (the batch's last message ends the frame). Distinct and increasing message by message.
    pub log_position: u64,
    /// The leadership term the message was appended in.
    pub term: u64,
    /// Cluster time the leader stamped on the message, in nanoseconds.
    pub timestamp: i64,
    /// The client's sequence number for this message (0 for service messages).
    pub sequence: u64,
}

/// A new leadership term, as it appears in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadershipTermEvent {
    /// The term.
    pub term: u64,
    /// The leader's member id.
    pub leader_member_id: u32,
    /// Log position at which the term starts.
    pub term_base_position: u64,
    /// Log position just after the new-leadership-term entry.
    pub log_position: u64,
    /// Cluster time stamped on the entry, in nanoseconds.
    pub timestamp: i64,
}

/// Why an offer was refused. The same refusal happens on every member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferError {
    /// No open session has this id.
    UnknownSession,
    /// The message is larger than the cluster's maximum message length.
    TooLarge,
    /// Too many service messages are waiting to be appended to the log.
    BackPressured,
    /// The offer was made outside a log callback (for example from background work), where it
    /// could not be deterministic.
    NotInLogCallback,
}

impl fmt::Display for OfferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::UnknownSession => "no open session has this id",
            Self::TooLarge => "message larger than the maximum message length",
            Self::BackPressured => "too many service messages wait for the log",
            Self::NotInLogCallback => "offer made outside a log callback",
        };
        f.write_str(text)
    }
}

impl std::error::Error for OfferError {}

/// The service's handle on the cluster, valid for the duration of one callback.
///
/// Everything read through it comes from the log (deterministic) except [`Cluster::role`],
/// which must not influence replicated state.
pub trait Cluster {
    /// This member's id.
    fn member_id(&self) -> u32;
    /// This member's current role. Do not let it change replicated state.
    fn role(&self) -> Role;
    /// Cluster time in nanoseconds: the timestamp of the entry being applied. Comes from the
    /// log, is the same on every member, and never decreases.
    fn time(&self) -> i64;
    /// Log position just after the entry being applied.
    fn log_position(&self) -> u64;
    /// Schedules timer `correlation_id` to fire at cluster time `deadline_ns`. Scheduling an
    /// id that is already scheduled moves it (the old deadline will not fire).
    fn schedule_timer(&mut self, correlation_id: u64, deadline_ns: i64);
    /// Cancels timer `correlation_id`; returns whether it was scheduled.
    fn cancel_timer(&mut self, correlation_id: u64) -> bool;
    /// Offers a reply to client session `session`. The reply goes to the session's reply cache
    /// (replicated state) and the leader sends it; the result is the same on every member.
    ///
    /// # Errors
    /// [`OfferError::UnknownSession`] if the session is not open, [`OfferError::TooLarge`] if
    /// the message exceeds the maximum message length.
    fn offer_egress(&mut self, session: SessionId, message: &[u8]) -> Result<(), OfferError>;
    /// Offers a message of the service's own into the log (as Aeron's `Cluster.offer`). It is
    /// delivered later, exactly once, to `on_session_message` with no session.
    ///
    /// # Errors
    /// [`OfferError::TooLarge`] or [`OfferError::BackPressured`].
    fn offer(&mut self, message: &[u8]) -> Result<(), OfferError>;
    /// Asks for session `session` to be closed (through the log, reason
    /// [`CloseReason::ServiceAction`]). Returns false if no such session is open.
    fn close_session(&mut self, session: SessionId) -> bool;
    /// Looks up an open session.
    fn session(&self, session: SessionId) -> Option<ClientSession<'_>>;
    /// The number of open sessions.
    fn session_count(&self) -> usize;
    /// Calls `f` for every open session, in ascending id order.
    fn for_each_session(&self, f: &mut dyn FnMut(ClientSession<'_>));
}

/// A snapshot image to restore from: the bytes a service wrote in
/// [`ClusteredService::on_take_snapshot`], with a small reading cursor.
#[derive(Debug, Clone)]
pub struct SnapshotImage<'a> {
    bytes: &'a [u8],
}

impl<'a> SnapshotImage<'a> {
    /// An image over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.bytes
    }
    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    /// Reads `len` raw bytes, or `None` if fewer remain.
    pub fn read_exact(&mut self, len: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < len {
            return None;
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Some(head)
    }
    /// Reads a little-endian u64.
    pub fn read_u64(&mut self) -> Option<u64> {
        self.read_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    /// Reads a little-endian i64.
    pub fn read_i64(&mut self) -> Option<i64> {
        self.read_u64().map(|v| v as i64)
    }
    /// Reads bytes written by [`SnapshotWriter::write_bytes`] (a u32 length, then the bytes).
    pub fn read_bytes(&mut self) -> Option<&'a [u8]> {
        let len = self
            .read_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4")))?;
        self.read_exact(len as usize)
    }
}

/// Where a service writes its snapshot.
#[derive(Debug)]
pub struct SnapshotWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> SnapshotWriter<'a> {
    /// A writer appending to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }
    /// Appends raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
    /// Appends a little-endian u64.
    pub fn write_u64(&mut self, value: u64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    /// Appends a little-endian i64.
    pub fn write_i64(&mut self, value: i64) {
        self.buf.extend_from_slice(&value.to_le_bytes());
    }
    /// Appends a u32 length and then `bytes`.
    ///
    /// # Panics
    /// If `bytes` is 4 GiB or longer.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("snapshot field shorter than 4 GiB");
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(bytes);
    }
    /// Bytes written so far through this writer's buffer.
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// A replicated service. Every callback except [`ClusteredService::do_background_work`] and
/// [`ClusteredService::on_role_change`] is driven by the log, in log order, identically on every
/// member.
pub trait ClusteredService {
    /// Called once when the service starts, before any other log callback: with the snapshot
    /// image to restore from, or `None` for an empty start.
    fn on_start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>);

    /// A client session was opened (at `timestamp`, cluster time).
    fn on_session_open(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        timestamp: i64,
    );

    /// A client session was closed, for `reason`.
    fn on_session_close(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        timestamp: i64,
        reason: CloseReason,
    );

    /// A message arrived in the log: from client session `session`, or from the service itself
    /// (`session` is `None`, see [`Cluster::offer`]). `message` is borrowed straight from the
    /// log; each client message is delivered exactly once.
    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        timestamp: i64,
        message: &[u8],
        header: &Header,
    );

    /// Timer `correlation_id` fired at cluster time `timestamp`.
    fn on_timer_event(&mut self, cluster: &mut dyn Cluster, correlation_id: u64, timestamp: i64);

    /// Write the service's whole state, so that `on_start` can restore it.
    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>);

    /// This member's role changed. Must not change replicated state.
    fn on_role_change(&mut self, role: Role);

    /// A new leadership term began (its entry was applied).
    fn on_new_leadership_term_event(
        &mut self,
        cluster: &mut dyn Cluster,
        event: &LeadershipTermEvent,
    );

    /// The member is shutting down.
    fn on_terminate(&mut self, cluster: &mut dyn Cluster);

    /// Work outside the log (for example, flushing a cache to a side channel). Must not change
    /// replicated state. Returns the units of work done. Optional.
    fn do_background_work(&mut self, now_ns: i64) -> usize {
        let _ = now_ns;
        0
    }
}

/// Builds services: a node is given a factory so that it can build a fresh service when it
/// installs a snapshot. Any `FnMut() -> S` is a factory.
pub trait ServiceFactory {
    /// The service type built.
    type Service: ClusteredService;
    /// Builds a fresh service (its `on_start` is called afterwards).
    fn new_service(&mut self) -> Self::Service;
}

impl<S: ClusteredService, F: FnMut() -> S> ServiceFactory for F {
    type Service = S;
    fn new_service(&mut self) -> S {
        self()
    }
}
