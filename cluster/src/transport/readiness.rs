//! [`ReadinessGroup`]: one epoll set over the sockets of every UDP transport that one thread
//! polls, so a duty cycle of all of them makes one `epoll_wait` instead of one per transport.
//!
//! A member on the `std` path asks its own epoll set which of its two sockets hold
//! datagrams before reading them. When one thread drives several transports (`cluster`
//! threading: every member of an in-process cluster, and the client beside them), an idle
//! turn of that thread made one `epoll_wait` per member and a `recvmmsg` per client, and a
//! message waits on average half a turn at every hop (issue #7; figures in
//! `docs/PERFORMANCE.md`). Aeron's shared media driver does the same with one receiver
//! polling every channel through one selector.
//!
//! How it is used: each transport that joins gets a slot (a bit pair: bit 0 its peer socket,
//! bit 1 its client socket). When a transport polls, it reads its slot's bits from the last
//! `epoll_wait` of the group; if it has already used that one, it makes a new one for the
//! whole group first. So when the transports are polled in turn, the first of each turn
//! waits for the group and the others read what it found.
//!
//! A datagram one transport of the group sends to a socket of another is a *hint*: on
//! loopback it is in the receiving socket's queue when the sending system call returns, so
//! the receiver's next poll reads that socket at once, without a new `epoll_wait` (a hop
//! within one turn instead of one a turn, and no wait for it). A hint is only a guess: a
//! datagram the kernel has not queued yet is read by a later poll as any other. So that the
//! other sockets of the group are still watched while hints keep coming, a group makes a new
//! `epoll_wait` at the latest after 2 × (its transports) polls in all that skipped one (one
//! transport may take them all).
//!
//! Nothing is lost: the set is level-triggered, so a socket whose datagrams arrived after
//! the last `epoll_wait`, or were left unread, is reported by the next one, which the first
//! transport to poll again without a hint makes (or the first past the bound on hinted
//! polls). Input can be seen one turn later than with a set of one's
//! own, never not at all. Polling from several threads at once (the benchmark drives the
//! members from a helper while its clients connect) keeps that guarantee: a slot's bits are
//! at worst those of a slightly older `epoll_wait`.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::sys::Readiness;

/// Slots one group holds (a transport each).
pub const GROUP_SLOTS: usize = 32;

/// Bit of a slot for its transport's peer socket (members only).
pub(crate) const PEER_BIT: u32 = 0b01;
/// Bit of a slot for its transport's client socket (a member's client port; a client's one
/// socket).
pub(crate) const CLIENT_BIT: u32 = 0b10;

#[derive(Debug)]
struct Inner {
    set: Readiness,
    /// Incremented by every `epoll_wait` of the group.
    epoch: AtomicU64,
    /// What the last `epoll_wait` found, per slot.
    bits: [AtomicU32; GROUP_SLOTS],
    /// Slots handed out.
    slots: AtomicUsize,
    /// Bits hinted per slot since its last poll: datagrams sent to its sockets by transports
    /// of the group.
    hints: [AtomicU32; GROUP_SLOTS],
    /// The sockets' local IPv4 addresses with their slot and bit ([`encode_socket`]); 0 where
    /// none (an IPv6 socket is never hinted).
    sockets: [AtomicU64; 2 * GROUP_SLOTS],
    /// Polls that skipped a wait for a hint since the last `epoll_wait`.
    skips: AtomicUsize,
    /// Polls that skipped a wait for a hint, in all.
    hinted: AtomicU64,
}

/// `ip:port` of an IPv4 socket with its slot and bit in one word: `ip << 32 | port << 16 |
/// slot << 8 | bit << 1 | 1`; `None` for IPv6.
fn encode_socket(addr: SocketAddr, slot: usize, bit: u32) -> Option<u64> {
    debug_assert!(slot < GROUP_SLOTS, "slot {slot}");
    debug_assert!(bit == PEER_BIT || bit == CLIENT_BIT, "bit {bit:#b}");
    match addr.ip() {
        IpAddr::V4(ip) => Some(
            u64::from(ip.to_bits()) << 32
                | u64::from(addr.port()) << 16
                | (slot as u64) << 8
                | u64::from(bit) << 1
                | 1,
        ),
        IpAddr::V6(_) => None,
    }
}

/// One epoll set shared by the UDP transports one thread polls (see the module docs).
/// Cloning gives another handle to the same group.
#[derive(Debug, Clone)]
pub struct ReadinessGroup {
    inner: Arc<Inner>,
}

