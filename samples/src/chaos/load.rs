//! Client load from the root namespace: each client a thread with one session, one operation
//! at a time, every invocation and result recorded with a global order stamp (taken before
//! the request is sent and after its reply arrived, so the stamps respect real time).
//!
//! * kv: put (a value used once in the whole run), get and compare-and-set on a few keys; the
//!   keys change every [`KEY_EPOCH_S`] seconds so that each key's history stays short enough
//!   for the linearizability checker.
//! * matching: buy limit orders (no sells, so nothing trades) with unique client order ids,
//!   and cancels of the client's own acknowledged orders.
//!
//! A session the cluster closes ends the client's logical history (its operation in flight
//! stays unresolved: it may or may not have taken effect); the thread reconnects as a new
//! logical client.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_cluster::node::{ClientConfig, ClusterClient};
use tandem_cluster::sim::kv::{KvOp, KvRet};

use crate::cli::matching::Rng;
use crate::kv::{KvReply, KvRequest};
use crate::matching::{Event, NewOrderRequest, OrderKind, RejectReason, Request, Side};

/// Seconds each generation of keys is used for.
pub const KEY_EPOCH_S: f64 = 4.0;
/// Keys per generation.
pub const KEYS_PER_EPOCH: u64 = 3;
/// An operation unanswered this long is abandoned (left unresolved) and the client
/// reconnects.
pub const OP_GIVE_UP: Duration = Duration::from_secs(60);
/// After the load stops, how long clients wait for their last replies.
pub const DRAIN: Duration = Duration::from_secs(30);

/// One key-value operation.
#[derive(Debug, Clone, Copy)]
pub struct KvRecord {
    /// Logical client (one per session).
    pub client: u32,
    /// Key index (the key is `k<index>`).
    pub key: u32,
    /// The operation.
    pub op: KvOp,
    /// Order stamp of the invocation.
    pub invoked: u64,
    /// Seconds since the start, at invocation.
    pub invoked_s: f64,
    /// Order stamp, seconds and result of the return; `None` if it never returned.
    pub returned: Option<(u64, f64, KvRet)>,
    /// For a put: the value it overwrote (0: none); for a cas: the value it found.
    pub previous: Option<u64>,
    /// The fault in force at invocation.
    pub fault: usize,
}

/// What a matching request was and what came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOp {
    /// A new buy order with this client order id.
    New(u64),
    /// A cancel of this (acknowledged) order id on instrument `.1`.
    Cancel(u64, u32),
}

/// What the engine answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderOutcome {
    /// Accepted with this order id.
    Accepted(u64),
    /// Cancelled.
    Cancelled,
    /// Refused.
    Rejected(RejectReason),
    /// A reply that does not fit the request.
    Unexpected,
}

/// One matching request.
#[derive(Debug, Clone, Copy)]
pub struct OrderRecord {
    /// Logical client.
    pub client: u32,
    /// The request.
    pub op: OrderOp,
    /// Seconds since the start, at invocation.
    pub invoked_s: f64,
    /// Seconds and outcome of the first reply.
    pub returned: Option<(f64, OrderOutcome)>,
    /// The fault in force at invocation.
    pub fault: usize,
}

/// What every client shares.
#[derive(Debug)]
pub struct LoadShared {
    /// Members list.
    pub members: String,
    /// Start of the run.
    pub t0: Instant,
    /// Set to stop sending.
    pub stop: AtomicBool,
    /// The fault in force (set by the scheduler).
    pub fault: Arc<crate::chaos::monitor::Shared>,
    /// The global order stamp.
    pub order: AtomicU64,
    /// Operations completed.
    pub ops: AtomicU64,
    /// Sessions the cluster closed under a client, or connects that failed.
    pub session_errors: AtomicUsize,
    /// Replies to a request other than the one in flight (each client has one request in
    /// flight at a time, so each is a second reply to an earlier request: applied twice).
    pub extra_replies: AtomicUsize,
    /// The kv history.
    pub kv: Mutex<Vec<KvRecord>>,
    /// The matching history.
    pub orders: Mutex<Vec<OrderRecord>>,
}

