//! Session limits on the in-process test cluster (sans-IO, deterministic): a connect beyond
//! `max_sessions` is refused with its reason (also when the connects race), a session named
//! from another address is refused and left untouched, and a client that stops acknowledging
//! its egress is closed through the log with `SlowConsumer` on every member alike.

use tandem_cluster::codec::client::{
    Egress, EventCode, Ingress, RejectCode, begin_batch, egress_messages, push_batch_message,
    set_batch_ack,
};
use tandem_cluster::consensus::{Config, MemberId, SessionId};
use tandem_cluster::testkit::{TestCluster, test_config};
use tandem_service_api::CloseReason;

fn limited(id: MemberId, n: u32) -> Config {
    let mut c = test_config(id, n);
    c.max_sessions = 3;
    c.max_unacked_egress = 8;
    c
}

fn events(c: &mut TestCluster, client: u64) -> Vec<(EventCode, SessionId, u64)> {
    c.take_client(client)
        .iter()
        .filter_map(|b| match Egress::decode(b) {
            Ok(Egress::SessionEvent {
                code,
                session,
                value,
                ..
            }) => Some((code, session, value)),
            _ => None,
        })
        .collect()
}

#[test]
fn connects_beyond_the_maximum_are_refused_with_the_reason_even_when_they_race() {
    let mut c = TestCluster::with_config(3, limited);
    let leader = c.await_leader();
    // Six connects arrive before any is applied: three open, three are refused.
    for client in 10..16u64 {
        c.client_send(
            client,
            leader,
            Ingress::Connect {
                correlation_id: client,
                credentials: b"",
            },
        );
    }
    c.flush();
    c.run_for(50_000_000);
    let mut opened = 0;
    let mut refused = 0;
    for client in 10..16u64 {
        match events(&mut c, client).as_slice() {
            [(EventCode::Ok, s, _)] if s.0 != 0 => opened += 1,
            [(EventCode::Rejected, _, v)] => {
                assert_eq!(RejectCode::from_code(*v), RejectCode::TooManySessions);
                refused += 1;
            }
            other => panic!("client {client}: {other:?}"),
        }
    }
    assert_eq!((opened, refused), (3, 3));
    for i in 0..3 {
        assert_eq!(c.core(i).module_state().sessions().len(), 3);
    }
    assert_eq!(c.core(leader).counters().sessions_rejected, 3);
    // A repeated connect of an open session gets it back, even at the cap.
    c.client_send(
        10,
        leader,
        Ingress::Connect {
            correlation_id: 10,
            credentials: b"",
        },
    );
    assert!(matches!(events(&mut c, 10).as_slice(), [(EventCode::Ok, s, _)] if s.0 != 0));
    c.check_consistency();
}

#[test]
fn a_session_named_from_another_address_is_refused_and_untouched() {
    let mut c = TestCluster::with_config(3, limited);
    let leader = c.await_leader();
    let s = c.connect(1);
    for msg in [
        Ingress::Message {
            session: s,
            sequence: 1,
            payload: b"evil",
        },
        Ingress::Attach {
            session: s,
            last_egress_seq: 0,
        },
        Ingress::KeepAlive { session: s },
        Ingress::Close { session: s },
    ] {
        c.client_send(9, leader, msg);
    }
    c.flush();
    c.run_for(50_000_000);
    let got = events(&mut c, 9);
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|e| e.0 == EventCode::UnknownSession));
    assert_eq!(c.core(leader).counters().ingress_not_owned, 4);
    // The owner still has its session, nothing of the outsider's was applied, and its own
    // first message is sequence 1.
    c.client_send(
        1,
        leader,
        Ingress::Message {
            session: s,
            sequence: 1,
            payload: b"mine",
        },
    );
    c.flush();
    c.run_for(50_000_000);
    for i in 0..3 {
        assert_eq!(c.service(i).applied, vec![(s.0, 1, b"mine".to_vec())]);
        assert!(c.service(i).closed.is_empty());
    }
}

/// A batch of `msgs` from sequence `first`, acknowledging egress up to `acked`.
fn batch(c: &mut TestCluster, client: u64, to: u32, s: SessionId, first: u64, acked: u64) {
    let mut b = Vec::new();
    begin_batch(&mut b, s, first);
    push_batch_message(&mut b, b"x");
    push_batch_message(&mut b, b"y");
    set_batch_ack(&mut b, acked);
    let msg = Ingress::decode(&b).expect("valid batch");
    c.client_send(client, to, msg);
}

#[test]
fn a_client_that_stops_acknowledging_egress_is_closed_on_every_member() {
    let mut c = TestCluster::with_config(3, limited);
    let leader = c.await_leader();
    let slow = c.connect(1);
    let reader = c.connect(2);
    let mut reader_acked = 0u64;
    for round in 0..10u64 {
        // Both send two messages a round (two replies each); only the reader acknowledges.
        batch(&mut c, 1, leader, slow, 2 * round + 1, 0);
        batch(&mut c, 2, leader, reader, 2 * round + 1, reader_acked);
        c.flush();
        c.run_for(20_000_000);
        for b in c.take_client(2) {
            for msg in egress_messages(&b).expect("valid egress") {
                if let Egress::Reply { egress_seq, .. } = msg
                    && egress_seq == reader_acked + 1
                {
                    reader_acked = egress_seq;
                }
            }
        }
    }
    assert_eq!(reader_acked, 20, "the reader got every reply");
    for i in 0..3 {
        assert_eq!(
            c.service(i).closed,
            vec![(slow.0, CloseReason::SlowConsumer)],
            "member {i}"
        );
        let sessions = c.core(i).module_state().sessions();
        assert!(sessions.contains_key(&reader) && !sessions.contains_key(&slow));
    }
    assert_eq!(c.core(leader).counters().sessions_disconnected_slow, 1);
    // The slow session's messages stopped once its close was appended: 8 replies allowed,
    // the 9th and 10th went out with the close.
    let slow_applied = c
        .service(leader)
        .applied
        .iter()
        .filter(|a| a.0 == slow.0)
        .count();
    assert!((9..=10).contains(&slow_applied), "{slow_applied}");
    c.check_consistency();
}
