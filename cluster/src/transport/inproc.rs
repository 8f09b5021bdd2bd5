//! In-process transport: the [`Network`] surface with no sockets.
//!
//! Design choice: one [`InProcHub`] (an `Arc<Mutex<..>>`) holds a bounded `VecDeque` per
//! endpoint and a pool of reusable message buffers. A mutex rather than `Rc<RefCell<..>>`
//! keeps endpoints `Send`, so the same hub serves the single-threaded `cluster` threading
//! mode (one thread drives every member: the lock is never contended) and tests that put
//! members on threads. `poll` swaps the endpoint's whole queue out under the lock and
//! delivers outside it; buffers go back to the pool afterwards, so steady state allocates
//! nothing. Messages are never fragmented or checksummed (nothing can corrupt them), but
//! size limits and back-pressure match the UDP transport.

use std::collections::VecDeque;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use super::counters::TransportCounters;
use super::error::{Result, TransportError};
use super::{Event, Network};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Member(u32),
    Client(SocketAddr),
}

#[derive(Debug)]
struct Endpoint {
    key: Source,
    queue: VecDeque<(Source, Vec<u8>)>,
}

#[derive(Debug)]
struct Hub {
    endpoints: Vec<Endpoint>,
    pool: Vec<Vec<u8>>,
    capacity: usize,
    max_message: usize,
    next_client: u16,
}

/// Shared hub connecting in-process endpoints. Cheap to clone (an `Arc`).
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
                pool: Vec::new(),
                capacity: queue_capacity.max(1),
                max_message: max_message_size,
                next_client: 1,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves plain queues behind: still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, key: Source) -> Result<usize> {
        let mut hub = self.lock();
        if hub.endpoints.iter().any(|e| e.key == key) {
            return Err(TransportError::InvalidConfig(
                "in-process endpoint registered twice",
            ));
        }
        let cap = hub.capacity;
        hub.endpoints.push(Endpoint {
            key,
            queue: VecDeque::with_capacity(cap),
        });
        Ok(hub.endpoints.len() - 1)
    }

    /// Registers member `member_id`.
    pub fn bind_member(&self, member_id: u32) -> Result<InProcTransport> {
        let me = Source::Member(member_id);
        let index = self.register(me)?;
        Ok(InProcTransport::new(self.clone(), me, index))
    }

    /// Registers a client; it gets a synthetic address `127.255.0.1:N` as its identity.
    pub fn bind_client(&self) -> Result<InProcTransport> {
        let addr = {
            let mut hub = self.lock();
            let port = hub.next_client;
            hub.next_client = hub.next_client.wrapping_add(1).max(1);
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 255, 0, 1)), port)
        };
        let me = Source::Client(addr);
        let index = self.register(me)?;
        Ok(InProcTransport::new(self.clone(), me, index))
    }
}

/// One endpoint (member or client) of an [`InProcHub`].
#[derive(Debug)]
pub struct InProcTransport {
    hub: InProcHub,
    me: Source,
    index: usize,
    inbox: VecDeque<(Source, Vec<u8>)>,
    counters: TransportCounters,
}

impl InProcTransport {
    fn new(hub: InProcHub, me: Source, index: usize) -> Self {
        let cap = hub.lock().capacity;
        Self {
            hub,
            me,
            index,
            inbox: VecDeque::with_capacity(cap),
            counters: TransportCounters::default(),
        }
    }

    /// This endpoint's client address (clients only).
    pub fn client_addr(&self) -> Option<SocketAddr> {
        match self.me {
            Source::Client(a) => Some(a),
            Source::Member(_) => None,
        }
    }

    fn send(&mut self, to: Source, msg: &[u8]) -> Result<()> {
        let mut hub = self.hub.lock();
        if msg.len() > hub.max_message {
            return Err(TransportError::MessageTooLarge {
                len: msg.len(),
                max: hub.max_message,
            });
        }
        let capacity = hub.capacity;
        let Some(dest) = hub.endpoints.iter().position(|e| e.key == to) else {
            return Err(TransportError::UnknownDestination(format!("{to:?}")));
        };
        if hub.endpoints[dest].queue.len() >= capacity {
            self.counters.send_would_block += 1;
            return Err(TransportError::WouldBlock);
        }
        let mut buf = hub.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(msg);
        hub.endpoints[dest].queue.push_back((self.me, buf));
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
        {
            let mut hub = self.hub.lock();
            mem::swap(&mut hub.endpoints[self.index].queue, &mut self.inbox);
        }
        let n = self.inbox.len();
        if n == 0 {
            return Ok(0);
        }
        for (from, msg) in &self.inbox {
            self.counters.messages_in += 1;
            self.counters.bytes_in += msg.len() as u64;
            match *from {
                Source::Member(member_id) => handler(Event::FromMember { member_id, msg }),
                Source::Client(addr) if matches!(self.me, Source::Member(_)) => {
                    handler(Event::FromClient { addr, msg })
                }
                Source::Client(_) => self.counters.dropped_unknown_member += 1,
            }
        }
        let mut hub = self.hub.lock();
        hub.pool.extend(self.inbox.drain(..).map(|(_, b)| b));
        Ok(n)
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
