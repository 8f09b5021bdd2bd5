//! [`MessagePipe`]: the bounded hand-off of messages between two of a member's agents (the
//! network agent and the consensus agent), one producer and one consumer.
//!
//! Byte buffers circulate between two lock-free [`ArrayQueue`]s: the producer takes a free
//! buffer, copies the message into it and pushes it onto the full queue; the consumer pops it,
//! reads it and gives the buffer back. Once running the per-message path takes no lock and
//! allocates nothing: a buffer grows only when a message is larger than any it held before
//! (and is trimmed back to [`RETAIN_BYTES`] when it comes back larger, so a rare large
//! message — a snapshot chunk, a big append — does not pin memory in every slot).
//!
//! The pool holds only as many buffers as were ever in flight at once ([`PREALLOCATED`] made
//! up front, more allocated when a burst needs them, never more than the capacity): the free
//! queue is first in, first out, so with every slot's buffer in it each message would be
//! copied into the coldest buffer of thousands (megabytes cycled through the cache); with the
//! pool at the peak in flight the buffers stay warm.
//!
//! ```text
//!   producer                           consumer
//!   free.pop() -> copy -> full.push() -> full.pop() -> read -> free.push()
//! ```
//!
//! A full pipe (no free buffer) refuses the message: the caller drops it and counts it, as a
//! lost datagram; Raft above resends what matters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// Where a message came from (inbound) or goes to (outbound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A cluster member.
    Member(u32),
    /// A client endpoint.
    Client(SocketAddr),
}

/// One message in a pipe; give `bytes` back with [`MessagePipe::recycle`] once read.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) endpoint: Endpoint,
    pub(crate) bytes: Vec<u8>,
}

/// A buffer that comes back larger than this is trimmed to it.
pub(crate) const RETAIN_BYTES: usize = 16 << 10;

/// Buffers a pipe makes when created (at most its capacity); more come when a burst needs them.
pub(crate) const PREALLOCATED: usize = 64;

/// A bounded single-producer, single-consumer queue of messages over preallocated buffers.
#[derive(Debug)]
pub(crate) struct MessagePipe {
    full: ArrayQueue<Message>,
    free: ArrayQueue<Vec<u8>>,
    initial_bytes: usize,
    refused: AtomicU64,
}

impl MessagePipe {
    /// A pipe of `capacity` messages, each buffer allocated with `initial_bytes`.
    ///
    /// # Panics
    /// If `capacity` is zero.
    pub(crate) fn new(capacity: usize, initial_bytes: usize) -> Self {
        assert!(capacity > 0, "a pipe holds at least one message");
        let free = ArrayQueue::new(capacity);
        for _ in 0..capacity.min(PREALLOCATED) {
            free.push(Vec::with_capacity(initial_bytes))
                .expect("no more buffers than slots");
        }
        Self {
            full: ArrayQueue::new(capacity),
            free,
            initial_bytes,
            refused: AtomicU64::new(0),
        }
    }

