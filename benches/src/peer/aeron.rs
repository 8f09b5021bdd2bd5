//! Aeron's own transport as a `cluster-bench` peer: a closed-loop ping-pong through Aeron C
//! 1.54 (via `rusteron-client` / `rusteron-media-driver` 0.2), measured with the same
//! histogram as Tandem's own runs. Cargo feature `peer-aeron` of `tandem-benches`; off by
//! default, CI does not build it.
//!
//! # What has to be installed to build it
//!
//! The rusteron crates compile Aeron's C sources (bundled in the crates) with CMake and
//! generate bindings with bindgen, so building needs, on Debian 12:
//!
//! ```sh
//! apt-get update
//! apt-get install -y libclang-dev clang libbsd-dev uuid-dev   # bindgen's libclang; Aeron's libbsd and uuid
//! pip install cmake             # CMake >= 3.30 (Debian 12's is 3.25, too old for Aeron 1.54)
//! cmake --version               # must print >= 3.30: the pip one must come first on PATH
//! cargo build -p tandem-benches --release --features peer-aeron
//! ```
//!
//! No environment variable is needed when the pip `cmake` is first on `PATH` (the `cmake`
//! crate runs `cmake` from `PATH`; `CMAKE=/path/to/cmake` overrides it). Aeron is linked
//! statically (the crates' `static` feature), so the binaries run without any Aeron library
//! installed. No Java is needed. The C build takes a few minutes on 2 cores.
//!
//! # The set-up measured
//!
//! One process, **one thread**, no driver or client threads: an embedded media driver in
//! Aeron's `INVOKER` threading mode (its shared agent, conductor + sender + receiver, runs
//! in [`AeronDriver::main_do_work`]) and one client whose conductor also runs as an agent
//! invoker ([`Aeron::main_do_work`]). Each turn of the poll loop runs the driver's duty
//! cycle, the client conductor's, the echo side and the pinger, and hands the work done to
//! the idle strategy chosen with `idle` (Aeron's own idle strategies, as ported by
//! rusteron). This is the single-threaded equivalent of Aeron's shared driver with one
//! idle strategy for everything.
//!
//! * The pinger offers a `size`-byte message (its first 8 bytes a sequence number) on an
//!   exclusive publication, stream 1002; the echo side subscribes to stream 1002 and
//!   offers every message back unchanged on stream 1003, which the pinger subscribes to.
//! * Closed loop: send, wait for the echo, record the round trip in nanoseconds from just
//!   before the offer to the echo's arrival; nothing is recorded during the warm-up.
//! * [`AeronPath::Udp`]: `aeron:udp?endpoint=127.0.0.1:PORT`, one port for each direction
//!   (free ports picked at start). [`AeronPath::Ipc`]: `aeron:ipc` for both streams.
//! * Term buffers of [`TERM_LENGTH_BYTES`], not sparse, pre-touched by the client (as Aeron's
//!   embedded ping-pong sets them for latency runs).
//! * A unique Aeron directory under `/dev/shm` (or the temp dir where there is none),
//!   removed at the end.

use std::ffi::CString;
use std::io;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusteron_client::{
    Aeron, AeronContext, AeronExclusivePublication, AeronSubscription, BackoffIdleStrategy,
    BusySpinIdleStrategy, Handlers, IdleStrategy, NoOpIdleStrategy, SleepingIdleStrategy,
    YieldingIdleStrategy,
};
use rusteron_media_driver::bindings::aeron_threading_mode_enum;
use rusteron_media_driver::{AeronDriver, AeronDriverContext};

use super::LatencyRun;

/// Stream of the pings (pinger to echo side).
pub const PING_STREAM_ID: i32 = 1002;
/// Stream of the echoes (echo side to pinger).
pub const PONG_STREAM_ID: i32 = 1003;
/// Term buffer length of every publication and image, UDP and IPC (Aeron's defaults are
/// 16 MiB and 64 MiB; a ping-pong needs far less, and every term is pre-touched).
pub const TERM_LENGTH_BYTES: usize = 1 << 20;
/// Smallest message: the 8-byte sequence number that ties each echo to its ping.
pub const MIN_SIZE_BYTES: usize = 8;
/// How long connecting the publications and subscriptions may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one message may wait for its echo before the run fails.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which Aeron media the ping-pong runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AeronPath {
    /// UDP over the loopback interface, through the driver's sender and receiver.
    Udp,
    /// Aeron IPC: shared-memory log buffers, no copy through the driver.
    Ipc,
}

