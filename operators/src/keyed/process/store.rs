//! Keyed value state with an optional processing-time time-to-live.
//!
//! One value per key. With a time-to-live, a value expires `ttl` after it was last *written*
//! (created, set, or borrowed mutably), as Flink's default `OnCreateAndWrite`; reads do not
//! extend it. An expired value is never returned (Flink's `NeverReturnExpired`) and is freed
//! when the clock passes its expiry: [`expire`](ValueStore::expire) removes every value due,
//! in expiry order, through an index ordered by expiry — memory is given back, not just hidden.
//!
//! [`bytes`](ValueStore::bytes) counts each entry's inline size, the heap its key and value own
//! (measured by [`HeapSize`] when the value is written and again after each callback that could
//! change it), and the expiry index. Entries are counted, not the table's spare capacity, and
//! the table shrinks when it falls below a quarter full, so the figure returns to zero when the
//! state is empty.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::mem::size_of;

use weir_runtime::{HeapSize, Timestamp};

#[derive(Debug)]
struct Slot<S> {
    value: S,
    /// Heap bytes the key and the value own, as last measured.
    heap: usize,
    /// When it expires and its place in the expiry index.
    expires: Option<(Timestamp, u64)>,
}

/// Values by key, with an optional time-to-live in milliseconds (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct ValueStore<K, S> {
    map: HashMap<K, Slot<S>, foldhash::fast::RandomState>,
    ttl_ms: Option<i64>,
    expiry: BTreeMap<(Timestamp, u64), K>,
    next_seq: u64,
    heap: usize,
}

impl<K: Hash + Eq + Clone + HeapSize, S: HeapSize> ValueStore<K, S> {
    pub(crate) fn new(ttl_ms: Option<i64>) -> Self {
        Self {
            map: HashMap::default(),
            ttl_ms: ttl_ms.map(|t| t.max(0)),
            expiry: BTreeMap::new(),
            next_seq: 0,
            heap: 0,
        }
    }

    fn live(&self, slot: &Slot<S>, now: Timestamp) -> bool {
        slot.expires.is_none_or(|(at, _)| at > now)
    }

    /// `key`'s value, unless it has expired by `now`.
    pub(crate) fn get(&self, key: &K, now: Timestamp) -> Option<&S> {
        self.map
            .get(key)
            .filter(|s| self.live(s, now))
            .map(|s| &s.value)
    }

    /// `key`'s value to change (a write: it restarts the time-to-live).
    pub(crate) fn get_mut(&mut self, key: &K, now: Timestamp) -> Option<&mut S> {
        if self.get(key, now).is_none() {
            self.remove(key);
            return None;
        }
        self.touch(key, now);
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    /// `key`'s value, made by `init` if it has none (a write).
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: &K,
        now: Timestamp,
        init: impl FnOnce() -> S,
    ) -> &mut S {
        if self.get(key, now).is_none() {
            self.set(key, init(), now);
        } else {
            self.touch(key, now);
        }
        match self.map.get_mut(key) {
            Some(s) => &mut s.value,
            None => unreachable!("set above"),
        }
    }

    /// Sets `key`'s value (a write).
    pub(crate) fn set(&mut self, key: &K, value: S, now: Timestamp) {
        let heap = key.heap_size() + value.heap_size();
        match self.map.get_mut(key) {
            Some(slot) => {
                self.heap = self.heap - slot.heap + heap;
                slot.heap = heap;
                slot.value = value;
            }
            None => {
                self.heap += heap;
                self.map.insert(
                    key.clone(),
                    Slot {
                        value,
                        heap,
                        expires: None,
                    },
                );
            }
        }
        self.touch(key, now);
    }

    /// Removes `key`'s value.
    pub(crate) fn remove(&mut self, key: &K) -> Option<S> {
        let slot = self.map.remove(key)?;
        self.heap -= slot.heap;
        if let Some((at, seq)) = slot.expires {
            if let Some(k) = self.expiry.remove(&(at, seq)) {
                self.heap -= k.heap_size();
            }
        }
        self.shrink();
        Some(slot.value)
    }

    /// Measures `key`'s value again (after a callback may have changed it in place).
    pub(crate) fn remeasure(&mut self, key: &K) {
        if let Some(slot) = self.map.get_mut(key) {
            let heap = key.heap_size() + slot.value.heap_size();
            self.heap = self.heap - slot.heap + heap;
            slot.heap = heap;
        }
    }

