//! The floor: a ping-pong between two endpoints of the run's own transport, io path,
//! threading and idle strategy, measured with the same histogram and load as the cluster
//! just before it.
//!
//! * `udp`: two member endpoints of `tandem_cluster::transport::Transport` on loopback (peer
//!   sockets, the transport's full framing and CRC), as `cluster/examples/pingpong.rs`;
//! * `ipc`: two endpoints of an `InProcHub` (the in-memory queues the members use).
//!
//! With `cluster` threading one thread drives both ends (as it drives the members and the
//! client); otherwise the echo end has its own thread with the run's idle strategy (pinned to
//! the first `--cores` entry). Messages carry their index in their first 8 bytes, so they are
//! at least 8 bytes long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tandem_cluster::agent::{Idle, ThreadingMode, pin_current_thread};
use tandem_cluster::transport::{
    Event, InProcHub, MemberEndpoints, Network, Transport, TransportConfig, TransportError,
    UdpConfig,
};

use super::config::{Mode, Settings, TransportKind};
use super::error::{BenchError, Result};
use super::harness::{CLUSTER_ID, free_members};
use super::progress::Progress;
use crate::peer::{LatencyRun, OpenLoop, ThroughputRun};

/// How long after the last send a run waits for outstanding replies.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Closed-loop runs: send times are kept in a ring this long (at least the window).
const RING: usize = 1 << 14;

/// The floor's figures.
#[derive(Debug)]
pub struct FloorResult {
    /// Round trips (open loop in latency mode; closed loop at the window in throughput mode).
    pub run: LatencyRun,
    /// Throughput mode: echoed messages per second.
    pub throughput: Option<ThroughputRun>,
    /// What was measured, in words.
    pub kind: String,
}

/// Measures the floor for the run's settings.
///
/// # Errors
/// [`BenchError::Transport`] if the endpoints cannot be bound or fail.
pub fn measure(s: &Settings) -> Result<FloorResult> {
    match s.transport {
        TransportKind::Ipc => {
            let hub = InProcHub::new(4096, 1 << 20);
            let a = hub.bind_member(0)?;
            let b = hub.bind_member(1)?;
            pingpong(s, a, b, "in-process hub endpoints".into())
        }
        TransportKind::Udp => {
            let cfg = TransportConfig {
                cluster_id: CLUSTER_ID,
                udp: UdpConfig {
                    mtu: s.mtu,
                    ..UdpConfig::default()
                },
                ..TransportConfig::default()
            };
            let mut last = None;
            for _ in 0..4 {
                let members = MemberEndpoints::parse(&free_members(2)?)?;
                match (
                    Transport::bind_member(cfg.clone(), members.clone(), 0, s.io),
                    Transport::bind_member(cfg.clone(), members, 1, s.io),
                ) {
                    (Ok(a), Ok(b)) => {
                        let kind = format!(
                            "UDP loopback transport endpoints, io {}",
                            a.io_mode_in_use()
                        );
                        return pingpong(s, a, b, kind);
                    }
                    (Err(e), _) | (_, Err(e)) => last = Some(e),
                }
            }
            Err(last.map_or_else(|| BenchError::Usage("no free ports".into()), Into::into))
        }
    }
}

/// The echo end: receives what arrived and sends each message back to member 0.
#[derive(Debug, Default)]
struct Echoer {
    scratch: Vec<u8>,
    lens: Vec<usize>,
}

