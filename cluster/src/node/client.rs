//! [`ClusterClient`]: a client session with exactly-once delivery (DESIGN §6).
//!
//! * `connect` sends `Connect` to a member; a follower answers `Redirect` (with the leader if
//!   it knows one), the leader records the session open in the log and answers `Ok` with the
//!   session id once it is applied.
//! * `offer` gives the message the next sequence number, keeps it until the cluster says it
//!   is committed (`Reply.committed_seq` or `Ack`), and refuses with
//!   [`ClientError::BackPressure`] while `window` messages are unacknowledged.
//! * `poll` receives replies in egress order (each delivered once), acks, redirects and
//!   session events; it resends unacknowledged messages when the leader is silent for
//!   `resend_interval`, sends keep-alives, and after `leader_timeout` without an answer moves
//!   on to the next member with `Attach` (same session): the new leader answers with the
//!   highest committed sequence and the cached replies the client missed, and the client
//!   re-sends the rest. Already-applied messages are answered from the reply cache.
//!
//! The client is single-threaded and non-blocking; the `*_blocking` helpers poll with a short
//! sleep.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::codec::client::{Egress, EventCode, Ingress};
use crate::consensus::SessionId;
use crate::transport::{
    Event, InProcHub, IoMode, MemberEndpoints, Transport, TransportConfig, UdpConfig,
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
    /// Datagram size.
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
            max_message_bytes: 32 * 1024,
            resend_interval: Duration::from_millis(300),
            leader_timeout: Duration::from_millis(1500),
            keepalive_interval: Duration::from_millis(500),
            io: IoMode::Std,
            mtu: 1408,
        })
    }
}

