//! Fragmentation and bounded, deterministic reassembly.
//!
//! A message of `len` bytes that does not fit one datagram is cut into
//! `count = ceil(len / max_chunk)` fragments of `chunk = ceil(len / count)` bytes (the last one
//! shorter), so fragment `i` always starts at `i * chunk`. The receiver checks exactly that,
//! which makes overlapping or gapped fragment sets impossible to assemble.
//!
//! The reassembler never reads a clock: time comes in as `now_ns`.

use std::net::SocketAddr;

use super::counters::TransportCounters;
use super::frame::Header;

const BITMAP_WORDS: usize = 1024; // 65_536 fragments, the u16 index space.

/// Splits a message: returns `(chunk, count)` for `len` bytes with at most `max_chunk` per
/// fragment. `count == 1` means no fragmentation is needed.
pub fn fragment_plan(len: usize, max_chunk: usize) -> (usize, usize) {
    if len <= max_chunk {
        return (len, 1);
    }
    let count = len.div_ceil(max_chunk);
    (len.div_ceil(count), count)
}

#[derive(Debug)]
struct Slot {
    in_use: bool,
    source: SocketAddr,
    message_id: u32,
    message_len: usize,
    frag_count: u16,
    received: u16,
    first_ns: u64,
    buf: Vec<u8>,
    bitmap: Box<[u64]>,
}

/// Bounded reassembly buffers for one socket.
///
/// Memory is bounded by `max_partials * (max_message_size + 8 KiB)`: slot buffers grow on
/// first use to the largest message seen and are then reused (no allocation in steady state).
#[derive(Debug)]
pub struct Reassembler {
    slots: Vec<Slot>,
    max_message: usize,
    max_per_source: usize,
    timeout_ns: u64,
}

impl Reassembler {
    /// Creates a reassembler with `max_partials` buffers, at most `max_per_source` of them for
    /// one source address, messages up to `max_message` bytes and an incomplete-message timeout.
    pub fn new(
        max_partials: usize,
        max_per_source: usize,
        max_message: usize,
        timeout_ns: u64,
    ) -> Self {
        let slots = (0..max_partials.max(1))
            .map(|_| Slot {
                in_use: false,
                source: SocketAddr::from(([0, 0, 0, 0], 0)),
                message_id: 0,
                message_len: 0,
                frag_count: 0,
                received: 0,
                first_ns: 0,
                buf: Vec::new(),
                bitmap: vec![0u64; BITMAP_WORDS].into_boxed_slice(),
            })
            .collect();
        Self {
            slots,
            max_message,
            max_per_source: max_per_source.max(1),
            timeout_ns,
        }
    }

