//! Tandem transport: moves opaque, already-encoded messages between cluster members and
//! between clients and members.
//!
//! * [`MemberEndpoints`]: the members list (`0=127.0.0.1:9010,1=...`). The listed port is
//!   the member's **client** port; members talk to each other on **PORT+1**, a separate
//!   socket, so a client flood never delays heartbeats.
//! * [`frame`]: the versioned datagram header with a CRC-32C (byte diagram there).
//! * [`reassembly`]: fragmentation of messages larger than the MTU and bounded,
//!   deterministic reassembly (time is passed in, never read).
//! * [`io`]: one datagram API ([`DatagramIo`]) over two paths, `std` (`sendmmsg`/`recvmmsg`)
//!   and `uring` (io_uring, multishot receive into a provided-buffer ring), with automatic
//!   fallback to `std` when io_uring cannot be set up.
//! * [`Transport`]: the UDP facade the node and the client library use;
//!   [`InProcTransport`]: the same surface without sockets. Both implement [`Network`].
//!
//! Reliability: none beyond checksums. A lost fragment makes the whole message be dropped
//! (and counted) after the reassembly timeout; Raft above resends what is missing.
//! Hot path: no allocation per message once running (preallocated send slots, receive
//! buffers and reassembly buffers); a full send queue answers [`TransportError::WouldBlock`].

pub mod addr;
pub mod counters;
pub mod error;
pub mod frame;
pub mod inproc;
pub mod io;
pub mod readiness;
pub mod reassembly;
mod sys;
#[cfg(test)]
mod tests;
pub mod uring;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub use addr::{MAX_MEMBERS, MemberEndpoint, MemberEndpoints};
pub use counters::TransportCounters;
pub use error::{Result, TransportError};
pub use inproc::{InProcHub, InProcTransport};
pub use io::{DatagramIo, IoMode, UdpConfig, UdpIo};
pub use readiness::ReadinessGroup;

use frame::{
    CLIENT_SOURCE_ID, DropReason, FLAG_FRAGMENT, HEADER_LEN, Header, STREAM_CLIENT, STREAM_PEER,
};
use readiness::{CLIENT_BIT, GroupSlot, PEER_BIT};
use reassembly::Reassembler;

/// A received message. `msg` borrows the receive (or reassembly) buffer: copy it out if it
/// must outlive the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// From a cluster member (on a member: over the peer socket; on a client: a member's
    /// client port).
    FromMember {
        /// Sending member.
        member_id: u32,
        /// The message.
        msg: &'a [u8],
    },
    /// From a client (members only).
    FromClient {
        /// The client's address (reply with [`Network::send_to_client`]).
        addr: SocketAddr,
        /// The message.
        msg: &'a [u8],
    },
}

/// What the node (and the client library) needs from a network; implemented by the UDP
/// [`Transport`] and the socket-less [`InProcTransport`].
pub trait Network {
    /// Queues a message to a member; [`TransportError::WouldBlock`] when the send queue is
    /// full (nothing of the message was queued).
    fn send_to_member(&mut self, member_id: u32, msg: &[u8]) -> Result<()>;
    /// Queues a message to a client (members only).
    fn send_to_client(&mut self, addr: SocketAddr, msg: &[u8]) -> Result<()>;
    /// Hands queued messages to the network; returns datagrams/messages submitted.
    fn flush(&mut self) -> Result<usize>;
    /// Delivers what has arrived, without blocking; returns units of work done (datagrams
    /// received), for the duty cycle's idle strategy.
    fn poll<F: FnMut(Event<'_>)>(&mut self, now_ns: u64, handler: F) -> Result<usize>;
    /// Traffic and drop counters.
    fn counters(&self) -> &TransportCounters;
}

/// Configuration of the UDP transport.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Cluster id carried by every datagram; others' traffic is dropped.
    pub cluster_id: u64,
    /// Socket settings (MTU, queue sizes, io_uring test hooks).
    pub udp: UdpConfig,
    /// Largest message accepted for sending or reassembly.
    pub max_message_size: usize,
    /// Incomplete messages are dropped this long after their first fragment arrived.
    pub reassembly_timeout_ns: u64,
    /// Reassembly buffers per socket.
    pub max_partial_messages: usize,
    /// Reassembly buffers one source may hold.
    pub max_partials_per_source: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            cluster_id: 0,
            udp: UdpConfig::default(),
            max_message_size: 1 << 20,
            reassembly_timeout_ns: 500_000_000,
            max_partial_messages: 16,
            max_partials_per_source: 4,
        }
    }
}