    /// Counts `bytes` more heap for `key`'s value (a row appended to a list, say), without
    /// measuring the whole value again; a write: it restarts the time-to-live.
    pub(crate) fn grow(&mut self, key: &K, bytes: usize, now: Timestamp) {
        if let Some(slot) = self.map.get_mut(key) {
            slot.heap += bytes;
            self.heap += bytes;
        }
        self.touch(key, now);
    }

    /// Restarts `key`'s time-to-live at `now`.
    fn touch(&mut self, key: &K, now: Timestamp) {
        let Some(ttl) = self.ttl_ms else { return };
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        let at = Timestamp(now.0.saturating_add(ttl));
        if let Some((old, seq)) = slot.expires {
            if old == at {
                return;
            }
            if let Some(k) = self.expiry.remove(&(old, seq)) {
                self.heap -= k.heap_size();
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        slot.expires = Some((at, seq));
        self.heap += key.heap_size();
        self.expiry.insert((at, seq), key.clone());
    }

    /// The earliest expiry.
    pub(crate) fn next_expiry(&self) -> Option<Timestamp> {
        self.expiry.first_key_value().map(|((at, _), _)| *at)
    }

    /// Frees every value expired by `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Timestamp) -> usize {
        let mut freed = 0;
        while let Some(((at, _), _)) = self.expiry.first_key_value() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.expiry.pop_first() else {
                break;
            };
            self.heap -= key.heap_size();
            if let Some(mut slot) = self.map.remove(&key) {
                slot.expires = None;
                self.heap -= slot.heap;
                freed += 1;
            }
        }
        if freed > 0 {
            self.shrink();
        }
        freed
    }

    /// Every value with its expiry, for a snapshot.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&K, &S, Option<Timestamp>)> {
        self.map
            .iter()
            .map(|(k, s)| (k, &s.value, s.expires.map(|(at, _)| at)))
    }

    /// Puts back a value from a snapshot with the expiry it had, counting `heap` bytes for its
    /// key and value (as its writer measured them); false, changing nothing, if `key` is held.
    pub(crate) fn restore(
        &mut self,
        key: K,
        value: S,
        expires: Option<Timestamp>,
        heap: usize,
    ) -> bool {
        if self.map.contains_key(&key) {
            return false;
        }
        self.heap += heap;
        let expires = expires.map(|at| {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.heap += key.heap_size();
            self.expiry.insert((at, seq), key.clone());
            (at, seq)
        });
        self.map.insert(
            key,
            Slot {
                value,
                heap,
                expires,
            },
        );
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Bytes held (see the [module docs](self)).
    pub(crate) fn bytes(&self) -> usize {
        let entry = size_of::<(K, Slot<S>)>() + 1;
        let index = size_of::<((Timestamp, u64), K)>();
        self.map.len() * entry + self.expiry.len() * index + self.heap
    }

    fn shrink(&mut self) {
        if self.map.capacity() > 64 && self.map.len() < self.map.capacity() / 4 {
            self.map.shrink_to(self.map.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_their_last_write_and_free_their_bytes() {
        let mut s = ValueStore::<String, Vec<u8>>::new(Some(10));
        s.set(&"a".into(), vec![1; 100], Timestamp(0));
        s.set(&"b".into(), vec![2; 100], Timestamp(5));
        assert!(s.bytes() > 200);
        // A read does not extend the time-to-live; a write does.
        assert!(s.get(&"a".into(), Timestamp(9)).is_some());
        s.get_mut(&"b".into(), Timestamp(8)).unwrap().push(3);
        s.remeasure(&"b".into());
        assert_eq!(s.expire(Timestamp(10)), 1);
        assert!(s.get(&"a".into(), Timestamp(10)).is_none());
        assert_eq!(s.next_expiry(), Some(Timestamp(18)));
        assert!(
            s.get(&"b".into(), Timestamp(18)).is_none(),
            "expired, not yet freed"
        );
        assert_eq!(s.expire(Timestamp(18)), 1);
        assert_eq!((s.len(), s.bytes()), (0, 0));
    }

    #[test]
    fn without_a_ttl_nothing_expires() {
        let mut s = ValueStore::<u32, u64>::new(None);
        *s.get_or_insert_with(&1, Timestamp(0), || 0) += 5;
        assert_eq!(s.expire(Timestamp(i64::MAX)), 0);
        assert_eq!(s.get(&1, Timestamp(i64::MAX)), Some(&5));
        assert_eq!(s.remove(&1), Some(5));
        assert_eq!(s.bytes(), 0);
    }
}
