//! The cluster runs: open-loop latency and closed-loop throughput, through [`ClusterClient`]s
//! against a [`Deployment`].
//!
//! Every message has its own sequence number (the client's) and its own reply; a reply is
//! matched to its message by that sequence number and checked to be the message echoed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tandem_cluster::agent::{Idle, ThreadingMode};
use tandem_cluster::control::ResultCode;
use tandem_cluster::node::{ClientError, ClusterClient};

use super::config::Settings;
use super::error::{BenchError, Result};
use super::floor::DRAIN_TIMEOUT;
use super::harness::Deployment;
use super::progress::Progress;
use crate::peer::{LatencyRun, OpenLoop, ThroughputRun, new_histogram};

/// Member duty cycles per turn of the throughput loop in `cluster` threading, at most: one.
/// A cycle of the `ClusterAgent` answers what the clients flushed before it (the latency loop
/// polls its clients inside the cycle instead, `Deployment::drive_answering`).
const DRIVE_CYCLES: usize = 1;

/// The cluster's figures.
#[derive(Debug)]
pub struct ClusterResult {
    /// Round trips of the measured messages (open loop from the intended send time in latency
    /// mode; from the actual send time at a full window in throughput mode).
    pub run: LatencyRun,
    /// Throughput mode: replies counted at the clients per second.
    pub throughput: Option<ThroughputRun>,
    /// `--snapshot-at`: the snapshot's effect.
    pub snapshot: Option<SnapshotImpact>,
    /// Replies that were not the message echoed (counted as not received).
    pub bad_replies: u64,
}

/// Latency before and from a snapshot taken during the measurement.
#[derive(Debug)]
pub struct SnapshotImpact {
    /// When it was requested, from the start of the measurement.
    pub at: Duration,
    /// Its log position (from the control file's answer).
    pub position: Option<u64>,
    /// From the request to the answer.
    pub took: Option<Duration>,
    /// How the request ended, if it was not `Ok`.
    pub failure: Option<String>,
    /// Round trips of messages due before the request.
    pub without: Histogram<u64>,
    /// Round trips of messages due from the request on.
    pub with: Histogram<u64>,
}

#[derive(Debug)]
enum SnapState {
    Off,
    Waiting(Instant),
    Pending {
        member: usize,
        req: tandem_cluster::control::RequestId,
        at: Instant,
    },
    Done,
}

/// The snapshot taken during a run and the two histograms it splits the run into.
#[derive(Debug)]
struct Snapper {
    state: SnapState,
    split: Option<Instant>,
    impact: Option<SnapshotImpact>,
}

impl Snapper {
    fn new(s: &Settings, measure_start: Instant) -> Self {
        match s.snapshot_at {
            Some(at) => Self {
                state: SnapState::Waiting(measure_start + at),
                split: Some(measure_start + at),
                impact: Some(SnapshotImpact {
                    at,
                    position: None,
                    took: None,
                    failure: None,
                    without: new_histogram(),
                    with: new_histogram(),
                }),
            },
            None => Self {
                state: SnapState::Off,
                split: None,
                impact: None,
            },
        }
    }

    /// Records a measured round trip of a message due (or sent) at `due`.
    #[inline]
    fn record(&mut self, due: Instant, ns: u64) {
        if let (Some(split), Some(impact)) = (self.split, self.impact.as_mut()) {
            let h = if due < split {
                &mut impact.without
            } else {
                &mut impact.with
            };
            h.saturating_record(ns.max(1));
        }
    }

