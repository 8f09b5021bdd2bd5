//! The service agent: a member's service on a thread of its own (`dedicated` threading,
//! thread `tandem-svc-ID`), applying committed entries ahead of the consensus agent.
//!
//! The sans-IO halves are in [`crate::container::remote`]: the [`ServiceEngine`] runs here,
//! the [`RemoteApplication`] stands in for the service inside the consensus agent. Between
//! them, two [`MessagePipe`]s of preallocated buffers: committed frames, role changes,
//! restarts and the termination go one way; effect batches come back. Neither side takes a
//! lock or allocates per message once running.
//!
//! The consensus agent runs the service in line until its core has started (recovery replays
//! the log in line, as in every other mode), then hands it over, with a copy of the module
//! state, through [`ServiceLinks::handover`] (a mutex taken once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use tandem_service_api::ServiceFactory;

use crate::SplitError;
use crate::agent::{Agent, AgentError, Termination};
use crate::container::remote::{Handled, ServiceEngine, ServiceLink, batch_header, is_restart};

use super::cluster_node::{HashingApp, Shared};
use super::network_agent::{MemberLinks, Waker};
use super::pipe::{Endpoint, MessagePipe};

/// Buffers in each direction.
const SERVICE_PIPE_MESSAGES: usize = 256;
/// Initial bytes of each buffer.
const SERVICE_PIPE_BYTES: usize = 4096;
/// A batch is sent once it holds this much (more frames wait for the next one). Below the
/// pipe's retained buffer size, so a busy pipe's buffers keep their capacity (a batch that
/// holds a large reply or snapshot is the rare exception).
const BATCH_SEND_BYTES: usize = 8 << 10;
/// How long the consensus agent, closing, waits for the service agent to take what it still
/// has to send (the termination among it).
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages from the consensus agent handled per duty cycle, at most.
const MESSAGES_PER_CYCLE: usize = 64;
/// How long the consensus agent waits for the service to restart from a snapshot.
const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// The pipes and flags between a member's consensus agent and its service agent.
pub(crate) struct ServiceLinks<F: ServiceFactory> {
    /// Consensus to service: frames, role changes, restarts, the termination.
    pub(crate) to_service: MessagePipe,
    /// Service to consensus: effect batches.
    pub(crate) from_service: MessagePipe,
    /// The service and the engine around it, once the core has started.
    pub(crate) handover: Mutex<Option<ServiceEngine<HashingApp<F>>>>,
    /// Set by the service agent when it has closed (terminated, failed or panicked).
    pub(crate) service_closed: AtomicBool,
    /// The thread running the service agent (set when it starts).
    pub(crate) service_thread: OnceLock<Thread>,
    /// Set by the consensus agent when it sends a restart, cleared by the service agent when
    /// it handles it: meanwhile the service agent drops what it takes before the restart
    /// (frames below the snapshot, role changes: the restart carries the role). One consumer
    /// takes from the pipe, so what the service applies is always an in-order prefix.
    pub(crate) restart_pending: AtomicBool,
    /// What the consensus agent, closing, could not put in the pipe in time (its
    /// termination, typically); the service agent handles it when it closes.
    pub(crate) leftover: Mutex<VecDeque<Vec<u8>>>,
}

impl<F: ServiceFactory> std::fmt::Debug for ServiceLinks<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLinks")
            .field("to_service_refused", &self.to_service.refused())
            .field(
                "service_closed",
                &self.service_closed.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl<F: ServiceFactory> ServiceLinks<F> {
    pub(crate) fn new() -> Self {
        Self {
            to_service: MessagePipe::new(SERVICE_PIPE_MESSAGES, SERVICE_PIPE_BYTES),
            from_service: MessagePipe::new(SERVICE_PIPE_MESSAGES, SERVICE_PIPE_BYTES),
            handover: Mutex::new(None),
            service_closed: AtomicBool::new(false),
            service_thread: OnceLock::new(),
            restart_pending: AtomicBool::new(false),
            leftover: Mutex::new(VecDeque::new()),
        }
    }
}

/// The consensus agent's end: a [`ServiceLink`] over the pipes.
pub(crate) struct PipeLink<F: ServiceFactory> {
    links: Arc<ServiceLinks<F>>,
    /// Messages the pipe could not take yet, in order (sent before any frames).
    backlog: VecDeque<Vec<u8>>,
    waker: Waker,
    /// Something was queued for the service since it was last woken.
    queued: bool,
}

impl<F: ServiceFactory> std::fmt::Debug for PipeLink<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeLink")
            .field("backlog", &self.backlog.len())
            .finish_non_exhaustive()
    }
}