/// A session with a cluster.
#[derive(Debug)]
pub struct ClusterClient {
    cfg: ClientConfig,
    net: NodeNetwork,
    /// Member we talk to (the leader, as far as we know).
    target: u32,
    session: Option<SessionId>,
    correlation_id: u64,
    next_seq: u64,
    committed_seq: u64,
    last_egress_seq: u64,
    unacked: VecDeque<(u64, Vec<u8>)>,
    last_heard: Instant,
    last_sent: Instant,
    last_resend: Instant,
    attaching: bool,
    error: Option<ClientError>,
    scratch: Vec<u8>,
    replies: VecDeque<(u64, Vec<u8>)>,
    failovers: u64,
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
        Ok(Self::with_network(cfg, NodeNetwork::Udp(Box::new(t))))
    }

    /// A client on an in-process hub.
    ///
    /// # Errors
    /// [`ClientError::Transport`] if the hub refuses the endpoint.
    pub fn in_process(cfg: ClientConfig, hub: &InProcHub) -> Result<Self, ClientError> {
        let t = hub
            .bind_client()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(Self::with_network(cfg, NodeNetwork::InProc(Box::new(t))))
    }

    fn with_network(cfg: ClientConfig, net: NodeNetwork) -> Self {
        let now = Instant::now();
        Self {
            cfg,
            net,
            target: 0,
            session: None,
            correlation_id: u64::from(std::process::id()) << 32
                | u64::from(now.elapsed().subsec_nanos()),
            next_seq: 1,
            committed_seq: 0,
            last_egress_seq: 0,
            unacked: VecDeque::new(),
            last_heard: now,
            last_sent: now,
            last_resend: now,
            attaching: false,
            error: None,
            scratch: Vec::with_capacity(2048),
            replies: VecDeque::new(),
            failovers: 0,
        }
    }

    /// The session id, once connected.
    pub fn session(&self) -> Option<SessionId> {
        self.session
    }

    /// The member the client talks to.
    pub fn leader(&self) -> u32 {
        self.target
    }

    /// Highest sequence the cluster reported committed.
    pub fn committed_seq(&self) -> u64 {
        self.committed_seq
    }

    /// Messages sent and not yet known committed.
    pub fn in_flight(&self) -> usize {
        self.unacked.len()
    }

    /// Times the client moved to another member without being told to.
    pub fn failovers(&self) -> u64 {
        self.failovers
    }

    fn send(&mut self, msg: &Ingress<'_>) {
        self.scratch.clear();
        msg.encode(&mut self.scratch);
        let _ = self.net.send_to_member(self.target, &self.scratch);
        let _ = self.net.flush();
        self.last_sent = Instant::now();
    }

    fn next_member(&mut self) {
        self.target = (self.target + 1) % self.cfg.members.len() as u32;
    }

    /// Connects (opens a session), following redirects, within `timeout`.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] if no leader accepted in time; [`ClientError::Rejected`] if
    /// the authenticator refused.
    pub fn connect(&mut self, timeout: Duration) -> Result<SessionId, ClientError> {
        let start = Instant::now();
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let mut last_try = Instant::now() - Duration::from_secs(10);
        while start.elapsed() < timeout {
            if last_try.elapsed() >= self.cfg.resend_interval {
                last_try = Instant::now();
                let creds = std::mem::take(&mut self.cfg.credentials);
                self.send(&Ingress::Connect {
                    correlation_id: self.correlation_id,
                    credentials: &creds,
                });
                self.cfg.credentials = creds;
            }
            let mut outcome: Option<Result<SessionId, ClientError>> = None;
            let mut redirect: Option<Option<u32>> = None;
            let cid = self.correlation_id;
            let _ = self.net.poll(0, |e| {
                let Event::FromMember { msg, .. } = e else {
                    return;
                };
                if let Ok(Egress::SessionEvent {
                    correlation_id,
                    session,
                    code,
                    leader,
                    ..
                }) = Egress::decode(msg)
                {
                    if correlation_id != cid {
                        return;
                    }
                    match code {
                        EventCode::Ok => outcome = Some(Ok(session)),
                        EventCode::Rejected => outcome = Some(Err(ClientError::Rejected)),
                        EventCode::Redirect => redirect = Some(leader.map(|m| m.0)),
                        _ => {}
                    }
                }
            });
            match outcome {
                Some(Ok(s)) => {
                    self.session = Some(s);
                    self.last_heard = Instant::now();
                    return Ok(s);
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
            match redirect {
                Some(Some(l)) if l != self.target => {
                    self.target = l;
                    last_try = Instant::now() - self.cfg.resend_interval;
                }
                Some(_) => {
                    self.next_member();
                }
                None => {
                    if last_try.elapsed() >= self.cfg.resend_interval {
                        self.next_member();
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

    /// Offers a message; returns its sequence number.
    ///
    /// # Errors
    /// [`ClientError::BackPressure`] while the window is full (poll, then retry);
    /// [`ClientError::TooLarge`]; [`ClientError::NotConnected`]; a session error seen by an
    /// earlier `poll`.
    pub fn offer(&mut self, msg: &[u8]) -> Result<u64, ClientError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let Some(session) = self.session else {
            return Err(ClientError::NotConnected);
        };
        if msg.len() > self.cfg.max_message_bytes {
            return Err(ClientError::TooLarge {
                len: msg.len(),
                max: self.cfg.max_message_bytes,
            });
        }
        if self.unacked.len() >= self.cfg.window {
            return Err(ClientError::BackPressure {
                in_flight: self.unacked.len(),
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.unacked.push_back((seq, msg.to_vec()));
        if !self.attaching {
            self.send(&Ingress::Message {
                session,
                sequence: seq,
                payload: msg,
            });
        }
        Ok(seq)
    }

    fn resend_unacked(&mut self) {
        let Some(session) = self.session else { return };
        let unacked = std::mem::take(&mut self.unacked);
        for (seq, m) in &unacked {
            self.send(&Ingress::Message {
                session,
                sequence: *seq,
                payload: m,
            });
        }
        self.unacked = unacked;
        self.last_resend = Instant::now();
    }

    fn note_committed(&mut self, committed: u64) {
        if committed > self.committed_seq {
            self.committed_seq = committed;
        }
        while self
            .unacked
            .front()
            .is_some_and(|(s, _)| *s <= self.committed_seq)
        {
            self.unacked.pop_front();
        }
    }

    fn attach(&mut self) {
        let Some(session) = self.session else { return };
        self.attaching = true;
        self.send(&Ingress::Attach {
            session,
            last_egress_seq: self.last_egress_seq,
        });
    }

    /// Receives what arrived and calls `handler(request_seq, reply)` for each new reply, in
    /// egress order; does resends, keep-alives and failover. Returns the replies delivered.
    ///
    /// # Errors
    /// [`ClientError::SessionExpired`] or [`ClientError::UnknownSession`] when the cluster
    /// closed the session; [`ClientError::MessageRejected`] for a refused message.
    pub fn poll(&mut self, mut handler: impl FnMut(u64, &[u8])) -> Result<usize, ClientError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let Some(session) = self.session else {
            return Err(ClientError::NotConnected);
        };
        let mut events: Vec<(u32, Vec<u8>)> = Vec::new();
        let _ = self.net.poll(0, |e| {
            if let Event::FromMember { member_id, msg } = e {
                events.push((member_id, msg.to_vec()));
            }
        });
        let mut delivered = 0;
        for (from, bytes) in events {
            let Ok(msg) = Egress::decode(&bytes) else {
                continue;
            };
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
                    if egress_seq == self.last_egress_seq + 1 {
                        self.last_egress_seq = egress_seq;
                        self.replies.push_back((request_seq, payload.to_vec()));
                    } else if egress_seq > self.last_egress_seq + 1 && from == self.target {
                        // A reply was lost: the leader resends cached ones after an attach.
                        self.attach();
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
                    self.attach();
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
                        self.attaching = false;
                        self.note_committed(value);
                        self.resend_unacked();
                    }
                    EventCode::Redirect => {
                        match leader {
                            Some(l) if l.0 != self.target => self.target = l.0,
                            _ => self.next_member(),
                        }
                        self.attach();
                    }
                    EventCode::Closed => {
                        let e = ClientError::SessionExpired {
                            committed_seq: value.max(self.committed_seq),
                        };
                        self.error = Some(e.clone());
                        return Err(e);
                    }
                    EventCode::UnknownSession => {
                        let e = ClientError::UnknownSession { session: session.0 };
                        self.error = Some(e.clone());
                        return Err(e);
                    }
                    EventCode::SequenceGap => {
                        self.note_committed(value);
                        self.resend_unacked();
                    }
                    EventCode::Rejected => {
                        return Err(ClientError::MessageRejected { sequence: value });
                    }
                    EventCode::Busy => {}
                },
                _ => {}
            }
        }
        while let Some((seq, reply)) = self.replies.pop_front() {
            handler(seq, &reply);
            delivered += 1;
        }
        let now = Instant::now();
        if now.duration_since(self.last_heard) >= self.cfg.leader_timeout {
            // The member is silent: try the next one with the same session.
            self.failovers += 1;
            self.next_member();
            self.last_heard = now;
            self.attach();
        } else if (self.attaching || !self.unacked.is_empty())
            && now.duration_since(self.last_resend) >= self.cfg.resend_interval
        {
            self.last_resend = now;
            if self.attaching {
                self.attach();
            } else {
                self.resend_unacked();
            }
        } else if now.duration_since(self.last_sent) >= self.cfg.keepalive_interval {
            self.send(&Ingress::KeepAlive { session });
        }
        Ok(delivered)
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

    /// Closes the session (best effort).
    pub fn close(mut self) {
        if let Some(session) = self.session.take() {
            self.send(&Ingress::Close { session });
        }
    }
}
