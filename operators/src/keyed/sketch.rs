//! Heavy-hitter detection in bounded memory: the Space-Saving sketch.
//!
//! [`SpaceSaving`] (Metwally, Agrawal, El Abbadi, "Efficient Computation of Frequent and Top-k
//! Elements in Data Streams", ICDT 2005) keeps at most `k` counters. A key that already has a
//! counter increments it. A new key takes a free counter, or, when all `k` are in use, takes over
//! the counter with the smallest count `m`: it starts at `m + w` and records `m` as its possible
//! overestimate (`error`). Three invariants follow, and the tests check them against an exact
//! model:
//!
//! - the counts add up to the stream's total weight, so the smallest count is at most
//!   `total / k`;
//! - for a tracked key, `count - error <= true frequency <= count`;
//! - every key whose true frequency exceeds `total / k` is tracked (an untracked key's true
//!   frequency is at most the smallest count).
//!
//! # Cost
//!
//! Counters live in an arena of `k` slots; a hash map finds a key's slot and a binary min-heap of
//! slot ids (with each slot's heap position stored beside it) finds the smallest counter. One
//! [`observe`](SpaceSaving::observe) costs one hash lookup plus an `O(log k)` sift; a takeover
//! adds one map removal and insertion. Memory is fixed at `k` keys, counters and map entries —
//! allocated up front, never grown.
//!
//! A min-heap rather than the paper's bucket list ("stream-summary") also handles weighted
//! updates ([`observe_weighted`](SpaceSaving::observe_weighted)) in the same bound, which a
//! batch-at-a-time caller wants.
//!
//! ```
//! use std::num::NonZeroUsize;
//! use weir_operators::keyed::sketch::SpaceSaving;
//!
//! let mut sketch = SpaceSaving::new(NonZeroUsize::new(2).expect("2 is non-zero"));
//! for key in ["a", "b", "a", "c", "a"] {
//!     sketch.observe(key);
//! }
//! assert_eq!(sketch.total(), 5);
//! let a = sketch.estimate(&"a").expect("a is a heavy hitter");
//! assert!(a.lower() <= 3 && 3 <= a.count);
//! assert_eq!(sketch.top(1)[0].0, &"a");
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::num::NonZeroUsize;

/// A key's estimated frequency: the true frequency `f` satisfies
/// `count - error <= f <= count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Estimate {
    /// Upper bound of the true frequency.
    pub count: u64,
    /// Maximum overestimate: the count the key inherited when it took over a counter.
    pub error: u64,
}

impl Estimate {
    /// Guaranteed lower bound of the true frequency, `count - error`.
    pub fn lower(&self) -> u64 {
        self.count - self.error
    }
}

#[derive(Clone, Debug)]
struct Slot<K> {
    key: K,
    est: Estimate,
    /// Index of this slot in `heap`.
    heap_pos: usize,
}

/// A Space-Saving heavy-hitter sketch with a fixed number of counters (see the
/// [module docs](self) for guarantees and cost).
#[derive(Clone)]
pub struct SpaceSaving<K> {
    capacity: usize,
    index: HashMap<K, usize, foldhash::fast::RandomState>,
    slots: Vec<Slot<K>>,
    /// Min-heap of slot ids ordered by count.
    heap: Vec<usize>,
    total: u64,
}

