//! Loopback tests of the UDP transport, for both IO modes.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::frame::{
    self, CLIENT_SOURCE_ID, FLAG_FRAGMENT, HEADER_LEN, Header, STREAM_CLIENT, STREAM_PEER,
};
use super::*;

const CLUSTER: u64 = 0xC1;
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

fn config() -> TransportConfig {
    TransportConfig {
        cluster_id: CLUSTER,
        ..TransportConfig::default()
    }
}

/// Binds `n` members on fresh loopback ports (retrying if another process holds one).
fn cluster(n: u32, mode: IoMode, cfg: &TransportConfig) -> Vec<Transport> {
    for _ in 0..50 {
        let seed = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
        let base = 20_000
            + ((std::process::id() as u16)
                .wrapping_mul(97)
                .wrapping_add(seed.wrapping_mul(331)))
                % 40_000;
        let list: Vec<String> = (0..n)
            .map(|i| format!("{i}=127.0.0.1:{}", base + 2 * i as u16))
            .collect();
        let members = MemberEndpoints::parse(&list.join(",")).unwrap();
        let bound: Result<Vec<_>> = (0..n)
            .map(|i| Transport::bind_member(cfg.clone(), members.clone(), i, mode))
            .collect();
        match bound {
            Ok(v) => return v,
            Err(TransportError::Io { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free ports");
}

/// Polls until `done` says so (a guard deadline only prevents hanging; nothing asserts time).
fn pump(ts: &mut [&mut Transport], now_ns: u64, mut done: impl FnMut(usize, Event<'_>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut finished = false;
    while !finished {
        assert!(Instant::now() < deadline, "timed out waiting for messages");
        for (i, t) in ts.iter_mut().enumerate() {
            t.flush().unwrap();
            t.poll(now_ns, |e| finished |= done(i, e)).unwrap();
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn member_to_member_and_client(mode: IoMode, cfg: TransportConfig) {
    let mut ms = cluster(2, mode, &cfg);
    let members = ms[0].members().clone();
    let (a, b) = ms.split_at_mut(1);
    let (m0, m1) = (&mut a[0], &mut b[0]);
    let big = pattern(200_000, 7);
    // A batch of small messages plus one large fragmented one.
    for k in 0..50u8 {
        m0.send_to_member(1, &[k; 32]).unwrap();
    }
    m0.send_to_member(1, &big).unwrap();
    let mut small = 0;
    let mut got_big = false;
    pump(&mut [m0, m1], 0, |i, e| {
        if let (1, Event::FromMember { member_id: 0, msg }) = (i, e) {
            if msg.len() == 32 {
                assert_eq!(msg, &[small as u8; 32][..], "in order on loopback");
                small += 1;
            } else {
                assert_eq!(msg, &big[..]);
                got_big = true;
            }
        }
        small == 50 && got_big
    });
    assert!(m1.counters().fragments_in > 1);
    assert_eq!(m1.counters().dropped_total(), 0);

    // Client <-> member, including a fragmented request and reply.
    let mut c = Transport::bind_client(cfg, members, mode).unwrap();
    assert_eq!(c.io_mode_in_use(), m0.io_mode_in_use());
    let req = pattern(10_000, 3);
    c.send_to_member(1, &req).unwrap();
    let mut client_addr = None;
    pump(&mut [&mut c, m1], 0, |i, e| {
        if let (1, Event::FromClient { addr, msg }) = (i, e) {
            assert_eq!(msg, &req[..]);
            client_addr = Some(addr);
        }
        client_addr.is_some()
    });
    let reply = pattern(5_000, 9);
    m1.send_to_client(client_addr.unwrap(), &reply).unwrap();
    let mut ok = false;
    pump(&mut [&mut c, m1], 0, |i, e| {
        if let (0, Event::FromMember { member_id: 1, msg }) = (i, e) {
            assert_eq!(msg, &reply[..]);
            ok = true;
        }
        ok
    });
    assert!(
        c.send_to_client(client_addr.unwrap(), b"x").is_err(),
        "clients cannot address clients"
    );
}

#[test]
fn std_member_and_client_round_trips() {
    member_to_member_and_client(IoMode::Std, config());
}

/// A std member asks one epoll set which of its sockets hold input: with both holding
/// some, one poll reads both (loopback sends are queued at the receiver before they return).
#[test]
fn std_member_reads_peer_and_client_sockets_in_one_poll() {
    let mut ms = cluster(2, IoMode::Std, &config());
    let members = ms[0].members().clone();
    let mut c = Transport::bind_client(config(), members, IoMode::Std).unwrap();
    let (a, b) = ms.split_at_mut(1);
    let (m0, m1) = (&mut a[0], &mut b[0]);
    assert!(
        matches!(m1.ready, Ready::Own(_)),
        "std members poll through an epoll set"
    );
    for round in 0..3u8 {
        m0.send_to_member(1, &[round; 16]).unwrap();
        m0.flush().unwrap();
        c.send_to_member(1, &[round; 8]).unwrap();
        c.flush().unwrap();
        let (mut from_member, mut from_client) = (0, 0);
        m1.poll(0, |e| match e {
            Event::FromMember { member_id: 0, msg } if msg == [round; 16] => from_member += 1,
            Event::FromClient { msg, .. } if msg == [round; 8] => from_client += 1,
            other => panic!("{other:?}"),
        })
        .unwrap();
        assert_eq!((from_member, from_client), (1, 1), "round {round}");
        // Nothing left: the next poll reads nothing.
        assert_eq!(m1.poll(0, |e| panic!("{e:?}")).unwrap(), 0);
    }
}

/// Two members and a client polled in turn through one readiness group: each turn makes
/// one `epoll_wait` for all three, every message arrives (what a transport sent after the
/// group's last wait is seen at the next, or at once when it was hinted), and an idle turn
/// reads nothing.
#[test]
fn std_transports_in_one_readiness_group_share_one_epoll_wait_a_turn() {
    let mut ms = cluster(2, IoMode::Std, &config());
    let members = ms[0].members().clone();
    let mut c = Transport::bind_client(config(), members, IoMode::Std).unwrap();
    let group = ReadinessGroup::new().unwrap();
    for m in &mut ms {
        assert!(m.join_readiness_group(&group).unwrap());
    }
    assert!(c.join_readiness_group(&group).unwrap());
    assert_eq!(group.members(), 3);
    let client_addr = SocketAddr::from(([127, 0, 0, 1], c.local_client_addr().port()));
    let (a, b) = ms.split_at_mut(1);
    let (m0, m1) = (&mut a[0], &mut b[0]);
    // Client -> member 1 -> member 0 -> client.
    let mut got = Vec::new();
    c.send_to_member(1, b"request").unwrap();
    c.flush().unwrap();
    for turn in 0..4 {
        let waits = group.waits();
        m0.poll(0, |e| {
            if let Event::FromMember { member_id: 1, msg } = e {
                got.push(("m0", msg.to_vec()));
            }
        })
        .unwrap();
        if got.iter().any(|(w, _)| *w == "m0") && !got.iter().any(|(w, _)| *w == "sent") {
            m0.send_to_client(client_addr, b"reply").unwrap();
            m0.flush().unwrap();
            got.push(("sent", Vec::new()));
        }
        let mut relay = None;
        m1.poll(0, |e| {
            if let Event::FromClient { msg, .. } = e {
                relay = Some(msg.to_vec());
            }
        })
        .unwrap();
        if let Some(msg) = relay {
            got.push(("m1", msg));
            m1.send_to_member(0, b"forwarded").unwrap();
            m1.flush().unwrap();
        }
        c.poll(0, |e| {
            if let Event::FromMember { member_id: 0, msg } = e {
                got.push(("client", msg.to_vec()));
            }
        })
        .unwrap();
        assert_eq!(
            group.waits(),
            waits + 1,
            "turn {turn}: one epoll_wait for the group"
        );
    }
    let names: Vec<&str> = got.iter().map(|(w, _)| *w).collect();
    assert_eq!(names, ["m1", "m0", "sent", "client"], "{got:?}");
    assert_eq!(got[0].1, b"request");
    assert_eq!(got[1].1, b"forwarded");
    assert_eq!(got[3].1, b"reply");
    // Idle: nothing read, still one wait a turn.
    let waits = group.waits();
    assert_eq!(m0.poll(0, |e| panic!("{e:?}")).unwrap(), 0);
    assert_eq!(m1.poll(0, |e| panic!("{e:?}")).unwrap(), 0);
    assert_eq!(c.poll(0, |e| panic!("{e:?}")).unwrap(), 0);
    assert_eq!(group.waits(), waits + 1);
}

/// A datagram one transport of a group sends to another's socket is read by that one's next
/// poll without a new `epoll_wait`: client -> member 1 -> member 0 -> client in one turn of
/// polls in that order, with no wait. Input from outside the group is still seen while hints
/// keep coming: the group waits again after two hinted polls per transport at most.
#[test]
fn hinted_sockets_are_read_without_a_wait_and_outside_input_is_still_seen() {
    let mut ms = cluster(2, IoMode::Std, &config());
    let members = ms[0].members().clone();
    let mut c = Transport::bind_client(config(), members.clone(), IoMode::Std).unwrap();
    let group = ReadinessGroup::new().unwrap();
    for m in &mut ms {
        assert!(m.join_readiness_group(&group).unwrap());
    }
    assert!(c.join_readiness_group(&group).unwrap());
    let client_addr = SocketAddr::from(([127, 0, 0, 1], c.local_client_addr().port()));
    let (a, b) = ms.split_at_mut(1);
    let (m0, m1) = (&mut a[0], &mut b[0]);
    // An idle turn: every slot has used the group's last wait.
    for t in [&mut *m0, &mut *m1, &mut c] {
        assert_eq!(t.poll(0, |e| panic!("{e:?}")).unwrap(), 0);
    }
    let (waits, hinted) = (group.waits(), group.hinted_polls());
    c.send_to_member(1, b"request").unwrap();
    c.flush().unwrap();
    let mut got = Vec::new();
    m1.poll(0, |e| {
        if let Event::FromClient { msg, .. } = e {
            got.push(msg.to_vec());
        }
    })
    .unwrap();
    m1.send_to_member(0, b"forwarded").unwrap();
    m1.flush().unwrap();
    m0.poll(0, |e| {
        if let Event::FromMember { member_id: 1, msg } = e {
            got.push(msg.to_vec());
        }
    })
    .unwrap();
    m0.send_to_client(client_addr, b"reply").unwrap();
    m0.flush().unwrap();
    c.poll(0, |e| {
        if let Event::FromMember { member_id: 0, msg } = e {
            got.push(msg.to_vec());
        }
    })
    .unwrap();
    assert_eq!(got, [&b"request"[..], b"forwarded", b"reply"]);
    assert_eq!(group.waits(), waits, "every hop read without a wait");
    assert_eq!(group.hinted_polls(), hinted + 3);

    // A client outside the group writes to member 0 while member 1 keeps hinting member 0's
    // peer socket: member 0 sees it once the group waits again, within 2 x 3 hinted polls.
    let mut outsider = Transport::bind_client(config(), members, IoMode::Std).unwrap();
    outsider.send_to_member(0, b"from outside").unwrap();
    outsider.flush().unwrap();
    let mut polls = 0;
    let mut seen = false;
    while !seen && polls < 20 {
        m1.send_to_member(0, b"hint").unwrap();
        m1.flush().unwrap();
        m0.poll(0, |e| {
            if let Event::FromClient { msg, .. } = e {
                assert_eq!(msg, b"from outside");
                seen = true;
            }
        })
        .unwrap();
        polls += 1;
    }
    assert!(seen, "input from outside the group is read");
    assert!(polls <= 2 * 3 + 1, "seen at poll {polls}");
    assert!(group.waits() > waits, "the group waited again");
}

/// A destination that was not in the group when a transport first sent to it is hinted once
/// its transport has joined (a miss is looked up again after a join).
#[test]
fn a_socket_that_joins_later_is_hinted_too() {
    let mut ms = cluster(1, IoMode::Std, &config());
    let members = ms[0].members().clone();
    let mut c = Transport::bind_client(config(), members, IoMode::Std).unwrap();
    let group = ReadinessGroup::new().unwrap();
    assert!(c.join_readiness_group(&group).unwrap());
    let m0 = &mut ms[0];
    // Sent before member 0 joined: a miss.
    c.send_to_member(0, b"early").unwrap();
    c.flush().unwrap();
    assert!(m0.join_readiness_group(&group).unwrap());
    let mut got = Vec::new();
    m0.poll(0, |e| {
        if let Event::FromClient { msg, .. } = e {
            got.push(msg.to_vec());
        }
    })
    .unwrap();
    assert_eq!(got, [b"early"]);
    let (waits, hinted) = (group.waits(), group.hinted_polls());
    c.send_to_member(0, b"late").unwrap();
    c.flush().unwrap();
    m0.poll(0, |e| {
        if let Event::FromClient { msg, .. } = e {
            got.push(msg.to_vec());
        }
    })
    .unwrap();
    assert_eq!(got, [&b"early"[..], b"late"]);
    assert_eq!(group.hinted_polls(), hinted + 1, "read on the hint");
    assert_eq!(group.waits(), waits, "without a wait");
}

/// A group holds at most `GROUP_SLOTS` transports; one more is refused with a typed error
/// and goes on polling through a set of its own.
#[test]
fn a_full_readiness_group_refuses_the_next_transport() {
    let group = ReadinessGroup::new().unwrap();
    let members = cluster(1, IoMode::Std, &config())[0].members().clone();
    let mut clients: Vec<Transport> = (0..readiness::GROUP_SLOTS)
        .map(|_| Transport::bind_client(config(), members.clone(), IoMode::Std).unwrap())
        .collect();
    for c in &mut clients {
        assert!(c.join_readiness_group(&group).unwrap());
    }
    let mut extra = Transport::bind_client(config(), members, IoMode::Std).unwrap();
    let err = extra.join_readiness_group(&group).unwrap_err();
    assert!(err.to_string().contains("readiness group full"), "{err}");
    assert!(matches!(extra.ready, Ready::ReadAll));
    assert_eq!(group.members(), readiness::GROUP_SLOTS);
}

#[test]
fn uring_member_and_client_round_trips() {
    let t = cluster(1, IoMode::Uring, &config());
    if t[0].io_mode_in_use() != IoMode::Uring {
        eprintln!(
            "io_uring unavailable here ({:?}); fallback path tested instead",
            t[0].fallback_reason()
        );
    }
    drop(t);
    member_to_member_and_client(IoMode::Uring, config());
}

#[test]
fn uring_single_shot_receive_path() {
    let mut cfg = config();
    cfg.udp.force_single_shot_recv = true;
    member_to_member_and_client(IoMode::Uring, cfg);
}

#[test]
fn big_loopback_mtu() {
    let mut cfg = config();
    cfg.udp.mtu = 65_000;
    cfg.udp.send_slots = 64;
    cfg.udp.recv_buffers = 32;
    member_to_member_and_client(IoMode::Std, cfg.clone());
    member_to_member_and_client(IoMode::Uring, cfg);
}

#[test]
fn forced_uring_failure_falls_back_to_std() {
    let mut cfg = config();
    cfg.udp.force_uring_failure = true;
    let t = cluster(1, IoMode::Uring, &cfg);
    assert_eq!(t[0].io_mode_requested(), IoMode::Uring);
    assert_eq!(t[0].io_mode_in_use(), IoMode::Std);
    assert!(t[0].fallback_reason().unwrap().contains("forced"));
    drop(t);
    member_to_member_and_client(IoMode::Uring, cfg);
}

fn datagram(h: &Header, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; HEADER_LEN + payload.len()];
    frame::encode(h, payload, &mut v);
    v
}

fn header(source_id: u32, stream_id: u16, len: usize) -> Header {
    Header {
        flags: 0,
        cluster_id: CLUSTER,
        source_id,
        stream_id,
        message_id: 1,
        message_len: len as u32,
        frag_offset: 0,
        frag_index: 0,
        frag_count: 1,
    }
}

/// Polls until the counters satisfy `cond`.
fn poll_until(t: &mut Transport, now_ns: u64, cond: impl Fn(&TransportCounters) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond(t.counters()) {
        assert!(Instant::now() < deadline, "timed out: {:?}", t.counters());
        t.poll(now_ns, |e| panic!("nothing should be delivered, got {e:?}"))
            .unwrap();
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn forged_and_garbage(mode: IoMode) {
    let mut ms = cluster(2, mode, &config());
    let m0 = &mut ms[0];
    let peer = m0.local_peer_addr().unwrap();
    let client_port = m0.local_client_addr();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A well-formed datagram claiming to be member 1, but not from member 1's peer address.
    raw.send_to(&datagram(&header(1, STREAM_PEER, 4), b"vote"), peer)
        .unwrap();
    // A client pretending to be a member on the client port.
    raw.send_to(
        &datagram(&header(1, STREAM_CLIENT, 4), b"vote"),
        client_port,
    )
    .unwrap();
    // Garbage of every kind.
    raw.send_to(b"short", peer).unwrap();
    raw.send_to(&[0xFF; 100], peer).unwrap();
    let mut bad_crc = datagram(&header(CLIENT_SOURCE_ID, STREAM_CLIENT, 3), b"abc");
    bad_crc[HEADER_LEN] ^= 1;
    raw.send_to(&bad_crc, client_port).unwrap();
    let mut other = header(CLIENT_SOURCE_ID, STREAM_CLIENT, 3);
    other.cluster_id = 99;
    raw.send_to(&datagram(&other, b"abc"), client_port).unwrap();
    // Client traffic on the peer socket (wrong stream).
    raw.send_to(
        &datagram(&header(CLIENT_SOURCE_ID, STREAM_CLIENT, 3), b"abc"),
        peer,
    )
    .unwrap();
    poll_until(m0, 0, |c| c.datagrams_in >= 7);
    let c = *m0.counters();
    assert_eq!(c.dropped_unknown_member, 2, "{c:?}");
    assert_eq!(c.dropped_bad_length, 1, "{c:?}");
    assert_eq!(c.dropped_bad_version, 1, "{c:?}");
    assert_eq!(c.dropped_bad_checksum, 1, "{c:?}");
    assert_eq!(c.dropped_wrong_cluster, 1, "{c:?}");
    assert_eq!(c.dropped_bad_header, 1, "{c:?}");
    assert_eq!(c.messages_in, 0);

    // Fragments of a message that never completes: dropped after the timeout, counted.
    let (chunk, count) = reassembly::fragment_plan(5000, 1000);
    for i in 0..count - 1 {
        let mut h = header(CLIENT_SOURCE_ID, STREAM_CLIENT, 5000);
        h.flags = FLAG_FRAGMENT;
        h.frag_index = i as u16;
        h.frag_count = count as u16;
        h.frag_offset = (i * chunk) as u32;
        raw.send_to(&datagram(&h, &vec![1; chunk]), client_port)
            .unwrap();
    }
    poll_until(m0, 1_000, |c| c.fragments_in == (count - 1) as u64);
    assert_eq!(m0.reassembly_in_flight(), 1);
    m0.poll(1_000 + config().reassembly_timeout_ns, |_| panic!())
        .unwrap();
    assert_eq!(m0.counters().dropped_reassembly_timeout, 1);
    assert_eq!(m0.reassembly_in_flight(), 0);

    // Still healthy afterwards.
    let (a, b) = ms.split_at_mut(1);
    b[0].send_to_member(0, b"heartbeat").unwrap();
    let mut ok = false;
    pump(&mut [&mut a[0], &mut b[0]], 0, |i, e| {
        ok |= i == 0
            && e == Event::FromMember {
                member_id: 1,
                msg: b"heartbeat",
            };
        ok
    });
}

#[test]
fn std_forged_member_and_garbage_dropped_and_counted() {
    forged_and_garbage(IoMode::Std);
}

#[test]
fn uring_forged_member_and_garbage_dropped_and_counted() {
    forged_and_garbage(IoMode::Uring);
}

/// A datagram one byte longer than the member's `recv_max_datagram` (a sender configured with
/// a larger mtu) is dropped and counted as oversize, on every receive path; one of exactly
/// the limit is not.
fn oversize_datagrams_are_counted(mode: IoMode, cfg: &TransportConfig) {
    let mut ms = cluster(1, mode, cfg);
    let m0 = &mut ms[0];
    let client_port = m0.local_client_addr();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    let limit = cfg.udp.recv_max_datagram;
    let long = datagram(
        &header(CLIENT_SOURCE_ID, STREAM_CLIENT, limit + 1 - HEADER_LEN),
        &vec![7; limit + 1 - HEADER_LEN],
    );
    raw.send_to(&long, client_port).unwrap();
    raw.send_to(&[0; 5000], client_port).unwrap();
    poll_until(m0, 0, |c| c.datagrams_in >= 2);
    let c = *m0.counters();
    assert_eq!(c.dropped_oversize, 2, "{c:?}");
    assert_eq!(c.dropped_bad_length, 0, "{c:?}");
    assert_eq!(c.dropped_total(), 2, "{c:?}");
    let fits = datagram(
        &header(CLIENT_SOURCE_ID, STREAM_CLIENT, limit - HEADER_LEN),
        &vec![7; limit - HEADER_LEN],
    );
    raw.send_to(&fits, client_port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = None;
    while got.is_none() {
        assert!(Instant::now() < deadline, "timed out: {:?}", m0.counters());
        m0.poll(0, |e| got = Some(format!("{e:?}"))).unwrap();
        std::thread::sleep(Duration::from_micros(50));
    }
    assert_eq!(m0.counters().dropped_oversize, 2);
}

/// A configuration whose endpoints accept nothing longer than their own mtu.
fn config_accepting_only_the_mtu() -> TransportConfig {
    let mut cfg = config();
    cfg.udp.recv_max_datagram = cfg.udp.mtu;
    cfg
}

#[test]
fn std_oversize_datagrams_are_counted() {
    oversize_datagrams_are_counted(IoMode::Std, &config_accepting_only_the_mtu());
}

/// Runs `check` on both io_uring receive paths: the buffer ring, then single-shot receives.
fn on_both_uring_paths(cfg: TransportConfig, check: fn(IoMode, &TransportConfig)) {
    check(IoMode::Uring, &cfg);
    let mut cfg = cfg;
    cfg.udp.force_single_shot_recv = true;
    check(IoMode::Uring, &cfg);
}

#[test]
fn uring_oversize_datagrams_are_counted() {
    on_both_uring_paths(
        config_accepting_only_the_mtu(),
        oversize_datagrams_are_counted,
    );
}

/// By default an endpoint accepts any UDP datagram, so a sender whose mtu is larger than the
/// receiver's own loses nothing: a member with the default 1408-byte mtu receives whole
/// messages in datagrams of 8 KiB and of 65,507 bytes (the largest), on every receive path.
fn datagrams_longer_than_the_mtu_are_accepted(mode: IoMode, cfg: &TransportConfig) {
    assert_eq!(cfg.udp.mtu, 1408);
    let mut ms = cluster(1, mode, cfg);
    let m0 = &mut ms[0];
    let client_port = m0.local_client_addr();
    let raw = UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [8192, frame::MAX_DATAGRAM] {
        let payload: Vec<u8> = (0..len - HEADER_LEN).map(|i| i as u8).collect();
        raw.send_to(
            &datagram(
                &header(CLIENT_SOURCE_ID, STREAM_CLIENT, payload.len()),
                &payload,
            ),
            client_port,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got: Option<Vec<u8>> = None;
        while got.is_none() {
            assert!(Instant::now() < deadline, "timed out: {:?}", m0.counters());
            m0.poll(0, |e| {
                if let Event::FromClient { msg, .. } = e {
                    got = Some(msg.to_vec());
                }
            })
            .unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
        assert!(
            got.as_deref() == Some(&payload[..]),
            "{len}-byte datagram altered"
        );
    }
    let c = *m0.counters();
    assert_eq!(c.dropped_total(), 0, "{c:?}");
}

#[test]
fn std_datagrams_longer_than_the_mtu_are_accepted() {
    datagrams_longer_than_the_mtu_are_accepted(IoMode::Std, &config());
}

#[test]
fn uring_datagrams_longer_than_the_mtu_are_accepted() {
    on_both_uring_paths(config(), datagrams_longer_than_the_mtu_are_accepted);
}

#[test]
fn send_queue_back_pressure() {
    for mode in [IoMode::Std, IoMode::Uring] {
        let mut cfg = config();
        cfg.udp.send_slots = 8;
        cfg.max_message_size = 4096;
        let mut ms = cluster(2, mode, &cfg);
        let mut queued = 0;
        let err = loop {
            match ms[0].send_to_member(1, &[0; 100]) {
                Ok(()) => queued += 1,
                Err(e) => break e,
            }
        };
        assert!(err.is_would_block());
        assert_eq!(queued, 8);
        // A fragmented message needing more slots than are free is refused whole.
        assert!(
            ms[0]
                .send_to_member(1, &[0; 4000])
                .unwrap_err()
                .is_would_block()
        );
        assert!(matches!(
            ms[0].send_to_member(1, &[0; 5000]),
            Err(TransportError::MessageTooLarge { .. })
        ));
        ms[0].flush().unwrap();
        let mut got = 0;
        let (a, b) = ms.split_at_mut(1);
        pump(&mut [&mut a[0], &mut b[0]], 0, |i, _| {
            got += usize::from(i == 1);
            got == 8
        });
        a[0].send_to_member(1, &[0; 100]).unwrap();
        assert_eq!(a[0].counters().send_would_block, 2);
    }
}

#[test]
fn io_mode_parses() {
    assert_eq!("std".parse::<IoMode>().unwrap(), IoMode::Std);
    assert_eq!("uring".parse::<IoMode>().unwrap(), IoMode::Uring);
    assert!("epoll".parse::<IoMode>().is_err());
    assert_eq!(IoMode::Uring.to_string(), "uring");
}

#[test]
fn invalid_config_rejected() {
    let members = MemberEndpoints::parse("0=127.0.0.1:1").unwrap();
    let mut cfg = config();
    cfg.udp.mtu = 50;
    assert!(matches!(
        Transport::bind_member(cfg, members.clone(), 0, IoMode::Std),
        Err(TransportError::InvalidConfig(_))
    ));
    for bad in [50, frame::MAX_DATAGRAM + 1] {
        let mut cfg = config();
        cfg.udp.recv_max_datagram = bad;
        assert!(matches!(
            Transport::bind_member(cfg, members.clone(), 0, IoMode::Std),
            Err(TransportError::InvalidConfig(m)) if m.contains("recv_max_datagram")
        ));
    }
    // 2 GiB of receive buffers for one socket (32,768 of 64 KiB) is refused, and so are 1,025
    // of 40 KB (41 MB), which the io_uring path rounds up to 2,048 (82 MB).
    for (buffers, len) in [(32_768, frame::MAX_DATAGRAM), (1_025, 40_000)] {
        let mut cfg = config();
        cfg.udp.recv_buffers = buffers;
        cfg.udp.recv_max_datagram = len;
        assert!(matches!(
            Transport::bind_member(cfg, members.clone(), 0, IoMode::Uring),
            Err(TransportError::InvalidConfig(m)) if m.contains("recv_buffers")
        ));
    }
    assert!(matches!(
        Transport::bind_member(config(), members, 5, IoMode::Std),
        Err(TransportError::UnknownMember(5))
    ));
    let _: SocketAddr = "127.0.0.1:1".parse().unwrap();
}

/// What a member holds for some destinations stays out of the kernel until released, in
/// order, while its other sends leave with each flush; a release ends the hold.
fn held_sends_wait_for_their_release(mode: IoMode) {
    let mut ms = cluster(3, mode, &config());
    let (a, rest) = ms.split_at_mut(1);
    let (b, c) = rest.split_at_mut(1);
    let (m0, m1, m2) = (&mut a[0], &mut b[0], &mut c[0]);
    m0.hold_sends_to([2, 99]);
    m0.send_to_member(1, b"to-1").unwrap();
    m0.send_to_member(2, b"held-1").unwrap();
    m0.send_to_member(2, b"held-2").unwrap();
    let mut got1 = Vec::new();
    pump(&mut [&mut *m0, &mut *m1], 0, |i, e| {
        if let (1, Event::FromMember { msg, .. }) = (i, e) {
            got1.push(msg.to_vec());
        }
        !got1.is_empty()
    });
    assert_eq!(got1, [b"to-1".to_vec()]);
    // Flushed again and again, the held messages never reach member 2.
    for _ in 0..20 {
        m0.flush().unwrap();
        m2.poll(0, |e| panic!("held message delivered: {e:?}"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(m0.release_held_sends().unwrap(), 2);
    let mut got2 = Vec::new();
    pump(&mut [&mut *m0, &mut *m2], 0, |i, e| {
        if let (1, Event::FromMember { member_id, msg }) = (i, e) {
            assert_eq!(member_id, 0);
            got2.push(msg.to_vec());
        }
        got2.len() == 2
    });
    assert_eq!(got2, [b"held-1".to_vec(), b"held-2".to_vec()]);
    // The hold has ended: the next message leaves with the next flush.
    assert_eq!(m0.release_held_sends().unwrap(), 0, "nothing held any more");
    m0.send_to_member(2, b"after").unwrap();
    got2.clear();
    pump(&mut [&mut *m0, &mut *m2], 0, |i, e| {
        if let (1, Event::FromMember { msg, .. }) = (i, e) {
            got2.push(msg.to_vec());
        }
        !got2.is_empty()
    });
    assert_eq!(got2, [b"after".to_vec()]);
}

#[test]
fn held_sends_wait_for_their_release_std() {
    held_sends_wait_for_their_release(IoMode::Std);
}

#[test]
fn held_sends_wait_for_their_release_uring() {
    held_sends_wait_for_their_release(IoMode::Uring);
}

/// A hold ends early when held datagrams would leave too few slots for the others, and a
/// new hold first releases what the last one held: a destination's datagrams stay in order.
#[test]
fn a_hold_never_crowds_out_other_sends_nor_reorders_a_destination() {
    use super::io::SendSlots;
    let a: SocketAddr = "127.0.0.1:1001".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:1002".parse().unwrap();
    let put = |slots: &mut SendSlots, dest, tag: u8| {
        slots
            .queue(dest, |buf| {
                buf[0] = tag;
                1
            })
            .unwrap();
    };
    let drain = |slots: &mut SendSlots| {
        let mut out = Vec::new();
        while let Some(i) = slots.pop_pending() {
            let (bytes, dest) = slots.slot(i as usize);
            out.push((dest, bytes[0]));
            slots.release(i);
        }
        out
    };
    // 8 slots: a hold ends when 2 or fewer are free.
    let mut slots = SendSlots::new(8, 64);
    slots.hold([a]);
    for tag in 1..=5 {
        put(&mut slots, a, tag);
    }
    put(&mut slots, b, 10);
    assert_eq!(slots.held(), 5);
    assert_eq!(
        drain(&mut slots),
        [(b, 10)],
        "only the other destination left"
    );
    // Refill: 5 held, 1 pending to b, 2 free; the next send ends the hold.
    put(&mut slots, b, 11);
    assert_eq!(slots.free(), 2);
    put(&mut slots, b, 12);
    assert_eq!(slots.held(), 0, "the hold ended");
    put(&mut slots, a, 6);
    let sent = drain(&mut slots);
    assert_eq!(
        sent,
        [
            (b, 11),
            (a, 1),
            (a, 2),
            (a, 3),
            (a, 4),
            (a, 5),
            (b, 12),
            (a, 6)
        ]
    );
    // A new hold first releases the old one's datagrams.
    slots.hold([a]);
    put(&mut slots, a, 20);
    slots.hold([b]);
    put(&mut slots, a, 21);
    put(&mut slots, b, 22);
    assert_eq!(drain(&mut slots), [(a, 20), (a, 21)]);
    assert_eq!(slots.release_held(), 1);
    assert_eq!(drain(&mut slots), [(b, 22)]);
}
