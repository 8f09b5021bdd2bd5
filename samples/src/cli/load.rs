//! A paced load on one client session, and the summary of several.
//!
//! Each message gets the session's next sequence number; a [`Profile`] builds it and says
//! which reply answers it. A message is *acknowledged* when its answer arrives (or, for a
//! profile whose messages are not answered, when the cluster reports it committed);
//! *rejected* when the answer is a refusal; *lost* when neither happened by the end of the
//! drain; a second answer to the same message is a *duplicate* (applied twice).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tandem_cluster::node::{ClientError, ClusterClient};

/// What a reply means for the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Message `seq` was accepted.
    Accepted(u64),
    /// Message `seq` was refused.
    Rejected(u64),
    /// Not an answer (a fill, a broadcast).
    Other,
}

/// Builds a load's messages and reads its replies.
pub trait Profile: Send {
    /// The message with client sequence number `seq` (1, 2, ...).
    fn request(&mut self, seq: u64) -> Vec<u8>;
    /// What `reply` (delivered for request `request_seq`) answers.
    fn answer(&mut self, request_seq: u64, reply: &[u8]) -> Answer;
    /// Whether every message is answered by a reply; if not, commit acknowledges it.
    fn answered_by_reply(&self) -> bool {
        true
    }
}

/// One session's results.
#[derive(Debug)]
pub struct LoadReport {
    /// Messages offered.
    pub sent: u64,
    /// Messages accepted.
    pub acked: u64,
    /// Messages refused.
    pub rejected: u64,
    /// Messages answered more than once.
    pub duplicates: u64,
    /// Messages with no answer at the end.
    pub lost: u64,
    /// Offer-to-answer latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// Times the client moved to another member.
    pub failovers: u64,
    /// The session error that ended the load early, if any.
    pub error: Option<String>,
}

/// A new latency histogram (1 µs to 1 hour, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Load parameters.
#[derive(Debug, Clone)]
pub struct Pace {
    /// Messages per second on this session (0: as fast as the window allows).
    pub rate: f64,
    /// Stop sending after this long (`None`: when `stop` is set).
    pub duration: Option<Duration>,
    /// Most time to wait for the outstanding answers after sending stopped.
    pub drain: Duration,
}

struct Tracker {
    sent_at: Vec<Option<Instant>>,
    answered: Vec<bool>,
    acked: u64,
    rejected: u64,
    duplicates: u64,
    hist: Histogram<u64>,
}

impl Tracker {
    fn answer(&mut self, seq: u64, accepted: bool, counter: &AtomicU64) {
        let Some(i) = (seq as usize).checked_sub(1) else {
            return;
        };
        if i >= self.answered.len() {
            return;
        }
        if self.answered[i] {
            self.duplicates += 1;
            return;
        }
        self.answered[i] = true;
        if accepted {
            self.acked += 1;
        } else {
            self.rejected += 1;
        }
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = self.sent_at[i] {
            self.hist
                .saturating_record(t.elapsed().as_micros().max(1) as u64);
        }
    }

    fn answered(&self) -> u64 {
        self.acked + self.rejected
    }
}

fn poll_once(
    client: &mut ClusterClient,
    profile: &mut dyn Profile,
    t: &mut Tracker,
    by_reply: bool,
    committed_seen: &mut u64,
    answered: &AtomicU64,
) -> Result<usize, ClientError> {
    let n = client.poll(|seq, reply| match profile.answer(seq, reply) {
        Answer::Accepted(s) => t.answer(s, true, answered),
        Answer::Rejected(s) => t.answer(s, false, answered),
        Answer::Other => {}
    })?;
    if !by_reply {
        let c = client.committed_seq();
        for s in *committed_seen + 1..=c {
            t.answer(s, true, answered);
        }
        *committed_seen = (*committed_seen).max(c);
    }
    Ok(n)
}

