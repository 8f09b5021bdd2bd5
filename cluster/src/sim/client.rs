//! A simulated client: opens a session, then runs a fixed number of key-value operations, one
//! at a time. It times out, fails over to another member, re-attaches to its session and
//! re-sends the same sequence number (exactly once is the cluster's job).

use crate::codec::client::{Egress, EventCode, Ingress, egress_messages};
use crate::consensus::SessionId;

use crate::sim::kv::{KvOp, KvRet, decode_reply, encode_request};
use crate::sim::rng::SimRng;

/// Keys the clients use (few, so that operations conflict).
pub const KEYS: u8 = 3;
/// A client's request timeout before it fails over.
pub const REQUEST_TIMEOUT_NS: i64 = 250_000_000;

/// An operation the client started and has not seen the end of.
#[derive(Debug, Clone, Copy)]
pub struct PendingOp {
    /// Client sequence number.
    pub seq: u64,
    /// Key.
    pub key: u8,
    /// Operation.
    pub op: KvOp,
    /// When it was invoked (virtual time).
    pub invoked_ns: i64,
}

/// Something in the client's history.
#[derive(Debug, Clone, Copy)]
pub enum ClientEvent {
    /// An operation was invoked.
    Invoke(PendingOp),
    /// The pending operation returned.
    Return(PendingOp, KvRet),
}

/// One client.
#[derive(Debug)]
pub struct Client {
    /// Index (its address is derived from it).
    pub id: u32,
    members: u32,
    /// The session, once open.
    pub session: Option<SessionId>,
    target: u32,
    next_seq: u64,
    /// The operation in flight.
    pub current: Option<PendingOp>,
    /// Operations still to start.
    pub ops_left: u32,
    last_egress_seq: u64,
    deadline_ns: i64,
    /// The session was closed under it: outcomes after its last reply are unknown.
    pub dead: bool,
    /// Highest sequence acknowledged with a reply.
    pub acked_seq: u64,
    /// Failovers done (stats).
    pub failovers: u64,
    /// The next connect goes to the current target (it was named as leader).
    redirected: bool,
}

impl Client {
    /// A client that will run `ops` operations against a cluster of `members`.
    pub fn new(id: u32, members: u32, ops: u32, rng: &mut SimRng) -> Self {
        Self {
            id,
            members,
            session: None,
            target: rng.below(u64::from(members)) as u32,
            next_seq: 1,
            current: None,
            ops_left: ops,
            last_egress_seq: 0,
            deadline_ns: rng.range_i64(0, 50_000_000),
            dead: false,
            acked_seq: 0,
            failovers: 0,
            redirected: false,
        }
    }

    /// Whether it has nothing more to do.
    pub fn finished(&self) -> bool {
        self.dead || (self.session.is_some() && self.current.is_none() && self.ops_left == 0)
    }

    fn correlation_id(&self) -> u64 {
        1000 + u64::from(self.id)
    }

    fn fail_over(&mut self, rng: &mut SimRng) {
        self.failovers += 1;
        let other = rng.below(u64::from(self.members - 1)) as u32;
        self.target = if other >= self.target {
            other + 1
        } else {
            other
        };
    }

    fn request(&self, op: &PendingOp) -> Vec<u8> {
        let payload = encode_request(op.key, op.op);
        let mut b = Vec::new();
        Ingress::Message {
            session: self.session.expect("session open"),
            sequence: op.seq,
            payload: &payload,
        }
        .encode(&mut b);
        b
    }

