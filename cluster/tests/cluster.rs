//! End-to-end behaviour of the core and the container on the in-process test cluster.

use tandem_cluster::codec::client::{Egress, EventCode, Ingress, egress_messages};
use tandem_cluster::consensus::{
    Command, ElectionState, Input, LogPosition, LogStore, MemberId, SessionId,
};
use tandem_cluster::testkit::{ServiceMode, TestCluster};
use tandem_service_api::{CloseReason, Role};

fn decode_all(msgs: &[Vec<u8>]) -> Vec<Egress<'_>> {
    // A reply batch counts as its replies, one by one.
    msgs.iter()
        .flat_map(|m| egress_messages(m).expect("valid egress"))
        .collect()
}

fn send(c: &mut TestCluster, client: u64, to: u32, session: SessionId, seq: u64, payload: &[u8]) {
    c.client_send(
        client,
        to,
        Ingress::Message {
            session,
            sequence: seq,
            payload,
        },
    );
}

fn elects_exactly_one_leader_that_all_follow(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    c.run_for(500_000_000);
    assert_eq!(c.leader(), Some(leader), "a stable leader keeps leading");
    let term = c.core(leader).term();
    for i in 0..3 {
        assert_eq!(c.core(i).term(), term);
        assert_eq!(c.core(i).leader(), Some(MemberId(leader)));
        let want = if i == leader {
            Role::Leader
        } else {
            Role::Follower
        };
        assert_eq!(c.core(i).role(), want);
    }
    assert_eq!(c.core(leader).election_state(), ElectionState::LeaderReady);
    assert_eq!(
        c.core((leader + 1) % 3).election_state(),
        ElectionState::FollowerReady
    );
    assert_eq!(c.leaders_by_term.len(), 1);
    // Every member applied the new-leadership-term entry.
    for i in 0..3 {
        assert_eq!(c.service(i).terms, vec![term.0]);
    }
}

fn replicates_commits_and_applies_in_order_on_every_member(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    for seq in 1..=200u64 {
        send(&mut c, 1, leader, s, seq, format!("m{seq}").as_bytes());
    }
    c.flush();
    c.run_for(50_000_000);
    let commit = c.core(leader).commit_position();
    for i in 0..3 {
        assert_eq!(c.core(i).commit_position(), commit);
        assert_eq!(c.core(i).applied_position(), commit);
        let applied = &c.service(i).applied;
        assert_eq!(applied.len(), 200);
        for (k, (sess, seq, m)) in applied.iter().enumerate() {
            assert_eq!((*sess, *seq), (s.0, k as u64 + 1));
            assert_eq!(m, format!("m{}", k + 1).as_bytes());
        }
    }
    c.check_consistency();
    let replies = c.take_client(1);
    let replies = decode_all(&replies);
    let got: Vec<u64> = replies
        .iter()
        .filter_map(|e| match e {
            Egress::Reply { request_seq, .. } => Some(*request_seq),
            _ => None,
        })
        .collect();
    assert_eq!(got, (1..=200).collect::<Vec<_>>());
}

fn a_retried_message_is_applied_once_and_answered_from_the_cache(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    send(&mut c, 1, leader, s, 1, b"hello");
    c.flush();
    c.run_for(20_000_000);
    let first = c.take_client(1);
    let first = decode_all(&first);
    assert!(
        matches!(
            first[..],
            [Egress::Reply {
                egress_seq: 1,
                request_seq: 1,
                committed_seq: 1,
                payload: b"re:hello",
                ..
            }]
        ),
        "{first:?}"
    );
    // The client did not see the reply and retries: same answer, not applied again.
    send(&mut c, 1, leader, s, 1, b"hello");
    c.flush();
    c.run_for(20_000_000);
    let again = c.take_client(1);
    let again = decode_all(&again);
    assert_eq!(again, first);
    for i in 0..3 {
        assert_eq!(c.service(i).applied.len(), 1);
    }
    // A sequence from the future is refused clearly.
    send(&mut c, 1, leader, s, 5, b"later");
    let gap = c.take_client(1);
    assert!(matches!(
        decode_all(&gap)[..],
        [Egress::SessionEvent {
            code: EventCode::SequenceGap,
            value: 1,
            ..
        }]
    ));
    // A follower redirects.
    send(&mut c, 1, (leader + 1) % 3, s, 2, b"x");
    let redirect = c.take_client(1);
    assert!(matches!(
        decode_all(&redirect)[..],
        [Egress::SessionEvent { code: EventCode::Redirect, leader: Some(l), .. }] if l == MemberId(leader)
    ));
}

