//! One instrument's central limit order book.
//!
//! # Layout
//!
//! ```text
//!  bids: BTreeMap<Price, Level>          asks: BTreeMap<Price, Level>
//!    best = last key                        best = first key
//!         │                                      │
//!  Level { head, tail, quantity, count }  (a FIFO of slab slots, oldest first)
//!         │
//!         ▼
//!  slab: Vec<Node> ── node.prev / node.next link the slots of one level (NIL ends);
//!                     free slots are chained through `next` from `free_head`.
//!  index: order id ──► slot (a hash map with a fixed, deterministic hasher)
//! ```
//!
//! Adding, cancelling and filling an order touch one `BTreeMap` entry, one slab slot and one
//! index entry; once the slab and the index have grown to the book's working size, none of them
//! allocates. Price-time priority: better price first, then earlier arrival (the level's FIFO).
//! A reduction of quantity at the same price keeps the order's place; any other modification
//! moves it to the back of its (new) level.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::matching::messages::{OrderKind, RejectReason, Side};

/// Engine-assigned order id (unique within the engine).
pub type OrderId = u64;
/// Price in ticks (positive for orders that carry a price).
pub type Price = i64;
/// Quantity in lots.
pub type Quantity = u64;

/// The largest quantity one order may carry: keeps every level's total far from overflow.
pub const MAX_QUANTITY: Quantity = 1 << 40;
/// The largest price one order may carry.
pub const MAX_PRICE: Price = 1 << 48;

const NIL: u32 = u32::MAX;

/// A hasher for order ids: a folded multiply (as rustc-hash), fast and deterministic.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, value: u64) {
        let m = u128::from(self.0 ^ value) * 0x9E37_79B9_7F4A_7C15_u128;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// The build-hasher of order-id maps.
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// An order resting in the book, as reported and as snapshotted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestingOrder {
    /// Engine order id.
    pub order_id: OrderId,
    /// The owning session's id.
    pub owner: u64,
    /// The owner's own id for the order.
    pub client_order_id: u64,
    /// Buy or sell.
    pub side: Side,
    /// Limit price.
    pub price: Price,
    /// Quantity still open.
    pub quantity: Quantity,
}

/// A new order for [`Book::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    /// Engine order id (the caller assigns it; must not be in the book).
    pub order_id: OrderId,
    /// The owning session's id.
    pub owner: u64,
    /// The owner's own id for the order.
    pub client_order_id: u64,
    /// Buy or sell.
    pub side: Side,
    /// Limit, market, immediate-or-cancel or post-only.
    pub kind: OrderKind,
    /// Limit price (ignored for market orders).
    pub price: Price,
    /// Quantity.
    pub quantity: Quantity,
}

/// A trade between an incoming (taker) order and a resting (maker) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// The incoming order.
    pub taker_order_id: OrderId,
    /// The taker's quantity still open after this fill.
    pub taker_leaves: Quantity,
    /// The resting order.
    pub maker_order_id: OrderId,
    /// The maker's owner.
    pub maker_owner: u64,
    /// The maker's client order id.
    pub maker_client_order_id: u64,
    /// The maker's quantity still open after this fill (0: it left the book).
    pub maker_leaves: Quantity,
    /// The maker's side.
    pub maker_side: Side,
    /// Trade price (the maker's).
    pub price: Price,
    /// Traded quantity.
    pub quantity: Quantity,
}

/// What became of an added order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddOutcome {
    /// Quantity traded on entry.
    pub filled: Quantity,
    /// Quantity left resting in the book.
    pub resting: Quantity,
    /// Quantity cancelled (the unfilled rest of a market or immediate-or-cancel order).
    pub cancelled: Quantity,
}

