//! The simulated world: members (real consensus core + real service container over a simulated
//! disk), clients, the network, one virtual clock and one PRNG. [`World::run`] plays one
//! scenario: a fault phase, then a quiet phase, checking the safety invariants after every
//! input any core handles.

use std::collections::BTreeMap;

use crate::codec::client::Ingress;
use crate::codec::peer::PeerMessage;
use crate::consensus::{
    ClientAddr, Command, Config, Consensus, Input, LogStore, MemLog, MemberId, Outbox,
};
use tandem_service_api::Role;

use crate::container::remote::InlineLink;
use crate::sim::SimOptions;
use crate::sim::app::{RecordingApp, SimApp};
use crate::sim::client::{Client, ClientEvent};
use crate::sim::disk::{Disk, FsyncPolicy};
use crate::sim::faults::FaultProfile;
use crate::sim::invariants::apply_order::ApplyOrder;
use crate::sim::invariants::committed_stable::CommittedLog;
use crate::sim::invariants::leader_completeness::LeaderCompleteness;
use crate::sim::invariants::liveness::LIVENESS_BOUND_NS;
use crate::sim::invariants::log_matching::LogMatching;
use crate::sim::invariants::single_leader::SingleLeader;
use crate::sim::invariants::{Check, Violation, exactly_once, linearizability, liveness};
use crate::sim::network::{Endpoint, Network, NetworkProfile};
use crate::sim::rng::SimRng;
use crate::sim::stale::StaleSuffix;
use crate::sim::trace::{TraceHash, fnv_u64};

/// Virtual time per step.
pub const STEP_NS: i64 = 1_000_000;
/// The replication window (and largest append) of members where the stale-suffix fault runs.
const STALE_WINDOW_BYTES: u64 = 1024;
/// Client addresses start here.
pub const CLIENT_BASE: u64 = 1000;

/// Counts of what a scenario did.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedStats {
    /// Virtual time simulated.
    pub virtual_ns: i64,
    /// Inputs handled by cores.
    pub inputs: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Process crashes.
    pub process_crashes: u64,
    /// Machine crashes.
    pub machine_crashes: u64,
    /// Wipes.
    pub wipes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Terms that had a leader.
    pub terms_led: u64,
    /// Snapshots taken (all members).
    pub snapshots: u64,
    /// Snapshots installed from a leader.
    pub installs: u64,
    /// Client operations completed.
    pub ops_completed: u64,
    /// Client failovers.
    pub failovers: u64,
    /// Torn writes modelled.
    pub torn_writes: u64,
    /// Stale-suffix splits made, and those after which a new leader was elected.
    pub stale_splits: (u64, u64),
}

/// The property a failed split-service replay violates.
const SPLIT_PROPERTY: &str = "service split (engine and core replay agree)";

/// One member.
#[derive(Debug)]
pub struct Member {
    /// The core while up.
    pub core: Option<Consensus<MemLog>>,
    /// The service container (recording what it applies).
    pub app: SimApp,
    out: Outbox,
    /// Its disk.
    pub disk: Disk,
    rate_ppm: i64,
    offset_ns: i64,
    /// When a down member comes back.
    pub restart_at: Option<i64>,
    incarnation: u64,
    /// Lost acknowledged data (machine crash under fsync none): rejoins as a learner until
    /// its core reports it is a voter again.
    rejoin_as_learner: bool,
}

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    seed: u64,
    opts: SimOptions,
    rng: SimRng,
    now_ns: i64,
    /// The members.
    pub members: Vec<Member>,
    clients: Vec<Client>,
    net: Network,
    /// The trace hash.
    pub trace: TraceHash,
    faults: FaultProfile,
    /// The clients' history.
    history: Vec<(u32, ClientEvent)>,
    /// A member that lost data (wiped, or machine crash under fsync none) and the highest
    /// commit position when it did: no other data loss until it has caught up.
    window: Option<(usize, u64, bool)>,
    partition_until: Option<i64>,
    /// The stale-suffix fault, on seeds that have it.
    stale: Option<StaleSuffix>,
    single_leader: SingleLeader,
    log_matching: LogMatching,
    committed: CommittedLog,
    leader_completeness: LeaderCompleteness,
    apply_order: ApplyOrder,
    /// Stats.
    pub stats: SeedStats,
    quiet: bool,
}