fn a_client_reattaches_to_its_session_after_failover(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let old = c.await_leader();
    let s = c.connect(1);
    for seq in 1..=3 {
        send(&mut c, 1, old, s, seq, b"before");
    }
    c.flush();
    c.run_for(20_000_000);
    c.take_client(1);
    c.crash(old);
    let new = c.await_leader();
    assert_ne!(new, old);
    let events = c.take_client(1);
    assert!(
        decode_all(&events)
            .iter()
            .any(|e| matches!(e, Egress::NewLeader { leader, .. } if *leader == MemberId(new))),
        "the new leader announces itself to the session"
    );
    c.client_send(
        1,
        new,
        Ingress::Attach {
            session: s,
            last_egress_seq: 2,
        },
    );
    let attach = c.take_client(1);
    let attach = decode_all(&attach);
    assert!(matches!(
        attach[0],
        Egress::SessionEvent {
            code: EventCode::Ok,
            value: 3,
            ..
        }
    ));
    assert!(
        matches!(
            attach[1],
            Egress::Reply {
                egress_seq: 3,
                request_seq: 3,
                ..
            }
        ),
        "{attach:?}"
    );
    // Re-sends 3 (unacknowledged from the client's view) and goes on with 4.
    send(&mut c, 1, new, s, 3, b"before");
    send(&mut c, 1, new, s, 4, b"after");
    c.flush();
    c.run_for(20_000_000);
    for i in (0..3).filter(|&i| i != old) {
        let seqs: Vec<u64> = c.service(i).applied.iter().map(|a| a.1).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4]);
    }
    c.restart(old);
    c.run_for(200_000_000);
    let seqs: Vec<u64> = c.service(old).applied.iter().map(|a| a.1).collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4],
        "the old leader catches up after restart"
    );
    c.check_consistency();
}

fn an_isolated_leader_truncates_its_uncommitted_suffix(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let old = c.await_leader();
    let s = c.connect(1);
    send(&mut c, 1, old, s, 1, b"committed");
    c.flush();
    c.run_for(20_000_000);
    c.partition(&[old]);
    for seq in 2..=5 {
        send(&mut c, 1, old, s, seq, b"lost");
    }
    c.flush();
    let old_end = c.core(old).log_end();
    let old_commit = c.core(old).commit_position();
    assert!(
        old_end > old_commit,
        "uncommitted suffix on the isolated leader"
    );
    assert!(c.run_until(1_000_000_000, |c| c.leader().is_some_and(|l| l != old)));
    let new = c.leader().expect("new leader");
    send(&mut c, 1, new, s, 2, b"kept");
    c.flush();
    c.run_for(20_000_000);
    c.heal();
    c.run_for(300_000_000);
    assert_eq!(c.core(old).role(), Role::Follower);
    let truncated = c.nodes[old as usize]
        .events
        .iter()
        .any(|e| matches!(e, Command::Truncated { position, .. } if *position >= old_commit));
    assert!(
        truncated,
        "the old leader truncated above its commit position"
    );
    for i in 0..3 {
        let msgs: Vec<&[u8]> = c
            .service(i)
            .applied
            .iter()
            .map(|a| a.2.as_slice())
            .collect();
        assert_eq!(msgs, vec![&b"committed"[..], b"kept"]);
        assert_eq!(c.core(i).log_end(), c.core(new).log_end());
    }
    c.check_consistency();
}

