//! [`ClusterClient`]: a client session with exactly-once delivery (DESIGN §6).
//!
//! * `connect` sends `Connect` to a member; a follower answers `Redirect` (with the leader if
//!   it knows one), the leader records the session open in the log and answers `Ok` with the
//!   session id once it is applied.
//! * `offer` gives the message the next sequence number, keeps it until the cluster says it
//!   is committed (`Reply.committed_seq` or `Ack`), and refuses with
//!   [`ClientError::BackPressure`] while `window` messages are unacknowledged. Messages are
//!   batched: `offer` appends to a pending datagram (an ingress `Batch`, at most
//!   [`MAX_BATCH_MESSAGES`] messages within the MTU), sent when it holds that many, when the
//!   next message would not fit, or on [`ClusterClient::poll`] / [`ClusterClient::flush`].
//!   Every batch (and keep-alive) carries the highest reply sequence received, which the
//!   leader uses to close clients that stop reading (slow consumers).
//! * `poll` receives replies in egress order (each delivered once), acks, redirects and
//!   session events; it resends unacknowledged messages when the leader is silent for
//!   `resend_interval`, sends keep-alives, and after `leader_timeout` without an answer moves
//!   on to the next member with `Attach` (same session): the new leader answers with the
//!   highest committed sequence and the cached replies the client missed, and the client
//!   re-sends the rest. Already-applied messages are answered from the reply cache.
//!
//! The client is single-threaded and non-blocking; the `*_blocking` helpers poll with a short
//! sleep. Once connected and warmed up, `offer` and `poll` do not allocate: unacknowledged
//! messages live in a ring of `window` reusable buffers, the pending batch in one reusable
//! buffer, and replies are handed to the handler straight from the receive buffer.

use std::time::{Duration, Instant};

use crate::codec::client::{
    BATCH_HEADER_LEN, BATCH_RECORD_OVERHEAD, Egress, EventCode, Ingress, MAX_BATCH_MESSAGES,
    RejectCode, batch_count, batch_first_sequence, begin_batch, egress_messages,
    push_batch_message, set_batch_ack,
};
use crate::consensus::SessionId;
use crate::transport::frame::HEADER_LEN;
use crate::transport::{
    Event, InProcHub, IoMode, MemberEndpoints, ReadinessGroup, Transport, TransportConfig,
    UdpConfig,
};

use super::error::ClientError;
use super::net::NodeNetwork;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The members list (client ports).
    pub members: MemberEndpoints,
    /// Cluster id carried by every datagram.
    pub cluster_id: u64,
    /// Credentials for the authenticator.
    pub credentials: Vec<u8>,
    /// Most unacknowledged messages (keep at or below the cluster's reply cache entries).
    pub window: usize,
    /// Send an acknowledgement of received replies (a keep-alive) once this many arrived
    /// since the last one sent; keep well below the cluster's `max_unacked_egress`.
    pub ack_every: u64,
    /// Largest message.
    pub max_message_bytes: usize,
    /// Resend unacknowledged messages after this long without an answer.
    pub resend_interval: Duration,
    /// Try the next member after this long without any answer from the current one.
    pub leader_timeout: Duration,
    /// Send a keep-alive after this long without sending.
    pub keepalive_interval: Duration,
    /// UDP path.
    pub io: IoMode,
    /// Largest datagram this client sends (header included); a batch of messages fills at
    /// most this much. It receives datagrams of any UDP size, so the members' mtu may differ.
    pub mtu: usize,
}

impl ClientConfig {
    /// Defaults for `members` (a members list string).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the list does not parse.
    pub fn new(members: &str) -> Result<Self, ClientError> {
        Ok(Self {
            members: MemberEndpoints::parse(members)
                .map_err(|e| ClientError::Transport(format!("members list: {e}")))?,
            cluster_id: 0,
            credentials: Vec::new(),
            window: 64,
            ack_every: 256,
            max_message_bytes: 32 * 1024,
            resend_interval: Duration::from_millis(300),
            leader_timeout: Duration::from_millis(1500),
            keepalive_interval: Duration::from_millis(500),
            io: IoMode::Std,
            mtu: 1408,
        })
    }
}

