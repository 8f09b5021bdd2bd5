//! Idle strategies: what a duty-cycle thread does when a cycle found no work.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::error::AgentError;

/// Something that decides what to do after a duty cycle. [`IdleStrategy`] is the usual one;
/// runners are generic over this trait so that a test or an embedding can supply its own.
pub trait Idle {
    /// Called after every duty cycle with the work it did: resets on work, idles on none.
    fn idle(&mut self, work_count: usize);

    /// Forgets any back-off, as after a cycle that did work.
    fn reset(&mut self);
}

/// The idle strategies of DESIGN §3, as in Aeron. An enum so that a runner's call to `idle`
/// is a `match`, not a virtual call. Parks use [`std::thread::park_timeout`], so a runner's
/// `close` (which unparks its thread) does not wait out a long park.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin with [`std::hint::spin_loop`]: lowest latency, burns a core (`spin`).
    BusySpin,
    /// Do nothing at all (`noop`).
    NoOp,
    /// [`std::thread::yield_now`] (`yield`).
    Yielding,
    /// Spin, then yield, then park with doubling periods (`backoff`; Aeron's default).
    Backoff(BackoffIdle),
    /// Park for a fixed period (`sleep-ns=N`, `sleep-ms=N`).
    Sleeping(Duration),
}

impl IdleStrategy {
    /// Aeron's default: back off with 10 spins, 5 yields, then parks from 1 µs to 1 ms.
    #[must_use]
    pub fn backoff() -> Self {
        Self::Backoff(BackoffIdle::default())
    }

    /// The strategy's name as accepted by `FromStr` (without parameters).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::BusySpin => "spin",
            Self::NoOp => "noop",
            Self::Yielding => "yield",
            Self::Backoff(_) => "backoff",
            Self::Sleeping(_) => "sleep-ns",
        }
    }
}

impl Default for IdleStrategy {
    fn default() -> Self {
        Self::backoff()
    }
}

impl Idle for IdleStrategy {
    #[inline]
    fn idle(&mut self, work_count: usize) {
        match self {
            Self::BusySpin => {
                if work_count == 0 {
                    std::hint::spin_loop();
                }
            }
            Self::NoOp => {}
            Self::Yielding => {
                if work_count == 0 {
                    std::thread::yield_now();
                }
            }
            Self::Backoff(backoff) => backoff.idle(work_count),
            Self::Sleeping(period) => {
                if work_count == 0 {
                    std::thread::park_timeout(*period);
                }
            }
        }
    }

    #[inline]
    fn reset(&mut self) {
        if let Self::Backoff(backoff) = self {
            backoff.reset();
        }
    }
}

impl fmt::Display for IdleStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Backoff(b) if *b == BackoffIdle::default() => f.write_str("backoff"),
            Self::Backoff(b) => write!(
                f,
                "backoff={},{},{},{}",
                b.spins_max,
                b.yields_max,
                b.park_min.as_nanos(),
                b.park_max.as_nanos()
            ),
            Self::Sleeping(period) => write!(f, "sleep-ns={}", period.as_nanos()),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for IdleStrategy {
    type Err = AgentError;

    /// Parses `spin` (or `busy-spin`), `noop`, `yield`, `backoff`,
    /// `backoff=SPINS,YIELDS,MIN_PARK_NS,MAX_PARK_NS`, `sleep-ns=N` and `sleep-ms=N`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| AgentError::InvalidIdleStrategy {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        let (name, arg) = match text.split_once('=') {
            Some((name, arg)) => (name.trim(), Some(arg.trim())),
            None => (text, None),
        };
        let number = |arg: Option<&str>| -> Result<u64, AgentError> {
            arg.ok_or(err("missing value"))?
                .parse::<u64>()
                .map_err(|_| err("value is not a non-negative integer"))
        };
        match name {
            "spin" | "busy-spin" if arg.is_none() => Ok(Self::BusySpin),
            "noop" if arg.is_none() => Ok(Self::NoOp),
            "yield" if arg.is_none() => Ok(Self::Yielding),
            "spin" | "busy-spin" | "noop" | "yield" => Err(err("this strategy takes no value")),
            "backoff" => match arg {
                None => Ok(Self::backoff()),
                Some(list) => {
                    let mut values = [0_u64; 4];
                    let mut parts = list.split(',');
                    for value in &mut values {
                        *value = number(parts.next())?;
                    }
                    if parts.next().is_some() {
                        return Err(err("backoff takes exactly four values"));
                    }
                    let [spins, yields, min_ns, max_ns] = values;
                    BackoffIdle::new(
                        spins,
                        yields,
                        Duration::from_nanos(min_ns),
                        Duration::from_nanos(max_ns),
                    )
                    .map(Self::Backoff)
                    .ok_or(err("minimum park is zero or above the maximum"))
                }
            },
            "sleep-ns" => Ok(Self::Sleeping(Duration::from_nanos(number(arg)?))),
            "sleep-ms" => Ok(Self::Sleeping(Duration::from_millis(number(arg)?))),
            _ => Err(err("unknown name")),
        }
    }
}

