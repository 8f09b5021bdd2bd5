//! The samples' integration tests run their services on the test kit's in-process cluster
//! (`tandem_cluster::testkit::TestCluster`: the real consensus core and service container,
//! an in-memory network that delivers in order, storage durable at once, crash / restart /
//! wipe), with [`Sessions`]: a client that follows the leader across a failover and resends
//! what was not acknowledged, and state checks across members.

#![allow(dead_code)]

use std::collections::BTreeMap;

use tandem_cluster::codec::client::{Egress, EventCode, Ingress, egress_messages};
use tandem_cluster::consensus::{Config, Input, LogPosition, MemberId, SessionId};
use tandem_cluster::testkit::test_config;
pub use tandem_cluster::testkit::{ServiceMode, TestCluster};
use tandem_service_api::ClusteredService;

/// A cluster of members running `S`.
pub type Harness<S> = TestCluster<S>;

/// A 3- or 5-member cluster of `factory`'s services with [`patient_config`], the service
/// run in `mode` (in line, or split as in `dedicated` threading).
pub fn harness<S: ClusteredService>(n: u32, factory: fn() -> S, mode: ServiceMode) -> Harness<S> {
    TestCluster::with_service(n, factory, patient_config, mode)
}

/// A client: one session, its sequence numbers, what is not acknowledged yet, and the replies
/// received (each once, in egress order).
pub struct Client {
    pub addr: u64,
    pub session: SessionId,
    next_seq: u64,
    unacked: BTreeMap<u64, Vec<u8>>,
    last_egress_seq: u64,
    pub replies: Vec<(u64, Vec<u8>)>,
    pub closed: bool,
}

/// The testkit's configuration with a longer session timeout (10 s), so that quiet clients
/// stay connected.
pub fn patient_config(id: MemberId, n: u32) -> Config {
    let mut c = test_config(id, n);
    c.session_timeout_ns = 10_000_000_000;
    c
}

/// Sessions and checks on a [`Harness`].
pub trait Sessions<S: ClusteredService> {
    /// Opens a session for a client listening at `addr`.
    fn open_client(&mut self, addr: u64) -> Client;
    /// Sends `payload` on `client`'s session to the current leader (no waiting).
    fn send(&mut self, client: &mut Client, payload: &[u8]);
    /// Re-attaches `client` to the current leader and resends what it has not seen
    /// acknowledged.
    fn reattach(&mut self, client: &mut Client);
    /// Keeps `client`'s session alive.
    fn keep_alive(&mut self, client: &Client);
    /// Closes `client`'s session.
    fn close(&mut self, client: &Client);
    /// Moves what arrived for `client` into it.
    fn poll(&mut self, client: &mut Client);
    /// Ticks until every client has every message acknowledged.
    fn await_acked(&mut self, clients: &mut [Client]);
    /// Ticks until every up member has applied everything the leader committed.
    fn await_applied(&mut self);
    /// The leader takes a snapshot; waits until every up member stored one.
    fn snapshot(&mut self) -> LogPosition;
    /// Drops the log below `position` on every up member.
    fn purge(&mut self, position: LogPosition);
    /// The state hash of every up member, by `hash`.
    fn hashes(&self, hash: impl Fn(&S) -> u32) -> Vec<(u32, u32)>;
    /// Asserts that every up member holds the same state (by `hash`); returns it.
    fn assert_same_state(&mut self, hash: impl Fn(&S) -> u32) -> u32;
}

impl<S: ClusteredService> Sessions<S> for TestCluster<S> {
    /// Opens a session for a client listening at `addr`.
    fn open_client(&mut self, addr: u64) -> Client {
        let leader = self.await_leader();
        self.client_send(
            addr,
            leader,
            Ingress::Connect {
                correlation_id: addr,
                credentials: b"",
            },
        );
        self.flush();
        for _ in 0..2000 {
            for m in self
                .client_inbox
                .get_mut(&addr)
                .map(std::mem::take)
                .unwrap_or_default()
            {
                if let Ok(Egress::SessionEvent {
                    code: EventCode::Ok,
                    session,
                    correlation_id,
                    ..
                }) = Egress::decode(&m)
                    && correlation_id == addr
                {
                    return Client {
                        addr,
                        session,
                        next_seq: 1,
                        unacked: BTreeMap::new(),
                        last_egress_seq: 0,
                        replies: Vec::new(),
                        closed: false,
                    };
                }
            }
            self.tick();
        }
        panic!("session for client {addr} did not open");
    }

    /// Sends `payload` on `client`'s session to the current leader (no waiting).
    fn send(&mut self, client: &mut Client, payload: &[u8]) {
        let seq = client.next_seq;
        client.next_seq += 1;
        client.unacked.insert(seq, payload.to_vec());
        if let Some(leader) = self.leader() {
            self.client_send(
                client.addr,
                leader,
                Ingress::Message {
                    session: client.session,
                    sequence: seq,
                    payload,
                },
            );
        }
    }

