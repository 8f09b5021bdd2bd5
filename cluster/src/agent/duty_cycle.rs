//! The `Agent` trait: one unit of long-running work with a duty cycle.

use super::error::AgentError;

/// Why an agent asked to stop on its own (see [`Agent::termination`]).
#[derive(Debug)]
pub enum Termination {
    /// The agent finished its work; its runner stops it cleanly.
    Done,
    /// The agent failed; its runner stops it and reports the error from `close`.
    Failed(AgentError),
}

/// A long-running part of a node (network, consensus, service), driven by repeated calls to
/// [`Agent::do_work`] from an [`AgentRunner`](super::AgentRunner) thread, an
/// [`AgentInvoker`](super::AgentInvoker) on the caller's thread, or a
/// [`CompositeAgent`](super::CompositeAgent) together with other agents.
///
/// The life cycle is: `on_start` once, then `do_work` (each call followed by `termination`)
/// until the runner is told to stop or `termination` returns `Some`, then `on_close` once.
/// `on_close` is called even after `do_work` panicked, as long as `on_start` succeeded.
pub trait Agent {
    /// Called once, on the thread that will run the duty cycle, before the first `do_work`.
    ///
    /// # Errors
    ///
    /// An error here means the agent never runs; `on_close` is not called.
    fn on_start(&mut self) -> Result<(), AgentError> {
        Ok(())
    }

    /// One duty cycle: does a bounded amount of work and returns how many units it did
    /// (0 means idle, and lets the idle strategy back off). Must not block, and should not
    /// allocate once the agent is running.
    fn do_work(&mut self) -> usize;

    /// Polled after every `do_work`; `Some` ends the agent (the terminal condition, as
    /// Aeron's `AgentTerminationException`). The default never stops on its own.
    fn termination(&mut self) -> Option<Termination> {
        None
    }

    /// Called once after the last `do_work`, on the thread that ran the duty cycle.
    fn on_close(&mut self) {}

    /// A short name for logs and thread names, such as `consensus` or `member-1`.
    fn role_name(&self) -> &str;
}

impl<A: Agent + ?Sized> Agent for Box<A> {
    fn on_start(&mut self) -> Result<(), AgentError> {
        (**self).on_start()
    }

    #[inline]
    fn do_work(&mut self) -> usize {
        (**self).do_work()
    }

    #[inline]
    fn termination(&mut self) -> Option<Termination> {
        (**self).termination()
    }

    fn on_close(&mut self) {
        (**self).on_close();
    }

    fn role_name(&self) -> &str {
        (**self).role_name()
    }
}
