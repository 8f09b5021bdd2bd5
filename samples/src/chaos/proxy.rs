//! A seeded UDP fault proxy for the members' peer traffic: delay, jitter, reordering and
//! duplication (this kernel has no `netem`).
//!
//! While a member's rules say `via_proxy`, its namespace rewrites (stateless nftables, before
//! routing) each peer datagram to member `k` into one to `HOST:PROXY_IN_BASE + i*16 + k`. The
//! proxy holds it for `delay ± jitter` (plus an extra hold for a reordered one), maybe
//! sends a second copy, and sends it to member `k`'s peer port from `HOST:PROXY_OUT_BASE + i`.
//! Member `k`'s namespace rewrites that source back to member `i`'s peer address before
//! routing, so the receiver sees the datagram as coming from member `i` and its check that
//! a member id matches the source address passes. No connection tracking is involved.

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::{Result, io};
use super::net::{Net, PROXY_IN_BASE, PROXY_OUT_BASE};
use crate::cli::matching::Rng;

/// What the proxy does to each datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyParams {
    /// Base delay.
    pub delay_ms: u64,
    /// Uniform jitter added to the delay (0..jitter).
    pub jitter_ms: u64,
    /// Percent of datagrams held back an extra 2 x delay (reordering).
    pub reorder_percent: u64,
    /// Percent of datagrams sent twice.
    pub duplicate_percent: u64,
}

/// Datagrams the proxy handled.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Received from members.
    pub received: AtomicU64,
    /// Sent on (copies included).
    pub forwarded: AtomicU64,
    /// Extra copies.
    pub duplicated: AtomicU64,
    /// Held back for reordering.
    pub reordered: AtomicU64,
}

/// The running proxy (stopped when dropped).
#[derive(Debug)]
pub struct Proxy {
    params: Arc<Mutex<ProxyParams>>,
    stats: Arc<ProxyStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

struct Held {
    due: Instant,
    order: u64,
    from: usize,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.order) == (o.due, o.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    // Earliest first in a max-heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.order).cmp(&(self.due, self.order))
    }
}

/// Most datagrams the proxy holds; beyond, new ones are dropped (a bounded queue).
const MAX_HELD: usize = 100_000;

impl Proxy {
    /// Binds the proxy's sockets on the bridge address and starts its thread.
    ///
    /// # Errors
    /// An IO error if a socket cannot be bound.
    pub fn start(net: &Net, seed: u64) -> Result<Self> {
        let n = net.size();
        let host = net.host_ip();
        let mut inbound = Vec::new();
        for i in 0..n {
            for k in (0..n).filter(|&k| k != i) {
                let addr = SocketAddr::new(host.into(), PROXY_IN_BASE + (i * 16 + k) as u16);
                let s = UdpSocket::bind(addr).map_err(io("bind proxy socket", "proxy".as_ref()))?;
                s.set_nonblocking(true)
                    .map_err(io("proxy socket", "proxy".as_ref()))?;
                inbound.push((s, net.peer_addr(i), i as usize, net.peer_addr(k)));
            }
        }
        let mut outbound = Vec::new();
        for i in 0..n {
            let addr = SocketAddr::new(host.into(), PROXY_OUT_BASE + i as u16);
            outbound
                .push(UdpSocket::bind(addr).map_err(io("bind proxy socket", "proxy".as_ref()))?);
        }
        let params = Arc::new(Mutex::new(ProxyParams::default()));
        let stats = Arc::new(ProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (p, st, sp) = (Arc::clone(&params), Arc::clone(&stats), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("chaos-proxy".into())
            .spawn(move || pump(&inbound, &outbound, &p, &st, &sp, seed))
            .map_err(io("spawn proxy thread", "proxy".as_ref()))?;
        Ok(Self {
            params,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// Sets what the proxy does from now on.
    pub fn set(&self, params: ProxyParams) {
        *self.params.lock().unwrap_or_else(|e| e.into_inner()) = params;
    }

    /// Its counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pump(
    inbound: &[(UdpSocket, SocketAddr, usize, SocketAddr)],
    outbound: &[UdpSocket],
    params: &Mutex<ProxyParams>,
    stats: &ProxyStats,
    stop: &AtomicBool,
    seed: u64,
) {
    let mut rng = Rng::new(seed ^ 0x5052_4f58_5900_0000);
    let mut held: BinaryHeap<Held> = BinaryHeap::new();
    let mut order = 0_u64;
    let mut buf = vec![0_u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let p = *params.lock().unwrap_or_else(|e| e.into_inner());
        let mut work = 0;
        let now = Instant::now();
        for (sock, from_addr, from, to) in inbound {
            while let Ok((len, src)) = sock.recv_from(&mut buf) {
                work += 1;
                if src != *from_addr {
                    continue; // only the member this port belongs to
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                let copies = if rng.below(100) < p.duplicate_percent {
                    stats.duplicated.fetch_add(1, Ordering::Relaxed);
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let mut delay = p.delay_ms + rng.below(p.jitter_ms + 1);
                    if rng.below(100) < p.reorder_percent {
                        stats.reordered.fetch_add(1, Ordering::Relaxed);
                        delay += 2 * p.delay_ms.max(1);
                    }
                    if held.len() < MAX_HELD {
                        order += 1;
                        held.push(Held {
                            due: now + Duration::from_millis(delay),
                            order,
                            from: *from,
                            to: *to,
                            bytes: buf[..len].to_vec(),
                        });
                    }
                }
            }
        }
        let now = Instant::now();
        while held.peek().is_some_and(|h| h.due <= now) {
            let h = held.pop().expect("peeked");
            if outbound[h.from].send_to(&h.bytes, h.to).is_ok() {
                stats.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            work += 1;
        }
        if work == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}
