//! The few libc calls of the `std` path: `sendmmsg`/`recvmmsg`, socket buffer sizes and
//! sockaddr conversion. All `unsafe` of the std path lives here.
//!
//! The `mmsghdr`/`iovec` arrays are built on the stack for each call (so the owning socket
//! type holds no raw pointers and stays `Send`, and nothing is allocated).

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Most datagrams one `sendmmsg`/`recvmmsg` call moves.
pub const MAX_BATCH: usize = 32;

/// Writes `addr` into `storage`, returning the length to pass to the kernel.
pub fn to_sockaddr(addr: &SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in;
            // we write one whole, initialised sockaddr_in at its start.
            unsafe {
                (storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, sockaddr_storage can hold a sockaddr_in6.
            unsafe {
                (storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Reads a socket address the kernel wrote (`None` for other families or short lengths).
pub fn from_sockaddr_bytes(name: &[u8]) -> Option<SocketAddr> {
    if name.len() < 2 {
        return None;
    }
    let family = libc::sa_family_t::from_ne_bytes([name[0], name[1]]);
    if i32::from(family) == libc::AF_INET && name.len() >= size_of::<libc::sockaddr_in>() {
        let port = u16::from_be_bytes([name[2], name[3]]);
        let ip = Ipv4Addr::new(name[4], name[5], name[6], name[7]);
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    } else if i32::from(family) == libc::AF_INET6 && name.len() >= size_of::<libc::sockaddr_in6>() {
        let port = u16::from_be_bytes([name[2], name[3]]);
        let flow = u32::from_ne_bytes([name[4], name[5], name[6], name[7]]);
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&name[8..24]);
        let scope = u32::from_ne_bytes([name[24], name[25], name[26], name[27]]);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

/// Sets SO_RCVBUF / SO_SNDBUF (best effort: the kernel clamps to its limits).
pub fn set_socket_buffers(fd: RawFd, bytes: usize) {
    let v: libc::c_int = bytes.min(i32::MAX as usize) as libc::c_int;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: `fd` is an open socket owned by the caller; `v` outlives the call and its
        // size is passed correctly.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(opt, err = %io::Error::last_os_error(), "setsockopt buffer size failed");
        }
    }
}

/// Sends up to `MAX_BATCH` datagrams with one `sendmmsg`; `get(i)` yields datagram `i`.
/// Returns how many the kernel took (a prefix), or the error of the first one.
pub fn send_mmsg<'a>(
    fd: RawFd,
    n: usize,
    get: impl Fn(usize) -> (&'a [u8], SocketAddr),
) -> io::Result<usize> {
    let n = n.min(MAX_BATCH);
    // Only the first `n` entries are written (a whole zeroed array was 6.6 KB of `memset`
    // per call, 2.4 % of the cluster thread's time over UDP; perf, issue #7); the kernel reads
    // no further.
    let mut names = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX_BATCH];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_BATCH];
    let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_BATCH];
    for i in 0..n {
        let (data, dest) = get(i);
        // SAFETY: all-zero is a valid sockaddr_storage (plain integers).
        let name = names[i].write(unsafe { std::mem::zeroed() });
        let namelen = to_sockaddr(&dest, name);
        let iov = iovs[i].write(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths and flags).
        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
        m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
        m.msg_hdr.msg_namelen = namelen;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        msgs[i].write(m);
    }
    // SAFETY: `msgs[..n]` point at `names`/`iovs` on this stack frame and at the caller's
    // datagram slices (lifetime 'a, alive for the call); the kernel only reads them.
    let rc = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// One received datagram's metadata.
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// Source address (None if the kernel gave an unexpected family).
    pub addr: Option<SocketAddr>,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

/// Receives up to `metas.len()` datagrams with one non-blocking `recvmmsg` into consecutive
/// `stride`-sized chunks of `bufs`. Returns how many arrived (0 when none was waiting).
pub fn recv_mmsg(
    fd: RawFd,
    bufs: &mut [u8],
    stride: usize,
    metas: &mut [RecvMeta],
) -> io::Result<usize> {
    let n = metas.len().min(MAX_BATCH).min(bufs.len() / stride);
    // Only the first `n` headers are written, and the names not at all: the kernel writes
    // each received datagram's source (its `msg_namelen` bytes), and only those are read.
    let mut names = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX_BATCH];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_BATCH];
    let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_BATCH];
    for (i, chunk) in bufs.chunks_exact_mut(stride).take(n).enumerate() {
        let iov = iovs[i].write(libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: stride,
        });
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths and flags).
        let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
        m.msg_hdr.msg_name = names[i].as_mut_ptr().cast();
        m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
        msgs[i].write(m);
    }
    // SAFETY: every mmsghdr points at a distinct `stride`-byte chunk of `bufs` (exclusively
    // borrowed for the call) and at a distinct sockaddr_storage on this frame; a null timeout
    // with MSG_DONTWAIT never blocks.
    let rc = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr().cast::<libc::mmsghdr>(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        };
    }
    let got = rc as usize;
    for i in 0..got {
        // SAFETY: headers 0..n were written above, and the kernel filled 0..got in place.
        let m = unsafe { msgs[i].assume_init_ref() };
        let namelen = (m.msg_hdr.msg_namelen as usize).min(size_of::<libc::sockaddr_storage>());
        // SAFETY: the kernel wrote the first `msg_namelen` bytes of this datagram's name.
        let name = unsafe { std::slice::from_raw_parts(names[i].as_ptr().cast::<u8>(), namelen) };
        metas[i] = RecvMeta {
            len: m.msg_len as usize,
            addr: from_sockaddr_bytes(name),
            truncated: m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
        };
    }
    Ok(got)
}