impl World {
    /// A world for `seed`.
    pub fn new(seed: u64, opts: &SimOptions) -> Self {
        let mut rng = SimRng::new(seed);
        let faults = FaultProfile::draw(&mut rng);
        let n = opts.cluster_size as usize;
        let members = (0..n)
            .map(|_| Member {
                core: None,
                app: SimApp::Inline(RecordingApp::new()),
                out: Outbox::new(),
                disk: Disk::new(faults.fsync, (20_000, rng.range_i64(100_000, 3_000_000))),
                rate_ppm: rng.range_i64(-faults.drift_ppm, faults.drift_ppm),
                offset_ns: rng.range_i64(0, 1_000_000_000_000),
                restart_at: None,
                incarnation: 0,
                rejoin_as_learner: false,
            })
            .collect();
        let clients = (0..opts.clients)
            .map(|c| {
                let ops = rng.range_i64(
                    i64::from(opts.ops_per_client / 2),
                    i64::from(opts.ops_per_client),
                ) as u32;
                Client::new(c, opts.cluster_size, ops, &mut rng)
            })
            .collect();
        Self {
            seed,
            opts: opts.clone(),
            rng,
            now_ns: 0,
            members,
            clients,
            net: Network::new(faults.network),
            trace: TraceHash::default(),
            faults,
            history: Vec::new(),
            window: None,
            partition_until: None,
            stale: StaleSuffix::draw(seed),
            single_leader: SingleLeader::default(),
            log_matching: LogMatching::new(n),
            committed: CommittedLog::new(n),
            leader_completeness: LeaderCompleteness::new(n),
            apply_order: ApplyOrder::new(n),
            stats: SeedStats::default(),
            quiet: false,
        }
    }

    /// The fault profile drawn for this seed.
    pub fn faults(&self) -> &FaultProfile {
        &self.faults
    }

    fn n(&self) -> usize {
        self.members.len()
    }

    fn local_ns(&self, i: usize) -> i64 {
        let m = &self.members[i];
        m.offset_ns + self.now_ns + self.now_ns / 1_000_000 * m.rate_ppm
    }

    fn config(&self, i: usize) -> Config {
        let mut c = Config::new(MemberId(i as u32), self.n() as u32);
        c.election_timeout_ns = 150_000_000;
        c.heartbeat_interval_ns = 20_000_000;
        c.session_timeout_ns = 600_000_000_000;
        c.snapshot_chunk_bytes = 256;
        c.max_frames_per_append = 16;
        c.max_append_bytes = 4096;
        if self.stale.is_some() {
            // One frame per append where the stale-suffix fault runs, so that a resend from
            // below a stale suffix carries only frames the follower already holds (see
            // `sim::stale`); and a small window, so that one rejection (reordered appends are
            // rejected as gaps) sets off a few resends, not one per frame of the log.
            c.max_frames_per_append = 1;
            c.max_append_bytes = STALE_WINDOW_BYTES as usize;
            c.max_inflight_bytes = STALE_WINDOW_BYTES;
        }
        c.seed = fnv_u64(fnv_u64(self.seed, i as u64), self.members[i].incarnation);
        c.bugs = self.opts.bugs;
        c
    }

