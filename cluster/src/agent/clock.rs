//! [`AgentClock`]: the monotonic clock an agent reads once per duty cycle.
//!
//! Every agent of a member reads the time each duty cycle (the consensus core's timers, the
//! transport's reassembly deadlines), so in `cluster` threading one pass over three members
//! reads it six times. `Instant::elapsed` costs about 24 ns a read on the dev VM (vDSO
//! `clock_gettime` and `timespec` arithmetic: a third of an idle pass, perf, issue #7);
//! quanta's clock reads the invariant TSC and scales it in about 9 ns, and falls back to the
//! operating system's monotonic clock where the TSC cannot be trusted.

/// Nanoseconds since the clock was started, from a calibrated TSC where available.
#[derive(Debug, Clone)]
pub struct AgentClock {
    clock: quanta::Clock,
    start: u64,
}

impl AgentClock {
    /// A clock reading 0 now.
    pub fn start() -> Self {
        let clock = quanta::Clock::new();
        let start = clock.raw();
        Self { clock, start }
    }

    /// Nanoseconds since [`AgentClock::start`] (never decreasing).
    #[inline]
    pub fn elapsed_ns(&self) -> u64 {
        self.clock.delta_as_nanos(self.start, self.clock.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn follows_the_monotonic_clock() {
        let clock = AgentClock::start();
        let since = Instant::now();
        let mut last = clock.elapsed_ns();
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..1000 {
            let now = clock.elapsed_ns();
            assert!(now >= last, "went back from {last} to {now}");
            last = now;
        }
        let reference = since.elapsed().as_nanos() as u64;
        // Calibrated against the OS clock: within a few percent over 20 ms (and a slack for a
        // descheduling between the two reads).
        assert!(last >= 19_000_000, "{last} ns after sleeping 20 ms");
        assert!(
            last <= reference + 5_000_000,
            "{last} ns, the OS clock says {reference}"
        );
    }
}
