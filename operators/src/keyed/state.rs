//! Per-instance keyed state: one accumulator per key, in a hash map with a hard key bound.
//!
//! [`KeyedState`] never holds more than `max_keys` keys. What happens at the bound is the
//! owner's choice: a *partial* stage drains downstream — all keys, or the coldest
//! ([`drain_cold`](KeyedState::drain_cold)) — since its partials are merged later, the
//! result stays exact; a *final* stage fails with a clear error
//! ([`KeyedError::TooManyKeys`]). So memory per instance is bounded by
//!
//! ```text
//! table capacity × (size_of::<(K, (Acc, bool, u32))>() + 1)   (key, accumulator, changed
//!                                                               flag, update count, one
//!                                                               control byte)
//! ```
//!
//! where the table's capacity is at most about twice `max_keys` (a hash table grows by
//! doubling). [`bytes`](KeyedState::bytes) reports that figure, the inline memory of the
//! table, plus the heap memory the keys own (a `String` key's buffer, by
//! [`HeapSize`], counted as keys are inserted and removed). Heap memory an accumulator grows
//! after it was inserted is not seen.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

use weir_runtime::HeapSize;

use crate::keyed::aggregate::Aggregate;

/// Why a keyed stage failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyedError {
    /// A final-stage instance met a new key while holding `max_keys` keys.
    #[error(
        "keyed aggregate `{operator}` (instance {instance}) already holds {max_keys} keys and \
         met a new one; raise the bound with `max_keys`, add instances with `parallelism`, or \
         aggregate on a coarser key"
    )]
    TooManyKeys {
        /// The operator.
        operator: String,
        /// Its instance.
        instance: usize,
        /// The configured bound.
        max_keys: usize,
    },
}

/// An accumulator, whether it changed since the last periodic update, and how often it was
/// updated since it was inserted.
#[derive(Clone, Debug)]
struct Slot<Acc> {
    acc: Acc,
    dirty: bool,
    hits: u32,
}

/// Accumulators by key, at most `max_keys` of them (see the [module docs](self)).
#[derive(Debug)]
pub struct KeyedState<K, Acc> {
    map: HashMap<K, Slot<Acc>, foldhash::fast::RandomState>,
    max_keys: usize,
    /// Scratch for [`drain_cold`](Self::drain_cold), at most `max_keys` long.
    hits: Vec<u32>,
    /// The most updates of any key held.
    top_hits: u32,
    /// Heap memory owned by the keys held (0 unless `K::HAS_HEAP`).
    key_heap: usize,
}

impl<K: Hash + Eq + HeapSize, Acc> KeyedState<K, Acc> {
    /// The share of keys [`drain_cold`](Self::drain_cold) removes at least. Measured on Zipf
    /// 1.0 over 10⁴ keys with 4096 slots: draining the colder half sent 15.4 % of the rows on,
    /// the coldest eighth 11.7 % (the 5,904 keys that do not fit carry about 9 %).
    pub const COLD_QUANTILE: f64 = 0.125;

    /// Empty state holding at most `max_keys` keys (at least 1).
    pub fn new(max_keys: usize) -> Self {
        Self {
            map: HashMap::default(),
            max_keys: max_keys.max(1),
            hits: Vec::new(),
            top_hits: 0,
            key_heap: 0,
        }
    }

    /// The key bound.
    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Inline bytes of the table plus the keys' heap (see the [module docs](self)).
    pub fn bytes(&self) -> usize {
        self.map.capacity() * (size_of::<(K, Slot<Acc>)>() + 1) + self.key_heap
    }

    /// Whether `key` can be updated without passing the bound: it is held, or there is room.
    pub fn has_room_for(&self, key: &K) -> bool {
        self.map.len() < self.max_keys || self.map.contains_key(key)
    }

