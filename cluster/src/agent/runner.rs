//! Running an agent on a thread of its own.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use super::affinity::{check_core, pin_current_thread};
use super::duty_cycle::{Agent, Termination};
use super::error::AgentError;
use super::idle::Idle;

/// Runs an agent's duty cycle on a named thread, optionally pinned to a core, until told to
/// stop or until the agent terminates.
///
/// The duty cycle is `do_work`, `termination`, `idle`, with one atomic load of the stop flag
/// per cycle: no allocation and no lock. Dropping a runner stops and joins it as `close`
/// does, logging (with `tracing`) any failure that `close` would have returned.
#[derive(Debug)]
pub struct AgentRunner {
    thread_name: String,
    role_name: String,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<(), AgentError>>>,
}

impl AgentRunner {
    /// Spawns thread `name`, pins it to `core` if given, calls the agent's `on_start` there,
    /// and returns once `on_start` has succeeded; the duty cycle then runs with `idle`.
    ///
    /// # Errors
    ///
    /// [`AgentError::UnknownCore`] (checked before spawning) or [`AgentError::PinFailed`];
    /// [`AgentError::Spawn`]; the agent's own `on_start` error; [`AgentError::Panicked`] if
    /// `on_start` panicked. In every case the thread has ended when this returns.
    pub fn start<A, I>(
        mut agent: A,
        mut idle: I,
        name: impl Into<String>,
        core: Option<usize>,
    ) -> Result<Self, AgentError>
    where
        A: Agent + Send + 'static,
        I: Idle + Send + 'static,
    {
        let thread_name = name.into();
        let role_name = agent.role_name().to_owned();
        if let Some(core) = core {
            check_core(core)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = mpsc::sync_channel::<()>(1);
        let handle = {
            let stop = Arc::clone(&stop);
            let thread = thread_name.clone();
            let role = role_name.clone();
            thread::Builder::new()
                .name(thread_name.clone())
                .spawn(move || {
                    if let Some(core) = core {
                        pin_current_thread(core)?;
                    }
                    agent.on_start()?;
                    // The receiver is gone only if `start` itself panicked; run anyway.
                    let _ = started_tx.send(());
                    drop(started_tx);
                    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                        duty_cycle(&mut agent, &mut idle, &stop)
                    }));
                    agent.on_close();
                    match outcome {
                        Ok(None | Some(Termination::Done)) => Ok(()),
                        Ok(Some(Termination::Failed(err))) => Err(err),
                        Err(payload) => Err(AgentError::Panicked {
                            role,
                            thread,
                            message: panic_message(payload.as_ref()),
                        }),
                    }
                })
                .map_err(|source| AgentError::Spawn {
                    thread: thread_name.clone(),
                    source,
                })?
        };
        let mut runner = Self {
            thread_name,
            role_name,
            stop,
            handle: Some(handle),
        };
        match started_rx.recv() {
            Ok(()) => {
                tracing::debug!(thread = %runner.thread_name, role = %runner.role_name, ?core, "agent started");
                Ok(runner)
            }
            // The thread ended before the agent started: report why.
            Err(mpsc::RecvError) => {
                Err(runner
                    .join()
                    .err()
                    .unwrap_or_else(|| AgentError::NotStarted {
                        thread: runner.thread_name.clone(),
                    }))
            }
        }
    }

    /// The thread's name.
    #[must_use]
    pub fn thread_name(&self) -> &str {
        &self.thread_name
    }

    /// The agent's role name.
    #[must_use]
    pub fn role_name(&self) -> &str {
        &self.role_name
    }

    /// Whether the thread is still running the agent (false once it has terminated by
    /// itself, panicked or been stopped).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.handle
            .as_ref()
            .is_some_and(|handle| !handle.is_finished())
    }

    /// Tells the agent to stop after its current cycle, without waiting; `close` then joins.
    /// Useful to stop several runners at once.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = &self.handle {
            handle.thread().unpark();
        }
    }

    /// Stops the agent, waits for its thread to end (after `on_close`), and reports how the
    /// agent ended.
    ///
    /// # Errors
    ///
    /// The agent's [`Termination::Failed`] error, or [`AgentError::Panicked`] if it panicked.
    pub fn close(mut self) -> Result<(), AgentError> {
        self.request_stop();
        self.join()
    }

    fn join(&mut self) -> Result<(), AgentError> {
        let Some(handle) = self.handle.take() else {
            return Ok(());
        };
        let result = handle.join().unwrap_or_else(|payload| {
            Err(AgentError::Panicked {
                role: self.role_name.clone(),
                thread: self.thread_name.clone(),
                message: panic_message(payload.as_ref()),
            })
        });
        tracing::debug!(thread = %self.thread_name, ok = result.is_ok(), "agent thread joined");
        result
    }
}

impl Drop for AgentRunner {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.request_stop();
            if let Err(err) = self.join() {
                tracing::error!(thread = %self.thread_name, %err, "agent failed");
            }
        }
    }
}

/// The duty cycle: returns `Some` if the agent terminated itself, `None` if told to stop.
#[inline]
fn duty_cycle<A: Agent, I: Idle>(
    agent: &mut A,
    idle: &mut I,
    stop: &AtomicBool,
) -> Option<Termination> {
    while !stop.load(Ordering::Acquire) {
        let work = agent.do_work();
        if let Some(termination) = agent.termination() {
            return Some(termination);
        }
        idle.idle(work);
    }
    None
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
