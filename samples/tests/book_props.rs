//! Properties of the order book under random operation sequences: quantity is conserved, the
//! book never crosses, fills respect price limits and priority bookkeeping stays consistent.

use proptest::prelude::*;
use tandem_samples::matching::{Book, NewOrder, OrderKind, Side};

#[derive(Debug, Clone)]
enum Op {
    Add {
        side: bool,
        kind: u8,
        price: i64,
        quantity: u64,
    },
    Cancel(u64),
    Modify {
        id: u64,
        price: i64,
        quantity: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<bool>(), 0u8..4, 1i64..30, 0u64..20)
            .prop_map(|(side, kind, price, quantity)| Op::Add { side, kind, price, quantity }),
        2 => (1u64..200).prop_map(Op::Cancel),
        2 => (1u64..200, 0i64..30, 0u64..20)
            .prop_map(|(id, price, quantity)| Op::Modify { id, price, quantity }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn conserves_quantity_and_never_crosses(ops in proptest::collection::vec(op(), 1..200)) {
        let mut book = Book::new(64);
        let mut fills = Vec::new();
        let (mut submitted, mut traded, mut cancelled) = (0i128, 0i128, 0i128);
        let mut next_id = 1;
        for op in ops {
            fills.clear();
            match op {
                Op::Add { side, kind, price, quantity } => {
                    let side = if side { Side::Buy } else { Side::Sell };
                    let kind = [OrderKind::Limit, OrderKind::Market, OrderKind::ImmediateOrCancel, OrderKind::PostOnly][kind as usize];
                    let order = NewOrder { order_id: next_id, owner: 0, client_order_id: next_id, side, kind, price, quantity };
                    if let Ok(out) = book.add(order, &mut fills) {
                        next_id += 1;
                        submitted += i128::from(quantity);
                        traded += i128::from(out.filled);
                        cancelled += i128::from(out.cancelled);
                        prop_assert_eq!(out.filled + out.resting + out.cancelled, quantity);
                        prop_assert_eq!(fills.iter().map(|f| f.quantity).sum::<u64>(), out.filled);
                        for f in &fills {
                            prop_assert!(f.quantity > 0);
                            prop_assert_eq!(f.maker_side, side.opposite());
                            if kind != OrderKind::Market {
                                let within = match side { Side::Buy => f.price <= price, Side::Sell => f.price >= price };
                                prop_assert!(within, "fill beyond the limit");
                            }
                        }
                        // Fills walk prices from best to worse.
                        let ordered = fills.windows(2).all(|w| match side {
                            Side::Buy => w[0].price <= w[1].price,
                            Side::Sell => w[0].price >= w[1].price,
                        });
                        prop_assert!(ordered, "fills out of price order");
                    }
                }
                Op::Cancel(id) => {
                    if let Some(o) = book.cancel(id) {
                        cancelled += i128::from(o.quantity);
                    }
                }
                Op::Modify { id, price, quantity } => {
                    if let Ok(out) = book.modify(id, price, quantity, &mut fills) {
                        submitted += i128::from(quantity) - i128::from(out.before.quantity);
                        traded += i128::from(out.filled);
                        prop_assert_eq!(out.filled + out.resting, quantity);
                    }
                }
            }
            book.check_invariants();
            let resting = i128::from(book.side_quantity(Side::Buy) + book.side_quantity(Side::Sell));
            prop_assert_eq!(submitted, resting + 2 * traded + cancelled);
            if let (Some((bid, _)), Some((ask, _))) = (book.best_bid(), book.best_ask()) {
                prop_assert!(bid < ask);
            }
        }
    }
}
