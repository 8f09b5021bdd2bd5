//! The matching engine's messages: [`Request`]s in the log, [`Event`]s on the sessions.
//!
//! Both are rkyv 0.8 archives (format version [`FORMAT_VERSION`], little-endian, 32-bit
//! relative pointers: rkyv's defaults). The engine reads a request zero-copy straight from the
//! log bytes after validating it with bytecheck; clients decode events with [`Event::decode`].
//!
//! ```text
//! Request::New     { instrument, client_order_id, side, kind, price, quantity }
//! Request::Cancel  { instrument, order_id }
//! Request::Modify  { instrument, order_id, price, quantity }
//!
//! Event::Accepted  { instrument, order_id, client_order_id, side, kind, price, quantity }
//! Event::Rejected  { instrument, order_id, client_order_id, reason }
//! Event::Filled    { instrument, order_id, client_order_id, side, price, quantity, leaves, liquidity }
//! Event::Cancelled { instrument, order_id, client_order_id, quantity, reason }
//! Event::Modified  { instrument, order_id, client_order_id, price, quantity, kept_priority }
//! ```

// rkyv's derive emits undocumented helper types for enum variants with fields; every type
// written here is documented by hand.
#![allow(missing_docs)]

use rkyv::{Archive, Deserialize, Serialize};

use crate::codec::{self, DecodeError};

/// Version of the message layout written by this build.
pub const FORMAT_VERSION: u32 = 1;

/// Buy or sell.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum Side {
    /// Bid.
    Buy = 0,
    /// Offer.
    Sell = 1,
}

impl Side {
    /// The opposite side.
    pub fn opposite(self) -> Self {
        match self {
            Self::Buy => Self::Sell,
            Self::Sell => Self::Buy,
        }
    }
}

impl From<&ArchivedSide> for Side {
    fn from(a: &ArchivedSide) -> Self {
        match a {
            ArchivedSide::Buy => Self::Buy,
            ArchivedSide::Sell => Self::Sell,
        }
    }
}

/// How an order treats the quantity it cannot fill at once.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum OrderKind {
    /// Trades what crosses up to its price, rests the rest.
    Limit = 0,
    /// Trades at any price; the rest is cancelled. Its price is ignored.
    Market = 1,
    /// Trades what crosses up to its price; the rest is cancelled.
    ImmediateOrCancel = 2,
    /// Rests only: rejected if it would cross.
    PostOnly = 3,
}

impl From<&ArchivedOrderKind> for OrderKind {
    fn from(a: &ArchivedOrderKind) -> Self {
        match a {
            ArchivedOrderKind::Limit => Self::Limit,
            ArchivedOrderKind::Market => Self::Market,
            ArchivedOrderKind::ImmediateOrCancel => Self::ImmediateOrCancel,
            ArchivedOrderKind::PostOnly => Self::PostOnly,
        }
    }
}

/// Why a request was refused.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum RejectReason {
    /// The message is not a valid request archive.
    Malformed = 0,
    /// Quantity zero.
    ZeroQuantity = 1,
    /// Price zero or negative on a priced order.
    NonPositivePrice = 2,
    /// No such instrument.
    UnknownInstrument = 3,
    /// No such order open on this session.
    UnknownOrder = 4,
    /// The session already has an open order with this client order id.
    DuplicateClientOrderId = 5,
    /// A post-only order would have traded.
    PostOnlyWouldCross = 6,
    /// The book holds its maximum number of orders.
    BookFull = 7,
    /// Quantity above [`crate::matching::MAX_QUANTITY`].
    QuantityTooLarge = 8,
    /// Price above [`crate::matching::MAX_PRICE`].
    PriceTooLarge = 9,
}

/// Why an order left the book without trading all of it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum CancelReason {
    /// The owner asked.
    Requested = 0,
    /// The unfilled rest of a market or immediate-or-cancel order.
    ImmediateRemainder = 1,
    /// The owner's session closed.
    SessionClosed = 2,
}

/// Whether a fill added or took liquidity.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[rkyv(derive(Debug))]
#[repr(u8)]
pub enum Liquidity {
    /// The resting order.
    Maker = 0,
    /// The incoming order.
    Taker = 1,
}

/// A new order.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct NewOrderRequest {
    /// Instrument id.
    pub instrument: u32,
    /// The client's id for the order, unique among the session's open orders.
    pub client_order_id: u64,
    /// Buy or sell.
    pub side: Side,
    /// Order kind.
    pub kind: OrderKind,
    /// Limit price in ticks (ignored for market orders).
    pub price: i64,
    /// Quantity in lots.
    pub quantity: u64,
}

/// A client request, as it travels in the log.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Request {
    /// Enter an order.
    New(NewOrderRequest),
    /// Cancel an open order of this session.
    Cancel {
        /// Instrument id.
        instrument: u32,
        /// The engine's order id (from `Accepted`).
        order_id: u64,
    },
    /// Change an open order's price and/or open quantity.
    Modify {
        /// Instrument id.
        instrument: u32,
        /// The engine's order id.
        order_id: u64,
        /// New limit price.
        price: i64,
        /// New open quantity.
        quantity: u64,
    },
}

/// A reply on a session.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum Event {
    /// The order was accepted and given `order_id`.
    Accepted {
        /// Instrument id.
        instrument: u32,
        /// Engine order id.
        order_id: u64,
        /// Client order id.
        client_order_id: u64,
        /// Side.
        side: Side,
        /// Kind.
        kind: OrderKind,
        /// Price.
        price: i64,
        /// Quantity.
        quantity: u64,
    },
    /// The request was refused; nothing changed.
    Rejected {
        /// Instrument id (as requested).
        instrument: u32,
        /// Engine order id (cancel and modify; 0 for new orders).
        order_id: u64,
        /// Client order id (new orders; 0 otherwise).
        client_order_id: u64,
        /// Why.
        reason: RejectReason,
    },
    /// Part or all of an order traded.
    Filled {
        /// Instrument id.
        instrument: u32,
        /// Engine order id.
        order_id: u64,
        /// Client order id.
        client_order_id: u64,
        /// The order's side.
        side: Side,
        /// Trade price.
        price: i64,
        /// Traded quantity.
        quantity: u64,
        /// Quantity still open after the trade.
        leaves: u64,
        /// Maker or taker.
        liquidity: Liquidity,
    },
    /// (The rest of) an order was cancelled.
    Cancelled {
        /// Instrument id.
        instrument: u32,
        /// Engine order id.
        order_id: u64,
        /// Client order id.
        client_order_id: u64,
        /// Quantity cancelled.
        quantity: u64,
        /// Why.
        reason: CancelReason,
    },
    /// An order was modified.
    Modified {
        /// Instrument id.
        instrument: u32,
        /// Engine order id.
        order_id: u64,
        /// Client order id.
        client_order_id: u64,
        /// New price.
        price: i64,
        /// Open quantity after the modification (and any trades it caused).
        quantity: u64,
        /// Whether it kept its place in the queue.
        kept_priority: bool,
    },
}

impl Request {
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

impl Event {
    /// Encodes the event as an rkyv archive.
    pub fn encode(&self) -> rkyv::util::AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(self).expect("plain data always serializes")
    }

    /// Decodes (and validates) an encoded event.
    ///
    /// # Errors
    /// [`DecodeError`] if `bytes` is not a valid archive.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        codec::decode::<Self>(bytes)
    }
}
