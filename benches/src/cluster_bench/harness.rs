//! [`Deployment`]: the cluster under test, launched from the real node code the way the
//! settings ask, and its clients.
//!
//! * `--threading cluster`: every member's [`NodeAgent`] in one [`ClusterAgent`], driven by
//!   the benchmark's own thread through an [`AgentInvoker`] between the clients' sends and
//!   polls: one thread runs members and clients, so the figure is the software path alone
//!   (what `InProcessCluster` does, with the client on the same thread).
//! * `--threading shared | dedicated`: each member a [`ClusterNode`] on its own agent thread
//!   (pinned to its `--cores` entry if given); the clients run on the benchmark's thread.
//! * `--processes`: each member a `cluster-bench member` child process hosting the same echo
//!   service with `ClusterNode`; a child exits when its standard input closes, so it never
//!   outlives the benchmark, and [`Deployment`] kills whatever is left when dropped.
//!
//! Members talk over the in-process hub (`--transport ipc`) or UDP on loopback (`udp`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tandem_cluster::agent::{AgentInvoker, Idle, IdleStrategy, ThreadingMode};
use tandem_cluster::control::{Action, ActionResult, ControlFile, MemberRole, RequestId};
use tandem_cluster::node::{
    ClientConfig, ClusterAgent, ClusterClient, ClusterNode, NodeAgent, NodeConfig, NodeError,
    NodeHooks,
};
use tandem_cluster::transport::{InProcHub, ReadinessGroup};

use super::config::{Settings, TransportKind};
use super::echo::{Echo, new_echo};
use super::error::{BenchError, Result};

/// The cluster id of every benchmark member, client and floor endpoint.
pub const CLUSTER_ID: u64 = 0x7A4D_BE4C;
/// Election timeout of the benchmark's members.
pub const ELECTION_TIMEOUT_MS: u64 = 500;
/// Heartbeat interval of the benchmark's members.
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;
/// Session timeout (long: a run never idles a session out).
pub const SESSION_TIMEOUT_MS: u64 = 60_000;
/// How long clients may take to connect (an election included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type Factory = fn() -> Echo;

/// Picks `n` loopback ports P whose P+1 is free too (client and peer socket of a member),
/// as a members list.
///
/// # Errors
/// [`BenchError::Io`] if no socket can be bound at all.
pub fn free_members(n: u32) -> Result<String> {
    let mut parts = Vec::new();
    let mut held = Vec::new();
    let mut tries = 0;
    while parts.len() < n as usize {
        tries += 1;
        if tries > 1000 {
            return Err(BenchError::Usage(
                "no free pair of loopback ports found".into(),
            ));
        }
        let a = std::net::UdpSocket::bind("127.0.0.1:0").map_err(BenchError::io("127.0.0.1:0"))?;
        let port = a
            .local_addr()
            .map_err(BenchError::io("127.0.0.1:0"))?
            .port();
        if port == u16::MAX {
            continue;
        }
        let Ok(b) = std::net::UdpSocket::bind(("127.0.0.1", port + 1)) else {
            continue;
        };
        parts.push(format!("{}=127.0.0.1:{port}", parts.len()));
        held.push((a, b));
    }
    Ok(parts.join(","))
}

/// The configuration of member `id` under the run's settings.
///
/// # Errors
/// [`BenchError::Node`] if the node refuses it.
pub fn node_config(s: &Settings, id: u32, members: &str, dir: &Path) -> Result<NodeConfig> {
    let mut c = NodeConfig::new(id, members, dir)?;
    c.cluster_id = CLUSTER_ID;
    c.election_timeout_ms = ELECTION_TIMEOUT_MS;
    c.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
    c.session_timeout_ms = SESSION_TIMEOUT_MS;
    c.idle = s.idle.clone();
    c.threading = s.threading;
    c.io = s.io;
    c.fsync = s.fsync;
    c.segment_len_bytes = s.segment_len_bytes;
    c.mtu = s.mtu;
    c.bootstrap = true;
    c.cores = s.member_cores(id);
    c.validate()?;
    Ok(c)
}

/// Where the members' directories live.
#[derive(Debug)]
enum Root {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(t) => t.path(),
            Self::Given(p) => p,
        }
    }
}

/// Member processes; killed (and reaped) when dropped.
#[derive(Debug, Default)]
struct Children(Vec<(u32, Child)>);

