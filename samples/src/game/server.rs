//! The game server service.

use std::collections::{BTreeMap, BTreeSet};

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

use crate::codec;
use crate::game::messages::{
    ActionKind, ArchivedGameRequest, FORMAT_VERSION, GameError, GameEvent, GameRequest, PlayerView,
};

/// The correlation id of the simulation tick timer.
pub const TICK_TIMER: u64 = 1;
/// Simulation tick period, in nanoseconds of cluster time (20 Hz).
pub const TICK_NS: i64 = 50_000_000;
/// The world is the square `0..WORLD_SIZE` on both axes.
pub const WORLD_SIZE: i32 = 1000;
/// Fastest movement, units per tick on each axis.
pub const MAX_SPEED: i32 = 10;
/// Reach of an attack (Euclidean).
pub const ATTACK_RANGE: i32 = 30;
/// Health an attack takes.
pub const ATTACK_DAMAGE: i32 = 25;
/// Health a heal restores.
pub const HEAL: i32 = 10;
/// Full health.
pub const MAX_HP: i32 = 100;
/// Room ids are below this.
pub const MAX_ROOMS: u32 = 256;
/// Most players in a room.
pub const MAX_PLAYERS_PER_ROOM: usize = 32;
/// Longest player name, in bytes.
pub const MAX_NAME_BYTES: usize = 32;

/// One player in a snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PlayerRecord {
    /// Session id.
    pub session: u64,
    /// Room.
    pub room: u32,
    /// Name.
    pub name: String,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// Velocity.
    pub vx: i32,
    /// Velocity.
    pub vy: i32,
    /// Health.
    pub hp: i32,
    /// Score.
    pub score: u32,
    /// Action waiting for the next tick.
    pub pending: Option<ActionKind>,
}

/// The server's snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GameSnapshot {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Ticks simulated so far.
    pub tick: u64,
    /// Whether the tick timer is scheduled (the timer itself is in the cluster's snapshot).
    pub armed: bool,
    /// Cluster time the next tick is due.
    pub next_tick_ns: i64,
    /// Every player, by session id.
    pub players: Vec<PlayerRecord>,
}

/// A game server: rooms, players, a fixed tick on a cluster timer.
///
/// The timer runs while anyone plays: the first join arms it, each tick re-arms it one period
/// after the previous deadline (fixed rate), and it stops when the last player leaves.
#[derive(Debug, Default)]
pub struct GameServer {
    players: BTreeMap<u64, PlayerRecord>,
    rooms: BTreeMap<u32, BTreeSet<u64>>,
    tick: u64,
    armed: bool,
    next_tick_ns: i64,
    scratch: AlignedVec,
    out: AlignedVec,
}

impl GameServer {
    /// Ticks simulated so far.
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The number of players.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// A player, by session id.
    pub fn player(&self, session: u64) -> Option<&PlayerRecord> {
        self.players.get(&session)
    }

    /// The players of `room`, by id.
    pub fn room(&self, room: u32) -> Vec<u64> {
        self.rooms
            .get(&room)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether the tick timer is scheduled.
    pub fn is_ticking(&self) -> bool {
        self.armed
    }

    /// The state as a snapshot value.
    pub fn to_snapshot(&self) -> GameSnapshot {
        GameSnapshot {
            version: FORMAT_VERSION,
            tick: self.tick,
            armed: self.armed,
            next_tick_ns: self.next_tick_ns,
            players: self.players.values().cloned().collect(),
        }
    }

    /// A server holding a snapshot's state.
    ///
    /// # Panics
    /// If the snapshot's version is not [`FORMAT_VERSION`] or a room is over capacity.
    pub fn from_snapshot(snapshot: GameSnapshot) -> Self {
        assert_eq!(snapshot.version, FORMAT_VERSION, "game snapshot version");
        let mut server = Self {
            tick: snapshot.tick,
            armed: snapshot.armed,
            next_tick_ns: snapshot.next_tick_ns,
            ..Self::default()
        };
        for p in snapshot.players {
            let room = server.rooms.entry(p.room).or_default();
            room.insert(p.session);
            assert!(room.len() <= MAX_PLAYERS_PER_ROOM && p.room < MAX_ROOMS);
            server.players.insert(p.session, p);
        }
        server
    }

    /// A hash of the replicated state (CRC-32C of the canonical snapshot).
    pub fn state_hash(&self) -> u32 {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_snapshot()).expect("serializes");
        crc32c::crc32c(&bytes)
    }

