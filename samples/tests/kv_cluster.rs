//! The key-value store replicated on 3 members: replies match a sequential model (each client
//! owns its keys), and every member ends with the same state through a failover and a snapshot.

mod common;

use std::collections::BTreeMap;

use common::{Harness, ServiceMode, Sessions, harness};
use tandem_samples::kv::{KvReply, KvRequest, KvStore};

fn replicated_kv_matches_the_model(mode: ServiceMode) {
    let mut h = harness(3, KvStore::default, mode);
    let mut clients: Vec<_> = (1..=2).map(|a| h.open_client(a)).collect();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut expected: Vec<Vec<KvReply>> = vec![Vec::new(), Vec::new()];
    let mut step = |h: &mut Harness<KvStore>, clients: &mut Vec<common::Client>, i: u64| {
        for (ci, c) in clients.iter_mut().enumerate() {
            let key = format!("c{ci}-k{}", i % 7).into_bytes();
            let value = format!("v{i}").into_bytes();
            let current = model.get(&key).cloned();
            let (req, reply) = match i % 4 {
                0 => {
                    model.insert(key.clone(), value.clone());
                    (
                        KvRequest::Set { key, value },
                        KvReply::Stored { previous: current },
                    )
                }
                1 => (KvRequest::Get { key }, KvReply::Value { value: current }),
                2 => {
                    // Against the true current value a compare-and-set always succeeds.
                    model.insert(key.clone(), value.clone());
                    let new = Some(value.clone());
                    (
                        KvRequest::CompareAndSet {
                            key,
                            expected: current,
                            new,
                        },
                        KvReply::Swapped {
                            success: true,
                            current: Some(value),
                        },
                    )
                }
                _ => {
                    model.remove(&key);
                    (
                        KvRequest::Delete { key },
                        KvReply::Deleted { previous: current },
                    )
                }
            };
            expected[ci].push(reply);
            h.send(c, &req.encode());
        }
        h.flush();
        h.tick();
    };
    for i in 0..40 {
        step(&mut h, &mut clients, i);
    }
    h.await_acked(&mut clients);
    h.snapshot();
    for i in 40..60 {
        step(&mut h, &mut clients, i);
    }
    let old = h.await_leader();
    h.crash(old);
    for c in clients.iter_mut() {
        h.reattach(c);
    }
    for i in 60..100 {
        step(&mut h, &mut clients, i);
    }
    h.await_acked(&mut clients);
    h.restart(old);
    let agreed = h.assert_same_state(KvStore::state_hash);
    for (ci, c) in clients.iter_mut().enumerate() {
        h.poll(c);
        let got: Vec<KvReply> = c
            .replies
            .iter()
            .map(|(_, b)| KvReply::decode(b).unwrap())
            .collect();
        assert_eq!(got, expected[ci], "client {ci}");
    }
    assert!(!h.service(old).is_empty());
    assert_eq!(h.service(old).state_hash(), agreed);
}

tandem_cluster::in_both_service_modes!(replicated_kv_matches_the_model);
