//! The service on a thread of its own (the `dedicated` threading mode, DESIGN §3): the sans-IO
//! halves of the split, tested here on one thread and run by the node on two.
//!
//! The core keeps the module state and applies every committed entry as always, but the
//! service's part of an entry (the [`Application`] calls) runs earlier, on the service's
//! thread, inside a [`ServiceEngine`]: it gets the committed frames, applies each with the
//! same [`apply_entry`] to its own copy of the module state, calls the service, and records
//! what the service did through its [`Cluster`] handle (timers, replies, service messages,
//! session closes; snapshot bytes) into a batch of *effects*. On the core's side a
//! [`RemoteApplication`] stands in for the service: the core applies an entry only once the
//! engine has (its [`Application::apply_limit`]), and each call replays the recorded effects
//! onto the core's module state. Both copies of the module state go through the same steps
//! with the same inputs, so they stay equal, and the core's state is exactly what it would be
//! with the service called in line: the replicated outcome does not depend on the threading
//! mode. A replayed call that is not the one recorded (a bug, never user error) stops the node
//! with [`RemoteApplication::take_error`] rather than let the copies diverge.
//!
//! ```text
//!  core (consensus thread)                      engine (service thread)
//!  committed frames ───── ToService::Frames ──▶ apply_entry + service + recorder
//!  role changes, terminate, restart ─────────▶  (restart: new module state and service)
//!  apply_limit ◀──────── effect batches ─────── applied_to + recorded calls per callback
//!  replay on its module state, reply to clients
//! ```
//!
//! Wire formats (both directions, little-endian, in-process only):
//! * to the engine: `FRAMES u8, position u64, frames…`; `ROLE u8, role u8`; `TERMINATE u8`;
//!   `RESTART u8, position u64, timestamp i64, role u8, has_module u8, module len u32 +
//!   bytes, has_service u8, service bytes…`;
//! * from the engine: a batch `kind u8 (BATCH | STARTED), applied_to u64`, then groups
//!   `callback u8, position u64, effects…, END u8`, each effect `tag u8` and its fields.

use std::collections::VecDeque;

use tandem_service_api::{
    ClientSession, CloseReason, Cluster, Header, LeadershipTermEvent, OfferError, Role, SessionId,
};

use crate::codec::buf::{Reader, Writer};
use crate::codec::entry::OperatorActionPayload;
use crate::codec::frame::{EntryType, FrameIter};
use crate::consensus::Application;
use crate::consensus::apply::{Applied, ApplyRules, apply_entry, operator_takes_snapshot};
use crate::consensus::snapshot::SnapshotParts;
use crate::consensus::state::{ApplyContext, ModuleState};
use crate::consensus::storage::LogStore;
use crate::consensus::types::{LogPosition, OperatorAction};
use crate::{CodecError, SplitError};

// Messages to the engine.
const TO_FRAMES: u8 = 1;
const TO_ROLE: u8 = 2;
const TO_TERMINATE: u8 = 3;
const TO_RESTART: u8 = 4;

// Batch kinds.
const BATCH: u8 = 1;
const STARTED: u8 = 2;
/// Bytes of a batch's header (kind, applied_to).
pub const BATCH_HEADER: usize = 9;

// Callbacks.
const CB_START: u8 = 1;
const CB_OPEN: u8 = 2;
const CB_CLOSE: u8 = 3;
const CB_MESSAGE: u8 = 4;
const CB_TIMER: u8 = 5;
const CB_NEW_TERM: u8 = 6;
const CB_SNAPSHOT: u8 = 7;

// Effects.
const END: u8 = 0;
const FX_SCHEDULE: u8 = 1;
const FX_CANCEL: u8 = 2;
const FX_EGRESS: u8 = 3;
const FX_OFFER: u8 = 4;
const FX_CLOSE: u8 = 5;
const FX_SNAPSHOT: u8 = 6;

fn callback_name(code: u8) -> &'static str {
    match code {
        CB_START => "start",
        CB_OPEN => "session open",
        CB_CLOSE => "session close",
        CB_MESSAGE => "message",
        CB_TIMER => "timer event",
        CB_NEW_TERM => "new leadership term",
        CB_SNAPSHOT => "take snapshot",
        _ => "unknown",
    }
}

/// Encodes the message that hands committed frames (whole, contiguous, as the log holds them,
/// the first beginning at `position`) to the engine, into `out` (cleared first).
pub fn encode_frames(out: &mut Vec<u8>, position: LogPosition, frames: &[u8]) {
    out.clear();
    out.put_u8(TO_FRAMES);
    out.put_u64(position.0);
    out.extend_from_slice(frames);
}

/// Encodes a role change for the engine.
pub fn encode_role(out: &mut Vec<u8>, role: Role) {
    out.clear();
    out.put_u8(TO_ROLE);
    out.put_u8(role.code());
}

/// Encodes the member's termination for the engine.
pub fn encode_terminate(out: &mut Vec<u8>) {
    out.clear();
    out.put_u8(TO_TERMINATE);
}

/// Encodes a restart at `position` (cluster time `timestamp`, the member's `role` now) from a
/// snapshot's module and service parts (`None`: empty module state, new service).
pub fn encode_restart(
    out: &mut Vec<u8>,
    position: u64,
    timestamp: i64,
    role: Role,
    module: Option<&[u8]>,
    service: Option<&[u8]>,
) {
    out.clear();
    out.put_u8(TO_RESTART);
    out.put_u64(position);
    out.put_i64(timestamp);
    out.put_u8(role.code());
    out.put_bool(module.is_some());
    out.put_var_bytes(module.unwrap_or_default());
    out.put_bool(service.is_some());
    out.extend_from_slice(service.unwrap_or_default());
}

/// Whether a message to the engine is a restart.
pub fn is_restart(msg: &[u8]) -> bool {
    msg.first() == Some(&TO_RESTART)
}

