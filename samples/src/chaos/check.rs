//! The end-of-run checks on the recorded histories.
//!
//! kv: the history is linearizable (the simulator's checker,
//! [`tandem_cluster::sim::invariants::linearizability::check`], which runs `stateright`'s
//! `LinearizabilityTester` per key); no acknowledged write is lost (every acknowledged value
//! was later seen replaced — a put reports the value it overwrote, a successful
//! compare-and-set the one it swapped — or is the key's final value, unless a write whose
//! outcome is unknown may have replaced it unseen); none was applied twice (no value, each
//! written once, was seen replaced twice).
//!
//! matching: no order id given to two orders (a lost acknowledged order's id would be given
//! again), every cancel of an acknowledged order finds it, and the engine's next order id
//! after the load accounts for every accepted order exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use tandem_cluster::sim::client::{ClientEvent, PendingOp};
use tandem_cluster::sim::invariants::linearizability;
use tandem_cluster::sim::kv::{KvOp, KvRet};

use super::load::{KvRecord, OrderOp, OrderOutcome, OrderRecord};
use crate::matching::RejectReason;

/// The verdict on one property.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The property.
    pub name: &'static str,
    /// Whether it held.
    pub ok: bool,
    /// What was found (counts, or the first problems).
    pub detail: String,
}

