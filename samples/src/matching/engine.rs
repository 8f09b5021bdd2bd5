//! The matching engine service: order books for several instruments behind a
//! [`ClusteredService`].

use std::collections::HashMap;

use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};
use tandem_service_api::{
    ClientSession, CloseReason, Cluster, ClusteredService, Header, LeadershipTermEvent, Role,
    SessionId, SnapshotImage, SnapshotWriter,
};

use crate::codec;
use crate::matching::book::{Book, Fill, NewOrder, OrderId, RestingOrder};
use crate::matching::messages::{
    ArchivedRequest, CancelReason, Event, Liquidity, OrderKind, RejectReason, Side,
};
use crate::matching::messages::{FORMAT_VERSION, Request};

/// Instruments of [`MatchingEngine::default`].
pub const DEFAULT_INSTRUMENTS: u32 = 4;
/// Resting orders per book in [`MatchingEngine::default`].
pub const DEFAULT_MAX_ORDERS_PER_BOOK: usize = 1 << 20;

/// One resting order in a snapshot.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SnapshotOrder {
    /// Instrument id.
    pub instrument: u32,
    /// Engine order id.
    pub order_id: u64,
    /// Owner session id.
    pub owner: u64,
    /// Client order id.
    pub client_order_id: u64,
    /// Side.
    pub side: Side,
    /// Price.
    pub price: i64,
    /// Open quantity.
    pub quantity: u64,
}

/// The engine's snapshot: every book's orders in priority order (the canonical walk of
/// [`Book::for_each_order`]), instrument by instrument, and the next order id.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct EngineSnapshot {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Number of instruments.
    pub instruments: u32,
    /// Resting orders per book.
    pub max_orders_per_book: u64,
    /// The next order id to assign.
    pub next_order_id: u64,
    /// The resting orders.
    pub orders: Vec<SnapshotOrder>,
}

/// A central-limit-order-book matching engine for instruments `0..instruments`.
///
/// Every request is answered on its session: `Accepted` or `Rejected` first, then `Filled`
/// events (a maker's fills go to the maker's session too) and `Cancelled` for the unfilled rest
/// of a market or immediate-or-cancel order. A session's open orders are cancelled when the
/// session closes.
#[derive(Debug)]
pub struct MatchingEngine {
    books: Vec<Book>,
    max_orders_per_book: usize,
    next_order_id: OrderId,
    /// (session, client order id) of every resting order -> (instrument, order id).
    open: HashMap<(u64, u64), (u32, OrderId)>,
    fills: Vec<Fill>,
    scratch: AlignedVec,
    out: AlignedVec,
}

impl Default for MatchingEngine {
    fn default() -> Self {
        Self::new(DEFAULT_INSTRUMENTS, DEFAULT_MAX_ORDERS_PER_BOOK)
    }
}

impl MatchingEngine {
    /// An engine with `instruments` empty books of at most `max_orders_per_book` orders each.
    pub fn new(instruments: u32, max_orders_per_book: usize) -> Self {
        assert!(instruments > 0);
        Self {
            books: (0..instruments)
                .map(|_| Book::new(max_orders_per_book))
                .collect(),
            max_orders_per_book,
            next_order_id: 1,
            open: HashMap::new(),
            fills: Vec::with_capacity(64),
            scratch: AlignedVec::new(),
            out: AlignedVec::new(),
        }
    }

    /// The book of `instrument`.
    pub fn book(&self, instrument: u32) -> Option<&Book> {
        self.books.get(instrument as usize)
    }

    /// The number of instruments.
    pub fn instruments(&self) -> u32 {
        self.books.len() as u32
    }

    /// The next order id the engine will assign.
    pub fn next_order_id(&self) -> OrderId {
        self.next_order_id
    }

    /// The number of resting orders across all books.
    pub fn open_orders(&self) -> usize {
        debug_assert_eq!(
            self.open.len(),
            self.books.iter().map(Book::len).sum::<usize>()
        );
        self.open.len()
    }