/// Messages sent and not yet known committed: `window` reusable buffers, the message with
/// sequence `s` in slot `s % window` (the unacknowledged sequences are consecutive).
#[derive(Debug)]
struct Unacked {
    slots: Vec<Vec<u8>>,
    /// Sequence of the oldest unacknowledged message.
    first: u64,
    len: usize,
}

impl Unacked {
    fn new(window: usize) -> Self {
        Self {
            slots: (0..window).map(|_| Vec::new()).collect(),
            first: 1,
            len: 0,
        }
    }

    fn slot(&self, seq: u64) -> usize {
        (seq % self.slots.len() as u64) as usize
    }

    fn push(&mut self, seq: u64, msg: &[u8]) {
        assert!(self.len < self.slots.len(), "window full");
        assert_eq!(
            seq,
            self.first + self.len as u64,
            "sequences are consecutive"
        );
        let i = self.slot(seq);
        let buf = &mut self.slots[i];
        buf.clear();
        buf.extend_from_slice(msg);
        self.len += 1;
    }

    /// Forgets every message up to `committed`.
    fn release_to(&mut self, committed: u64) {
        while self.len > 0 && self.first <= committed {
            self.first += 1;
            self.len -= 1;
        }
        if self.len == 0 {
            self.first = self.first.max(committed + 1);
        }
    }
}

/// The client's state apart from its network (so receiving can borrow both).
#[derive(Debug)]
struct State {
    cfg: ClientConfig,
    /// Member we talk to (the leader, as far as we know).
    target: u32,
    session: Option<SessionId>,
    correlation_id: u64,
    next_seq: u64,
    committed_seq: u64,
    last_egress_seq: u64,
    /// The last egress sequence acknowledged to the cluster.
    acked_sent: u64,
    unacked: Unacked,
    /// The pending batch (empty: none).
    batch: Vec<u8>,
    /// Largest batch in bytes (one datagram's payload).
    batch_limit: usize,
    last_heard: Instant,
    last_sent: Instant,
    last_resend: Instant,
    attaching: bool,
    error: Option<ClientError>,
    /// A refusal to report from this poll (not sticky).
    refused: Option<ClientError>,
    want_attach: bool,
    want_resend: bool,
    /// An attach was answered and no reply has come since: the next one is the first the
    /// leader still holds after `last_egress_seq`.
    after_attach: bool,
    /// The first reply of the last attach answer, when it left a gap.
    gap_at: Option<u64>,
    replies_lost: u64,
    scratch: Vec<u8>,
    failovers: u64,
}

/// A session with a cluster.
#[derive(Debug)]
pub struct ClusterClient {
    net: NodeNetwork,
    st: State,
}