/// What failed in an Aeron ping-pong.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// `idle` is none of `spin|noop|yield|backoff|sleep-ns=N`.
    #[error("unknown idle strategy {0:?}: expected spin, noop, yield, backoff or sleep-ns=N")]
    Idle(String),
    /// The message size cannot be sent as one unfragmented Aeron message with a sequence
    /// number.
    #[error("message size {size} B is outside {min}..={max} B for an Aeron ping-pong")]
    Size {
        /// Requested size.
        size: usize,
        /// Smallest size (the sequence number).
        min: usize,
        /// Largest unfragmented payload of the publication.
        max: usize,
    },
    /// The Aeron directory could not be created.
    #[error("cannot create an Aeron directory under {dir}: {source}")]
    Dir {
        /// Parent directory.
        dir: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// No free loopback UDP port could be reserved.
    #[error("cannot find a free UDP port on 127.0.0.1: {0}")]
    Port(io::Error),
    /// The embedded media driver failed.
    #[error("Aeron media driver: {step}: {message}")]
    Driver {
        /// What was being done.
        step: &'static str,
        /// Aeron's error.
        message: String,
    },
    /// The Aeron client failed.
    #[error("Aeron client: {step}: {message}")]
    Client {
        /// What was being done.
        step: &'static str,
        /// Aeron's error.
        message: String,
    },
    /// Publications and subscriptions did not all connect in time.
    #[error(
        "Aeron {channel} streams {PING_STREAM_ID}/{PONG_STREAM_ID} not connected after {waited:?} (last client error: {last_error})"
    )]
    NotConnected {
        /// Channel of the streams.
        channel: String,
        /// How long it waited.
        waited: Duration,
        /// The last asynchronous error the client reported, or "none".
        last_error: String,
    },
    /// An offer failed for good (publication closed, max position exceeded, ...).
    #[error("Aeron offer on stream {stream_id} failed: {message}")]
    Offer {
        /// Stream offered on.
        stream_id: i32,
        /// Aeron's error.
        message: String,
    },
    /// A message's echo did not come back in time.
    #[error("no echo of message {seq} after {waited:?}")]
    NoReply {
        /// Sequence number of the message.
        seq: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// An echo did not match the message it answers.
    #[error("echo of message {expected} carried sequence {got} and {len} B (sent {size} B)")]
    WrongEcho {
        /// Sequence number sent.
        expected: u64,
        /// Sequence number echoed.
        got: u64,
        /// Length echoed.
        len: usize,
        /// Length sent.
        size: usize,
    },
}

/// Runs a closed-loop ping-pong of `size`-byte messages over Aeron `path`: `warmup` unrecorded,
/// then `duration` recorded, polling with the idle strategy `idle`
/// (`spin|noop|yield|backoff|sleep-ns=N`). See the [module docs](self) for the set-up.
///
/// # Errors
///
/// An unknown `idle`, a `size` outside [`MIN_SIZE_BYTES`] to the publication's largest
/// unfragmented payload, a driver or client that fails to start, streams that do not
/// connect within [`CONNECT_TIMEOUT`], a failed offer, or an echo that is missing (after
/// [`REPLY_TIMEOUT`]) or wrong.
pub fn pingpong(
    path: AeronPath,
    size: usize,
    idle: &str,
    warmup: Duration,
    duration: Duration,
) -> Result<LatencyRun, PeerError> {
    let mut idle = Idle::parse(idle)?;
    let rig = Rig::start(path)?;
    let max = rig.max_payload_bytes()?;
    if !(MIN_SIZE_BYTES..=max).contains(&size) {
        return Err(PeerError::Size {
            size,
            min: MIN_SIZE_BYTES,
            max,
        });
    }
    rig.connect(&mut idle)?;
    rig.run(size, &mut idle, warmup, duration)
}

/// The idle strategies `cluster-bench --idle` names, as Aeron implements them.
enum Idle {
    Spin(BusySpinIdleStrategy),
    NoOp(NoOpIdleStrategy),
    Yield(YieldingIdleStrategy),
    Backoff(BackoffIdleStrategy),
    Sleep(SleepingIdleStrategy),
}

