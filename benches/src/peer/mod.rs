//! Peers that `cluster-bench` measures beside Tandem, in the same run and with the same
//! histogram: openraft (feature `peer-openraft`) and Aeron's own transport (feature
//! `peer-aeron`). Both features are off by default and CI does not build them.
//!
//! Every latency figure is a round trip in nanoseconds. Open-loop runs record each round
//! trip from its *intended* send time ([`OpenLoop`]), so a stall delays every message queued
//! behind it in the histogram too (coordinated omission corrected).

use std::time::{Duration, Instant};

#[cfg(feature = "peer-aeron")]
pub mod aeron;

use hdrhistogram::Histogram;

#[cfg(feature = "peer-openraft")]
pub mod openraft;

/// Highest round trip a histogram records: 60 s, in nanoseconds.
pub const MAX_RECORDABLE_NS: u64 = 60_000_000_000;

/// A histogram for round trips in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_RECORDABLE_NS, 3).expect("static histogram bounds are valid")
}

/// The result of one latency run.
#[derive(Debug, Clone)]
pub struct LatencyRun {
    /// Round trips in nanoseconds (measured from the intended send time in open-loop runs).
    pub hist: Histogram<u64>,
    /// Messages sent after the warm-up.
    pub sent: u64,
    /// Replies received for them.
    pub received: u64,
}

impl LatencyRun {
    /// An empty run.
    pub fn new() -> Self {
        Self {
            hist: new_histogram(),
            sent: 0,
            received: 0,
        }
    }

    /// Messages sent without a reply.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// Records one round trip of `ns` nanoseconds (saturated at [`MAX_RECORDABLE_NS`]).
    pub fn record(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
        self.received += 1;
    }
}

impl Default for LatencyRun {
    fn default() -> Self {
        Self::new()
    }
}

/// The result of one throughput run.
#[derive(Debug, Clone, Copy)]
pub struct ThroughputRun {
    /// Messages whose own reply reached the client after the warm-up.
    pub msgs: u64,
    /// Payload bytes of those messages.
    pub bytes: u64,
    /// Time over which they were counted.
    pub elapsed: Duration,
    /// CPU time the benchmark's driving thread used over that period, where one thread
    /// drives the whole cluster and its clients (`--threading cluster`); `None` elsewhere.
    pub driver_cpu: Option<Duration>,
}

impl ThroughputRun {
    /// Messages per CPU-second of the driving thread: the rate one thread would sustain with
    /// a core of its own (on a shared machine it gets less than one). `None` when not known.
    pub fn msgs_per_cpu_s(&self) -> Option<f64> {
        let cpu = self.driver_cpu?.as_secs_f64();
        (cpu > 0.0).then(|| self.msgs as f64 / cpu)
    }

    /// Messages per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.msgs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Payload megabytes (10^6 bytes) per second.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An open-loop schedule: message `i` is due at `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub struct OpenLoop {
    start: Instant,
    interval_ns: u64,
}

impl OpenLoop {
    /// A schedule of `rate` messages per second starting at `start` (`rate` of at least 1).
    pub fn new(start: Instant, rate: u64) -> Self {
        Self {
            start,
            interval_ns: 1_000_000_000 / rate.max(1),
        }
    }

    /// When message `i` is due.
    pub fn intended(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos(i.saturating_mul(self.interval_ns))
    }

    /// How many messages are due by `now` (indices `0..due`).
    pub fn due(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as u64;
        elapsed / self.interval_ns.max(1) + 1
    }

    /// Nanoseconds from message `i`'s intended send time to `now`.
    pub fn latency_ns(&self, i: u64, now: Instant) -> u64 {
        now.saturating_duration_since(self.intended(i)).as_nanos() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_per_cpu_second_need_the_driving_thread_cpu_time() {
        let mut t = ThroughputRun {
            msgs: 3_000,
            bytes: 3_000 * 64,
            elapsed: Duration::from_secs(2),
            driver_cpu: None,
        };
        assert_eq!(t.msgs_per_cpu_s(), None);
        t.driver_cpu = Some(Duration::ZERO);
        assert_eq!(t.msgs_per_cpu_s(), None, "no CPU time, no rate");
        t.driver_cpu = Some(Duration::from_millis(500));
        assert_eq!(t.msgs_per_cpu_s(), Some(6_000.0));
        assert_eq!(t.msgs_per_s(), 1_500.0);
    }

    #[test]
    fn open_loop_schedule_counts_due_messages_and_latency_from_intended_time() {
        let t0 = Instant::now();
        let s = OpenLoop::new(t0, 1_000); // one per ms
        assert_eq!(s.due(t0), 1);
        assert_eq!(s.due(t0 + Duration::from_micros(2_500)), 3);
        // Message 2 was due at 2 ms: a reply at 5 ms took 3 ms, however late it was sent.
        assert_eq!(s.latency_ns(2, t0 + Duration::from_millis(5)), 3_000_000);
        assert_eq!(s.latency_ns(9, t0), 0);
    }

    #[test]
    fn latency_run_counts_lost_messages() {
        let mut r = LatencyRun::new();
        r.sent = 3;
        r.record(1_000);
        r.record(u64::MAX);
        assert_eq!(r.lost(), 1);
        assert_eq!(r.hist.len(), 2);
        assert!(r.hist.max() >= MAX_RECORDABLE_NS / 2);
    }
}