    fn start_member(&mut self, i: usize) -> Check {
        let cfg = self.config(i);
        let local = self.local_ns(i);
        let m = &mut self.members[i];
        m.incarnation += 1;
        m.restart_at = None;
        m.disk.epoch = 0;
        let log = m.disk.log.take().unwrap_or_default();
        let snap = m.disk.newest_snapshot();
        let snap_pos = snap.as_ref().map_or(0, |s| s.position.0);
        let mut core = Consensus::new(cfg, log, m.disk.node_state, snap);
        if m.rejoin_as_learner {
            core.rejoin_as_learner();
        }
        m.app = SimApp::Inline(RecordingApp::new());
        m.out.clear();
        let base = self.committed.chain_at(core.log().start().0.0);
        self.log_matching.rebase(i, core.log(), base);
        self.committed.restart(i, snap_pos);
        core.start(local, &mut m.app, &mut m.out);
        if self.opts.remote_service {
            m.app.split_in_line(&core, InlineLink::lagging());
        }
        m.core = Some(core);
        self.trace.num(b'S', i as u64);
        self.process(i)
    }

    /// Feeds one input to member `i` (if up) and carries out what follows.
    fn feed(&mut self, i: usize, input: Input<'_>) -> Check {
        let m = &mut self.members[i];
        let Some(core) = m.core.as_mut() else {
            return Ok(());
        };
        core.handle(input, &mut m.app, &mut m.out);
        if let Some(e) = m.app.pump(core, &mut m.out, self.rng.below(3) as usize) {
            return Err(Violation::new(SPLIT_PROPERTY, format!("member {i}: {e}")));
        }
        self.stats.inputs += 1;
        self.process(i)
    }

    /// Carries out member `i`'s commands, checks the invariants, feeds back immediate
    /// completions, until nothing is left.
    fn process(&mut self, i: usize) -> Check {
        let m = &mut self.members[i];
        if m.rejoin_as_learner && m.core.as_ref().is_some_and(|c| !c.is_learner()) {
            m.rejoin_as_learner = false;
        }
        let mut follow: Vec<Input<'static>> = Vec::new();
        loop {
            let out = std::mem::take(&mut self.members[i].out);
            let mut cut = None;
            for c in &out.commands {
                self.command(i, c, &out, &mut cut, &mut follow);
            }
            let mut reuse = out;
            reuse.clear();
            if self.members[i].out.is_empty() {
                self.members[i].out = reuse;
            }
            self.check_member(i, cut)?;
            let Some(input) = follow.pop() else {
                return Ok(());
            };
            let m = &mut self.members[i];
            let Some(core) = m.core.as_mut() else {
                return Ok(());
            };
            core.handle(input, &mut m.app, &mut m.out);
            if let Some(e) = m.app.pump(core, &mut m.out, self.rng.below(3) as usize) {
                return Err(Violation::new(SPLIT_PROPERTY, format!("member {i}: {e}")));
            }
            self.stats.inputs += 1;
        }
    }

    fn command(
        &mut self,
        i: usize,
        c: &Command,
        out: &Outbox,
        cut: &mut Option<crate::consensus::LogPosition>,
        follow: &mut Vec<Input<'static>>,
    ) {
        let now = self.now_ns;
        match c {
            Command::SendPeer { to, bytes } => {
                self.net.send(
                    now,
                    Endpoint::Member(i as u32),
                    Endpoint::Member(to.0),
                    out.slice(bytes),
                    &mut self.rng,
                );
            }
            Command::SendClient { to, bytes } => {
                if to.0 >= CLIENT_BASE && to.0 < CLIENT_BASE + self.clients.len() as u64 {
                    let c = (to.0 - CLIENT_BASE) as u32;
                    self.net.send(
                        now,
                        Endpoint::Member(i as u32),
                        Endpoint::Client(c),
                        out.slice(bytes),
                        &mut self.rng,
                    );
                }
            }
            Command::Appended { from, to, epoch } => {
                self.trace.num(b'A', fnv_u64(fnv_u64(from.0, to.0), *epoch));
                if let Some(inp) = self.members[i]
                    .disk
                    .appended(now, *to, *epoch, &mut self.rng)
                {
                    follow.push(inp);
                }
            }
            Command::Truncated { position, epoch } => {
                self.trace.num(b'T', position.0);
                self.members[i].disk.truncated(*position, *epoch);
                *cut = Some(cut.map_or(*position, |c| c.min(*position)));
            }
            Command::PersistState { id, state } => {
                self.trace.num(b'P', fnv_u64(*id, state.term.0));
                self.members[i]
                    .disk
                    .persist_state(now, *id, *state, &mut self.rng);
            }
            Command::SnapshotTaken { snapshot } => {
                self.stats.snapshots += 1;
                self.trace.num(b'N', snapshot.position.0);
                self.members[i].disk.snapshot_taken(snapshot.clone());
            }
            Command::SnapshotInstalled { snapshot, epoch } => {
                self.stats.installs += 1;
                self.trace.num(b'I', snapshot.position.0);
                self.members[i]
                    .disk
                    .snapshot_installed(snapshot.clone(), *epoch);
                let pos = snapshot.position.0;
                self.committed.restart(i, pos);
                *cut = Some(crate::consensus::LogPosition(0));
            }
            Command::Purged { position } => self.trace.num(b'G', position.0),
            Command::CommitAdvanced { position } => self.trace.num(b'C', position.0),
            Command::RoleChanged { role, term, .. } => {
                self.trace.num(b'R', fnv_u64(role.code().into(), term.0))
            }
            Command::ElectionStateChanged { .. } | Command::Terminated => {}
        }
    }