fn a_member_behind_the_log_start_installs_a_snapshot(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    let lagger = (leader + 1) % 3;
    c.crash(lagger);
    for seq in 1..=50 {
        send(&mut c, 1, leader, s, seq, b"data");
    }
    c.flush();
    c.run_for(20_000_000);
    c.input(leader, Input::TakeSnapshot);
    c.run_for(20_000_000);
    let snap = c
        .core(leader)
        .latest_snapshot()
        .expect("snapshot taken")
        .clone();
    let other = (0..3).find(|&i| i != leader && i != lagger).expect("third");
    assert_eq!(
        c.core(other).latest_snapshot().map(|s| s.position),
        Some(snap.position)
    );
    for i in [leader, other] {
        c.input(
            i,
            Input::Purge {
                position: snap.position,
            },
        );
        assert_eq!(c.core(i).log().start().0, snap.position);
    }
    send(&mut c, 1, leader, s, 51, b"after snapshot");
    c.flush();
    c.restart(lagger);
    c.run_for(300_000_000);
    let lag = c.core(lagger);
    assert_eq!(lag.counters().snapshots_installed, 1);
    assert_eq!(lag.log().start().0, snap.position);
    assert_eq!(lag.commit_position(), c.core(leader).commit_position());
    assert!(c.service(lagger).from_snapshot);
    assert_eq!(c.service(lagger).applied, c.service(leader).applied);
    assert_eq!(
        lag.module_state().sessions(),
        c.core(leader).module_state().sessions()
    );
    c.check_consistency();
}

fn timers_fire_through_the_log_once_everywhere_and_survive_snapshots(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    let timer = |id: u64, delay_ns: i64| {
        let mut m = vec![b'T'];
        m.extend_from_slice(&id.to_le_bytes());
        m.extend_from_slice(&delay_ns.to_le_bytes());
        m
    };
    send(&mut c, 1, leader, s, 1, &timer(7, 50_000_000));
    send(&mut c, 1, leader, s, 2, &timer(8, 50_000_000));
    send(&mut c, 1, leader, s, 3, &timer(8, 80_000_000)); // moves timer 8
    c.flush();
    c.run_for(5_000_000);
    c.input(leader, Input::TakeSnapshot);
    c.run_for(200_000_000);
    let fired = c.service(leader).timers_fired.clone();
    assert_eq!(fired.iter().map(|f| f.0).collect::<Vec<_>>(), vec![7, 8]);
    assert!(
        fired[1].1 - fired[0].1 >= 30_000_000,
        "timer 8 fired at its moved deadline"
    );
    for i in 0..3 {
        assert_eq!(
            c.service(i).timers_fired,
            fired,
            "same timers, same cluster time"
        );
        assert!(c.core(i).module_state().timers().is_empty());
    }
    // Timers restored from the snapshot (taken before they fired) fire after restart too,
    // without firing twice: restart a follower from its snapshot.
    let f = (leader + 1) % 3;
    let snap = c.core(f).latest_snapshot().expect("snapshot").clone();
    let parts = snap.parts();
    assert!(!parts.module.is_empty());
    c.crash(f);
    c.restart(f);
    c.run_for(100_000_000);
    assert_eq!(c.service(f).timers_fired, fired);
    c.check_consistency();
}

fn a_wiped_member_rejoins_as_a_learner_and_is_promoted(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    for seq in 1..=20 {
        send(&mut c, 1, leader, s, seq, b"x");
    }
    c.flush();
    c.run_for(20_000_000);
    let w = (leader + 2) % 3;
    c.wipe_and_restart(w);
    assert_eq!(c.core(w).role(), Role::Learner);
    assert!(c.core(w).is_learner());
    assert_eq!(c.core(w).election_state(), ElectionState::FollowerCatchup);
    c.run_for(300_000_000);
    let core = c.core(w);
    assert!(!core.is_learner());
    assert_eq!(core.role(), Role::Follower);
    assert_eq!(core.counters().promotions, 1);
    assert_eq!(
        core.voted_for(),
        Some(MemberId(w)),
        "no vote in the term it may have voted in"
    );
    assert_eq!(c.service(w).applied.len(), 20);
    c.check_consistency();
}

