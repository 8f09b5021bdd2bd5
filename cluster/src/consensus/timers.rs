//! Service timers, part of the replicated module state.
//!
//! A timer is (correlation id, deadline in cluster time, generation). Scheduling an id again
//! moves it and gives it a new generation; the leader fires a due timer by appending a timer
//! event naming the generation, and an event whose generation is no longer current (the timer
//! was cancelled or moved since) is ignored when applied. Generations come from a counter in
//! replicated state, so they are the same on every member and survive snapshots.

use std::collections::{BTreeMap, BTreeSet};

/// The timers of one member's module state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    by_id: BTreeMap<u64, (i64, u64)>,
    by_deadline: BTreeSet<(i64, u64)>,
    next_generation: u64,
}

impl Timers {
    /// Schedules (or moves) timer `id` to `deadline_ns`; returns its generation.
    pub fn schedule(&mut self, id: u64, deadline_ns: i64) -> u64 {
        self.next_generation += 1;
        let generation = self.next_generation;
        if let Some((old, _)) = self.by_id.insert(id, (deadline_ns, generation)) {
            let removed = self.by_deadline.remove(&(old, id));
            assert!(removed, "timer index out of step");
        }
        self.by_deadline.insert((deadline_ns, id));
        generation
    }

    /// Cancels timer `id`; returns whether it was scheduled.
    pub fn cancel(&mut self, id: u64) -> bool {
        match self.by_id.remove(&id) {
            Some((deadline, _)) => {
                let removed = self.by_deadline.remove(&(deadline, id));
                assert!(removed, "timer index out of step");
                true
            }
            None => false,
        }
    }

    /// Applies a timer event: if `generation` is the timer's current one, removes the timer and
    /// returns true (the service must see it); a stale event returns false.
    pub fn fire(&mut self, id: u64, generation: u64) -> bool {
        match self.by_id.get(&id) {
            Some(&(deadline, current)) if current == generation => {
                self.by_id.remove(&id);
                self.by_deadline.remove(&(deadline, id));
                true
            }
            _ => false,
        }
    }

    /// Timers due at `now_ns`, earliest first: (id, generation).
    pub fn due(&self, now_ns: i64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.by_deadline
            .range(..=(now_ns, u64::MAX))
            .map(|&(_, id)| (id, self.by_id[&id].1))
    }

    /// Number of scheduled timers.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is scheduled.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// All timers as (id, deadline, generation), by id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, i64, u64)> + '_ {
        self.by_id.iter().map(|(&id, &(d, g))| (id, d, g))
    }

    /// The generation counter (for snapshots).
    pub fn next_generation(&self) -> u64 {
        self.next_generation
    }

    /// Rebuilds timers from a snapshot.
    pub fn restore(
        entries: impl IntoIterator<Item = (u64, i64, u64)>,
        next_generation: u64,
    ) -> Self {
        let mut t = Self {
            next_generation,
            ..Self::default()
        };
        for (id, deadline, generation) in entries {
            assert!(generation <= next_generation);
            t.by_id.insert(id, (deadline, generation));
            t.by_deadline.insert((deadline, id));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reschedule_moves_and_stale_events_are_ignored() {
        let mut t = Timers::default();
        let g1 = t.schedule(7, 100);
        let g2 = t.schedule(7, 200);
        assert_ne!(g1, g2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.due(150).count(), 0);
        assert_eq!(t.due(200).collect::<Vec<_>>(), vec![(7, g2)]);
        assert!(!t.fire(7, g1), "stale generation ignored");
        assert!(t.fire(7, g2));
        assert!(!t.fire(7, g2), "fires once");
        let g3 = t.schedule(8, 10);
        assert!(t.cancel(8));
        assert!(!t.fire(8, g3));
        let copy = Timers::restore([(1, 5, 2)], 9);
        assert_eq!(copy.due(5).collect::<Vec<_>>(), vec![(1, 2)]);
    }
}
