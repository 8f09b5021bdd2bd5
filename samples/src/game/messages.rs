//! The game server's messages: [`GameRequest`]s in the log, [`GameEvent`]s on the sessions.
//!
//! rkyv 0.8 archives (format version [`FORMAT_VERSION`]), read zero-copy and validated.
//!
//! ```text
//! GameRequest::Join   { room, name }   -> GameEvent::Joined { room, player, x, y } | Rejected
//! GameRequest::Move   { vx, vy }       -> (velocity from the next tick on) | Rejected
//! GameRequest::Action { kind }         -> (resolved at the next tick) | Rejected
//! GameRequest::Leave                   -> GameEvent::Left { room } | Rejected
//! every tick, to each player of a room -> GameEvent::State { room, tick, players }
//! ```

// rkyv's derive emits undocumented helper types for enum variants with fields; every type
// written here is documented by hand.
#![allow(missing_docs)]

use rkyv::{Archive, Deserialize, Serialize};

use crate::codec::{self, DecodeError};

/// Version of the message layout written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// An action a player can take; resolved at the next tick.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum ActionKind {
    /// Damage every other player of the room within [`crate::game::ATTACK_RANGE`].
    Attack = 0,
    /// Restore some health.
    Heal = 1,
}

impl From<&ArchivedActionKind> for ActionKind {
    fn from(a: &ArchivedActionKind) -> Self {
        match a {
            ArchivedActionKind::Attack => Self::Attack,
            ArchivedActionKind::Heal => Self::Heal,
        }
    }
}

/// A request, as it travels in the log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum GameRequest {
    /// Join room `room` under `name` (a session plays in one room at a time).
    Join {
        /// Room id, below [`crate::game::MAX_ROOMS`].
        room: u32,
        /// Display name, at most [`crate::game::MAX_NAME_BYTES`] bytes.
        name: String,
    },
    /// Set the player's velocity (clamped to [`crate::game::MAX_SPEED`] per tick).
    Move {
        /// Units per tick along x.
        vx: i32,
        /// Units per tick along y.
        vy: i32,
    },
    /// Act at the next tick.
    Action {
        /// What to do.
        kind: ActionKind,
    },
    /// Leave the room.
    Leave,
}

/// Why a request was refused.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum GameError {
    /// Not a valid request archive.
    Malformed = 0,
    /// No such room.
    UnknownRoom = 1,
    /// The room is full.
    RoomFull = 2,
    /// The session already plays.
    AlreadyJoined = 3,
    /// The session does not play.
    NotJoined = 4,
    /// The name is empty or too long.
    BadName = 5,
}

/// One player as broadcast.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PlayerView {
    /// The player's id (its session id).
    pub player: u64,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// Health.
    pub hp: i32,
    /// Knock-outs scored.
    pub score: u32,
}

/// A message on a session.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum GameEvent {
    /// The session joined `room` as `player`, spawned at (`x`, `y`).
    Joined {
        /// Room id.
        room: u32,
        /// Player id (the session id).
        player: u64,
        /// Spawn position.
        x: i32,
        /// Spawn position.
        y: i32,
    },
    /// The session left `room`.
    Left {
        /// Room id.
        room: u32,
    },
    /// The room's state after tick `tick`.
    State {
        /// Room id.
        room: u32,
        /// Simulation tick.
        tick: u64,
        /// Every player in the room, by id.
        players: Vec<PlayerView>,
    },
    /// The request was refused; nothing changed.
    Rejected {
        /// Why.
        reason: GameError,
    },
}

impl GameRequest {
    /// Encodes the request as an rkyv archive.
    pub fn encode(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("plain data always serializes")
    }

    /// Decodes (and validates) an encoded request.
    ///
    /// # Errors
    /// [`DecodeError`] if `bytes` is not a valid archive.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode::<Self>(bytes)
    }
}

impl GameEvent {
    /// Decodes (and validates) an encoded event.
    ///
    /// # Errors
    /// [`DecodeError`] if `bytes` is not a valid archive.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode::<Self>(bytes)
    }
}