impl Echoer {
    fn once<N: Network>(&mut self, pong: &mut N) -> std::result::Result<usize, TransportError> {
        self.scratch.clear();
        self.lens.clear();
        let (scratch, lens) = (&mut self.scratch, &mut self.lens);
        let n = pong.poll(0, |e| {
            if let Event::FromMember { msg, .. } = e {
                scratch.extend_from_slice(msg);
                lens.push(msg.len());
            }
        })?;
        let mut off = 0;
        for &len in &self.lens {
            let msg = &self.scratch[off..off + len];
            off += len;
            match pong.send_to_member(0, msg) {
                Ok(()) => {}
                Err(TransportError::WouldBlock) => {
                    // Full: hand the queue to the network and try once more; a reply that
                    // still does not fit is lost (and counted lost by the ping end).
                    pong.flush()?;
                    match pong.send_to_member(0, msg) {
                        Ok(()) | Err(TransportError::WouldBlock) => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !self.lens.is_empty() {
            pong.flush()?;
        }
        Ok(n)
    }
}

fn pingpong<N: Network + Send>(
    s: &Settings,
    ping: N,
    mut pong: N,
    what: String,
) -> Result<FloorResult> {
    let one_thread = s.threading == ThreadingMode::Cluster;
    if one_thread {
        let mut echo = Echoer::default();
        let mut drive = |_: ()| echo.once(&mut pong);
        return ping_side(s, ping, &mut drive, what);
    }
    let stop = AtomicBool::new(false);
    let echo_core = s.core(0);
    let idle = s.idle.clone();
    std::thread::scope(|scope| {
        let echo_thread = scope.spawn(|| -> Result<()> {
            if let Some(core) = echo_core {
                pin_current_thread(core)?;
            }
            let mut idle = idle;
            let mut echo = Echoer::default();
            while !stop.load(Ordering::Acquire) {
                let work = echo.once(&mut pong)?;
                idle.idle(work);
            }
            Ok(())
        });
        let mut nothing = |_: ()| Ok(0);
        let result = ping_side(s, ping, &mut nothing, what);
        stop.store(true, Ordering::Release);
        let echoed = echo_thread
            .join()
            .unwrap_or_else(|_| Err(BenchError::Usage("floor echo thread panicked".into())));
        let result = result?;
        echoed?;
        Ok(result)
    })
}

type Drive<'a> = dyn FnMut(()) -> std::result::Result<usize, TransportError> + 'a;

fn index_of(msg: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(msg.get(..8)?.try_into().ok()?))
}

fn ping_side<N: Network>(
    s: &Settings,
    mut ping: N,
    drive: &mut Drive<'_>,
    kind: String,
) -> Result<FloorResult> {
    let mut msg = vec![0x5A_u8; s.size.max(8)];
    let mut idle = s.idle.clone();
    let mut run = LatencyRun::new();
    let start = Instant::now();
    let mut progress = Progress::new("floor", start);
    match s.mode {
        Mode::Latency => {
            let schedule = OpenLoop::new(start, s.rate);
            let warm_n = (s.warmup.as_secs_f64() * s.rate as f64) as u64;
            let total = warm_n + ((s.duration.as_secs_f64() * s.rate as f64) as u64).max(1);
            // As many in flight at most as the cluster's clients allow (their windows): a
            // message that must wait still counts from its due time, as in the cluster run.
            let window = (s.window * s.clients) as u64;
            let (mut next, mut replies, mut lost_waiting) = (0_u64, 0_u64, 0_u64);
            let mut last_reply = start;
            let mut drain_deadline = None;
            loop {
                let now = Instant::now();
                let due = schedule.due(now).min(total);
                let mut work = 0;
                let sent_before = next;
                while next < due && next - replies - lost_waiting < window {
                    msg[..8].copy_from_slice(&next.to_le_bytes());
                    match ping.send_to_member(1, &msg) {
                        Ok(()) => {
                            if next >= warm_n {
                                run.sent += 1;
                            }
                            next += 1;
                            work += 1;
                        }
                        Err(TransportError::WouldBlock) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if next > sent_before {
                    ping.flush()?;
                }
                work += drive(())?;
                work += ping.poll(0, |e| {
                    if let Event::FromMember { msg, .. } = e
                        && let Some(i) = index_of(msg)
                        && i < total
                    {
                        replies += 1;
                        let t = Instant::now();
                        last_reply = t;
                        let ns = schedule.latency_ns(i, t);
                        progress.note(ns);
                        if i >= warm_n {
                            run.record(ns);
                        }
                    }
                })?;
                let outstanding = next - replies - lost_waiting;
                if outstanding > 0 && now.saturating_duration_since(last_reply) > DRAIN_TIMEOUT {
                    // Replies that will not come: free the window (counted lost).
                    lost_waiting += outstanding;
                    last_reply = now;
                }
                if next == total {
                    let deadline = *drain_deadline.get_or_insert(now + DRAIN_TIMEOUT);
                    if replies + lost_waiting >= total || now >= deadline {
                        break;
                    }
                }
                if progress.due(now) {
                    let phase = if next < warm_n { "warm-up" } else { "measure" };
                    progress.print(now, phase, next, replies, outstanding);
                }
                idle.idle(work);
            }
            Ok(FloorResult {
                run,
                throughput: None,
                kind: format!(
                    "{kind}: open-loop ping-pong at {} msg/s, at most {window} in flight",
                    s.rate
                ),
            })
        }
        Mode::Throughput => {
            let window = (s.window * s.clients) as u64;
            let warm_end = start + s.warmup;
            let end = warm_end + s.duration;
            let mut sent_at = vec![start; RING];
            let (mut next, mut replies, mut counted) = (0_u64, 0_u64, 0_u64);
            let mut last_reply = start;
            let mut lost_waiting = 0_u64;
            loop {
                let now = Instant::now();
                let mut work = 0;
                let sent_before = next;
                if now < end {
                    while next - replies - lost_waiting < window {
                        msg[..8].copy_from_slice(&next.to_le_bytes());
                        match ping.send_to_member(1, &msg) {
                            Ok(()) => {
                                sent_at[(next as usize) % RING] = now;
                                if now >= warm_end {
                                    run.sent += 1;
                                }
                                next += 1;
                                work += 1;
                            }
                            Err(TransportError::WouldBlock) => break,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                if next > sent_before {
                    ping.flush()?;
                }
                work += drive(())?;
                work += ping.poll(0, |e| {
                    if let Event::FromMember { msg, .. } = e
                        && let Some(i) = index_of(msg)
                        && i < next
                    {
                        let t = Instant::now();
                        replies += 1;
                        last_reply = t;
                        let sent = sent_at[(i as usize) % RING];
                        let ns = t.saturating_duration_since(sent).as_nanos() as u64;
                        progress.note(ns);
                        if sent >= warm_end {
                            run.record(ns);
                        }
                        if t >= warm_end && t <= end {
                            counted += 1;
                        }
                    }
                })?;
                let outstanding = next - replies - lost_waiting;
                if outstanding > 0 && now.saturating_duration_since(last_reply) > DRAIN_TIMEOUT {
                    // Replies that will not come: free the window (counted lost).
                    lost_waiting += outstanding;
                    last_reply = now;
                }
                if now >= end && (outstanding == 0 || now >= end + DRAIN_TIMEOUT) {
                    break;
                }
                if progress.due(now) {
                    let phase = if now < warm_end { "warm-up" } else { "measure" };
                    progress.print(now, phase, next, replies, outstanding);
                }
                idle.idle(work);
            }
            let bytes = counted * s.size as u64;
            Ok(FloorResult {
                run,
                throughput: Some(ThroughputRun {
                    msgs: counted,
                    bytes,
                    elapsed: s.duration,
                    driver_cpu: None,
                }),
                kind: format!("{kind}: closed-loop echo with {window} in flight"),
            })
        }
    }
}
