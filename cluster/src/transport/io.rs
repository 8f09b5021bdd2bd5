//! The datagram IO layer: one API ([`DatagramIo`]), two implementations (std sockets with
//! `sendmmsg`/`recvmmsg`, and io_uring), selected by [`IoMode`].

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::str::FromStr;

use super::counters::TransportCounters;
use super::error::{Result, TransportError};
use super::sys;
use super::uring::UringUdp;

/// Which UDP implementation to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// Non-blocking `std::net::UdpSocket` with `sendmmsg`/`recvmmsg` batches.
    #[default]
    Std,
    /// io_uring (COOP_TASKRUN + TASKRUN_FLAG, multishot receive into a buffer ring).
    Uring,
}

impl FromStr for IoMode {
    type Err = TransportError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "std" => Ok(Self::Std),
            "uring" | "io_uring" | "io-uring" => Ok(Self::Uring),
            _ => Err(TransportError::UnknownIoMode(s.to_string())),
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Std => "std",
            Self::Uring => "uring",
        })
    }
}

/// Socket-level settings shared by both paths.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Largest datagram this endpoint sends (header included): longer messages are cut into
    /// fragments of at most this size.
    pub mtu: usize,
    /// Largest datagram this endpoint accepts (header included). The default is the largest
    /// UDP payload over IPv4, as Aeron's receivers, so a sender configured with a larger `mtu`
    /// than its receivers (a client's above the members', a member's above a client's) loses
    /// nothing; longer datagrams are dropped and counted as `dropped_oversize`. Each receive
    /// buffer is this long: `recv_buffers × recv_max_datagram` bytes per socket, at most 64 MiB
    /// (4 MiB by default; the kernel writes only as far as datagrams fill them).
    pub recv_max_datagram: usize,
    /// Preallocated send slots (datagrams queued or in flight); the send back-pressure bound.
    pub send_slots: usize,
    /// Receive buffers (std: one `recvmmsg` batch; uring: buffer-ring size, power of two).
    pub recv_buffers: usize,
    /// SO_RCVBUF/SO_SNDBUF request in bytes (0 leaves the kernel default).
    pub socket_buffer_bytes: usize,
    /// io_uring submission queue entries.
    pub uring_entries: u32,
    /// Test hook: behave as if io_uring setup failed (exercises the fallback to `std`).
    pub force_uring_failure: bool,
    /// Test hook: use per-recv SQEs instead of multishot receive with a buffer ring.
    pub force_single_shot_recv: bool,
}

impl Default for UdpConfig {
    fn default() -> Self {
        Self {
            mtu: 1408,
            recv_max_datagram: super::frame::MAX_DATAGRAM,
            send_slots: 1024,
            recv_buffers: 64,
            socket_buffer_bytes: 4 << 20,
            uring_entries: 256,
            force_uring_failure: false,
            force_single_shot_recv: false,
        }
    }
}

/// Preallocated, bounded send slots shared by both paths.
#[derive(Debug)]
pub struct SendSlots {
    buf: Vec<u8>,
    stride: usize,
    lens: Vec<usize>,
    dests: Vec<SocketAddr>,
    free: Vec<u32>,
    pending: VecDeque<u32>,
    /// Destinations whose datagrams wait in `held` until [`SendSlots::release_held`].
    hold: Vec<SocketAddr>,
    held: VecDeque<u32>,
    /// Free slots below which a hold ends early, so held datagrams never crowd out the
    /// others.
    reserve: usize,
}

