//! The window state's key table: an open-addressing hash table that leaves no tombstones.
//!
//! Keys come and go all through a windowed run (a session closes and its key's entry goes;
//! the key's next row brings it back). A table that marks removed entries with tombstones —
//! as `std`'s SwissTable does when a removed entry's probe group is full — fills with them
//! under such churn, and must then rebuild; at more than half full the rebuild doubles the
//! table, so memory stepped up with the run's length although the live keys did not grow.
//! This table removes by *backward shift*, so a removal leaves the table exactly as if the
//! key had never been inserted, and its size follows the live keys alone.
//!
//! ```text
//! hashes    [u32; 2^k]            0: empty; else 32 bits of the key's hash, the top one set
//! entries   [Option<(K, V)>; 2^k] the bucket's key and value, `Some` exactly where the hash is
//!           linear probing from hash & (2^k − 1)
//! insert    Robin Hood: walking the probe sequence, an entry nearer its home bucket than the
//!           one being placed gives up its bucket and is carried on (so probe lengths stay
//!           short and a lookup stops at the first entry nearer home than itself)
//! remove    backward shift: each following entry that is not in its home bucket moves back
//!           one bucket, up to the first empty bucket or entry at home
//! grow      to twice the buckets when an insert would pass 7/8 full (as `std`'s table)
//! shrink    to fit when at most a quarter full (only when asked)
//! ```
//!
//! The hashes live apart from the entries: a probe reads the dense array of hashes (4 bytes a
//! bucket) and touches an entry only where the hash matches, and an entry holds nothing but
//! its key and value. The window state's entry — a `u64` key, its newest window's start and
//! accumulator, and a pointer to the rest — is 32 bytes, so 5 000 keys take 256 KiB of entries
//! and 32 KiB of hashes, where one array of 64-byte entries took 512 KiB, the whole of a
//! second-level cache on the machines measured (`BENCHMARKS.md`).

use std::hash::{BuildHasher, Hash};

type Hasher = foldhash::fast::RandomState;

/// The mark of an occupied bucket's hash: never 0, the empty bucket's.
const OCCUPIED: u32 = 1 << 31;

/// A hash map from `K` to `V` without tombstones (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct KeyTable<K, V> {
    hashes: Vec<u32>,
    entries: Vec<Option<(K, V)>>,
    len: usize,
    hasher: Hasher,
}

impl<K, V> Default for KeyTable<K, V> {
    fn default() -> Self {
        Self {
            hashes: Vec::new(),
            entries: Vec::new(),
            len: 0,
            hasher: Hasher::default(),
        }
    }
}

/// Entries a table of `buckets` holds before it grows.
const fn max_load(buckets: usize) -> usize {
    buckets - buckets / 8
}

impl<K: Hash + Eq, V> KeyTable<K, V> {
    /// Keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Buckets allocated.
    pub(crate) fn buckets(&self) -> usize {
        self.hashes.len()
    }

    fn mask(&self) -> usize {
        self.hashes.len().wrapping_sub(1)
    }

    fn hash(&self, key: &K) -> u32 {
        self.hasher.hash_one(key) as u32 | OCCUPIED
    }

    /// How far bucket `at`, holding an entry of `hash`, is from that entry's home.
    fn distance(&self, hash: u32, at: usize) -> usize {
        at.wrapping_sub(hash as usize) & self.mask()
    }

