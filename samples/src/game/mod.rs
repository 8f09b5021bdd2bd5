//! A game server: rooms of players who join through their sessions, move and act; a fixed
//! simulation tick driven by a cluster timer re-armed every tick; each room's state broadcast
//! to its players after every tick; a player removed when its session closes or times out.

pub mod messages;
mod server;

pub use messages::{ActionKind, GameError, GameEvent, GameRequest, PlayerView};
pub use server::{
    ATTACK_DAMAGE, ATTACK_RANGE, GameServer, GameSnapshot, HEAL, MAX_HP, MAX_NAME_BYTES,
    MAX_PLAYERS_PER_ROOM, MAX_ROOMS, MAX_SPEED, PlayerRecord, TICK_NS, TICK_TIMER, WORLD_SIZE,
};