/// The `applied_to` of an effect batch and whether it answers a restart.
pub fn batch_header(batch: &[u8]) -> Result<(bool, u64), CodecError> {
    let mut r = Reader::new(batch, "effect batch");
    let kind = r.u8()?;
    let applied_to = r.u64()?;
    match kind {
        BATCH => Ok((false, applied_to)),
        STARTED => Ok((true, applied_to)),
        other => Err(CodecError::Invalid {
            what: "effect batch kind",
            value: u64::from(other),
        }),
    }
}

/// A service that can report the hash of its state at the snapshot it just wrote (the node's
/// state-hash hook; nothing by default).
pub trait HashedApplication: Application {
    /// The hash taken with the last [`Application::take_snapshot`], if any.
    fn take_snapshot_hash(&mut self) -> Option<u64> {
        None
    }
}

impl HashedApplication for crate::consensus::NoopApplication {}

/// What [`ServiceEngine::handle`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Applied committed frames (their effects are in the batch).
    Applied,
    /// Passed a role change to the service.
    Role,
    /// Restarted: the batch was replaced by a `STARTED` batch, to be sent at once.
    Restarted,
    /// Terminated the service: nothing more will be applied.
    Terminated,
}

/// The service's side: applies committed frames to its copy of the module state and to the
/// service, and records the service's effects.
#[derive(Debug)]
pub struct ServiceEngine<A> {
    app: A,
    state: ModuleState,
    rules: ApplyRules,
    role: Role,
    applied: u64,
    scratch: Vec<u8>,
    snapshot: Vec<u8>,
    terminated: bool,
}

impl<A: HashedApplication> ServiceEngine<A> {
    /// An engine that takes over `app`, already started by the core and applied up to
    /// `applied` where the core's module state is `state`.
    pub fn new(app: A, state: ModuleState, rules: ApplyRules, role: Role, applied: u64) -> Self {
        let mut engine = Self {
            app,
            state,
            rules,
            role,
            applied,
            scratch: Vec::with_capacity(256),
            snapshot: Vec::new(),
            terminated: false,
        };
        engine.clear_transient();
        engine
    }

    /// The service application.
    pub fn app(&self) -> &A {
        &self.app
    }

    /// The service application, mutably (background work, hooks).
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }

    /// Position up to which frames were applied.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Its copy of the module state.
    pub fn module_state(&self) -> &ModuleState {
        &self.state
    }

    /// Whether the service was terminated.
    pub fn is_terminated(&self) -> bool {
        self.terminated
    }

    /// Handles one message from the core, recording into `batch` (a batch is started in an
    /// empty `batch`; `Restarted` replaces its content).
    ///
    /// # Errors
    /// [`CodecError`] for a malformed message (a bug in the runtime, never user input).
    pub fn handle(&mut self, msg: &[u8], batch: &mut Vec<u8>) -> Result<Handled, CodecError> {
        let mut r = Reader::new(msg, "service engine message");
        match r.u8()? {
            TO_FRAMES => {
                let mut position = r.u64()?;
                if batch.is_empty() {
                    batch.put_u8(BATCH);
                    batch.put_u64(self.applied);
                }
                for item in FrameIter::new(r.rest()) {
                    let (frame, _) = item?;
                    let end = LogPosition(position + frame.len_aligned as u64);
                    position = end.0;
                    if self.terminated || end.0 <= self.applied {
                        continue;
                    }
                    let mut recorder = Recorder {
                        app: &mut self.app,
                        out: batch,
                    };
                    let applied = apply_entry(
                        &mut self.state,
                        &self.rules,
                        self.role,
                        &mut self.scratch,
                        &frame,
                        end,
                        &mut recorder,
                    );
                    match applied {
                        Applied::SnapshotMarker => self.record_snapshot(end.0, batch),
                        Applied::Operator(p) => {
                            match p.action {
                                OperatorAction::Suspend => self.state.suspended = true,
                                OperatorAction::Resume => self.state.suspended = false,
                                _ => {}
                            }
                            if operator_takes_snapshot(p.action) {
                                self.record_snapshot(end.0, batch);
                            }
                        }
                        _ => {}
                    }
                    self.clear_transient();
                    self.applied = end.0;
                }
                set_applied_to(batch, self.applied);
                Ok(Handled::Applied)
            }
            TO_ROLE => {
                let code = r.u8()?;
                let role = Role::from_code(code).ok_or(CodecError::Invalid {
                    what: "role",
                    value: u64::from(code),
                })?;
                self.role = role;
                self.app.role_change(role);
                Ok(Handled::Role)
            }
            TO_TERMINATE => {
                if !self.terminated {
                    self.terminated = true;
                    let (ts, at) = (self.state.cluster_time, self.applied);
                    let mut ctx = context(&mut self.state, &self.rules, self.role, ts, at, false);
                    self.app.terminate(&mut ctx);
                }
                Ok(Handled::Terminated)
            }
            TO_RESTART => {
                let position = r.u64()?;
                let timestamp = r.i64()?;
                let code = r.u8()?;
                self.role = Role::from_code(code).ok_or(CodecError::Invalid {
                    what: "role",
                    value: u64::from(code),
                })?;
                let has_module = r.bool()?;
                let module = r.var_bytes()?;
                let has_service = r.bool()?;
                let service = r.rest();
                self.state = if has_module {
                    ModuleState::decode(module, &self.rules.limits)?
                } else {
                    ModuleState::default()
                };
                self.applied = position;
                self.terminated = false;
                batch.clear();
                batch.put_u8(STARTED);
                batch.put_u64(position);
                let service = has_service.then_some(service);
                let mut ctx = context(
                    &mut self.state,
                    &self.rules,
                    self.role,
                    timestamp,
                    position,
                    true,
                );
                begin(batch, CB_START, position);
                self.app.start(
                    &mut RecordingCluster {
                        inner: &mut ctx,
                        out: batch,
                    },
                    service,
                );
                batch.put_u8(END);
                self.clear_transient();
                Ok(Handled::Restarted)
            }
            other => Err(CodecError::Invalid {
                what: "service engine message type",
                value: u64::from(other),
            }),
        }
    }

    fn record_snapshot(&mut self, position: u64, batch: &mut Vec<u8>) {
        self.snapshot.clear();
        self.app.take_snapshot(&mut self.snapshot);
        let hash = self.app.take_snapshot_hash();
        begin(batch, CB_SNAPSHOT, position);
        batch.put_u8(FX_SNAPSHOT);
        batch.put_bool(hash.is_some());
        batch.put_u64(hash.unwrap_or(0));
        batch.put_var_bytes(&self.snapshot);
        batch.put_u8(END);
    }

    /// The core consumes these on its side; here they would only grow.
    fn clear_transient(&mut self) {
        self.state.new_replies.clear();
        self.state.new_closings.clear();
        self.state.new_service_messages = false;
    }
}