impl Idle {
    fn parse(idle: &str) -> Result<Self, PeerError> {
        Ok(match idle {
            "spin" => Self::Spin(BusySpinIdleStrategy::new()),
            "noop" => Self::NoOp(NoOpIdleStrategy::new()),
            "yield" => Self::Yield(YieldingIdleStrategy::new()),
            "backoff" => Self::Backoff(BackoffIdleStrategy::new()),
            other => {
                let ns = other
                    .strip_prefix("sleep-ns=")
                    .and_then(|n| n.parse::<u64>().ok())
                    .ok_or_else(|| PeerError::Idle(other.to_owned()))?;
                Self::Sleep(SleepingIdleStrategy::new(Duration::from_nanos(ns)))
            }
        })
    }

    /// Backs off when `work` is 0; returns at once otherwise.
    #[inline]
    fn idle(&mut self, work: i32) {
        match self {
            Self::Spin(s) => s.idle(work),
            Self::NoOp(s) => s.idle(work),
            Self::Yield(s) => s.idle(work),
            Self::Backoff(s) => s.idle(work),
            Self::Sleep(s) => s.idle(work),
        }
    }
}

fn driver_err(step: &'static str) -> impl FnOnce(rusteron_media_driver::AeronCError) -> PeerError {
    move |e| PeerError::Driver {
        step,
        message: e.to_string(),
    }
}

fn client_err(step: &'static str) -> impl FnOnce(rusteron_client::AeronCError) -> PeerError {
    move |e| PeerError::Client {
        step,
        message: e.to_string(),
    }
}

fn c_string(step: &'static str, s: &str) -> Result<CString, PeerError> {
    CString::new(s).map_err(|e| PeerError::Client {
        step,
        message: e.to_string(),
    })
}

/// Two distinct free loopback UDP ports (both probes are held until both are chosen).
fn free_udp_ports() -> Result<(u16, u16), PeerError> {
    let a = UdpSocket::bind("127.0.0.1:0").map_err(PeerError::Port)?;
    let b = UdpSocket::bind("127.0.0.1:0").map_err(PeerError::Port)?;
    let pa = a.local_addr().map_err(PeerError::Port)?.port();
    let pb = b.local_addr().map_err(PeerError::Port)?.port();
    Ok((pa, pb))
}

/// Starts adding a publication or subscription with `begin` and runs the driver and client
/// until `poll` returns it (or [`CONNECT_TIMEOUT`] passes).
fn await_added<P, T>(
    driver: &AeronDriver,
    client: &Aeron,
    step: &'static str,
    begin: impl FnOnce() -> Result<P, rusteron_client::AeronCError>,
    mut poll: impl FnMut(&P) -> Result<Option<T>, rusteron_client::AeronCError>,
) -> Result<T, PeerError> {
    let pending = begin().map_err(client_err(step))?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        driver.main_do_work().map_err(driver_err("duty cycle"))?;
        client.main_do_work().map_err(client_err("duty cycle"))?;
        if let Some(added) = poll(&pending).map_err(client_err(step))? {
            return Ok(added);
        }
        if Instant::now() > deadline {
            return Err(PeerError::Client {
                step,
                message: format!("not added after {CONNECT_TIMEOUT:?}"),
            });
        }
        std::thread::yield_now();
    }
}