impl Children {
    /// Closes every child's standard input (it stops its member and exits), waits up to
    /// `grace` for them, then kills what is left.
    fn stop(&mut self, grace: Duration) -> Vec<(u32, std::process::ExitStatus)> {
        for (_, c) in &mut self.0 {
            drop(c.stdin.take());
        }
        let deadline = Instant::now() + grace;
        let mut statuses = Vec::new();
        for (id, c) in &mut self.0 {
            loop {
                match c.try_wait() {
                    Ok(Some(status)) => {
                        statuses.push((*id, status));
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = c.kill();
                        if let Ok(status) = c.wait() {
                            statuses.push((*id, status));
                        }
                        break;
                    }
                }
            }
        }
        self.0.clear();
        statuses
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug)]
enum Members {
    /// `cluster` threading: driven by the caller through [`Deployment::do_work`].
    OneThread(Box<AgentInvoker<ClusterAgent<Factory>>>),
    /// `shared` / `dedicated`: a thread per member.
    Threads(Vec<ClusterNode>),
    /// `--processes`.
    Processes(Children),
}

/// A launched cluster.
#[derive(Debug)]
pub struct Deployment {
    members: Members,
    controls: Vec<ControlFile>,
    hub: Option<InProcHub>,
    members_list: String,
    idle: IdleStrategy,
    window: usize,
    mtu: usize,
    io: tandem_cluster::transport::IoMode,
    /// `cluster` threading over UDP: the members' and the clients' sockets in one epoll set,
    /// as one thread polls them all.
    readiness: Option<ReadinessGroup>,
    // Dropped last: the members' directories.
    _root: Root,
}