/// What became of a modified order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModifyOutcome {
    /// Whether the order kept its place in the queue.
    pub kept_priority: bool,
    /// Quantity traded (a price change can make the order cross).
    pub filled: Quantity,
    /// Quantity resting after the modification.
    pub resting: Quantity,
    /// The order as it was before.
    pub before: RestingOrder,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    order_id: OrderId,
    owner: u64,
    client_order_id: u64,
    price: Price,
    quantity: Quantity,
    prev: u32,
    next: u32,
    side: Side,
}

impl Node {
    const EMPTY: Node = Node {
        order_id: 0,
        owner: 0,
        client_order_id: 0,
        price: 0,
        quantity: 0,
        prev: NIL,
        next: NIL,
        side: Side::Buy,
    };

    fn resting(&self) -> RestingOrder {
        RestingOrder {
            order_id: self.order_id,
            owner: self.owner,
            client_order_id: self.client_order_id,
            side: self.side,
            price: self.price,
            quantity: self.quantity,
        }
    }
}

/// One price level: a FIFO of slab slots.
#[derive(Debug, Clone, Copy)]
struct Level {
    head: u32,
    tail: u32,
    quantity: Quantity,
    count: u32,
}

/// The order slab: slots reused through a free list.
#[derive(Debug, Default)]
struct Slab {
    nodes: Vec<Node>,
    free_head: u32,
    used: usize,
}

impl Slab {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            nodes: Vec::with_capacity(capacity),
            free_head: NIL,
            used: 0,
        }
    }

    fn alloc(&mut self, node: Node) -> u32 {
        self.used += 1;
        if self.free_head == NIL {
            let slot = u32::try_from(self.nodes.len()).expect("fewer than 2^32 orders");
            assert!(slot != NIL);
            self.nodes.push(node);
            slot
        } else {
            let slot = self.free_head;
            self.free_head = self.nodes[slot as usize].next;
            self.nodes[slot as usize] = node;
            slot
        }
    }

    fn free(&mut self, slot: u32) {
        debug_assert!(self.used > 0);
        self.used -= 1;
        let node = &mut self.nodes[slot as usize];
        *node = Node::EMPTY;
        node.next = self.free_head;
        self.free_head = slot;
    }
}

/// A central limit order book for one instrument.
#[derive(Debug)]
pub struct Book {
    bids: BTreeMap<Price, Level>,
    asks: BTreeMap<Price, Level>,
    slab: Slab,
    index: HashMap<OrderId, u32, IdBuildHasher>,
    max_orders: usize,
}

impl Book {
    /// An empty book holding at most `max_orders` resting orders.
    pub fn new(max_orders: usize) -> Self {
        assert!(max_orders > 0 && max_orders < NIL as usize);
        let initial = max_orders.min(1 << 16);
        let mut index = HashMap::with_hasher(IdBuildHasher::default());
        index.reserve(initial);
        Self {
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            slab: Slab::with_capacity(initial),
            index,
            max_orders,
        }
    }

    /// The number of resting orders.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no order rests.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Best bid price and the quantity at it.
    pub fn best_bid(&self) -> Option<(Price, Quantity)> {
        self.bids.last_key_value().map(|(p, l)| (*p, l.quantity))
    }

    /// Best ask price and the quantity at it.
    pub fn best_ask(&self) -> Option<(Price, Quantity)> {
        self.asks.first_key_value().map(|(p, l)| (*p, l.quantity))
    }

    /// A resting order.
    pub fn order(&self, order_id: OrderId) -> Option<RestingOrder> {
        self.index
            .get(&order_id)
            .map(|&slot| self.slab.nodes[slot as usize].resting())
    }