    fn check_member(&mut self, i: usize, cut: Option<crate::consensus::LogPosition>) -> Check {
        let m = &mut self.members[i];
        let Some(core) = m.core.as_ref() else {
            return Ok(());
        };
        let log = core.log();
        if cut == Some(crate::consensus::LogPosition(0)) && log.start().0.0 > 0 {
            // Snapshot installed: the log restarts at the snapshot.
            let base = self.committed.chain_at(log.start().0.0);
            self.log_matching.rebase(i, log, base);
        } else {
            self.log_matching.sync(i, log, cut)?;
        }
        let mirror = &self.log_matching.mirrors[i];
        self.committed.sync(i, core, mirror)?;
        if core.role() == Role::Leader {
            self.single_leader.observe(core.term().0, i as u32)?;
            self.leader_completeness.check(
                i,
                core.term().0,
                log.start().0.0,
                mirror,
                &self.committed,
            )?;
        }
        if let Some(engine) = m.app.engine_state_at(core) {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            engine.encode(&mut a);
            core.module_state().encode(&mut b);
            if a != b {
                return Err(Violation::new(
                    SPLIT_PROPERTY,
                    format!(
                        "member {i}: the service engine's module state differs from the core's \
                         at {}",
                        core.applied_position()
                    ),
                ));
            }
        }
        let Some(rec) = m.app.app_mut() else {
            return Ok(());
        };
        let applied = std::mem::take(&mut rec.applied);
        self.apply_order.check(i, &applied, &self.committed)?;
        let Some(rec) = m.app.app_mut() else {
            return Ok(());
        };
        rec.applied = applied;
        rec.applied.clear();
        if let Some(s) = rec.container.service_mut() {
            exactly_once::check_service(i, s)?;
        }
        Ok(())
    }

    fn deliver(&mut self, env: crate::sim::network::Envelope) -> Check {
        self.stats.delivered += 1;
        match env.to {
            Endpoint::Member(to) => {
                let to = to as usize;
                if self.members[to].core.is_none() {
                    return Ok(());
                }
                self.trace.num(b'd', to as u64);
                self.trace.bytes(b'm', &env.bytes);
                match env.from {
                    Endpoint::Member(from) => {
                        let msg = PeerMessage::decode(&env.bytes)
                            .expect("cores send valid peer messages");
                        self.feed(
                            to,
                            Input::Peer {
                                from: MemberId(from),
                                msg,
                            },
                        )
                    }
                    Endpoint::Client(c) => {
                        let msg = Ingress::decode(&env.bytes).expect("clients send valid ingress");
                        self.feed(
                            to,
                            Input::Client {
                                from: ClientAddr(CLIENT_BASE + u64::from(c)),
                                msg,
                            },
                        )
                    }
                }
            }
            Endpoint::Client(c) => {
                let Endpoint::Member(from) = env.from else {
                    return Ok(());
                };
                self.trace.num(b'c', u64::from(c));
                self.trace.bytes(b'm', &env.bytes);
                let mut sends = Vec::new();
                let mut events = Vec::new();
                self.clients[c as usize].receive(
                    self.now_ns,
                    from,
                    &env.bytes,
                    &mut sends,
                    &mut events,
                );
                self.client_output(c, sends, events);
                Ok(())
            }
        }
    }

