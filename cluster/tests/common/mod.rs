//! Shared by the chaos and bug tests: randomised runs of the test cluster with a lossy, duplicating, reordering network, crashes,
//! restarts, wipes, partitions, snapshots and purges. After healing, every member must hold
//! the same committed log and every service must have applied each client message exactly
//! once, in order.

use std::collections::BTreeMap;

use tandem_cluster::codec::client::{Egress, Ingress, egress_messages};
use tandem_cluster::consensus::rng::SplitMix64;
use tandem_cluster::consensus::{Config, Input, MemberId, SessionId};
use tandem_cluster::testkit::{Chaos, TestCluster};

struct Client {
    rng: SplitMix64,
    addr: u64,
    session: SessionId,
    next_seq: u64,
    acked: u64,
    leader: u32,
    replies: BTreeMap<u64, Vec<u8>>,
}

impl Client {
    fn poll(&mut self, c: &mut TestCluster) {
        for m in c.take_client(self.addr) {
            if self.rng.below(10) == 0 {
                continue; // lost on the way to the client
            }
            for msg in egress_messages(&m).expect("valid egress") {
                match msg {
                    Egress::Reply {
                        committed_seq,
                        request_seq,
                        payload,
                        ..
                    } => {
                        self.acked = self.acked.max(committed_seq);
                        let prev = self.replies.insert(request_seq, payload.to_vec());
                        if let Some(prev) = prev {
                            assert_eq!(prev, payload, "a retried request got a different reply");
                        }
                    }
                    Egress::Ack { committed_seq, .. } => self.acked = self.acked.max(committed_seq),
                    Egress::SessionEvent {
                        leader: Some(l), ..
                    } => self.leader = l.0,
                    Egress::NewLeader { leader, .. } => self.leader = leader.0,
                    _ => {}
                }
            }
        }
    }

    fn send(&mut self, c: &mut TestCluster, seq: u64) {
        if !c.is_up(self.leader) {
            self.leader = (self.leader + 1) % c.size();
            return;
        }
        if self.rng.below(10) == 0 {
            return; // lost on the way to the cluster
        }
        let payload = format!("msg-{seq}");
        c.client_send(
            self.addr,
            self.leader,
            Ingress::Message {
                session: self.session,
                sequence: seq,
                payload: payload.as_bytes(),
            },
        );
    }

    fn resend_unacked(&mut self, c: &mut TestCluster) {
        let stale =
            !c.is_up(self.leader) || c.core(self.leader).role() != tandem_service_api::Role::Leader;
        if let Some(l) = c.leader().filter(|_| stale) {
            self.leader = l;
        }
        for seq in self.acked + 1..self.next_seq {
            self.send(c, seq);
        }
    }
}

/// One randomised run with `seed`; members configured by `config`.
///
/// # Panics
/// When a check fails (two leaders in a term, diverging logs or services, a message applied
/// twice or lost).
pub fn run(seed: u64, config: fn(MemberId, u32) -> Config) {
    let n = if seed.is_multiple_of(3) { 5 } else { 3 };
    let mut c = TestCluster::with_config(n, config);
    // Odd seeds: durability at the next tick, and crashes lose what was not durable.
    c.lazy_fsync = !seed.is_multiple_of(2);
    let leader = c.await_leader();
    let session = c.connect(100);
    // A long session timeout is not configurable per test; keep the client chatty instead.
    let mut client = Client {
        rng: SplitMix64::new(seed ^ 0x5EED),
        addr: 100,
        session,
        next_seq: 1,
        acked: 0,
        leader,
        replies: BTreeMap::new(),
    };
    let mut rng = SplitMix64::new(seed);
    c.chaos = Some(Chaos {
        rng: SplitMix64::new(seed ^ 0xABCD),
        drop_per_mille: 20 + seed % 200,
        dup_per_mille: 30 + seed % 70,
        reorder_per_mille: 50 + seed % 150,
        delay_per_mille: seed % 40,
        max_delay_ns: 300_000_000,
    });
    let mut down: Option<u32> = None;
    for step in 0..3000u32 {
        // Client traffic.
        if rng.below(3) == 0 && client.next_seq - client.acked < 50 {
            let seq = client.next_seq;
            client.next_seq += 1;
            client.send(&mut c, seq);
        }
        if step % 25 == 0 {
            client.resend_unacked(&mut c);
            if c.is_up(client.leader) {
                c.client_send(client.addr, client.leader, Ingress::KeepAlive { session });
            }
        }
        // Faults.
        match rng.below(1000) {
            0..=4 if down.is_none() => {
                let victim = rng.below(u64::from(n)) as u32;
                c.crash(victim);
                down = Some(victim);
            }
            // Wipe one member at a time, and only while every other is a voter (wiping more
            // than a minority before they catch up loses data by definition).
            5..=6 if down.is_none() && (0..n).all(|i| !c.core(i).is_learner()) => {
                let victim = rng.below(u64::from(n)) as u32;
                c.wipe_and_restart(victim);
            }
            7..=14 if down.is_some() => {
                let v = down.take().expect("down");
                c.restart(v);
            }
            15..=17 => {
                let victim = rng.below(u64::from(n)) as u32;
                c.partition(&[victim]);
            }
            18..=30 => c.heal(),
            31..=33 => {
                if let Some(l) = c.leader() {
                    c.input(l, Input::TakeSnapshot);
                }
            }
            34..=36 => {
                for i in 0..n {
                    let snap = c.is_up(i).then(|| c.core(i).latest_snapshot()).flatten();
                    if let Some(p) = snap.map(|s| s.position) {
                        c.input(i, Input::Purge { position: p });
                    }
                }
            }
            _ => {}
        }
        c.flush();
        c.tick();
        client.poll(&mut c);
    }
    // Heal everything and let the client finish.
    c.chaos = None;
    c.heal();
    if let Some(v) = down.take() {
        c.restart(v);
    }
    for _ in 0..200 {
        c.run_for(10_000_000);
        client.resend_unacked(&mut c);
        c.flush();
        client.poll(&mut c);
        if client.acked + 1 == client.next_seq {
            break;
        }
    }
    c.run_for(300_000_000);
    client.poll(&mut c);
    if client.acked + 1 != client.next_seq {
        for i in 0..n {
            eprintln!(
                "{:?} sessions={:?} svc_closed={:?} applied={}",
                c.core(i),
                c.core(i)
                    .module_state()
                    .sessions()
                    .keys()
                    .collect::<Vec<_>>(),
                c.service(i).closed,
                c.service(i).applied.len()
            );
        }
        eprintln!(
            "client leader {} acked {} next {}",
            client.leader, client.acked, client.next_seq
        );
    }
    assert_eq!(
        client.acked + 1,
        client.next_seq,
        "seed {seed}: every message acknowledged"
    );
    c.check_consistency();
    let sent = client.next_seq - 1;
    for i in 0..n {
        let seqs: Vec<u64> = c
            .service(i)
            .applied
            .iter()
            .filter(|a| a.0 == session.0)
            .map(|a| a.1)
            .collect();
        assert_eq!(
            seqs,
            (1..=sent).collect::<Vec<_>>(),
            "seed {seed}, member {i}: exactly once, in order"
        );
    }
    for (seq, reply) in &client.replies {
        assert_eq!(reply, format!("re:msg-{seq}").as_bytes());
    }
}
