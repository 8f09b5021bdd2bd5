//! Running an agent's duty cycle on the caller's thread.

use super::duty_cycle::{Agent, Termination};
use super::error::AgentError;

/// Drives an agent from the caller's thread: for tests, the simulator and embedding in
/// another loop. The caller calls [`AgentInvoker::start`], then [`AgentInvoker::invoke`] as
/// often as it likes, then [`AgentInvoker::close`] (or drops the invoker).
#[derive(Debug)]
pub struct AgentInvoker<A: Agent> {
    agent: A,
    state: InvokerState,
    termination: Option<Termination>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvokerState {
    New,
    Running,
    Closed,
}

impl<A: Agent> AgentInvoker<A> {
    /// An invoker for `agent`, not yet started.
    pub fn new(agent: A) -> Self {
        Self {
            agent,
            state: InvokerState::New,
            termination: None,
        }
    }

    /// Calls the agent's `on_start`. Does nothing if already started or closed.
    ///
    /// # Errors
    ///
    /// The agent's `on_start` error; the invoker is then closed (without `on_close`).
    pub fn start(&mut self) -> Result<(), AgentError> {
        if self.state != InvokerState::New {
            return Ok(());
        }
        match self.agent.on_start() {
            Ok(()) => {
                self.state = InvokerState::Running;
                Ok(())
            }
            Err(err) => {
                self.state = InvokerState::Closed;
                Err(err)
            }
        }
    }

    /// One duty cycle: the work done, or 0 if the agent is not running. If the agent asks to
    /// terminate, it is closed and `close` reports how it ended.
    #[inline]
    pub fn invoke(&mut self) -> usize {
        self.invoke_with(A::do_work)
    }

    /// One duty cycle run by `cycle` instead of the agent's `do_work` (an agent with a cycle
    /// that takes the caller's work in it, as
    /// [`ClusterAgent::do_work_answering`](crate::node::ClusterAgent::do_work_answering)),
    /// with the same life cycle as [`AgentInvoker::invoke`]: 0 if not running, and closed if
    /// the agent asks to terminate.
    #[inline]
    pub fn invoke_with(&mut self, cycle: impl FnOnce(&mut A) -> usize) -> usize {
        if self.state != InvokerState::Running {
            return 0;
        }
        let work = cycle(&mut self.agent);
        if let Some(termination) = self.agent.termination() {
            self.termination = Some(termination);
            self.agent.on_close();
            self.state = InvokerState::Closed;
        }
        work
    }

    /// Whether the agent has started and not yet closed.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.state == InvokerState::Running
    }

    /// Whether the agent has been closed (by `close`, by terminating, or by a failed start).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == InvokerState::Closed
    }

    /// The agent.
    pub fn agent(&self) -> &A {
        &self.agent
    }

    /// The agent, mutably (for tests and embedding; do not call its life-cycle methods).
    pub fn agent_mut(&mut self) -> &mut A {
        &mut self.agent
    }

    /// Closes the agent if it is running (calling `on_close`).
    ///
    /// # Errors
    ///
    /// The error the agent terminated with, if it terminated with [`Termination::Failed`].
    pub fn close(&mut self) -> Result<(), AgentError> {
        if self.state == InvokerState::Running {
            self.agent.on_close();
        }
        self.state = InvokerState::Closed;
        match self.termination.take() {
            Some(Termination::Failed(err)) => Err(err),
            Some(Termination::Done) | None => Ok(()),
        }
    }
}

impl<A: Agent> Drop for AgentInvoker<A> {
    fn drop(&mut self) {
        if self.state == InvokerState::Running {
            self.agent.on_close();
        }
    }
}