/// Driver, client and the four ends of the two streams, all driven from one thread.
///
/// Fields drop in declaration order: the client's resources, the client, the driver, then
/// the directory.
struct Rig {
    /// Pinger's publication (stream 1002).
    ping_pub: AeronExclusivePublication,
    /// Echo side's subscription (stream 1002).
    ping_sub: AeronSubscription,
    /// Echo side's publication (stream 1003).
    pong_pub: AeronExclusivePublication,
    /// Pinger's subscription (stream 1003).
    pong_sub: AeronSubscription,
    client: Aeron,
    _client_ctx: AeronContext,
    driver: AeronDriver,
    _driver_ctx: AeronDriverContext,
    /// Last asynchronous error the client reported.
    last_error: Arc<Mutex<Option<String>>>,
    /// Channel description for errors.
    channel: String,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// Starts the driver and client and adds the publications and subscriptions (not yet
    /// connected: see [`Rig::connect`]).
    fn start(path: AeronPath) -> Result<Self, PeerError> {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("tandem-aeron-")
            .tempdir_in(&parent)
            .map_err(|source| PeerError::Dir {
                dir: parent.clone(),
                source,
            })?;
        let aeron_dir = dir.path().join("aeron");
        let aeron_dir_c = c_string("aeron dir", &aeron_dir.to_string_lossy())?;

        let driver_ctx = AeronDriverContext::new().map_err(driver_err("create context"))?;
        driver_ctx
            .set_dir(&aeron_dir_c)
            .map_err(driver_err("set dir"))?;
        driver_ctx
            .set_dir_delete_on_start(true)
            .map_err(driver_err("set dir delete on start"))?;
        driver_ctx
            .set_dir_delete_on_shutdown(true)
            .map_err(driver_err("set dir delete on shutdown"))?;
        driver_ctx
            .set_threading_mode(aeron_threading_mode_enum::AERON_THREADING_MODE_INVOKER)
            .map_err(driver_err("set invoker threading mode"))?;
        driver_ctx
            .set_term_buffer_length(TERM_LENGTH_BYTES)
            .map_err(driver_err("set term buffer length"))?;
        driver_ctx
            .set_ipc_term_buffer_length(TERM_LENGTH_BYTES)
            .map_err(driver_err("set IPC term buffer length"))?;
        driver_ctx
            .set_term_buffer_sparse_file(false)
            .map_err(driver_err("set non-sparse term buffers"))?;
        let driver = AeronDriver::new(&driver_ctx).map_err(driver_err("init"))?;
        driver.start(true).map_err(driver_err("start"))?;

        let last_error = Arc::new(Mutex::new(None));
        let client_ctx = AeronContext::new().map_err(client_err("create context"))?;
        client_ctx
            .set_dir(&aeron_dir_c)
            .map_err(client_err("set dir"))?;
        client_ctx
            .set_use_conductor_agent_invoker(true)
            .map_err(client_err("set conductor agent invoker"))?;
        client_ctx
            .set_pre_touch_mapped_memory(true)
            .map_err(client_err("set pre-touch"))?;
        let errors = Arc::clone(&last_error);
        client_ctx
            .set_error_handler(Some(move |code: i32, msg: &str| {
                if let Ok(mut last) = errors.lock() {
                    *last = Some(format!("{code}: {msg}"));
                }
            }))
            .map_err(client_err("set error handler"))?;
        let client = Aeron::new(&client_ctx).map_err(client_err("init"))?;
        client.start().map_err(client_err("start"))?;

        let (ping_channel, pong_channel) = match path {
            AeronPath::Udp => {
                let (ping_port, pong_port) = free_udp_ports()?;
                (
                    format!("aeron:udp?endpoint=127.0.0.1:{ping_port}"),
                    format!("aeron:udp?endpoint=127.0.0.1:{pong_port}"),
                )
            }
            AeronPath::Ipc => ("aeron:ipc".to_owned(), "aeron:ipc".to_owned()),
        };
        let channel = if ping_channel == pong_channel {
            ping_channel.clone()
        } else {
            format!("{ping_channel} and {pong_channel}")
        };
        let ping_c = c_string("ping channel", &ping_channel)?;
        let pong_c = c_string("pong channel", &pong_channel)?;

        let ping_pub = await_added(
            &driver,
            &client,
            "add ping publication",
            || client.async_add_exclusive_publication(&ping_c, PING_STREAM_ID),
            |pending| pending.poll(),
        )?;
        let pong_pub = await_added(
            &driver,
            &client,
            "add pong publication",
            || client.async_add_exclusive_publication(&pong_c, PONG_STREAM_ID),
            |pending| pending.poll(),
        )?;
        let ping_sub = await_added(
            &driver,
            &client,
            "add ping subscription",
            || {
                client.async_add_subscription(
                    &ping_c,
                    PING_STREAM_ID,
                    Handlers::NONE,
                    Handlers::NONE,
                )
            },
            |pending| pending.poll(),
        )?;
        let pong_sub = await_added(
            &driver,
            &client,
            "add pong subscription",
            || {
                client.async_add_subscription(
                    &pong_c,
                    PONG_STREAM_ID,
                    Handlers::NONE,
                    Handlers::NONE,
                )
            },
            |pending| pending.poll(),
        )?;
        Ok(Self {
            ping_pub,
            ping_sub,
            pong_pub,
            pong_sub,
            client,
            _client_ctx: client_ctx,
            driver,
            _driver_ctx: driver_ctx,
            last_error,
            channel,
            _dir: dir,
        })
    }