    /// Total resting quantity on one side.
    pub fn side_quantity(&self, side: Side) -> Quantity {
        let levels = match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        };
        levels.values().map(|l| l.quantity).sum()
    }

    /// Calls `f` for every resting order in priority order: bids best to worst, then asks best
    /// to worst, each level oldest first. This walk is canonical: it depends only on the book's
    /// contents and priorities, never on slab layout.
    pub fn for_each_order(&self, mut f: impl FnMut(&RestingOrder)) {
        for level in self.bids.values().rev().chain(self.asks.values()) {
            let mut slot = level.head;
            while slot != NIL {
                let node = &self.slab.nodes[slot as usize];
                f(&node.resting());
                slot = node.next;
            }
        }
    }

    /// Checks the book's internal invariants (levels, links, totals, index, no crossing).
    ///
    /// # Panics
    /// If one does not hold: a bug.
    pub fn check_invariants(&self) {
        if let (Some((bid, _)), Some((ask, _))) = (self.best_bid(), self.best_ask()) {
            assert!(bid < ask, "crossed book: bid {bid} >= ask {ask}");
        }
        let mut seen = 0usize;
        for (side, levels) in [(Side::Buy, &self.bids), (Side::Sell, &self.asks)] {
            for (&price, level) in levels {
                assert!(level.count > 0 && level.head != NIL && level.tail != NIL);
                let (mut slot, mut prev, mut qty, mut count) = (level.head, NIL, 0, 0);
                while slot != NIL {
                    let node = &self.slab.nodes[slot as usize];
                    assert_eq!(node.prev, prev);
                    assert_eq!(node.price, price);
                    assert_eq!(node.side, side);
                    assert!(node.quantity > 0);
                    assert_eq!(self.index.get(&node.order_id), Some(&slot));
                    qty += node.quantity;
                    count += 1;
                    prev = slot;
                    slot = node.next;
                }
                assert_eq!(prev, level.tail);
                assert_eq!((qty, count), (level.quantity, level.count));
                seen += count as usize;
            }
        }
        assert_eq!(seen, self.index.len());
        assert_eq!(seen, self.slab.used);
    }

    /// Adds an order: it trades with what it crosses, then rests (limit, post-only) or has its
    /// rest cancelled (market, immediate-or-cancel). Fills are appended to `fills` in the order
    /// they happen.
    ///
    /// # Errors
    /// The reason the order is rejected (nothing changed): zero or too large a quantity, a
    /// non-positive or too large price for a priced order, a post-only order that would cross,
    /// or a full book.
    pub fn add(
        &mut self,
        order: NewOrder,
        fills: &mut Vec<Fill>,
    ) -> Result<AddOutcome, RejectReason> {
        if order.quantity == 0 {
            return Err(RejectReason::ZeroQuantity);
        }
        if order.quantity > MAX_QUANTITY {
            return Err(RejectReason::QuantityTooLarge);
        }
        let limit = match order.kind {
            OrderKind::Market => match order.side {
                Side::Buy => Price::MAX,
                Side::Sell => Price::MIN,
            },
            _ if order.price <= 0 => return Err(RejectReason::NonPositivePrice),
            _ if order.price > MAX_PRICE => return Err(RejectReason::PriceTooLarge),
            _ => order.price,
        };
        debug_assert!(!self.index.contains_key(&order.order_id), "order id reused");
        let rests = matches!(order.kind, OrderKind::Limit | OrderKind::PostOnly);
        if order.kind == OrderKind::PostOnly && self.crosses(order.side, limit) {
            return Err(RejectReason::PostOnlyWouldCross);
        }
        if rests && self.index.len() >= self.max_orders && !self.crosses(order.side, limit) {
            return Err(RejectReason::BookFull);
        }
        let leaves = self.match_against(order.order_id, order.side, limit, order.quantity, fills);
        let filled = order.quantity - leaves;
        if leaves == 0 {
            return Ok(AddOutcome {
                filled,
                resting: 0,
                cancelled: 0,
            });
        }
        if !rests || self.index.len() >= self.max_orders {
            return Ok(AddOutcome {
                filled,
                resting: 0,
                cancelled: leaves,
            });
        }
        self.insert(RestingOrder {
            order_id: order.order_id,
            owner: order.owner,
            client_order_id: order.client_order_id,
            side: order.side,
            price: limit,
            quantity: leaves,
        });
        Ok(AddOutcome {
            filled,
            resting: leaves,
            cancelled: 0,
        })
    }

    /// Cancels a resting order; returns it as it was.
    pub fn cancel(&mut self, order_id: OrderId) -> Option<RestingOrder> {
        let slot = self.index.remove(&order_id)?;
        let order = self.slab.nodes[slot as usize].resting();
        self.unlink(slot);
        self.slab.free(slot);
        Some(order)
    }

    /// Modifies a resting order to `price` and `quantity` (the new open quantity). Reducing the
    /// quantity at the same price keeps the order's place; anything else cancels and re-adds it
    /// as a limit order with the same id (losing priority; it may trade if it now crosses).
    ///
    /// # Errors
    /// `UnknownOrder`, `ZeroQuantity`, `QuantityTooLarge`, `NonPositivePrice`, `PriceTooLarge`
    /// (nothing changed).
    pub fn modify(
        &mut self,
        order_id: OrderId,
        price: Price,
        quantity: Quantity,
        fills: &mut Vec<Fill>,
    ) -> Result<ModifyOutcome, RejectReason> {
        let &slot = self
            .index
            .get(&order_id)
            .ok_or(RejectReason::UnknownOrder)?;
        if quantity == 0 {
            return Err(RejectReason::ZeroQuantity);
        }
        if quantity > MAX_QUANTITY {
            return Err(RejectReason::QuantityTooLarge);
        }
        if price <= 0 {
            return Err(RejectReason::NonPositivePrice);
        }
        if price > MAX_PRICE {
            return Err(RejectReason::PriceTooLarge);
        }
        let before = self.slab.nodes[slot as usize].resting();
        if price == before.price && quantity <= before.quantity {
            let reduce_by = before.quantity - quantity;
            self.slab.nodes[slot as usize].quantity = quantity;
            let level = self.level_mut(before.side, price);
            level.quantity -= reduce_by;
            return Ok(ModifyOutcome {
                kept_priority: true,
                filled: 0,
                resting: quantity,
                before,
            });
        }
        self.cancel(order_id).expect("indexed order");
        let outcome = self
            .add(
                NewOrder {
                    order_id,
                    owner: before.owner,
                    client_order_id: before.client_order_id,
                    side: before.side,
                    kind: OrderKind::Limit,
                    price,
                    quantity,
                },
                fills,
            )
            .expect("validated above; a slot was just freed");
        debug_assert_eq!(outcome.cancelled, 0);
        Ok(ModifyOutcome {
            kept_priority: false,
            filled: outcome.filled,
            resting: outcome.resting,
            before,
        })
    }

    /// Puts an order at the back of its level without matching (restoring a snapshot).
    ///
    /// # Panics
    /// If the order would cross the book, its id is already in the book, its quantity is zero
    /// or the book is full: the snapshot is not one this book wrote.
    pub fn restore(&mut self, order: RestingOrder) {
        assert!(order.quantity > 0 && order.quantity <= MAX_QUANTITY);
        assert!(order.price > 0 && order.price <= MAX_PRICE);
        assert!(
            !self.crosses(order.side, order.price),
            "restored order crosses"
        );
        assert!(
            !self.index.contains_key(&order.order_id),
            "restored order id twice"
        );
        assert!(
            self.index.len() < self.max_orders,
            "restored book over capacity"
        );
        self.insert(order);
    }

    fn crosses(&self, side: Side, limit: Price) -> bool {
        match side {
            Side::Buy => self
                .asks
                .first_key_value()
                .is_some_and(|(&p, _)| p <= limit),
            Side::Sell => self.bids.last_key_value().is_some_and(|(&p, _)| p >= limit),
        }
    }

    fn level_mut(&mut self, side: Side, price: Price) -> &mut Level {
        let levels = match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        levels.get_mut(&price).expect("order's level exists")
    }

    /// Trades `quantity` of `taker` against the opposite side up to `limit`; returns what is
    /// left.
    fn match_against(
        &mut self,
        taker: OrderId,
        side: Side,
        limit: Price,
        mut quantity: Quantity,
        fills: &mut Vec<Fill>,
    ) -> Quantity {
        let Self {
            bids,
            asks,
            slab,
            index,
            ..
        } = self;
        while quantity > 0 {
            let mut entry = match side {
                Side::Buy => match asks.first_entry() {
                    Some(e) if *e.key() <= limit => e,
                    _ => break,
                },
                Side::Sell => match bids.last_entry() {
                    Some(e) if *e.key() >= limit => e,
                    _ => break,
                },
            };
            let price = *entry.key();
            let level = entry.get_mut();
            while quantity > 0 && level.head != NIL {
                let slot = level.head;
                let node = &mut slab.nodes[slot as usize];
                let traded = quantity.min(node.quantity);
                node.quantity -= traded;
                quantity -= traded;
                level.quantity -= traded;
                fills.push(Fill {
                    taker_order_id: taker,
                    taker_leaves: quantity,
                    maker_order_id: node.order_id,
                    maker_owner: node.owner,
                    maker_client_order_id: node.client_order_id,
                    maker_leaves: node.quantity,
                    maker_side: node.side,
                    price,
                    quantity: traded,
                });
                if node.quantity == 0 {
                    let next = node.next;
                    index.remove(&node.order_id);
                    level.head = next;
                    level.count -= 1;
                    if next == NIL {
                        level.tail = NIL;
                    } else {
                        slab.nodes[next as usize].prev = NIL;
                    }
                    slab.free(slot);
                }
            }
            if level.head == NIL {
                debug_assert_eq!(level.quantity, 0);
                entry.remove();
            }
        }
        quantity
    }

    fn insert(&mut self, order: RestingOrder) {
        let levels = match order.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.entry(order.price).or_insert(Level {
            head: NIL,
            tail: NIL,
            quantity: 0,
            count: 0,
        });
        let slot = self.slab.alloc(Node {
            order_id: order.order_id,
            owner: order.owner,
            client_order_id: order.client_order_id,
            price: order.price,
            quantity: order.quantity,
            prev: level.tail,
            next: NIL,
            side: order.side,
        });
        if level.tail == NIL {
            level.head = slot;
        } else {
            self.slab.nodes[level.tail as usize].next = slot;
        }
        level.tail = slot;
        level.quantity += order.quantity;
        level.count += 1;
        let prev = self.index.insert(order.order_id, slot);
        debug_assert!(prev.is_none());
    }

    /// Takes slot out of its level (the slot stays allocated).
    fn unlink(&mut self, slot: u32) {
        let node = self.slab.nodes[slot as usize];
        let levels = match node.side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        };
        let level = levels.get_mut(&node.price).expect("order's level exists");
        if node.prev == NIL {
            level.head = node.next;
        } else {
            self.slab.nodes[node.prev as usize].next = node.next;
        }
        if node.next == NIL {
            level.tail = node.prev;
        } else {
            self.slab.nodes[node.next as usize].prev = node.prev;
        }
        level.quantity -= node.quantity;
        level.count -= 1;
        if level.count == 0 {
            debug_assert!(level.head == NIL && level.quantity == 0);
            levels.remove(&node.price);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: u64, side: Side, kind: OrderKind, price: Price, quantity: Quantity) -> NewOrder {
        NewOrder {
            order_id: id,
            owner: id % 3,
            client_order_id: id + 1000,
            side,
            kind,
            price,
            quantity,
        }
    }

    fn limit(id: u64, side: Side, price: Price, quantity: Quantity) -> NewOrder {
        order(id, side, OrderKind::Limit, price, quantity)
    }

    fn ids(book: &Book) -> Vec<(u64, Quantity)> {
        let mut v = Vec::new();
        book.for_each_order(|o| v.push((o.order_id, o.quantity)));
        v
    }

    #[test]
    fn price_time_priority() {
        let mut book = Book::new(100);
        let mut fills = Vec::new();
        book.add(limit(1, Side::Sell, 101, 5), &mut fills).unwrap();
        book.add(limit(2, Side::Sell, 100, 5), &mut fills).unwrap();
        book.add(limit(3, Side::Sell, 100, 5), &mut fills).unwrap();
        book.add(limit(4, Side::Sell, 102, 5), &mut fills).unwrap();
        let out = book.add(limit(5, Side::Buy, 101, 12), &mut fills).unwrap();
        assert_eq!(
            out,
            AddOutcome {
                filled: 12,
                resting: 0,
                cancelled: 0
            }
        );
        let got: Vec<_> = fills
            .iter()
            .map(|f| (f.maker_order_id, f.price, f.quantity))
            .collect();
        assert_eq!(got, vec![(2, 100, 5), (3, 100, 5), (1, 101, 2)]);
        assert_eq!(fills[2].maker_leaves, 3);
        assert_eq!(fills[2].taker_leaves, 0);
        assert_eq!(ids(&book), vec![(1, 3), (4, 5)]);
        book.check_invariants();
    }

    #[test]
    fn partial_fill_rests_the_remainder() {
        let mut book = Book::new(100);
        let mut fills = Vec::new();
        book.add(limit(1, Side::Buy, 99, 4), &mut fills).unwrap();
        let out = book.add(limit(2, Side::Sell, 98, 10), &mut fills).unwrap();
        assert_eq!((out.filled, out.resting), (4, 6));
        assert_eq!(book.best_ask(), Some((98, 6)));
        assert_eq!(book.best_bid(), None);
        assert_eq!(fills[0].price, 99, "trades at the maker's price");
        book.check_invariants();
    }

    #[test]
    fn market_and_ioc_never_rest() {
        let mut book = Book::new(100);
        let mut fills = Vec::new();
        book.add(limit(1, Side::Sell, 100, 3), &mut fills).unwrap();
        let out = book
            .add(order(2, Side::Buy, OrderKind::Market, 0, 5), &mut fills)
            .unwrap();
        assert_eq!((out.filled, out.resting, out.cancelled), (3, 0, 2));
        book.add(limit(3, Side::Sell, 105, 3), &mut fills).unwrap();
        let out = book
            .add(
                order(4, Side::Buy, OrderKind::ImmediateOrCancel, 104, 5),
                &mut fills,
            )
            .unwrap();
        assert_eq!((out.filled, out.resting, out.cancelled), (0, 0, 5));
        assert_eq!(ids(&book), vec![(3, 3)]);
        book.check_invariants();
    }

    #[test]
    fn post_only_rejected_when_crossing() {
        let mut book = Book::new(100);
        let mut fills = Vec::new();
        book.add(limit(1, Side::Sell, 100, 3), &mut fills).unwrap();
        assert_eq!(
            book.add(order(2, Side::Buy, OrderKind::PostOnly, 100, 1), &mut fills),
            Err(RejectReason::PostOnlyWouldCross)
        );
        let out = book
            .add(order(3, Side::Buy, OrderKind::PostOnly, 99, 1), &mut fills)
            .unwrap();
        assert_eq!(out.resting, 1);
        assert!(fills.is_empty());
    }

    #[test]
    fn every_rejection() {
        let mut book = Book::new(1);
        let mut fills = Vec::new();
        assert_eq!(
            book.add(limit(1, Side::Buy, 10, 0), &mut fills),
            Err(RejectReason::ZeroQuantity)
        );
        assert_eq!(
            book.add(limit(1, Side::Buy, 0, 1), &mut fills),
            Err(RejectReason::NonPositivePrice)
        );
        assert_eq!(
            book.add(limit(1, Side::Buy, -5, 1), &mut fills),
            Err(RejectReason::NonPositivePrice)
        );
        assert_eq!(
            book.add(limit(1, Side::Buy, MAX_PRICE + 1, 1), &mut fills),
            Err(RejectReason::PriceTooLarge)
        );
        assert_eq!(
            book.add(limit(1, Side::Buy, 10, MAX_QUANTITY + 1), &mut fills),
            Err(RejectReason::QuantityTooLarge)
        );
        book.add(limit(1, Side::Buy, 10, 1), &mut fills).unwrap();
        assert_eq!(
            book.add(limit(2, Side::Buy, 10, 1), &mut fills),
            Err(RejectReason::BookFull)
        );
        assert_eq!(
            book.modify(9, 10, 1, &mut fills),
            Err(RejectReason::UnknownOrder)
        );
        assert_eq!(
            book.modify(1, 10, 0, &mut fills),
            Err(RejectReason::ZeroQuantity)
        );
        assert_eq!(
            book.modify(1, 0, 1, &mut fills),
            Err(RejectReason::NonPositivePrice)
        );
        assert_eq!(book.cancel(9), None);
        // A crossing order is accepted by a full book: it frees room as it trades.
        let out = book.add(limit(3, Side::Sell, 10, 1), &mut fills).unwrap();
        assert_eq!(out.filled, 1);
        assert!(book.is_empty());
        book.check_invariants();
    }

    #[test]
    fn cancel_from_middle_head_and_tail() {
        let mut book = Book::new(100);
        let mut fills = Vec::new();
        for id in 1..=4 {
            book.add(limit(id, Side::Buy, 50, id), &mut fills).unwrap();
        }
        assert_eq!(book.cancel(2).map(|o| o.quantity), Some(2));
        book.check_invariants();
        assert_eq!(book.cancel(1).map(|o| o.quantity), Some(1));
        book.check_invariants();
        assert_eq!(book.cancel(4).map(|o| o.quantity), Some(4));
        book.check_invariants();
        assert_eq!(ids(&book), vec![(3, 3)]);
        assert_eq!(book.cancel(3).map(|o| o.order_id), Some(3));
        assert!(book.is_empty() && book.best_bid().is_none());
        assert_eq!(book.cancel(3), None);
        book.check_invariants();
    }

    #[test]
    fn modify_priority_rules() {
        let mut book = Book::new(100);
        let mut fills = Vec::new();
        for id in 1..=3 {
            book.add(limit(id, Side::Sell, 100, 10), &mut fills)
                .unwrap();
        }
        // Reduce: keeps its place.
        let out = book.modify(1, 100, 4, &mut fills).unwrap();
        assert!(out.kept_priority);
        assert_eq!(ids(&book), vec![(1, 4), (2, 10), (3, 10)]);
        assert_eq!(book.best_ask(), Some((100, 24)));
        // Increase: back of the queue.
        let out = book.modify(2, 100, 11, &mut fills).unwrap();
        assert!(!out.kept_priority);
        assert_eq!(ids(&book), vec![(1, 4), (3, 10), (2, 11)]);
        // Price change: new level, back of it.
        book.modify(1, 101, 4, &mut fills).unwrap();
        assert_eq!(ids(&book), vec![(3, 10), (2, 11), (1, 4)]);
        book.check_invariants();
        // A price change that crosses trades.
        book.add(limit(7, Side::Buy, 90, 5), &mut fills).unwrap();
        let out = book.modify(7, 100, 5, &mut fills).unwrap();
        assert_eq!((out.filled, out.resting), (5, 0));
        assert_eq!(fills.last().unwrap().maker_order_id, 3);
        assert_eq!(book.order(3).unwrap().quantity, 5);
        book.check_invariants();
    }

    #[test]
    fn slots_are_reused() {
        let mut book = Book::new(4);
        let mut fills = Vec::new();
        for round in 0..1000u64 {
            book.add(
                limit(round, Side::Buy, 10 + (round % 3) as i64, 1),
                &mut fills,
            )
            .unwrap();
            if round >= 2 {
                assert!(book.cancel(round - 2).is_some());
            }
        }
        assert_eq!(book.len(), 2);
        assert!(book.slab.nodes.len() <= 4);
        book.check_invariants();
    }
}