    fn send(&mut self, cluster: &mut dyn Cluster, session: u64, event: &GameEvent) {
        codec::encode_into(event, &mut self.out);
        let _ = cluster.offer_egress(SessionId(session), &self.out);
    }

    fn apply(&mut self, cluster: &mut dyn Cluster, session: u64, request: &ArchivedGameRequest) {
        let result = match request {
            ArchivedGameRequest::Join { room, name } => {
                self.join(cluster, session, room.to_native(), name.as_str())
            }
            ArchivedGameRequest::Move { vx, vy } => self.with_player(session, |p| {
                p.vx = vx.to_native().clamp(-MAX_SPEED, MAX_SPEED);
                p.vy = vy.to_native().clamp(-MAX_SPEED, MAX_SPEED);
            }),
            ArchivedGameRequest::Action { kind } => {
                let kind = ActionKind::from(kind);
                self.with_player(session, |p| p.pending = Some(kind))
            }
            ArchivedGameRequest::Leave => match self.remove(cluster, session) {
                Some(room) => {
                    self.send(cluster, session, &GameEvent::Left { room });
                    Ok(())
                }
                None => Err(GameError::NotJoined),
            },
        };
        if let Err(reason) = result {
            self.send(cluster, session, &GameEvent::Rejected { reason });
        }
    }

    fn with_player(
        &mut self,
        session: u64,
        f: impl FnOnce(&mut PlayerRecord),
    ) -> Result<(), GameError> {
        self.players
            .get_mut(&session)
            .map(f)
            .ok_or(GameError::NotJoined)
    }

