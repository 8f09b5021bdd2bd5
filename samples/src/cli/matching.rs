//! The matching engine's client commands, load profile and the embedded demo.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use tandem_cluster::agent::IdleStrategy;
use tandem_cluster::control::{Action, ResultCode};
use tandem_cluster::node::{ClientConfig, ClusterNode, NodeConfig, NodeHooks};
use tandem_service_api::Role;

use super::load::{self, Answer, Profile, Totals};
use super::{ClientArgs, TempDir, free_members, secs, split_commands};
use crate::matching::{Event, MatchingEngine, NewOrderRequest, OrderKind, Request, Side};

/// A small deterministic pseudo-random generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (any seed; zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Random new orders (limit, immediate-or-cancel and market) around a price of 1000 on
/// instruments 0..4; client order id = sequence number; answered by `Accepted`/`Rejected`.
#[derive(Debug)]
pub struct OrderLoad {
    rng: Rng,
    /// Orders accepted (the engine gave them an order id).
    pub accepted: Arc<AtomicU64>,
}

impl OrderLoad {
    /// A load seeded with `seed`, counting accepted orders in `accepted`.
    pub fn new(seed: u64, accepted: Arc<AtomicU64>) -> Self {
        Self {
            rng: Rng::new(seed),
            accepted,
        }
    }
}

impl Profile for OrderLoad {
    fn request(&mut self, seq: u64) -> Vec<u8> {
        let r = &mut self.rng;
        let side = if r.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let kind = match r.below(10) {
            0..=6 => OrderKind::Limit,
            7 | 8 => OrderKind::ImmediateOrCancel,
            _ => OrderKind::Market,
        };
        Request::New(NewOrderRequest {
            instrument: r.below(4) as u32,
            client_order_id: seq,
            side,
            kind,
            price: 990 + r.below(21) as i64,
            quantity: 1 + r.below(100),
        })
        .encode()
        .to_vec()
    }

    fn answer(&mut self, _: u64, reply: &[u8]) -> Answer {
        match Event::decode(reply) {
            Ok(Event::Accepted {
                client_order_id, ..
            }) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Answer::Accepted(client_order_id)
            }
            Ok(Event::Rejected {
                client_order_id, ..
            }) => Answer::Rejected(client_order_id),
            _ => Answer::Other,
        }
    }
}

/// Parses command-line orders: `buy|sell INSTRUMENT QTY@PRICE [limit|ioc|market|post]`,
/// `cancel INSTRUMENT ORDER_ID`, `modify INSTRUMENT ORDER_ID QTY@PRICE`.
///
/// # Errors
/// A message naming the bad command.
pub fn parse_commands(words: &[String]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    for (i, cmd) in split_commands(words, &["buy", "sell", "cancel", "modify"])?
        .into_iter()
        .enumerate()
    {
        let text = cmd.join(" ");
        let bad = || format!("bad command {text:?}");
        let num = |s: &String| s.parse::<u64>().map_err(|_| bad());
        let qty_price = |s: &String| -> Result<(u64, i64), String> {
            let (q, p) = s.split_once('@').ok_or_else(bad)?;
            Ok((q.parse().map_err(|_| bad())?, p.parse().map_err(|_| bad())?))
        };
        let req = match (cmd[0].as_str(), &cmd[1..]) {
            (side @ ("buy" | "sell"), [instr, qp, rest @ ..]) if rest.len() <= 1 => {
                let (quantity, price) = qty_price(qp)?;
                let kind = match rest.first().map(String::as_str) {
                    None | Some("limit") => OrderKind::Limit,
                    Some("ioc") => OrderKind::ImmediateOrCancel,
                    Some("market") => OrderKind::Market,
                    Some("post") => OrderKind::PostOnly,
                    Some(_) => return Err(bad()),
                };
                Request::New(NewOrderRequest {
                    instrument: num(instr)? as u32,
                    client_order_id: i as u64 + 1,
                    side: if side == "buy" { Side::Buy } else { Side::Sell },
                    kind,
                    price,
                    quantity,
                })
            }
            ("cancel", [instr, id]) => Request::Cancel {
                instrument: num(instr)? as u32,
                order_id: num(id)?,
            },
            ("modify", [instr, id, qp]) => {
                let (quantity, price) = qty_price(qp)?;
                Request::Modify {
                    instrument: num(instr)? as u32,
                    order_id: num(id)?,
                    price,
                    quantity,
                }
            }
            _ => return Err(bad()),
        };
        out.push((text, req.encode().to_vec()));
    }
    Ok(out)
}

