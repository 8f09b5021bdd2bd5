//! The cluster client batches: up to 64 messages per datagram within the MTU, sent when full,
//! when the next would not fit, or on `poll` / `flush`; the node takes batches apart in order.
//! Once warmed up, `offer` and `poll` do not allocate (counted by a global allocator on the
//! client's thread).

#[path = "node_common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use common::*;
use tandem_cluster::node::{ClientConfig, ClientError, ClusterClient, ClusterNode};
use tandem_service_api::Role;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

// SAFETY: forwards to the system allocator; the bookkeeping touches only `const`
// thread-locals (no allocation, no re-entry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const LIMIT: Duration = Duration::from_secs(60);

fn cluster() -> (tempfile::TempDir, String, Vec<ClusterNode>) {
    cluster_with_mtu(1408)
}

fn cluster_with_mtu(mtu: usize) -> (tempfile::TempDir, String, Vec<ClusterNode>) {
    let root = tempfile::tempdir().unwrap();
    let members = free_members(3);
    let nodes: Vec<ClusterNode> = (0..3)
        .map(|i| {
            let mut cfg = config(i, &members, root.path());
            cfg.mtu = mtu;
            ClusterNode::launch_with(cfg, Echo::default, hooks()).unwrap()
        })
        .collect();
    wait_for("a leader", LIMIT, || {
        nodes.iter().position(|n| n.role() == Role::Leader)
    });
    (root, members, nodes)
}

fn client(members: &str, window: usize) -> ClusterClient {
    client_with_mtu(members, window, 1408)
}

fn client_with_mtu(members: &str, window: usize, mtu: usize) -> ClusterClient {
    let mut cc = ClientConfig::new(members).unwrap();
    cc.cluster_id = 42;
    cc.window = window;
    cc.mtu = mtu;
    let mut c = ClusterClient::new(cc).unwrap();
    c.connect(LIMIT).unwrap();
    c
}

/// Offers `msgs` as fast as the window allows, polling when back-pressured, and returns the
/// replies in the order received.
fn run(c: &mut ClusterClient, msgs: &[Vec<u8>], replies: &mut Vec<(u64, Vec<u8>)>) {
    let want = replies.len() + msgs.len();
    for m in msgs {
        loop {
            match c.offer(m) {
                Ok(_) => break,
                Err(ClientError::BackPressure { .. }) => {
                    c.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
                    std::thread::sleep(Duration::from_micros(50));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    wait_for("replies", LIMIT, || {
        c.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
        (replies.len() >= want).then_some(())
    });
}

#[test]
fn batches_carry_up_to_64_messages_within_the_mtu_in_order() {
    let (_root, members, nodes) = cluster();
    let mut c = client(&members, 64);
    let mut replies = Vec::new();

    // 64 small messages go out as one datagram on the first poll.
    let before = c.messages_sent();
    let small: Vec<Vec<u8>> = (0..64).map(|i| format!("s{i}").into_bytes()).collect();
    for m in &small {
        c.offer(m).unwrap();
    }
    assert_eq!(
        c.messages_sent(),
        before + 1,
        "64 messages: one batch, sent when full"
    );
    run(&mut c, &[], &mut replies);
    wait_for("64 replies", LIMIT, || {
        c.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
        (replies.len() >= 64).then_some(())
    });

    // Messages of 700 bytes: two do not fit one 1408-byte datagram.
    let before = c.messages_sent();
    let wide: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'w' ^ i; 700]).collect();
    for m in &wide {
        c.offer(m).unwrap();
    }
    c.flush();
    let sent = c.messages_sent() - before;
    assert_eq!(sent, 10, "one 700-byte message per datagram");
    // A message larger than a datagram travels alone (fragmented by the transport).
    let big = vec![7u8; 10_000];
    let mixed: Vec<Vec<u8>> = vec![b"a".to_vec(), big.clone(), b"b".to_vec()];
    run(&mut c, &mixed, &mut replies);

    // Many more, with the window as the only limit.
    let many: Vec<Vec<u8>> = (0..2_000).map(|i| format!("m{i}").into_bytes()).collect();
    let before = c.messages_sent();
    run(&mut c, &many, &mut replies);
    let sent = c.messages_sent() - before;
    let mut want: Vec<Vec<u8>> = small.clone();
    want.extend(wide.iter().cloned());
    want.extend(mixed.iter().cloned());
    want.extend(many.iter().cloned());
    assert_eq!(replies.len(), want.len());
    for (i, ((seq, r), w)) in replies.iter().zip(&want).enumerate() {
        assert_eq!(*seq, i as u64 + 1, "each reply once, in order");
        assert_eq!(r, w);
    }
    assert!(sent < 2_000, "batched: {sent} datagrams for 2000 messages");
    wait_for("equal state everywhere", LIMIT, || {
        let h: Vec<_> = nodes.iter().map(|n| n.state_hash().map(|x| x.1)).collect();
        (h.iter().all(|x| *x == h[0]) && h[0].is_some_and(|x| count_of(x) == want.len() as u64))
            .then_some(())
    });
    for n in nodes {
        n.close().unwrap();
    }
}

/// 64 messages of 100 bytes: one 6.7 KB datagram from a client whose mtu is 8192.
fn one_wide_batch(c: &mut ClusterClient, replies: &mut Vec<(u64, Vec<u8>)>) -> Vec<Vec<u8>> {
    let msgs: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 100]).collect();
    for m in &msgs {
        c.offer(m).unwrap();
    }
    run(c, &[], replies);
    msgs
}

