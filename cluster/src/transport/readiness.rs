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
//! Nothing is lost: the set is level-triggered, so a socket whose datagrams arrived after
//! the last `epoll_wait`, or were left unread, is reported by the next one, which the first
//! transport to poll twice makes. Input can be seen one turn later than with a set of one's
//! own, never not at all. Polling from several threads at once (the benchmark drives the
//! members from a helper while its clients connect) keeps that guarantee: a slot's bits are
//! at worst those of a slightly older `epoll_wait`.

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

    /// A new slot watching `peer` (bit 0) and `client` (bit 1).
    pub(crate) fn join(&self, peer: Option<RawFd>, client: RawFd) -> std::io::Result<GroupSlot> {
        let slot = self.inner.slots.fetch_add(1, Ordering::AcqRel);
        if slot >= GROUP_SLOTS {
            return Err(std::io::Error::other(format!(
                "readiness group full ({GROUP_SLOTS} transports)"
            )));
        }
        let token = |bit: u32| (slot as u64) << 2 | u64::from(bit);
        if let Some(p) = peer {
            self.inner.set.add(p, token(PEER_BIT))?;
        }
        self.inner.set.add(client, token(CLIENT_BIT))?;
        Ok(GroupSlot {
            inner: Arc::clone(&self.inner),
            slot,
            // Its first poll makes a new epoll_wait: the sockets are new to the set.
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
}

impl GroupSlot {
    /// This slot's bits ([`PEER_BIT`], [`CLIENT_BIT`]): from the group's last `epoll_wait` if
    /// this slot has not used it yet, else from a new one.
    pub(crate) fn ready(&mut self) -> std::io::Result<u32> {
        let inner = &*self.inner;
        if inner.epoch.load(Ordering::Acquire) == self.seen_epoch {
            inner.wait()?;
        }
        self.seen_epoch = inner.epoch.load(Ordering::Acquire);
        Ok(inner.bits[self.slot].load(Ordering::Acquire))
    }
}

impl Inner {
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
        let used = self.slots.load(Ordering::Acquire).min(GROUP_SLOTS);
        for (bits, f) in self.bits[..used].iter().zip(found) {
            bits.store(f, Ordering::Release);
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}
