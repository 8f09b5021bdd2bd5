//! [`NodeNetwork`]: the node's transport, UDP or in-process, behind one concrete type (the
//! transport's `Network` trait has a generic `poll`, so it is not object safe).
//!
//! Client endpoints become the core's opaque [`ClientAddr`]: an IPv4 address and port packed
//! as `1 << 48 | ip << 16 | port` (IPv6 clients are not supported yet).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::consensus::ClientAddr;
use crate::transport::{
    Event, InProcTransport, Network, Result as NetResult, Transport, TransportCounters,
};

/// The network a node talks through.
#[derive(Debug)]
pub enum NodeNetwork {
    /// UDP sockets (`std` or io_uring path).
    Udp(Box<Transport>),
    /// An in-process hub endpoint (tests, `cluster` threading mode, embedded demo).
    InProc(Box<InProcTransport>),
}

impl NodeNetwork {
    /// Queues a message to a member.
    ///
    /// # Errors
    /// The transport's error (`WouldBlock` when its queue is full).
    pub fn send_to_member(&mut self, member_id: u32, msg: &[u8]) -> NetResult<()> {
        match self {
            Self::Udp(t) => t.send_to_member(member_id, msg),
            Self::InProc(t) => t.send_to_member(member_id, msg),
        }
    }

    /// Queues a message to a client.
    ///
    /// # Errors
    /// The transport's error.
    pub fn send_to_client(&mut self, addr: SocketAddr, msg: &[u8]) -> NetResult<()> {
        match self {
            Self::Udp(t) => t.send_to_client(addr, msg),
            Self::InProc(t) => t.send_to_client(addr, msg),
        }
    }

    /// Hands queued messages to the network.
    ///
    /// # Errors
    /// The transport's error.
    pub fn flush(&mut self) -> NetResult<usize> {
        match self {
            Self::Udp(t) => t.flush(),
            Self::InProc(t) => t.flush(),
        }
    }

    /// Holds what is queued from now on to the members `member_ids` until
    /// [`NodeNetwork::release_held_sends`] ([`Transport::hold_sends_to`]). UDP only: an
    /// in-process send is a queue push, nothing worth moving.
    pub fn hold_sends_to(&mut self, member_ids: impl IntoIterator<Item = u32>) {
        if let Self::Udp(t) = self {
            t.hold_sends_to(member_ids);
        }
    }

    /// Ends the hold and sends what it held.
    ///
    /// # Errors
    /// The transport's error.
    pub fn release_held_sends(&mut self) -> NetResult<usize> {
        match self {
            Self::Udp(t) => t.release_held_sends(),
            Self::InProc(_) => Ok(0),
        }
    }

    /// Delivers what has arrived.
    ///
    /// # Errors
    /// The transport's error.
    pub fn poll<F: FnMut(Event<'_>)>(&mut self, now_ns: u64, handler: F) -> NetResult<usize> {
        match self {
            Self::Udp(t) => t.poll(now_ns, handler),
            Self::InProc(t) => t.poll(now_ns, handler),
        }
    }

    /// Traffic and drop counters.
    pub fn counters(&self) -> &TransportCounters {
        match self {
            Self::Udp(t) => t.counters(),
            Self::InProc(t) => t.counters(),
        }
    }
}

const ADDR_TAG: u64 = 1 << 48;

/// The core's address for a client endpoint (`None` for IPv6).
pub(crate) fn client_addr(addr: SocketAddr) -> Option<ClientAddr> {
    match addr.ip() {
        IpAddr::V4(ip) => Some(ClientAddr(
            ADDR_TAG | (u64::from(u32::from(ip)) << 16) | u64::from(addr.port()),
        )),
        IpAddr::V6(_) => None,
    }
}

/// The endpoint of a core client address.
pub(crate) fn socket_addr(addr: ClientAddr) -> Option<SocketAddr> {
    if addr.0 & !((1 << 49) - 1) != 0 || addr.0 & ADDR_TAG == 0 {
        return None;
    }
    let ip = Ipv4Addr::from(((addr.0 >> 16) & 0xFFFF_FFFF) as u32);
    Some(SocketAddr::new(IpAddr::V4(ip), (addr.0 & 0xFFFF) as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_round_trip() {
        let a: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(socket_addr(client_addr(a).unwrap()), Some(a));
        let b: SocketAddr = "127.255.0.1:7".parse().unwrap();
        assert_eq!(socket_addr(client_addr(b).unwrap()), Some(b));
        assert!(client_addr("[::1]:5".parse().unwrap()).is_none());
        assert!(socket_addr(ClientAddr(3)).is_none());
    }
}
