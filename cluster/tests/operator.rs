//! Cluster-wide operator actions (DESIGN §7) on the in-process test cluster: requested on any
//! member, forwarded to the leader, appended to the log and carried out by every member when
//! it applies the entry.

use tandem_cluster::codec::client::{Egress, EventCode, Ingress, egress_messages};
use tandem_cluster::codec::frame::EntryType;
use tandem_cluster::consensus::{
    Command, Input, LogPosition, LogStore, OperatorAction, OperatorDone, SessionId,
};
use tandem_cluster::testkit::{ServiceMode, TestCluster};

const MS: i64 = 1_000_000;

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

fn follower_of(c: &TestCluster, leader: u32) -> u32 {
    (leader + 1) % c.size()
}

/// Asks member `on` for `action` and runs until it reports completion.
fn operate(c: &mut TestCluster, on: u32, action: OperatorAction, id: u64) -> OperatorDone {
    c.input(on, Input::Operator { action, id });
    let mut done = None;
    for _ in 0..2000 {
        if let Some(d) = c.nodes[on as usize]
            .core
            .as_mut()
            .and_then(|core| core.take_operator_done())
        {
            done = Some(d);
            break;
        }
        c.tick();
    }
    let done = done.unwrap_or_else(|| panic!("{action} on member {on} never completed"));
    assert_eq!((done.action, done.id), (action, id));
    done
}

fn snapshot_positions(c: &TestCluster, i: u32) -> Vec<LogPosition> {
    c.nodes[i as usize]
        .snapshots
        .iter()
        .map(|s| s.position)
        .collect()
}

fn operator_entries(c: &TestCluster, i: u32) -> usize {
    let log = c.core(i).log();
    let (mut pos, _) = log.start();
    let mut n = 0;
    while let Some(f) = log.read(pos) {
        n += usize::from(f.header.entry_type == EntryType::OperatorAction);
        pos = pos.advance(f.len_aligned as u64);
    }
    n
}

fn busy_or_applied(c: &mut TestCluster, client: u64) -> (bool, bool) {
    let msgs = c.take_client(client);
    let mut busy = false;
    let mut reply = false;
    for m in &msgs {
        for msg in egress_messages(m).expect("valid egress") {
            match msg {
                Egress::SessionEvent {
                    code: EventCode::Busy,
                    ..
                } => busy = true,
                Egress::Reply { .. } => reply = true,
                _ => {}
            }
        }
    }
    (busy, reply)
}

fn a_snapshot_requested_on_a_follower_is_taken_by_every_member_at_the_same_position(
    mode: ServiceMode,
) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(100);
    send(&mut c, 100, leader, s, 1, b"before");
    c.run_for(50 * MS);
    let f = follower_of(&c, leader);
    let done = operate(&mut c, f, OperatorAction::Snapshot, 7);
    // The origin reports after its snapshot is taken, with the snapshot's position.
    assert_eq!(snapshot_positions(&c, f), vec![done.position]);
    c.run_for(50 * MS);
    for i in 0..3 {
        assert_eq!(
            snapshot_positions(&c, i),
            vec![done.position],
            "member {i} snapshots at the entry"
        );
        assert_eq!(operator_entries(&c, i), 1, "appended once");
        assert!(!c.core(i).is_closed());
    }
    // Only the origin reports.
    for i in 0..3 {
        let core = c.nodes[i as usize].core.as_mut().unwrap();
        assert_eq!(core.take_operator_done(), None);
        assert_eq!(core.pending_operator(), None);
    }
    // The snapshot holds what was applied before it, and the cluster goes on.
    send(&mut c, 100, leader, s, 2, b"after");
    c.run_for(50 * MS);
    for i in 0..3 {
        assert_eq!(c.service(i).applied.len(), 2);
    }
    c.check_consistency();
}