fn describe(reply: &[u8]) -> String {
    match Event::decode(reply) {
        Ok(e) => format!("{e:?}"),
        Err(e) => format!("undecodable reply ({e})"),
    }
}

/// `matching-engine client`: a load, or the orders given on the command line.
pub fn client(args: &ClientArgs) -> ExitCode {
    if !args.is_load() {
        let requests = match parse_commands(&args.commands) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("matching-engine client: {e}");
                return ExitCode::from(2);
            }
        };
        let result = args.connect().and_then(|mut c| {
            let r = super::send_commands(&mut c, &requests, secs(args.timeout), describe);
            c.close();
            r
        });
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("matching-engine client: {e}");
                ExitCode::from(1)
            }
        };
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let run = load::run_sessions(
        args.clients,
        args.rate.unwrap_or(1000.0),
        Some(secs(args.duration.unwrap_or(10.0))),
        secs(args.timeout),
        |i| {
            let c = args.connect()?;
            Ok((
                c,
                Box::new(OrderLoad::new(i as u64 + 1, Arc::clone(&accepted))) as Box<dyn Profile>,
            ))
        },
    );
    match run {
        Ok((reports, elapsed)) => {
            let t = Totals::of(&reports);
            t.print("orders", elapsed);
            if t.ok() {
                ExitCode::SUCCESS
            } else {
                println!("FAILED: some acknowledged orders went missing or were doubled");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("matching-engine client: {e}");
            ExitCode::from(1)
        }
    }
}

/// `matching-engine demo` flags.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Seconds of load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Client sessions (one thread each).
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Orders per second over all clients (0: as fast as the window allows).
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
}

/// What the demo's state-hash hook publishes from inside a member.
#[derive(Debug, Default)]
struct Probe {
    /// The engine's next order id (orders accepted + 1).
    next_order_id: AtomicU64,
}

/// Computing the full hash (a CRC of the canonical snapshot) on every duty cycle would cost
/// the demo throughput, so the hook publishes the cheap next order id until `full` is set.
const FULL_HASH: u64 = 1 << 63;

fn demo_hooks(probe: &Arc<Probe>, full: &Arc<AtomicBool>) -> NodeHooks<MatchingEngine> {
    let (probe, full) = (Arc::clone(probe), Arc::clone(full));
    NodeHooks {
        state_hash: Some(Box::new(move |e: &MatchingEngine| {
            probe
                .next_order_id
                .store(e.next_order_id(), Ordering::Relaxed);
            if full.load(Ordering::Relaxed) {
                FULL_HASH | ((e.next_order_id() & 0x7FFF_FFFF) << 32) | u64::from(e.state_hash())
            } else {
                e.next_order_id()
            }
        })),
        ..NodeHooks::default()
    }
}

fn role_letter(r: Role) -> &'static str {
    match r {
        Role::Leader => "L",
        Role::Follower => "F",
        Role::Candidate => "C",
        Role::Learner => "l",
    }
}

/// `((snapshot position, leader asked), [(member, new log start)])`.
type SnapshotAndPurge = ((u64, u32), Vec<(u32, u64)>);