    /// The state as a snapshot value (canonical: equal books give equal snapshots).
    pub fn to_snapshot(&self) -> EngineSnapshot {
        let mut orders = Vec::with_capacity(self.open.len());
        for (instrument, book) in self.books.iter().enumerate() {
            book.for_each_order(|o| {
                orders.push(SnapshotOrder {
                    instrument: instrument as u32,
                    order_id: o.order_id,
                    owner: o.owner,
                    client_order_id: o.client_order_id,
                    side: o.side,
                    price: o.price,
                    quantity: o.quantity,
                });
            });
        }
        EngineSnapshot {
            version: FORMAT_VERSION,
            instruments: self.books.len() as u32,
            max_orders_per_book: self.max_orders_per_book as u64,
            next_order_id: self.next_order_id,
            orders,
        }
    }

    /// Rebuilds an engine from a snapshot value.
    ///
    /// # Panics
    /// If the snapshot is inconsistent (a crossed book, a repeated order id): it was not
    /// written by this engine.
    pub fn from_snapshot(snapshot: &EngineSnapshot) -> Self {
        assert_eq!(
            snapshot.version, FORMAT_VERSION,
            "matching snapshot version"
        );
        let mut engine = Self::new(snapshot.instruments, snapshot.max_orders_per_book as usize);
        engine.next_order_id = snapshot.next_order_id;
        for o in &snapshot.orders {
            assert!(o.order_id < snapshot.next_order_id);
            engine.books[o.instrument as usize].restore(RestingOrder {
                order_id: o.order_id,
                owner: o.owner,
                client_order_id: o.client_order_id,
                side: o.side,
                price: o.price,
                quantity: o.quantity,
            });
            let prev = engine
                .open
                .insert((o.owner, o.client_order_id), (o.instrument, o.order_id));
            assert!(prev.is_none(), "client order id open twice in snapshot");
        }
        engine
    }

    /// The snapshot bytes (an rkyv archive of [`EngineSnapshot`]).
    pub fn snapshot_bytes(&self) -> AlignedVec {
        rkyv::to_bytes::<rkyv::rancor::Error>(&self.to_snapshot()).expect("serializes")
    }

    /// A hash of the replicated state (CRC-32C of the canonical snapshot): equal on every
    /// member that applied the same log.
    pub fn state_hash(&self) -> u32 {
        crc32c::crc32c(&self.snapshot_bytes())
    }

    /// Checks every book's invariants and the open-order index.
    ///
    /// # Panics
    /// On a broken invariant.
    pub fn check_invariants(&self) {
        for book in &self.books {
            book.check_invariants();
        }
        for (&(owner, cloid), &(instrument, order_id)) in &self.open {
            let o = self.books[instrument as usize]
                .order(order_id)
                .expect("open order rests");
            assert_eq!((o.owner, o.client_order_id), (owner, cloid));
        }
        assert_eq!(
            self.open.len(),
            self.books.iter().map(Book::len).sum::<usize>()
        );
    }

    /// Applies one encoded request from `session`, sending the replies through `cluster`.
    /// (What `on_session_message` does; public so that tools and benchmarks can drive the
    /// engine without a cluster.)
    pub fn apply(&mut self, cluster: &mut dyn Cluster, session: SessionId, message: &[u8]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        match codec::access::<Request>(message, &mut scratch) {
            Ok(request) => self.apply_request(cluster, session, request),
            Err(_) => self.send(
                cluster,
                session,
                &Event::Rejected {
                    instrument: 0,
                    order_id: 0,
                    client_order_id: 0,
                    reason: RejectReason::Malformed,
                },
            ),
        }
        self.scratch = scratch;
    }