impl<K: fmt::Debug> fmt::Debug for SpaceSaving<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpaceSaving")
            .field("capacity", &self.capacity)
            .field("tracked", &self.slots.len())
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> SpaceSaving<K> {
    /// Creates a sketch with `capacity` counters, allocated now.
    ///
    /// Keys with a frequency above `total / capacity` are always tracked, and every estimate
    /// is within `total / capacity` of the truth.
    pub fn new(capacity: NonZeroUsize) -> Self {
        let capacity = capacity.get();
        Self {
            capacity,
            index: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            slots: Vec::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
            total: 0,
        }
    }

    /// Counts one occurrence of `key`.
    pub fn observe(&mut self, key: K) {
        self.observe_weighted(key, 1);
    }

    /// Counts `weight` occurrences of `key` at once (no-op for a weight of zero). Counts and
    /// the total saturate at `u64::MAX`.
    pub fn observe_weighted(&mut self, key: K, weight: u64) {
        if weight == 0 {
            return;
        }
        self.total = self.total.saturating_add(weight);
        if let Some(&slot) = self.index.get(&key) {
            let est = &mut self.slots[slot].est;
            est.count = est.count.saturating_add(weight);
            self.sift_down(self.slots[slot].heap_pos);
        } else if self.slots.len() < self.capacity {
            let slot = self.slots.len();
            self.index.insert(key.clone(), slot);
            self.slots.push(Slot {
                key,
                est: Estimate {
                    count: weight,
                    error: 0,
                },
                heap_pos: self.heap.len(),
            });
            self.heap.push(slot);
            self.sift_up(self.heap.len() - 1);
        } else {
            // Full: the key takes over the smallest counter and inherits its count as error.
            let slot = self.heap[0];
            let min = self.slots[slot].est.count;
            let evicted = std::mem::replace(&mut self.slots[slot].key, key.clone());
            self.index.remove(&evicted);
            self.index.insert(key, slot);
            self.slots[slot].est = Estimate {
                count: min.saturating_add(weight),
                error: min,
            };
            self.sift_down(0);
        }
    }

    /// The estimate for `key`, or `None` if it holds no counter (then its true frequency is at
    /// most [`untracked_bound`](Self::untracked_bound)).
    pub fn estimate(&self, key: &K) -> Option<Estimate> {
        self.index.get(key).map(|&slot| self.slots[slot].est)
    }

    /// Upper bound of the true frequency of any key without a counter: the smallest count once
    /// every counter is in use, else 0 (an untracked key has not been seen).
    pub fn untracked_bound(&self) -> u64 {
        if self.slots.len() < self.capacity {
            0
        } else {
            self.heap
                .first()
                .map_or(0, |&slot| self.slots[slot].est.count)
        }
    }

    /// Up to `n` tracked keys with the highest counts, highest first (ties: smaller error
    /// first, then earlier counter). Costs `O(k + n log n)`.
    pub fn top(&self, n: usize) -> Vec<(&K, Estimate)> {
        let mut ids: Vec<usize> = (0..self.slots.len()).collect();
        let rank = |&a: &usize, &b: &usize| {
            let (x, y) = (self.slots[a].est, self.slots[b].est);
            y.count
                .cmp(&x.count)
                .then(x.error.cmp(&y.error))
                .then(a.cmp(&b))
        };
        if n < ids.len() {
            if n > 0 {
                ids.select_nth_unstable_by(n - 1, rank);
            }
            ids.truncate(n);
        }
        ids.sort_unstable_by(rank);
        ids.into_iter()
            .map(|slot| (&self.slots[slot].key, self.slots[slot].est))
            .collect()
    }

    /// Total weight observed (saturating).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Number of counters (`k`).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of counters in use (at most [`capacity`](Self::capacity)).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing has been observed yet.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn count_at(&self, heap_pos: usize) -> u64 {
        self.slots[self.heap[heap_pos]].est.count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a]].heap_pos = a;
        self.slots[self.heap[b]].heap_pos = b;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.count_at(parent) <= self.count_at(pos) {
                break;
            }
            self.swap(parent, pos);
            pos = parent;
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let left = 2 * pos + 1;
            if left >= self.heap.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.heap.len() && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(pos) <= self.count_at(child) {
                break;
            }
            self.swap(pos, child);
            pos = child;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sketch(k: usize) -> SpaceSaving<u32> {
        SpaceSaving::new(NonZeroUsize::new(k).expect("test capacities are non-zero"))
    }

    /// Checks the structural invariants and the Space-Saving guarantees against exact counts.
    fn check(s: &SpaceSaving<u32>, truth: &HashMap<u32, u64>) {
        assert!(s.len() <= s.capacity());
        assert_eq!(s.index.len(), s.slots.len());
        for (pos, &slot) in s.heap.iter().enumerate() {
            assert_eq!(s.slots[slot].heap_pos, pos);
            if pos > 0 {
                assert!(s.count_at((pos - 1) / 2) <= s.count_at(pos), "heap order");
            }
        }
        let counted: u64 = s.slots.iter().map(|slot| slot.est.count).sum();
        assert_eq!(counted, s.total(), "counts add up to the total");
        let total: u64 = truth.values().sum();
        assert_eq!(s.total(), total);
        for (key, &f) in truth {
            match s.estimate(key) {
                Some(est) => assert!(est.lower() <= f && f <= est.count, "{key}: {est:?} vs {f}"),
                None => {
                    assert!(f <= s.untracked_bound(), "{key}: {f} untracked");
                    assert!(
                        f * s.capacity() as u64 <= total,
                        "{key}: frequency {f} > total/k must be tracked"
                    );
                }
            }
        }
    }

    proptest! {
        #[test]
        fn guarantees_hold_against_exact_counts(
            k in 1usize..12,
            stream in prop::collection::vec((0u32..40, 1u64..4), 0..400),
            skew in 1u32..6,
        ) {
            let mut s = sketch(k);
            let mut truth = HashMap::new();
            for (key, weight) in stream {
                // Fold keys toward 0 to make some of them heavy.
                let key = key / skew;
                s.observe_weighted(key, weight);
                *truth.entry(key).or_insert(0) += weight;
            }
            check(&s, &truth);
            let top = s.top(k + 3);
            prop_assert_eq!(top.len(), s.len());
            prop_assert!(top.windows(2).all(|w| w[0].1.count >= w[1].1.count));
        }
    }

    #[test]
    fn a_dominant_key_survives_a_stream_of_distinct_keys() {
        let mut s = sketch(4);
        let mut truth = HashMap::new();
        for i in 0..1000u32 {
            let key = if i % 3 == 0 { 7 } else { 1000 + i };
            s.observe(key);
            *truth.entry(key).or_insert(0) += 1;
        }
        check(&s, &truth);
        let (key, est) = s.top(1)[0];
        assert_eq!(*key, 7);
        assert!(est.lower() <= 334 && 334 <= est.count);
    }

    #[test]
    fn top_truncates_and_orders() {
        let mut s = sketch(8);
        for (key, weight) in [(1, 5), (2, 9), (3, 1), (4, 9)] {
            s.observe_weighted(key, weight);
        }
        s.observe_weighted(5, 0);
        let keys: Vec<u32> = s.top(3).into_iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [2, 4, 1]);
        assert!(s.top(0).is_empty());
        assert_eq!(s.estimate(&5), None);
        assert_eq!(s.untracked_bound(), 0);
    }
}