/// What a [`BackoffIdle`] does on one idle call; see [`BackoffIdle::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAction {
    /// A spin-loop hint.
    Spin,
    /// A thread yield.
    Yield,
    /// A park of this length.
    Park(Duration),
}

/// Aeron's back-off idle strategy: `spins_max` spins, then `yields_max` yields, then parks
/// starting at `park_min` and doubling up to `park_max`. Any work resets it to spinning.
///
/// Equality compares the settings only, not the position in the back-off.
#[derive(Debug, Clone)]
pub struct BackoffIdle {
    spins_max: u64,
    yields_max: u64,
    park_min: Duration,
    park_max: Duration,
    spins: u64,
    yields: u64,
    park: Duration,
}

impl BackoffIdle {
    /// Aeron's default number of spins.
    pub const DEFAULT_SPINS: u64 = 10;
    /// Aeron's default number of yields.
    pub const DEFAULT_YIELDS: u64 = 5;
    /// Aeron's default first park.
    pub const DEFAULT_PARK_MIN: Duration = Duration::from_micros(1);
    /// Aeron's default longest park.
    pub const DEFAULT_PARK_MAX: Duration = Duration::from_millis(1);

    /// A back-off with these settings; `None` unless `0 < park_min <= park_max`.
    #[must_use]
    pub fn new(
        spins_max: u64,
        yields_max: u64,
        park_min: Duration,
        park_max: Duration,
    ) -> Option<Self> {
        if park_min.is_zero() || park_min > park_max {
            return None;
        }
        Some(Self {
            spins_max,
            yields_max,
            park_min,
            park_max,
            spins: 0,
            yields: 0,
            park: park_min,
        })
    }

    /// The number of spins before yielding.
    #[must_use]
    pub fn spins_max(&self) -> u64 {
        self.spins_max
    }

    /// The number of yields before parking.
    #[must_use]
    pub fn yields_max(&self) -> u64 {
        self.yields_max
    }

    /// The first park period.
    #[must_use]
    pub fn park_min(&self) -> Duration {
        self.park_min
    }

    /// The longest park period.
    #[must_use]
    pub fn park_max(&self) -> Duration {
        self.park_max
    }

    /// Advances the back-off by one idle call and returns what that call should do, without
    /// doing it. The state machine, apart from the clock.
    pub fn step(&mut self) -> IdleAction {
        if self.spins < self.spins_max {
            self.spins += 1;
            IdleAction::Spin
        } else if self.yields < self.yields_max {
            self.yields += 1;
            IdleAction::Yield
        } else {
            let park = self.park;
            self.park = self.park.saturating_mul(2).min(self.park_max);
            IdleAction::Park(park)
        }
    }

    /// Back to the start: spinning, with the next park at `park_min`.
    #[inline]
    pub fn reset(&mut self) {
        self.spins = 0;
        self.yields = 0;
        self.park = self.park_min;
    }

    /// Resets on work; otherwise takes and performs the next step.
    #[inline]
    pub fn idle(&mut self, work_count: usize) {
        if work_count > 0 {
            self.reset();
            return;
        }
        match self.step() {
            IdleAction::Spin => std::hint::spin_loop(),
            IdleAction::Yield => std::thread::yield_now(),
            IdleAction::Park(period) => std::thread::park_timeout(period),
        }
    }
}

impl Default for BackoffIdle {
    fn default() -> Self {
        Self {
            spins_max: Self::DEFAULT_SPINS,
            yields_max: Self::DEFAULT_YIELDS,
            park_min: Self::DEFAULT_PARK_MIN,
            park_max: Self::DEFAULT_PARK_MAX,
            spins: 0,
            yields: 0,
            park: Self::DEFAULT_PARK_MIN,
        }
    }
}

impl PartialEq for BackoffIdle {
    fn eq(&self, other: &Self) -> bool {
        (
            self.spins_max,
            self.yields_max,
            self.park_min,
            self.park_max,
        ) == (
            other.spins_max,
            other.yields_max,
            other.park_min,
            other.park_max,
        )
    }
}

