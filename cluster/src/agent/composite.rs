//! Several agents in one duty cycle.

use std::fmt;

use super::duty_cycle::{Agent, Termination};
use super::error::AgentError;

/// Runs several agents in one duty cycle, in order, on one thread. (A member's agents in the
/// `shared` threading mode are composed by `node::NodeAgent`, and every member of the
/// `cluster` mode by `node::ClusterAgent`, which orders them by role.)
///
/// `do_work` returns the sum of the agents' work. The composite terminates as soon as any of
/// its agents does; `on_close` closes every agent that was started, in order.
pub struct CompositeAgent {
    role_name: String,
    agents: Vec<Box<dyn Agent + Send>>,
    started: usize,
}

impl CompositeAgent {
    /// A composite named `role_name` running `agents` in the order given.
    ///
    /// # Panics
    ///
    /// If `agents` is empty.
    #[must_use]
    pub fn new(role_name: impl Into<String>, agents: Vec<Box<dyn Agent + Send>>) -> Self {
        assert!(
            !agents.is_empty(),
            "a composite agent needs at least one agent"
        );
        Self {
            role_name: role_name.into(),
            agents,
            started: 0,
        }
    }

    /// The number of agents.
    #[must_use]
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Always false: a composite has at least one agent.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }
}

impl fmt::Debug for CompositeAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<&str> = self.agents.iter().map(|a| a.role_name()).collect();
        f.debug_struct("CompositeAgent")
            .field("role_name", &self.role_name)
            .field("agents", &roles)
            .finish()
    }
}

impl Agent for CompositeAgent {
    /// Starts the agents in order; if one fails, closes those already started (in order) and
    /// returns its error.
    fn on_start(&mut self) -> Result<(), AgentError> {
        while self.started < self.agents.len() {
            if let Err(err) = self.agents[self.started].on_start() {
                self.on_close();
                return Err(err);
            }
            self.started += 1;
        }
        Ok(())
    }

    #[inline]
    fn do_work(&mut self) -> usize {
        self.agents.iter_mut().map(|agent| agent.do_work()).sum()
    }

    fn termination(&mut self) -> Option<Termination> {
        self.agents.iter_mut().find_map(|agent| agent.termination())
    }

    fn on_close(&mut self) {
        for agent in &mut self.agents[..self.started] {
            agent.on_close();
        }
        self.started = 0;
    }

    fn role_name(&self) -> &str {
        &self.role_name
    }
}
