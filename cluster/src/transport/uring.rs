//! The io_uring UDP path.
//!
//! * Ring set up with `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG` (retrying with
//!   a default setup on kernels that refuse them). Completions are polled without blocking:
//!   the kernel is entered only when SQEs are queued or the TASKRUN flag says completions
//!   are pending, so the caller's idle strategy decides how to wait.
//! * Receive: one multishot `RecvMsgMulti` over a registered provided-buffer ring; buffers
//!   are handed back to the ring as soon as the handler returns. Where buffer rings are not
//!   supported (or `force_single_shot_recv`), a fixed set of single `RecvMsg` SQEs is kept
//!   armed instead.
//! * Send: each queued send slot becomes one `SendMsg` SQE; `send_batch` submits them all
//!   with one `io_uring_enter`. A slot is reused only after its completion was reaped (by
//!   `recv_batch`, which reaps every completion).
//!
//! Everything the kernel may touch (msghdrs, iovecs, addresses, buffers, the buffer ring) is
//! allocated once at construction and stays at a fixed heap address until `Drop`, which
//! cancels outstanding requests and waits for their completions before freeing memory.

use std::io;
use std::mem::size_of;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};

use super::counters::TransportCounters;
use super::error::Result;
use super::io::{DatagramIo, IoMode, SendSlots, UdpConfig};
use super::sys;

const TAG_SHIFT: u32 = 32;
const TAG_SEND: u64 = 1 << TAG_SHIFT;
const TAG_RECV_MULTI: u64 = 2 << TAG_SHIFT;
const TAG_RECV_SINGLE: u64 = 3 << TAG_SHIFT;
const TAG_CANCEL: u64 = 4 << TAG_SHIFT;
const BGID: u16 = 0x7a;
const NAME_LEN: usize = size_of::<libc::sockaddr_storage>();

#[derive(Debug)]
struct MsgMeta {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_storage,
}

fn zeroed_meta() -> MsgMeta {
    // SAFETY: all-zero is a valid value for these plain C structs (null pointers, 0 lengths).
    unsafe { std::mem::zeroed() }
}

#[derive(Debug)]
enum Recv {
    Multi {
        ring_mem: NonNull<BufRingEntry>,
        ring_bytes: usize,
        entries: u16,
        tail: u16,
        bufs: Vec<u8>,
        buf_size: usize,
        hdr: Box<libc::msghdr>,
        armed: bool,
    },
    Single {
        metas: Box<[MsgMeta]>,
        bufs: Vec<u8>,
        stride: usize,
        armed: Vec<bool>,
    },
}

/// io_uring-backed UDP socket.
pub struct UringUdp {
    ring: IoUring,
    sock: UdpSocket,
    local: SocketAddr,
    slots: SendSlots,
    send_meta: Box<[MsgMeta]>,
    in_flight: usize,
    recv: Recv,
    /// Largest datagram accepted (`UdpConfig::recv_max_datagram`).
    recv_max: usize,
}

impl std::fmt::Debug for UringUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringUdp")
            .field("local", &self.local)
            .field("in_flight", &self.in_flight)
            .field("multishot", &matches!(self.recv, Recv::Multi { .. }))
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers inside (msghdrs, iovecs, the buffer-ring mapping) point only into
// heap memory owned by this same value; nothing is shared with other threads, so moving the
// whole value to another thread is sound. It is not `Sync` (no `&self` method touches the ring).
unsafe impl Send for UringUdp {}

/// Receive buffers of the io_uring path for `cfg` (the buffer ring's size: a power of two);
/// the std path uses at most as many.
pub(crate) fn recv_buffer_count(cfg: &UdpConfig) -> usize {
    cfg.recv_buffers.clamp(2, 32_768).next_power_of_two()
}

impl UringUdp {
    /// Sets up io_uring on `sock`; on failure returns the socket back with the reason.
    pub fn new(sock: UdpSocket, cfg: &UdpConfig) -> std::result::Result<Self, (UdpSocket, String)> {
        if cfg.force_uring_failure {
            return Err((
                sock,
                "io_uring setup failure forced by configuration".into(),
            ));
        }
        match Self::setup(&sock, cfg) {
            Ok((ring, recv)) => {
                let local = match sock.local_addr() {
                    Ok(a) => a,
                    Err(e) => return Err((sock, format!("local_addr: {e}"))),
                };
                let n = cfg.send_slots.max(1);
                let mut me = Self {
                    ring,
                    sock,
                    local,
                    slots: SendSlots::new(n, cfg.mtu),
                    send_meta: (0..n).map(|_| zeroed_meta()).collect(),
                    in_flight: 0,
                    recv,
                    recv_max: cfg.recv_max_datagram,
                };
                if let Err(e) = me.arm_recv() {
                    return Err((me.into_socket(), format!("arming receive: {e}")));
                }
                Ok(me)
            }
            Err(e) => Err((sock, e)),
        }
    }