impl Verdict {
    fn new(name: &'static str, problems: &[String], fine: String) -> Self {
        Self {
            name,
            ok: problems.is_empty(),
            detail: if problems.is_empty() {
                fine
            } else {
                format!(
                    "{} problem(s): {}",
                    problems.len(),
                    problems
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
        }
    }
}

/// Keys the simulator's checker takes in one call (its key is a `u8`).
const KEYS_PER_CALL: u32 = 256;

/// Linearizability of the kv history, with the simulator's checker, given up after
/// `timeout` (the search is exponential on a history that is not linearizable).
pub fn kv_linearizable(records: &[KvRecord], timeout: Duration) -> Verdict {
    let mut chunks: BTreeMap<u32, Vec<(u64, u32, ClientEvent)>> = BTreeMap::new();
    for r in records {
        let p = PendingOp {
            seq: 0,
            key: (r.key % KEYS_PER_CALL) as u8,
            op: r.op,
            invoked_ns: 0,
        };
        let events = chunks.entry(r.key / KEYS_PER_CALL).or_default();
        events.push((r.invoked, r.client, ClientEvent::Invoke(p)));
        if let Some((stamp, _, ret)) = r.returned {
            events.push((stamp, r.client, ClientEvent::Return(p, ret)));
        }
    }
    let n = records.len();
    let (tx, rx) = std::sync::mpsc::channel();
    // A big stack: the checker's search recurses once per operation of a key.
    let spawned = std::thread::Builder::new()
        .name("chaos-linearizability".into())
        .stack_size(512 << 20)
        .spawn(move || {
            let mut problems = Vec::new();
            for (chunk, mut events) in chunks {
                events.sort_by_key(|e| e.0);
                let history: Vec<(u32, ClientEvent)> =
                    events.into_iter().map(|(_, c, e)| (c, e)).collect();
                if let Err(v) = linearizability::check(&history) {
                    problems.push(format!("keys {}..: {v}", chunk * KEYS_PER_CALL));
                }
            }
            let _ = tx.send(problems);
        });
    if let Err(e) = spawned {
        return Verdict::new(
            "linearizable",
            &[format!("cannot run the checker: {e}")],
            String::new(),
        );
    }
    match rx.recv_timeout(timeout) {
        Ok(problems) => Verdict::new(
            "linearizable",
            &problems,
            format!("{n} operations, stateright LinearizabilityTester per key"),
        ),
        Err(_) => Verdict::new(
            "linearizable",
            &[format!("the checker did not finish within {timeout:?}")],
            String::new(),
        ),
    }
}

/// No acknowledged write lost, none applied twice (see the module docs). `final_client` is
/// the logical client of the final reads.
pub fn kv_exactly_once(records: &[KvRecord], final_client: u32) -> (Verdict, Verdict) {
    let mut replaced: HashMap<(u32, u64), u32> = HashMap::new();
    let mut finals: HashMap<u32, u64> = HashMap::new();
    let mut unresolved_write: HashSet<u32> = HashSet::new();
    let mut acked: Vec<(u32, u64)> = Vec::new();
    for r in records {
        match (r.op, r.returned) {
            (KvOp::Put(v), Some(_)) => {
                acked.push((r.key, v));
                if let Some(p) = r.previous.filter(|&p| p != 0) {
                    *replaced.entry((r.key, p)).or_default() += 1;
                }
            }
            (KvOp::Cas(e, n), Some((_, _, KvRet::CasOk(true)))) => {
                acked.push((r.key, n));
                if e != 0 {
                    *replaced.entry((r.key, e)).or_default() += 1;
                }
            }
            (KvOp::Get, Some((_, _, KvRet::GetOk(v)))) if r.client == final_client => {
                finals.insert(r.key, v);
            }
            (KvOp::Put(_) | KvOp::Cas(..), None) => {
                unresolved_write.insert(r.key);
            }
            _ => {}
        }
    }
    let mut lost = Vec::new();
    for &(k, v) in &acked {
        if replaced.get(&(k, v)).copied().unwrap_or(0) == 0
            && finals.get(&k) != Some(&v)
            && finals.contains_key(&k)
            && !unresolved_write.contains(&k)
        {
            lost.push(format!("key k{k}: acknowledged value {v} never seen again"));
        }
    }
    let twice: Vec<String> = replaced
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((k, v), n)| format!("key k{k}: value {v} replaced {n} times"))
        .collect();
    (
        Verdict::new(
            "no acknowledged write lost",
            &lost,
            format!("{} acknowledged writes", acked.len()),
        ),
        Verdict::new(
            "no write applied twice",
            &twice,
            format!("{} replacements observed", replaced.len()),
        ),
    )
}

/// The matching checks; `probe` is the order id the engine gave the order sent after the
/// load (by logical client `probe_client`).
pub fn matching(
    records: &[OrderRecord],
    probe: Option<u64>,
    probe_client: u32,
) -> (Verdict, Verdict) {
    let mut ids: HashMap<u64, u32> = HashMap::new();
    let mut accepted = 0_u64;
    let mut unresolved_new = 0_u64;
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    for r in records.iter().filter(|r| r.client != probe_client) {
        match (r.op, r.returned) {
            (OrderOp::New(_), Some((_, OrderOutcome::Accepted(id)))) => {
                accepted += 1;
                *ids.entry(id).or_default() += 1;
            }
            (OrderOp::New(_), None) => unresolved_new += 1,
            (
                OrderOp::Cancel(id, _),
                Some((_, OrderOutcome::Rejected(RejectReason::UnknownOrder))),
            ) => {
                lost.push(format!("acknowledged order {id} unknown when cancelled"));
            }
            (op, Some((_, OrderOutcome::Unexpected))) => {
                lost.push(format!("{op:?}: a reply that does not fit the request"));
            }
            _ => {}
        }
    }
    for (id, n) in &ids {
        if *n > 1 {
            twice.push(format!("order id {id} given to {n} orders"));
        }
    }
    match probe {
        Some(p) => {
            let before = p.saturating_sub(1);
            if before < accepted {
                lost.push(format!(
                    "the engine's next order id {p} accounts for only {before} of {accepted} accepted orders"
                ));
            }
            if before > accepted + unresolved_new {
                twice.push(format!(
                    "the engine's next order id {p}: {before} orders accepted, the clients saw {accepted} (+{unresolved_new} unresolved)"
                ));
            }
        }
        None => lost.push("the probe order after the load was not accepted".into()),
    }
    (
        Verdict::new(
            "no acknowledged order lost",
            &lost,
            format!("{accepted} orders accepted, {unresolved_new} unresolved"),
        ),
        Verdict::new(
            "no order applied twice",
            &twice,
            format!("{} distinct order ids", ids.len()),
        ),
    )
}

/// A verdict from a list of problems.
pub fn verdict(name: &'static str, problems: &[String], fine: String) -> Verdict {
    Verdict::new(name, problems, fine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(
        client: u32,
        op: KvOp,
        invoked: u64,
        ret: Option<(u64, KvRet)>,
        previous: Option<u64>,
    ) -> KvRecord {
        KvRecord {
            client,
            key: 0,
            op,
            invoked,
            invoked_s: 0.0,
            returned: ret.map(|(s, r)| (s, 0.0, r)),
            previous,
            fault: 0,
        }
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        let good = vec![
            rec(1, KvOp::Put(5), 0, Some((1, KvRet::PutOk)), Some(0)),
            rec(2, KvOp::Get, 2, Some((3, KvRet::GetOk(5))), None),
        ];
        assert!(kv_linearizable(&good, Duration::from_secs(10)).ok);
        let bad = vec![
            rec(1, KvOp::Put(5), 0, Some((1, KvRet::PutOk)), Some(0)),
            rec(2, KvOp::Get, 2, Some((3, KvRet::GetOk(0))), None),
        ];
        assert!(!kv_linearizable(&bad, Duration::from_secs(10)).ok);
    }

    #[test]
    fn lost_and_doubled_writes_are_found() {
        let fin = 99;
        let records = vec![
            rec(1, KvOp::Put(5), 0, Some((1, KvRet::PutOk)), Some(0)),
            rec(1, KvOp::Put(6), 2, Some((3, KvRet::PutOk)), Some(0)),
            rec(fin, KvOp::Get, 4, Some((5, KvRet::GetOk(6))), None),
        ];
        let (lost, twice) = kv_exactly_once(&records, fin);
        assert!(!lost.ok, "value 5 was never seen replaced");
        assert!(twice.ok);
        let records = vec![
            rec(1, KvOp::Put(5), 0, Some((1, KvRet::PutOk)), Some(0)),
            rec(1, KvOp::Put(6), 2, Some((3, KvRet::PutOk)), Some(5)),
            rec(1, KvOp::Put(7), 4, Some((5, KvRet::PutOk)), Some(5)),
            rec(fin, KvOp::Get, 6, Some((7, KvRet::GetOk(7))), None),
        ];
        let (lost, twice) = kv_exactly_once(&records, fin);
        assert!(!lost.ok, "value 6 was never seen replaced");
        assert!(!twice.ok, "value 5 replaced twice");
    }
}