    /// Requests the snapshot when it is due and picks up the answer.
    fn step(&mut self, dep: &Deployment, now: Instant) -> Result<()> {
        match self.state {
            SnapState::Waiting(t) if now >= t => {
                let (member, req) = dep.request_snapshot()?;
                self.state = SnapState::Pending {
                    member,
                    req,
                    at: now,
                };
            }
            SnapState::Pending { member, req, at } => {
                if let Some(result) = dep.snapshot_result(member, req) {
                    if let Some(impact) = self.impact.as_mut() {
                        impact.took = Some(now.saturating_duration_since(at));
                        if result.code == ResultCode::Ok {
                            impact.position = Some(result.value);
                        } else {
                            impact.failure = Some(format!("{:?}", result.code));
                        }
                    }
                    self.state = SnapState::Done;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn client_err(client: usize) -> impl FnOnce(ClientError) -> BenchError {
    move |source| BenchError::Client { client, source }
}

fn payload(size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31) ^ 0xA5)
        .collect()
}

/// Open-loop latency: message `i` is due at `start + i / rate` and goes to client
/// `i % clients`; its round trip is recorded from that due time (coordinated omission
/// corrected: a stall delays every message behind it in the histogram too). Messages due in
/// the warm-up are sent but not recorded.
///
/// # Errors
/// [`BenchError::Client`] if a session fails; [`BenchError::Member`] if a member stops;
/// [`BenchError::Stalled`] if no reply came for [`DRAIN_TIMEOUT`] with messages in flight
/// before the last one was sent.
pub fn latency(
    dep: &mut Deployment,
    clients: &mut [ClusterClient],
    s: &Settings,
) -> Result<ClusterResult> {
    let msg = payload(s.size);
    let n = clients.len() as u64;
    let mut idle = dep.idle().clone();
    let mut run = LatencyRun::new();
    let start = Instant::now();
    let schedule = OpenLoop::new(start, s.rate);
    let warm_n = (s.warmup.as_secs_f64() * s.rate as f64) as u64;
    let total = warm_n + ((s.duration.as_secs_f64() * s.rate as f64) as u64).max(1);
    let mut snapper = Snapper::new(s, schedule.intended(warm_n));
    let mut progress = Progress::new("cluster", start);
    let mut in_flight: Vec<VecDeque<(u64, u64)>> =
        (0..n).map(|_| VecDeque::with_capacity(s.window)).collect();
    let (mut next, mut replies, mut bad) = (0_u64, 0_u64, 0_u64);
    let mut drain_deadline = None;
    let mut last_reply = start;
    loop {
        let now = Instant::now();
        let due = schedule.due(now).min(total);
        let mut work = 0;
        let sent_before = next;
        while next < due {
            let c = (next % n) as usize;
            match clients[c].offer(&msg) {
                Ok(seq) => {
                    in_flight[c].push_back((seq, next));
                    if next >= warm_n {
                        run.sent += 1;
                    }
                    next += 1;
                    work += 1;
                }
                // The window is full: the message waits (its latency still counts from its
                // due time).
                Err(ClientError::BackPressure { .. }) => break,
                Err(e) => return Err(client_err(c)(e)),
            }
        }
        if next > sent_before {
            // What was offered leaves now, before the members' cycles, not in the clients'
            // polls after them (a turn of the loop later).
            for client in clients.iter_mut() {
                client.flush();
            }
        }
        // The clients poll inside the members' cycle, as soon as the answer's path has run
        // (the followers outside the quorum come after them).
        let mut failed = None;
        work += dep.drive_answering(|| {
            let mut work = 0;
            for (c, client) in clients.iter_mut().enumerate() {
                let queue = &mut in_flight[c];
                let mut t = None;
                let polled = client.poll(|seq, reply| {
                    let t = *t.get_or_insert_with(Instant::now);
                    let Some(i) = settle(queue, seq) else { return };
                    replies += 1;
                    last_reply = t;
                    if reply != msg.as_slice() {
                        bad += 1;
                        return;
                    }
                    let ns = schedule.latency_ns(i, t);
                    progress.note(ns);
                    if i >= warm_n {
                        run.record(ns);
                        snapper.record(schedule.intended(i), ns);
                    }
                });
                match polled {
                    Ok(w) => work += w,
                    Err(e) => {
                        failed = Some(client_err(c)(e));
                        break;
                    }
                }
            }
            work
        });
        if let Some(e) = failed {
            return Err(e);
        }
        snapper.step(dep, now)?;
        let outstanding: usize = in_flight.iter().map(VecDeque::len).sum();
        if next == total {
            let deadline = *drain_deadline.get_or_insert(now + DRAIN_TIMEOUT);
            if outstanding == 0 || now >= deadline {
                break;
            }
        } else if outstanding > 0 && now.saturating_duration_since(last_reply) > DRAIN_TIMEOUT {
            // Every window is full and nothing comes back: the run cannot go on.
            return Err(BenchError::Stalled {
                waited_s: DRAIN_TIMEOUT.as_secs(),
                in_flight: outstanding as u64,
                sent: next,
                due: total,
            });
        }
        if progress.due(now) {
            dep.check_alive()?;
            let phase = if next < warm_n { "warm-up" } else { "measure" };
            progress.print(now, phase, next, replies, outstanding as u64);
        }
        idle.idle(work);
    }
    finish_snapshot(dep, &mut snapper)?;
    Ok(ClusterResult {
        run,
        throughput: None,
        snapshot: snapper.impact,
        bad_replies: bad,
    })
}

/// Removes from a client's in-flight queue (sequence, tag) what a reply to `seq` settles:
/// the entries before it, for which no reply will come (lost), and its own, whose tag it
/// returns. A reply to a sequence not in the queue settles only the entries before it.
fn settle<T: Copy>(queue: &mut VecDeque<(u64, T)>, seq: u64) -> Option<T> {
    while let Some(&(sent_seq, tag)) = queue.front() {
        if sent_seq > seq {
            return None;
        }
        queue.pop_front();
        if sent_seq == seq {
            return Some(tag);
        }
    }
    None
}

/// Closed-loop throughput: every client keeps its window full; replies reaching the clients
/// during the measured period are counted; round trips of messages sent in it are recorded
/// from their send time.
///
/// # Errors
/// As [`latency`].
pub fn throughput(
    dep: &mut Deployment,
    clients: &mut [ClusterClient],
    s: &Settings,
) -> Result<ClusterResult> {
    let msg = payload(s.size);
    let mut idle = dep.idle().clone();
    let mut run = LatencyRun::new();
    let start = Instant::now();
    let warm_end = start + s.warmup;
    let end = warm_end + s.duration;
    let mut snapper = Snapper::new(s, warm_end);
    let mut progress = Progress::new("cluster", start);
    let mut in_flight: Vec<VecDeque<(u64, Instant)>> = (0..clients.len())
        .map(|_| VecDeque::with_capacity(s.window))
        .collect();
    let (mut sent, mut replies, mut counted, mut bad) = (0_u64, 0_u64, 0_u64, 0_u64);
    // CPU time of this thread at the start and the end of the counting period.
    let (mut cpu_at_warm_end, mut cpu_at_end) = (None, None);
    loop {
        let now = Instant::now();
        if now >= warm_end && cpu_at_warm_end.is_none() {
            cpu_at_warm_end = Some(thread_cpu_time());
        }
        if now >= end && cpu_at_end.is_none() {
            cpu_at_end = Some(thread_cpu_time());
        }
        let mut work = 0;
        if now < end {
            for (c, client) in clients.iter_mut().enumerate() {
                loop {
                    match client.offer(&msg) {
                        Ok(seq) => {
                            in_flight[c].push_back((seq, now));
                            if now >= warm_end {
                                run.sent += 1;
                            }
                            sent += 1;
                            work += 1;
                        }
                        Err(ClientError::BackPressure { .. }) => break,
                        Err(e) => return Err(client_err(c)(e)),
                    }
                }
                client.flush();
            }
        }
        work += dep.drive(DRIVE_CYCLES);
        for (c, client) in clients.iter_mut().enumerate() {
            let queue = &mut in_flight[c];
            let mut t = None;
            work += client
                .poll(|seq, reply| {
                    let t = *t.get_or_insert_with(Instant::now);
                    let Some(sent_at) = settle(queue, seq) else {
                        return;
                    };
                    replies += 1;
                    if reply != msg.as_slice() {
                        bad += 1;
                        return;
                    }
                    let ns = t.saturating_duration_since(sent_at).as_nanos() as u64;
                    progress.note(ns);
                    if sent_at >= warm_end {
                        run.record(ns);
                        snapper.record(sent_at, ns);
                    }
                    if t >= warm_end && t <= end {
                        counted += 1;
                    }
                })
                .map_err(client_err(c))?;
        }
        snapper.step(dep, now)?;
        let outstanding: usize = in_flight.iter().map(VecDeque::len).sum();
        if now >= end && (outstanding == 0 || now >= end + DRAIN_TIMEOUT) {
            break;
        }
        if progress.due(now) {
            dep.check_alive()?;
            let phase = if now < warm_end { "warm-up" } else { "measure" };
            progress.print(now, phase, sent, replies, outstanding as u64);
        }
        idle.idle(work);
    }
    finish_snapshot(dep, &mut snapper)?;
    Ok(ClusterResult {
        run,
        throughput: Some(ThroughputRun {
            msgs: counted,
            bytes: counted * s.size as u64,
            elapsed: s.duration,
            driver_cpu: match (s.threading, cpu_at_warm_end, cpu_at_end) {
                (ThreadingMode::Cluster, Some(from), Some(to)) => Some(to.saturating_sub(from)),
                _ => None,
            },
        }),
        snapshot: snapper.impact,
        bad_replies: bad,
    })
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "the thread CPU clock is always available on Linux");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Waits (driving the members if need be) for the answer to a snapshot still pending at the
/// end of the run.
fn finish_snapshot(dep: &mut Deployment, snapper: &mut Snapper) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let SnapState::Pending { .. } = snapper.state {
        let now = Instant::now();
        if now >= deadline {
            return Err(BenchError::Snapshot(
                "no answer to the snapshot request within 30 s".into(),
            ));
        }
        snapper.step(dep, now)?;
        if dep.do_work() == 0 && !dep.driven_by_caller() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_settles_its_own_entry_and_the_lost_ones_before_it() {
        let mut q: VecDeque<(u64, u64)> = [(3, 30), (4, 40), (6, 60), (7, 70)].into();
        assert_eq!(settle(&mut q, 2), None);
        assert_eq!(q.len(), 4);
        assert_eq!(settle(&mut q, 4), Some(40)); // 3 is lost
        assert_eq!(q.front(), Some(&(6, 60)));
        assert_eq!(settle(&mut q, 5), None);
        assert_eq!(q.len(), 2);
        assert_eq!(settle(&mut q, 7), Some(70));
        assert!(q.is_empty());
    }
}