    fn into_socket(self) -> UdpSocket {
        let sock = self.sock.try_clone();
        drop(self);
        // A clone of the fd survives the drop; failure to clone is practically impossible.
        sock.unwrap_or_else(|_| UdpSocket::bind("127.0.0.1:0").expect("bind fallback socket"))
    }

    fn setup(sock: &UdpSocket, cfg: &UdpConfig) -> std::result::Result<(IoUring, Recv), String> {
        let entries = cfg.uring_entries.max(8).next_power_of_two();
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(entries * 4)
            .build(entries)
            .or_else(|e| {
                tracing::info!(err = %e, "io_uring COOP_TASKRUN setup refused, using default setup");
                IoUring::builder().setup_cqsize(entries * 4).build(entries)
            })
            .map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("io_uring probe: {e}"))?;
        if !probe.is_supported(opcode::SendMsg::CODE) || !probe.is_supported(opcode::RecvMsg::CODE)
        {
            return Err("io_uring lacks SendMsg/RecvMsg".into());
        }
        // io_uring never blocks the caller; a blocking socket lets the kernel arm its
        // internal poll instead of failing requests with EAGAIN.
        sock.set_nonblocking(false)
            .map_err(|e| format!("set_nonblocking: {e}"))?;
        if cfg.socket_buffer_bytes > 0 {
            sys::set_socket_buffers(sock.as_raw_fd(), cfg.socket_buffer_bytes);
        }
        let count = recv_buffer_count(cfg);
        let recv = if cfg.force_single_shot_recv {
            None
        } else {
            Self::setup_buf_ring(&ring, count, cfg.recv_max_datagram)
        };
        let recv = recv.unwrap_or_else(|| {
            let k = count.min(64);
            let stride = cfg.recv_max_datagram + 1;
            Recv::Single {
                metas: (0..k).map(|_| zeroed_meta()).collect(),
                bufs: vec![0; k * stride],
                stride,
                armed: vec![false; k],
            }
        });
        Ok((ring, recv))
    }

    fn setup_buf_ring(ring: &IoUring, count: usize, recv_max: usize) -> Option<Recv> {
        let entries = u16::try_from(count).ok()?;
        let ring_bytes = count * size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping; arguments are valid and the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let ring_mem = NonNull::new(p.cast::<BufRingEntry>())?;
        // SAFETY: `ring_mem` is a page-aligned mapping of `entries` entries that stays mapped
        // until `Drop`, which unregisters the group before unmapping it.
        let reg = unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, entries, BGID, 0)
        };
        if let Err(e) = reg {
            tracing::info!(err = %e, "provided buffer ring unsupported, using single-shot receives");
            // SAFETY: unmapping the mapping created above, which nothing references.
            unsafe { libc::munmap(p, ring_bytes) };
            return None;
        }
        // Room for the recvmsg_out header, the source address and the payload (+1 to detect
        // truncation, which the kernel also flags).
        let buf_size = 16 /* io_uring_recvmsg_out */ + NAME_LEN + recv_max + 1;
        let hdr = Box::new(libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: NAME_LEN as libc::socklen_t,
            msg_iov: std::ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        });
        let mut r = Recv::Multi {
            ring_mem,
            ring_bytes,
            entries,
            tail: 0,
            bufs: vec![0; count * buf_size],
            buf_size,
            hdr,
            armed: false,
        };
        for bid in 0..entries {
            r.provide(bid);
        }
        r.publish_tail();
        Some(r)
    }

    fn arm_recv(&mut self) -> io::Result<()> {
        let fd = Fd(self.sock.as_raw_fd());
        match &mut self.recv {
            Recv::Multi { hdr, armed, .. } => {
                if !*armed {
                    let sqe = opcode::RecvMsgMulti::new(fd, &**hdr as *const libc::msghdr, BGID)
                        .build()
                        .user_data(TAG_RECV_MULTI);
                    // SAFETY: `hdr` is boxed (fixed address) and lives until Drop, which waits
                    // for this request to finish; buffers come from the registered ring.
                    push(&mut self.ring, &sqe)?;
                    *armed = true;
                }
            }
            Recv::Single {
                metas,
                bufs,
                stride,
                armed,
            } => {
                for (k, m) in metas.iter_mut().enumerate() {
                    if armed[k] {
                        continue;
                    }
                    m.iov = libc::iovec {
                        iov_base: bufs[k * *stride..].as_mut_ptr().cast(),
                        iov_len: *stride,
                    };
                    m.hdr.msg_name = (&mut m.name as *mut libc::sockaddr_storage).cast();
                    m.hdr.msg_namelen = NAME_LEN as libc::socklen_t;
                    m.hdr.msg_iov = &mut m.iov;
                    m.hdr.msg_iovlen = 1;
                    m.hdr.msg_flags = 0;
                    let sqe = opcode::RecvMsg::new(fd, &mut m.hdr)
                        .build()
                        .user_data(TAG_RECV_SINGLE | k as u64);
                    push(&mut self.ring, &sqe)?;
                    armed[k] = true;
                }
            }
        }
        Ok(())
    }

    /// Enters the kernel only when there is something to submit or completions are pending.
    fn enter_if_needed(&mut self) -> io::Result<()> {
        let mut sq = self.ring.submission();
        sq.sync();
        let needed = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
        drop(sq);
        if needed {
            match self.ring.submit() {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Pushes one SQE, submitting first if the queue is full.
fn push(ring: &mut IoUring, sqe: &io_uring::squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: callers guarantee that every buffer/pointer referenced by `sqe` stays valid
        // until its completion is reaped (see the module docs: fixed heap allocations that
        // outlive all requests).
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

impl Recv {
    fn provide(&mut self, bid: u16) {
        if let Recv::Multi {
            ring_mem,
            entries,
            tail,
            bufs,
            buf_size,
            ..
        } = self
        {
            let idx = usize::from(*tail & (*entries - 1));
            // SAFETY: `idx < entries`, inside the mapping; only this thread writes entries, and
            // the kernel reads an entry only after the tail is published past it.
            let e = unsafe { &mut *ring_mem.as_ptr().add(idx) };
            e.set_addr(bufs[usize::from(bid) * *buf_size..].as_ptr() as u64);
            e.set_len(*buf_size as u32);
            e.set_bid(bid);
            *tail = tail.wrapping_add(1);
        }
    }

    fn publish_tail(&mut self) {
        if let Recv::Multi { ring_mem, tail, .. } = self {
            // SAFETY: the tail field of the first entry of a valid, initialised ring; the
            // kernel reads it with acquire semantics, so a release store publishes entries.
            unsafe {
                let t =
                    BufRingEntry::tail(ring_mem.as_ptr()) as *const std::sync::atomic::AtomicU16;
                (*t).store(*tail, std::sync::atomic::Ordering::Release);
            }
        }
    }
}

impl DatagramIo for UringUdp {
    fn io_mode(&self) -> IoMode {
        IoMode::Uring
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
        let fd = Fd(self.sock.as_raw_fd());
        let mut n = 0;
        while let Some(i) = self.slots.pop_pending() {
            let idx = i as usize;
            let (bytes, dest) = self.slots.slot(idx);
            let len = bytes.len();
            let base = self.slots.slot_ptr(idx);
            let m = &mut self.send_meta[idx];
            let namelen = sys::to_sockaddr(&dest, &mut m.name);
            m.iov = libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            };
            m.hdr.msg_name = (&mut m.name as *mut libc::sockaddr_storage).cast();
            m.hdr.msg_namelen = namelen;
            m.hdr.msg_iov = &mut m.iov;
            m.hdr.msg_iovlen = 1;
            let sqe = opcode::SendMsg::new(fd, &m.hdr)
                .build()
                .user_data(TAG_SEND | u64::from(i));
            if let Err(e) = push(&mut self.ring, &sqe) {
                // The datagram is dropped, not its slot: back to the free list.
                self.slots.release(i);
                counters.send_errors += 1;
                return Err(super::error::TransportError::io("io_uring push", e));
            }
            self.in_flight += 1;
            counters.datagrams_out += 1;
            counters.bytes_out += len as u64;
            n += 1;
        }
        if n > 0 {
            self.enter_if_needed()
                .map_err(|e| super::error::TransportError::io("io_uring_enter", e))?;
        }
        Ok(n)
    }

    fn recv_batch<F: FnMut(&mut TransportCounters, SocketAddr, &[u8])>(
        &mut self,
        counters: &mut TransportCounters,
        mut handler: F,
    ) -> Result<usize> {
        self.enter_if_needed()
            .map_err(|e| super::error::TransportError::io("io_uring_enter", e))?;
        let mut got = 0;
        let mut rearm = false;
        let mut returned = false;
        let recv_max = self.recv_max;
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let ud = cqe.user_data();
            let res = cqe.result();
            match ud & !0xFFFF_FFFF {
                TAG_SEND => {
                    self.in_flight -= 1;
                    if res < 0 {
                        counters.send_errors += 1;
                        tracing::debug!(err = %io::Error::from_raw_os_error(-res), "io_uring send failed");
                    }
                    self.slots.release((ud & 0xFFFF_FFFF) as u32);
                }
                TAG_RECV_MULTI => {
                    let more = cqueue::more(cqe.flags());
                    if let Recv::Multi {
                        bufs,
                        buf_size,
                        hdr,
                        armed,
                        ..
                    } = &mut self.recv
                    {
                        if !more {
                            *armed = false;
                            rearm = true;
                        }
                        let Some(bid) = cqueue::buffer_select(cqe.flags()) else {
                            if res < 0 && res != -libc::ENOBUFS && res != -libc::ECANCELED {
                                counters.recv_errors += 1;
                            }
                            continue;
                        };
                        let start = usize::from(bid) * *buf_size;
                        let buf = &bufs[start..start + (res.max(0) as usize).min(*buf_size)];
                        if res >= 0 {
                            got += 1;
                            match RecvMsgOut::parse(buf, hdr) {
                                Ok(out) => {
                                    let data = out.payload_data();
                                    counters.datagrams_in += 1;
                                    counters.bytes_in += data.len() as u64;
                                    match sys::from_sockaddr_bytes(out.name_data()) {
                                        from if out.is_payload_truncated()
                                            || data.len() > recv_max =>
                                        {
                                            counters.note_oversize(from, recv_max)
                                        }
                                        Some(addr) => handler(counters, addr, data),
                                        None => counters.recv_errors += 1,
                                    }
                                }
                                Err(()) => counters.recv_errors += 1,
                            }
                        }
                        self.recv.provide(bid);
                        returned = true;
                    }
                }
                TAG_RECV_SINGLE => {
                    let k = (ud & 0xFFFF_FFFF) as usize;
                    if let Recv::Single {
                        metas,
                        bufs,
                        stride,
                        armed,
                    } = &mut self.recv
                    {
                        armed[k] = false;
                        rearm = true;
                        if res < 0 {
                            if res != -libc::ECANCELED {
                                counters.recv_errors += 1;
                            }
                            continue;
                        }
                        got += 1;
                        let len = res as usize;
                        counters.datagrams_in += 1;
                        counters.bytes_in += len as u64;
                        let m = &metas[k];
                        let name = &m.name as *const libc::sockaddr_storage as *const u8;
                        // SAFETY: `m.name` is an initialised sockaddr_storage owned by us; the
                        // request that wrote it has completed.
                        let name = unsafe {
                            std::slice::from_raw_parts(
                                name,
                                (m.hdr.msg_namelen as usize).min(NAME_LEN),
                            )
                        };
                        if len >= *stride || m.hdr.msg_flags & libc::MSG_TRUNC != 0 {
                            counters.note_oversize(sys::from_sockaddr_bytes(name), *stride - 1);
                        } else if let Some(addr) = sys::from_sockaddr_bytes(name) {
                            handler(counters, addr, &bufs[k * *stride..k * *stride + len]);
                        } else {
                            counters.recv_errors += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        drop(cq);
        if returned {
            self.recv.publish_tail();
        }
        if rearm {
            self.arm_recv()
                .map_err(|e| super::error::TransportError::io("io_uring rearm", e))?;
            self.enter_if_needed()
                .map_err(|e| super::error::TransportError::io("io_uring_enter", e))?;
        }
        Ok(got)
    }
}

impl Drop for UringUdp {
    fn drop(&mut self) {
        // Cancel everything and wait (bounded) until the kernel has let go of our memory.
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(TAG_CANCEL);
        let _ = push(&mut self.ring, &cancel);
        let ts = Timespec::new().nsec(20_000_000);
        for _ in 0..50 {
            let recv_armed = match &self.recv {
                Recv::Multi { armed, .. } => *armed,
                Recv::Single { armed, .. } => armed.iter().any(|a| *a),
            };
            if self.in_flight == 0 && !recv_armed {
                break;
            }
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            for cqe in self.ring.completion() {
                let ud = cqe.user_data();
                match ud & !0xFFFF_FFFF {
                    TAG_SEND => self.in_flight = self.in_flight.saturating_sub(1),
                    TAG_RECV_MULTI if !cqueue::more(cqe.flags()) => {
                        if let Recv::Multi { armed, .. } = &mut self.recv {
                            *armed = false;
                        }
                    }
                    TAG_RECV_SINGLE => {
                        if let Recv::Single { armed, .. } = &mut self.recv {
                            armed[(ud & 0xFFFF_FFFF) as usize] = false;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Recv::Multi {
            ring_mem,
            ring_bytes,
            ..
        } = &self.recv
        {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
            // SAFETY: the mapping was created in `setup_buf_ring` with this size and is no
            // longer registered with the kernel.
            unsafe { libc::munmap(ring_mem.as_ptr().cast(), *ring_bytes) };
        }
    }
}