/// An epoll set over a member's two sockets: one `epoll_wait` without blocking tells which
/// have datagrams, so an idle duty cycle makes one system call instead of a `recvmmsg` per
/// socket (Aeron's receiver polls its channels the same way, through a selector). A
/// [`ReadinessGroup`](super::ReadinessGroup) holds one over the sockets of several transports.
#[derive(Debug)]
pub struct Readiness {
    epoll: std::os::fd::OwnedFd,
}

impl Readiness {
    /// An epoll set watching `fds` for input, each reported by its index in `fds`.
    pub fn new(fds: &[RawFd]) -> io::Result<Self> {
        let set = Self::empty()?;
        for (i, &sock) in fds.iter().enumerate() {
            set.add(sock, i as u64)?;
        }
        Ok(set)
    }

    /// An epoll set watching nothing yet.
    pub fn empty() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: epoll_create1 takes a flag and returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor epoll_create1 just returned, owned by nothing else.
        let epoll = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Ok(Self { epoll })
    }

    /// Watches `sock` for input, reported with `token`. A socket leaves the set by itself
    /// when it is closed.
    pub fn add(&self, sock: RawFd, token: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a live, initialised epoll_event; the kernel copies it. `sock` is
        // the caller's open socket; the kernel drops it from the set when it is closed.
        let rc =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, sock, &mut ev) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Which of the watched descriptors have input now, as a bit per index (without waiting).
    pub fn ready(&self) -> io::Result<u32> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let n = self.ready_tokens(&mut events)?;
        Ok(events[..n]
            .iter()
            .fold(0, |bits, e| bits | 1u32 << (e.u64 & 31)))
    }

    /// Fills `events` with the watched descriptors that have input now (without waiting);
    /// returns how many. Level-triggered: what is left unread is reported again.
    pub fn ready_tokens(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let max = events.len().min(i32::MAX as usize) as libc::c_int;
        // SAFETY: `events` is a live array of at least `max` epoll_events the kernel fills at
        // most `max` of; a zero timeout never blocks.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), max, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}