impl Eq for BackoffIdle {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_every_name() {
        assert_eq!(
            "spin".parse::<IdleStrategy>().unwrap(),
            IdleStrategy::BusySpin
        );
        assert_eq!(
            "busy-spin".parse::<IdleStrategy>().unwrap(),
            IdleStrategy::BusySpin
        );
        assert_eq!("noop".parse::<IdleStrategy>().unwrap(), IdleStrategy::NoOp);
        assert_eq!(
            "yield".parse::<IdleStrategy>().unwrap(),
            IdleStrategy::Yielding
        );
        assert_eq!(
            "backoff".parse::<IdleStrategy>().unwrap(),
            IdleStrategy::backoff()
        );
        assert_eq!(
            "sleep-ns=1000".parse::<IdleStrategy>().unwrap(),
            IdleStrategy::Sleeping(Duration::from_micros(1))
        );
        assert_eq!(
            "sleep-ms=2".parse::<IdleStrategy>().unwrap(),
            IdleStrategy::Sleeping(Duration::from_millis(2))
        );
        let custom = "backoff=1,2,100,400".parse::<IdleStrategy>().unwrap();
        let IdleStrategy::Backoff(b) = &custom else {
            panic!("not a backoff: {custom:?}");
        };
        assert_eq!((b.spins_max(), b.yields_max()), (1, 2));
        assert_eq!(b.park_min(), Duration::from_nanos(100));
        assert_eq!(b.park_max(), Duration::from_nanos(400));
        assert_eq!(custom.to_string(), "backoff=1,2,100,400");
        assert_eq!(IdleStrategy::backoff().to_string(), "backoff");
        assert_eq!(IdleStrategy::default(), IdleStrategy::backoff());
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        for (input, reason) in [
            ("spinny", "unknown name"),
            ("", "unknown name"),
            ("sleep-ns", "missing value"),
            ("sleep-ns=-1", "value is not a non-negative integer"),
            ("sleep-ns=abc", "value is not a non-negative integer"),
            ("spin=3", "this strategy takes no value"),
            ("backoff=1,2,3", "missing value"),
            ("backoff=1,2,3,4,5", "backoff takes exactly four values"),
            (
                "backoff=1,2,0,4",
                "minimum park is zero or above the maximum",
            ),
            (
                "backoff=1,2,9,4",
                "minimum park is zero or above the maximum",
            ),
        ] {
            match input.parse::<IdleStrategy>() {
                Err(AgentError::InvalidIdleStrategy {
                    input: i,
                    reason: r,
                }) => {
                    assert_eq!((i.as_str(), r), (input, reason));
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
        let message = "fast".parse::<IdleStrategy>().unwrap_err().to_string();
        assert!(
            message.contains("'fast'") && message.contains("backoff"),
            "{message}"
        );
    }

    #[test]
    fn backoff_spins_then_yields_then_parks_doubling_to_the_cap() {
        let mut b = BackoffIdle::default();
        for _ in 0..10 {
            assert_eq!(b.step(), IdleAction::Spin);
        }
        for _ in 0..5 {
            assert_eq!(b.step(), IdleAction::Yield);
        }
        let mut expected_ns = 1_000;
        for _ in 0..10 {
            assert_eq!(
                b.step(),
                IdleAction::Park(Duration::from_nanos(expected_ns))
            );
            expected_ns *= 2;
        }
        // 2^10 µs would pass the 1 ms cap: parks stay at the cap from here on.
        for _ in 0..3 {
            assert_eq!(b.step(), IdleAction::Park(Duration::from_millis(1)));
        }
    }

    #[test]
    fn backoff_resets_on_work() {
        let mut b =
            BackoffIdle::new(2, 1, Duration::from_nanos(1), Duration::from_nanos(8)).unwrap();
        let steps: Vec<_> = (0..5).map(|_| b.step()).collect();
        assert_eq!(
            steps,
            [
                IdleAction::Spin,
                IdleAction::Spin,
                IdleAction::Yield,
                IdleAction::Park(Duration::from_nanos(1)),
                IdleAction::Park(Duration::from_nanos(2)),
            ]
        );
        b.idle(1); // Work: back to spinning, and the next park is the shortest again.
        assert_eq!(b.step(), IdleAction::Spin);
        assert_eq!(b.step(), IdleAction::Spin);
        assert_eq!(b.step(), IdleAction::Yield);
        assert_eq!(b.step(), IdleAction::Park(Duration::from_nanos(1)));

        let mut strategy = IdleStrategy::Backoff(b);
        strategy.reset();
        let IdleStrategy::Backoff(b) = &mut strategy else {
            unreachable!()
        };
        assert_eq!(b.step(), IdleAction::Spin);
    }

    #[test]
    fn zero_spins_and_yields_park_at_once() {
        let mut b =
            BackoffIdle::new(0, 0, Duration::from_nanos(5), Duration::from_nanos(5)).unwrap();
        assert_eq!(b.step(), IdleAction::Park(Duration::from_nanos(5)));
        assert_eq!(b.step(), IdleAction::Park(Duration::from_nanos(5)));
    }

    proptest! {
        #[test]
        fn display_round_trips(
            kind in 0..5_u8,
            spins in any::<u64>(),
            yields in any::<u64>(),
            min_ns in 1..u64::MAX / 2,
            extra_ns in 0..u64::MAX / 2,
        ) {
            let strategy = match kind {
                0 => IdleStrategy::BusySpin,
                1 => IdleStrategy::NoOp,
                2 => IdleStrategy::Yielding,
                3 => IdleStrategy::Backoff(BackoffIdle::new(
                    spins,
                    yields,
                    Duration::from_nanos(min_ns),
                    Duration::from_nanos(min_ns + extra_ns),
                ).unwrap()),
                _ => IdleStrategy::Sleeping(Duration::from_nanos(min_ns)),
            };
            prop_assert_eq!(strategy.to_string().parse::<IdleStrategy>().unwrap(), strategy);
        }

        #[test]
        fn parsing_never_panics(input in ".{0,40}") {
            let _ = input.parse::<IdleStrategy>();
        }
    }
}
