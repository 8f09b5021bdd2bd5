//! The run: set up, load, the fault schedule, the final checks, the report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tandem_cluster::control::{Action, Counter};

use super::FaultKind;
use super::check::{self, Verdict};
use super::error::{ChaosError, Result, io};
use super::load::{self, LoadKind, LoadShared};
use super::members::{Launch, Members, State, wait_until};
use super::monitor::{self, Gap, Monitor};
use super::net::{self, Net, Rules};
use super::proxy::{Proxy, ProxyParams};
use crate::cli::matching::Rng;

/// Which sample the members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// `kv-store node`, with a put/get/compare-and-set load.
    Kv,
    /// `matching-engine node`, with an order/cancel load.
    Matching,
}

/// `tandem-chaos`: members as processes in network namespaces of their own, a client load, a
/// seeded fault schedule, and checks (run as root).
#[derive(Debug, Clone, Parser)]
#[command(name = "tandem-chaos")]
pub struct ChaosArgs {
    /// Seed of the fault schedule, the fault parameters and the load.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Seconds of faults (the schedule runs on until every chosen kind happened once).
    #[arg(long, default_value_t = 150.0)]
    pub duration: f64,
    /// Members: 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub cluster_size: u32,
    /// The sample the members run.
    #[arg(long, value_enum, default_value_t = Service::Kv)]
    pub service: Service,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Fault kinds to inject (comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub faults: Vec<FaultKind>,
    /// Client sessions (one thread each, one request in flight each).
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// The members' election timeout (heartbeat: a tenth).
    #[arg(long, default_value_t = 500)]
    pub election_timeout_ms: u64,
    /// Members' threading mode: `shared` (one thread each) or `dedicated` (network,
    /// consensus and service agents on threads of their own), idling with `backoff`.
    #[arg(long, default_value = "shared", value_parser = ["shared", "dedicated"])]
    pub threading: String,
    /// Directory of the `kv-store` and `matching-engine` binaries (default: this binary's).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// Logical client id of the kv final reads and the matching probe.
const FINAL_CLIENT: u32 = 4_000_000;

/// One injected fault.
#[derive(Debug, Clone)]
struct FaultEvent {
    n: usize,
    kind: FaultKind,
    start_s: f64,
    target: String,
    leader: Option<u32>,
    detail: String,
}

/// Removes the run directory when dropped, keeping the members' logs when asked.
struct RunDir {
    path: PathBuf,
    keep_logs: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep_logs {
            let keep = self
                .path
                .with_file_name(format!("tandem-chaos-logs-{}", std::process::id()));
            if std::fs::create_dir_all(&keep).is_ok() {
                if let Ok(entries) = std::fs::read_dir(&self.path) {
                    for e in entries.flatten() {
                        if e.path().extension().is_some_and(|x| x == "log") {
                            let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                        }
                    }
                }
                eprintln!("tandem-chaos: member logs kept in {}", keep.display());
            }
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

struct Ctx<'a> {
    args: &'a ChaosArgs,
    net: &'a Net,
    members: &'a mut Members,
    proxy: &'a Proxy,
    shared: Arc<monitor::Shared>,
    load: Arc<LoadShared>,
    t0: Instant,
    rng: Rng,
    faults: Vec<FaultEvent>,
    /// State divergences counted by members before they were restarted.
    divergences: u64,
    divergence_errors: Vec<String>,
    /// Members that exited by themselves, and during which fault.
    exits: Vec<(usize, u32, String)>,
    /// Problems found while running (no leader after healing, a wiped member that did not
    /// catch up).
    problems: Vec<String>,
    /// Wiped members' log start after they caught up (> 0: they started from a snapshot).
    wipe_log_starts: Vec<(u32, u64)>,
}

fn dirs_of(members: &Members) -> Vec<PathBuf> {
    (0..members.len())
        .map(|i| members.dir(i).to_path_buf())
        .collect()
}

impl Ctx<'_> {
    fn now_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn sync_state(&self, i: u32) {
        let code = match self.members.state(i) {
            State::Up => 0,
            State::Paused => 1,
            State::Down => 2,
        };
        self.shared.states[i as usize].store(code, Ordering::Relaxed);
    }

    fn up(&self) -> Vec<bool> {
        (0..self.members.len())
            .map(|i| self.members.state(i) == State::Up)
            .collect()
    }

    fn leader(&self) -> Option<u32> {
        monitor::leader_of(&dirs_of(self.members), &self.up())
    }

    fn wait_leader(&mut self, timeout: Duration) -> Option<u32> {
        let start = Instant::now();
        loop {
            self.check_exits(true);
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sleep(&mut self, d: Duration) {
        let start = Instant::now();
        while start.elapsed() < d {
            self.check_exits(false);
            std::thread::sleep(Duration::from_millis(20).min(d));
        }
    }

    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        let f = self.rng.below(1001) as f64 / 1000.0;
        Duration::from_secs_f64(lo + (hi - lo) * f)
    }

    /// Notes members that exited by themselves; with `restart`, starts them again.
    fn check_exits(&mut self, restart: bool) {
        for (i, status) in self.members.reap() {
            let fault = self.shared.fault.load(Ordering::Relaxed);
            let tail = last_lines(self.members.log(i), 3);
            eprintln!(
                "[{:7.1}s] member {i} exited by itself ({status}) during fault #{fault}: {tail}",
                self.now_s()
            );
            self.exits.push((fault, i, format!("{status}: {tail}")));
            self.sync_state(i);
        }
        if restart {
            for i in 0..self.members.len() {
                if self.members.state(i) == State::Down {
                    let _ = self.start(i, false);
                }
            }
        }
    }

    fn start(&mut self, i: u32, bootstrap: bool) -> Result<()> {
        self.members.start(i, bootstrap)?;
        self.sync_state(i);
        Ok(())
    }

    fn note_divergences(&mut self, i: u32) {
        if let Some(c) = self.members.control(i) {
            self.divergences += c.counter(Counter::StateDivergences);
            for e in c.errors() {
                if e.message.contains("divergence") {
                    self.divergence_errors
                        .push(format!("member {i}: {}", e.message));
                }
            }
        }
    }

    fn kill(&mut self, i: u32) {
        self.note_divergences(i);
        self.members.kill(i);
        self.sync_state(i);
    }

    fn apply_rules(&self, rules: &[Rules]) -> Result<()> {
        for (i, r) in rules.iter().enumerate() {
            self.net.apply(i as u32, r)?;
        }
        Ok(())
    }

    fn heal(&mut self) -> Result<()> {
        let n = self.members.len() as usize;
        self.apply_rules(&vec![Rules::default(); n])?;
        self.proxy.set(ProxyParams::default());
        for i in 0..self.members.len() {
            self.members.free_disk(i);
            if self.members.state(i) == State::Paused {
                self.members.resume(i);
                self.sync_state(i);
            }
        }
        self.check_exits(true);
        Ok(())
    }

    fn control_action(&self, i: u32, action: Action, timeout: Duration) -> Option<u64> {
        let c = self.members.control(i)?;
        let req = c.request(action).ok()?;
        let r = c.wait_for(req, timeout).ok()?;
        (r.code == tandem_cluster::control::ResultCode::Ok).then_some(r.value)
    }

    fn snapshot(&mut self) -> Option<u64> {
        let l = self.wait_leader(Duration::from_secs(20))?;
        self.control_action(l, Action::Snapshot, Duration::from_secs(20))
    }

    fn random_other(&mut self, not: Option<u32>) -> u32 {
        let others: Vec<u32> = (0..self.members.len())
            .filter(|&i| Some(i) != not && self.members.state(i) == State::Up)
            .collect();
        if others.is_empty() {
            return self.rng.below(u64::from(self.members.len())) as u32;
        }
        others[self.rng.below(others.len() as u64) as usize]
    }

    fn commit_of(&self, i: u32) -> Option<u64> {
        self.members.control(i).map(|c| c.commit_position())
    }

    /// Waits until every member runs and has committed what the leader had committed when
    /// the wait began.
    fn wait_caught_up(&mut self, timeout: Duration) -> bool {
        let Some(l) = self.wait_leader(timeout) else {
            return false;
        };
        let Some(target) = self.commit_of(l) else {
            return false;
        };
        let start = Instant::now();
        loop {
            self.check_exits(true);
            let done = (0..self.members.len()).all(|i| {
                self.members.state(i) == State::Up && self.commit_of(i).is_some_and(|c| c >= target)
            });
            if done {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn inject(&mut self, n: usize, kind: FaultKind) -> Result<()> {
        self.shared.fault.store(n, Ordering::Relaxed);
        let size = self.members.len();
        let start_s = self.now_s();
        let leader = self.wait_leader(Duration::from_secs(10));
        let l = leader.unwrap_or_else(|| self.rng.below(u64::from(size)) as u32);
        let others: Vec<u32> = (0..size).filter(|&i| i != l).collect();
        let mut rules = vec![Rules::default(); size as usize];
        let ops = self.load.ops.load(Ordering::Relaxed);
        let progress = |target: &str, detail: &str| {
            eprintln!(
                "[{start_s:7.1}s] fault #{n} {}: {target} (leader {}, ops {ops}) {detail}",
                kind.name(),
                leader.map_or("none".into(), |l| l.to_string())
            );
        };
        let (target, detail) = match kind {
            FaultKind::KillLeader | FaultKind::KillFollower => {
                let t = if kind == FaultKind::KillLeader {
                    l
                } else {
                    self.random_other(Some(l))
                };
                let down = self.secs(0.3, 2.5);
                let target = format!("member {t}");
                let detail = format!("SIGKILL, restart after {:.1}s", down.as_secs_f64());
                progress(&target, &detail);
                self.kill(t);
                self.sleep(down);
                self.start(t, false)?;
                (target, detail)
            }
            FaultKind::PauseLeader => {
                let pause = Duration::from_millis(self.args.election_timeout_ms)
                    .mul_f64(2.5 + self.rng.below(16) as f64 / 10.0);
                let target = format!("member {l}");
                let detail = format!("SIGSTOP for {:.1}s", pause.as_secs_f64());
                progress(&target, &detail);
                self.members.pause(l);
                self.sync_state(l);
                self.sleep(pause);
                self.members.resume(l);
                self.sync_state(l);
                (target, detail)
            }
            FaultKind::IsolateLeader | FaultKind::Partition => {
                let minority: BTreeSet<u32> = if kind == FaultKind::IsolateLeader {
                    [l].into()
                } else {
                    let mut all: Vec<u32> = (0..size).collect();
                    let mut m = BTreeSet::new();
                    while m.len() < ((size - 1) / 2) as usize {
                        let k = self.rng.below(all.len() as u64) as usize;
                        m.insert(all.swap_remove(k));
                    }
                    m
                };
                let majority: BTreeSet<u32> = (0..size).filter(|i| !minority.contains(i)).collect();
                for &a in &minority {
                    rules[a as usize].drop_from = majority.clone();
                    rules[a as usize].drop_to = majority.clone();
                }
                for &b in &majority {
                    rules[b as usize].drop_from = minority.clone();
                    rules[b as usize].drop_to = minority.clone();
                }
                let hold = self.secs(1.5, 4.0);
                let target = format!("{minority:?} | {majority:?}");
                let detail = format!("for {:.1}s", hold.as_secs_f64());
                progress(&target, &detail);
                self.apply_rules(&rules)?;
                self.sleep(hold);
                (target, detail)
            }
            FaultKind::Asymmetric => {
                let outbound = self.rng.below(2) == 0;
                let set: BTreeSet<u32> = others.iter().copied().collect();
                if outbound {
                    rules[l as usize].drop_to = set;
                } else {
                    rules[l as usize].drop_from = set;
                }
                let hold = self.secs(1.5, 4.0);
                let target = format!(
                    "member {l}'s datagrams {} the others",
                    if outbound { "to" } else { "from" }
                );
                let detail = format!("dropped for {:.1}s", hold.as_secs_f64());
                progress(&target, &detail);
                self.apply_rules(&rules)?;
                self.sleep(hold);
                (target, detail)
            }
            FaultKind::Loss => {
                let pct = 5 + self.rng.below(26) as u32;
                for r in &mut rules {
                    r.loss_percent = pct;
                }
                let hold = self.secs(2.0, 5.0);
                let target = "every member".to_string();
                let detail = format!("{pct}% loss for {:.1}s", hold.as_secs_f64());
                progress(&target, &detail);
                self.apply_rules(&rules)?;
                self.sleep(hold);
                (target, detail)
            }
            FaultKind::Proxy => {
                let p = ProxyParams {
                    delay_ms: 1 + self.rng.below(20),
                    jitter_ms: self.rng.below(30),
                    reorder_percent: 5 + self.rng.below(16),
                    duplicate_percent: 5 + self.rng.below(16),
                };
                for r in &mut rules {
                    r.via_proxy = true;
                }
                let hold = self.secs(2.0, 5.0);
                let target = "all peer traffic".to_string();
                let detail = format!(
                    "delay {}ms + jitter {}ms, {}% reordered, {}% duplicated, for {:.1}s",
                    p.delay_ms,
                    p.jitter_ms,
                    p.reorder_percent,
                    p.duplicate_percent,
                    hold.as_secs_f64()
                );
                progress(&target, &detail);
                self.proxy.set(p);
                self.apply_rules(&rules)?;
                self.sleep(hold);
                (target, detail)
            }
            FaultKind::DiskFull => {
                let t = if self.rng.below(2) == 0 {
                    l
                } else {
                    self.random_other(Some(l))
                };
                let target = format!("member {t}");
                let filled = self.members.fill_disk(t)?;
                // Half the time a snapshot (written at once), else only the log's growth
                // into its next segments.
                let with_snapshot = self.rng.below(2) == 0;
                let hold = self.secs(2.0, 5.0);
                let snap = if with_snapshot {
                    self.snapshot()
                        .map_or("snapshot refused".into(), |p| format!("snapshot at {p}"))
                } else {
                    "log growth only".to_string()
                };
                let mut detail = format!(
                    "filled {} KiB, {snap}, held {:.1}s",
                    filled / 1024,
                    hold.as_secs_f64()
                );
                progress(&target, &detail);
                let exits_before = self.exits.len();
                let hold_start = Instant::now();
                while hold_start.elapsed() < hold {
                    self.check_exits(false);
                    std::thread::sleep(Duration::from_millis(20));
                }
                self.members.free_disk(t);
                if self.exits.len() > exits_before {
                    let _ = write!(detail, "; member stopped: {}", self.exits[exits_before].2);
                    eprintln!(
                        "[{:7.1}s]   member {t} stopped on the full disk; restarting it",
                        self.now_s()
                    );
                }
                (target, detail)
            }
            FaultKind::Wipe => {
                let t = self.random_other(Some(l));
                let target = format!("member {t}");
                let s1 = self.snapshot();
                self.sleep(Duration::from_millis(300));
                let s2 = self.snapshot();
                let mut purged = Vec::new();
                for i in 0..size {
                    if self.members.state(i) == State::Up
                        && let Some(start) =
                            self.control_action(i, Action::Purge(u64::MAX), Duration::from_secs(10))
                    {
                        purged.push((i, start));
                    }
                }
                let detail = format!(
                    "snapshots at {s1:?} and {s2:?}, purged (member, log start) {purged:?}; kill, wipe, restart"
                );
                progress(&target, &detail);
                self.kill(t);
                self.members.wipe(t)?;
                self.start(t, false)?;
                if self.wait_caught_up(Duration::from_secs(60)) {
                    let start = self
                        .members
                        .control(t)
                        .map_or(0, |c| c.log_start_position());
                    self.wipe_log_starts.push((t, start));
                } else {
                    self.problems.push(format!(
                        "fault #{n}: wiped member {t} did not catch up within 60 s"
                    ));
                }
                (target, detail)
            }
        };
        self.heal()?;
        if self.wait_leader(Duration::from_secs(30)).is_none() {
            self.problems.push(format!(
                "fault #{n} ({}): no leader 30 s after healing",
                kind.name()
            ));
        }
        self.faults.push(FaultEvent {
            n,
            kind,
            start_s,
            target,
            leader,
            detail,
        });
        Ok(())
    }
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// The binary of `service` beside this one (or in `bin_dir`).
fn service_bin(args: &ChaosArgs) -> Result<PathBuf> {
    let dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(io("locate", Path::new("tandem-chaos")))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let name = match args.service {
        Service::Kv => "kv-store",
        Service::Matching => "matching-engine",
    };
    let bin = dir.join(name);
    if !bin.exists() {
        return Err(ChaosError::Usage(format!(
            "{} not found (build it: cargo build -p tandem-samples; or give --bin-dir)",
            bin.display()
        )));
    }
    Ok(bin)
}

/// Availability per fault kind.
#[derive(Debug, Default, Clone)]
struct Avail {
    faults: usize,
    longest_leaderless_s: f64,
    longest_wait_s: f64,
    ops: usize,
    unresolved: usize,
}

/// `tandem-chaos`: returns the exit code (0: every check held).
pub fn run(args: &ChaosArgs) -> ExitCode {
    match run_inner(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("tandem-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: &ChaosArgs) -> Result<bool> {
    if args.cluster_size != 3 && args.cluster_size != 5 {
        return Err(ChaosError::Usage("--cluster-size must be 3 or 5".into()));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(ChaosError::NoNamespaces("not running as root".into()));
    }
    let bin = service_bin(args)?;
    let kinds: Vec<FaultKind> = if args.faults.is_empty() {
        FaultKind::ALL.to_vec()
    } else {
        let mut k = args.faults.clone();
        k.sort();
        k.dedup();
        k
    };
    for r in net::cleanup_stale() {
        eprintln!("tandem-chaos: removed what a dead run left: {r}");
    }
    let pid = std::process::id();
    crate::cli::install_signal_handlers();
    let names = net::Names { pid };
    let run_dir = names.run_dir();
    std::fs::create_dir_all(&run_dir).map_err(io("create", &run_dir))?;
    let mut dir_guard = RunDir {
        path: run_dir.clone(),
        keep_logs: true,
    };
    let net = Net::create(pid, args.cluster_size)?;
    let mut members = Members::new(
        &net,
        &run_dir,
        Launch {
            bin,
            members: net.members_list(),
            election_timeout_ms: args.election_timeout_ms,
            threading: args.threading.clone(),
        },
    )?;
    let proxy = Proxy::start(&net, args.seed)?;
    eprintln!(
        "tandem-chaos: seed {}, {} members of {:?} in namespaces tchaos-{pid}-*, members {}, run dir {}",
        args.seed,
        args.cluster_size,
        args.service,
        net.members_list(),
        run_dir.display()
    );
    let t0 = Instant::now();
    let shared = Arc::new(monitor::Shared::new(args.cluster_size));
    let load = Arc::new(LoadShared {
        members: net.members_list(),
        t0,
        stop: AtomicBool::new(false),
        fault: Arc::clone(&shared),
        order: AtomicU64::new(0),
        ops: AtomicU64::new(0),
        session_errors: AtomicUsize::new(0),
        extra_replies: AtomicUsize::new(0),
        kv: std::sync::Mutex::new(Vec::new()),
        orders: std::sync::Mutex::new(Vec::new()),
    });
    let mon = Monitor::start(dirs_of(&members), Arc::clone(&shared), t0)
        .map_err(io("spawn the monitor", Path::new("monitor")))?;
    let mut ctx = Ctx {
        args,
        net: &net,
        members: &mut members,
        proxy: &proxy,
        shared: Arc::clone(&shared),
        load: Arc::clone(&load),
        t0,
        rng: Rng::new(args.seed),
        faults: Vec::new(),
        divergences: 0,
        divergence_errors: Vec::new(),
        exits: Vec::new(),
        problems: Vec::new(),
        wipe_log_starts: Vec::new(),
    };
    for i in 0..args.cluster_size {
        ctx.start(i, true)?;
    }
    if ctx.wait_leader(Duration::from_secs(60)).is_none() {
        return Err(ChaosError::Stuck(
            "no leader within 60 s of the start".into(),
        ));
    }
    let kind = match args.service {
        Service::Kv => LoadKind::Kv,
        Service::Matching => LoadKind::Matching,
    };
    let clients = load::start(kind, args.clients, args.seed, &load);
    // Let the load settle before the first fault.
    ctx.sleep(Duration::from_secs(2));

    // The schedule: every chosen kind once in a seeded order, then seeded random kinds.
    let mut order = kinds.clone();
    for i in (1..order.len()).rev() {
        let j = ctx.rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut n = 0;
    while (ctx.now_s() < args.duration || n < order.len()) && !crate::cli::signalled() {
        n += 1;
        let kind = if n <= order.len() {
            order[n - 1]
        } else {
            kinds[ctx.rng.below(kinds.len() as u64) as usize]
        };
        ctx.inject(n, kind)?;
        let quiet = ctx.secs(0.3, 1.2);
        ctx.sleep(quiet);
    }
    if crate::cli::signalled() {
        load.stop.store(true, Ordering::Relaxed);
        return Err(ChaosError::Stuck("interrupted".into()));
    }
    let faults_end_s = ctx.now_s();
    ctx.shared.fault.store(n + 1, Ordering::Relaxed);
    eprintln!("[{faults_end_s:7.1}s] faults done; healing, then checks");
    ctx.heal()?;
    let caught_up = ctx.wait_caught_up(Duration::from_secs(60));
    load.stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }
    let mut verdicts: Vec<Verdict> = Vec::new();
    match args.service {
        Service::Kv => {
            let read_ok = load::kv_final_reads(&load, FINAL_CLIENT);
            let records = load.kv.lock().unwrap_or_else(|e| e.into_inner()).clone();
            verdicts.push(check::verdict(
                "final reads answered",
                &if read_ok {
                    vec![]
                } else {
                    vec!["a final read got no answer".into()]
                },
                "every key read after the load".into(),
            ));
            verdicts.push(check::kv_linearizable(&records, Duration::from_secs(300)));
            let (lost, twice) = check::kv_exactly_once(&records, FINAL_CLIENT);
            verdicts.push(lost);
            verdicts.push(twice);
        }
        Service::Matching => {
            let probe = load::matching_probe(&load, FINAL_CLIENT);
            let records = load
                .orders
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let (lost, twice) = check::matching(&records, probe, FINAL_CLIENT);
            verdicts.push(lost);
            verdicts.push(twice);
        }
    }
    let extra = load.extra_replies.load(Ordering::Relaxed);
    verdicts.push(check::verdict(
        "no second reply to a request",
        &if extra == 0 {
            vec![]
        } else {
            vec![format!("{extra} replies to requests already answered")]
        },
        "one reply per request".into(),
    ));
    // State hashes: a snapshot now, compared by every member at its position.
    let snap = ctx.snapshot();
    let mut hash_problems = Vec::new();
    match snap {
        Some(pos) => {
            let all = wait_until(Duration::from_secs(30), || {
                (0..ctx.members.len()).all(|i| {
                    ctx.members
                        .control(i)
                        .is_some_and(|c| c.snapshot_position() >= pos)
                })
            });
            if !all {
                hash_problems.push(format!(
                    "not every member reached the final snapshot at {pos}"
                ));
            }
        }
        None => hash_problems.push("the final snapshot was refused".into()),
    }
    for i in 0..ctx.members.len() {
        ctx.note_divergences(i);
    }
    if ctx.divergences > 0 {
        hash_problems.push(format!("{} state divergences", ctx.divergences));
    }
    hash_problems.extend(ctx.divergence_errors.iter().cloned());
    verdicts.push(check::verdict(
        "state hashes equal",
        &hash_problems,
        format!(
            "every member compared its state hash with the leader's at the snapshot at {}",
            snap.unwrap_or(0)
        ),
    ));
    let commits: Vec<Option<u64>> = (0..ctx.members.len()).map(|i| ctx.commit_of(i)).collect();
    verdicts.push(check::verdict(
        "members caught up after healing",
        &if caught_up {
            vec![]
        } else {
            vec![format!("commit positions {commits:?}")]
        },
        format!("commit positions {commits:?}"),
    ));
    verdicts.push(check::verdict(
        "a leader after every fault",
        &ctx.problems,
        format!("{} faults", ctx.faults.len()),
    ));
    let crashes: Vec<String> = ctx
        .exits
        .iter()
        .filter(|(f, _, _)| {
            ctx.faults
                .iter()
                .find(|e| e.n == *f)
                .is_none_or(|e| e.kind != FaultKind::DiskFull)
        })
        .map(|(f, i, s)| {
            let note = if s.contains("No space left on device") {
                " [ENOSPC after the disk was freed: an error kept from while it was full]"
            } else {
                ""
            };
            format!("member {i} during fault #{f}{note}: {s}")
        })
        .collect();
    verdicts.push(check::verdict(
        "no member crashed (outside a full disk)",
        &crashes,
        format!("{} exits, all on a full disk", ctx.exits.len()),
    ));
    if kinds.contains(&FaultKind::Wipe) {
        let not_installed: Vec<String> = ctx
            .wipe_log_starts
            .iter()
            .filter(|(_, s)| *s == 0)
            .map(|(i, _)| format!("wiped member {i} replayed the log from 0 (no install-snapshot)"))
            .collect();
        verdicts.push(check::verdict(
            "wiped members rejoined by install-snapshot",
            &not_installed,
            format!("(member, log start) {:?}", ctx.wipe_log_starts),
        ));
    }
    let end_s = ctx.now_s();
    let faults = std::mem::take(&mut ctx.faults);
    let exits = ctx.exits.len();
    let restarts: u32 = (0..ctx.members.len())
        .map(|i| ctx.members.starts(i) - 1)
        .sum();
    drop(ctx);
    let gaps = mon.finish();
    let proxy_stats = (
        proxy.stats().received.load(Ordering::Relaxed),
        proxy.stats().duplicated.load(Ordering::Relaxed),
        proxy.stats().reordered.load(Ordering::Relaxed),
    );
    let avail = availability(&faults, &gaps, &load, end_s);
    let ok = verdicts.iter().all(|v| v.ok);
    let report = Report {
        args,
        faults: &faults,
        verdicts: &verdicts,
        avail: &avail,
        gaps: &gaps,
        ops: load.ops.load(Ordering::Relaxed),
        session_errors: load.session_errors.load(Ordering::Relaxed),
        restarts,
        exits,
        proxy: proxy_stats,
        leader_changes: shared.leader_changes.load(Ordering::Relaxed),
        end_s,
        ok,
    };
    print!("{}", report.text());
    if let Some(path) = &args.json {
        std::fs::write(path, report.json()).map_err(io("write", path))?;
    }
    // Tear down (members and mounts, proxy, namespaces), then check nothing is left.
    drop(members);
    drop(proxy);
    drop(net);
    dir_guard.keep_logs = !ok;
    drop(dir_guard);
    let left = net::leftovers(pid);
    if !left.is_empty() {
        eprintln!("tandem-chaos: left behind after teardown: {left:?}");
        return Ok(false);
    }
    println!("teardown: no namespace, link, mount or directory of this run is left");
    Ok(ok)
}

fn availability(
    faults: &[FaultEvent],
    gaps: &[Gap],
    load: &LoadShared,
    end_s: f64,
) -> BTreeMap<&'static str, Avail> {
    let kind_of = |n: usize| -> &'static str {
        faults
            .iter()
            .find(|f| f.n == n)
            .map_or(if n == 0 { "(start)" } else { "(end)" }, |f| f.kind.name())
    };
    let mut out: BTreeMap<&'static str, Avail> = BTreeMap::new();
    for f in faults {
        out.entry(f.kind.name()).or_default().faults += 1;
    }
    for g in gaps {
        let a = out.entry(kind_of(g.fault)).or_default();
        a.longest_leaderless_s = a.longest_leaderless_s.max(g.len_s);
    }
    let mut waits = |fault: usize, invoked_s: f64, returned: Option<f64>| {
        let a = out.entry(kind_of(fault)).or_default();
        a.ops += 1;
        match returned {
            Some(r) => a.longest_wait_s = a.longest_wait_s.max(r - invoked_s),
            None => {
                a.unresolved += 1;
                a.longest_wait_s = a.longest_wait_s.max(end_s - invoked_s);
            }
        }
    };
    for r in load.kv.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if r.client != FINAL_CLIENT {
            waits(r.fault, r.invoked_s, r.returned.map(|x| x.1));
        }
    }
    for r in load.orders.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if r.client != FINAL_CLIENT {
            waits(r.fault, r.invoked_s, r.returned.map(|x| x.0));
        }
    }
    out
}

struct Report<'a> {
    args: &'a ChaosArgs,
    faults: &'a [FaultEvent],
    verdicts: &'a [Verdict],
    avail: &'a BTreeMap<&'static str, Avail>,
    gaps: &'a [Gap],
    ops: u64,
    session_errors: usize,
    restarts: u32,
    exits: usize,
    proxy: (u64, u64, u64),
    leader_changes: usize,
    end_s: f64,
    ok: bool,
}

fn json_str(s: &str) -> String {
    crate::cli::http::json_string(s)
}

impl Report<'_> {
    fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\ntandem-chaos summary: seed {}, {} members, {:?}, {:.1}s, {} faults, {} operations answered, {} member restarts, {} leader changes, {} session errors",
            self.args.seed,
            self.args.cluster_size,
            self.args.service,
            self.end_s,
            self.faults.len(),
            self.ops,
            self.restarts,
            self.leader_changes,
            self.session_errors
        );
        let _ = writeln!(
            s,
            "{:<16} {:>6} {:>20} {:>18} {:>8} {:>10}",
            "fault", "count", "longest leaderless", "longest op wait", "ops", "unresolved"
        );
        for (k, a) in self.avail {
            let _ = writeln!(
                s,
                "{k:<16} {:>6} {:>19.3}s {:>17.3}s {:>8} {:>10}",
                a.faults, a.longest_leaderless_s, a.longest_wait_s, a.ops, a.unresolved
            );
        }
        let longest = self.gaps.iter().map(|g| g.len_s).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "longest time without a leader: {longest:.3}s ({} intervals); proxy: {} datagrams, {} duplicated, {} reordered; member exits by themselves: {}",
            self.gaps.len(),
            self.proxy.0,
            self.proxy.1,
            self.proxy.2,
            self.exits
        );
        for v in self.verdicts {
            let _ = writeln!(
                s,
                "{} {}: {}",
                if v.ok { "PASS" } else { "FAIL" },
                v.name,
                v.detail
            );
        }
        let _ = writeln!(
            s,
            "{}",
            if self.ok {
                "all checks passed"
            } else {
                "SOME CHECKS FAILED"
            }
        );
        s
    }