fn a_stopped_leader_hands_over_to_the_most_up_to_date_follower(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let old = c.await_leader();
    let term = c.core(old).term();
    c.input(old, Input::Stop);
    c.settle();
    assert!(c.core(old).is_closed());
    let new = c.await_leader();
    assert_ne!(new, old);
    assert_eq!(
        c.core(new).term(),
        term.next(),
        "one election, no pre-vote wait"
    );
}

fn a_silent_session_is_closed_through_the_log(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    c.run_for(1_200_000_000);
    for i in 0..3 {
        assert_eq!(c.service(i).closed, vec![(s.0, CloseReason::Timeout)]);
        assert!(c.core(i).module_state().sessions().is_empty());
    }
    let msgs = c.take_client(1);
    assert!(decode_all(&msgs).iter().any(|e| matches!(
        e,
        Egress::SessionEvent {
            code: EventCode::Closed,
            ..
        }
    )));
    let _ = leader;
}

fn keep_alives_keep_a_session_open_and_services_can_close_it(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    for _ in 0..15 {
        c.run_for(100_000_000);
        c.client_send(1, leader, Ingress::KeepAlive { session: s });
    }
    assert!(c.service(leader).closed.is_empty());
    send(&mut c, 1, leader, s, 1, b"C");
    c.flush();
    c.run_for(30_000_000);
    for i in 0..3 {
        assert_eq!(c.service(i).closed, vec![(s.0, CloseReason::ServiceAction)]);
    }
}

fn service_messages_are_delivered_once_through_the_log(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    send(&mut c, 1, leader, s, 1, b"Sping");
    c.flush();
    c.run_for(30_000_000);
    for i in 0..3 {
        let svc: Vec<&(u64, u64, Vec<u8>)> =
            c.service(i).applied.iter().filter(|a| a.0 == 0).collect();
        assert_eq!(svc.len(), 1);
        assert_eq!(svc[0].2, b"ping");
        assert_eq!(
            c.core(i).module_state().pending_service_messages().count(),
            0
        );
    }
}

fn recovery_replays_up_to_the_commit_lower_bound_only(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(1);
    for seq in 1..=10 {
        send(&mut c, 1, leader, s, seq, b"x");
    }
    c.flush();
    c.run_for(200_000_000);
    let f = (leader + 1) % 3;
    let bound = c.nodes[f as usize]
        .node_state
        .expect("state")
        .commit_lower_bound;
    assert!(bound > LogPosition(0));
    c.partition(&[f]);
    c.crash(f);
    c.restart(f);
    assert!(c.core(f).applied_position() <= bound);
    assert_eq!(c.core(f).applied_position(), bound.min(c.core(f).log_end()));
    c.heal();
    c.run_for(200_000_000);
    assert_eq!(c.service(f).applied.len(), 10);
}

tandem_cluster::in_both_service_modes!(
    elects_exactly_one_leader_that_all_follow,
    replicates_commits_and_applies_in_order_on_every_member,
    a_retried_message_is_applied_once_and_answered_from_the_cache,
    a_client_reattaches_to_its_session_after_failover,
    an_isolated_leader_truncates_its_uncommitted_suffix,
    a_member_behind_the_log_start_installs_a_snapshot,
    timers_fire_through_the_log_once_everywhere_and_survive_snapshots,
    a_wiped_member_rejoins_as_a_learner_and_is_promoted,
    a_stopped_leader_hands_over_to_the_most_up_to_date_follower,
    a_silent_session_is_closed_through_the_log,
    keep_alives_keep_a_session_open_and_services_can_close_it,
    service_messages_are_delivered_once_through_the_log,
    recovery_replays_up_to_the_commit_lower_bound_only,
);
