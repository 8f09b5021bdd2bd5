//! Linearizability of the clients' key-value history, checked by a checker the project did not
//! write: `stateright`'s [`LinearizabilityTester`] (stateright 0.31). Linearizability is
//! local (Herlihy and Wing), so each key is checked on its own, which keeps the search small.
//! Operations that never returned stay in flight: they may or may not have taken effect.

use std::collections::BTreeMap;

use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

use crate::sim::client::ClientEvent;
use crate::sim::invariants::{Check, Violation};
use crate::sim::kv::KvSpec;

/// Property name.
pub const PROPERTY: &str = "linearizability";

/// Checks the history: (client, event) in real-time order.
pub fn check(history: &[(u32, ClientEvent)]) -> Check {
    let mut testers: BTreeMap<u8, LinearizabilityTester<u32, KvSpec>> = BTreeMap::new();
    for &(client, ev) in history {
        let (key, res) = match ev {
            ClientEvent::Invoke(op) => {
                let t = testers
                    .entry(op.key)
                    .or_insert_with(|| LinearizabilityTester::new(KvSpec::default()));
                (op.key, t.on_invoke(client, op.op).map(|_| ()))
            }
            ClientEvent::Return(op, ret) => {
                let t = testers
                    .entry(op.key)
                    .or_insert_with(|| LinearizabilityTester::new(KvSpec::default()));
                (op.key, t.on_return(client, ret).map(|_| ()))
            }
        };
        if let Err(e) = res {
            return Err(Violation::new(
                PROPERTY,
                format!("key {key}: malformed history: {e}"),
            ));
        }
    }
    for (key, t) in &testers {
        if !t.is_consistent() {
            return Err(Violation::new(
                PROPERTY,
                format!(
                    "the history of key {key} ({} operations) is not linearizable",
                    t.len()
                ),
            ));
        }
    }
    Ok(())
}
