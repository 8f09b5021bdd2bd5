//! In-process transport: the [`Network`] surface with no sockets.
//!
//! Design choice: every endpoint owns a bounded lock-free inbox (a crossbeam `ArrayQueue`)
//! and a pool of reusable message buffers; the [`InProcHub`] is only the registry that finds
//! an endpoint by its identity (a mutex taken when an endpoint binds and the first time a
//! sender addresses a destination, which it then remembers). So the per-message path takes
//! no lock and, once the pools are warm, allocates nothing — the same hub serves the
//! single-threaded `cluster` threading mode and members whose network agents run on threads of
//! their own (`dedicated`), without those threads contending on one lock. A sender takes a
//! buffer from the destination's pool; the destination returns it there after delivering.
//! Messages are never fragmented or checksummed (nothing can corrupt them), but size limits
//! and back-pressure match the UDP transport.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_queue::ArrayQueue;

use super::counters::TransportCounters;
use super::error::{Result, TransportError};
use super::{Event, Network};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Member(u32),
    Client(SocketAddr),
}

/// One endpoint's inbox and its spare buffers.
#[derive(Debug)]
struct Inbox {
    key: Source,
    queue: ArrayQueue<(Source, Vec<u8>)>,
    pool: ArrayQueue<Vec<u8>>,
}

#[derive(Debug)]
struct Hub {
    endpoints: Vec<Arc<Inbox>>,
    capacity: usize,
    max_message: usize,
    next_client: u16,
}

/// Shared registry of in-process endpoints. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct InProcHub {
    inner: Arc<Mutex<Hub>>,
}

impl InProcHub {
    /// A hub whose endpoints queue at most `queue_capacity` messages of at most
    /// `max_message_size` bytes each.
    pub fn new(queue_capacity: usize, max_message_size: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Hub {
                endpoints: Vec::new(),
                capacity: queue_capacity.max(1),
                max_message: max_message_size,
                next_client: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves a plain list behind: still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, key: Source) -> Result<InProcTransport> {
        let mut hub = self.lock();
        if hub.endpoints.iter().any(|e| e.key == key) {
            return Err(TransportError::InvalidConfig(
                "in-process endpoint registered twice",
            ));
        }
        let inbox = Arc::new(Inbox {
            key,
            queue: ArrayQueue::new(hub.capacity),
            pool: ArrayQueue::new(hub.capacity),
        });
        hub.endpoints.push(Arc::clone(&inbox));
        Ok(InProcTransport {
            hub: self.clone(),
            me: key,
            inbox,
            max_message: hub.max_message,
            known: Vec::new(),
            counters: TransportCounters::default(),
        })
    }

    /// Registers member `member_id`.
    pub fn bind_member(&self, member_id: u32) -> Result<InProcTransport> {
        self.register(Source::Member(member_id))
    }

    /// Registers a client; it gets a synthetic address `127.255.0.1:N` as its identity.
    pub fn bind_client(&self) -> Result<InProcTransport> {
        let addr = {
            let mut hub = self.lock();
            let port = hub.next_client;
            hub.next_client = hub.next_client.wrapping_add(1).max(1);
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 255, 0, 1)), port)
        };
        self.register(Source::Client(addr))
    }

    fn find(&self, key: Source) -> Option<Arc<Inbox>> {
        self.lock().endpoints.iter().find(|e| e.key == key).cloned()
    }
}

/// One endpoint (member or client) of an [`InProcHub`].
#[derive(Debug)]
pub struct InProcTransport {
    hub: InProcHub,
    me: Source,
    inbox: Arc<Inbox>,
    max_message: usize,
    /// Destinations already addressed (a handful: the other members, this member's clients).
    known: Vec<Arc<Inbox>>,
    counters: TransportCounters,
}

impl InProcTransport {
    /// This endpoint's client address (clients only).
    pub fn client_addr(&self) -> Option<SocketAddr> {
        match self.me {
            Source::Client(a) => Some(a),
            Source::Member(_) => None,
        }
    }

    fn destination(&mut self, to: Source) -> Option<usize> {
        if let Some(i) = self.known.iter().position(|e| e.key == to) {
            return Some(i);
        }
        let found = self.hub.find(to)?;
        self.known.push(found);
        Some(self.known.len() - 1)
    }

