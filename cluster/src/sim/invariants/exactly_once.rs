//! Invariant 7: no acknowledged client message is lost or applied twice.
//!
//! *Twice*: the key-value service itself checks that each session's messages arrive with
//! consecutive sequence numbers (checked after every step, on every member). *Lost*: at the
//! end, after the quiet phase, every sequence a client got a reply for has been applied on
//! every member.

use std::collections::BTreeMap;

use crate::sim::invariants::{Check, Violation};
use crate::sim::kv::KvService;

/// Property name.
pub const PROPERTY: &str = "exactly-once";

/// After a step: anything the service on member `i` saw applied twice or out of order.
pub fn check_service(i: usize, service: &mut KvService) -> Check {
    match service.violations.pop() {
        Some(v) => Err(Violation::new(PROPERTY, format!("member {i}: {v}"))),
        None => Ok(()),
    }
}

/// At the end: each (session, acknowledged sequence) must be applied on member `i`.
pub fn check_acknowledged(i: usize, service: &KvService, acked: &BTreeMap<u64, u64>) -> Check {
    for (&session, &seq) in acked {
        let applied = service.last_seq.get(&session).copied().unwrap_or(0);
        if applied < seq {
            return Err(Violation::new(
                PROPERTY,
                format!(
                    "member {i}: session {session} was acknowledged up to sequence {seq} but only \
                     {applied} is applied (acknowledged message lost)"
                ),
            ));
        }
    }
    Ok(())
}