    fn join(
        &mut self,
        cluster: &mut dyn Cluster,
        session: u64,
        room: u32,
        name: &str,
    ) -> Result<(), GameError> {
        if room >= MAX_ROOMS {
            return Err(GameError::UnknownRoom);
        }
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(GameError::BadName);
        }
        if self.players.contains_key(&session) {
            return Err(GameError::AlreadyJoined);
        }
        let members = self.rooms.entry(room).or_default();
        if members.len() >= MAX_PLAYERS_PER_ROOM {
            return Err(GameError::RoomFull);
        }
        members.insert(session);
        let (x, y) = spawn_point(session, self.tick);
        self.players.insert(
            session,
            PlayerRecord {
                session,
                room,
                name: name.to_owned(),
                x,
                y,
                vx: 0,
                vy: 0,
                hp: MAX_HP,
                score: 0,
                pending: None,
            },
        );
        if !self.armed {
            self.armed = true;
            self.next_tick_ns = cluster.time() + TICK_NS;
            cluster.schedule_timer(TICK_TIMER, self.next_tick_ns);
        }
        self.send(
            cluster,
            session,
            &GameEvent::Joined {
                room,
                player: session,
                x,
                y,
            },
        );
        Ok(())
    }

    /// Removes a player; returns its room.
    fn remove(&mut self, cluster: &mut dyn Cluster, session: u64) -> Option<u32> {
        let player = self.players.remove(&session)?;
        let members = self.rooms.get_mut(&player.room).expect("player's room");
        members.remove(&session);
        if members.is_empty() {
            self.rooms.remove(&player.room);
        }
        if self.players.is_empty() && self.armed {
            self.armed = false;
            cluster.cancel_timer(TICK_TIMER);
        }
        Some(player.room)
    }

    /// One simulation step of every room, then the broadcast.
    fn step(&mut self, cluster: &mut dyn Cluster) {
        self.tick += 1;
        let rooms: Vec<u32> = self.rooms.keys().copied().collect();
        for room in rooms {
            let ids: Vec<u64> = self.rooms[&room].iter().copied().collect();
            for id in &ids {
                let p = self.players.get_mut(id).expect("room member plays");
                p.x = (p.x + p.vx).clamp(0, WORLD_SIZE - 1);
                p.y = (p.y + p.vy).clamp(0, WORLD_SIZE - 1);
            }
            for id in &ids {
                let Some(action) = self.players.get_mut(id).and_then(|p| p.pending.take()) else {
                    continue;
                };
                match action {
                    ActionKind::Heal => {
                        let p = self.players.get_mut(id).expect("plays");
                        p.hp = (p.hp + HEAL).min(MAX_HP);
                    }
                    ActionKind::Attack => self.attack(*id, &ids),
                }
            }
            let players: Vec<PlayerView> = ids
                .iter()
                .map(|id| {
                    let p = &self.players[id];
                    PlayerView {
                        player: p.session,
                        x: p.x,
                        y: p.y,
                        hp: p.hp,
                        score: p.score,
                    }
                })
                .collect();
            let state = GameEvent::State {
                room,
                tick: self.tick,
                players,
            };
            for id in ids {
                self.send(cluster, id, &state);
            }
        }
    }

    fn attack(&mut self, attacker: u64, room: &[u64]) {
        let (ax, ay) = {
            let a = &self.players[&attacker];
            (i64::from(a.x), i64::from(a.y))
        };
        let range = i64::from(ATTACK_RANGE);
        let mut knocked_out = 0;
        for &victim in room.iter().filter(|&&v| v != attacker) {
            let v = self.players.get_mut(&victim).expect("plays");
            let (dx, dy) = (i64::from(v.x) - ax, i64::from(v.y) - ay);
            if dx * dx + dy * dy > range * range {
                continue;
            }
            v.hp -= ATTACK_DAMAGE;
            if v.hp <= 0 {
                knocked_out += 1;
                (v.x, v.y) = spawn_point(victim, self.tick);
                (v.vx, v.vy, v.hp) = (0, 0, MAX_HP);
            }
        }
        self.players.get_mut(&attacker).expect("plays").score += knocked_out;
    }
}

/// A deterministic spawn point for `session` at `tick` (SplitMix64 of both).
fn spawn_point(session: u64, tick: u64) -> (i32, i32) {
    let mut z = session ^ tick.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let size = WORLD_SIZE as u64;
    ((z % size) as i32, ((z >> 32) % size) as i32)
}