/// Asks `leader` for a snapshot, then every running member to purge its log behind it.
fn snapshot_and_purge(
    nodes: &[Option<ClusterNode>],
    leader: u32,
    start: &Instant,
) -> Result<SnapshotAndPurge, String> {
    let node = nodes[leader as usize]
        .as_ref()
        .ok_or("the leader is not running")?;
    let snapshot = match node.request(Action::Snapshot, Duration::from_secs(20)) {
        Ok(r) if r.code == ResultCode::Ok => {
            println!(
                "[{:>5.1}s] SNAPSHOT: taken at log position {} (asked on leader {leader})",
                start.elapsed().as_secs_f64(),
                r.value
            );
            (r.value, leader)
        }
        Ok(r) => return Err(format!("snapshot refused: {r:?}")),
        Err(e) => return Err(format!("snapshot: {e}")),
    };
    // Every running member takes the snapshot when it applies it; purge goes no further.
    let t = Instant::now();
    while !nodes
        .iter()
        .flatten()
        .all(|n| n.control().snapshot_position() >= snapshot.0)
    {
        if t.elapsed() > Duration::from_secs(20) {
            return Err("the members did not all take the snapshot within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut purged = Vec::new();
    for node in nodes.iter().flatten() {
        let id = node.member_id();
        match node.request(Action::Purge(u64::MAX), Duration::from_secs(20)) {
            Ok(r) if r.code == ResultCode::Ok => purged.push((id, r.value)),
            Ok(r) => return Err(format!("purge refused on member {id}: {r:?}")),
            Err(e) => return Err(format!("purge on member {id}: {e}")),
        }
    }
    println!(
        "[{:>5.1}s] PURGE: {}",
        start.elapsed().as_secs_f64(),
        purged
            .iter()
            .map(|(id, p)| format!("member {id}'s log now starts at {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok((snapshot, purged))
}

struct Check {
    name: String,
    ok: bool,
    detail: String,
}

/// `matching-engine demo`: a 3-member cluster in this process, clients, a leader killed half
/// way, a snapshot and purge, the killed member restarted, and the checks.
pub fn demo(args: &DemoArgs) -> ExitCode {
    match demo_inner(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn demo_inner(args: &DemoArgs) -> Result<bool, String> {
    let tmp = TempDir::new("tandem-demo").map_err(|e| format!("temp dir: {e}"))?;
    let members = free_members(3);
    const CLUSTER_ID: u64 = 7;
    let config = |id: u32, bootstrap: bool| -> Result<NodeConfig, String> {
        let mut c = NodeConfig::new(id, &members, tmp.path().join(format!("node-{id}")))
            .map_err(|e| e.to_string())?;
        c.cluster_id = CLUSTER_ID;
        c.election_timeout_ms = 500;
        c.heartbeat_interval_ms = 50;
        c.session_timeout_ms = 30_000;
        c.idle = IdleStrategy::backoff();
        c.segment_len_bytes = 1 << 20;
        c.retained_snapshots = 1;
        c.bootstrap = bootstrap;
        Ok(c)
    };
    let full = Arc::new(AtomicBool::new(false));
    let probes: Vec<Arc<Probe>> = (0..3).map(|_| Arc::new(Probe::default())).collect();
    println!(
        "demo: 3 members in this process ({members}), directories under {}",
        tmp.path().display()
    );
    let mut nodes: Vec<Option<ClusterNode>> = Vec::new();
    for i in 0..3u32 {
        let node = ClusterNode::launch_with(
            config(i, true)?,
            MatchingEngine::default,
            demo_hooks(&probes[i as usize], &full),
        )
        .map_err(|e| format!("member {i}: {e}"))?;
        nodes.push(Some(node));
    }
    let leader_of = |nodes: &[Option<ClusterNode>]| {
        nodes.iter().flatten().find_map(|n| {
            let s = n.status();
            (s.role == Role::Leader).then_some((s.member_id, s.term))
        })
    };
    let t0 = Instant::now();
    let (first_leader, first_term) = loop {
        if let Some(l) = leader_of(&nodes) {
            break l;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("no leader elected within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    println!(
        "demo: member {first_leader} elected leader of term {first_term} after {:.0} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );

    let mut cc = ClientConfig::new(&members).map_err(|e| e.to_string())?;
    cc.cluster_id = CLUSTER_ID;
    cc.resend_interval = Duration::from_millis(100);
    cc.leader_timeout = Duration::from_millis(500);
    let sessions = args.clients.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let pace = load::Pace {
        rate: args.rate.max(0.0) / sessions as f64,
        duration: None,
        drain: Duration::from_secs(30),
    };
    let mut handles = Vec::new();
    for i in 0..sessions {
        let mut client = super::connect(cc.clone(), Duration::from_secs(20))?;
        let (stop, answered, pace) = (Arc::clone(&stop), Arc::clone(&answered), pace.clone());
        let mut profile = OrderLoad::new(i as u64 + 1, Arc::clone(&accepted));
        handles.push(std::thread::spawn(move || {
            let r = load::run(&mut client, &mut profile, &pace, &stop, &answered);
            (r, client)
        }));
    }
    println!(
        "demo: {sessions} clients sending {} orders/s for {:.0} s; the leader is killed half way",
        args.rate, args.duration
    );

    let duration = secs(args.duration);
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64);
    let mut killed: Option<(u32, u64, Instant, u64)> = None; // member, term, when, answered
    let mut elected: Option<(u32, u64, Duration)> = None;
    let mut first_answer_after: Option<Duration> = None;
    let mut snapshot: Option<(u64, u32)> = None;
    let mut purged: Vec<(u32, u64)> = Vec::new();
    let mut restarted: Option<u32> = None;
    let mut checks: Vec<Check> = Vec::new();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(10));
        let now = start.elapsed();
        let n = answered.load(Ordering::Relaxed);
        if killed.is_none() && now >= duration / 2 {
            let (l, term) = leader_of(&nodes).unwrap_or((first_leader, first_term));
            if let Some(node) = nodes[l as usize].take() {
                let _ = node.close();
            }
            println!(
                "[{:>5.1}s] KILL: leader member {l} (term {term}) crashed (no handover)",
                now.as_secs_f64()
            );
            killed = Some((l, term, Instant::now(), n));
        }
        if let Some((dead, term, at, n0)) = killed {
            if elected.is_none()
                && let Some((l, t)) = leader_of(&nodes)
                && t > term
            {
                elected = Some((l, t, at.elapsed()));
                println!(
                    "[{:>5.1}s] FAILOVER: member {l} elected leader of term {t} {:.0} ms after the crash",
                    now.as_secs_f64(),
                    at.elapsed().as_secs_f64() * 1e3
                );
            }
            if first_answer_after.is_none() && n > n0 && elected.is_some() {
                first_answer_after = Some(at.elapsed());
                println!(
                    "[{:>5.1}s] FAILOVER: clients re-attached; orders acknowledged again {:.0} ms after the crash",
                    now.as_secs_f64(),
                    at.elapsed().as_secs_f64() * 1e3
                );
            }
            if snapshot.is_none()
                && first_answer_after.is_some()
                && let Some((l, _, _)) = elected
            {
                let (snap, p) = snapshot_and_purge(&nodes, l, &start)?;
                snapshot = Some(snap);
                purged = p;
            }
            if restarted.is_none() && snapshot.is_some() && now >= duration * 3 / 4 {
                let node = ClusterNode::launch_with(
                    config(dead, false)?,
                    MatchingEngine::default,
                    demo_hooks(&probes[dead as usize], &full),
                )
                .map_err(|e| format!("restart member {dead}: {e}"))?;
                println!(
                    "[{:>5.1}s] RESTART: member {dead} restarted from its directory (as {:?})",
                    start.elapsed().as_secs_f64(),
                    node.role()
                );
                nodes[dead as usize] = Some(node);
                restarted = Some(dead);
            }
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
            let statuses: Vec<String> = (0..3)
                .map(|i| match nodes[i].as_ref() {
                    Some(n) => {
                        let s = n.status();
                        format!("{i}:{}@{}", role_letter(s.role), s.commit_position)
                    }
                    None => format!("{i}:down"),
                })
                .collect();
            let (leader, term, commit) = match leader_of(&nodes) {
                Some((l, t)) => (
                    l.to_string(),
                    t.to_string(),
                    nodes[l as usize]
                        .as_ref()
                        .map_or(0, |n| n.commit_position()),
                ),
                None => ("none".into(), "-".into(), 0),
            };
            println!(
                "[{:>5.1}s] {:>7.0} orders/s  leader {leader}  term {term}  commit {commit}  members {}",
                now.as_secs_f64(),
                rate,
                statuses.join(" ")
            );
            last = (Instant::now(), n);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let mut reports = Vec::new();
    let mut clients = Vec::new();
    for h in handles {
        let (r, c) = h.join().map_err(|_| "a client thread panicked")?;
        reports.push(r);
        clients.push(c);
    }
    let totals = Totals::of(&reports);
    println!(
        "demo: load stopped; {} orders answered",
        totals.acked + totals.rejected
    );

    // Steps that did not happen during the load (a slow election on a loaded machine, a
    // very short run) happen now.
    if let Some((_, term, at, _)) = killed
        && elected.is_none()
    {
        let t = Instant::now();
        while elected.is_none() && t.elapsed() < Duration::from_secs(30) {
            if let Some((l, t)) = leader_of(&nodes)
                && t > term
            {
                elected = Some((l, t, at.elapsed()));
                println!(
                    "demo: FAILOVER: member {l} elected leader of term {t} {:.0} ms after the crash",
                    at.elapsed().as_secs_f64() * 1e3
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if snapshot.is_none()
        && let Some((l, _, _)) = elected
    {
        let (snap, p) = snapshot_and_purge(&nodes, l, &start)?;
        snapshot = Some(snap);
        purged = p;
    }
    if restarted.is_none()
        && let Some((dead, _, _, _)) = killed
    {
        let node = ClusterNode::launch_with(
            config(dead, false)?,
            MatchingEngine::default,
            demo_hooks(&probes[dead as usize], &full),
        )
        .map_err(|e| format!("restart member {dead}: {e}"))?;
        println!("demo: RESTART: member {dead} restarted from its directory");
        nodes[dead as usize] = Some(node);
        restarted = Some(dead);
    }

    // Every member computes the full state hash from the next applied message on: send a
    // marker order (immediate-or-cancel far from the market) and wait for its answer.
    full.store(true, Ordering::SeqCst);
    let mut marker = super::connect(cc.clone(), Duration::from_secs(20))?;
    let marker_order = Request::New(NewOrderRequest {
        instrument: 0,
        client_order_id: 1,
        side: Side::Buy,
        kind: OrderKind::ImmediateOrCancel,
        price: 1,
        quantity: 1,
    })
    .encode();
    let marker_accepted = std::cell::Cell::new(0u64);
    let mut on_reply = |_: u64, r: &[u8]| {
        if let Ok(Event::Accepted { .. }) = Event::decode(r) {
            marker_accepted.set(marker_accepted.get() + 1);
        }
    };
    marker
        .offer_blocking(&marker_order, Duration::from_secs(20), &mut on_reply)
        .map_err(|e| format!("marker order: {e}"))?;
    let t = Instant::now();
    while marker_accepted.get() == 0 && t.elapsed() < Duration::from_secs(20) {
        marker
            .poll(&mut on_reply)
            .map_err(|e| format!("marker order: {e}"))?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let total_accepted = accepted.load(Ordering::Relaxed) + marker_accepted.get();

    // Wait (bounded) for all three members to report the same applied position.
    let t = Instant::now();
    let hashes = loop {
        let h: Vec<Option<(u64, u64)>> = nodes
            .iter()
            .map(|n| n.as_ref().and_then(ClusterNode::state_hash))
            .collect();
        let settled = h.iter().all(|x| {
            x.is_some_and(|(pos, hash)| hash & FULL_HASH != 0 && Some(pos) == h[0].map(|y| y.0))
        });
        if settled || t.elapsed() > Duration::from_secs(30) {
            break h;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let restarted_status = restarted.and_then(|r| nodes[r as usize].as_ref().map(|n| n.status()));

    // Checks.
    let equal = hashes.iter().all(|h| h.is_some() && *h == hashes[0])
        && hashes[0].is_some_and(|(_, h)| h & FULL_HASH != 0);
    checks.push(Check {
        name: "state hashes equal on all 3 members".into(),
        ok: equal,
        detail: hashes
            .iter()
            .enumerate()
            .map(|(i, h)| match h {
                Some((pos, hash)) => format!("member {i}: {:08x} at {pos}", hash & 0xFFFF_FFFF),
                None => format!("member {i}: none"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    });
    let next_ids: Vec<u64> = probes
        .iter()
        .map(|p| p.next_order_id.load(Ordering::Relaxed))
        .collect();
    let exactly_once = totals.duplicates == 0 && next_ids.iter().all(|&n| n == total_accepted + 1);
    checks.push(Check {
        name: "every acknowledged order applied exactly once".into(),
        ok: exactly_once,
        detail: format!(
            "{total_accepted} orders accepted by the clients; orders in each member's engine: {}; duplicate answers: {}",
            next_ids
                .iter()
                .map(|n| n.saturating_sub(1).to_string())
                .collect::<Vec<_>>()
                .join(", "),
            totals.duplicates
        ),
    });
    checks.push(Check {
        name: "no acknowledged order lost".into(),
        ok: totals.lost == 0 && totals.errors.is_empty() && marker_accepted.get() == 1,
        detail: format!(
            "{} sent, {} answered, {} lost{}",
            totals.sent,
            totals.acked + totals.rejected,
            totals.lost,
            if totals.errors.is_empty() {
                String::new()
            } else {
                format!(", errors: {}", totals.errors.join("; "))
            }
        ),
    });
    checks.push(Check {
        name: "failover: a new leader took over".into(),
        ok: elected.is_some(),
        detail: match (elected, first_answer_after) {
            (Some((l, t, d)), Some(a)) => format!(
                "member {l} leader of term {t} after {:.0} ms; orders acknowledged again after {:.0} ms",
                d.as_secs_f64() * 1e3,
                a.as_secs_f64() * 1e3
            ),
            (Some((l, t, d)), None) => format!(
                "member {l} leader of term {t} after {:.0} ms",
                d.as_secs_f64() * 1e3
            ),
            _ => "no new leader observed".into(),
        },
    });
    checks.push(Check {
        name: "snapshot taken and log purged".into(),
        ok: snapshot.is_some() && purged.len() == 2,
        detail: match snapshot {
            Some((pos, l)) => format!(
                "snapshot at {pos} (leader {l}); purged on members {}",
                purged
                    .iter()
                    .map(|(i, _)| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "no snapshot".into(),
        },
    });
    checks.push(Check {
        name: "killed member restarted and caught up".into(),
        ok: restarted_status.is_some() && equal,
        detail: match (restarted, restarted_status) {
            (Some(r), Some(s)) => format!(
                "member {r}: {:?}, applied {}, snapshots installed from the leader {}",
                s.role, s.applied_position, s.snapshots_installed
            ),
            _ => "not restarted".into(),
        },
    });

    println!();
    println!("== demo summary ==");
    totals.print("orders", elapsed);
    let mut all_ok = true;
    for c in &checks {
        all_ok &= c.ok;
        println!(
            "check: {:<48} {}  ({})",
            c.name,
            if c.ok { "ok" } else { "FAILED" },
            c.detail
        );
    }
    println!("demo: {}", if all_ok { "PASS" } else { "FAIL" });

    marker.close();
    for c in clients {
        c.close();
    }
    for node in nodes.into_iter().flatten() {
        let _ = node.close();
    }
    drop(tmp);
    Ok(all_ok)
}