/// A client and members configured with different mtus lose nothing either way: members
/// with the default 1408 bytes take a client's 6.7 KB batches, and a client with 1408 bytes
/// takes members' reply batches of up to 8 KB (every endpoint accepts any UDP datagram).
#[test]
fn a_client_and_members_with_different_mtus_lose_nothing() {
    for (member_mtu, client_mtu) in [(1408, 8192), (8192, 1408)] {
        let (_root, members, nodes) = cluster_with_mtu(member_mtu);
        let mut c = client_with_mtu(&members, 512, client_mtu);
        let mut replies = Vec::new();
        let before = c.messages_sent();
        let mut want = one_wide_batch(&mut c, &mut replies);
        if client_mtu == 8192 {
            assert_eq!(
                c.messages_sent(),
                before + 1,
                "64 messages of 100 B: one datagram"
            );
        }
        wait_for("64 replies", LIMIT, || {
            c.poll(|s, r| replies.push((s, r.to_vec()))).unwrap();
            (replies.len() >= 64).then_some(())
        });
        // Enough at once that the leader's reply batches fill its datagrams.
        let many: Vec<Vec<u8>> = (0..2_000u32).map(|i| vec![i as u8; 100]).collect();
        run(&mut c, &many, &mut replies);
        want.extend(many);
        assert_eq!(
            replies.len(),
            want.len(),
            "members {member_mtu}, client {client_mtu}"
        );
        for (i, ((seq, r), w)) in replies.iter().zip(&want).enumerate() {
            assert_eq!(*seq, i as u64 + 1, "each reply once, in order");
            assert_eq!(r, w);
        }
        for n in nodes {
            n.close().unwrap();
        }
    }
}

#[test]
fn offer_and_poll_do_not_allocate_once_warm() {
    let (_root, members, nodes) = cluster();
    let mut c = client(&members, 64);
    let msgs: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 + i % 40]).collect();
    let mut received = 0u64;
    let round = |c: &mut ClusterClient, received: &mut u64| {
        let target = *received + msgs.len() as u64;
        for m in &msgs {
            loop {
                match c.offer(m) {
                    Ok(_) => break,
                    Err(ClientError::BackPressure { .. }) => {
                        c.poll(|_, _| *received += 1).unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let start = std::time::Instant::now();
        while *received < target {
            c.poll(|_, _| *received += 1).unwrap();
            assert!(start.elapsed() < LIMIT, "replies did not come");
            std::thread::yield_now();
        }
    };
    for _ in 0..20 {
        round(&mut c, &mut received);
    }
    COUNTING.with(|f| f.set(true));
    for _ in 0..20 {
        round(&mut c, &mut received);
    }
    COUNTING.with(|f| f.set(false));
    let allocations = ALLOCATIONS.with(Cell::get);
    assert_eq!(allocations, 0, "offer/poll allocated {allocations} times");
    assert_eq!(received, 40 * 64);
    for n in nodes {
        n.close().unwrap();
    }
}