    /// Largest message that both publications send unfragmented.
    fn max_payload_bytes(&self) -> Result<usize, PeerError> {
        let ping = self
            .ping_pub
            .max_payload_length()
            .map_err(client_err("read max payload length"))?;
        let pong = self
            .pong_pub
            .max_payload_length()
            .map_err(client_err("read max payload length"))?;
        Ok(ping.min(pong))
    }

    /// One duty cycle of the driver and of the client conductor: the work they did.
    #[inline]
    fn agents_do_work(&self) -> Result<i32, PeerError> {
        let driver = self
            .driver
            .main_do_work()
            .map_err(driver_err("duty cycle"))?;
        let client = self
            .client
            .main_do_work()
            .map_err(client_err("duty cycle"))?;
        Ok(driver + client)
    }

    /// Waits until both publications see a subscriber and both subscriptions an image.
    fn connect(&self, idle: &mut Idle) -> Result<(), PeerError> {
        let start = Instant::now();
        while !(self.ping_pub.is_connected()
            && self.pong_pub.is_connected()
            && self.ping_sub.is_connected()
            && self.pong_sub.is_connected())
        {
            let work = self.agents_do_work()?;
            if start.elapsed() > CONNECT_TIMEOUT {
                let last_error = self
                    .last_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_else(|| "none".to_owned());
                return Err(PeerError::NotConnected {
                    channel: self.channel.clone(),
                    waited: start.elapsed(),
                    last_error,
                });
            }
            idle.idle(work);
        }
        Ok(())
    }

    /// The ping-pong itself: see [`pingpong`].
    fn run(
        &self,
        size: usize,
        idle: &mut Idle,
        warmup: Duration,
        duration: Duration,
    ) -> Result<LatencyRun, PeerError> {
        let mut run = LatencyRun::new();
        let mut ping = vec![0u8; size];
        // The echo side's copy of the message it has taken but not yet sent back.
        let mut echo = vec![0u8; size];
        let mut echo_len: Option<usize> = None;

        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + duration;
        let mut seq = 0u64;
        loop {
            let sent_at = Instant::now();
            if sent_at >= end {
                break;
            }
            let measuring = sent_at >= measure_from;
            seq += 1;
            ping[..8].copy_from_slice(&seq.to_le_bytes());
            self.offer(&self.ping_pub, PING_STREAM_ID, &ping, idle)?;
            if measuring {
                run.sent += 1;
            }

            let mut reply: Option<(u64, usize, Instant)> = None;
            loop {
                let mut work = self.agents_do_work()?;
                // Echo side: take one message, then send it back (retrying on later turns
                // if the publication is back-pressured).
                if echo_len.is_none() {
                    work += self
                        .ping_sub
                        .poll_fn(
                            |msg, _header| {
                                let len = msg.len().min(echo.len());
                                echo[..len].copy_from_slice(&msg[..len]);
                                echo_len = Some(msg.len());
                            },
                            1,
                        )
                        .map_err(client_err("poll ping subscription"))?;
                }
                if let Some(len) = echo_len {
                    let msg = &echo[..len.min(echo.len())];
                    match self.pong_pub.offer(msg) {
                        Ok(_) => {
                            echo_len = None;
                            work += 1;
                        }
                        Err(e) if e.is_retryable() => {}
                        Err(e) => {
                            return Err(PeerError::Offer {
                                stream_id: PONG_STREAM_ID,
                                message: e.to_string(),
                            });
                        }
                    }
                }
                // Pinger: the echo.
                work += self
                    .pong_sub
                    .poll_fn(
                        |msg, _header| {
                            let now = Instant::now();
                            let got = msg
                                .get(..8)
                                .and_then(|b| b.try_into().ok())
                                .map_or(0, u64::from_le_bytes);
                            reply = Some((got, msg.len(), now));
                        },
                        1,
                    )
                    .map_err(client_err("poll pong subscription"))?;
                if let Some((got, len, at)) = reply {
                    if got != seq || len != size {
                        return Err(PeerError::WrongEcho {
                            expected: seq,
                            got,
                            len,
                            size,
                        });
                    }
                    if measuring {
                        run.record(at.saturating_duration_since(sent_at).as_nanos() as u64);
                    }
                    break;
                }
                if work == 0 && sent_at.elapsed() > REPLY_TIMEOUT {
                    return Err(PeerError::NoReply {
                        seq,
                        waited: sent_at.elapsed(),
                    });
                }
                idle.idle(work);
            }
        }
        Ok(run)
    }

