//! [`Progress`]: one line a second on standard error while a run goes on.

use std::time::{Duration, Instant};

/// Prints a progress line each second: counts so far, the reply rate and the highest round
/// trip of the last second (cheap to keep: no percentile is computed inside a run).
#[derive(Debug)]
pub struct Progress {
    label: String,
    start: Instant,
    next: Instant,
    last_received: u64,
    max_ns: u64,
}

impl Progress {
    /// Starts counting at `start`.
    pub fn new(label: impl Into<String>, start: Instant) -> Self {
        Self {
            label: label.into(),
            start,
            next: start + Duration::from_secs(1),
            last_received: 0,
            max_ns: 0,
        }
    }

    /// Notes one round trip.
    #[inline]
    pub fn note(&mut self, ns: u64) {
        self.max_ns = self.max_ns.max(ns);
    }

    /// Whether a line is due.
    #[inline]
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// Prints the line and starts the next second.
    pub fn print(&mut self, now: Instant, phase: &str, sent: u64, received: u64, in_flight: u64) {
        let since = now.saturating_duration_since(self.next - Duration::from_secs(1));
        let rate =
            (received.saturating_sub(self.last_received)) as f64 / since.as_secs_f64().max(1e-9);
        eprintln!(
            "[{}] {:>6.1} s {:<7} sent {:>10}  replies {:>10}  in flight {:>5}  {:>10.0} msg/s  max {:>9.1} us (last second)",
            self.label,
            now.saturating_duration_since(self.start).as_secs_f64(),
            phase,
            sent,
            received,
            in_flight,
            rate,
            self.max_ns as f64 / 1000.0,
        );
        self.last_received = received;
        self.max_ns = 0;
        while self.next <= now {
            self.next += Duration::from_secs(1);
        }
    }
}