/// Sends `profile`'s messages on `client` at `pace` until its duration is over or `stop` is
/// set, then waits (at most `pace.drain`) for the outstanding answers. `answered` counts
/// answers as they arrive (for progress lines).
pub fn run(
    client: &mut ClusterClient,
    profile: &mut dyn Profile,
    pace: &Pace,
    stop: &AtomicBool,
    answered: &Arc<AtomicU64>,
) -> LoadReport {
    let mut t = Tracker {
        sent_at: Vec::new(),
        answered: Vec::new(),
        acked: 0,
        rejected: 0,
        duplicates: 0,
        hist: histogram(),
    };
    let by_reply = profile.answered_by_reply();
    let mut committed_seen = client.committed_seq();
    let start = Instant::now();
    let mut error = None;
    let mut sent = 0u64;
    let mut pending: Option<Vec<u8>> = None;
    'send: loop {
        if stop.load(Ordering::Relaxed) || pace.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let due = if pace.rate > 0.0 {
            (start.elapsed().as_secs_f64() * pace.rate) as u64
        } else {
            u64::MAX
        };
        let mut did = false;
        while sent < due {
            let seq = sent + 1;
            let msg = match pending.take() {
                Some(m) => m,
                None => profile.request(seq),
            };
            match client.offer(&msg) {
                Ok(s) => {
                    debug_assert_eq!(s, seq);
                    t.sent_at.push(Some(Instant::now()));
                    t.answered.push(false);
                    sent += 1;
                    did = true;
                }
                Err(ClientError::BackPressure { .. }) => {
                    pending = Some(msg);
                    break;
                }
                Err(e) => {
                    error = Some(e.to_string());
                    break 'send;
                }
            }
        }
        match poll_once(
            client,
            profile,
            &mut t,
            by_reply,
            &mut committed_seen,
            answered,
        ) {
            Ok(n) => {
                if n == 0 && !did {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let drain_start = Instant::now();
    while error.is_none() && t.answered() < sent && drain_start.elapsed() < pace.drain {
        match poll_once(
            client,
            profile,
            &mut t,
            by_reply,
            &mut committed_seen,
            answered,
        ) {
            Ok(0) => std::thread::sleep(Duration::from_micros(200)),
            Ok(_) => {}
            Err(e) => error = Some(e.to_string()),
        }
    }
    LoadReport {
        sent,
        acked: t.acked,
        rejected: t.rejected,
        duplicates: t.duplicates,
        lost: sent - t.answered(),
        latency_us: t.hist,
        failovers: client.failovers(),
        error,
    }
}

/// Several sessions' results added up.
#[derive(Debug)]
pub struct Totals {
    /// Messages offered.
    pub sent: u64,
    /// Messages accepted.
    pub acked: u64,
    /// Messages refused.
    pub rejected: u64,
    /// Messages answered more than once.
    pub duplicates: u64,
    /// Messages never answered.
    pub lost: u64,
    /// Client failovers.
    pub failovers: u64,
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// Session errors.
    pub errors: Vec<String>,
}

impl Totals {
    /// Adds up `reports`.
    pub fn of(reports: &[LoadReport]) -> Self {
        let mut t = Self {
            sent: 0,
            acked: 0,
            rejected: 0,
            duplicates: 0,
            lost: 0,
            failovers: 0,
            latency_us: histogram(),
            errors: Vec::new(),
        };
        for r in reports {
            t.sent += r.sent;
            t.acked += r.acked;
            t.rejected += r.rejected;
            t.duplicates += r.duplicates;
            t.lost += r.lost;
            t.failovers += r.failovers;
            let _ = t.latency_us.add(&r.latency_us);
            if let Some(e) = &r.error {
                t.errors.push(e.clone());
            }
        }
        t
    }

    /// Whether nothing was lost, doubled or failed.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.errors.is_empty()
    }

    /// Prints the summary lines (`what`: the messages' name, e.g. "orders").
    pub fn print(&self, what: &str, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(1e-9);
        println!(
            "{what}: sent {}, acknowledged {}, rejected {}, lost {}, duplicates {} ({:.0} {what}/s, client failovers {})",
            self.sent,
            self.acked,
            self.rejected,
            self.lost,
            self.duplicates,
            (self.acked + self.rejected) as f64 / secs,
            self.failovers,
        );
        let h = &self.latency_us;
        if h.is_empty() {
            println!("latency: no answers");
        } else {
            println!(
                "latency (offer -> answer): p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                fmt_us(h.value_at_quantile(0.5)),
                fmt_us(h.value_at_quantile(0.99)),
                fmt_us(h.value_at_quantile(0.999)),
                fmt_us(h.max()),
                h.len()
            );
        }
        for e in &self.errors {
            println!("session error: {e}");
        }
    }
}

/// Microseconds in a readable unit.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} us")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// Runs a load of `sessions` client sessions (threads) made by `make` (a connected client
/// and its profile), each at `rate / sessions`, printing a progress line every second, and
/// returns the reports and the elapsed time.
///
/// # Errors
/// A message if a client could not connect.
pub fn run_sessions(
    sessions: usize,
    rate: f64,
    duration: Option<Duration>,
    drain: Duration,
    mut make: impl FnMut(usize) -> Result<(ClusterClient, Box<dyn Profile>), String>,
) -> Result<(Vec<LoadReport>, Duration), String> {
    let sessions = sessions.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for i in 0..sessions {
        clients.push(make(i)?);
    }
    super::install_signal_handlers();
    let start = Instant::now();
    let pace = Pace {
        rate: rate / sessions as f64,
        duration,
        drain,
    };
    let handles: Vec<_> = clients
        .into_iter()
        .map(|(mut client, mut profile)| {
            let (stop, counter, pace) = (Arc::clone(&stop), Arc::clone(&counter), pace.clone());
            std::thread::spawn(move || {
                let r = run(&mut client, profile.as_mut(), &pace, &stop, &counter);
                client.close();
                r
            })
        })
        .collect();
    let mut last = (Instant::now(), 0u64);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if super::signalled() {
            stop.store(true, Ordering::Relaxed);
        }
        if last.0.elapsed() >= Duration::from_secs(1) {
            let n = counter.load(Ordering::Relaxed);
            println!(
                "[{:>5.1}s] {:>8.0} answers/s  total {n}",
                start.elapsed().as_secs_f64(),
                (n - last.1) as f64 / last.0.elapsed().as_secs_f64()
            );
            last = (Instant::now(), n);
        }
    }
    let reports = handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "a client thread panicked".to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((reports, start.elapsed()))
}
