//! The matching engine replicated on 3 members: a mixed workload with a snapshot, a leader
//! failover, a restart and a wiped member catching up from a snapshot; every member ends with
//! the same state hash and every request is answered exactly once.

mod common;

use common::{Client, Harness, ServiceMode, Sessions, harness};
use tandem_samples::matching::{Event, MatchingEngine, NewOrderRequest, OrderKind, Request, Side};

fn engine() -> MatchingEngine {
    MatchingEngine::new(3, 10_000)
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn request(rng: &mut Rng, cloid: u64) -> Request {
    let instrument = rng.below(4) as u32; // 3 is unknown: rejected
    match rng.below(10) {
        0 => Request::Cancel {
            instrument,
            order_id: 1 + rng.below(cloid + 1),
        },
        1 => Request::Modify {
            instrument,
            order_id: 1 + rng.below(cloid + 1),
            price: 95 + rng.below(10) as i64,
            quantity: rng.below(8),
        },
        _ => {
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let kind = match rng.below(10) {
                0 => OrderKind::Market,
                1 => OrderKind::ImmediateOrCancel,
                2 => OrderKind::PostOnly,
                _ => OrderKind::Limit,
            };
            Request::New(NewOrderRequest {
                instrument,
                client_order_id: cloid,
                side,
                kind,
                price: 90 + rng.below(20) as i64 - i64::from(rng.below(30) == 0) * 200,
                quantity: rng.below(10),
            })
        }
    }
}

fn burst(
    h: &mut Harness<MatchingEngine>,
    clients: &mut [Client],
    rng: &mut Rng,
    cloid: &mut u64,
    n: usize,
) {
    for _ in 0..n {
        for c in clients.iter_mut() {
            *cloid += 1;
            let payload = request(rng, *cloid).encode();
            h.send(c, &payload);
        }
        h.flush();
        h.tick();
    }
}

fn hash(e: &MatchingEngine) -> u32 {
    e.check_invariants();
    e.state_hash()
}

fn three_members_agree_through_failover_snapshot_and_catch_up(mode: ServiceMode) {
    let mut h = harness(3, engine, mode);
    let mut clients: Vec<Client> = (1..=3).map(|a| h.open_client(a)).collect();
    let (mut rng, mut cloid) = (Rng(0x1234_5678), 0);

    burst(&mut h, &mut clients, &mut rng, &mut cloid, 60);
    h.await_acked(&mut clients);
    h.assert_same_state(hash);

    let snap_at = h.snapshot();
    burst(&mut h, &mut clients, &mut rng, &mut cloid, 30);

    // Kill the leader with messages in flight; clients re-attach to the new one and resend.
    let old = h.await_leader();
    h.crash(old);
    let new = h.await_leader();
    assert_ne!(old, new);
    for c in clients.iter_mut() {
        h.reattach(c);
    }
    burst(&mut h, &mut clients, &mut rng, &mut cloid, 30);
    h.await_acked(&mut clients);
    h.assert_same_state(hash);

    // The old leader restarts from its snapshot and log, and catches up.
    h.restart(old);
    burst(&mut h, &mut clients, &mut rng, &mut cloid, 20);
    h.await_acked(&mut clients);
    let agreed = h.assert_same_state(hash);
    assert!(
        h.service(0).open_orders() > 0,
        "the workload leaves orders resting"
    );

    // A member whose directory is wiped catches up from a snapshot after the log was purged.
    let snap2 = h.snapshot();
    assert!(snap2 > snap_at);
    h.purge(snap2);
    let wiped = (h.await_leader() + 1) % 3;
    h.wipe_and_restart(wiped);
    assert_eq!(h.assert_same_state(hash), agreed);
    burst(&mut h, &mut clients, &mut rng, &mut cloid, 10);
    h.await_acked(&mut clients);
    h.assert_same_state(hash);
    assert!(h.nodes[wiped as usize].app.app().expect("started").starts() >= 1);

    // Every request was answered on its session, exactly once per request (the first reply to
    // each request is Accepted, Rejected, Modified or Cancelled).
    for c in clients.iter_mut() {
        h.poll(c);
        let mut firsts = std::collections::BTreeMap::new();
        for (seq, bytes) in &c.replies {
            let event = Event::decode(bytes).expect("valid event");
            if *seq != 0 {
                firsts.entry(*seq).or_insert(event);
            }
        }
        let sent = (cloid / 3) as usize;
        assert_eq!(
            firsts.len(),
            sent,
            "client {} got answers to every request",
            c.addr
        );
        for e in firsts.values() {
            assert!(
                matches!(
                    e,
                    Event::Accepted { .. }
                        | Event::Rejected { .. }
                        | Event::Modified { .. }
                        | Event::Cancelled { .. }
                ),
                "{e:?}"
            );
        }
    }
}

tandem_cluster::in_both_service_modes!(three_members_agree_through_failover_snapshot_and_catch_up);