impl Deployment {
    /// Launches the cluster the settings describe (retrying with new ports if one was taken
    /// between choosing it and binding it).
    ///
    /// # Errors
    /// [`BenchError::Node`], [`BenchError::Agent`], [`BenchError::Member`] or
    /// [`BenchError::Io`] if a member cannot start.
    pub fn launch(s: &Settings) -> Result<Self> {
        let root = match &s.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(BenchError::io(d))?;
                Root::Given(d.clone())
            }
            None => Root::Temp(
                tempfile::Builder::new()
                    .prefix("cluster-bench-")
                    .tempdir()
                    .map_err(BenchError::io(std::env::temp_dir()))?,
            ),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let dir = root
                .path()
                .join(format!("run-{}-{attempt}", std::process::id()));
            match Self::launch_in(s, &dir) {
                Ok((members, controls, hub, members_list, readiness)) => {
                    return Ok(Self {
                        members,
                        controls,
                        hub,
                        members_list,
                        idle: s.idle.clone(),
                        window: s.window,
                        mtu: s.mtu,
                        io: s.io,
                        readiness,
                        _root: root,
                    });
                }
                Err(BenchError::Node(NodeError::Transport { .. })) if attempt < 4 => {}
                Err(e) => return Err(e),
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn launch_in(
        s: &Settings,
        dir: &Path,
    ) -> Result<(
        Members,
        Vec<ControlFile>,
        Option<InProcHub>,
        String,
        Option<ReadinessGroup>,
    )> {
        let n = s.cluster_size;
        let (members_list, hub) = match s.transport {
            TransportKind::Ipc => {
                let list = (0..n)
                    .map(|i| format!("{i}=127.0.0.1:{}", 10 * (i + 1)))
                    .collect::<Vec<_>>()
                    .join(",");
                (list, Some(InProcHub::new(4096, 1 << 20)))
            }
            TransportKind::Udp => (free_members(n)?, None),
        };
        let member_dir = |i: u32| dir.join(format!("node-{i}"));
        // One thread polls every member and client: one epoll set for all their sockets.
        let readiness = if hub.is_none() && !s.processes && s.threading == ThreadingMode::Cluster {
            Some(ReadinessGroup::new().map_err(BenchError::io("epoll_create1"))?)
        } else {
            None
        };
        let hooks = |hub: &Option<InProcHub>| NodeHooks::<Echo> {
            hub: hub.clone(),
            readiness: readiness.clone(),
            ..NodeHooks::default()
        };
        let mut members = if s.processes {
            Members::Processes(spawn_members(s, &members_list, &member_dir)?)
        } else if s.threading == ThreadingMode::Cluster {
            let mut agents = Vec::new();
            for i in 0..n {
                let cfg = node_config(s, i, &members_list, &member_dir(i))?;
                agents.push(NodeAgent::new(cfg, new_echo as Factory, hooks(&hub))?);
            }
            let mut invoker = AgentInvoker::new(ClusterAgent::new(agents));
            invoker.start()?;
            Members::OneThread(Box::new(invoker))
        } else {
            let mut nodes = Vec::new();
            for i in 0..n {
                let cfg = node_config(s, i, &members_list, &member_dir(i))?;
                nodes.push(ClusterNode::launch_with(
                    cfg,
                    new_echo as Factory,
                    hooks(&hub),
                )?);
            }
            Members::Threads(nodes)
        };
        let mut controls = Vec::new();
        for i in 0..n {
            controls.push(open_control(&member_dir(i), i, &mut members)?);
        }
        Ok((members, controls, hub, members_list, readiness))
    }

    /// The members list.
    pub fn members_list(&self) -> &str {
        &self.members_list
    }

    /// Whether the caller's thread drives the members (`cluster` threading).
    pub fn driven_by_caller(&self) -> bool {
        matches!(self.members, Members::OneThread(_))
    }

    /// One duty cycle of every member when the caller drives them; 0 otherwise.
    #[inline]
    pub fn do_work(&mut self) -> usize {
        match &mut self.members {
            Members::OneThread(invoker) => invoker.invoke(),
            _ => 0,
        }
    }

    /// Duty cycles of every member (when the caller drives them) until a cycle finds nothing
    /// to do or `max_cycles` ran: a message offered before is committed, applied and answered
    /// within the call when the members can do it in that many cycles. Returns the work done.
    #[inline]
    pub fn drive(&mut self, max_cycles: usize) -> usize {
        let mut work = 0;
        for _ in 0..max_cycles {
            let w = self.do_work();
            work += w;
            if w == 0 {
                break;
            }
        }
        work
    }

    /// One duty cycle of every member with the clients' polls in it, when the caller drives
    /// the members ([`ClusterAgent::do_work_answering`]: the answer's path, `poll`, then the
    /// followers outside the quorum); otherwise just `poll`. Returns the work done.
    #[inline]
    pub fn drive_answering(&mut self, poll: impl FnOnce() -> usize) -> usize {
        match &mut self.members {
            Members::OneThread(invoker) => {
                let mut poll = Some(poll);
                let work = invoker.invoke_with(|agent| {
                    agent.do_work_answering(|| poll.take().map_or(0, |p| p()))
                });
                // A closed invoker runs nothing: the clients are still polled.
                work + poll.map_or(0, |p| p())
            }
            _ => poll(),
        }
    }

    /// Checks that every member is still running.
    ///
    /// # Errors
    /// [`BenchError::Member`] naming the first one that stopped.
    pub fn check_alive(&mut self) -> Result<()> {
        let dead = |member: u32, what: String| Err(BenchError::Member { member, what });
        match &mut self.members {
            Members::OneThread(invoker) => {
                if !invoker.is_running() {
                    return dead(u32::MAX, "the members' agent stopped".into());
                }
            }
            Members::Threads(nodes) => {
                if let Some(n) = nodes.iter().find(|n| !n.is_running()) {
                    return dead(n.member_id(), "its agent stopped".into());
                }
            }
            Members::Processes(children) => {
                for (id, c) in &mut children.0 {
                    if let Ok(Some(status)) = c.try_wait() {
                        return dead(*id, format!("exited with {status}"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Connects `n` clients (each its own session), driving the members meanwhile if the
    /// caller's thread is theirs.
    ///
    /// # Errors
    /// [`BenchError::Client`] if a client cannot connect within [`CONNECT_TIMEOUT`].
    pub fn connect(&mut self, n: usize) -> Result<Vec<ClusterClient>> {
        let make = || -> Result<Vec<ClusterClient>> {
            let mut clients = Vec::new();
            for i in 0..n {
                let err = |source| BenchError::Client { client: i, source };
                let mut cfg = ClientConfig::new(&self.members_list).map_err(err)?;
                cfg.cluster_id = CLUSTER_ID;
                cfg.window = self.window;
                cfg.mtu = self.mtu;
                cfg.io = self.io;
                let mut c = match &self.hub {
                    Some(hub) => ClusterClient::in_process(cfg, hub),
                    None => ClusterClient::new(cfg),
                }
                .map_err(err)?;
                if let Some(group) = &self.readiness
                    && let Err(e) = c.join_readiness_group(group)
                {
                    // A full group (more clients than its slots): this client polls its
                    // socket itself, as without a group.
                    eprintln!("[cluster-bench] client {i} polls outside the readiness group: {e}");
                }
                c.connect(CONNECT_TIMEOUT).map_err(err)?;
                clients.push(c);
            }
            Ok(clients)
        };
        match &mut self.members {
            Members::OneThread(invoker) => {
                // `connect` blocks: drive the members from a helper thread meanwhile, then
                // take them back.
                let stop = AtomicBool::new(false);
                std::thread::scope(|scope| {
                    let driver = scope.spawn(|| {
                        let mut idle = IdleStrategy::backoff();
                        while !stop.load(Ordering::Acquire) {
                            let work = invoker.invoke();
                            idle.idle(work);
                        }
                    });
                    let clients = make();
                    stop.store(true, Ordering::Release);
                    let _ = driver.join();
                    clients
                })
            }
            _ => make(),
        }
    }

    /// Asks the cluster for a snapshot (through the leader's control file, as `cluster-tool
    /// snapshot` does); returns the member asked and the request.
    ///
    /// # Errors
    /// [`BenchError::Control`] if the toggle is busy.
    pub fn request_snapshot(&self) -> Result<(usize, RequestId)> {
        let member = self
            .controls
            .iter()
            .position(|c| c.role() == Some(MemberRole::Leader))
            .unwrap_or(0);
        Ok((member, self.controls[member].request(Action::Snapshot)?))
    }

    /// The result of a request made with [`Deployment::request_snapshot`], once there is one.
    pub fn snapshot_result(&self, member: usize, req: RequestId) -> Option<ActionResult> {
        self.controls[member].result(req)
    }

    /// The idle strategy of the run.
    pub fn idle(&self) -> &IdleStrategy {
        &self.idle
    }

    /// Stops every member.
    ///
    /// # Errors
    /// [`BenchError::Agent`] / [`BenchError::Node`] if a member had failed;
    /// [`BenchError::Member`] if a member process exited with an error.
    pub fn close(mut self) -> Result<()> {
        let members = std::mem::replace(&mut self.members, Members::Threads(Vec::new()));
        match members {
            Members::OneThread(mut invoker) => invoker.close()?,
            Members::Threads(nodes) => {
                let mut first = Ok(());
                for n in nodes {
                    if let Err(e) = n.close()
                        && first.is_ok()
                    {
                        first = Err(e);
                    }
                }
                first?;
            }
            Members::Processes(mut children) => {
                for (id, status) in children.stop(Duration::from_secs(5)) {
                    if !status.success() {
                        return Err(BenchError::Member {
                            member: id,
                            what: format!("exited with {status}"),
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Opens member `id`'s control file once the member has created it.
fn open_control(dir: &Path, id: u32, members: &mut Members) -> Result<ControlFile> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match ControlFile::open(dir) {
            Ok(c) => return Ok(c),
            Err(e) => {
                if let Members::Processes(children) = members
                    && let Some((_, c)) = children.0.iter_mut().find(|(m, _)| *m == id)
                    && let Ok(Some(status)) = c.try_wait()
                {
                    return Err(BenchError::Member {
                        member: id,
                        what: format!("exited at start with {status}"),
                    });
                }
                if Instant::now() >= deadline {
                    return Err(e.into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Starts one `cluster-bench member` process per member.
fn spawn_members(
    s: &Settings,
    members: &str,
    member_dir: &dyn Fn(u32) -> PathBuf,
) -> Result<Children> {
    let exe = std::env::current_exe().map_err(BenchError::io("/proc/self/exe"))?;
    let mut children = Children::default();
    for i in 0..s.cluster_size {
        let dir = member_dir(i);
        let mut cmd = Command::new(&exe);
        cmd.arg("member")
            .args(["--member-id", &i.to_string()])
            .args(["--members", members])
            .arg("--dir")
            .arg(&dir)
            .args(["--cluster-id", &CLUSTER_ID.to_string()])
            .args(["--election-timeout-ms", &ELECTION_TIMEOUT_MS.to_string()])
            .args([
                "--heartbeat-interval-ms",
                &HEARTBEAT_INTERVAL_MS.to_string(),
            ])
            .args(["--session-timeout-ms", &SESSION_TIMEOUT_MS.to_string()])
            .args(["--idle", &s.idle_text])
            .args(["--threading", s.threading.name()])
            .args(["--io", &s.io.to_string()])
            .args(["--fsync", &s.fsync.to_string()])
            .args(["--segment-len-bytes", &s.segment_len_bytes.to_string()])
            .args(["--mtu", &s.mtu.to_string()])
            .arg("--bootstrap")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(cores) = s.member_cores(i) {
            cmd.args(["--cores", &cores.to_string()]);
        }
        let child = cmd.spawn().map_err(|e| BenchError::Member {
            member: i,
            what: format!("cannot start {}: {e}", exe.display()),
        })?;
        children.0.push((i, child));
    }
    Ok(children)
}
