//! Agents, idle strategies, runners and threading modes (DESIGN §3).
//!
//! Every long-running part of a node is an [`Agent`] with a duty cycle
//! ([`Agent::do_work`] returns the units of work done). An [`IdleStrategy`] decides what a
//! thread does after a cycle that found no work. An [`AgentRunner`] runs one agent on its own
//! named thread, optionally pinned to a core; an [`AgentInvoker`] runs one on the caller's
//! thread; a [`CompositeAgent`] runs several in one duty cycle. [`ThreadingMode`] says which
//! of these a node uses. [`retain_heap`] keeps the C allocator from taking the process's mmap
//! lock on a busy thread.
//!
//! An agent stops itself through [`Agent::termination`] ([`Termination::Done`] or
//! [`Termination::Failed`]), checked after every cycle; a runner's `close` reports a failure
//! or a panic.

mod affinity;
mod clock;
mod composite;
mod duty_cycle;
mod error;
mod idle;
mod invoker;
mod memory;
mod runner;
mod threading;

pub use self::affinity::{CoreList, available_cores, check_core, pin_current_thread};
pub use self::clock::AgentClock;
pub use self::composite::CompositeAgent;
pub use self::duty_cycle::{Agent, Termination};
pub use self::error::AgentError;
pub use self::idle::{BackoffIdle, Idle, IdleAction, IdleStrategy};
pub use self::invoker::AgentInvoker;
pub use self::memory::{RETAIN_HEAP_MMAP_THRESHOLD_BYTES, RETAIN_HEAP_TOP_PAD_BYTES, retain_heap};
pub use self::runner::AgentRunner;
pub use self::threading::ThreadingMode;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// Counts its cycles; stops itself after `stop_after` cycles if given; records its life
    /// cycle in shared flags.
    #[derive(Debug, Default, Clone)]
    struct Probe {
        started: Arc<AtomicBool>,
        closed: Arc<AtomicBool>,
        work: Arc<AtomicUsize>,
    }

    #[derive(Debug)]
    struct Counter {
        probe: Probe,
        stop_after: Option<usize>,
        fail_after: Option<usize>,
        panic_after: Option<usize>,
        fail_start: bool,
        cycles: usize,
    }

    impl Counter {
        fn new(probe: &Probe) -> Self {
            Self {
                probe: probe.clone(),
                stop_after: None,
                fail_after: None,
                panic_after: None,
                fail_start: false,
                cycles: 0,
            }
        }
    }

    impl Agent for Counter {
        fn on_start(&mut self) -> Result<(), AgentError> {
            if self.fail_start {
                return Err(AgentError::failed("counter", "no storage"));
            }
            self.probe.started.store(true, Ordering::SeqCst);
            Ok(())
        }

        fn do_work(&mut self) -> usize {
            self.cycles += 1;
            if self.panic_after == Some(self.cycles) {
                panic!("counter exploded at cycle {}", self.cycles);
            }
            self.probe.work.fetch_add(1, Ordering::SeqCst);
            1
        }

        fn termination(&mut self) -> Option<Termination> {
            if self.fail_after == Some(self.cycles) {
                Some(Termination::Failed(AgentError::failed(
                    "counter",
                    "disk full",
                )))
            } else if self.stop_after == Some(self.cycles) {
                Some(Termination::Done)
            } else {
                None
            }
        }

        fn on_close(&mut self) {
            self.probe.closed.store(true, Ordering::SeqCst);
        }

        fn role_name(&self) -> &str {
            "counter"
        }
    }

    fn gentle() -> IdleStrategy {
        IdleStrategy::Sleeping(Duration::from_millis(1))
    }

    /// Waits (sleeping, bounded) until `done` holds; no timing is asserted.
    fn wait_until(done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("condition not reached");
    }

    #[test]
    fn runner_runs_an_agent_and_stops_it_cleanly() {
        let probe = Probe::default();
        // The counter always reports work; sleep in it instead of spinning the test machine.
        struct Slow(Counter);
        impl Agent for Slow {
            fn on_start(&mut self) -> Result<(), AgentError> {
                self.0.on_start()
            }
            fn do_work(&mut self) -> usize {
                std::thread::sleep(Duration::from_micros(200));
                self.0.do_work()
            }
            fn on_close(&mut self) {
                self.0.on_close();
            }
            fn role_name(&self) -> &str {
                "slow-counter"
            }
        }
        let runner =
            AgentRunner::start(Slow(Counter::new(&probe)), gentle(), "counter-1", None).unwrap();
        assert!(
            probe.started.load(Ordering::SeqCst),
            "start returns after on_start"
        );
        assert_eq!(runner.thread_name(), "counter-1");
        assert_eq!(runner.role_name(), "slow-counter");
        wait_until(|| probe.work.load(Ordering::SeqCst) >= 5);
        assert!(runner.is_running());
        assert!(!probe.closed.load(Ordering::SeqCst));
        runner.close().unwrap();
        assert!(
            probe.closed.load(Ordering::SeqCst),
            "close joined after on_close"
        );
        let work = probe.work.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            probe.work.load(Ordering::SeqCst),
            work,
            "no work after close"
        );
    }

    #[test]
    fn runner_thread_has_its_name() {
        struct Named(Arc<std::sync::Mutex<Option<String>>>);
        impl Agent for Named {
            fn on_start(&mut self) -> Result<(), AgentError> {
                *self.0.lock().unwrap() = std::thread::current().name().map(str::to_owned);
                Ok(())
            }
            fn do_work(&mut self) -> usize {
                0
            }
            fn role_name(&self) -> &str {
                "named"
            }
        }
        let seen = Arc::new(std::sync::Mutex::new(None));
        let runner = AgentRunner::start(Named(seen.clone()), gentle(), "net-0", None).unwrap();
        runner.close().unwrap();
        assert_eq!(seen.lock().unwrap().as_deref(), Some("net-0"));
    }

    #[test]
    fn agent_that_terminates_itself_ends_its_thread() {
        let probe = Probe::default();
        let mut counter = Counter::new(&probe);
        counter.stop_after = Some(3);
        let runner = AgentRunner::start(counter, gentle(), "stopper", None).unwrap();
        wait_until(|| !runner.is_running());
        assert!(probe.closed.load(Ordering::SeqCst));
        assert_eq!(probe.work.load(Ordering::SeqCst), 3);
        runner.close().unwrap();
    }

    #[test]
    fn agent_failure_is_reported_by_close() {
        let probe = Probe::default();
        let mut counter = Counter::new(&probe);
        counter.fail_after = Some(2);
        let runner = AgentRunner::start(counter, gentle(), "failer", None).unwrap();
        wait_until(|| !runner.is_running());
        let err = runner.close().unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(probe.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn panicking_agent_is_reported_by_close_and_still_closed() {
        let probe = Probe::default();
        let mut counter = Counter::new(&probe);
        counter.panic_after = Some(2);
        let runner = AgentRunner::start(counter, gentle(), "panicker", None).unwrap();
        wait_until(|| !runner.is_running());
        match runner.close() {
            Err(AgentError::Panicked {
                role,
                thread,
                message,
            }) => {
                assert_eq!((role.as_str(), thread.as_str()), ("counter", "panicker"));
                assert_eq!(message, "counter exploded at cycle 2");
            }
            other => panic!("expected a panic report, got {other:?}"),
        }
        assert!(
            probe.closed.load(Ordering::SeqCst),
            "on_close runs after a panic"
        );
    }

    #[test]
    fn failed_start_is_returned_by_start() {
        let probe = Probe::default();
        let mut counter = Counter::new(&probe);
        counter.fail_start = true;
        let err = AgentRunner::start(counter, gentle(), "bad-start", None).unwrap_err();
        assert!(err.to_string().contains("no storage"), "{err}");
        assert!(
            !probe.closed.load(Ordering::SeqCst),
            "no on_close without on_start"
        );
    }

    #[test]
    fn dropping_a_runner_stops_and_joins_it() {
        let probe = Probe::default();
        let runner = AgentRunner::start(Counter::new(&probe), gentle(), "dropped", None).unwrap();
        drop(runner);
        assert!(probe.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn runner_pins_to_an_available_core_and_refuses_an_unknown_one() {
        struct Where(Arc<std::sync::Mutex<Vec<usize>>>);
        impl Agent for Where {
            fn on_start(&mut self) -> Result<(), AgentError> {
                *self.0.lock().unwrap() = core_affinity::get_core_ids()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| c.id)
                    .collect();
                Ok(())
            }
            fn do_work(&mut self) -> usize {
                0
            }
            fn role_name(&self) -> &str {
                "where"
            }
        }
        let core = available_cores()[0];
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let runner = AgentRunner::start(Where(seen.clone()), gentle(), "pinned", Some(core));
        runner.unwrap().close().unwrap();
        assert_eq!(*seen.lock().unwrap(), [core]);

        let bad = available_cores().last().unwrap() + 1;
        let err = AgentRunner::start(Where(seen), gentle(), "unpinnable", Some(bad)).unwrap_err();
        assert!(
            matches!(err, AgentError::UnknownCore { core, .. } if core == bad),
            "{err}"
        );
    }

    #[test]
    fn composite_sums_work_and_stops_when_one_agent_does() {
        let (a, b) = (Probe::default(), Probe::default());
        let mut second = Counter::new(&b);
        second.stop_after = Some(4);
        let composite = CompositeAgent::new(
            "member-0",
            vec![Box::new(Counter::new(&a)), Box::new(second)],
        );
        assert_eq!(composite.len(), 2);
        assert_eq!(composite.role_name(), "member-0");
        let mut invoker = AgentInvoker::new(composite);
        assert_eq!(invoker.invoke(), 0, "not started");
        invoker.start().unwrap();
        assert!(a.started.load(Ordering::SeqCst) && b.started.load(Ordering::SeqCst));
        for _ in 0..3 {
            assert_eq!(invoker.invoke(), 2);
        }
        assert!(invoker.is_running());
        assert_eq!(invoker.invoke(), 2);
        assert!(invoker.is_closed(), "second agent terminated the composite");
        assert!(a.closed.load(Ordering::SeqCst) && b.closed.load(Ordering::SeqCst));
        assert_eq!(invoker.invoke(), 0);
        invoker.close().unwrap();
    }

    #[test]
    fn composite_start_failure_closes_the_started_agents() {
        let (a, b) = (Probe::default(), Probe::default());
        let mut second = Counter::new(&b);
        second.fail_start = true;
        let mut composite = CompositeAgent::new(
            "member-1",
            vec![Box::new(Counter::new(&a)), Box::new(second)],
        );
        assert!(composite.on_start().is_err());
        assert!(a.closed.load(Ordering::SeqCst), "first agent closed again");
        assert!(
            !b.closed.load(Ordering::SeqCst),
            "failed agent never started"
        );
    }

    #[test]
    fn composite_runs_on_a_runner() {
        let (a, b) = (Probe::default(), Probe::default());
        let mut first = Counter::new(&a);
        first.stop_after = Some(5);
        let composite =
            CompositeAgent::new("cluster", vec![Box::new(first), Box::new(Counter::new(&b))]);
        let runner = AgentRunner::start(composite, gentle(), "cluster", None).unwrap();
        wait_until(|| !runner.is_running());
        runner.close().unwrap();
        assert_eq!(
            a.work.load(Ordering::SeqCst) + b.work.load(Ordering::SeqCst),
            10
        );
        assert!(a.closed.load(Ordering::SeqCst) && b.closed.load(Ordering::SeqCst));
    }

    #[test]
    fn invoker_reports_failure_and_closes_on_drop() {
        let probe = Probe::default();
        let mut counter = Counter::new(&probe);
        counter.fail_after = Some(1);
        let mut invoker = AgentInvoker::new(counter);
        invoker.start().unwrap();
        assert_eq!(invoker.invoke(), 1);
        assert!(invoker.is_closed());
        assert!(
            invoker
                .close()
                .unwrap_err()
                .to_string()
                .contains("disk full")
        );

        let probe = Probe::default();
        let mut invoker = AgentInvoker::new(Counter::new(&probe));
        invoker.start().unwrap();
        assert_eq!(invoker.invoke(), 1);
        assert_eq!(invoker.agent().cycles, 1);
        drop(invoker);
        assert!(probe.closed.load(Ordering::SeqCst));
    }
}