/// The service's [`Cluster`] handle on the engine's copy of the module state.
fn context<'a>(
    state: &'a mut ModuleState,
    rules: &ApplyRules,
    role: Role,
    timestamp: i64,
    position: u64,
    in_log: bool,
) -> ApplyContext<'a> {
    ApplyContext {
        state,
        limits: rules.limits,
        member_id: rules.member_id,
        role,
        timestamp,
        position,
        in_log,
    }
}

fn set_applied_to(batch: &mut [u8], applied_to: u64) {
    batch[1..BATCH_HEADER].copy_from_slice(&applied_to.to_le_bytes());
}

fn begin(out: &mut Vec<u8>, callback: u8, position: u64) {
    out.put_u8(callback);
    out.put_u64(position);
}

/// Calls the service and records each call as a group of effects.
struct Recorder<'a, A> {
    app: &'a mut A,
    out: &'a mut Vec<u8>,
}

impl<A: Application> Recorder<'_, A> {
    fn group(
        &mut self,
        callback: u8,
        cluster: &mut dyn Cluster,
        call: impl FnOnce(&mut A, &mut dyn Cluster),
    ) {
        begin(self.out, callback, cluster.log_position());
        call(
            self.app,
            &mut RecordingCluster {
                inner: cluster,
                out: self.out,
            },
        );
        self.out.put_u8(END);
    }
}

impl<A: Application> Application for Recorder<'_, A> {
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        self.group(CB_START, cluster, |a, c| a.start(c, snapshot));
    }
    fn session_open(&mut self, cluster: &mut dyn Cluster, s: &ClientSession<'_>, t: i64) {
        self.group(CB_OPEN, cluster, |a, c| a.session_open(c, s, t));
    }
    fn session_close(
        &mut self,
        cluster: &mut dyn Cluster,
        s: &ClientSession<'_>,
        t: i64,
        r: CloseReason,
    ) {
        self.group(CB_CLOSE, cluster, |a, c| a.session_close(c, s, t, r));
    }
    fn message(
        &mut self,
        cluster: &mut dyn Cluster,
        s: Option<SessionId>,
        t: i64,
        m: &[u8],
        h: &Header,
    ) {
        self.group(CB_MESSAGE, cluster, |a, c| a.message(c, s, t, m, h));
    }
    fn timer_event(&mut self, cluster: &mut dyn Cluster, id: u64, t: i64) {
        self.group(CB_TIMER, cluster, |a, c| a.timer_event(c, id, t));
    }
    fn new_leadership_term(&mut self, cluster: &mut dyn Cluster, e: &LeadershipTermEvent) {
        self.group(CB_NEW_TERM, cluster, |a, c| a.new_leadership_term(c, e));
    }
    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        // The engine takes snapshots itself (`record_snapshot`): apply_entry never asks.
        self.app.take_snapshot(out);
    }
    fn role_change(&mut self, role: Role) {
        self.app.role_change(role);
    }
    fn terminate(&mut self, cluster: &mut dyn Cluster) {
        self.app.terminate(cluster);
    }
}

/// The service's [`Cluster`] handle on the engine's side: each call acts on the engine's
/// module state and is recorded for the core to replay.
struct RecordingCluster<'a> {
    inner: &'a mut dyn Cluster,
    out: &'a mut Vec<u8>,
}

impl Cluster for RecordingCluster<'_> {
    fn member_id(&self) -> u32 {
        self.inner.member_id()
    }
    fn role(&self) -> Role {
        self.inner.role()
    }
    fn time(&self) -> i64 {
        self.inner.time()
    }
    fn log_position(&self) -> u64 {
        self.inner.log_position()
    }
    fn schedule_timer(&mut self, correlation_id: u64, deadline_ns: i64) {
        self.inner.schedule_timer(correlation_id, deadline_ns);
        self.out.put_u8(FX_SCHEDULE);
        self.out.put_u64(correlation_id);
        self.out.put_i64(deadline_ns);
    }
    fn cancel_timer(&mut self, correlation_id: u64) -> bool {
        self.out.put_u8(FX_CANCEL);
        self.out.put_u64(correlation_id);
        self.inner.cancel_timer(correlation_id)
    }
    fn offer_egress(&mut self, session: SessionId, message: &[u8]) -> Result<(), OfferError> {
        self.out.put_u8(FX_EGRESS);
        self.out.put_u64(session.0);
        self.out.put_var_bytes(message);
        self.inner.offer_egress(session, message)
    }
    fn offer(&mut self, message: &[u8]) -> Result<(), OfferError> {
        self.out.put_u8(FX_OFFER);
        self.out.put_var_bytes(message);
        self.inner.offer(message)
    }
    fn close_session(&mut self, session: SessionId) -> bool {
        self.out.put_u8(FX_CLOSE);
        self.out.put_u64(session.0);
        self.inner.close_session(session)
    }
    fn session(&self, session: SessionId) -> Option<ClientSession<'_>> {
        self.inner.session(session)
    }
    fn session_count(&self) -> usize {
        self.inner.session_count()
    }
    fn for_each_session(&self, f: &mut dyn FnMut(ClientSession<'_>)) {
        self.inner.for_each_session(f);
    }
}