    /// The accumulator of `key`, created from `agg.init()` if absent, marked as changed.
    ///
    /// Check [`has_room_for`](Self::has_room_for) first: past the bound this still inserts
    /// (the bound is the caller's to enforce, because what to do there is its choice).
    pub fn slot<A: Aggregate<Acc = Acc>>(&mut self, agg: &A, key: K) -> &mut Acc {
        let slot = match self.map.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                if K::HAS_HEAP {
                    self.key_heap += e.key().heap_size();
                }
                e.insert(Slot {
                    acc: agg.init(),
                    dirty: false,
                    hits: 0,
                })
            }
        };
        slot.dirty = true;
        slot.hits = slot.hits.saturating_add(1);
        self.top_hits = self.top_hits.max(slot.hits);
        &mut slot.acc
    }

    /// Removes every key, handing each `(key, accumulator)` to `f`. The table keeps its
    /// allocation (a drained stage refills to about the same size).
    pub fn drain(&mut self, mut f: impl FnMut(K, Acc)) {
        self.top_hits = 0;
        self.key_heap = 0;
        for (k, slot) in self.map.drain() {
            f(k, slot.acc);
        }
    }

    /// Takes every key out at once, as an owned iterator of `(key, accumulator)`: the stage
    /// hands the results on a batch at a time while the table's memory goes with the iterator.
    /// The state is left empty, without an allocation.
    pub fn take_all(&mut self) -> Drained<K, Acc> {
        Drained(std::mem::take(&mut self.map).into_iter())
    }

    /// Removes the coldest keys — every key updated at most as often as the key at the
    /// [`COLD_QUANTILE`](Self::COLD_QUANTILE) of update counts, so at least that share —
    /// handing each `(key, accumulator)` to `f`. A combiner drains this way when full
    /// (least-frequently-used eviction): keys that keep coming stay and keep absorbing rows,
    /// one-off keys go downstream. Costs `O(keys held)`, paid once per that share of new keys.
    /// Removes at least one key when not empty.
    pub fn drain_cold(&mut self, mut f: impl FnMut(K, Acc)) {
        if self.map.is_empty() {
            return;
        }
        self.hits.clear();
        self.hits.extend(self.map.values().map(|s| s.hits));
        let at = (self.hits.len() as f64 * Self::COLD_QUANTILE) as usize;
        let threshold = *self.hits.select_nth_unstable(at).1;
        for (k, slot) in self.map.extract_if(|_, s| s.hits <= threshold) {
            if K::HAS_HEAP {
                self.key_heap = self.key_heap.saturating_sub(k.heap_size());
            }
            f(k, slot.acc);
        }
        self.top_hits = self.map.values().map(|s| s.hits).max().unwrap_or(0);
    }

    /// Updates of the most-updated key held (how often [`slot`](Self::slot) returned it since
    /// it was inserted; saturates at `u32::MAX`).
    pub fn top_hits(&self) -> u32 {
        self.top_hits
    }

    /// Hands every key changed since the last call to `f`, and marks it unchanged.
    pub fn changed(&mut self, mut f: impl FnMut(&K, &Acc)) {
        for (k, slot) in self.map.iter_mut().filter(|(_, s)| s.dirty) {
            slot.dirty = false;
            f(k, &slot.acc);
        }
    }

    /// Every key held: `(key, accumulator, changed since the last update, updates)`, for a
    /// snapshot.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&K, &Acc, bool, u32)> {
        self.map.iter().map(|(k, s)| (k, &s.acc, s.dirty, s.hits))
    }

    /// Puts back a key from a snapshot; a key already held (a partial of a split key from
    /// another old instance) merges into it with `agg`, its flags and counts combined. Check
    /// [`has_room_for`](Self::has_room_for) first, as for [`slot`](Self::slot).
    pub(crate) fn restore<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        key: K,
        acc: Acc,
        dirty: bool,
        hits: u32,
    ) {
        let slot = match self.map.entry(key) {
            Entry::Occupied(e) => {
                let slot = e.into_mut();
                agg.merge(&mut slot.acc, acc);
                slot.dirty |= dirty;
                slot.hits = slot.hits.saturating_add(hits);
                slot
            }
            Entry::Vacant(e) => {
                if K::HAS_HEAP {
                    self.key_heap += e.key().heap_size();
                }
                e.insert(Slot { acc, dirty, hits })
            }
        };
        self.top_hits = self.top_hits.max(slot.hits);
    }

    /// Releases the table's memory (after the final drain).
    pub fn shrink(&mut self) {
        self.map.shrink_to_fit();
    }
}

/// Every `(key, accumulator)` a state held, from [`KeyedState::take_all`].
#[derive(Debug)]
pub struct Drained<K, Acc>(std::collections::hash_map::IntoIter<K, Slot<Acc>>);