impl<F: ServiceFactory> PipeLink<F> {
    pub(crate) fn new(links: Arc<ServiceLinks<F>>, consensus_thread: &OnceLock<Thread>) -> Self {
        // Built on the consensus agent's thread (at its start).
        let mut waker = Waker::default();
        waker.register(consensus_thread);
        Self {
            links,
            backlog: VecDeque::new(),
            waker,
            queued: false,
        }
    }

    /// Sends what waits in the backlog; true when it is empty.
    fn drain_backlog(&mut self) -> bool {
        while let Some(msg) = self.backlog.front() {
            if !self.links.to_service.offer(Endpoint::Member(0), msg) {
                return false;
            }
            self.backlog.pop_front();
            self.queued = true;
        }
        true
    }

    /// Hands committed frames to the service (`encode` writes the message into the buffer);
    /// false when the pipe is full or older messages still wait.
    pub(crate) fn send_frames(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        if !self.drain_backlog() {
            return false;
        }
        let Some(mut buf) = self.links.to_service.acquire() else {
            return false;
        };
        encode(&mut buf);
        self.links.to_service.publish(Endpoint::Member(0), buf);
        self.queued = true;
        true
    }

    /// Wakes the service's thread if something was queued for it.
    pub(crate) fn wake(&mut self) {
        self.drain_backlog();
        if std::mem::take(&mut self.queued) {
            self.waker.wake(&self.links.service_thread);
        }
    }

    /// The consensus agent is closing: waits (a bounded time) until the service agent took
    /// what still waits in the backlog (the termination, typically), giving back the effect
    /// batches it sends meanwhile (moot now) so that it is never short of one, and wakes it.
    /// What is still not taken then is left for the service agent to handle when it closes.
    pub(crate) fn flush_before_close(&mut self) {
        let deadline = Instant::now() + CLOSE_FLUSH_TIMEOUT;
        while !self.drain_backlog() && !self.service_closed() && Instant::now() < deadline {
            while let Some(batch) = self.poll() {
                self.recycle(batch);
            }
            self.waker.wake(&self.links.service_thread);
            std::thread::sleep(Duration::from_micros(50));
        }
        if !self.backlog.is_empty() {
            self.links
                .leftover
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(self.backlog.drain(..));
        }
        self.queued = true;
        self.wake();
    }

    /// Whether the service agent has stopped.
    pub(crate) fn service_closed(&self) -> bool {
        self.links.service_closed.load(Ordering::Acquire)
    }
}

impl<F: ServiceFactory> ServiceLink for PipeLink<F> {
    fn poll(&mut self) -> Option<Vec<u8>> {
        self.links.from_service.poll().map(|m| m.bytes)
    }

    fn recycle(&mut self, batch: Vec<u8>) {
        self.links.from_service.recycle(batch);
    }

    fn send(&mut self, msg: &[u8]) {
        if self.drain_backlog() && self.links.to_service.offer(Endpoint::Member(0), msg) {
            self.queued = true;
        } else {
            self.backlog.push_back(msg.to_vec());
        }
    }