    fn apply_request(
        &mut self,
        cluster: &mut dyn Cluster,
        session: SessionId,
        request: &ArchivedRequest,
    ) {
        match request {
            ArchivedRequest::New(o) => {
                let order = NewOrderFields {
                    instrument: o.instrument.to_native(),
                    client_order_id: o.client_order_id.to_native(),
                    side: Side::from(&o.side),
                    kind: OrderKind::from(&o.kind),
                    price: o.price.to_native(),
                    quantity: o.quantity.to_native(),
                };
                self.new_order(cluster, session, order);
            }
            ArchivedRequest::Cancel {
                instrument,
                order_id,
            } => self.cancel(
                cluster,
                session,
                instrument.to_native(),
                order_id.to_native(),
            ),
            ArchivedRequest::Modify {
                instrument,
                order_id,
                price,
                quantity,
            } => self.modify(
                cluster,
                session,
                instrument.to_native(),
                order_id.to_native(),
                price.to_native(),
                quantity.to_native(),
            ),
        }
    }

    fn new_order(&mut self, cluster: &mut dyn Cluster, session: SessionId, o: NewOrderFields) {
        let reject = |reason| Event::Rejected {
            instrument: o.instrument,
            order_id: 0,
            client_order_id: o.client_order_id,
            reason,
        };
        let Some(book) = self.books.get_mut(o.instrument as usize) else {
            return self.send(cluster, session, &reject(RejectReason::UnknownInstrument));
        };
        if self.open.contains_key(&(session.0, o.client_order_id)) {
            return self.send(
                cluster,
                session,
                &reject(RejectReason::DuplicateClientOrderId),
            );
        }
        let order_id = self.next_order_id;
        let mut fills = std::mem::take(&mut self.fills);
        fills.clear();
        let result = book.add(
            NewOrder {
                order_id,
                owner: session.0,
                client_order_id: o.client_order_id,
                side: o.side,
                kind: o.kind,
                price: o.price,
                quantity: o.quantity,
            },
            &mut fills,
        );
        match result {
            Err(reason) => self.send(cluster, session, &reject(reason)),
            Ok(outcome) => {
                self.next_order_id += 1;
                self.send(
                    cluster,
                    session,
                    &Event::Accepted {
                        instrument: o.instrument,
                        order_id,
                        client_order_id: o.client_order_id,
                        side: o.side,
                        kind: o.kind,
                        price: o.price,
                        quantity: o.quantity,
                    },
                );
                self.report_fills(
                    cluster,
                    session,
                    o.instrument,
                    o.client_order_id,
                    o.side,
                    &fills,
                );
                if outcome.cancelled > 0 {
                    self.send(
                        cluster,
                        session,
                        &Event::Cancelled {
                            instrument: o.instrument,
                            order_id,
                            client_order_id: o.client_order_id,
                            quantity: outcome.cancelled,
                            reason: CancelReason::ImmediateRemainder,
                        },
                    );
                }
                if outcome.resting > 0 {
                    self.open
                        .insert((session.0, o.client_order_id), (o.instrument, order_id));
                }
            }
        }
        self.fills = fills;
    }

    fn cancel(&mut self, cluster: &mut dyn Cluster, session: SessionId, instrument: u32, id: u64) {
        let reject = |reason| Event::Rejected {
            instrument,
            order_id: id,
            client_order_id: 0,
            reason,
        };
        let Some(book) = self.books.get_mut(instrument as usize) else {
            return self.send(cluster, session, &reject(RejectReason::UnknownInstrument));
        };
        if book.order(id).is_none_or(|o| o.owner != session.0) {
            return self.send(cluster, session, &reject(RejectReason::UnknownOrder));
        }
        let order = book.cancel(id).expect("order rests");
        self.open.remove(&(session.0, order.client_order_id));
        self.send(
            cluster,
            session,
            &Event::Cancelled {
                instrument,
                order_id: id,
                client_order_id: order.client_order_id,
                quantity: order.quantity,
                reason: CancelReason::Requested,
            },
        );
    }