/// The most receive-buffer memory one socket may ask for (`recv_buffers × recv_max_datagram`).
const MAX_RECV_BUFFER_BYTES: usize = 64 << 20;

impl TransportConfig {
    fn validate(&self) -> Result<()> {
        let mtu = self.udp.mtu;
        if !(HEADER_LEN + 64..=frame::MAX_DATAGRAM).contains(&mtu) {
            return Err(TransportError::InvalidConfig("mtu must be in 104..=65507"));
        }
        if !(HEADER_LEN + 64..=frame::MAX_DATAGRAM).contains(&self.udp.recv_max_datagram) {
            return Err(TransportError::InvalidConfig(
                "recv_max_datagram must be in 104..=65507",
            ));
        }
        // The io_uring path's count, a power of two, is the larger of the two paths'.
        if uring::recv_buffer_count(&self.udp) * (self.udp.recv_max_datagram + 1)
            > MAX_RECV_BUFFER_BYTES
        {
            return Err(TransportError::InvalidConfig(
                "recv_buffers x recv_max_datagram must be at most 64 MiB per socket",
            ));
        }
        let max_frags = self.max_message_size.div_ceil(mtu - HEADER_LEN);
        if max_frags > usize::from(u16::MAX) || self.max_message_size > u32::MAX as usize {
            return Err(TransportError::InvalidConfig(
                "max_message_size needs more than 65535 fragments",
            ));
        }
        if self.max_message_size > 0 && max_frags > self.udp.send_slots {
            return Err(TransportError::InvalidConfig(
                "send_slots must hold at least one maximum-size message",
            ));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Channel {
    io: UdpIo,
    reasm: Reassembler,
}

impl Channel {
    fn open(
        addr: SocketAddr,
        mode: IoMode,
        cfg: &TransportConfig,
    ) -> Result<(Self, Option<String>)> {
        let (io, fallback) = UdpIo::bind(addr, mode, &cfg.udp)?;
        let reasm = Reassembler::new(
            cfg.max_partial_messages,
            cfg.max_partials_per_source,
            cfg.max_message_size,
            cfg.reassembly_timeout_ns,
        );
        Ok((Self { io, reasm }, fallback))
    }
}

/// Sends one message as one or more datagrams into `io`'s send slots (all or nothing).
#[allow(clippy::too_many_arguments)]
fn queue_message(
    io: &mut UdpIo,
    cfg: &TransportConfig,
    counters: &mut TransportCounters,
    dest: SocketAddr,
    source_id: u32,
    stream_id: u16,
    message_id: u32,
    msg: &[u8],
) -> Result<()> {
    if msg.len() > cfg.max_message_size {
        return Err(TransportError::MessageTooLarge {
            len: msg.len(),
            max: cfg.max_message_size,
        });
    }
    let (chunk, count) = reassembly::fragment_plan(msg.len(), cfg.udp.mtu - HEADER_LEN);
    if io.free_send_slots() < count {
        counters.send_would_block += 1;
        return Err(TransportError::WouldBlock);
    }
    for i in 0..count {
        let start = i * chunk;
        let part = &msg[start..(start + chunk).min(msg.len())];
        let h = Header {
            flags: if count > 1 { FLAG_FRAGMENT } else { 0 },
            cluster_id: cfg.cluster_id,
            source_id,
            stream_id,
            message_id,
            message_len: msg.len() as u32,
            frag_offset: start as u32,
            frag_index: i as u16,
            frag_count: count as u16,
        };
        io.queue_datagram(dest, |buf| frame::encode(&h, part, buf))?;
    }
    if count > 1 {
        counters.fragments_out += count as u64;
    }
    counters.messages_out += 1;
    Ok(())
}

/// How a transport learns which of its sockets hold datagrams (std path).
#[derive(Debug)]
enum Ready {
    /// Reads every socket each poll (a client of its own; the io_uring path, whose receives
    /// complete into a ring).
    ReadAll,
    /// A member's own epoll set over its two sockets.
    Own(sys::Readiness),
    /// Its slot in a [`ReadinessGroup`] shared with the transports of the same thread.
    Group(GroupSlot),
}

/// Which side of the cluster this transport is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Member(u32),
    Client,
}

/// The UDP transport: a member's client and peer sockets, or a client's one socket.
#[derive(Debug)]
pub struct Transport {
    cfg: TransportConfig,
    members: MemberEndpoints,
    role: Role,
    /// Member: socket on its client port. Client: its ephemeral socket.
    client: Channel,
    /// Member only: socket on PORT+1 for member-to-member traffic.
    peer: Option<Channel>,
    /// Std path: which of its sockets have input (bit 0 peer, bit 1 client), so an idle
    /// poll makes one `epoll_wait` (or none, in a group) instead of a `recvmmsg` per socket.
    ready: Ready,
    counters: TransportCounters,
    requested: IoMode,
    fallback: Option<String>,
    next_message_id: u32,
}

impl Transport {
    /// Binds member `my_id`'s client socket (its listed port) and peer socket (PORT+1).
    pub fn bind_member(
        config: TransportConfig,
        members: MemberEndpoints,
        my_id: u32,
        io_mode: IoMode,
    ) -> Result<Self> {
        config.validate()?;
        let me = *members
            .get(my_id)
            .ok_or(TransportError::UnknownMember(my_id))?;
        let (peer, fb1) = Channel::open(me.peer, io_mode, &config)?;
        let (client, fb2) = Channel::open(me.client, io_mode, &config)?;
        let ready = match (peer.io.std_fd(), client.io.std_fd()) {
            (Some(p), Some(c)) => match sys::Readiness::new(&[p, c]) {
                Ok(r) => Ready::Own(r),
                Err(e) => {
                    // Polling both sockets every cycle works too, at a system call more.
                    tracing::debug!(error = %e, "no epoll set; polling both sockets");
                    Ready::ReadAll
                }
            },
            _ => Ready::ReadAll,
        };
        Ok(Self {
            cfg: config,
            members,
            role: Role::Member(my_id),
            client,
            peer: Some(peer),
            ready,
            counters: TransportCounters::default(),
            requested: io_mode,
            fallback: fb1.or(fb2),
            next_message_id: 0,
        })
    }

    /// Binds a client's socket on an ephemeral port (of the members' address family); it
    /// talks to the members' client ports.
    pub fn bind_client(
        config: TransportConfig,
        members: MemberEndpoints,
        io_mode: IoMode,
    ) -> Result<Self> {
        config.validate()?;
        let v6 = members.iter().next().is_some_and(|m| m.client.is_ipv6());
        let any = if v6 {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
        } else {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
        };
        let (client, fallback) = Channel::open(any, io_mode, &config)?;
        Ok(Self {
            cfg: config,
            members,
            role: Role::Client,
            client,
            peer: None,
            ready: Ready::ReadAll,
            counters: TransportCounters::default(),
            requested: io_mode,
            fallback,
            next_message_id: 0,
        })
    }

    /// Polls through `group` from now on: this transport's sockets join the group's epoll
    /// set, and a poll reads only the sockets the group's last `epoll_wait` found input on
    /// (see [`readiness`]). For transports polled by one thread. On the io_uring path
    /// (receives complete into a ring, no socket to watch) it does nothing and returns
    /// `false`.
    ///
    /// # Errors
    /// [`TransportError::Io`] if the group is full or a socket cannot join its set (the
    /// transport then goes on polling as before).
    pub fn join_readiness_group(&mut self, group: &ReadinessGroup) -> Result<bool> {
        let Some(client) = self.client.io.std_fd() else {
            return Ok(false);
        };
        let client = (client, self.client.io.local_addr());
        let peer = match &self.peer {
            Some(p) => match p.io.std_fd() {
                Some(fd) => Some((fd, p.io.local_addr())),
                None => return Ok(false),
            },
            None => None,
        };
        let slot = group
            .join(peer, client)
            .map_err(|e| TransportError::io("joining a readiness group", e))?;
        self.ready = Ready::Group(slot);
        Ok(true)
    }

    /// The IO path actually in use (`Std` after a fallback from `Uring`).
    pub fn io_mode_in_use(&self) -> IoMode {
        self.client.io.io_mode()
    }

    /// The IO path that was asked for.
    pub fn io_mode_requested(&self) -> IoMode {
        self.requested
    }

    /// Why io_uring was not used, when a fallback happened.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// Local address of the client-facing socket (a client's ephemeral address).
    pub fn local_client_addr(&self) -> SocketAddr {
        self.client.io.local_addr()
    }

    /// Local address of the peer socket (members only).
    pub fn local_peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().map(|p| p.io.local_addr())
    }

    /// This member's id (`None` for a client).
    pub fn member_id(&self) -> Option<u32> {
        match self.role {
            Role::Member(id) => Some(id),
            Role::Client => None,
        }
    }

    /// The members list.
    pub fn members(&self) -> &MemberEndpoints {
        &self.members
    }

    /// Member only: holds the messages queued from now on to the members `member_ids` (their
    /// peer socket) until [`Transport::release_held_sends`]; [`Network::flush`] sends the
    /// others meanwhile. A thread that runs the members of a cluster in turn
    /// ([`ClusterAgent`](crate::node::ClusterAgent)) has the leader hold what goes to the
    /// followers outside its quorum, so the kernel's work on those datagrams falls after the
    /// answer instead of before it. Unknown ids are ignored; on a client this does nothing.
    pub fn hold_sends_to(&mut self, member_ids: impl IntoIterator<Item = u32>) {
        let Some(peer) = &mut self.peer else { return };
        let members = &self.members;
        peer.io.hold_sends(
            member_ids
                .into_iter()
                .filter_map(|id| members.get(id).map(|m| m.peer)),
        );
    }

    /// Ends [`Transport::hold_sends_to`]'s hold and sends what it held. Returns the datagrams
    /// submitted.
    ///
    /// # Errors
    /// As [`Network::flush`].
    pub fn release_held_sends(&mut self) -> Result<usize> {
        let Some(peer) = &mut self.peer else {
            return Ok(0);
        };
        if peer.io.release_held_sends() == 0 {
            return Ok(0);
        }
        peer.io.send_batch(&mut self.counters)
    }

    /// Incomplete messages held for reassembly (both sockets).
    pub fn reassembly_in_flight(&self) -> usize {
        self.client.reasm.in_flight() + self.peer.as_ref().map_or(0, |p| p.reasm.in_flight())
    }

    fn next_id(&mut self) -> u32 {
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.next_message_id
    }

    /// Receives what `chan`'s socket holds (when `readable`) and expires stale partial
    /// messages.
    #[allow(clippy::too_many_arguments)]
    fn drain(
        chan: &mut Channel,
        readable: bool,
        cfg: &TransportConfig,
        members: &MemberEndpoints,
        role: Role,
        on_peer_socket: bool,
        now_ns: u64,
        counters: &mut TransportCounters,
        handler: &mut impl FnMut(Event<'_>),
    ) -> Result<usize> {
        let Channel { io, reasm } = chan;
        if !readable {
            reasm.expire(now_ns, counters);
            return Ok(0);
        }
        let n = io.recv_batch(counters, |counters, addr, datagram| {
            let f = match frame::decode(datagram, cfg.cluster_id) {
                Ok(f) => f,
                Err(r) => return r.count(counters),
            };
            let h = f.header;
            let expect_stream = if on_peer_socket {
                STREAM_PEER
            } else {
                STREAM_CLIENT
            };
            if h.stream_id != expect_stream {
                return DropReason::BadHeader.count(counters);
            }
            // Who may send what to which socket; a member id must match its address.
            let member_ok = |want_peer: bool| {
                members.get(h.source_id).is_some_and(|m| {
                    if want_peer {
                        m.peer == addr
                    } else {
                        m.client == addr
                    }
                })
            };
            let from_member = match (role, on_peer_socket) {
                (Role::Member(me), true) => h.source_id != me && member_ok(true),
                (Role::Member(_), false) => false,
                (Role::Client, _) => member_ok(false),
            };
            let client_ok = matches!(role, Role::Member(_))
                && !on_peer_socket
                && h.source_id == CLIENT_SOURCE_ID;
            if !from_member && !client_ok {
                return DropReason::UnknownMember.count(counters);
            }
            let msg = if h.is_fragment() {
                match reasm.on_fragment(addr, &h, f.payload, now_ns, counters) {
                    Some(m) => m,
                    None => return,
                }
            } else {
                f.payload
            };
            counters.messages_in += 1;
            if from_member {
                handler(Event::FromMember {
                    member_id: h.source_id,
                    msg,
                });
            } else {
                handler(Event::FromClient { addr, msg });
            }
        })?;
        reasm.expire(now_ns, counters);
        Ok(n)
    }
}

impl Network for Transport {
    fn send_to_member(&mut self, member_id: u32, msg: &[u8]) -> Result<()> {
        let m = *self
            .members
            .get(member_id)
            .ok_or(TransportError::UnknownMember(member_id))?;
        let id = self.next_id();
        let dest = match (self.role, &mut self.peer) {
            (Role::Member(me), Some(peer)) => {
                if me == member_id {
                    return Err(TransportError::UnknownDestination(format!(
                        "member {member_id} is this member"
                    )));
                }
                queue_message(
                    &mut peer.io,
                    &self.cfg,
                    &mut self.counters,
                    m.peer,
                    me,
                    STREAM_PEER,
                    id,
                    msg,
                )?;
                m.peer
            }
            _ => {
                queue_message(
                    &mut self.client.io,
                    &self.cfg,
                    &mut self.counters,
                    m.client,
                    CLIENT_SOURCE_ID,
                    STREAM_CLIENT,
                    id,
                    msg,
                )?;
                m.client
            }
        };
        if let Ready::Group(g) = &mut self.ready {
            g.hint(dest);
        }
        Ok(())
    }

    fn send_to_client(&mut self, addr: SocketAddr, msg: &[u8]) -> Result<()> {
        let Role::Member(me) = self.role else {
            return Err(TransportError::UnknownDestination(format!(
                "client {addr} (this is a client)"
            )));
        };
        let id = self.next_id();
        queue_message(
            &mut self.client.io,
            &self.cfg,
            &mut self.counters,
            addr,
            me,
            STREAM_CLIENT,
            id,
            msg,
        )?;
        if let Ready::Group(g) = &mut self.ready {
            g.hint(addr);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<usize> {
        let mut n = 0;
        if let Some(p) = &mut self.peer {
            n += p.io.send_batch(&mut self.counters)?;
        }
        n += self.client.io.send_batch(&mut self.counters)?;
        Ok(n)
    }

    fn poll<F: FnMut(Event<'_>)>(&mut self, now_ns: u64, mut handler: F) -> Result<usize> {
        let mut n = 0;
        // Level-triggered: what a poll leaves behind is reported again by the next one.
        // An error reads both, as without a set.
        let ready = match &mut self.ready {
            Ready::Own(r) => r.ready().unwrap_or(PEER_BIT | CLIENT_BIT),
            Ready::Group(g) => g.ready().unwrap_or(PEER_BIT | CLIENT_BIT),
            Ready::ReadAll => PEER_BIT | CLIENT_BIT,
        };
        // Peer traffic first: heartbeats and replication never wait behind clients.
        if let Some(p) = &mut self.peer {
            n += Self::drain(
                p,
                ready & PEER_BIT != 0,
                &self.cfg,
                &self.members,
                self.role,
                true,
                now_ns,
                &mut self.counters,
                &mut handler,
            )?;
        }
        n += Self::drain(
            &mut self.client,
            ready & CLIENT_BIT != 0,
            &self.cfg,
            &self.members,
            self.role,
            false,
            now_ns,
            &mut self.counters,
            &mut handler,
        )?;
        Ok(n)
    }

    fn counters(&self) -> &TransportCounters {
        &self.counters
    }
}
