//! A client whose missing replies the leader no longer holds goes on without them, counted,
//! instead of waiting for them forever. The "leader" is a scripted endpoint on the in-process
//! hub whose reply cache holds only the newest replies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tandem_cluster::codec::client::{Egress, EventCode, Ingress, encode_reply};
use tandem_cluster::consensus::{MemberId, SessionId, Term};
use tandem_cluster::node::{ClientConfig, ClusterClient};
use tandem_cluster::transport::inproc::InProcHub;
use tandem_cluster::transport::{Event, Network};

const SESSION: SessionId = SessionId(7);

fn event(correlation_id: u64, value: u64) -> Vec<u8> {
    let mut b = Vec::new();
    Egress::SessionEvent {
        correlation_id,
        session: SESSION,
        code: EventCode::Ok,
        leader: Some(MemberId(0)),
        term: Term(1),
        value,
    }
    .encode(&mut b);
    b
}

fn reply(egress_seq: u64) -> Vec<u8> {
    let mut b = Vec::new();
    encode_reply(
        &mut b,
        SESSION,
        egress_seq,
        egress_seq,
        6,
        &[egress_seq as u8; 8],
    );
    b
}

#[test]
fn replies_the_leader_no_longer_holds_are_counted_lost_and_the_client_goes_on() {
    let hub = InProcHub::new(256, 64 * 1024);
    let mut leader = hub.bind_member(0).unwrap();
    let mut client =
        ClusterClient::in_process(ClientConfig::new("0=127.0.0.1:9").unwrap(), &hub).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attaches = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let script = {
        let (stop, attaches) = (Arc::clone(&stop), Arc::clone(&attaches));
        std::thread::spawn(move || {
            let mut sent_replies = false;
            while !stop.load(Ordering::Acquire) {
                let mut out: Vec<(std::net::SocketAddr, Vec<u8>)> = Vec::new();
                leader
                    .poll(0, |e| {
                        let Event::FromClient { addr, msg } = e else {
                            return;
                        };
                        match Ingress::decode(msg).unwrap() {
                            Ingress::Connect { correlation_id, .. } => {
                                out.push((addr, event(correlation_id, 0)));
                            }
                            Ingress::Batch(b) if !sent_replies && b.len() == 6 => {
                                // Replies 3 and 4 are lost on the way.
                                sent_replies = true;
                                for e in [1, 2, 5, 6] {
                                    out.push((addr, reply(e)));
                                }
                            }
                            Ingress::Attach {
                                last_egress_seq, ..
                            } => {
                                // The reply cache holds only 5 and 6 by now.
                                assert_eq!(last_egress_seq, 2);
                                attaches.fetch_add(1, Ordering::Relaxed);
                                out.push((addr, event(0, 6)));
                                out.push((addr, reply(5)));
                                out.push((addr, reply(6)));
                            }
                            _ => {}
                        }
                    })
                    .unwrap();
                for (addr, m) in out {
                    leader.send_to_client(addr, &m).unwrap();
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        })
    };
    client.connect(Duration::from_secs(10)).unwrap();
    for _ in 0..6 {
        client.offer(b"order").unwrap();
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 4 {
        assert!(Instant::now() < deadline, "replies so far: {got:?}");
        client.poll(|seq, _| got.push(seq)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::Release);
    script.join().unwrap();
    assert_eq!(got, [1, 2, 5, 6]);
    assert_eq!(client.replies_lost(), 2);
    assert_eq!(client.last_egress_seq(), 6);
    assert!(
        attaches.load(Ordering::Relaxed) >= 2,
        "one answer to an attach is not enough to give the replies up"
    );
}