    fn modify(
        &mut self,
        cluster: &mut dyn Cluster,
        session: SessionId,
        instrument: u32,
        id: u64,
        price: i64,
        quantity: u64,
    ) {
        let reject = |reason| Event::Rejected {
            instrument,
            order_id: id,
            client_order_id: 0,
            reason,
        };
        let Some(book) = self.books.get_mut(instrument as usize) else {
            return self.send(cluster, session, &reject(RejectReason::UnknownInstrument));
        };
        if book.order(id).is_none_or(|o| o.owner != session.0) {
            return self.send(cluster, session, &reject(RejectReason::UnknownOrder));
        }
        let mut fills = std::mem::take(&mut self.fills);
        fills.clear();
        match book.modify(id, price, quantity, &mut fills) {
            Err(reason) => self.send(cluster, session, &reject(reason)),
            Ok(outcome) => {
                let cloid = outcome.before.client_order_id;
                self.send(
                    cluster,
                    session,
                    &Event::Modified {
                        instrument,
                        order_id: id,
                        client_order_id: cloid,
                        price,
                        quantity: outcome.resting,
                        kept_priority: outcome.kept_priority,
                    },
                );
                self.report_fills(
                    cluster,
                    session,
                    instrument,
                    cloid,
                    outcome.before.side,
                    &fills,
                );
                if outcome.resting == 0 {
                    self.open.remove(&(session.0, cloid));
                }
            }
        }
        self.fills = fills;
    }

    fn report_fills(
        &mut self,
        cluster: &mut dyn Cluster,
        taker: SessionId,
        instrument: u32,
        taker_cloid: u64,
        taker_side: Side,
        fills: &[Fill],
    ) {
        for f in fills {
            debug_assert_eq!(f.maker_side, taker_side.opposite());
            self.send(
                cluster,
                taker,
                &Event::Filled {
                    instrument,
                    order_id: f.taker_order_id,
                    client_order_id: taker_cloid,
                    side: taker_side,
                    price: f.price,
                    quantity: f.quantity,
                    leaves: f.taker_leaves,
                    liquidity: Liquidity::Taker,
                },
            );
            self.send(
                cluster,
                SessionId(f.maker_owner),
                &Event::Filled {
                    instrument,
                    order_id: f.maker_order_id,
                    client_order_id: f.maker_client_order_id,
                    side: f.maker_side,
                    price: f.price,
                    quantity: f.quantity,
                    leaves: f.maker_leaves,
                    liquidity: Liquidity::Maker,
                },
            );
            if f.maker_leaves == 0 {
                let removed = self.open.remove(&(f.maker_owner, f.maker_client_order_id));
                debug_assert_eq!(removed, Some((instrument, f.maker_order_id)));
            }
        }
    }

    fn send(&mut self, cluster: &mut dyn Cluster, session: SessionId, event: &Event) {
        codec::encode_into(event, &mut self.out);
        // A refusal is the same on every member (a closed session, say): nothing to do.
        let _ = cluster.offer_egress(session, &self.out);
    }

    /// Cancels every open order of `session` (in order id order, so deterministically).
    fn cancel_all(&mut self, session: SessionId) {
        let mut ids: Vec<(OrderId, u32, u64)> = self
            .open
            .iter()
            .filter(|((owner, _), _)| *owner == session.0)
            .map(|(&(_, cloid), &(instrument, id))| (id, instrument, cloid))
            .collect();
        ids.sort_unstable();
        for (id, instrument, cloid) in ids {
            self.books[instrument as usize]
                .cancel(id)
                .expect("open order rests");
            self.open.remove(&(session.0, cloid));
        }
    }
}

struct NewOrderFields {
    instrument: u32,
    client_order_id: u64,
    side: Side,
    kind: OrderKind,
    price: i64,
    quantity: u64,
}

impl ClusteredService for MatchingEngine {
    fn on_start(&mut self, _: &mut dyn Cluster, snapshot: Option<SnapshotImage<'_>>) {
        let Some(mut image) = snapshot else { return };
        let bytes = image.read_bytes().expect("matching snapshot present");
        let snapshot = codec::decode::<EngineSnapshot>(bytes).expect("valid matching snapshot");
        *self = Self::from_snapshot(&snapshot);
    }