    /// Producer: a free buffer, made if none is free but a slot is (`None`: the pipe is full).
    fn take_buffer(&self) -> Option<Vec<u8>> {
        // Only this producer fills slots: a slot free now stays free until it publishes.
        if self.full.is_full() {
            return None;
        }
        Some(
            self.free
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(self.initial_bytes)),
        )
    }

    /// Producer: copies `bytes` into a free buffer and queues it; `false` (and counted) when
    /// every slot is in use.
    pub(crate) fn offer(&self, endpoint: Endpoint, bytes: &[u8]) -> bool {
        let Some(mut buf) = self.take_buffer() else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        buf.clear();
        buf.extend_from_slice(bytes);
        let queued = self.full.push(Message {
            endpoint,
            bytes: buf,
        });
        // The slot seen free above: only the consumer ran since, and it only frees slots.
        assert!(
            queued.is_ok(),
            "a single producer found its free slot taken"
        );
        true
    }

    /// Producer: a free buffer to fill in place and queue with [`MessagePipe::publish`]
    /// (`None` when every slot is in use; not counted as a refusal).
    pub(crate) fn acquire(&self) -> Option<Vec<u8>> {
        self.take_buffer()
    }

    /// Producer: queues a buffer taken with [`MessagePipe::acquire`].
    pub(crate) fn publish(&self, endpoint: Endpoint, bytes: Vec<u8>) {
        let queued = self.full.push(Message { endpoint, bytes });
        assert!(
            queued.is_ok(),
            "a single producer found its free slot taken"
        );
    }

    /// Consumer: the oldest queued message.
    pub(crate) fn poll(&self) -> Option<Message> {
        // Most polls find the pipe empty: checking first costs two loads, where a `pop` of an
        // empty queue also issues a full fence (a sixth of an idle duty cycle, perf, issue #7).
        if self.full.is_empty() {
            return None;
        }
        self.full.pop()
    }

    /// Consumer: gives a message's buffer back to the producer.
    pub(crate) fn recycle(&self, mut bytes: Vec<u8>) {
        if bytes.capacity() > RETAIN_BYTES {
            bytes.clear();
            bytes.shrink_to(RETAIN_BYTES);
        }
        // The free list holds as many buffers as there are slots; one more (made while the
        // consumer still held this one) is dropped.
        let _ = self.free.push(bytes);
    }

    /// Free slots now (what the producer may still offer without a refusal).
    pub(crate) fn free_slots(&self) -> usize {
        self.full.capacity() - self.full.len()
    }

    /// Whether no message is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.full.is_empty()
    }

    /// Messages refused because the pipe was full, since it was created.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn messages_pass_in_order_and_a_full_pipe_refuses() {
        let pipe = MessagePipe::new(2, 8);
        assert!(pipe.offer(Endpoint::Member(1), b"one"));
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert!(pipe.offer(Endpoint::Client(addr), b"two, longer than eight bytes"));
        assert_eq!(pipe.free_slots(), 0);
        assert!(!pipe.offer(Endpoint::Member(2), b"three"), "full");
        assert_eq!(pipe.refused(), 1);
        let m = pipe.poll().unwrap();
        assert_eq!(
            (m.endpoint, m.bytes.as_slice()),
            (Endpoint::Member(1), &b"one"[..])
        );
        pipe.recycle(m.bytes);
        assert!(pipe.offer(Endpoint::Member(3), b"four"));
        let m = pipe.poll().unwrap();
        assert_eq!(m.endpoint, Endpoint::Client(addr));
        assert_eq!(m.bytes, b"two, longer than eight bytes");
        pipe.recycle(m.bytes);
        let m = pipe.poll().unwrap();
        assert_eq!(
            (m.endpoint, m.bytes.as_slice()),
            (Endpoint::Member(3), &b"four"[..])
        );
        pipe.recycle(m.bytes);
        assert!(pipe.is_empty() && pipe.poll().is_none());
        assert_eq!(pipe.free_slots(), 2);
    }

    #[test]
    fn large_buffers_are_trimmed_when_recycled() {
        let pipe = MessagePipe::new(1, 64);
        let big = vec![7u8; RETAIN_BYTES * 4];
        assert!(pipe.offer(Endpoint::Member(0), &big));
        let m = pipe.poll().unwrap();
        assert_eq!(m.bytes, big);
        pipe.recycle(m.bytes);
        assert!(pipe.offer(Endpoint::Member(0), b"x"));
        let m = pipe.poll().unwrap();
        assert!(m.bytes.capacity() <= RETAIN_BYTES * 2, "trimmed");
        pipe.recycle(m.bytes);
    }

    #[test]
    fn one_producer_and_one_consumer_on_two_threads_see_every_message_in_order() {
        let pipe = Arc::new(MessagePipe::new(16, 16));
        const N: u32 = 20_000;
        let producer = {
            let pipe = Arc::clone(&pipe);
            std::thread::spawn(move || {
                let mut i = 0u32;
                while i < N {
                    if pipe.offer(Endpoint::Member(i), &i.to_le_bytes()) {
                        i += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            })
        };
        let mut next = 0u32;
        while next < N {
            match pipe.poll() {
                Some(m) => {
                    assert_eq!(m.endpoint, Endpoint::Member(next));
                    assert_eq!(m.bytes, next.to_le_bytes());
                    pipe.recycle(m.bytes);
                    next += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert_eq!(pipe.free_slots(), 16);
    }
}