impl SendSlots {
    /// `count` slots of `stride` bytes each.
    pub fn new(count: usize, stride: usize) -> Self {
        let count = count.max(1);
        Self {
            buf: vec![0; count * stride],
            stride,
            lens: vec![0; count],
            dests: vec![SocketAddr::from(([0, 0, 0, 0], 0)); count],
            free: (0..count as u32).rev().collect(),
            pending: VecDeque::with_capacity(count),
            hold: Vec::with_capacity(8),
            held: VecDeque::with_capacity(count),
            reserve: count / 4,
        }
    }
    /// Free slots.
    pub fn free(&self) -> usize {
        self.free.len()
    }
    /// Queued, not yet handed to the kernel.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
    /// Fills a free slot with `fill` and queues it; `WouldBlock` when none is free.
    pub fn queue(&mut self, dest: SocketAddr, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<()> {
        if !self.held.is_empty() && self.free.len() <= self.reserve {
            // Held datagrams (a follower catching up) would leave no slot for the others:
            // the hold ends here, in order.
            self.release_held();
        }
        let i = self.free.pop().ok_or(TransportError::WouldBlock)?;
        let s = i as usize * self.stride;
        let len = fill(&mut self.buf[s..s + self.stride]);
        self.lens[i as usize] = len.min(self.stride);
        self.dests[i as usize] = dest;
        if self.hold.contains(&dest) {
            self.held.push_back(i);
        } else {
            self.pending.push_back(i);
        }
        Ok(())
    }
    /// From now on, datagrams queued to `dests` wait (in order) until
    /// [`SendSlots::release_held`] instead of leaving with the next send; they keep their
    /// slots meanwhile, so back-pressure still bounds them. What an earlier hold still held
    /// is released first (a destination's datagrams never overtake each other). A hold ends
    /// early, releasing what it held, when fewer than a quarter of the slots are free.
    pub fn hold(&mut self, dests: impl IntoIterator<Item = SocketAddr>) {
        self.release_held();
        self.hold.extend(dests);
    }
    /// Ends the hold: what waited joins the pending datagrams (after those already pending).
    /// Returns how many.
    pub fn release_held(&mut self) -> usize {
        self.hold.clear();
        let n = self.held.len();
        self.pending.extend(self.held.drain(..));
        n
    }
    /// Datagrams waiting for [`SendSlots::release_held`].
    pub fn held(&self) -> usize {
        self.held.len()
    }
    /// The `n`-th pending datagram.
    pub fn pending_at(&self, n: usize) -> (&[u8], SocketAddr) {
        let i = self.pending[n] as usize;
        self.slot(i)
    }
    /// Datagram in slot `i`.
    pub fn slot(&self, i: usize) -> (&[u8], SocketAddr) {
        let s = i * self.stride;
        (&self.buf[s..s + self.lens[i]], self.dests[i])
    }
    /// Pointer to slot `i`'s bytes (for io_uring, which needs a stable address).
    pub fn slot_ptr(&mut self, i: usize) -> *mut u8 {
        self.buf[i * self.stride..].as_mut_ptr()
    }
    /// Removes the oldest pending slot (its index), leaving it "in flight".
    pub fn pop_pending(&mut self) -> Option<u32> {
        self.pending.pop_front()
    }
    /// Returns a slot to the free list.
    pub fn release(&mut self, i: u32) {
        self.free.push(i);
    }
}

/// The operations both UDP paths provide.
pub trait DatagramIo {
    /// The path actually in use (after any fallback).
    fn io_mode(&self) -> IoMode;
    /// Bound local address.
    fn local_addr(&self) -> SocketAddr;
    /// Free send slots (each holds one datagram).
    fn free_send_slots(&self) -> usize;
    /// Queues one datagram written by `fill` (returns its length) into a preallocated slot.
    /// `WouldBlock` when all slots are queued or in flight.
    fn queue_datagram(
        &mut self,
        dest: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<()>;
    /// Hands queued datagrams to the kernel in batches; returns how many were submitted.
    /// Datagrams held by [`DatagramIo::hold_sends`] stay queued.
    fn send_batch(&mut self, counters: &mut TransportCounters) -> Result<usize>;
    /// Holds the datagrams queued from now on to `dests` until
    /// [`DatagramIo::release_held_sends`] ([`SendSlots::hold`]).
    fn hold_sends(&mut self, dests: impl IntoIterator<Item = SocketAddr>);
    /// Ends the hold; the held datagrams leave with the next [`DatagramIo::send_batch`].
    /// Returns how many were held.
    fn release_held_sends(&mut self) -> usize;
    /// Receives what is waiting, without blocking, calling `handler(counters, source, datagram)`
    /// for each (the counters are passed through so the handler can count drops).
    fn recv_batch<F: FnMut(&mut TransportCounters, SocketAddr, &[u8])>(
        &mut self,
        counters: &mut TransportCounters,
        handler: F,
    ) -> Result<usize>;
}

/// The std path: non-blocking socket, `sendmmsg`/`recvmmsg`, per-datagram fallback.
#[derive(Debug)]
pub struct StdUdp {
    sock: UdpSocket,
    local: SocketAddr,
    slots: SendSlots,
    recv_bufs: Vec<u8>,
    stride: usize,
    metas: Vec<sys::RecvMeta>,
    mmsg: bool,
}

impl StdUdp {
    /// Binds a non-blocking socket at `addr`.
    pub fn bind(addr: SocketAddr, cfg: &UdpConfig) -> Result<Self> {
        let sock = UdpSocket::bind(addr).map_err(|e| TransportError::io("bind", e))?;
        Self::from_socket(sock, cfg)
    }