/// How the core's side reaches the engine (the node: two pipes; tests: the engine in line).
pub trait ServiceLink {
    /// The next effect batch from the engine, if one is ready (never blocks).
    fn poll(&mut self) -> Option<Vec<u8>>;
    /// Gives a batch back once read.
    fn recycle(&mut self, batch: Vec<u8>);
    /// Sends a message to the engine after everything sent before it (never blocks: the link
    /// queues what the engine cannot take yet).
    fn send(&mut self, msg: &[u8]);
    /// Sends a restart and waits for the engine's `STARTED` batch, discarding every batch
    /// before it (they answer frames the restart makes moot).
    ///
    /// # Errors
    /// [`SplitError`] when the engine does not answer in time or has stopped.
    fn restart(&mut self, msg: &[u8]) -> Result<Vec<u8>, SplitError>;
}

/// The core's side: an [`Application`] that replays what the engine recorded.
#[derive(Debug)]
pub struct RemoteApplication<L> {
    link: L,
    batches: VecDeque<Vec<u8>>,
    /// Read offset in the front batch.
    cursor: usize,
    /// The engine applied everything below here (the newest batch's `applied_to`).
    limit: u64,
    /// State hashes of the snapshots replayed, oldest first (for the node's comparison).
    hashes: VecDeque<u64>,
    /// The replay failed: nothing more is replayed or applied (for good).
    failed: bool,
    error: Option<SplitError>,
    msg: Vec<u8>,
}

impl<L: ServiceLink> RemoteApplication<L> {
    /// Replays what the engine behind `link` records; it has applied up to `applied`.
    pub fn new(link: L, applied: u64) -> Self {
        Self {
            link,
            batches: VecDeque::new(),
            cursor: 0,
            limit: applied,
            hashes: VecDeque::new(),
            failed: false,
            error: None,
            msg: Vec::with_capacity(64),
        }
    }

    /// The link to the engine.
    pub fn link(&self) -> &L {
        &self.link
    }

    /// The link to the engine, mutably.
    pub fn link_mut(&mut self) -> &mut L {
        &mut self.link
    }

    /// The engine applied everything below here.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The hash taken with the oldest snapshot replayed and not yet taken.
    pub fn take_snapshot_hash(&mut self) -> Option<u64> {
        self.hashes.pop_front()
    }

    /// Forgets the hashes not taken.
    pub fn clear_snapshot_hashes(&mut self) {
        self.hashes.clear();
    }

    /// Why the replay failed (reported once; the failure stays): the node must stop, its
    /// module state can no longer be trusted to match the service's.
    pub fn take_error(&mut self) -> Option<SplitError> {
        self.error.take()
    }

    fn fail(&mut self, what: SplitError) {
        if !self.failed {
            self.failed = true;
            self.error = Some(what);
        }
    }

    fn receive(&mut self) {
        while let Some(batch) = self.link.poll() {
            if self.failed {
                // Nothing is replayed any more: give the buffers back.
                self.link.recycle(batch);
                continue;
            }
            match batch_header(&batch) {
                Ok((false, applied_to)) => {
                    self.limit = self.limit.max(applied_to);
                    if self.batches.is_empty() {
                        self.cursor = BATCH_HEADER;
                    }
                    self.batches.push_back(batch);
                }
                Ok((true, _)) => {
                    self.fail(SplitError::UnaskedRestart);
                    self.link.recycle(batch);
                }
                Err(e) => {
                    self.fail(e.into());
                    self.link.recycle(batch);
                }
            }
        }
    }

    /// The front batch, past every batch read to its end (given back).
    fn front(&mut self) -> Option<&[u8]> {
        while let Some(b) = self.batches.front() {
            if self.cursor < b.len() {
                break;
            }
            let done = self.batches.pop_front().expect("front exists");
            self.link.recycle(done);
            self.cursor = BATCH_HEADER;
        }
        let cursor = self.cursor;
        self.batches.front().map(|b| &b[cursor..])
    }

    /// Replays the group recorded for `callback` at `position` (`None`: not checked) onto
    /// `cluster`; a snapshot group's bytes go to `snapshot`.
    fn replay(
        &mut self,
        callback: u8,
        position: Option<u64>,
        cluster: Option<&mut dyn Cluster>,
        snapshot: Option<&mut Vec<u8>>,
    ) {
        if self.failed {
            return;
        }
        let Some(bytes) = self.front() else {
            self.fail(SplitError::NothingRecorded {
                callback: callback_name(callback),
            });
            return;
        };
        let mut r = Reader::new(bytes, "effect group");
        match replay_group(&mut r, callback, position, cluster, snapshot) {
            Ok(hash) => {
                let read = bytes.len() - r.rest().len();
                self.cursor += read;
                if let Some(h) = hash {
                    self.hashes.push_back(h);
                }
            }
            Err(what) => self.fail(what),
        }
    }

    fn restart_from(
        &mut self,
        cluster: &mut dyn Cluster,
        module: Option<&[u8]>,
        service: Option<&[u8]>,
    ) {
        let position = cluster.log_position();
        let mut msg = std::mem::take(&mut self.msg);
        encode_restart(
            &mut msg,
            position,
            cluster.time(),
            cluster.role(),
            module,
            service,
        );
        for b in self.batches.drain(..) {
            self.link.recycle(b);
        }
        let result = self.link.restart(&msg);
        self.msg = msg;
        match result {
            Ok(batch) => match batch_header(&batch) {
                Ok((true, applied_to)) => {
                    self.limit = applied_to;
                    self.cursor = BATCH_HEADER;
                    self.batches.push_back(batch);
                    self.replay(CB_START, Some(position), Some(cluster), None);
                }
                _ => {
                    self.link.recycle(batch);
                    self.fail(SplitError::NoStart);
                }
            },
            Err(e) => self.fail(e),
        }
    }
}