    /// Offers `msg`, running the agents and idling while the publication is back-pressured.
    fn offer(
        &self,
        publication: &AeronExclusivePublication,
        stream_id: i32,
        msg: &[u8],
        idle: &mut Idle,
    ) -> Result<(), PeerError> {
        let start = Instant::now();
        loop {
            match publication.offer(msg) {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    if start.elapsed() > REPLY_TIMEOUT {
                        return Err(PeerError::Offer {
                            stream_id,
                            message: format!("{e} for {:?}", start.elapsed()),
                        });
                    }
                    let work = self.agents_do_work()?;
                    idle.idle(work);
                }
                Err(e) => {
                    return Err(PeerError::Offer {
                        stream_id,
                        message: e.to_string(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: AeronPath, idle: &str) {
        let run = pingpong(
            path,
            32,
            idle,
            Duration::from_millis(200),
            Duration::from_secs(1),
        )
        .unwrap_or_else(|e| panic!("{path:?} {idle}: {e}"));
        assert!(run.sent > 0, "{path:?} {idle}: nothing sent");
        assert_eq!(run.received, run.sent, "{path:?} {idle}");
        assert_eq!(run.lost(), 0, "{path:?} {idle}");
        assert_eq!(run.hist.len(), run.received, "{path:?} {idle}");
    }

    #[test]
    fn ipc_pingpong_with_backoff_echoes_every_message() {
        check(AeronPath::Ipc, "backoff");
    }

    #[test]
    fn udp_pingpong_with_backoff_echoes_every_message() {
        check(AeronPath::Udp, "backoff");
    }

    #[test]
    fn udp_pingpong_with_yield_echoes_every_message() {
        check(AeronPath::Udp, "yield");
    }

    #[test]
    fn sleeping_idle_strategy_parses_and_runs() {
        check(AeronPath::Ipc, "sleep-ns=1000");
    }

    #[test]
    fn unknown_idle_strategy_is_rejected() {
        for bad in ["", "busy", "sleep-ns=", "sleep-ns=x", "sleep-ns=-1", "Spin"] {
            let err =
                pingpong(AeronPath::Ipc, 32, bad, Duration::ZERO, Duration::ZERO).expect_err(bad);
            assert!(
                matches!(err, PeerError::Idle(ref s) if s == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn sizes_without_room_for_a_sequence_number_or_over_the_mtu_are_rejected() {
        let err = pingpong(AeronPath::Ipc, 7, "backoff", Duration::ZERO, Duration::ZERO)
            .expect_err("7 B");
        assert!(matches!(err, PeerError::Size { size: 7, .. }), "{err}");
        let err = pingpong(
            AeronPath::Udp,
            64 * 1024,
            "backoff",
            Duration::ZERO,
            Duration::ZERO,
        )
        .expect_err("64 KiB");
        assert!(
            matches!(err, PeerError::Size { size: 65536, max, .. } if max < 65536),
            "{err}"
        );
    }

    /// Measurement, not a check: `cargo test -p tandem-benches --release --features peer-aeron
    /// --lib -- --ignored --nocapture aeron_pingpong_figures`.
    #[test]
    #[ignore = "a timing measurement, not a check: needs a release build and a quiet machine; the README's Benchmarks section has the command (cargo test -p tandem-benches --release --features peer-aeron --lib -- --ignored --nocapture aeron_pingpong_figures)"]
    fn aeron_pingpong_figures() {
        for path in [AeronPath::Udp, AeronPath::Ipc] {
            let run = pingpong(
                path,
                32,
                "yield",
                Duration::from_secs(2),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let h = &run.hist;
            println!(
                "aeron {path:?} 32 B yield: sent {} received {} p50 {:.2} us p90 {:.2} us p99 {:.2} us p99.9 {:.2} us max {:.2} us",
                run.sent,
                run.received,
                h.value_at_quantile(0.50) as f64 / 1e3,
                h.value_at_quantile(0.90) as f64 / 1e3,
                h.value_at_quantile(0.99) as f64 / 1e3,
                h.value_at_quantile(0.999) as f64 / 1e3,
                h.max() as f64 / 1e3,
            );
            assert_eq!(run.lost(), 0);
        }
    }
}
