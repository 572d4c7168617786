//! Timers of one time domain, per key: ordered by time, then by registration, one per key and
//! time.
//!
//! Registering a timer a key already has at that time changes nothing (it keeps its place in
//! the order), as in Flink; deleting one that does not exist is a no-op. Memory is two entries
//! per timer (the order and the index by key and time), counted by [`bytes`](TimerQueue::bytes)
//! with the heap the keys own.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::mem::size_of;

use weir_runtime::{HeapSize, Timestamp};

/// Timers by `(time, registration)`, at most one per key and time.
#[derive(Debug)]
pub(crate) struct TimerQueue<K> {
    order: BTreeMap<(Timestamp, u64), K>,
    index: HashMap<(K, Timestamp), u64, foldhash::fast::RandomState>,
    next_seq: u64,
    key_heap: usize,
}

impl<K: Hash + Eq + Clone + HeapSize> TimerQueue<K> {
    pub(crate) fn new() -> Self {
        Self {
            order: BTreeMap::new(),
            index: HashMap::default(),
            next_seq: 0,
            key_heap: 0,
        }
    }

    /// Registers a timer for `key` at `ts`; false if it was there already.
    pub(crate) fn register(&mut self, key: &K, ts: Timestamp) -> bool {
        let probe = (key.clone(), ts);
        if self.index.contains_key(&probe) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.key_heap += 2 * key.heap_size();
        self.order.insert((ts, seq), key.clone());
        self.index.insert(probe, seq);
        true
    }

    /// Deletes `key`'s timer at `ts`; false if there was none.
    pub(crate) fn delete(&mut self, key: &K, ts: Timestamp) -> bool {
        let Some(seq) = self.index.remove(&(key.clone(), ts)) else {
            return false;
        };
        self.order.remove(&(ts, seq));
        self.key_heap -= 2 * key.heap_size();
        self.shrink();
        true
    }

    /// The earliest timer's time.
    pub(crate) fn peek(&self) -> Option<Timestamp> {
        self.order.first_key_value().map(|((ts, _), _)| *ts)
    }

    /// The registration number the next timer gets: timers registered from now on compare
    /// greater or equal (see [`pop_until`](Self::pop_until)).
    pub(crate) fn mark(&self) -> u64 {
        self.next_seq
    }

    /// Removes and returns the earliest timer (time, registration number, key) if it is at or
    /// before `limit`.
    pub(crate) fn pop_until(&mut self, limit: Timestamp) -> Option<(Timestamp, u64, K)> {
        let ((ts, _), _) = self.order.first_key_value()?;
        if *ts > limit {
            return None;
        }
        let ((ts, seq), key) = self.order.pop_first()?;
        self.index.remove(&(key.clone(), ts));
        self.key_heap -= 2 * key.heap_size();
        self.shrink();
        Some((ts, seq, key))
    }

    /// Every timer, `(time, key)` in firing order, for a snapshot (registering them again in
    /// this order restores the queue).
    pub(crate) fn timers(&self) -> impl Iterator<Item = (Timestamp, &K)> {
        self.order.iter().map(|((ts, _), k)| (*ts, k))
    }

    /// Drops every timer.
    pub(crate) fn clear(&mut self) {
        self.order = BTreeMap::new();
        self.index = HashMap::default();
        self.key_heap = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Bytes held: both entries of every timer and the heap their keys own.
    pub(crate) fn bytes(&self) -> usize {
        let per =
            size_of::<(Timestamp, u64)>() + size_of::<K>() + size_of::<((K, Timestamp), u64)>() + 1;
        self.order.len() * per + self.key_heap
    }

    /// Gives the index's memory back once it is mostly empty.
    fn shrink(&mut self) {
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            self.index.shrink_to(self.index.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_and_time_is_one_timer_in_its_first_place() {
        let mut q = TimerQueue::new();
        assert!(q.register(&1u32, Timestamp(5)));
        assert!(q.register(&2u32, Timestamp(5)));
        assert!(!q.register(&1u32, Timestamp(5)));
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.pop_until(Timestamp(5)).map(|(t, _, k)| (t, k)),
            Some((Timestamp(5), 1))
        );
        assert_eq!(
            q.pop_until(Timestamp(5)).map(|(t, _, k)| (t, k)),
            Some((Timestamp(5), 2))
        );
        assert_eq!((q.len(), q.bytes()), (0, 0));
    }

    #[test]
    fn deleted_timers_do_not_fire_and_free_their_bytes() {
        let mut q = TimerQueue::new();
        q.register(&"a".to_string(), Timestamp(3));
        q.register(&"b".to_string(), Timestamp(1));
        assert!(q.delete(&"b".to_string(), Timestamp(1)));
        assert!(!q.delete(&"b".to_string(), Timestamp(1)));
        assert_eq!(q.pop_until(Timestamp(2)), None);
        assert_eq!(
            q.pop_until(Timestamp(3)).map(|(t, _, k)| (t, k)),
            Some((Timestamp(3), "a".to_string()))
        );
        assert_eq!(q.bytes(), 0);
    }
}