/// Reads one group and replays it; returns a snapshot's hash.
fn replay_group(
    r: &mut Reader<'_>,
    callback: u8,
    position: Option<u64>,
    mut cluster: Option<&mut dyn Cluster>,
    mut snapshot: Option<&mut Vec<u8>>,
) -> Result<Option<u64>, SplitError> {
    let recorded = r.u8()?;
    let at = r.u64()?;
    if recorded != callback {
        return Err(SplitError::Mismatch {
            expected: callback_name(callback),
            recorded: callback_name(recorded),
            at,
        });
    }
    if let Some(expected_at) = position.filter(|&p| p != at) {
        return Err(SplitError::Position {
            callback: callback_name(callback),
            expected_at,
            at,
        });
    }
    let mut hash = None;
    loop {
        let tag = r.u8()?;
        match tag {
            END => return Ok(hash),
            FX_SNAPSHOT => {
                let has = r.bool()?;
                let h = r.u64()?;
                let bytes = r.var_bytes()?;
                hash = has.then_some(h);
                if let Some(out) = snapshot.as_deref_mut() {
                    out.extend_from_slice(bytes);
                }
            }
            _ => {
                let Some(c) = cluster.as_deref_mut() else {
                    return Err(SplitError::Effect {
                        tag,
                        callback: callback_name(callback),
                    });
                };
                match tag {
                    FX_SCHEDULE => {
                        let id = r.u64()?;
                        let deadline = r.i64()?;
                        c.schedule_timer(id, deadline);
                    }
                    FX_CANCEL => {
                        c.cancel_timer(r.u64()?);
                    }
                    FX_EGRESS => {
                        let session = SessionId(r.u64()?);
                        let message = r.var_bytes()?;
                        let _ = c.offer_egress(session, message);
                    }
                    FX_OFFER => {
                        let _ = c.offer(r.var_bytes()?);
                    }
                    FX_CLOSE => {
                        c.close_session(SessionId(r.u64()?));
                    }
                    other => {
                        return Err(SplitError::Effect {
                            tag: other,
                            callback: callback_name(callback),
                        });
                    }
                }
            }
        }
    }
}

impl<L: ServiceLink> Application for RemoteApplication<L> {
    fn start(&mut self, cluster: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        self.restart_from(cluster, None, snapshot);
    }
    fn start_from(&mut self, cluster: &mut dyn Cluster, snapshot: Option<SnapshotParts<'_>>) {
        match snapshot {
            Some(p) => self.restart_from(cluster, Some(p.module), Some(p.service)),
            None => self.restart_from(cluster, None, None),
        }
    }
    fn session_open(&mut self, c: &mut dyn Cluster, _: &ClientSession<'_>, _: i64) {
        let at = c.log_position();
        self.replay(CB_OPEN, Some(at), Some(c), None);
    }
    fn session_close(
        &mut self,
        c: &mut dyn Cluster,
        _: &ClientSession<'_>,
        _: i64,
        _: CloseReason,
    ) {
        let at = c.log_position();
        self.replay(CB_CLOSE, Some(at), Some(c), None);
    }
    fn message(&mut self, c: &mut dyn Cluster, _: Option<SessionId>, _: i64, _: &[u8], _: &Header) {
        let at = c.log_position();
        self.replay(CB_MESSAGE, Some(at), Some(c), None);
    }
    fn timer_event(&mut self, c: &mut dyn Cluster, _: u64, _: i64) {
        let at = c.log_position();
        self.replay(CB_TIMER, Some(at), Some(c), None);
    }
    fn new_leadership_term(&mut self, c: &mut dyn Cluster, _: &LeadershipTermEvent) {
        let at = c.log_position();
        self.replay(CB_NEW_TERM, Some(at), Some(c), None);
    }
    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        self.replay(CB_SNAPSHOT, None, None, Some(out));
    }
    fn role_change(&mut self, role: Role) {
        let mut msg = std::mem::take(&mut self.msg);
        encode_role(&mut msg, role);
        self.link.send(&msg);
        self.msg = msg;
    }
    fn terminate(&mut self, _: &mut dyn Cluster) {
        let mut msg = std::mem::take(&mut self.msg);
        encode_terminate(&mut msg);
        self.link.send(&msg);
        self.msg = msg;
    }
    fn apply_limit(&mut self) -> u64 {
        self.receive();
        if self.failed {
            // Nothing more is applied once the replay failed.
            return 0;
        }
        self.limit
    }
    fn failed(&self) -> bool {
        self.failed
    }
}

/// Where a run of committed frames may be cut for the engine: the end of the last whole frame
/// of `frames` (beginning at `position`) that ends at or before `limit`, the bytes up to it,
/// and whether the run stops early, after an operator shutdown or abort entry (see
/// [`Forwarder`]).
pub fn committed_prefix(
    position: LogPosition,
    frames: &[u8],
    limit: LogPosition,
) -> (LogPosition, usize, bool) {
    let mut end = position;
    let mut len = 0;
    for item in FrameIter::new(frames) {
        let Ok((frame, _)) = item else {
            break;
        };
        let next = end.advance(frame.len_aligned as u64);
        if next > limit {
            break;
        }
        end = next;
        len += frame.len_aligned;
        if frame.header.entry_type == EntryType::OperatorAction
            && OperatorActionPayload::decode(frame.payload)
                .is_ok_and(|p| matches!(p.action, OperatorAction::Shutdown | OperatorAction::Abort))
        {
            return (end, len, true);
        }
    }
    (end, len, false)
}

/// Hands the committed frames of a log to the engine, in order, from where the core's
/// service stands. It stops after an operator shutdown or abort entry until the core has
/// applied it: a member that terminates there (every follower; a leader once the others
/// acknowledged) sends the termination first, so the service sees no entry past it, as an
/// in-line service would not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarder {
    forwarded: LogPosition,
    hold_until: Option<LogPosition>,
}