    fn on_session_open(&mut self, _: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {}

    fn on_session_close(
        &mut self,
        _: &mut dyn Cluster,
        session: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
        self.cancel_all(session.id);
    }

    fn on_session_message(
        &mut self,
        cluster: &mut dyn Cluster,
        session: Option<SessionId>,
        _: i64,
        message: &[u8],
        _: &Header,
    ) {
        if let Some(session) = session {
            self.apply(cluster, session, message);
        }
    }

    fn on_timer_event(&mut self, _: &mut dyn Cluster, _: u64, _: i64) {}

    fn on_take_snapshot(&mut self, writer: &mut SnapshotWriter<'_>) {
        writer.write_bytes(&self.snapshot_bytes());
    }

    fn on_role_change(&mut self, _: Role) {}

    fn on_new_leadership_term_event(&mut self, _: &mut dyn Cluster, _: &LeadershipTermEvent) {}

    fn on_terminate(&mut self, _: &mut dyn Cluster) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RecordingCluster;
    use crate::matching::NewOrderRequest;

    fn new(
        instrument: u32,
        cloid: u64,
        side: Side,
        kind: OrderKind,
        price: i64,
        qty: u64,
    ) -> Vec<u8> {
        Request::New(NewOrderRequest {
            instrument,
            client_order_id: cloid,
            side,
            kind,
            price,
            quantity: qty,
        })
        .encode()
        .to_vec()
    }

    fn events(cluster: &mut RecordingCluster, session: u64) -> Vec<Event> {
        cluster
            .take(session)
            .iter()
            .map(|b| Event::decode(b).expect("valid event"))
            .collect()
    }

    fn reason(events: &[Event]) -> RejectReason {
        match events {
            [Event::Rejected { reason, .. }] => *reason,
            other => panic!("expected one rejection, got {other:?}"),
        }
    }

    #[test]
    fn fills_reach_both_sessions_and_every_request_is_answered() {
        let mut engine = MatchingEngine::new(2, 100);
        let mut c = RecordingCluster::with_sessions([1, 2]);
        engine.apply(
            &mut c,
            SessionId(1),
            &new(0, 10, Side::Sell, OrderKind::Limit, 100, 5),
        );
        let e = events(&mut c, 1);
        assert!(matches!(
            e[..],
            [Event::Accepted {
                order_id: 1,
                client_order_id: 10,
                ..
            }]
        ));
        engine.apply(
            &mut c,
            SessionId(2),
            &new(0, 20, Side::Buy, OrderKind::ImmediateOrCancel, 100, 8),
        );
        let taker = events(&mut c, 2);
        assert!(matches!(taker[0], Event::Accepted { order_id: 2, .. }));
        assert!(matches!(
            taker[1],
            Event::Filled {
                order_id: 2,
                quantity: 5,
                leaves: 3,
                liquidity: Liquidity::Taker,
                ..
            }
        ));
        assert!(matches!(
            taker[2],
            Event::Cancelled {
                order_id: 2,
                quantity: 3,
                reason: CancelReason::ImmediateRemainder,
                ..
            }
        ));
        let maker = events(&mut c, 1);
        assert!(matches!(
            maker[..],
            [Event::Filled {
                order_id: 1,
                client_order_id: 10,
                leaves: 0,
                liquidity: Liquidity::Maker,
                ..
            }]
        ));
        assert_eq!(engine.open_orders(), 0);
        engine.check_invariants();
    }

    #[test]
    fn rejections_carry_reasons() {
        let mut engine = MatchingEngine::new(2, 100);
        let mut c = RecordingCluster::with_sessions([1, 2]);
        let s = SessionId(1);
        engine.apply(&mut c, s, &new(0, 1, Side::Buy, OrderKind::Limit, 100, 0));
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::ZeroQuantity);
        engine.apply(&mut c, s, &new(0, 1, Side::Buy, OrderKind::Limit, 0, 1));
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::NonPositivePrice);
        engine.apply(&mut c, s, &new(7, 1, Side::Buy, OrderKind::Limit, 10, 1));
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::UnknownInstrument);
        engine.apply(&mut c, s, &new(0, 1, Side::Buy, OrderKind::Limit, 10, 1));
        assert_eq!(events(&mut c, 1).len(), 1);
        engine.apply(&mut c, s, &new(0, 1, Side::Buy, OrderKind::Limit, 11, 1));
        assert_eq!(
            reason(&events(&mut c, 1)),
            RejectReason::DuplicateClientOrderId
        );
        let cancel = |id| {
            Request::Cancel {
                instrument: 0,
                order_id: id,
            }
            .encode()
            .to_vec()
        };
        engine.apply(&mut c, s, &cancel(99));
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::UnknownOrder);
        // Another session's order is unknown to this one.
        engine.apply(&mut c, SessionId(2), &cancel(1));
        assert_eq!(reason(&events(&mut c, 2)), RejectReason::UnknownOrder);
        engine.apply(&mut c, s, &[1, 2, 3]);
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::Malformed);
        engine.apply(
            &mut c,
            s,
            &new(0, 2, Side::Sell, OrderKind::PostOnly, 10, 1),
        );
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::PostOnlyWouldCross);
        let modify = Request::Modify {
            instrument: 0,
            order_id: 1,
            price: 12,
            quantity: 0,
        };
        engine.apply(&mut c, s, &modify.encode());
        assert_eq!(reason(&events(&mut c, 1)), RejectReason::ZeroQuantity);
        engine.apply(&mut c, s, &cancel(1));
        assert!(matches!(
            events(&mut c, 1)[..],
            [Event::Cancelled {
                order_id: 1,
                reason: CancelReason::Requested,
                ..
            }]
        ));
        assert_eq!(engine.next_order_id(), 2, "rejected orders take no id");
    }

    #[test]
    fn snapshot_round_trip_keeps_hash_and_priority() {
        let mut engine = MatchingEngine::new(3, 1000);
        let mut c = RecordingCluster::with_sessions([1, 2, 3]);
        for i in 0..60u64 {
            let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
            let price = if side == Side::Buy {
                90 + (i % 7) as i64
            } else {
                97 + (i % 5) as i64
            };
            engine.apply(
                &mut c,
                SessionId(1 + i % 3),
                &new((i % 3) as u32, i, side, OrderKind::Limit, price, 1 + i % 4),
            );
        }
        engine.check_invariants();
        let mut bytes = Vec::new();
        engine.on_take_snapshot(&mut SnapshotWriter::new(&mut bytes));
        let mut restored = MatchingEngine::default();
        restored.on_start(&mut c, Some(SnapshotImage::new(&bytes)));
        restored.check_invariants();
        assert_eq!(restored.state_hash(), engine.state_hash());
        assert_eq!(restored.to_snapshot(), engine.to_snapshot());
        // Both behave the same afterwards.
        let sweep = new(1, 1000, Side::Buy, OrderKind::Market, 0, 50);
        let (mut c1, mut c2) = (c.clone(), c.clone());
        engine.apply(&mut c1, SessionId(3), &sweep);
        restored.apply(&mut c2, SessionId(3), &sweep);
        assert_eq!(c1.egress, c2.egress);
        assert_eq!(restored.state_hash(), engine.state_hash());
    }

    #[test]
    fn closing_a_session_cancels_its_orders() {
        let mut engine = MatchingEngine::new(1, 100);
        let mut c = RecordingCluster::with_sessions([1, 2]);
        engine.apply(
            &mut c,
            SessionId(1),
            &new(0, 1, Side::Buy, OrderKind::Limit, 10, 1),
        );
        engine.apply(
            &mut c,
            SessionId(1),
            &new(0, 2, Side::Sell, OrderKind::Limit, 20, 1),
        );
        engine.apply(
            &mut c,
            SessionId(2),
            &new(0, 1, Side::Sell, OrderKind::Limit, 21, 1),
        );
        c.sessions.remove(&1);
        let principal: &[u8] = &[];
        let session = ClientSession {
            id: SessionId(1),
            principal,
        };
        engine.on_session_close(&mut c, &session, 0, CloseReason::Timeout);
        assert_eq!(engine.open_orders(), 1);
        assert_eq!(engine.book(0).unwrap().best_ask(), Some((21, 1)));
        engine.check_invariants();
    }
}