impl<K, Acc> Iterator for Drained<K, Acc> {
    type Item = (K, Acc);

    fn next(&mut self) -> Option<(K, Acc)> {
        self.0.next().map(|(k, slot)| (k, slot.acc))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, Acc> ExactSizeIterator for Drained<K, Acc> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::aggregate::Count;

    #[test]
    fn bytes_count_the_heap_keys_own() {
        let count = Count::<u8>::new();
        let mut s = KeyedState::<String, u64>::new(8);
        *s.slot(&count, "a".repeat(1000)) += 1;
        *s.slot(&count, "a".repeat(1000)) += 1;
        *s.slot(&count, "b".repeat(500)) += 1;
        let table = s.map.capacity() * (size_of::<(String, Slot<u64>)>() + 1);
        assert_eq!(s.bytes(), table + 1500);
        s.drain(|_, _| {});
        assert_eq!(
            s.bytes(),
            s.map.capacity() * (size_of::<(String, Slot<u64>)>() + 1)
        );
    }

    #[test]
    fn the_bound_is_reported_and_drain_empties() {
        let count = Count::<u8>::new();
        let mut s = KeyedState::<u32, u64>::new(2);
        for k in [1, 2, 1] {
            assert!(s.has_room_for(&k));
            *s.slot(&count, k) += 1;
        }
        assert!(!s.has_room_for(&3));
        assert!(s.has_room_for(&1));
        assert!(s.bytes() >= 2 * size_of::<(u32, Slot<u64>)>());
        let mut out = Vec::new();
        s.drain(|k, v| out.push((k, v)));
        out.sort_unstable();
        assert_eq!(out, [(1, 2), (2, 1)]);
        assert!(s.is_empty() && s.has_room_for(&3));
        s.shrink();
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn drain_cold_removes_the_least_updated_keys() {
        let count = Count::<u8>::new();
        let mut s = KeyedState::<u32, u64>::new(16);
        // Key k is updated k / 2 + 1 times: 1, 1, 2, 2, 3, 3, ...
        for k in 0..16u32 {
            for _ in 0..=k / 2 {
                *s.slot(&count, k) += 1;
            }
        }
        let mut out = Vec::new();
        s.drain_cold(|k, v| out.push((k, v)));
        out.sort_unstable();
        // The eighth quantile of 16 counts is the third smallest (2): keys with at most 2 go.
        assert_eq!(out, [(0, 1), (1, 1), (2, 2), (3, 2)]);
        assert_eq!(s.len(), 12);
        // Counts are kept: the next coldest are the 3s.
        out.clear();
        s.drain_cold(|k, v| out.push((k, v)));
        out.sort_unstable();
        assert_eq!(out, [(4, 3), (5, 3)]);
        // Equal counts: everything goes.
        let mut s = KeyedState::<u32, u64>::new(4);
        for k in 0..4 {
            *s.slot(&count, k) += 1;
        }
        out.clear();
        s.drain_cold(|k, v| out.push((k, v)));
        assert_eq!(out.len(), 4);
        assert!(s.is_empty());
        s.drain_cold(|_, _| unreachable!("nothing to drain"));
    }

    #[test]
    fn take_all_hands_out_every_key_and_leaves_nothing() {
        let count = Count::<u8>::new();
        let mut s = KeyedState::<u32, u64>::new(8);
        for k in [3, 1, 3, 2, 3] {
            *s.slot(&count, k) += 1;
        }
        let drained = s.take_all();
        assert_eq!(drained.len(), 3);
        assert!(s.is_empty() && s.bytes() == 0);
        let mut out: Vec<_> = drained.collect();
        out.sort_unstable();
        assert_eq!(out, [(1, 1), (2, 1), (3, 3)]);
    }

    #[test]
    fn changed_reports_each_update_once() {
        let count = Count::<u8>::new();
        let mut s = KeyedState::<u32, u64>::new(10);
        *s.slot(&count, 1) += 1;
        *s.slot(&count, 2) += 1;
        let mut seen = Vec::new();
        s.changed(|k, v| seen.push((*k, *v)));
        seen.sort_unstable();
        assert_eq!(seen, [(1, 1), (2, 1)]);
        *s.slot(&count, 2) += 1;
        seen.clear();
        s.changed(|k, v| seen.push((*k, *v)));
        assert_eq!(seen, [(2, 2)]);
    }
}