impl ReadinessGroup {
    /// An empty group.
    ///
    /// # Errors
    /// The `epoll_create1` error.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                set: Readiness::empty()?,
                epoch: AtomicU64::new(1),
                bits: std::array::from_fn(|_| AtomicU32::new(0)),
                slots: AtomicUsize::new(0),
                hints: std::array::from_fn(|_| AtomicU32::new(0)),
                sockets: std::array::from_fn(|_| AtomicU64::new(0)),
                skips: AtomicUsize::new(0),
                hinted: AtomicU64::new(0),
            }),
        })
    }

    /// Transports that joined so far.
    pub fn members(&self) -> usize {
        self.inner.slots.load(Ordering::Acquire).min(GROUP_SLOTS)
    }

    /// Epoll waits the group made (one per turn of its transports when they are polled in
    /// turn).
    pub fn waits(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire) - 1
    }

    /// Polls that read a hinted socket without a new `epoll_wait` (see the module docs).
    pub fn hinted_polls(&self) -> u64 {
        self.inner.hinted.load(Ordering::Relaxed)
    }

    /// A new slot watching `peer` (bit 0) and `client` (bit 1), each given as its descriptor
    /// and local address (the address is what the group's hints match).
    pub(crate) fn join(
        &self,
        peer: Option<(RawFd, SocketAddr)>,
        client: (RawFd, SocketAddr),
    ) -> std::io::Result<GroupSlot> {
        let slot = self.inner.slots.fetch_add(1, Ordering::AcqRel);
        if slot >= GROUP_SLOTS {
            return Err(std::io::Error::other(format!(
                "readiness group full ({GROUP_SLOTS} transports)"
            )));
        }
        let token = |bit: u32| (slot as u64) << 2 | u64::from(bit);
        let inner = &*self.inner;
        for (i, (socket, bit)) in [(peer, PEER_BIT), (Some(client), CLIENT_BIT)]
            .into_iter()
            .enumerate()
        {
            let Some((fd, addr)) = socket else { continue };
            inner.set.add(fd, token(bit))?;
            if let Some(word) = encode_socket(addr, slot, bit) {
                inner.sockets[2 * slot + i].store(word, Ordering::Release);
            }
        }
        Ok(GroupSlot {
            inner: Arc::clone(&self.inner),
            slot,
            last_hint: None,
            // Its first poll reads the bits of a new epoll_wait (the sockets are new to the
            // set), unless a hint came first.
            seen_epoch: self.inner.epoch.load(Ordering::Acquire),
        })
    }
}

/// A transport's place in a [`ReadinessGroup`].
#[derive(Debug)]
pub(crate) struct GroupSlot {
    inner: Arc<Inner>,
    slot: usize,
    /// The group's epoch whose bits this slot used last.
    seen_epoch: u64,
    /// The destination hinted last (a transport mostly sends to the same few sockets).
    last_hint: Option<LastHint>,
}

/// A destination a [`GroupSlot`] hinted, what it matched, and how many transports the group
/// had then: looked up again once another has joined.
#[derive(Debug, Clone, Copy)]
struct LastHint {
    dest: SocketAddr,
    /// The slot and bit of the socket `dest` names, if it is one of the group's.
    target: Option<(usize, u32)>,
    used: usize,
}

impl GroupSlot {
    /// This slot's bits ([`PEER_BIT`], [`CLIENT_BIT`]): from the group's last `epoll_wait` if
    /// this slot has not used it yet, else from a new one, with the bits hinted since its last
    /// poll added. If it has used the last wait and hints came, the hinted bits alone are
    /// returned without a new wait (at most 2 × transports such polls in all between two
    /// waits of the group).
    pub(crate) fn ready(&mut self) -> std::io::Result<u32> {
        let inner = &*self.inner;
        let hinted = inner.hints[self.slot].swap(0, Ordering::AcqRel);
        if inner.epoch.load(Ordering::Acquire) == self.seen_epoch {
            if hinted != 0 && inner.skips.fetch_add(1, Ordering::AcqRel) < 2 * inner.used() {
                inner.hinted.fetch_add(1, Ordering::Relaxed);
                return Ok(hinted);
            }
            inner.wait()?;
        }
        self.seen_epoch = inner.epoch.load(Ordering::Acquire);
        Ok(inner.bits[self.slot].load(Ordering::Acquire) | hinted)
    }

    /// Notes a datagram this transport queued for `dest`: if `dest` is a socket of the group,
    /// its transport's next poll reads it (call after queuing, before the send goes out: the
    /// receiver polls after this transport's flush when one thread polls them in turn).
    pub(crate) fn hint(&mut self, dest: SocketAddr) {
        let used = self.inner.used();
        let target = match self.last_hint {
            Some(last) if last.dest == dest && last.used == used => last.target,
            _ => {
                let target = self.inner.find(dest);
                self.last_hint = Some(LastHint { dest, target, used });
                target
            }
        };
        if let Some((slot, bit)) = target {
            self.inner.hints[slot].fetch_or(bit, Ordering::AcqRel);
        }
    }
}

impl Drop for GroupSlot {
    /// A transport that leaves is no longer hinted (its slot is not handed out again).
    fn drop(&mut self) {
        for word in &self.inner.sockets[2 * self.slot..2 * self.slot + 2] {
            word.store(0, Ordering::Release);
        }
    }
}

impl Inner {
    fn used(&self) -> usize {
        self.slots.load(Ordering::Acquire).min(GROUP_SLOTS)
    }

    /// The slot and bit of the group's socket at `dest` (a socket bound to 0.0.0.0 matches
    /// any address with its port).
    fn find(&self, dest: SocketAddr) -> Option<(usize, u32)> {
        let IpAddr::V4(ip) = dest.ip() else {
            return None;
        };
        let (ip, port) = (u64::from(ip.to_bits()), u64::from(dest.port()));
        self.sockets[..2 * self.used()].iter().find_map(|w| {
            let w = w.load(Ordering::Acquire);
            let matches =
                w & 1 == 1 && (w >> 16) & 0xFFFF == port && (w >> 32 == ip || w >> 32 == 0);
            matches.then_some((((w >> 8) & 0xFF) as usize, ((w >> 1) & 0b11) as u32))
        })
    }

    /// One `epoll_wait` for the whole group: every slot's bits, then a new epoch.
    fn wait(&self) -> std::io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2 * GROUP_SLOTS];
        let n = self.set.ready_tokens(&mut events)?;
        let mut found = [0_u32; GROUP_SLOTS];
        for e in &events[..n] {
            let token = e.u64;
            let slot = (token >> 2) as usize;
            debug_assert!(slot < GROUP_SLOTS, "token {token:#x} names no slot");
            if let Some(bits) = found.get_mut(slot) {
                *bits |= (token & 0b11) as u32;
            }
        }
        for (bits, f) in self.bits[..self.used()].iter().zip(found) {
            bits.store(f, Ordering::Release);
        }
        self.skips.store(0, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}