fn a_request_made_before_a_leader_is_known_is_forwarded_once_one_is(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let f = follower_of(&c, leader);
    // Cut the follower off: it loses the leader and cannot reach anyone.
    c.partition(&[f]);
    c.run_for(400 * MS);
    c.input(
        f,
        Input::Operator {
            action: OperatorAction::Snapshot,
            id: 1,
        },
    );
    c.run_for(300 * MS);
    assert!(c.nodes[f as usize].snapshots.is_empty());
    assert_eq!(
        c.core(f).pending_operator(),
        Some((OperatorAction::Snapshot, 1))
    );
    c.heal();
    let mut done = None;
    assert!(c.run_until(3_000 * MS, |c| c.core(f).pending_operator().is_none()));
    if let Some(d) = c.nodes[f as usize]
        .core
        .as_mut()
        .unwrap()
        .take_operator_done()
    {
        done = Some(d);
    }
    let done = done.expect("completed after the partition healed");
    c.run_for(50 * MS);
    for i in 0..3 {
        assert_eq!(snapshot_positions(&c, i), vec![done.position]);
    }
}

fn suspend_holds_new_client_messages_until_resume(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(100);
    send(&mut c, 100, leader, s, 1, b"one");
    c.run_for(20 * MS);
    assert_eq!(busy_or_applied(&mut c, 100), (false, true));
    let f = follower_of(&c, leader);

    operate(&mut c, f, OperatorAction::Suspend, 1);
    c.run_for(20 * MS);
    for i in 0..3 {
        assert!(c.core(i).module_state().is_suspended());
        assert!(c.core(i).is_suspended());
    }
    // New messages and connects are refused with `Busy` and never reach the log.
    send(&mut c, 100, leader, s, 2, b"two");
    c.client_send(
        101,
        leader,
        Ingress::Connect {
            correlation_id: 5,
            credentials: b"",
        },
    );
    c.run_for(100 * MS);
    assert_eq!(busy_or_applied(&mut c, 100), (true, false));
    assert_eq!(busy_or_applied(&mut c, 101), (true, false));
    let end = c.core(leader).log_end();
    c.run_for(100 * MS);
    assert_eq!(
        c.core(leader).log_end(),
        end,
        "nothing appended while suspended"
    );
    for i in 0..3 {
        assert_eq!(c.service(i).applied.len(), 1);
    }
    // Keep-alives are still answered.
    c.client_send(100, leader, Ingress::KeepAlive { session: s });
    let acked = c.take_client(100).iter().any(|m| {
        matches!(
            Egress::decode(m),
            Ok(Egress::Ack {
                committed_seq: 1,
                ..
            })
        )
    });
    assert!(acked);

    // Resume (from the leader this time); the client's retry goes through.
    operate(&mut c, leader, OperatorAction::Resume, 2);
    send(&mut c, 100, leader, s, 2, b"two");
    c.run_for(50 * MS);
    assert_eq!(busy_or_applied(&mut c, 100), (false, true));
    for i in 0..3 {
        assert!(!c.core(i).module_state().is_suspended());
        assert_eq!(c.service(i).applied.len(), 2);
    }
    c.check_consistency();
}

fn timers_wait_while_suspended_and_a_new_leader_stays_suspended(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(100);
    // Schedule timer 9 at +100 ms.
    let mut msg = vec![b'T'];
    msg.extend_from_slice(&9u64.to_le_bytes());
    msg.extend_from_slice(&(100 * MS).to_le_bytes());
    send(&mut c, 100, leader, s, 1, &msg);
    c.run_for(10 * MS);
    operate(&mut c, leader, OperatorAction::Suspend, 1);
    c.run_for(300 * MS);
    assert!(
        c.service(leader).timers_fired.is_empty(),
        "no timer while suspended"
    );

    // The leader fails; the new one is still suspended (replicated state).
    c.crash(leader);
    let next = c.await_leader();
    assert_ne!(next, leader);
    assert!(c.core(next).is_suspended());
    send(&mut c, 100, next, s, 2, b"two");
    c.run_for(50 * MS);
    assert!(busy_or_applied(&mut c, 100).0);
    assert!(c.service(next).timers_fired.is_empty());

    c.restart(leader);
    operate(&mut c, leader, OperatorAction::Resume, 2);
    c.run_for(100 * MS);
    for i in 0..3 {
        assert_eq!(
            c.service(i).timers_fired.len(),
            1,
            "member {i}: fires after resume"
        );
        assert!(!c.core(i).is_suspended());
    }
    c.check_consistency();
}