impl Forwarder {
    /// Forwards from `from` (the position the engine has applied up to).
    pub fn new(from: LogPosition) -> Self {
        Self {
            forwarded: from,
            hold_until: None,
        }
    }

    /// Committed frames below here were handed over.
    pub fn position(&self) -> LogPosition {
        self.forwarded
    }

    /// Hands `send` (which encodes with [`encode_frames`] and returns false when the engine
    /// cannot take more now) the frames of `log` from where it stands (or from `applied`,
    /// after a snapshot install moved the core past it) up to `commit`, at most `max_bytes`
    /// per message. Returns the messages sent.
    pub fn forward<S: LogStore + ?Sized>(
        &mut self,
        log: &S,
        applied: LogPosition,
        commit: LogPosition,
        max_bytes: usize,
        mut send: impl FnMut(LogPosition, &[u8]) -> bool,
    ) -> usize {
        self.forwarded = self.forwarded.max(applied);
        if let Some(hold) = self.hold_until {
            if applied < hold {
                return 0;
            }
            self.hold_until = None;
        }
        let mut sent = 0;
        while self.forwarded < commit {
            let run = log.read_frames(self.forwarded, max_bytes, usize::MAX);
            let (end, len, stop) = committed_prefix(run.position, run.bytes, commit);
            if len == 0 || !send(run.position, &run.bytes[..len]) {
                break;
            }
            self.forwarded = end;
            sent += 1;
            if stop {
                self.hold_until = Some(end);
                break;
            }
        }
        sent
    }
}

/// A [`ServiceLink`] with the engine on the caller's thread, for deterministic tests of the
/// split (the test kit's remote mode, the simulator's). Every message is handled when sent,
/// or, [`InlineLink::lagging`], held until [`InlineLink::release`] lets the engine take it:
/// the engine then lags the core as a thread of its own would.
#[derive(Debug)]
pub struct InlineLink<A> {
    engine: Option<ServiceEngine<A>>,
    /// Lagging: messages the engine has not taken yet.
    held: Option<VecDeque<Vec<u8>>>,
    ready: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    forwarder: Forwarder,
    /// The message being encoded for the engine (reused).
    msg: Vec<u8>,
    error: Option<SplitError>,
}

impl<A: HashedApplication> InlineLink<A> {
    /// A link with no engine yet ([`InlineLink::place`] one).
    pub fn new() -> Self {
        Self {
            engine: None,
            held: None,
            ready: VecDeque::new(),
            spare: Vec::new(),
            forwarder: Forwarder::new(LogPosition(0)),
            msg: Vec::new(),
            error: None,
        }
    }

    /// A link whose engine takes messages only when released.
    pub fn lagging() -> Self {
        Self {
            held: Some(VecDeque::new()),
            ..Self::new()
        }
    }

    /// Lagging: lets the engine take up to `n` of the messages held for it, oldest first.
    pub fn release(&mut self, n: usize) {
        for _ in 0..n {
            let Some(msg) = self.held.as_mut().and_then(VecDeque::pop_front) else {
                return;
            };
            if let Some(batch) = self.handle(&msg) {
                self.ready.push_back(batch);
            }
        }
    }

    /// Puts `engine` behind the link; it has applied everything below its position.
    pub fn place(&mut self, engine: ServiceEngine<A>) {
        self.forwarder = Forwarder::new(LogPosition(engine.applied()));
        self.engine = Some(engine);
    }

    /// The engine, once placed.
    pub fn engine(&self) -> Option<&ServiceEngine<A>> {
        self.engine.as_ref()
    }

    /// The engine, mutably.
    pub fn engine_mut(&mut self) -> Option<&mut ServiceEngine<A>> {
        self.engine.as_mut()
    }

    /// Hands the engine the committed frames of `log` it has not had, up to `commit` (from
    /// `applied` on, after a snapshot install moved the core past what was forwarded).
    pub fn forward<S: LogStore + ?Sized>(
        &mut self,
        log: &S,
        applied: LogPosition,
        commit: LogPosition,
    ) {
        let mut forwarder = self.forwarder;
        let mut msg = std::mem::take(&mut self.msg);
        forwarder.forward(log, applied, commit, 64 << 10, |position, frames| {
            encode_frames(&mut msg, position, frames);
            self.send(&msg);
            true
        });
        self.msg = msg;
        self.forwarder = forwarder;
    }

    fn handle(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let Some(engine) = self.engine.as_mut() else {
            self.error.get_or_insert(SplitError::NoEngine);
            return None;
        };
        let mut batch = self.spare.pop().unwrap_or_default();
        batch.clear();
        match engine.handle(msg, &mut batch) {
            Ok(_) if !batch.is_empty() => Some(batch),
            Ok(_) => {
                self.spare.push(batch);
                None
            }
            Err(e) => {
                self.error.get_or_insert(e.into());
                self.spare.push(batch);
                None
            }
        }
    }

    /// The first malformed message the engine was sent, if any.
    pub fn error(&self) -> Option<&SplitError> {
        self.error.as_ref()
    }
}

impl<A: HashedApplication> Default for InlineLink<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: HashedApplication> ServiceLink for InlineLink<A> {
    fn poll(&mut self) -> Option<Vec<u8>> {
        self.ready.pop_front()
    }
    fn recycle(&mut self, batch: Vec<u8>) {
        self.spare.push(batch);
    }
    fn send(&mut self, msg: &[u8]) {
        if let Some(held) = self.held.as_mut() {
            held.push_back(msg.to_vec());
        } else if let Some(batch) = self.handle(msg) {
            self.ready.push_back(batch);
        }
    }
    fn restart(&mut self, msg: &[u8]) -> Result<Vec<u8>, SplitError> {
        // As the node's link: what was queued before the restart is taken back.
        if let Some(held) = self.held.as_mut() {
            held.clear();
        }
        self.spare.extend(self.ready.drain(..));
        self.handle(msg).ok_or(SplitError::NoStart)
    }
}