    fn client_output(&mut self, c: u32, sends: Vec<(u32, Vec<u8>)>, events: Vec<ClientEvent>) {
        for (to, bytes) in sends {
            self.net.send(
                self.now_ns,
                Endpoint::Client(c),
                Endpoint::Member(to),
                &bytes,
                &mut self.rng,
            );
        }
        for e in events {
            if matches!(e, ClientEvent::Return(..)) {
                self.stats.ops_completed += 1;
            }
            self.history.push((c, e));
        }
    }

    /// One step of virtual time.
    fn step(&mut self) -> Check {
        self.now_ns += STEP_NS;
        while let Some(env) = self.net.pop_due(self.now_ns) {
            self.deliver(env)?;
        }
        let mut done = Vec::new();
        for i in 0..self.n() {
            if self.members[i].core.is_none() {
                continue;
            }
            done.clear();
            self.members[i].disk.due(self.now_ns, &mut done);
            for inp in done.drain(..) {
                self.feed(i, inp)?;
            }
            let local = self.local_ns(i);
            self.feed(i, Input::Tick { now_ns: local })?;
            self.feed(i, Input::Flush)?;
            if self.faults.fsync == FsyncPolicy::None && self.rng.chance(0.05) {
                let end = self.members[i].core.as_ref().expect("up").log_end();
                self.members[i].disk.writeback(end);
            }
        }
        for c in 0..self.clients.len() {
            let mut sends = Vec::new();
            let mut events = Vec::new();
            self.clients[c].poll(self.now_ns, &mut self.rng, &mut sends, &mut events);
            self.client_output(c as u32, sends, events);
        }
        self.restarts()?;
        if !self.quiet {
            self.inject_faults()?;
        }
        Ok(())
    }