fn terminated_after_snapshot(c: &TestCluster, i: u32) -> bool {
    let events = &c.nodes[i as usize].events;
    let snap = events
        .iter()
        .position(|e| matches!(e, Command::SnapshotTaken { .. }));
    let term = events.iter().position(|e| matches!(e, Command::Terminated));
    matches!((snap, term), (Some(s), Some(t)) if s < t)
}

fn shutdown_on_a_follower_snapshots_then_terminates_every_member(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let s = c.connect(100);
    send(&mut c, 100, leader, s, 1, b"one");
    c.run_for(20 * MS);
    let f = follower_of(&c, leader);
    let done = operate(&mut c, f, OperatorAction::Shutdown, 3);
    let t0 = c.now_ns;
    assert!(c.run_until(1_000 * MS, |c| (0..3).all(|i| c.core(i).is_closed())));
    // The leader terminated on the others' acknowledgements, before its deadline (an
    // election timeout, 100 ms here).
    assert!(c.now_ns - t0 < 100 * MS);
    for i in 0..3 {
        assert_eq!(snapshot_positions(&c, i), vec![done.position], "member {i}");
        assert!(
            terminated_after_snapshot(&c, i),
            "member {i}: snapshot, then terminated"
        );
    }

    // The whole cluster restarts from the snapshots and does not shut down again.
    for i in 0..3 {
        c.crash(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    let leader = c.await_leader();
    c.run_for(300 * MS);
    for i in 0..3 {
        assert!(!c.core(i).is_closed(), "member {i} runs after the restart");
        assert!(c.service(i).from_snapshot);
        assert_eq!(c.service(i).applied.len(), 1);
    }
    let s2 = c.connect(200);
    send(&mut c, 200, leader, s2, 1, b"again");
    c.run_for(50 * MS);
    for i in 0..3 {
        assert_eq!(c.service(i).applied.len(), 2);
    }
}

fn abort_terminates_every_member_without_a_snapshot_and_a_restart_does_not_abort_again(
    mode: ServiceMode,
) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let f = follower_of(&c, leader);
    operate(&mut c, f, OperatorAction::Abort, 4);
    assert!(c.run_until(1_000 * MS, |c| (0..3).all(|i| c.core(i).is_closed())));
    for i in 0..3 {
        assert!(c.nodes[i as usize].snapshots.is_empty(), "member {i}");
        assert!(
            c.nodes[i as usize]
                .events
                .iter()
                .any(|e| matches!(e, Command::Terminated))
        );
    }
    // Restarted, every member replays or re-applies the abort entry, and ignores it.
    for i in 0..3 {
        c.crash(i);
    }
    for i in 0..3 {
        c.restart(i);
    }
    c.await_leader();
    c.run_for(500 * MS);
    for i in 0..3 {
        assert!(!c.core(i).is_closed(), "member {i} runs after the restart");
    }
}

fn a_repeated_request_is_appended_once_per_leader_term(mode: ServiceMode) {
    let mut c = TestCluster::in_mode(3, mode);
    let leader = c.await_leader();
    let f = follower_of(&c, leader);
    // The leader hears the follower's request, but the follower is cut off before the entry
    // reaches it, so it repeats the request every election timeout.
    c.input(
        f,
        Input::Operator {
            action: OperatorAction::Suspend,
            id: 11,
        },
    );
    c.blocked.insert((leader, f));
    c.run_for(350 * MS);
    c.heal();
    assert!(c.run_until(1_000 * MS, |c| c.core(f).pending_operator().is_none()));
    c.run_for(50 * MS);
    if c.leader() == Some(leader) {
        assert_eq!(operator_entries(&c, leader), 1);
    }
    for i in 0..3 {
        assert!(c.core(i).module_state().is_suspended());
    }
}

tandem_cluster::in_both_service_modes!(
    a_snapshot_requested_on_a_follower_is_taken_by_every_member_at_the_same_position,
    a_request_made_before_a_leader_is_known_is_forwarded_once_one_is,
    suspend_holds_new_client_messages_until_resume,
    timers_wait_while_suspended_and_a_new_leader_stays_suspended,
    shutdown_on_a_follower_snapshots_then_terminates_every_member,
    abort_terminates_every_member_without_a_snapshot_and_a_restart_does_not_abort_again,
    a_repeated_request_is_appended_once_per_leader_term,
);
