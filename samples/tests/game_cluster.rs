//! The game server replicated on 3 members: players join, move and act, the tick runs on a
//! cluster timer across a snapshot and a leader failover, a closed session and a timed-out one
//! remove their players, and every member ends with the same state.

mod common;

use common::{Harness, ServiceMode, Sessions, TestCluster};
use tandem_cluster::consensus::{Config, MemberId};
use tandem_cluster::testkit::test_config;
use tandem_samples::game::{ActionKind, GameEvent, GameRequest, GameServer, TICK_NS};

fn config(id: MemberId, n: u32) -> Config {
    let mut c = test_config(id, n);
    c.session_timeout_ns = 2_000_000_000;
    c
}

fn replicated_game_ticks_and_agrees(mode: ServiceMode) {
    let mut h = TestCluster::with_service(3, GameServer::default, config, mode);
    let mut clients: Vec<_> = (1..=4).map(|a| h.open_client(a)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let join = GameRequest::Join {
            room: (i % 2) as u32,
            name: format!("p{i}"),
        };
        h.send(c, &join.encode());
    }
    h.await_acked(&mut clients);
    let play = |h: &mut Harness<GameServer>, clients: &mut [common::Client], rounds: i32| {
        for r in 0..rounds {
            for (i, c) in clients.iter_mut().enumerate() {
                let req = match (r + i as i32) % 3 {
                    0 => GameRequest::Move {
                        vx: r % 7 - 3,
                        vy: 3 - r % 5,
                    },
                    1 => GameRequest::Action {
                        kind: ActionKind::Attack,
                    },
                    _ => GameRequest::Action {
                        kind: ActionKind::Heal,
                    },
                };
                h.send(c, &req.encode());
            }
            h.flush();
            h.run_for(20_000_000);
        }
    };
    play(&mut h, &mut clients, 20);
    h.await_acked(&mut clients);
    h.assert_same_state(GameServer::state_hash);
    let tick_before = h.service(0).tick();
    assert!(tick_before >= 6, "ticks ran: {tick_before}");

    h.snapshot();
    let old = h.await_leader();
    h.crash(old);
    for c in clients.iter_mut() {
        h.reattach(c);
    }
    play(&mut h, &mut clients, 20);
    h.await_acked(&mut clients);
    h.restart(old);
    h.assert_same_state(GameServer::state_hash);
    let leader = h.await_leader();
    assert!(
        h.service(leader).tick() > tick_before,
        "the tick survives the failover"
    );

    // Client 1 leaves by closing its session; client 2 falls silent and times out.
    h.close(&clients[0]);
    let deadline = h.now_ns + 4_000_000_000;
    while h.now_ns < deadline {
        for c in [&clients[2], &clients[3]] {
            h.keep_alive(c);
        }
        h.run_for(100_000_000);
    }
    h.assert_same_state(GameServer::state_hash);
    let leader = h.await_leader();
    let s = h.service(leader);
    assert_eq!(
        s.player_count(),
        2,
        "closed and timed-out sessions removed their players"
    );
    assert!(s.player(clients[0].session.0).is_none() && s.player(clients[1].session.0).is_none());
    assert!(s.is_ticking());

    // The remaining players got state broadcasts for their rooms, in tick order.
    let c = &mut clients[2];
    h.poll(c);
    let ticks: Vec<u64> = c
        .replies
        .iter()
        .filter_map(|(_, b)| match GameEvent::decode(b).unwrap() {
            GameEvent::State { tick, .. } => Some(tick),
            _ => None,
        })
        .collect();
    assert!(ticks.len() > 40 && ticks.windows(2).all(|w| w[0] < w[1]));
    let most = (h.now_ns / TICK_NS) as usize + 1;
    assert!(ticks.len() <= most, "one broadcast per tick at most");
}

tandem_cluster::in_both_service_modes!(replicated_game_ticks_and_agrees);