    fn send(&mut self, to: Source, msg: &[u8]) -> Result<()> {
        if msg.len() > self.max_message {
            return Err(TransportError::MessageTooLarge {
                len: msg.len(),
                max: self.max_message,
            });
        }
        let Some(dest) = self.destination(to) else {
            return Err(TransportError::UnknownDestination(format!("{to:?}")));
        };
        let dest = &self.known[dest];
        if dest.queue.is_full() {
            self.counters.send_would_block += 1;
            return Err(TransportError::WouldBlock);
        }
        let mut buf = dest.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(msg);
        if let Err((_, buf)) = dest.queue.push((self.me, buf)) {
            // Filled by another sender since the check.
            let _ = dest.pool.push(buf);
            self.counters.send_would_block += 1;
            return Err(TransportError::WouldBlock);
        }
        self.counters.messages_out += 1;
        self.counters.bytes_out += msg.len() as u64;
        Ok(())
    }
}

impl Network for InProcTransport {
    fn send_to_member(&mut self, member_id: u32, msg: &[u8]) -> Result<()> {
        self.send(Source::Member(member_id), msg)
    }

    fn send_to_client(&mut self, addr: SocketAddr, msg: &[u8]) -> Result<()> {
        self.send(Source::Client(addr), msg)
    }

    fn flush(&mut self) -> Result<usize> {
        Ok(0) // Sends are delivered to the destination queue immediately.
    }

    fn poll<F: FnMut(Event<'_>)>(&mut self, _now_ns: u64, mut handler: F) -> Result<usize> {
        // At most what was queued when the poll began, so a busy sender cannot keep it here.
        let n = self.inbox.queue.len();
        let mut delivered = 0;
        while delivered < n {
            let Some((from, msg)) = self.inbox.queue.pop() else {
                break;
            };
            delivered += 1;
            self.counters.messages_in += 1;
            self.counters.bytes_in += msg.len() as u64;
            match from {
                Source::Member(member_id) => handler(Event::FromMember {
                    member_id,
                    msg: &msg,
                }),
                Source::Client(addr) if matches!(self.me, Source::Member(_)) => {
                    handler(Event::FromClient { addr, msg: &msg })
                }
                Source::Client(_) => self.counters.dropped_unknown_member += 1,
            }
            // The pool holds as many buffers as the queue: a full pool just drops this one.
            let _ = self.inbox.pool.push(msg);
        }
        Ok(delivered)
    }

    fn counters(&self) -> &TransportCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_clients_exchange_messages() {
        let hub = InProcHub::new(4, 1024);
        let mut m0 = hub.bind_member(0).unwrap();
        let mut m1 = hub.bind_member(1).unwrap();
        let mut c = hub.bind_client().unwrap();
        assert!(hub.bind_member(1).is_err());
        m0.send_to_member(1, b"append").unwrap();
        c.send_to_member(1, b"order").unwrap();
        let mut seen = Vec::new();
        m1.poll(0, |e| match e {
            Event::FromMember { member_id, msg } => {
                seen.push(format!("m{member_id}:{}", String::from_utf8_lossy(msg)))
            }
            Event::FromClient { addr, msg } => {
                assert_eq!(Some(addr), c.client_addr());
                seen.push(format!("c:{}", String::from_utf8_lossy(msg)))
            }
        })
        .unwrap();
        assert_eq!(seen, ["m0:append", "c:order"]);
        m1.send_to_client(c.client_addr().unwrap(), b"fill")
            .unwrap();
        let mut got = Vec::new();
        c.poll(0, |e| {
            if let Event::FromMember { member_id: 1, msg } = e {
                got.extend_from_slice(msg)
            }
        })
        .unwrap();
        assert_eq!(got, b"fill");
    }

    #[test]
    fn bounded_queue_pushes_back() {
        let hub = InProcHub::new(2, 8);
        let mut a = hub.bind_member(0).unwrap();
        let mut b = hub.bind_member(1).unwrap();
        a.send_to_member(1, b"1").unwrap();
        a.send_to_member(1, b"2").unwrap();
        assert!(a.send_to_member(1, b"3").unwrap_err().is_would_block());
        assert!(matches!(
            a.send_to_member(1, &[0; 9]),
            Err(TransportError::MessageTooLarge { .. })
        ));
        assert!(matches!(
            a.send_to_member(7, b"x"),
            Err(TransportError::UnknownDestination(_))
        ));
        assert_eq!(b.poll(0, |_| {}).unwrap(), 2);
        a.send_to_member(1, b"3").unwrap();
        assert_eq!(a.counters().send_would_block, 1);
    }
}