    /// The bucket holding `key`, if held.
    #[inline]
    fn find(&self, hash: u32, key: &K) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut at = hash as usize & mask;
        let mut dist = 0;
        loop {
            let held = self.hashes[at];
            if held == 0 {
                return None;
            }
            if held == hash && self.entries[at].as_ref().is_some_and(|(k, _)| k == key) {
                return Some(at);
            }
            if self.distance(held, at) < dist {
                return None; // Robin Hood: `key` would have taken this bucket
            }
            at = (at + 1) & mask;
            dist += 1;
        }
    }

    /// The value of `key`, if held.
    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        let at = self.find(self.hash(key), key)?;
        self.entries[at].as_ref().map(|(_, v)| v)
    }

    /// The value of `key`, if held, to change.
    #[inline]
    pub(crate) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.find(self.hash(key), key)?;
        self.entries[at].as_mut().map(|(_, v)| v)
    }

    /// The value of `key`, inserted from `make()` first if absent.
    pub(crate) fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(&key);
        let at = match self.find(hash, &key) {
            Some(at) => at,
            None => {
                if self.len + 1 > max_load(self.buckets()) {
                    self.resize((self.buckets() * 2).max(8));
                }
                let value = make();
                self.place(hash, (key, value))
            }
        };
        match self.entries[at].as_mut() {
            Some((_, value)) => value,
            None => unreachable!("the bucket found or filled above is occupied"),
        }
    }

    /// Places an entry whose key is not held, with room for it; returns its bucket.
    fn place(&mut self, mut hash: u32, entry: (K, V)) -> usize {
        let mask = self.mask();
        let mut carried = Some(entry);
        let mut at = hash as usize & mask;
        let mut dist = 0;
        let mut placed = None;
        self.len += 1;
        loop {
            let held = self.hashes[at];
            if held == 0 {
                self.hashes[at] = hash;
                self.entries[at] = carried;
                return placed.unwrap_or(at);
            }
            let theirs = self.distance(held, at);
            if theirs < dist {
                self.hashes[at] = hash;
                hash = held;
                std::mem::swap(&mut self.entries[at], &mut carried);
                placed.get_or_insert(at);
                dist = theirs;
            }
            at = (at + 1) & mask;
            dist += 1;
        }
    }

    /// Removes `key`, handing its value back.
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let mut at = self.find(self.hash(key), key)?;
        let (_, removed) = self.entries[at].take()?;
        self.hashes[at] = 0;
        self.len -= 1;
        let mask = self.mask();
        // Backward shift: pull each following entry that is away from home one bucket back.
        loop {
            let next = (at + 1) & mask;
            let held = self.hashes[next];
            if held == 0 || self.distance(held, next) == 0 {
                break;
            }
            self.hashes[at] = held;
            self.hashes[next] = 0;
            self.entries[at] = self.entries[next].take();
            at = next;
        }
        Some(removed)
    }

    /// Rebuilds into `buckets` buckets (a power of two that holds every key).
    fn resize(&mut self, buckets: usize) {
        let hashes = std::mem::take(&mut self.hashes);
        let entries = std::mem::take(&mut self.entries);
        self.len = 0;
        if buckets == 0 {
            return;
        }
        self.hashes = vec![0; buckets];
        self.entries.resize_with(buckets, || None);
        for (hash, entry) in hashes.into_iter().zip(entries) {
            if let Some(entry) = entry {
                self.place(hash, entry);
            }
        }
    }

    /// Gives memory back when at most a quarter of the buckets are used (all of it when empty).
    pub(crate) fn shrink(&mut self) {
        if self.len * 4 > self.buckets() {
            return;
        }
        let mut buckets = if self.len == 0 { 0 } else { 8 };
        while buckets != 0 && max_load(buckets) < self.len {
            buckets *= 2;
        }
        if buckets < self.buckets() {
            self.resize(buckets);
        }
    }

    /// Whether a bucket has a hash exactly where it has an entry, and every entry its key's
    /// hash.
    #[cfg(test)]
    fn hashes_match_entries(&self) -> bool {
        self.hashes.len() == self.entries.len()
            && self
                .hashes
                .iter()
                .zip(&self.entries)
                .all(|(&h, e)| match e {
                    None => h == 0,
                    Some((k, _)) => h == self.hash(k),
                })
    }

    /// Every `(key, value)` held, in no particular order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().flatten().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Get(u16),
        Shrink,
    }

    fn op() -> impl Strategy<Value = Op> {
        // A small key space, so removals and re-insertions of the same keys are frequent.
        prop_oneof![
            4 => (0u16..300, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u16..300).prop_map(Op::Remove),
            2 => (0u16..300).prop_map(Op::Get),
            1 => Just(Op::Shrink),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Against `HashMap`: every operation answers the same and the contents stay equal.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 1..600)) {
            let mut table = KeyTable::<u16, u32>::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        *table.get_or_insert_with(k, || v) = v;
                        model.insert(k, v);
                    }
                    Op::Remove(k) => prop_assert_eq!(table.remove(&k), model.remove(&k)),
                    Op::Get(k) => prop_assert_eq!(table.get(&k), model.get(&k)),
                    Op::Shrink => table.shrink(),
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert!(table.hashes_match_entries());
                prop_assert!(table.len() <= max_load(table.buckets()));
            }
            let mut held: Vec<_> = table.iter().map(|(k, v)| (*k, *v)).collect();
            held.sort_unstable();
            let mut want: Vec<_> = model.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(held, want);
        }
    }

    #[test]
    fn churn_never_grows_the_table() {
        // A steady 900 live keys out of a stream of fresh ones: each step removes the oldest
        // and inserts a new key. The buckets are sized by the live count alone.
        let mut table = KeyTable::<u64, u64>::default();
        for k in 0..900 {
            *table.get_or_insert_with(k, || 0) += 1;
        }
        let buckets = table.buckets();
        assert_eq!(buckets, 2048, "900 keys fit in 2 048 buckets at 7/8");
        for k in 900..200_000u64 {
            assert_eq!(table.remove(&(k - 900)), Some(1));
            *table.get_or_insert_with(k, || 0) += 1;
            assert_eq!(table.len(), 900);
        }
        assert_eq!(table.buckets(), buckets);
        for k in 200_000 - 900..200_000 {
            assert_eq!(table.get(&k), Some(&1));
        }
        assert_eq!(table.get(&0), None);
    }

    #[test]
    fn an_empty_bucket_with_a_boxed_value_takes_no_room_of_its_own() {
        assert_eq!(size_of::<Option<(u64, (u64, u64, Box<u8>))>>(), 32);
    }

    #[test]
    fn shrink_gives_memory_back() {
        let mut table = KeyTable::<u32, ()>::default();
        for k in 0..1000 {
            table.get_or_insert_with(k, || ());
        }
        for k in 0..990 {
            table.remove(&k);
        }
        table.shrink();
        assert_eq!(table.buckets(), 16);
        assert!((990..1000).all(|k| table.get(&k).is_some()));
        for k in 990..1000 {
            table.remove(&k);
        }
        table.shrink();
        assert_eq!(table.buckets(), 0);
    }
}