impl ClusteredService for GameServer {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        let Some(mut image) = snapshot else { return };
        let bytes = image.read_bytes().expect("game snapshot present");
        let snapshot = codec::decode::<GameSnapshot>(bytes).expect("valid game snapshot");
        *self = Self::from_snapshot(snapshot);
    }

    fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}

    fn on_session_close(
        &mut self,
        cluster: &mut dyn Cluster,
        session: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
        self.remove(cluster, session.id.0);
    }

    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _: i64,
        message: &[u8],
        _: &Header,
    ) {
        let Some(session) = session else { return };
        let mut scratch = std::mem::take(&mut self.scratch);
        match codec::access::<GameRequest>(message, &mut scratch) {
            Ok(request) => self.apply(cluster, session.0, request),
            Err(_) => self.send(
                cluster,
                session.0,
                &GameEvent::Rejected {
                    reason: GameError::Malformed,
                },
            ),
        }
        self.scratch = scratch;
    }

    fn on_timer_event(&mut self, cluster: &mut dyn Cluster, correlation_id: u64, now: i64) {
        if correlation_id != TICK_TIMER || !self.armed {
            return;
        }
        self.step(cluster);
        // Fixed rate: one period after the previous deadline, skipping periods already past.
        self.next_tick_ns += TICK_NS;
        while self.next_tick_ns <= now {
            self.next_tick_ns += TICK_NS;
        }
        cluster.schedule_timer(TICK_TIMER, self.next_tick_ns);
    }

    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_snapshot()).expect("serializes");
        writer.write_bytes(&bytes);
    }

    fn on_role_change(&mut self, _: Role) {}

    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}

    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordingCluster;

    fn send(g: &mut GameServer, c: &mut RecordingCluster, session: u64, r: GameRequest) {
        let h = Header {
            log_position: 0,
            term: 1,
            timestamp: c.now_ns,
            sequence: 1,
        };
        let now = c.now_ns;
        g.on_session_message(c, Some(SessionId(session)), now, &r.encode(), &h);
    }

    fn events(c: &mut RecordingCluster, session: u64) -> Vec<GameEvent> {
        c.take(session)
            .iter()
            .map(|b| GameEvent::decode(b).unwrap())
            .collect()
    }

    fn fire(g: &mut GameServer, c: &mut RecordingCluster) {
        let at = c.timers[&TICK_TIMER];
        c.now_ns = at;
        g.on_timer_event(c, TICK_TIMER, at);
    }

    fn join(room: u32, name: &str) -> GameRequest {
        GameRequest::Join {
            room,
            name: name.into(),
        }
    }

    #[test]
    fn join_move_tick_broadcast_and_leave() {
        let (mut g, mut c) = (
            GameServer::default(),
            RecordingCluster::with_sessions([1, 2, 3]),
        );
        send(&mut g, &mut c, 1, join(7, "ann"));
        assert!(matches!(
            events(&mut c, 1)[..],
            [GameEvent::Joined {
                room: 7,
                player: 1,
                ..
            }]
        ));
        assert_eq!(
            c.timers.get(&TICK_TIMER),
            Some(&TICK_NS),
            "first join arms the tick"
        );
        send(&mut g, &mut c, 2, join(7, "bob"));
        send(&mut g, &mut c, 3, join(8, "cy"));
        c.egress.clear();
        let start = g.player(1).unwrap().clone();
        send(&mut g, &mut c, 1, GameRequest::Move { vx: 50, vy: -3 });
        fire(&mut g, &mut c);
        let p = g.player(1).unwrap();
        assert_eq!(
            p.x,
            (start.x + MAX_SPEED).min(WORLD_SIZE - 1),
            "speed is clamped"
        );
        assert_eq!(p.y, (start.y - 3).max(0));
        assert_eq!(c.timers.get(&TICK_TIMER), Some(&(2 * TICK_NS)), "re-armed");
        for s in [1, 2] {
            match &events(&mut c, s)[..] {
                [
                    GameEvent::State {
                        room: 7,
                        tick: 1,
                        players,
                    },
                ] => {
                    assert_eq!(players.iter().map(|p| p.player).collect::<Vec<_>>(), [1, 2]);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            &events(&mut c, 3)[..],
            [GameEvent::State { room: 8, .. }]
        ));
        send(&mut g, &mut c, 1, GameRequest::Leave);
        assert_eq!(events(&mut c, 1), [GameEvent::Left { room: 7 }]);
        assert_eq!(g.room(7), [2]);
    }

    #[test]
    fn rejections() {
        let (mut g, mut c) = (GameServer::default(), RecordingCluster::with_sessions([1]));
        let rejected = |c: &mut RecordingCluster| match &events(c, 1)[..] {
            [GameEvent::Rejected { reason }] => *reason,
            other => panic!("{other:?}"),
        };
        send(&mut g, &mut c, 1, GameRequest::Move { vx: 1, vy: 1 });
        assert_eq!(rejected(&mut c), GameError::NotJoined);
        send(&mut g, &mut c, 1, join(MAX_ROOMS, "x"));
        assert_eq!(rejected(&mut c), GameError::UnknownRoom);
        send(&mut g, &mut c, 1, join(0, ""));
        assert_eq!(rejected(&mut c), GameError::BadName);
        send(&mut g, &mut c, 1, join(0, "a"));
        c.take(1);
        send(&mut g, &mut c, 1, join(0, "a"));
        assert_eq!(rejected(&mut c), GameError::AlreadyJoined);
        let h = Header {
            log_position: 0,
            term: 1,
            timestamp: 0,
            sequence: 1,
        };
        g.on_session_message(&mut c, Some(SessionId(1)), 0, b"\x01\x02", &h);
        assert_eq!(rejected(&mut c), GameError::Malformed);
        for s in 100..100 + MAX_PLAYERS_PER_ROOM as u64 {
            c.sessions.insert(s);
            send(&mut g, &mut c, s, join(1, "p"));
        }
        c.sessions.insert(999);
        send(&mut g, &mut c, 999, join(1, "late"));
        assert!(matches!(
            events(&mut c, 999)[..],
            [GameEvent::Rejected {
                reason: GameError::RoomFull
            }]
        ));
    }

    #[test]
    fn attacks_knock_out_and_score() {
        let (mut g, mut c) = (
            GameServer::default(),
            RecordingCluster::with_sessions([1, 2]),
        );
        send(&mut g, &mut c, 1, join(0, "a"));
        send(&mut g, &mut c, 2, join(0, "b"));
        // Put them side by side (test-only: through the snapshot form).
        let mut snap = g.to_snapshot();
        (snap.players[0].x, snap.players[0].y) = (500, 500);
        (snap.players[1].x, snap.players[1].y) = (510, 500);
        g = GameServer::from_snapshot(snap);
        for round in 1..=4 {
            send(
                &mut g,
                &mut c,
                1,
                GameRequest::Action {
                    kind: ActionKind::Attack,
                },
            );
            fire(&mut g, &mut c);
            if round < 4 {
                assert_eq!(g.player(2).unwrap().hp, MAX_HP - round * ATTACK_DAMAGE);
            }
        }
        assert_eq!(g.player(1).unwrap().score, 1);
        assert_eq!(g.player(2).unwrap().hp, MAX_HP, "respawned");
        send(
            &mut g,
            &mut c,
            2,
            GameRequest::Action {
                kind: ActionKind::Heal,
            },
        );
        fire(&mut g, &mut c);
        assert_eq!(g.player(2).unwrap().hp, MAX_HP);
    }

    #[test]
    fn session_close_removes_player_and_stops_the_tick() {
        let (mut g, mut c) = (GameServer::default(), RecordingCluster::with_sessions([1]));
        send(&mut g, &mut c, 1, join(0, "a"));
        fire(&mut g, &mut c);
        let principal: &[u8] = &[];
        let s = ClientSession {
            id: SessionId(1),
            principal,
        };
        g.on_session_close(&mut c, &s, 0, CloseReason::Timeout);
        assert_eq!(g.player_count(), 0);
        assert!(!g.is_ticking() && c.timers.is_empty());
    }

    #[test]
    fn snapshot_round_trip() {
        let (mut g, mut c) = (
            GameServer::default(),
            RecordingCluster::with_sessions([1, 2, 3]),
        );
        for s in 1..=3 {
            send(&mut g, &mut c, s, join((s % 2) as u32, "p"));
            send(
                &mut g,
                &mut c,
                s,
                GameRequest::Move {
                    vx: s as i32,
                    vy: -(s as i32),
                },
            );
        }
        send(
            &mut g,
            &mut c,
            2,
            GameRequest::Action {
                kind: ActionKind::Attack,
            },
        );
        fire(&mut g, &mut c);
        send(
            &mut g,
            &mut c,
            3,
            GameRequest::Action {
                kind: ActionKind::Heal,
            },
        );
        let mut bytes = Vec::new();
        g.on_take_snapshot(&mut SnapshotWriter::new(&mut bytes));
        let mut r = GameServer::default();
        r.on_start(&mut c, Some(SnapshotImage::new(&bytes)));
        assert_eq!(r.state_hash(), g.state_hash());
        let (mut c1, mut c2) = (c.clone(), c.clone());
        fire(&mut g, &mut c1);
        fire(&mut r, &mut c2);
        assert_eq!(c1.egress, c2.egress);
        assert_eq!(r.state_hash(), g.state_hash());
    }
}