    /// Re-attaches `client` to the current leader and resends what it has not seen
    /// acknowledged (duplicates are dropped by the cluster).
    fn reattach(&mut self, client: &mut Client) {
        let leader = self.await_leader();
        self.client_send(
            client.addr,
            leader,
            Ingress::Attach {
                session: client.session,
                last_egress_seq: client.last_egress_seq,
            },
        );
        let pending: Vec<(u64, Vec<u8>)> = client
            .unacked
            .iter()
            .map(|(s, p)| (*s, p.clone()))
            .collect();
        for (seq, payload) in pending {
            self.client_send(
                client.addr,
                leader,
                Ingress::Message {
                    session: client.session,
                    sequence: seq,
                    payload: &payload,
                },
            );
        }
    }

    /// Keeps `client`'s session alive.
    fn keep_alive(&mut self, client: &Client) {
        if let Some(leader) = self.leader() {
            self.client_send(
                client.addr,
                leader,
                Ingress::KeepAlive {
                    session: client.session,
                },
            );
        }
    }

    /// Closes `client`'s session.
    fn close(&mut self, client: &Client) {
        let leader = self.await_leader();
        self.client_send(
            client.addr,
            leader,
            Ingress::Close {
                session: client.session,
            },
        );
    }

    /// Moves what arrived for `client` into it: replies (once each), acknowledgements.
    fn poll(&mut self, client: &mut Client) {
        let msgs = self
            .client_inbox
            .get_mut(&client.addr)
            .map(std::mem::take)
            .unwrap_or_default();
        for m in msgs {
            for msg in egress_messages(&m).expect("valid egress") {
                match msg {
                    Egress::Reply {
                        egress_seq,
                        request_seq,
                        committed_seq,
                        payload,
                        ..
                    } => {
                        client.unacked.retain(|&s, _| s > committed_seq);
                        if egress_seq > client.last_egress_seq {
                            assert_eq!(egress_seq, client.last_egress_seq + 1, "reply gap");
                            client.last_egress_seq = egress_seq;
                            client.replies.push((request_seq, payload.to_vec()));
                        }
                    }
                    Egress::Ack { committed_seq, .. } => {
                        client.unacked.retain(|&s, _| s > committed_seq);
                    }
                    Egress::SessionEvent {
                        code: EventCode::Closed,
                        ..
                    } => client.closed = true,
                    _ => {}
                }
            }
        }
    }

    /// Ticks until every client has every message acknowledged.
    fn await_acked(&mut self, clients: &mut [Client]) {
        self.flush();
        for _ in 0..5000 {
            for c in clients.iter_mut() {
                self.poll(c);
            }
            if clients.iter().all(|c| c.unacked.is_empty()) {
                return;
            }
            self.tick();
        }
        panic!("messages not acknowledged within 5 s");
    }

    /// Ticks until every up member has applied everything the leader committed.
    fn await_applied(&mut self) {
        let ok = self.run_until(5_000_000_000, |h| {
            let Some(l) = h.leader() else { return false };
            let commit = h.core(l).commit_position();
            (0..h.size())
                .filter(|&i| h.is_up(i))
                .all(|i| h.core(i).applied_position() == commit)
        });
        assert!(ok, "members did not converge within 5 s");
    }

    /// The leader takes a snapshot; waits until every up member stored one.
    fn snapshot(&mut self) -> LogPosition {
        let leader = self.await_leader();
        let before: Vec<usize> = self.nodes.iter().map(|n| n.snapshots.len()).collect();
        self.input(leader, Input::TakeSnapshot);
        self.flush();
        let ok = self.run_until(5_000_000_000, |h| {
            (0..h.size())
                .filter(|&i| h.is_up(i))
                .all(|i| h.nodes[i as usize].snapshots.len() > before[i as usize])
        });
        assert!(ok, "snapshot not taken everywhere");
        self.nodes[leader as usize]
            .snapshots
            .last()
            .expect("snapshot")
            .position
    }

    /// Drops the log below `position` on every up member.
    fn purge(&mut self, position: LogPosition) {
        for i in 0..self.size() {
            self.input(i, Input::Purge { position });
        }
    }

    /// The state hash of every up member, by `hash`.
    fn hashes(&self, hash: impl Fn(&S) -> u32) -> Vec<(u32, u32)> {
        (0..self.size())
            .filter(|&i| self.is_up(i))
            .map(|i| (i, hash(self.service(i))))
            .collect()
    }

    /// Asserts that every up member holds the same state (by `hash`); returns it.
    fn assert_same_state(&mut self, hash: impl Fn(&S) -> u32) -> u32 {
        self.await_applied();
        let hashes = self.hashes(hash);
        assert!(hashes.len() >= 2);
        assert!(
            hashes.windows(2).all(|w| w[0].1 == w[1].1),
            "members hold different state: {hashes:?}"
        );
        hashes[0].1
    }
}