    /// Time passes: returns messages to send as (member, bytes), and history events.
    pub fn poll(
        &mut self,
        now_ns: i64,
        rng: &mut SimRng,
        sends: &mut Vec<(u32, Vec<u8>)>,
        events: &mut Vec<ClientEvent>,
    ) {
        if self.dead || now_ns < self.deadline_ns {
            return;
        }
        let Some(session) = self.session else {
            if self.deadline_ns > 0 && !self.redirected {
                self.fail_over(rng);
            }
            self.redirected = false;
            let mut b = Vec::new();
            Ingress::Connect {
                correlation_id: self.correlation_id(),
                credentials: b"",
            }
            .encode(&mut b);
            sends.push((self.target, b));
            self.deadline_ns = now_ns + REQUEST_TIMEOUT_NS;
            return;
        };
        if let Some(op) = self.current {
            // Timed out: fail over, re-attach, re-send the same sequence.
            self.fail_over(rng);
            let mut b = Vec::new();
            Ingress::Attach {
                session,
                last_egress_seq: self.last_egress_seq,
            }
            .encode(&mut b);
            sends.push((self.target, b));
            sends.push((self.target, self.request(&op)));
            self.deadline_ns = now_ns + REQUEST_TIMEOUT_NS + rng.range_i64(0, 50_000_000);
            return;
        }
        if self.ops_left == 0 {
            return;
        }
        self.ops_left -= 1;
        let key = rng.below(u64::from(KEYS)) as u8;
        let value = u64::from(self.id + 1) * 1_000_000 + self.next_seq;
        let op = match rng.below(3) {
            0 => KvOp::Put(value),
            1 => KvOp::Get,
            _ => {
                // Expect a value some client may have written, or absent.
                let who = rng.below(4);
                let seq = rng.below(self.next_seq + 3);
                let expected = if who == 3 {
                    0
                } else {
                    (who + 1) * 1_000_000 + seq
                };
                KvOp::Cas(expected, value)
            }
        };
        let pending = PendingOp {
            seq: self.next_seq,
            key,
            op,
            invoked_ns: now_ns,
        };
        self.next_seq += 1;
        self.current = Some(pending);
        events.push(ClientEvent::Invoke(pending));
        sends.push((self.target, self.request(&pending)));
        self.deadline_ns = now_ns + REQUEST_TIMEOUT_NS;
    }

    /// A message from a member.
    pub fn receive(
        &mut self,
        now_ns: i64,
        from: u32,
        bytes: &[u8],
        sends: &mut Vec<(u32, Vec<u8>)>,
        events: &mut Vec<ClientEvent>,
    ) {
        let Ok(msgs) = egress_messages(bytes) else {
            return;
        };
        for msg in msgs {
            self.receive_message(now_ns, from, msg, sends, events);
        }
    }

    /// One message of a datagram (a reply batch gives each reply in turn).
    fn receive_message(
        &mut self,
        now_ns: i64,
        from: u32,
        msg: Egress<'_>,
        sends: &mut Vec<(u32, Vec<u8>)>,
        events: &mut Vec<ClientEvent>,
    ) {
        match msg {
            Egress::SessionEvent {
                correlation_id,
                session,
                code,
                leader,
                ..
            } => match code {
                EventCode::Ok
                    if self.session.is_none() && correlation_id == self.correlation_id() =>
                {
                    self.session = Some(session);
                    self.target = from;
                    self.deadline_ns = now_ns;
                }
                EventCode::Redirect => {
                    if let Some(l) = leader
                        && l.0 != self.target
                        && l.0 < self.members
                    {
                        self.target = l.0;
                        // Retry at once, towards the leader.
                        self.deadline_ns = now_ns;
                        self.redirected = true;
                        if let (Some(op), Some(_)) = (self.current, self.session) {
                            sends.push((self.target, self.request(&op)));
                            self.deadline_ns = now_ns + REQUEST_TIMEOUT_NS;
                        }
                    }
                }
                EventCode::Closed | EventCode::UnknownSession
                    if self.session.is_some() && Some(session) == self.session =>
                {
                    self.dead = true;
                }
                _ => {}
            },
            Egress::Reply {
                session,
                egress_seq,
                request_seq,
                payload,
                ..
            } => {
                if Some(session) != self.session {
                    return;
                }
                self.last_egress_seq = self.last_egress_seq.max(egress_seq);
                if let Some(op) = self.current
                    && op.seq == request_seq
                    && let Some(ret) = decode_reply(payload)
                {
                    self.current = None;
                    self.acked_seq = self.acked_seq.max(op.seq);
                    self.deadline_ns = now_ns + 1_000_000;
                    events.push(ClientEvent::Return(op, ret));
                }
            }
            Egress::NewLeader {
                session, leader, ..
            } => {
                if Some(session) == self.session && leader.0 < self.members {
                    self.target = leader.0;
                    if let Some(op) = self.current {
                        sends.push((self.target, self.request(&op)));
                    }
                }
            }
            // `egress_messages` splits batches into replies.
            Egress::Ack { .. } | Egress::Replies(_) => {}
        }
    }
}