    pub(crate) fn from_socket(sock: UdpSocket, cfg: &UdpConfig) -> Result<Self> {
        sock.set_nonblocking(true)
            .map_err(|e| TransportError::io("set_nonblocking", e))?;
        if cfg.socket_buffer_bytes > 0 {
            sys::set_socket_buffers(sock.as_raw_fd(), cfg.socket_buffer_bytes);
        }
        let local = sock
            .local_addr()
            .map_err(|e| TransportError::io("local_addr", e))?;
        let batch = cfg.recv_buffers.clamp(1, sys::MAX_BATCH);
        // One spare byte per buffer detects truncation on the fallback path.
        let stride = cfg.recv_max_datagram + 1;
        Ok(Self {
            sock,
            local,
            slots: SendSlots::new(cfg.send_slots, cfg.mtu),
            recv_bufs: vec![0; batch * stride],
            stride,
            metas: vec![
                sys::RecvMeta {
                    len: 0,
                    addr: None,
                    truncated: false
                };
                batch
            ],
            mmsg: true,
        })
    }

    fn send_one_by_one(&mut self, counters: &mut TransportCounters) -> usize {
        let mut sent = 0;
        while self.slots.pending() > 0 {
            let (data, dest) = self.slots.pending_at(0);
            match self.sock.send_to(data, dest) {
                Ok(n) => {
                    counters.datagrams_out += 1;
                    counters.bytes_out += n as u64;
                    sent += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(%dest, err = %e, "send_to failed, datagram dropped");
                    counters.send_errors += 1;
                }
            }
            if let Some(i) = self.slots.pop_pending() {
                self.slots.release(i);
            }
        }
        sent
    }
}

impl DatagramIo for StdUdp {
    fn io_mode(&self) -> IoMode {
        IoMode::Std
    }
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
    fn free_send_slots(&self) -> usize {
        self.slots.free()
    }
    fn queue_datagram(
        &mut self,
        dest: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<()> {
        self.slots.queue(dest, fill)
    }
    fn hold_sends(&mut self, dests: impl IntoIterator<Item = SocketAddr>) {
        self.slots.hold(dests);
    }
    fn release_held_sends(&mut self) -> usize {
        self.slots.release_held()
    }

    fn send_batch(&mut self, counters: &mut TransportCounters) -> Result<usize> {
        let mut sent = 0;
        while self.mmsg && self.slots.pending() > 0 {
            let n = self.slots.pending().min(sys::MAX_BATCH);
            let slots = &self.slots;
            match sys::send_mmsg(self.sock.as_raw_fd(), n, |k| slots.pending_at(k)) {
                Ok(k) => {
                    for _ in 0..k {
                        if let Some(i) = self.slots.pop_pending() {
                            counters.datagrams_out += 1;
                            counters.bytes_out += self.slots.slot(i as usize).0.len() as u64;
                            self.slots.release(i);
                        }
                    }
                    sent += k;
                    if k < n {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    tracing::warn!("sendmmsg unavailable, falling back to send_to");
                    self.mmsg = false;
                }
                Err(e) => {
                    // The first datagram was refused: drop it, keep the rest.
                    tracing::debug!(err = %e, "sendmmsg refused a datagram, dropped");
                    counters.send_errors += 1;
                    if let Some(i) = self.slots.pop_pending() {
                        self.slots.release(i);
                    }
                }
            }
        }
        if !self.mmsg {
            sent += self.send_one_by_one(counters);
        }
        Ok(sent)
    }

    fn recv_batch<F: FnMut(&mut TransportCounters, SocketAddr, &[u8])>(
        &mut self,
        counters: &mut TransportCounters,
        mut handler: F,
    ) -> Result<usize> {
        if self.mmsg {
            match sys::recv_mmsg(
                self.sock.as_raw_fd(),
                &mut self.recv_bufs,
                self.stride,
                &mut self.metas,
            ) {
                Ok(n) => {
                    for (i, m) in self.metas[..n].iter().enumerate() {
                        counters.datagrams_in += 1;
                        counters.bytes_in += m.len as u64;
                        match m.addr {
                            Some(addr) if !m.truncated && m.len < self.stride => {
                                let s = i * self.stride;
                                handler(counters, addr, &self.recv_bufs[s..s + m.len]);
                            }
                            Some(addr) => counters.note_oversize(Some(addr), self.stride - 1),
                            None => counters.recv_errors += 1,
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    tracing::warn!("recvmmsg unavailable, falling back to recv_from");
                    self.mmsg = false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
                Err(e) => {
                    counters.recv_errors += 1;
                    return Err(TransportError::io("recvmmsg", e));
                }
            }
        }
        let mut n = 0;
        let batch = self.metas.len();
        while n < batch {
            let buf = &mut self.recv_bufs[..self.stride];
            match self.sock.recv_from(buf) {
                Ok((len, addr)) => {
                    n += 1;
                    counters.datagrams_in += 1;
                    counters.bytes_in += len as u64;
                    if len >= self.stride {
                        counters.note_oversize(Some(addr), self.stride - 1);
                    } else {
                        handler(counters, addr, &buf[..len]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) => {
                    counters.recv_errors += 1;
                    return Err(TransportError::io("recv_from", e));
                }
            }
        }
        Ok(n)
    }
}

/// Either UDP path behind one type; built by [`UdpIo::bind`], which falls back from
/// io_uring to std when io_uring cannot be set up.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per socket, never moved on the hot path
pub enum UdpIo {
    /// std sockets.
    Std(StdUdp),
    /// io_uring.
    Uring(UringUdp),
}

impl UdpIo {
    /// The socket's descriptor on the std path (`None` for io_uring, which polls its own
    /// completion queue).
    pub(crate) fn std_fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Self::Std(s) => Some(s.sock.as_raw_fd()),
            Self::Uring(_) => None,
        }
    }

    /// Binds `addr` with the requested mode. If `Uring` was asked for but io_uring setup
    /// fails (ENOSYS, EPERM under seccomp, old kernel, `force_uring_failure`), the std path
    /// is used instead and the reason is returned alongside.
    pub fn bind(addr: SocketAddr, mode: IoMode, cfg: &UdpConfig) -> Result<(Self, Option<String>)> {
        match mode {
            IoMode::Std => Ok((Self::Std(StdUdp::bind(addr, cfg)?), None)),
            IoMode::Uring => {
                let sock = UdpSocket::bind(addr).map_err(|e| TransportError::io("bind", e))?;
                match UringUdp::new(sock, cfg) {
                    Ok(u) => Ok((Self::Uring(u), None)),
                    Err((sock, why)) => {
                        tracing::warn!(%addr, reason = %why, "io_uring unavailable, falling back to std UDP");
                        Ok((Self::Std(StdUdp::from_socket(sock, cfg)?), Some(why)))
                    }
                }
            }
        }
    }
}

impl DatagramIo for UdpIo {
    fn io_mode(&self) -> IoMode {
        match self {
            Self::Std(s) => s.io_mode(),
            Self::Uring(u) => u.io_mode(),
        }
    }
    fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Std(s) => s.local_addr(),
            Self::Uring(u) => u.local_addr(),
        }
    }
    fn free_send_slots(&self) -> usize {
        match self {
            Self::Std(s) => s.free_send_slots(),
            Self::Uring(u) => u.free_send_slots(),
        }
    }
    fn queue_datagram(
        &mut self,
        dest: SocketAddr,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<()> {
        match self {
            Self::Std(s) => s.queue_datagram(dest, fill),
            Self::Uring(u) => u.queue_datagram(dest, fill),
        }
    }
    fn send_batch(&mut self, counters: &mut TransportCounters) -> Result<usize> {
        match self {
            Self::Std(s) => s.send_batch(counters),
            Self::Uring(u) => u.send_batch(counters),
        }
    }
    fn hold_sends(&mut self, dests: impl IntoIterator<Item = SocketAddr>) {
        match self {
            Self::Std(s) => s.hold_sends(dests),
            Self::Uring(u) => u.hold_sends(dests),
        }
    }
    fn release_held_sends(&mut self) -> usize {
        match self {
            Self::Std(s) => s.release_held_sends(),
            Self::Uring(u) => u.release_held_sends(),
        }
    }
    fn recv_batch<F: FnMut(&mut TransportCounters, SocketAddr, &[u8])>(
        &mut self,
        counters: &mut TransportCounters,
        handler: F,
    ) -> Result<usize> {
        match self {
            Self::Std(s) => s.recv_batch(counters, handler),
            Self::Uring(u) => u.recv_batch(counters, handler),
        }
    }
}
