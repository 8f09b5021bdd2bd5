//! The key-value service the simulator replicates (a real `ClusteredService`, run by the real
//! service container), its wire format, and its sequential specification for the
//! linearizability checker.
//!
//! Request (18 bytes): `op u8 | key u8 | a u64 LE | b u64 LE`, with op `P` put(key, a),
//! `G` get(key), `C` cas(key, expected a, new b). Value 0 means "absent"; the clients only
//! write values >= 1. Reply (9 bytes): `tag u8 | value u64 LE`: `p` put ok, `g` value,
//! `c` 1 if the cas swapped else 0.
//!
//! The service also checks exactly-once from its side: every client message it is given must
//! carry the session's next sequence number (a duplicate or a gap is recorded in
//! [`KvService::violations`], which is not replicated state).

use std::collections::BTreeMap;

use stateright::semantics::SequentialSpec;
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

/// An operation on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// Write the value.
    Put(u64),
    /// Read the value (0 = absent).
    Get,
    /// Compare-and-set: if the value is `.0`, write `.1`.
    Cas(u64, u64),
}

/// What an operation returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvRet {
    /// Put done.
    PutOk,
    /// The value read.
    GetOk(u64),
    /// Whether the cas swapped.
    CasOk(bool),
}

/// Encodes a request on `key`.
pub fn encode_request(key: u8, op: KvOp) -> Vec<u8> {
    let (code, a, b) = match op {
        KvOp::Put(v) => (b'P', v, 0),
        KvOp::Get => (b'G', 0, 0),
        KvOp::Cas(e, n) => (b'C', e, n),
    };
    let mut m = Vec::with_capacity(18);
    m.push(code);
    m.push(key);
    m.extend_from_slice(&a.to_le_bytes());
    m.extend_from_slice(&b.to_le_bytes());
    m
}

/// Decodes a reply.
pub fn decode_reply(bytes: &[u8]) -> Option<KvRet> {
    if bytes.len() != 9 {
        return None;
    }
    let v = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
    match bytes[0] {
        b'p' => Some(KvRet::PutOk),
        b'g' => Some(KvRet::GetOk(v)),
        b'c' => Some(KvRet::CasOk(v == 1)),
        _ => None,
    }
}

/// The replicated key-value service.
#[derive(Debug, Default, Clone)]
pub struct KvService {
    /// Key to value.
    pub map: BTreeMap<u8, u64>,
    /// Session to the last client sequence applied.
    pub last_seq: BTreeMap<u64, u64>,
    /// Exactly-once violations seen by this instance (not replicated).
    pub violations: Vec<String>,
}

impl KvService {
    fn execute(&mut self, msg: &[u8]) -> Option<[u8; 9]> {
        if msg.len() != 18 {
            return None;
        }
        let key = msg[1];
        let a = u64::from_le_bytes(msg[2..10].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(msg[10..18].try_into().expect("8 bytes"));
        let cur = self.map.get(&key).copied().unwrap_or(0);
        let (tag, v) = match msg[0] {
            b'P' => {
                self.map.insert(key, a);
                (b'p', 0)
            }
            b'G' => (b'g', cur),
            b'C' => {
                let ok = cur == a;
                if ok {
                    self.map.insert(key, b);
                }
                (b'c', u64::from(ok))
            }
            _ => return None,
        };
        let mut r = [0u8; 9];
        r[0] = tag;
        r[1..9].copy_from_slice(&v.to_le_bytes());
        Some(r)
    }
}

impl ClusteredService for KvService {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        if let Some(mut img) = snapshot {
            let n = img.read_u64().expect("kv snapshot: map length");
            for _ in 0..n {
                let k = img.read_u64().expect("kv snapshot: key") as u8;
                let v = img.read_u64().expect("kv snapshot: value");
                self.map.insert(k, v);
            }
            let n = img.read_u64().expect("kv snapshot: sessions");
            for _ in 0..n {
                let s = img.read_u64().expect("kv snapshot: session");
                let q = img.read_u64().expect("kv snapshot: seq");
                self.last_seq.insert(s, q);
            }
            assert!(img.is_empty(), "kv snapshot: trailing bytes");
        }
    }

    fn on_session_open(&mut self, _: &mut dyn Cluster, s: &ClientSession<'_>, _: i64) {
        self.last_seq.insert(s.id.0, 0);
    }

    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        s: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
        self.last_seq.remove(&s.id.0);
    }

    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _timestamp: i64,
        message: &[u8],
        header: &Header,
    ) {
        let Some(session) = session else { return };
        let last = self.last_seq.get(&session.0).copied().unwrap_or(0);
        if header.sequence != last + 1 {
            self.violations.push(format!(
                "session {} applied sequence {} after {} at log position {}",
                session.0, header.sequence, last, header.log_position
            ));
        }
        self.last_seq.insert(session.0, last.max(header.sequence));
        if let Some(reply) = self.execute(message) {
            // An unknown session here would be the module's bug; the offer result is the same
            // on every member either way.
            let _ = cluster.offer_egress(session, &reply);
        }
    }

    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}

    fn on_take_snapshot(&mut self, w: &mut SnapshotWriter<'_>) {
        w.write_u64(self.map.len() as u64);
        for (k, v) in &self.map {
            w.write_u64(u64::from(*k));
            w.write_u64(*v);
        }
        w.write_u64(self.last_seq.len() as u64);
        for (s, q) in &self.last_seq {
            w.write_u64(*s);
            w.write_u64(*q);
        }
    }

    fn on_role_change(&mut self, _: Role) {}

    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}

    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

/// The factory the container uses.
pub type KvFactory = fn() -> KvService;

/// One key's register as a sequential specification (for stateright's checker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KvSpec(pub u64);

impl SequentialSpec for KvSpec {
    type Op = KvOp;
    type Ret = KvRet;

    fn invoke(&mut self, op: &KvOp) -> KvRet {
        match *op {
            KvOp::Put(v) => {
                self.0 = v;
                KvRet::PutOk
            }
            KvOp::Get => KvRet::GetOk(self.0),
            KvOp::Cas(e, n) => {
                let ok = self.0 == e;
                if ok {
                    self.0 = n;
                }
                KvRet::CasOk(ok)
            }
        }
    }
}
