//! The order book alone, on one core: a mixed add / cancel / match workload.
//!
//! `cargo bench -p tandem-benches --bench book`. The stream is generated up front from a fixed
//! seed: about 55% passive limit orders near the touch, 30% cancels of recently added orders,
//! 10% crossing immediate-or-cancel orders and 5% market orders. Each iteration replays the
//! whole stream into an empty book built outside the timing. Throughput is in order operations
//! (one add, cancel, or incoming order that matches, each).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem_samples::matching::{Book, NewOrder, OrderKind, Side};

#[derive(Clone, Copy)]
enum Op {
    Add(NewOrder),
    Cancel(u64),
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn workload(ops: usize, seed: u64) -> Vec<Op> {
    const MID: i64 = 100_000;
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(ops);
    let mut next_id = 1u64;
    for _ in 0..ops {
        let roll = rng.below(100);
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let sign = if side == Side::Buy { -1 } else { 1 };
        if roll < 30 && next_id > 1 {
            // Cancel one of the last ~2000 orders (some will have traded already).
            let back = rng.below(2000.min(next_id - 1)) + 1;
            out.push(Op::Cancel(next_id - back));
            continue;
        }
        let (kind, price) = if roll < 85 {
            (OrderKind::Limit, MID + sign * (1 + rng.below(20) as i64))
        } else if roll < 95 {
            (
                OrderKind::ImmediateOrCancel,
                MID - sign * (1 + rng.below(5) as i64),
            )
        } else {
            (OrderKind::Market, 0)
        };
        out.push(Op::Add(NewOrder {
            order_id: next_id,
            owner: rng.below(64),
            client_order_id: next_id,
            side,
            kind,
            price,
            quantity: 1 + rng.below(10),
        }));
        next_id += 1;
    }
    out
}

fn run(book: &mut Book, ops: &[Op], fills: &mut Vec<tandem_samples::matching::Fill>) -> u64 {
    let mut traded = 0;
    for op in ops {
        match *op {
            Op::Add(order) => {
                fills.clear();
                if let Ok(outcome) = book.add(order, fills) {
                    traded += outcome.filled;
                }
            }
            Op::Cancel(id) => {
                traded += book.cancel(id).map_or(0, |o| o.quantity);
            }
        }
    }
    traded
}

fn bench(c: &mut Criterion) {
    const OPS: usize = 1 << 20;
    let ops = workload(OPS, 0x5EED);
    let mut probe = Book::new(1 << 20);
    let traded = run(&mut probe, &ops, &mut Vec::new());
    eprintln!(
        "stream: {OPS} ops, {traded} lots traded or cancelled, {} orders left resting",
        probe.len()
    );
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(OPS as u64));
    group.sample_size(20);
    group.bench_function("mixed_add_cancel_match", |b| {
        let mut fills = Vec::with_capacity(256);
        b.iter_batched_ref(
            || Book::new(1 << 20),
            |book| black_box(run(book, &ops, &mut fills)),
            criterion::BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
