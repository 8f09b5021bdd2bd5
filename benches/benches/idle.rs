//! Criterion suite for the idle strategies' wake-up cost: a round trip between two threads
//! through an atomic, the far thread idle for [`GAP`] beforehand (so a backing-off strategy
//! has reached its parks) and waiting with each strategy. The near thread unparks the far one
//! after each hand-off, as the node's agents do (`Waker`), so a parked strategy is woken
//! rather than left to its timeout: the figure is what a hand-off to an idle agent costs with
//! that strategy on the far side. Only the round trip is timed.
//!
//! Run: `cargo bench -p tandem-benches --bench idle`. Figures are recorded in
//! `docs/PERFORMANCE.md`. On a machine with fewer than two free cores the spinning
//! strategies compete with the measuring thread and say so in their figures.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tandem_cluster::agent::{Idle, IdleStrategy};

/// How long the far thread idles before each timed round trip.
const GAP: Duration = Duration::from_micros(50);

/// The far thread: answers each ping (an odd value) with the next even value, idling with
/// `idle` while there is none.
struct Responder {
    cell: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start(mut idle: IdleStrategy) -> Self {
        let cell = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&cell), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("idle-responder".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    let v = c.load(Ordering::Acquire);
                    if v % 2 == 1 {
                        c.store(v + 1, Ordering::Release);
                        idle.idle(1);
                    } else {
                        idle.idle(0);
                    }
                }
            })
            .expect("spawn the responder");
        Self {
            cell,
            stop,
            thread: Some(thread),
        }
    }

    /// One round trip: ping, wake the responder, spin until it answered.
    fn round_trip(&self, n: u64) {
        let ping = 2 * n + 1;
        self.cell.store(ping, Ordering::Release);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        while self.cell.load(Ordering::Acquire) != ping + 1 {
            std::hint::spin_loop();
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn wake_up(c: &mut Criterion) {
    let mut group = c.benchmark_group("idle/wake_up_round_trip");
    group.measurement_time(Duration::from_secs(3));
    let strategies = [
        IdleStrategy::BusySpin,
        IdleStrategy::Yielding,
        IdleStrategy::backoff(),
        IdleStrategy::Sleeping(Duration::from_micros(100)),
    ];
    for strategy in strategies {
        let name = match &strategy {
            IdleStrategy::Sleeping(d) => format!("sleep-ns={}", d.as_nanos()),
            other => other.name().to_owned(),
        };
        let responder = Responder::start(strategy);
        let mut n = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let idle_until = Instant::now() + GAP;
                    while Instant::now() < idle_until {
                        std::hint::spin_loop();
                    }
                    n += 1;
                    let start = Instant::now();
                    responder.round_trip(n);
                    timed += start.elapsed();
                }
                black_box(timed)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, wake_up);
criterion_main!(benches);