impl LoadShared {
    /// The next order stamp.
    pub fn stamp(&self) -> u64 {
        self.order.fetch_add(1, Ordering::SeqCst)
    }

    /// Seconds since the start.
    pub fn now_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn fault(&self) -> usize {
        self.fault.fault.load(Ordering::Relaxed)
    }
}

/// A client configuration for `members`.
///
/// # Errors
/// A message if the list does not parse.
pub fn client_config(members: &str) -> Result<ClientConfig, String> {
    let mut cc = ClientConfig::new(members).map_err(|e| e.to_string())?;
    cc.cluster_id = 7;
    cc.resend_interval = Duration::from_millis(100);
    cc.leader_timeout = Duration::from_millis(500);
    Ok(cc)
}

fn connect(shared: &LoadShared) -> Option<ClusterClient> {
    let cc = client_config(&shared.members).ok()?;
    let mut c = ClusterClient::new(cc).ok()?;
    match c.connect(Duration::from_secs(5)) {
        Ok(_) => Some(c),
        Err(_) => {
            shared.session_errors.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Why waiting for a reply ended without one.
enum NoReply {
    /// The session is gone (closed by the cluster, or abandoned).
    Session,
}

/// Offers `msg` and polls until its reply, the session fails, the give-up time passes, or
/// (after `stop`) the drain time passes. Replies to other sequences are counted in
/// [`LoadShared::extra_replies`].
fn call(c: &mut ClusterClient, shared: &LoadShared, msg: &[u8]) -> Result<Vec<u8>, NoReply> {
    let mut extra = |_: u64, _: &[u8]| {
        shared.extra_replies.fetch_add(1, Ordering::Relaxed);
    };
    let start = Instant::now();
    let seq = c
        .offer_blocking(msg, Duration::from_secs(5), &mut extra)
        .map_err(|_| NoReply::Session)?;
    let mut reply = None;
    let mut stopped_at: Option<Instant> = None;
    loop {
        let n = c
            .poll(|s, r| {
                if s == seq && reply.is_none() {
                    reply = Some(r.to_vec());
                } else {
                    extra(s, r);
                }
            })
            .map_err(|_| NoReply::Session)?;
        if let Some(r) = reply {
            return Ok(r);
        }
        if start.elapsed() > OP_GIVE_UP {
            return Err(NoReply::Session);
        }
        if shared.stop.load(Ordering::Relaxed) {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            if at.elapsed() > DRAIN {
                return Err(NoReply::Session);
            }
        }
        if n == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

fn value_text(v: u64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn parse_value(v: &Option<Vec<u8>>) -> u64 {
    v.as_ref()
        .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
        .unwrap_or(u64::MAX)
        .min(if v.is_none() { 0 } else { u64::MAX })
}

/// The request for `op` on key `key`.
pub fn kv_request(key: u32, op: KvOp) -> KvRequest {
    let key = format!("k{key}").into_bytes();
    let opt = |v: u64| (v != 0).then(|| value_text(v));
    match op {
        KvOp::Put(v) => KvRequest::Set {
            key,
            value: value_text(v),
        },
        KvOp::Get => KvRequest::Get { key },
        KvOp::Cas(e, n) => KvRequest::CompareAndSet {
            key,
            expected: opt(e),
            new: opt(n),
        },
    }
}

/// The result and the previous value a reply stands for (`None` if it does not fit `op`).
pub fn kv_result(op: KvOp, reply: &[u8]) -> Option<(KvRet, Option<u64>)> {
    match (op, KvReply::decode(reply).ok()?) {
        (KvOp::Put(_), KvReply::Stored { previous }) => {
            Some((KvRet::PutOk, Some(parse_value(&previous))))
        }
        (KvOp::Get, KvReply::Value { value }) => Some((KvRet::GetOk(parse_value(&value)), None)),
        (KvOp::Cas(e, _), KvReply::Swapped { success, current }) => Some((
            KvRet::CasOk(success),
            Some(if success { e } else { parse_value(&current) }),
        )),
        _ => None,
    }
}

/// One kv operation on a session, recorded. Returns false if the session is gone.
fn kv_op(c: &mut ClusterClient, shared: &LoadShared, client: u32, key: u32, op: KvOp) -> bool {
    let fault = shared.fault();
    let invoked_s = shared.now_s();
    let invoked = shared.stamp();
    let result = call(c, shared, &kv_request(key, op).encode());
    let (returned, previous, ok) = match result {
        Ok(bytes) => match kv_result(op, &bytes) {
            Some((ret, prev)) => (Some((shared.stamp(), shared.now_s(), ret)), prev, true),
            // A reply that does not fit: recorded as never returned, and the session dropped.
            None => (None, None, false),
        },
        Err(NoReply::Session) => (None, None, false),
    };
    if ok {
        shared.ops.fetch_add(1, Ordering::Relaxed);
    }
    shared
        .kv
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(KvRecord {
            client,
            key,
            op,
            invoked,
            invoked_s,
            returned,
            previous,
            fault,
        });
    ok
}

fn kv_client(worker: u32, seed: u64, shared: &LoadShared) {
    let mut rng = Rng::new(seed ^ ((u64::from(worker) + 1) * 0x9E37));
    let mut generation = 0;
    let mut counter = 0_u64;
    let mut seen: HashMap<u32, u64> = HashMap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(mut c) = connect(shared) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let client = worker * 1000 + generation;
        generation += 1;
        while !shared.stop.load(Ordering::Relaxed) {
            let epoch = (shared.now_s() / KEY_EPOCH_S) as u64;
            let key = (epoch * KEYS_PER_EPOCH + rng.below(KEYS_PER_EPOCH)) as u32;
            counter += 1;
            let fresh = (u64::from(worker) + 1) << 40 | counter;
            let op = match rng.below(10) {
                0..=4 => KvOp::Put(fresh),
                5..=7 => KvOp::Get,
                _ => KvOp::Cas(seen.get(&key).copied().unwrap_or(0), fresh),
            };
            let ok = kv_op(&mut c, shared, client, key, op);
            if let Some(r) = shared.kv.lock().unwrap_or_else(|e| e.into_inner()).last()
                && let Some((_, _, ret)) = r.returned
            {
                match (op, ret) {
                    (KvOp::Put(v), _) => {
                        seen.insert(key, v);
                    }
                    (_, KvRet::GetOk(v)) => {
                        seen.insert(key, v);
                    }
                    (KvOp::Cas(_, n), KvRet::CasOk(true)) => {
                        seen.insert(key, n);
                    }
                    _ => {}
                }
            }
            if !ok {
                shared.session_errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(2 + rng.below(10)));
        }
        c.close();
    }
}

/// Reads every key used, from a fresh client (recorded as logical client `client`). Returns
/// false if some read got no answer.
pub fn kv_final_reads(shared: &LoadShared, client: u32) -> bool {
    let mut keys: Vec<u32> = shared
        .kv
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|r| r.key)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let Some(mut c) = connect(shared) else {
        return false;
    };
    let ok = keys
        .into_iter()
        .all(|k| kv_op(&mut c, shared, client, k, KvOp::Get));
    c.close();
    ok
}

fn decode_order(op: OrderOp, reply: &[u8]) -> OrderOutcome {
    match (op, Event::decode(reply)) {
        (
            OrderOp::New(cloid),
            Ok(Event::Accepted {
                order_id,
                client_order_id,
                ..
            }),
        ) if client_order_id == cloid => OrderOutcome::Accepted(order_id),
        (OrderOp::Cancel(id, _), Ok(Event::Cancelled { order_id, .. })) if order_id == id => {
            OrderOutcome::Cancelled
        }
        (_, Ok(Event::Rejected { reason, .. })) => OrderOutcome::Rejected(reason),
        _ => OrderOutcome::Unexpected,
    }
}

fn order_request(op: OrderOp, rng: &mut Rng) -> Request {
    match op {
        OrderOp::New(cloid) => Request::New(NewOrderRequest {
            instrument: rng.below(4) as u32,
            client_order_id: cloid,
            side: Side::Buy,
            kind: OrderKind::Limit,
            price: 900 + rng.below(100) as i64,
            quantity: 1 + rng.below(100),
        }),
        OrderOp::Cancel(order_id, instrument) => Request::Cancel {
            instrument,
            order_id,
        },
    }
}

/// One matching request on a session, recorded. Returns the outcome, or `None` if the
/// session is gone.
fn order_op(
    c: &mut ClusterClient,
    shared: &LoadShared,
    client: u32,
    op: OrderOp,
    rng: &mut Rng,
) -> Option<(OrderOutcome, u32)> {
    let req = order_request(op, rng);
    let instrument = match &req {
        Request::New(o) => o.instrument,
        Request::Cancel { instrument, .. } | Request::Modify { instrument, .. } => *instrument,
    };
    let fault = shared.fault();
    let invoked_s = shared.now_s();
    let index = {
        let mut h = shared.orders.lock().unwrap_or_else(|e| e.into_inner());
        h.push(OrderRecord {
            client,
            op,
            invoked_s,
            returned: None,
            fault,
        });
        h.len() - 1
    };
    let result = call(c, shared, &req.encode());
    let mut h = shared.orders.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Ok(bytes) => {
            let outcome = decode_order(op, &bytes);
            h[index].returned = Some((shared.now_s(), outcome));
            shared.ops.fetch_add(1, Ordering::Relaxed);
            Some((outcome, instrument))
        }
        Err(NoReply::Session) => None,
    }
}

fn matching_client(worker: u32, seed: u64, shared: &LoadShared) {
    let mut rng = Rng::new(seed ^ ((u64::from(worker) + 1) * 0x7F4A));
    let mut generation = 0;
    let mut counter = 0_u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let Some(mut c) = connect(shared) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let client = worker * 1000 + generation;
        generation += 1;
        // (order id, instrument) of this session's acknowledged resting orders.
        let mut resting: VecDeque<(u64, u32)> = VecDeque::new();
        while !shared.stop.load(Ordering::Relaxed) {
            let op = if resting.len() >= 8 || (!resting.is_empty() && rng.below(10) < 4) {
                let (id, instrument) = resting.pop_front().expect("not empty");
                OrderOp::Cancel(id, instrument)
            } else {
                counter += 1;
                OrderOp::New((u64::from(worker) + 1) << 40 | counter)
            };
            match order_op(&mut c, shared, client, op, &mut rng) {
                Some((OrderOutcome::Accepted(id), instrument)) => {
                    resting.push_back((id, instrument));
                }
                Some(_) => {}
                None => {
                    shared.session_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2 + rng.below(10)));
        }
        c.close();
    }
}

/// After the load: one more order from a fresh client; returns its order id (the engine's
/// next order id).
pub fn matching_probe(shared: &LoadShared, client: u32) -> Option<u64> {
    let mut c = connect(shared)?;
    let mut rng = Rng::new(1);
    let r = order_op(&mut c, shared, client, OrderOp::New(u64::MAX - 1), &mut rng);
    c.close();
    match r {
        Some((OrderOutcome::Accepted(id), _)) => Some(id),
        _ => None,
    }
}

/// Which service the load drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// Key-value operations.
    Kv,
    /// Orders.
    Matching,
}

/// Starts `clients` client threads.
pub fn start(
    kind: LoadKind,
    clients: u32,
    seed: u64,
    shared: &Arc<LoadShared>,
) -> Vec<JoinHandle<()>> {
    (0..clients)
        .filter_map(|w| {
            let s = Arc::clone(shared);
            std::thread::Builder::new()
                .name(format!("chaos-client-{w}"))
                .spawn(move || match kind {
                    LoadKind::Kv => kv_client(w, seed, &s),
                    LoadKind::Matching => matching_client(w, seed, &s),
                })
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(parse_value(&None), 0);
        assert_eq!(parse_value(&Some(b"42".to_vec())), 42);
        assert_eq!(parse_value(&Some(b"x".to_vec())), u64::MAX);
        let r = KvReply::Stored {
            previous: Some(b"7".to_vec()),
        }
        .encode();
        assert_eq!(kv_result(KvOp::Put(9), &r), Some((KvRet::PutOk, Some(7))));
        assert_eq!(kv_result(KvOp::Get, &r), None);
    }
}