    fn json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"seed\":{},\"cluster_size\":{},\"service\":{},\"duration_s\":{:.3},\"ok\":{},\"operations\":{},\"restarts\":{},\"leader_changes\":{},\"session_errors\":{},\"member_exits\":{},",
            self.args.seed,
            self.args.cluster_size,
            json_str(&format!("{:?}", self.args.service).to_lowercase()),
            self.end_s,
            self.ok,
            self.ops,
            self.restarts,
            self.leader_changes,
            self.session_errors,
            self.exits
        );
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|f| {
                format!(
                    "{{\"n\":{},\"kind\":{},\"at_s\":{:.3},\"target\":{},\"leader\":{},\"detail\":{}}}",
                    f.n,
                    json_str(f.kind.name()),
                    f.start_s,
                    json_str(&f.target),
                    f.leader.map_or("null".into(), |l| l.to_string()),
                    json_str(&f.detail)
                )
            })
            .collect();
        let _ = write!(s, "\"faults\":[{}],", faults.join(","));
        let avail: Vec<String> = self
            .avail
            .iter()
            .map(|(k, a)| {
                format!(
                    "{}:{{\"count\":{},\"longest_leaderless_s\":{:.3},\"longest_wait_s\":{:.3},\"ops\":{},\"unresolved\":{}}}",
                    json_str(k),
                    a.faults,
                    a.longest_leaderless_s,
                    a.longest_wait_s,
                    a.ops,
                    a.unresolved
                )
            })
            .collect();
        let _ = write!(s, "\"availability\":{{{}}},", avail.join(","));
        let checks: Vec<String> = self
            .verdicts
            .iter()
            .map(|v| {
                format!(
                    "{{\"name\":{},\"ok\":{},\"detail\":{}}}",
                    json_str(v.name),
                    v.ok,
                    json_str(&v.detail)
                )
            })
            .collect();
        let _ = writeln!(s, "\"checks\":[{}]}}", checks.join(","));
        s
    }
}

/// Parses the command line and runs.
pub fn main() -> ExitCode {
    run(&ChaosArgs::parse())
}
