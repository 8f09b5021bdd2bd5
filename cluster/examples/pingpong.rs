//! 32-byte ping-pong round trips over loopback between two threads (two member transports,
//! peer sockets), for the `std` and `uring` paths, with a spinning and a backoff receiver.
//!
//! `cargo run --release --example pingpong -- [round_trips] [warmup]` (default 20000 / 2000).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tandem_cluster::transport::{
    Event, IoMode, MemberEndpoints, Network, Transport, TransportConfig,
};

#[derive(Clone, Copy, Debug)]
enum Idle {
    Spin,
    Backoff,
}

/// Aeron-style backoff: 10 spins, 5 yields, then parks from 1 us doubling to 1 ms.
struct Backoff {
    n: u32,
    park: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            n: 0,
            park: Duration::from_micros(1),
        }
    }
    fn idle(&mut self, kind: Idle, work: usize) {
        if work > 0 {
            self.n = 0;
            self.park = Duration::from_micros(1);
            return;
        }
        match kind {
            Idle::Spin => std::hint::spin_loop(),
            Idle::Backoff => {
                self.n += 1;
                if self.n <= 10 {
                    std::hint::spin_loop();
                } else if self.n <= 15 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(self.park);
                    self.park = (self.park * 2).min(Duration::from_millis(1));
                }
            }
        }
    }
}

fn bind_pair(mode: IoMode) -> (Transport, Transport) {
    let cfg = TransportConfig {
        cluster_id: 42,
        ..TransportConfig::default()
    };
    for base in (41_000..60_000).step_by(10) {
        let list = format!("0=127.0.0.1:{base},1=127.0.0.1:{}", base + 2);
        let members = MemberEndpoints::parse(&list).expect("members");
        if let (Ok(a), Ok(b)) = (
            Transport::bind_member(cfg.clone(), members.clone(), 0, mode),
            Transport::bind_member(cfg.clone(), members, 1, mode),
        ) {
            return (a, b);
        }
    }
    panic!("no free ports");
}

fn run(mode: IoMode, idle: Idle, iters: u64, warmup: u64) {
    let (mut ping, mut pong) = bind_pair(mode);
    let in_use = ping.io_mode_in_use();
    let echo = std::thread::spawn(move || {
        let mut backoff = Backoff::new();
        let mut buf = [0u8; 32];
        let mut last = Instant::now();
        loop {
            let mut stop = false;
            let mut got = None;
            let n = pong
                .poll(0, |e| {
                    if let Event::FromMember { msg, .. } = e {
                        if msg.len() == 1 {
                            stop = true;
                        }
                        buf[..msg.len().min(32)].copy_from_slice(&msg[..msg.len().min(32)]);
                        got = Some(msg.len().min(32));
                    }
                })
                .expect("poll");
            if stop {
                return;
            }
            if let Some(len) = got {
                pong.send_to_member(0, &buf[..len]).expect("echo");
                pong.flush().expect("flush");
                last = Instant::now();
            } else if last.elapsed() > Duration::from_secs(10) {
                return;
            }
            backoff.idle(idle, n);
        }
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut backoff = Backoff::new();
    let mut msg = [0u8; 32];
    let mut lost = 0;
    for i in 0..warmup + iters {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        let t0 = Instant::now();
        ping.send_to_member(1, &msg).expect("send");
        ping.flush().expect("flush");
        let mut done = false;
        while !done {
            let n = ping
                .poll(0, |e| {
                    if let Event::FromMember { msg: m, .. } = e {
                        done |= m[..8] == i.to_le_bytes();
                    }
                })
                .expect("poll");
            if !done && t0.elapsed() > Duration::from_secs(1) {
                lost += 1;
                break;
            }
            backoff.idle(idle, n);
        }
        if done && i >= warmup {
            hist.record(t0.elapsed().as_nanos() as u64).expect("record");
        }
    }
    ping.send_to_member(1, &[0xFF]).expect("stop"); // a 1-byte message stops the echo
    ping.flush().expect("flush");
    echo.join().expect("echo thread");
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{:<6} (in use: {:<5}) {:<8} n={:<6} p50={:>7.1}us p99={:>7.1}us p99.9={:>8.1}us max={:>9.1}us lost={}",
        mode.to_string(),
        in_use.to_string(),
        format!("{idle:?}"),
        hist.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        hist.max() as f64 / 1000.0,
        lost
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let iters = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let warmup = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    for mode in [IoMode::Std, IoMode::Uring] {
        for idle in [Idle::Spin, Idle::Backoff] {
            run(mode, idle, iters, warmup);
        }
    }
}
