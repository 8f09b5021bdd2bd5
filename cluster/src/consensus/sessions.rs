//! Client sessions and their reply caches, part of the replicated module state (DESIGN §6).

use std::collections::VecDeque;

use crate::consensus::types::{ClientAddr, SessionId};
use tandem_service_api::CloseReason;

/// One cached reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedReply {
    /// The reply's sequence in the session's egress stream.
    pub egress_seq: u64,
    /// The client sequence that produced it (0: none).
    pub request_seq: u64,
}

/// A bounded cache of a session's latest replies, as replicated state: the same on every
/// member. Eviction is logical (oldest first, by count and total bytes), never by memory
/// layout, so a member that restored the cache from a snapshot evicts exactly as one that built
/// it entry by entry. The buffer of an evicted reply is reused, so steady state does not
/// allocate.
#[derive(Debug, Clone, Default)]
pub struct ReplyCache {
    entries: VecDeque<(CachedReply, Vec<u8>)>,
    total_bytes: usize,
}

impl PartialEq for ReplyCache {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}
impl Eq for ReplyCache {}

impl ReplyCache {
    /// Adds a reply, evicting the oldest ones to stay within `max_entries` and `max_bytes`.
    ///
    /// # Panics
    /// If `bytes` alone exceeds `max_bytes` (callers check the message limit first).
    pub fn push(
        &mut self,
        egress_seq: u64,
        request_seq: u64,
        bytes: &[u8],
        max_entries: usize,
        max_bytes: usize,
    ) {
        assert!(bytes.len() <= max_bytes, "reply larger than the cache");
        assert!(max_entries >= 1);
        debug_assert!(
            self.entries
                .back()
                .is_none_or(|(r, _)| r.egress_seq + 1 == egress_seq)
        );
        // The evicted buffer with the most room is reused. It stays in a local: an earlier
        // version stored it into a field of `self` word by word and loaded it back at once,
        // and every push stalled on the failed store-to-load forwarding (perf annotate of the
        // core bench: 45 % of this function on that one load).
        let mut reuse: Option<Vec<u8>> = None;
        while !self.entries.is_empty()
            && (self.entries.len() >= max_entries || self.total_bytes + bytes.len() > max_bytes)
        {
            let (_, old) = self.entries.pop_front().expect("not empty");
            self.total_bytes -= old.len();
            if reuse.as_ref().is_none_or(|r| old.capacity() > r.capacity()) {
                reuse = Some(old);
            }
        }
        let mut buf = reuse.unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        self.total_bytes += bytes.len();
        self.entries.push_back((
            CachedReply {
                egress_seq,
                request_seq,
            },
            buf,
        ));
    }

    /// Cached replies, oldest first, with their bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&CachedReply, &[u8])> + '_ {
        self.entries.iter().map(|(r, b)| (r, b.as_slice()))
    }

    /// The reply with egress sequence `egress_seq`, if still cached.
    pub fn get(&self, egress_seq: u64) -> Option<(&CachedReply, &[u8])> {
        let first = self.entries.front()?.0.egress_seq;
        let idx = usize::try_from(egress_seq.checked_sub(first)?).ok()?;
        let (r, b) = self.entries.get(idx)?;
        debug_assert_eq!(r.egress_seq, egress_seq);
        Some((r, b.as_slice()))
    }

    /// Number of cached replies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes cached.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }
}

/// A client session in the replicated module state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The id, assigned when the open was applied.
    pub id: SessionId,
    /// Where the client listened when it connected.
    pub client: ClientAddr,
    /// The connect's correlation id.
    pub correlation_id: u64,
    /// From the authenticator.
    pub principal: Vec<u8>,
    /// Highest client sequence applied.
    pub last_seq: u64,
    /// Last egress sequence assigned to a reply.
    pub egress_seq: u64,
    /// Set when the service asked to close the session (the close goes through the log).
    pub closing: Option<CloseReason>,
    /// The latest replies.
    pub replies: ReplyCache,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_keeps_latest() {
        let mut c = ReplyCache::default();
        for i in 1..=100u64 {
            let body = vec![i as u8; (i % 7) as usize + 1];
            c.push(i, i, &body, 8, 32);
            assert!(c.len() <= 8 && c.total_bytes() <= 32);
            let (e, b) = c.get(i).expect("latest always cached");
            assert_eq!(e.request_seq, i);
            assert_eq!(b, &body[..]);
            for (e, b) in c.iter() {
                assert!(b.iter().all(|&x| x == e.egress_seq as u8));
            }
        }
        assert!(c.get(1).is_none());
        let mut d = ReplyCache::default();
        d.push(1, 1, b"", 2, 16);
        d.push(2, 2, b"0123456789abcdef", 2, 16);
        d.push(3, 3, b"x", 2, 16);
        assert_eq!(d.len(), 1);
        assert_eq!(d.get(3).unwrap().1, b"x");
    }

    #[test]
    fn eviction_does_not_depend_on_history() {
        // Built entry by entry vs rebuilt from its contents (as a snapshot restore does): the
        // same pushes afterwards leave the same contents.
        let mut a = ReplyCache::default();
        for i in 1..=50u64 {
            a.push(i, i, &vec![1u8; (i * 7 % 13) as usize], 6, 40);
        }
        let mut b = ReplyCache::default();
        for (r, bytes) in a.iter() {
            b.push(r.egress_seq, r.request_seq, bytes, 6, 40);
        }
        assert_eq!(a, b);
        for i in 51..=80u64 {
            let body = vec![2u8; (i * 5 % 17) as usize];
            a.push(i, i, &body, 6, 40);
            b.push(i, i, &body, 6, 40);
            assert_eq!(a, b);
        }
    }
}