    fn restart(&mut self, msg: &[u8]) -> Result<Vec<u8>, SplitError> {
        // What was queued for the service before the restart is moot (frames below the
        // snapshot; role changes, the restart carries the role): the service drops it
        // unapplied until the restart (see `ServiceLinks::restart_pending`); the answers to
        // what it applied before it saw the flag are discarded below.
        self.links.restart_pending.store(true, Ordering::Release);
        self.backlog.clear();
        self.send(msg);
        let deadline = Instant::now() + RESTART_TIMEOUT;
        loop {
            self.wake();
            while let Some(batch) = self.poll() {
                if matches!(batch_header(&batch), Ok((true, _))) && self.backlog.is_empty() {
                    return Ok(batch);
                }
                // An answer to frames sent before the restart: moot now.
                self.recycle(batch);
            }
            if self.service_closed() {
                return Err(SplitError::ServiceStopped);
            }
            if Instant::now() >= deadline {
                return Err(SplitError::RestartTimeout {
                    seconds: RESTART_TIMEOUT.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// A member's service as an agent on its own thread (see the module docs).
pub struct ServiceAgent<F: ServiceFactory> {
    links: Arc<ServiceLinks<F>>,
    /// The member's flags (kill, consensus closed) and the consensus agent's thread, woken
    /// after a batch is sent.
    member: Arc<MemberLinks>,
    engine: Option<ServiceEngine<HashingApp<F>>>,
    /// The batch being filled, or one that could not be sent yet.
    batch: Option<Vec<u8>>,
    waker: Waker,
    member_id: u32,
    name: String,
    epoch: Instant,
    status: Arc<Shared>,
    last_publish_ns: i64,
    hashed_at: u64,
    failed: Option<String>,
    terminated: bool,
    /// Inside `do_work` (still set in `on_close` if the service panicked there).
    in_work: bool,
    /// The member was killed (a crash: the service gets no goodbye).
    killed: bool,
}

impl<F: ServiceFactory> std::fmt::Debug for ServiceAgent<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAgent")
            .field("name", &self.name)
            .field("applied", &self.engine.as_ref().map(|e| e.applied()))
            .finish_non_exhaustive()
    }
}

impl<F: ServiceFactory> ServiceAgent<F> {
    pub(crate) fn new(
        member_id: u32,
        links: Arc<ServiceLinks<F>>,
        member_links: Arc<MemberLinks>,
        status: Arc<Shared>,
    ) -> Self {
        Self {
            links,
            member: member_links,
            engine: None,
            batch: None,
            waker: Waker::default(),
            member_id,
            name: format!("service-{member_id}"),
            epoch: Instant::now(),
            status,
            last_publish_ns: 0,
            hashed_at: u64::MAX,
            failed: None,
            terminated: false,
            in_work: false,
            killed: false,
        }
    }

    /// Closing after the consensus agent: handles what it sent and this agent has not taken
    /// yet (its termination, typically), as the in-line service would have had it; effects
    /// are dropped, nobody replays them any more.
    fn drain_on_close(&mut self) {
        if self.engine.is_none() {
            self.engine = self
                .links
                .handover
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        let mut scratch = self.batch.take().unwrap_or_default();
        while !engine.is_terminated() {
            let Some(msg) = self.links.to_service.poll() else {
                break;
            };
            scratch.clear();
            let handled = engine.handle(&msg.bytes, &mut scratch);
            self.links.to_service.recycle(msg.bytes);
            if handled.is_err() {
                break;
            }
        }
        let leftover = std::mem::take(
            &mut *self
                .links
                .leftover
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for msg in leftover {
            if engine.is_terminated() {
                break;
            }
            scratch.clear();
            if engine.handle(&msg, &mut scratch).is_err() {
                break;
            }
        }
    }

    /// Sends the batch (its buffer came from the pipe: there is a slot for it).
    fn send_batch(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.links
                .from_service
                .publish(Endpoint::Member(self.member_id), batch);
            self.waker.wake(&self.member.consensus_thread);
        }
    }

    /// Handles what the consensus agent sent; returns the messages handled.
    fn apply(&mut self) -> usize {
        let mut n = 0;
        while n < MESSAGES_PER_CYCLE {
            if self.batch.is_none() {
                // A batch buffer first: frames are only taken when their effects have a place.
                match self.links.from_service.acquire() {
                    Some(mut b) => {
                        b.clear();
                        self.batch = Some(b);
                    }
                    None => break,
                }
            }
            let Some(msg) = self.links.to_service.poll() else {
                break;
            };
            n += 1;
            if self.links.restart_pending.load(Ordering::Acquire) && !is_restart(&msg.bytes) {
                // Before a restart: moot (see `ServiceLinks::restart_pending`).
                self.links.to_service.recycle(msg.bytes);
                continue;
            }
            let engine = self.engine.as_mut().expect("checked by the caller");
            let batch = self.batch.as_mut().expect("acquired above");
            let handled = engine.handle(&msg.bytes, batch);
            self.links.to_service.recycle(msg.bytes);
            match handled {
                Ok(Handled::Applied) => {
                    if batch.len() >= BATCH_SEND_BYTES {
                        self.send_batch();
                    }
                }
                Ok(Handled::Role) => {}
                Ok(Handled::Restarted) => {
                    // Cleared before the answer leaves: what the consensus agent sends once
                    // it has the answer is applied.
                    self.links.restart_pending.store(false, Ordering::Release);
                    self.send_batch();
                }
                Ok(Handled::Terminated) => {
                    self.terminated = true;
                    break;
                }
                Err(e) => {
                    self.failed = Some(format!("member {}: service input: {e}", self.member_id));
                    break;
                }
            }
        }
        if self.batch.as_ref().is_some_and(|b| !b.is_empty()) {
            self.send_batch();
        }
        n
    }

    fn work(&mut self) -> usize {
        if self.engine.is_none() {
            let taken = self
                .links
                .handover
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            match taken {
                Some(engine) => self.engine = Some(engine),
                None => return 0,
            }
        }
        let mut work = self.apply();
        let now = self.epoch.elapsed().as_nanos() as i64;
        if let Some(engine) = self.engine.as_mut() {
            work += engine.app_mut().container.do_background_work(now);
        }
        self.publish_hash();
        work
    }

    fn publish_hash(&mut self) {
        let now = self.epoch.elapsed().as_nanos() as i64;
        if now - self.last_publish_ns < 1_000_000 {
            return;
        }
        self.last_publish_ns = now;
        let Some(engine) = self.engine.as_ref() else {
            return;
        };
        let applied = engine.applied();
        if applied == self.hashed_at {
            return;
        }
        if let Some(hash) = engine.app().state_hash() {
            self.hashed_at = applied;
            self.status.set_state_hash(applied, hash);
        }
    }
}

impl<F: ServiceFactory> Agent for ServiceAgent<F> {
    fn on_start(&mut self) -> Result<(), AgentError> {
        self.epoch = Instant::now();
        self.waker.register(&self.links.service_thread);
        Ok(())
    }

    fn do_work(&mut self) -> usize {
        if self.member.kill.load(Ordering::Acquire) {
            // A crash: drop the service without a goodbye.
            self.engine = None;
            self.terminated = true;
            self.killed = true;
            return 0;
        }
        self.in_work = true;
        let work = self.work();
        self.in_work = false;
        work
    }

    fn termination(&mut self) -> Option<Termination> {
        if let Some(what) = self.failed.take() {
            return Some(Termination::Failed(AgentError::failed("service", what)));
        }
        (self.terminated || self.member.consensus_closed.load(Ordering::Acquire))
            .then_some(Termination::Done)
    }

    fn on_close(&mut self) {
        // First, so the consensus agent stops whatever the service does in its close.
        self.links.service_closed.store(true, Ordering::Release);
        self.waker.wake(&self.member.consensus_thread);
        if !self.killed && !self.in_work && !self.member.kill.load(Ordering::Acquire) {
            self.drain_on_close();
        }
        self.engine = None;
    }

    fn role_name(&self) -> &str {
        &self.name
    }
}