impl ClusterClient {
    /// A client over UDP (not yet connected).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the socket cannot be bound.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        let tc = TransportConfig {
            cluster_id: cfg.cluster_id,
            udp: UdpConfig {
                mtu: cfg.mtu,
                ..UdpConfig::default()
            },
            ..TransportConfig::default()
        };
        let t = Transport::bind_client(tc, cfg.members.clone(), cfg.io)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Self::with_network(cfg, NodeNetwork::Udp(Box::new(t)))
    }

    /// A client on an in-process hub.
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the hub refuses the endpoint.
    pub fn in_process(cfg: ClientConfig, hub: &InProcHub) -> Result<Self, ClientError> {
        let t = hub
            .bind_client()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Self::with_network(cfg, NodeNetwork::InProc(Box::new(t)))
    }

    /// Polls its socket through `group` from now on, shared with the other transports this
    /// thread polls (a benchmark or test driving members and clients on one thread): a poll
    /// with nothing to read then makes no system call of its own ([`ReadinessGroup`]).
    /// Returns `false` where there is no socket to watch (in-process, or the io_uring path).
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the group is full or the socket cannot join it.
    pub fn join_readiness_group(&mut self, group: &ReadinessGroup) -> Result<bool, ClientError> {
        match &mut self.net {
            NodeNetwork::Udp(t) => t
                .join_readiness_group(group)
                .map_err(|e| ClientError::Transport(e.to_string())),
            NodeNetwork::InProc(_) => Ok(false),
        }
    }

    fn with_network(cfg: ClientConfig, net: NodeNetwork) -> Result<Self, ClientError> {
        if cfg.window == 0 || cfg.members.is_empty() || cfg.ack_every == 0 {
            return Err(ClientError::Transport(
                "window, ack_every and the members list must not be empty".into(),
            ));
        }
        if cfg.mtu < HEADER_LEN + BATCH_HEADER_LEN + BATCH_RECORD_OVERHEAD + 1 {
            return Err(ClientError::Transport(format!(
                "mtu {} too small for a message batch",
                cfg.mtu
            )));
        }
        let now = Instant::now();
        let batch_limit = cfg.mtu - HEADER_LEN;
        let batch_capacity = batch_limit.max(BATCH_HEADER_LEN + 4 + cfg.max_message_bytes);
        let window = cfg.window;
        Ok(Self {
            net,
            st: State {
                target: 0,
                session: None,
                correlation_id: u64::from(std::process::id()) << 32
                    | u64::from(now.elapsed().subsec_nanos()),
                next_seq: 1,
                committed_seq: 0,
                last_egress_seq: 0,
                acked_sent: 0,
                unacked: Unacked::new(window),
                batch: Vec::with_capacity(batch_capacity),
                batch_limit,
                last_heard: now,
                last_sent: now,
                last_resend: now,
                attaching: false,
                error: None,
                refused: None,
                want_attach: false,
                want_resend: false,
                after_attach: false,
                gap_at: None,
                replies_lost: 0,
                scratch: Vec::with_capacity(256),
                failovers: 0,
                cfg,
            },
        })
    }

    /// The session id, once connected.
    pub fn session(&self) -> Option<SessionId> {
        self.st.session
    }

    /// The member the client talks to.
    pub fn leader(&self) -> u32 {
        self.st.target
    }

    /// Highest sequence the cluster reported committed.
    pub fn committed_seq(&self) -> u64 {
        self.st.committed_seq
    }

    /// Messages offered and not yet known committed.
    pub fn in_flight(&self) -> usize {
        self.st.unacked.len
    }

    /// Times the client moved to another member without being told to.
    pub fn failovers(&self) -> u64 {
        self.st.failovers
    }

    /// Datagrams-worth of messages this client handed to its transport (batches, keep-alives,
    /// connects, attaches): with batching, fewer than the messages offered.
    pub fn messages_sent(&self) -> u64 {
        self.net.counters().messages_out
    }

    /// The highest reply sequence received without a gap.
    pub fn last_egress_seq(&self) -> u64 {
        self.st.last_egress_seq
    }

    /// Replies that will never arrive: the leader's reply cache no longer held them when the
    /// client asked again (see [`ClusterClient::poll`]).
    pub fn replies_lost(&self) -> u64 {
        self.st.replies_lost
    }

    /// Connects (opens a session), following redirects, within `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] if no leader accepted in time; [`ClientError::Rejected`] if
    /// the cluster refused (the authenticator, or its maximum of sessions).
    pub fn connect(&mut self, timeout: Duration) -> Result<SessionId, ClientError> {
        let start = Instant::now();
        let st = &mut self.st;
        st.correlation_id = st.correlation_id.wrapping_add(1);
        let mut last_try = Instant::now() - Duration::from_secs(10);
        while start.elapsed() < timeout {
            if last_try.elapsed() >= st.cfg.resend_interval {
                last_try = Instant::now();
                let creds = std::mem::take(&mut st.cfg.credentials);
                st.send(
                    &mut self.net,
                    &Ingress::Connect {
                        correlation_id: st.correlation_id,
                        credentials: &creds,
                    },
                );
                st.cfg.credentials = creds;
            }
            let mut outcome: Option<Result<SessionId, ClientError>> = None;
            let mut redirect: Option<Option<u32>> = None;
            let cid = st.correlation_id;
            let _ = self.net.poll(0, |e| {
                let Event::FromMember { msg, .. } = e else {
                    return;
                };
                if let Ok(Egress::SessionEvent {
                    correlation_id,
                    session,
                    code,
                    leader,
                    value,
                    ..
                }) = Egress::decode(msg)
                {
                    if correlation_id != cid {
                        return;
                    }
                    match code {
                        EventCode::Ok => outcome = Some(Ok(session)),
                        EventCode::Rejected => {
                            outcome = Some(Err(ClientError::Rejected {
                                reason: RejectCode::from_code(value),
                            }));
                        }
                        EventCode::Redirect => redirect = Some(leader.map(|m| m.0)),
                        _ => {}
                    }
                }
            });
            match outcome {
                Some(Ok(s)) => {
                    st.session = Some(s);
                    st.last_heard = Instant::now();
                    return Ok(s);
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
            match redirect {
                Some(Some(l)) if l != st.target => {
                    st.target = l;
                    last_try = Instant::now() - st.cfg.resend_interval;
                }
                Some(_) => {
                    st.next_member();
                }
                None => {
                    if last_try.elapsed() >= st.cfg.resend_interval {
                        st.next_member();
                    }
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Err(ClientError::Timeout {
            what: "connect",
            waited_ms: timeout.as_millis() as u64,
        })
    }

    /// Offers a message; returns its sequence number. The message joins the pending batch,
    /// sent when full, when the next message would not fit, or on `poll` / `flush`.
    ///
    /// # Errors
    /// [`ClientError::BackPressure`] while the window is full (poll, then retry);
    /// [`ClientError::TooLarge`]; [`ClientError::NotConnected`]; a session error seen by an
    /// earlier `poll`.
    pub fn offer(&mut self, msg: &[u8]) -> Result<u64, ClientError> {
        let st = &mut self.st;
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        if st.session.is_none() {
            return Err(ClientError::NotConnected);
        }
        if msg.len() > st.cfg.max_message_bytes {
            return Err(ClientError::TooLarge {
                len: msg.len(),
                max: st.cfg.max_message_bytes,
            });
        }
        if st.unacked.len >= st.cfg.window {
            return Err(ClientError::BackPressure {
                in_flight: st.unacked.len,
            });
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.unacked.push(seq, msg);
        if !st.attaching {
            st.add_to_batch(&mut self.net, seq, msg);
        }
        Ok(seq)
    }

    /// Sends the pending batch now.
    pub fn flush(&mut self) {
        self.st.flush_batch(&mut self.net);
    }

    /// Sends the pending batch, then receives what arrived and calls
    /// `handler(request_seq, reply)` for each new reply, in egress order (straight from the
    /// receive buffer); does resends, keep-alives, acknowledgements and failover. Returns the
    /// replies delivered.
    ///
    /// A gap in the replies makes the client re-attach, and the leader resends the replies
    /// its reply cache holds after the last one received. When two such answers begin past the
    /// gap, the missing replies are gone for good: the client counts them in
    /// [`ClusterClient::replies_lost`] and goes on from there.
    ///
    /// # Errors
    /// [`ClientError::SessionExpired`] or [`ClientError::UnknownSession`] when the cluster
    /// closed the session; [`ClientError::MessageRejected`] for a refused message.
    pub fn poll(&mut self, mut handler: impl FnMut(u64, &[u8])) -> Result<usize, ClientError> {
        if let Some(e) = &self.st.error {
            return Err(e.clone());
        }
        let Some(session) = self.st.session else {
            return Err(ClientError::NotConnected);
        };
        self.st.flush_batch(&mut self.net);
        let mut delivered = 0;
        let st = &mut self.st;
        let _ = self.net.poll(0, |e| {
            if let Event::FromMember { member_id, msg } = e {
                st.on_egress(session, member_id, msg, &mut handler, &mut delivered);
            }
        });
        if let Some(e) = &st.error {
            return Err(e.clone());
        }
        if std::mem::take(&mut st.want_attach) {
            st.want_resend = false;
            st.attach(&mut self.net);
        } else if std::mem::take(&mut st.want_resend) {
            st.resend_unacked(&mut self.net);
        }
        let now = Instant::now();
        if now.duration_since(st.last_heard) >= st.cfg.leader_timeout {
            // The member is silent: try the next one with the same session.
            st.failovers += 1;
            st.next_member();
            st.last_heard = now;
            st.attach(&mut self.net);
        } else if (st.attaching || st.unacked.len > 0)
            && now.duration_since(st.last_resend) >= st.cfg.resend_interval
        {
            st.last_resend = now;
            if st.attaching {
                st.attach(&mut self.net);
            } else {
                st.resend_unacked(&mut self.net);
            }
        } else if now.duration_since(st.last_sent) >= st.cfg.keepalive_interval
            || st.last_egress_seq - st.acked_sent >= st.cfg.ack_every
        {
            // A keep-alive that also acknowledges the replies received.
            begin_batch(&mut st.batch, session, st.next_seq);
            st.flush_batch(&mut self.net);
        }
        match st.refused.take() {
            Some(e) => Err(e),
            None => Ok(delivered),
        }
    }

    /// Offers `msg`, polling (and handing replies to `handler`) while back-pressured, within
    /// `timeout`.
    ///
    /// # Errors
    /// As [`ClusterClient::offer`] and [`ClusterClient::poll`]; [`ClientError::Timeout`].
    pub fn offer_blocking(
        &mut self,
        msg: &[u8],
        timeout: Duration,
        mut handler: impl FnMut(u64, &[u8]),
    ) -> Result<u64, ClientError> {
        let start = Instant::now();
        loop {
            match self.offer(msg) {
                Err(ClientError::BackPressure { .. }) if start.elapsed() < timeout => {
                    if self.poll(&mut handler)? == 0 {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                Err(ClientError::BackPressure { .. }) => {
                    return Err(ClientError::Timeout {
                        what: "window to open",
                        waited_ms: timeout.as_millis() as u64,
                    });
                }
                other => return other,
            }
        }
    }

    /// Closes the session (best effort; pending messages are sent first).
    pub fn close(mut self) {
        self.st.flush_batch(&mut self.net);
        if let Some(session) = self.st.session.take() {
            self.st.send(&mut self.net, &Ingress::Close { session });
        }
    }
}

impl State {
    fn send(&mut self, net: &mut NodeNetwork, msg: &Ingress<'_>) {
        self.scratch.clear();
        msg.encode(&mut self.scratch);
        let _ = net.send_to_member(self.target, &self.scratch);
        let _ = net.flush();
        self.last_sent = Instant::now();
    }

    fn next_member(&mut self) {
        self.target = (self.target + 1) % self.cfg.members.len() as u32;
    }

    /// Adds message `seq` to the pending batch, sending the batch first if `seq` cannot join
    /// it, and after if it is full.
    fn add_to_batch(&mut self, net: &mut NodeNetwork, seq: u64, msg: &[u8]) {
        let Some(session) = self.session else { return };
        if !self.batch.is_empty() {
            let count = batch_count(&self.batch);
            let first = batch_first_sequence(&self.batch);
            if count >= MAX_BATCH_MESSAGES
                || first + count as u64 != seq
                || self.batch.len() + BATCH_RECORD_OVERHEAD + msg.len() > self.batch_limit
            {
                self.flush_batch(net);
            }
        }
        if self.batch.is_empty() {
            begin_batch(&mut self.batch, session, seq);
        }
        push_batch_message(&mut self.batch, msg);
        if batch_count(&self.batch) >= MAX_BATCH_MESSAGES || self.batch.len() >= self.batch_limit {
            self.flush_batch(net);
        }
    }

    /// Sends the pending batch (if any) with the latest egress acknowledgement.
    fn flush_batch(&mut self, net: &mut NodeNetwork) {
        if self.batch.is_empty() {
            return;
        }
        set_batch_ack(&mut self.batch, self.last_egress_seq);
        self.acked_sent = self.last_egress_seq;
        let _ = net.send_to_member(self.target, &self.batch);
        let _ = net.flush();
        self.batch.clear();
        self.last_sent = Instant::now();
    }

    fn resend_unacked(&mut self, net: &mut NodeNetwork) {
        // The pending batch holds only unacknowledged messages: all go again, in order.
        self.batch.clear();
        let first = self.unacked.first;
        for seq in first..first + self.unacked.len as u64 {
            let Some(session) = self.session else { return };
            // Split borrows: the ring is read while the batch is written.
            let i = self.unacked.slot(seq);
            let msg = std::mem::take(&mut self.unacked.slots[i]);
            if !self.batch.is_empty() {
                let count = batch_count(&self.batch);
                if count >= MAX_BATCH_MESSAGES
                    || self.batch.len() + BATCH_RECORD_OVERHEAD + msg.len() > self.batch_limit
                {
                    self.flush_batch(net);
                }
            }
            if self.batch.is_empty() {
                begin_batch(&mut self.batch, session, seq);
            }
            push_batch_message(&mut self.batch, &msg);
            self.unacked.slots[i] = msg;
        }
        self.flush_batch(net);
        self.last_resend = Instant::now();
    }

    fn note_committed(&mut self, committed: u64) {
        // Never beyond what was offered, whatever a member claims.
        let committed = committed.min(self.next_seq - 1);
        if committed > self.committed_seq {
            self.committed_seq = committed;
        }
        self.unacked.release_to(self.committed_seq);
    }

    fn attach(&mut self, net: &mut NodeNetwork) {
        let Some(session) = self.session else { return };
        self.attaching = true;
        self.batch.clear();
        self.send(
            net,
            &Ingress::Attach {
                session,
                last_egress_seq: self.last_egress_seq,
            },
        );
    }

    /// One message from a member, while polling.
    fn on_egress(
        &mut self,
        session: SessionId,
        from: u32,
        bytes: &[u8],
        handler: &mut impl FnMut(u64, &[u8]),
        delivered: &mut usize,
    ) {
        if self.error.is_some() {
            return;
        }
        let Ok(msgs) = egress_messages(bytes) else {
            return;
        };
        for msg in msgs {
            self.on_egress_message(session, from, msg, handler, delivered);
        }
    }

    /// One message of a datagram from a member (a reply batch gives each reply in turn).
    fn on_egress_message(
        &mut self,
        session: SessionId,
        from: u32,
        msg: Egress<'_>,
        handler: &mut impl FnMut(u64, &[u8]),
        delivered: &mut usize,
    ) {
        if self.error.is_some() {
            return;
        }
        match msg {
            Egress::Reply {
                session: s,
                egress_seq,
                request_seq,
                committed_seq,
                payload,
            } if s == session => {
                self.last_heard = Instant::now();
                self.note_committed(committed_seq);
                let first_after_attach = std::mem::take(&mut self.after_attach);
                if egress_seq == self.last_egress_seq + 1 {
                    self.last_egress_seq = egress_seq;
                    self.gap_at = None;
                    handler(request_seq, payload);
                    *delivered += 1;
                } else if egress_seq > self.last_egress_seq + 1 && from == self.target {
                    if first_after_attach && self.gap_at == Some(egress_seq) {
                        // Two answers to an attach began with this reply: the ones before it
                        // left the leader's reply cache (a failover, or more replies than the
                        // cache holds went unread) and will never come. Go on without them,
                        // counted, as Aeron's egress does across a failover, rather than wait
                        // for them forever.
                        self.replies_lost += egress_seq - self.last_egress_seq - 1;
                        self.last_egress_seq = egress_seq;
                        self.gap_at = None;
                        handler(request_seq, payload);
                        *delivered += 1;
                    } else {
                        // A reply was lost: the leader resends cached ones after an attach.
                        if first_after_attach {
                            self.gap_at = Some(egress_seq);
                        }
                        self.want_attach = true;
                    }
                }
            }
            Egress::Ack {
                session: s,
                committed_seq,
            } if s == session => {
                self.last_heard = Instant::now();
                self.note_committed(committed_seq);
            }
            Egress::NewLeader {
                session: s, leader, ..
            } if s == session => {
                self.target = leader.0;
                self.want_attach = true;
            }
            Egress::SessionEvent {
                session: s,
                code,
                leader,
                value,
                correlation_id,
                ..
            } if s == session || (correlation_id == 0 && s.0 == 0) => match code {
                EventCode::Ok => {
                    self.last_heard = Instant::now();
                    self.target = from;
                    self.after_attach = self.attaching;
                    self.attaching = false;
                    self.note_committed(value);
                    self.want_resend = true;
                }
                EventCode::Redirect => {
                    match leader {
                        Some(l) if l.0 != self.target => self.target = l.0,
                        _ => self.next_member(),
                    }
                    self.want_attach = true;
                }
                EventCode::Closed => {
                    self.error = Some(ClientError::SessionExpired {
                        committed_seq: value.max(self.committed_seq),
                    });
                }
                EventCode::UnknownSession => {
                    self.error = Some(ClientError::UnknownSession { session: session.0 });
                }
                EventCode::SequenceGap => {
                    self.note_committed(value);
                    self.want_resend = true;
                }
                EventCode::Rejected => {
                    self.refused = Some(ClientError::MessageRejected { sequence: value });
                }
                EventCode::Busy => {}
            },
            _ => {}
        }
    }
}
