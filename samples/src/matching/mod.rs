//! A matching engine: central limit order books for several instruments.
//!
//! * [`Book`]: one instrument's book — price levels in a `BTreeMap`, each a FIFO of slab
//!   slots, an order-id index; price-time priority; limit, market, immediate-or-cancel and
//!   post-only orders; cancel; modify.
//! * [`MatchingEngine`]: the [`tandem_service_api::ClusteredService`] holding the books,
//!   answering every request on its session and reporting fills to both sides.
//! * [`Request`] and [`Event`]: the rkyv-encoded messages.

mod book;
mod engine;
pub mod messages;

pub use book::{
    AddOutcome, Book, Fill, IdBuildHasher, IdHasher, MAX_PRICE, MAX_QUANTITY, ModifyOutcome,
    NewOrder, OrderId, Price, Quantity, RestingOrder,
};
pub use engine::{
    DEFAULT_INSTRUMENTS, DEFAULT_MAX_ORDERS_PER_BOOK, EngineSnapshot, MatchingEngine, SnapshotOrder,
};
pub use messages::{
    CancelReason, Event, Liquidity, NewOrderRequest, OrderKind, RejectReason, Request, Side,
};
