//! The simulated network: every message between members, and between clients and members,
//! goes through one queue ordered by delivery time. It drops, delays (with jitter, so it
//! reorders), duplicates, and cuts links (partitions, also one-way).

use std::collections::{BTreeMap, BTreeSet};

use crate::sim::rng::SimRng;

/// One end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// A cluster member.
    Member(u32),
    /// A client (index).
    Client(u32),
}

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Sender.
    pub from: Endpoint,
    /// Receiver.
    pub to: Endpoint,
    /// Encoded message.
    pub bytes: Vec<u8>,
}

/// How badly the network behaves (chosen per seed).
#[derive(Debug, Clone, Copy)]
pub struct NetworkProfile {
    /// Probability a message is lost.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Smallest one-way latency.
    pub latency_min_ns: i64,
    /// Largest one-way latency (uniform between; the spread reorders).
    pub latency_max_ns: i64,
    /// Probability of a long delay (a spike up to `spike_max_ns`).
    pub spike: f64,
    /// Longest spike.
    pub spike_max_ns: i64,
}

impl NetworkProfile {
    /// A network that loses nothing and delivers fast and in order (the quiet phase).
    pub fn perfect() -> Self {
        Self {
            drop: 0.0,
            duplicate: 0.0,
            latency_min_ns: 200_000,
            latency_max_ns: 200_000,
            spike: 0.0,
            spike_max_ns: 0,
        }
    }
}

/// The network.
#[derive(Debug)]
pub struct Network {
    queue: BTreeMap<(i64, u64), Envelope>,
    next_seq: u64,
    /// Directed links that lose everything.
    pub blocked: BTreeSet<(Endpoint, Endpoint)>,
    /// Current behaviour.
    pub profile: NetworkProfile,
    /// Messages sent, dropped, duplicated (stats).
    pub sent: u64,
    /// Messages dropped.
    pub dropped: u64,
    /// Messages duplicated.
    pub duplicated: u64,
}

/// Most messages in flight: a bug that floods the network is reported, not an out-of-memory.
pub const MAX_IN_FLIGHT: usize = 1_000_000;

impl Network {
    /// An empty network.
    pub fn new(profile: NetworkProfile) -> Self {
        Self {
            queue: BTreeMap::new(),
            next_seq: 0,
            blocked: BTreeSet::new(),
            profile,
            sent: 0,
            dropped: 0,
            duplicated: 0,
        }
    }

    fn latency(&self, rng: &mut SimRng) -> i64 {
        let p = self.profile;
        let mut l = rng.range_i64(p.latency_min_ns, p.latency_max_ns.max(p.latency_min_ns));
        if p.spike > 0.0 && rng.chance(p.spike) {
            l += rng.range_i64(0, p.spike_max_ns);
        }
        l
    }

    /// Sends `bytes` at time `now_ns`.
    ///
    /// # Panics
    /// If more than [`MAX_IN_FLIGHT`] messages are queued.
    pub fn send(
        &mut self,
        now_ns: i64,
        from: Endpoint,
        to: Endpoint,
        bytes: &[u8],
        rng: &mut SimRng,
    ) {
        self.sent += 1;
        if self.blocked.contains(&(from, to)) || rng.chance(self.profile.drop) {
            self.dropped += 1;
            return;
        }
        let copies = if rng.chance(self.profile.duplicate) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now_ns + self.latency(rng);
            self.queue.insert(
                (at, self.next_seq),
                Envelope {
                    from,
                    to,
                    bytes: bytes.to_vec(),
                },
            );
            self.next_seq += 1;
        }
        assert!(self.queue.len() <= MAX_IN_FLIGHT, "network flooded");
    }

    /// The next message due at or before `now_ns` (links cut since it was sent lose it too).
    pub fn pop_due(&mut self, now_ns: i64) -> Option<Envelope> {
        loop {
            let (&(at, _), _) = self.queue.first_key_value()?;
            if at > now_ns {
                return None;
            }
            let (_, env) = self.queue.pop_first().expect("non-empty");
            if self.blocked.contains(&(env.from, env.to)) {
                self.dropped += 1;
                continue;
            }
            return Some(env);
        }
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&mut self, a: Endpoint, b: Endpoint) {
        self.blocked.insert((a, b));
        self.blocked.insert((b, a));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }
}