    fn max_commit(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| m.core.as_ref().map(|c| c.commit_position().0))
            .max()
            .unwrap_or(0)
            .max(self.committed.end())
    }

    fn restarts(&mut self) -> Check {
        // Close the data-loss window once the member caught up.
        if let Some((w, bound, _)) = self.window
            && let Some(c) = &self.members[w].core
            && !c.is_learner()
            && c.commit_position().0 >= bound
            && self.members[w].disk.node_state.is_some()
        {
            self.window = None;
        }
        for i in 0..self.n() {
            let Some(at) = self.members[i].restart_at else {
                continue;
            };
            if self.now_ns < at {
                continue;
            }
            if let Some((w, bound, true)) = self.window {
                // Machine crash under fsync none: stay down until the others re-established
                // every committed entry under a new leader.
                if w == i {
                    let ok = self.members.iter().any(|m| {
                        m.core.as_ref().is_some_and(|c| {
                            c.role() == Role::Leader && c.commit_position().0 >= bound
                        })
                    });
                    if !ok {
                        continue;
                    }
                }
            }
            self.start_member(i)?;
        }
        Ok(())
    }

    fn up_count(&self) -> usize {
        self.members.iter().filter(|m| m.core.is_some()).count()
    }

    fn crash(&mut self, i: usize, kind: u8) {
        let m = &mut self.members[i];
        let Some(core) = m.core.take() else { return };
        m.out.clear();
        let log = core.into_log();
        match kind {
            0 => {
                self.stats.process_crashes += 1;
                m.disk.process_crash(log);
            }
            1 => {
                self.stats.machine_crashes += 1;
                if m.disk.policy == FsyncPolicy::None {
                    m.rejoin_as_learner = true;
                }
                m.disk.machine_crash(log, &mut self.rng);
            }
            _ => {
                self.stats.wipes += 1;
                m.disk.wipe();
            }
        }
        self.trace.num(b'K', (i as u64) << 8 | u64::from(kind));
        let down = self.rng.range_i64(5_000_000, 600_000_000);
        self.members[i].restart_at = Some(self.now_ns + down);
    }

    fn inject_faults(&mut self) -> Check {
        let f = self.faults;
        let n = self.n();
        // The stale-suffix fault; while it holds the network no other partition starts.
        if let Some(s) = &mut self.stale {
            s.step(
                self.now_ns,
                &self.members,
                &mut self.net,
                self.partition_until.is_none(),
            );
            if s.holds_network() {
                return self.other_faults();
            }
        }
        // Partitions.
        match self.partition_until {
            Some(t) if self.now_ns >= t => {
                self.net.heal();
                self.partition_until = None;
            }
            None if self.rng.chance(f.partition) => {
                self.stats.partitions += 1;
                let a = self.rng.below(n as u64) as u32;
                match self.rng.below(3) {
                    0 => {
                        for b in 0..n as u32 {
                            if b != a {
                                self.net.cut(Endpoint::Member(a), Endpoint::Member(b));
                            }
                        }
                    }
                    1 => {
                        // One way: a hears nobody (but is heard), or the reverse.
                        let inbound = self.rng.chance(0.5);
                        for b in 0..n as u32 {
                            if b != a {
                                let (x, y) = if inbound { (b, a) } else { (a, b) };
                                self.net
                                    .blocked
                                    .insert((Endpoint::Member(x), Endpoint::Member(y)));
                            }
                        }
                    }
                    _ => {
                        // Random split, plus clients cut from a random member.
                        for x in 0..n as u32 {
                            for y in 0..n as u32 {
                                if x < y && self.rng.chance(0.4) {
                                    self.net.cut(Endpoint::Member(x), Endpoint::Member(y));
                                }
                            }
                        }
                        for c in 0..self.clients.len() as u32 {
                            self.net.cut(Endpoint::Client(c), Endpoint::Member(a));
                        }
                    }
                }
                self.partition_until =
                    Some(self.now_ns + self.rng.range_i64(20_000_000, 1_000_000_000));
            }
            _ => {}
        }
        self.other_faults()
    }

    /// Every fault but partitions.
    fn other_faults(&mut self) -> Check {
        let f = self.faults;
        let n = self.n();
        let i = self.rng.below(n as u64) as usize;
        let up = self.members[i].core.is_some();
        if up && self.rng.chance(f.process_crash) {
            self.crash(i, 0);
        } else if up && self.rng.chance(f.machine_crash) {
            let lossy = f.fsync == FsyncPolicy::None;
            if !lossy {
                self.crash(i, 1);
            } else if self.window.is_none() && self.up_count() == n {
                self.window = Some((i, self.max_commit(), true));
                self.crash(i, 1);
            }
        } else if up && self.rng.chance(f.wipe) && self.window.is_none() && self.up_count() == n {
            self.window = Some((i, self.max_commit(), false));
            self.crash(i, 2);
        }
        if self.rng.chance(f.slow_disk) {
            let d = &mut self.members[i].disk;
            d.slow_until_ns = self.now_ns + self.rng.range_i64(10_000_000, 500_000_000);
            d.slow_latency_ns = self.rng.range_i64(5_000_000, 200_000_000);
        }
        if self.rng.chance(f.clock_step) {
            let step = self.rng.range_i64(-200_000_000, 500_000_000);
            self.members[i].offset_ns += step;
        }
        if self.rng.chance(f.snapshot) {
            for j in 0..n {
                self.feed(j, Input::TakeSnapshot)?;
            }
        }
        if self.rng.chance(f.purge)
            && let Some(p) = self.members[i].disk.purge_point()
        {
            self.feed(i, Input::Purge { position: p })?;
        }
        if self.rng.chance(f.invalidate) {
            // Like the operator tool: only when the fallback snapshot is still covered by the
            // log (retention keeps the log from the older of the newest two).
            let m = &mut self.members[i];
            let start = match (&m.core, &m.disk.log) {
                (Some(c), _) => c.log().start().0.0,
                (None, Some(l)) => l.start().0.0,
                (None, None) => u64::MAX,
            };
            if m.disk.purge_point().is_some_and(|p| p.0 >= start) {
                m.disk.invalidate_latest();
            }
        }
        Ok(())
    }

    fn leader(&self) -> Option<u32> {
        let mut best: Option<(u64, u32)> = None;
        for (i, m) in self.members.iter().enumerate() {
            if let Some(c) = &m.core
                && c.role() == Role::Leader
                && best.is_none_or(|b| c.term().0 > b.0)
            {
                best = Some((c.term().0, i as u32));
            }
        }
        best.map(|b| b.1)
    }

    fn caught_up(&self) -> bool {
        let Some(l) = self.leader() else { return false };
        let lc = self.members[l as usize]
            .core
            .as_ref()
            .expect("leader is up");
        let target = lc.commit_position();
        self.members.iter().all(|m| {
            m.core.as_ref().is_some_and(|c| {
                !c.is_learner() && c.applied_position() >= target && c.term() == lc.term()
            })
        })
    }

    /// Plays the scenario; returns the first violation.
    pub fn run(&mut self) -> Check {
        for i in 0..self.n() {
            self.start_member(i)?;
        }
        let fault_end = self.faults.fault_phase_ns;
        while self.now_ns < fault_end {
            self.step()?;
        }
        // Quiet phase: heal everything, bring everyone back.
        self.quiet = true;
        self.net.heal();
        self.partition_until = None;
        self.net.profile = NetworkProfile::perfect();
        for m in &mut self.members {
            m.disk.slow_until_ns = 0;
            if m.core.is_none() && m.restart_at.is_some() {
                m.restart_at = Some(self.now_ns);
            }
        }
        let quiet_start = self.now_ns;
        let deadline = quiet_start + LIVENESS_BOUND_NS;
        let mut settled_at = None;
        while self.now_ns < deadline {
            self.step()?;
            let done = self.clients.iter().all(Client::finished) && self.caught_up();
            if done {
                // A little longer, so late duplicates and stragglers are checked too.
                let t = *settled_at.get_or_insert(self.now_ns);
                if self.now_ns - t >= 100_000_000 {
                    break;
                }
            } else {
                settled_at = None;
            }
        }
        self.stats.virtual_ns = self.now_ns;
        self.stats.terms_led = self.single_leader.terms_led() as u64;
        self.stats.failovers = self.clients.iter().map(|c| c.failovers).sum();
        self.stats.torn_writes = self.members.iter().map(|m| m.disk.torn_writes).sum();
        if let Some(s) = &self.stale {
            self.stats.stale_splits = (s.splits, s.elected);
        }
        let pending: Vec<u32> = self
            .clients
            .iter()
            .filter(|c| !c.finished())
            .map(|c| c.id)
            .collect();
        if let Err(mut v) = liveness::check(self.now_ns - quiet_start, self.leader(), &pending) {
            if std::env::var_os("TANDEM_SIM_DEBUG").is_some() {
                for c in &self.clients {
                    v.detail.push_str(&format!("\n  {c:?}"));
                }
                for (i, m) in self.members.iter().enumerate() {
                    v.detail.push_str(&format!("\n  member {i}: {:?}", m.core));
                }
            }
            return Err(v);
        }
        if !self.caught_up() {
            return Err(Violation::new(
                liveness::PROPERTY,
                format!(
                    "members not caught up with the leader {} ms after faults stopped",
                    (self.now_ns - quiet_start) / 1_000_000
                ),
            ));
        }
        let mut acked = BTreeMap::new();
        for c in &self.clients {
            if let Some(s) = c.session {
                acked.insert(s.0, c.acked_seq);
            }
        }
        for (i, m) in self.members.iter().enumerate() {
            if let Some(s) = m.app.app().and_then(RecordingApp::service) {
                exactly_once::check_acknowledged(i, s, &acked)?;
            }
        }
        linearizability::check(&self.history)
    }
}