    /// Number of incomplete messages held.
    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.in_use).count()
    }

    /// Bytes of reassembly buffer capacity currently allocated (for memory-bound checks).
    pub fn buffer_capacity(&self) -> usize {
        self.slots.iter().map(|s| s.buf.capacity()).sum()
    }

    /// Drops incomplete messages older than the timeout; returns how many were dropped.
    pub fn expire(&mut self, now_ns: u64, counters: &mut TransportCounters) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.in_use) {
            if now_ns.saturating_sub(s.first_ns) >= self.timeout_ns {
                s.in_use = false;
                counters.dropped_reassembly_timeout += 1;
                n += 1;
            }
        }
        n
    }

    /// Adds one validated fragment; returns the whole message once its last fragment arrives.
    pub fn on_fragment(
        &mut self,
        source: SocketAddr,
        h: &Header,
        payload: &[u8],
        now_ns: u64,
        counters: &mut TransportCounters,
    ) -> Option<&[u8]> {
        counters.fragments_in += 1;
        let len = h.message_len as usize;
        let count = usize::from(h.frag_count);
        let idx = usize::from(h.frag_index);
        if len > self.max_message || count < 2 {
            counters.dropped_reassembly_overflow += 1;
            return None;
        }
        // The fragment must sit exactly where the fragment plan puts it.
        let chunk = len.div_ceil(count);
        let start = idx * chunk;
        let expect_len = chunk.min(len.saturating_sub(start));
        if h.frag_offset as usize != start || payload.len() != expect_len || expect_len == 0 {
            counters.dropped_reassembly_overflow += 1;
            return None;
        }
        let found = self
            .slots
            .iter()
            .position(|s| s.in_use && s.source == source && s.message_id == h.message_id);
        let i = match found {
            Some(i) => {
                let s = &self.slots[i];
                if s.message_len != len || usize::from(s.frag_count) != count {
                    counters.dropped_reassembly_overflow += 1;
                    return None;
                }
                i
            }
            None => self.claim(source, counters)?,
        };
        let s = &mut self.slots[i];
        if found.is_none() {
            s.in_use = true;
            s.source = source;
            s.message_id = h.message_id;
            s.message_len = len;
            s.frag_count = h.frag_count;
            s.received = 0;
            s.first_ns = now_ns;
            s.bitmap[..count.div_ceil(64)].fill(0);
            if s.buf.len() < len {
                s.buf.resize(len, 0);
            }
        }
        let (w, b) = (idx / 64, 1u64 << (idx % 64));
        if s.bitmap[w] & b != 0 {
            counters.duplicate_fragments += 1;
            return None;
        }
        s.bitmap[w] |= b;
        s.buf[start..start + payload.len()].copy_from_slice(payload);
        s.received += 1;
        if s.received == s.frag_count {
            s.in_use = false;
            return Some(&s.buf[..len]);
        }
        None
    }

    /// Finds a free slot, evicting this source's oldest message if it is at its limit.
    fn claim(&mut self, source: SocketAddr, counters: &mut TransportCounters) -> Option<usize> {
        let mut mine = 0;
        let mut oldest_mine: Option<usize> = None;
        let mut free = None;
        for (i, s) in self.slots.iter().enumerate() {
            if !s.in_use {
                free.get_or_insert(i);
            } else if s.source == source {
                mine += 1;
                if oldest_mine.is_none_or(|o| s.first_ns < self.slots[o].first_ns) {
                    oldest_mine = Some(i);
                }
            }
        }
        if mine >= self.max_per_source {
            // One source may not hog buffers: its oldest incomplete message gives way.
            let o = oldest_mine?;
            self.slots[o].in_use = false;
            counters.dropped_reassembly_overflow += 1;
            return Some(o);
        }
        if free.is_none() {
            counters.dropped_reassembly_overflow += 1;
        }
        free
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{FLAG_FRAGMENT, STREAM_PEER};
    use super::*;
    use proptest::prelude::*;

    fn frags(msg: &[u8], id: u32, max_chunk: usize) -> Vec<(Header, Vec<u8>)> {
        let (chunk, count) = fragment_plan(msg.len(), max_chunk);
        (0..count)
            .map(|i| {
                let start = i * chunk;
                let end = (start + chunk).min(msg.len());
                (
                    Header {
                        flags: FLAG_FRAGMENT,
                        cluster_id: 1,
                        source_id: 0,
                        stream_id: STREAM_PEER,
                        message_id: id,
                        message_len: msg.len() as u32,
                        frag_offset: start as u32,
                        frag_index: i as u16,
                        frag_count: count as u16,
                    },
                    msg[start..end].to_vec(),
                )
            })
            .collect()
    }

    fn src(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn plan_is_exact() {
        assert_eq!(fragment_plan(10, 100), (10, 1));
        assert_eq!(fragment_plan(100, 100), (100, 1));
        assert_eq!(fragment_plan(101, 100), (51, 2));
        assert_eq!(fragment_plan(1000, 300), (250, 4));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn shuffled_duplicated_round_trip(
            len in 2usize..20_000,
            max_chunk in 16usize..1500,
            seed in any::<u64>(),
        ) {
            let msg: Vec<u8> = (0..len).map(|i| (i as u64 ^ seed) as u8).collect();
            let mut fs = frags(&msg, 5, max_chunk);
            prop_assume!(fs.len() >= 2);
            // Duplicate some, then shuffle deterministically.
            let dups: Vec<_> = fs.iter().step_by(3).cloned().collect();
            fs.extend(dups);
            let mut x = seed | 1;
            for i in (1..fs.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                fs.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut r = Reassembler::new(4, 2, 1 << 20, 1_000);
            let mut c = TransportCounters::default();
            let mut got = None;
            for (h, p) in &fs {
                if let Some(m) = r.on_fragment(src(1), h, p, 0, &mut c) {
                    prop_assert!(got.is_none(), "delivered twice");
                    got = Some(m.to_vec());
                }
            }
            prop_assert_eq!(got.as_deref(), Some(&msg[..]));
            // A duplicate arriving after completion opens a partial that later times out.
            prop_assert!(r.in_flight() <= 1);
            prop_assert!(c.duplicate_fragments > 0 || r.in_flight() == 1 || fs.len() == 2);
        }
    }

    #[test]
    fn incomplete_message_times_out_and_is_counted() {
        let msg = vec![7u8; 5000];
        let fs = frags(&msg, 1, 1000);
        let mut r = Reassembler::new(4, 4, 1 << 20, 100);
        let mut c = TransportCounters::default();
        for (h, p) in &fs[..fs.len() - 1] {
            assert!(r.on_fragment(src(1), h, p, 10, &mut c).is_none());
        }
        assert_eq!(r.expire(109, &mut c), 0);
        assert_eq!(r.in_flight(), 1);
        assert_eq!(r.expire(110, &mut c), 1);
        assert_eq!(c.dropped_reassembly_timeout, 1);
        assert_eq!(r.in_flight(), 0);
        // The late last fragment starts a new (never completing) message, not a bogus one.
        let (h, p) = fs.last().unwrap();
        assert!(r.on_fragment(src(1), h, p, 120, &mut c).is_none());
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Reassembler::new(8, 2, 64 * 1024, 1_000_000);
        let mut c = TransportCounters::default();
        for id in 0..1000u32 {
            let msg = vec![1u8; 60_000];
            let fs = frags(&msg, id, 1400);
            // Only the first fragment of each message, from 50 different sources.
            let (h, p) = &fs[0];
            let _ = r.on_fragment(src(1000 + (id % 50) as u16), h, p, u64::from(id), &mut c);
        }
        assert!(r.in_flight() <= 8);
        assert!(r.buffer_capacity() <= 8 * 64 * 1024);
        assert!(c.dropped_reassembly_overflow > 0);
        // A too-large message is refused outright.
        let big = frags(&vec![0u8; 70_000], 1, 1400);
        assert!(
            r.on_fragment(src(9), &big[0].0, &big[0].1, 0, &mut c)
                .is_none()
        );
    }

    #[test]
    fn misplaced_fragment_rejected() {
        let msg = vec![3u8; 3000];
        let mut fs = frags(&msg, 1, 1000);
        fs[1].0.frag_offset += 1;
        let mut r = Reassembler::new(2, 2, 1 << 20, 100);
        let mut c = TransportCounters::default();
        assert!(
            r.on_fragment(src(1), &fs[1].0, &fs[1].1, 0, &mut c)
                .is_none()
        );
        assert_eq!(c.dropped_reassembly_overflow, 1);
    }
}