/// A service as the core sees it: called in line, or split behind a [`RemoteApplication`].
/// Runtimes start it in line (recovery replays in line) and [`SplitApp::split`] it once the
/// core has started.
#[derive(Debug)]
pub enum SplitApp<A, L> {
    /// Called by the core.
    Inline(A),
    /// The core's stand-in; the service is behind the link.
    Remote(Box<RemoteApplication<L>>),
}

impl<A: HashedApplication, L: ServiceLink> SplitApp<A, L> {
    /// Splits an in-line service started by `core`: stands in for it with a
    /// [`RemoteApplication`] over `link`, and gives `place` the engine built around the service
    /// (with a copy of the core's module state, at its applied position) to put where it will
    /// run: a thread's hand-over slot, or the link itself ([`InlineLink::place`]). Returns
    /// false, doing nothing, if already split.
    pub fn split<S: LogStore>(
        &mut self,
        core: &crate::consensus::Consensus<S>,
        link: L,
        place: impl FnOnce(ServiceEngine<A>, &mut L),
    ) -> bool {
        if !matches!(self, Self::Inline(_)) {
            return false;
        }
        let applied = core.applied_position().0;
        let remote = Self::Remote(Box::new(RemoteApplication::new(link, applied)));
        let (Self::Inline(app), Self::Remote(r)) = (std::mem::replace(self, remote), &mut *self)
        else {
            return false;
        };
        let engine = ServiceEngine::new(
            app,
            core.module_state().clone(),
            core.apply_rules(),
            core.role(),
            applied,
        );
        place(engine, r.link_mut());
        true
    }

    fn as_app(&mut self) -> &mut dyn Application {
        match self {
            Self::Inline(a) => a,
            Self::Remote(a) => a.as_mut(),
        }
    }
}

impl<A: HashedApplication> SplitApp<A, InlineLink<A>> {
    /// Splits in line (see [`SplitApp::split`]): the engine runs behind `link`, a new
    /// [`InlineLink`] (lagging or not).
    pub fn split_in_line<S: LogStore>(
        &mut self,
        core: &crate::consensus::Consensus<S>,
        link: InlineLink<A>,
    ) -> bool {
        self.split(core, link, |engine, link| link.place(engine))
    }

    /// The service application, wherever it runs.
    pub fn app(&self) -> Option<&A> {
        match self {
            Self::Inline(a) => Some(a),
            Self::Remote(r) => r.link().engine().map(ServiceEngine::app),
        }
    }

    /// The service application, mutably.
    pub fn app_mut(&mut self) -> Option<&mut A> {
        match self {
            Self::Inline(a) => Some(a),
            Self::Remote(r) => r.link_mut().engine_mut().map(ServiceEngine::app_mut),
        }
    }

    /// Split in line: hands the engine the newly committed frames of `core`, lets it take up
    /// to `release` held messages (a lagging link), then has the core apply what the engine
    /// applied. Returns the first error of the split, if any.
    pub fn pump<S: LogStore>(
        &mut self,
        core: &mut crate::consensus::Consensus<S>,
        out: &mut crate::consensus::Outbox,
        release: usize,
    ) -> Option<SplitError> {
        let Self::Remote(remote) = self else {
            return None;
        };
        let link = remote.link_mut();
        link.forward(core.log(), core.applied_position(), core.commit_position());
        link.release(release);
        core.handle(crate::consensus::Input::Apply, self, out);
        let Self::Remote(remote) = self else {
            return None;
        };
        remote
            .link()
            .error()
            .cloned()
            .or_else(|| remote.take_error())
    }

    /// Split in line: the engine's copy of the module state, when it applied exactly as far as
    /// `core` (the two must be equal then).
    pub fn engine_state_at<S: LogStore>(
        &self,
        core: &crate::consensus::Consensus<S>,
    ) -> Option<&ModuleState> {
        let Self::Remote(r) = self else {
            return None;
        };
        r.link()
            .engine()
            .filter(|e| e.applied() == core.applied_position().0)
            .map(ServiceEngine::module_state)
    }
}

impl<A: HashedApplication, L: ServiceLink> Application for SplitApp<A, L> {
    fn start(&mut self, c: &mut dyn Cluster, snapshot: Option<&[u8]>) {
        self.as_app().start(c, snapshot);
    }
    fn start_from(&mut self, c: &mut dyn Cluster, snapshot: Option<SnapshotParts<'_>>) {
        self.as_app().start_from(c, snapshot);
    }
    fn session_open(&mut self, c: &mut dyn Cluster, s: &ClientSession<'_>, t: i64) {
        self.as_app().session_open(c, s, t);
    }
    fn session_close(
        &mut self,
        c: &mut dyn Cluster,
        s: &ClientSession<'_>,
        t: i64,
        r: CloseReason,
    ) {
        self.as_app().session_close(c, s, t, r);
    }
    fn message(&mut self, c: &mut dyn Cluster, s: Option<SessionId>, t: i64, m: &[u8], h: &Header) {
        self.as_app().message(c, s, t, m, h);
    }
    fn timer_event(&mut self, c: &mut dyn Cluster, id: u64, t: i64) {
        self.as_app().timer_event(c, id, t);
    }
    fn new_leadership_term(&mut self, c: &mut dyn Cluster, e: &LeadershipTermEvent) {
        self.as_app().new_leadership_term(c, e);
    }
    fn take_snapshot(&mut self, out: &mut Vec<u8>) {
        self.as_app().take_snapshot(out);
    }
    fn role_change(&mut self, role: Role) {
        self.as_app().role_change(role);
    }
    fn terminate(&mut self, c: &mut dyn Cluster) {
        self.as_app().terminate(c);
    }
    fn apply_limit(&mut self) -> u64 {
        self.as_app().apply_limit()
    }
    fn failed(&self) -> bool {
        matches!(self, Self::Remote(r) if r.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::{FrameHeader, encode_frame};
    use crate::consensus::state::Limits;
    use crate::consensus::types::Term;

    fn frame(out: &mut Vec<u8>, sequence: u64, payload: &[u8]) {
        let header = FrameHeader {
            entry_type: EntryType::SessionMessage,
            flags: 0,
            term: Term(1),
            session_id: SessionId(1),
            sequence,
            timestamp: 5,
        };
        encode_frame(out, &header, payload);
    }

    #[test]
    fn committed_prefix_stops_at_the_last_whole_frame_within_the_limit() {
        let mut frames = Vec::new();
        frame(&mut frames, 1, b"a");
        let first = frames.len() as u64;
        frame(&mut frames, 2, b"bb");
        let base = LogPosition(1000);
        assert_eq!(
            committed_prefix(base, &frames, LogPosition(1000 + first)),
            (LogPosition(1000 + first), first as usize, false)
        );
        assert_eq!(
            committed_prefix(base, &frames, LogPosition(1000 + first - 1)),
            (base, 0, false)
        );
        let all = frames.len() as u64;
        assert_eq!(
            committed_prefix(base, &frames, LogPosition(u64::MAX)),
            (LogPosition(1000 + all), all as usize, false)
        );
    }

    /// A link that only hands over the batches it was given.
    #[derive(Default)]
    struct Canned(VecDeque<Vec<u8>>);

    impl ServiceLink for Canned {
        fn poll(&mut self) -> Option<Vec<u8>> {
            self.0.pop_front()
        }
        fn recycle(&mut self, _: Vec<u8>) {}
        fn send(&mut self, _: &[u8]) {}
        fn restart(&mut self, _: &[u8]) -> Result<Vec<u8>, SplitError> {
            Err(SplitError::ServiceStopped)
        }
    }

    fn limits() -> Limits {
        Limits {
            max_message_bytes: 1024,
            reply_cache_entries: 8,
            reply_cache_bytes: 4096,
            max_pending_service_messages: 8,
        }
    }

    fn replay_message_at(app: &mut RemoteApplication<Canned>, position: u64) {
        let mut state = ModuleState::default();
        let mut ctx = ApplyContext {
            state: &mut state,
            limits: limits(),
            member_id: 0,
            role: Role::Follower,
            timestamp: 5,
            position,
            in_log: true,
        };
        let header = Header {
            log_position: position,
            term: 1,
            timestamp: 5,
            sequence: 1,
        };
        app.message(&mut ctx, Some(SessionId(1)), 5, b"m", &header);
    }

    #[test]
    fn a_replay_that_does_not_match_the_recording_is_an_error_not_a_panic() {
        // Recorded: a timer event at 64. Replayed: a message at 64.
        let mut batch = Vec::new();
        batch.put_u8(BATCH);
        batch.put_u64(64);
        begin(&mut batch, CB_TIMER, 64);
        batch.put_u8(END);
        let mut app = RemoteApplication::new(Canned(VecDeque::from([batch])), 0);
        assert_eq!(app.apply_limit(), 64);
        replay_message_at(&mut app, 64);
        let e = app.take_error().expect("a mismatch is reported");
        assert_eq!(
            e,
            SplitError::Mismatch {
                expected: "message",
                recorded: "timer event",
                at: 64
            }
        );
        assert_eq!(
            app.apply_limit(),
            0,
            "nothing more is applied after a failed replay"
        );
    }

    #[test]
    fn a_truncated_or_unknown_batch_is_an_error() {
        let mut app = RemoteApplication::new(Canned(VecDeque::from([vec![BATCH, 1, 2]])), 0);
        assert_eq!(app.apply_limit(), 0);
        assert!(matches!(app.take_error(), Some(SplitError::Codec(_))));

        let mut batch = Vec::new();
        batch.put_u8(BATCH);
        batch.put_u64(64);
        begin(&mut batch, CB_MESSAGE, 64);
        batch.put_u8(42); // no such effect
        let mut app = RemoteApplication::new(Canned(VecDeque::from([batch])), 0);
        assert_eq!(app.apply_limit(), 64);
        replay_message_at(&mut app, 64);
        assert_eq!(
            app.take_error(),
            Some(SplitError::Effect {
                tag: 42,
                callback: "message"
            })
        );
    }

    #[test]
    fn a_replay_with_nothing_recorded_is_an_error() {
        let mut app = RemoteApplication::new(Canned::default(), 0);
        replay_message_at(&mut app, 64);
        assert_eq!(
            app.take_error(),
            Some(SplitError::NothingRecorded {
                callback: "message"
            })
        );
    }

    #[test]
    fn a_restart_the_engine_does_not_answer_is_an_error() {
        let mut app = RemoteApplication::new(Canned::default(), 0);
        let mut state = ModuleState::default();
        let mut ctx = ApplyContext {
            state: &mut state,
            limits: limits(),
            member_id: 0,
            role: Role::Follower,
            timestamp: 0,
            position: 128,
            in_log: true,
        };
        app.start(&mut ctx, None);
        assert_eq!(app.take_error(), Some(SplitError::ServiceStopped));
    }

    #[test]
    fn a_malformed_message_to_the_engine_is_an_error() {
        let rules = ApplyRules {
            limits: limits(),
            member_id: 0,
            max_sessions: 4,
            apply_duplicates: false,
        };
        let mut engine = ServiceEngine::new(
            crate::consensus::NoopApplication,
            ModuleState::default(),
            rules,
            Role::Follower,
            0,
        );
        let mut batch = Vec::new();
        assert!(engine.handle(&[], &mut batch).is_err());
        assert!(engine.handle(&[99], &mut batch).is_err());
        assert!(engine.handle(&[TO_ROLE, 9], &mut batch).is_err());
        // Frames that do not decode.
        let mut msg = Vec::new();
        encode_frames(&mut msg, LogPosition(0), &[1, 2, 3]);
        assert!(engine.handle(&msg, &mut batch).is_err());
    }
}
