//! Per-instance window state: one accumulator per `(key, window)`, indexed by key, by end
//! (to fire in end order) and by cleanup time (to free behind the watermark).
//!
//! ```text
//! slots     id → Slot { key, start, end, acc, firings, bytes }   (a slab: ids are indexes)
//! by_key    key → { head start, head acc, a key's windows, disjoint for sessions; the head
//!                   box { head id,          is its newest window a row reached, accumulator
//!                         start → id } }    inline; a table without tombstones (`table.rs`),
//!                                          so keys that come and go never make it grow
//! pending   { (end, id) }                  not fired yet
//! retained  { (end + lateness, id) }       fired, kept for lateness updates
//! due       [id]                           changed while their end is behind the watermark
//! ```
//!
//! Every slot is in exactly one of `pending`, `retained` or `due` (a due slot may also be in
//! `retained`, being an update of a window that fired).
//!
//! **The head.** Rows about in time order keep adding to the newest window of their key. That
//! window's accumulator lives in the key's table entry, not in its slot, so such a row touches
//! one entry of one table: the entry holds the window's start (to recognise it) and its
//! accumulator, and nothing else a row in order reads — the head's slot id and the key's
//! ordered map of windows are boxed apart — so with a `u64` key and accumulator the entry is
//! 32 bytes. The time the head falls due (to tell an update behind the watermark, which must
//! mark its slot) is not stored: a window is known by its start, so the row's own `[start,
//! end)` gives it. A key without a head has the start [`NO_HEAD`] and an `agg.init()` in its
//! place; a window starting at `i64::MIN` (clipped at the end of time) never becomes the head.
//! A slot's `acc` is `None` exactly while its key's head holds it. A row for another window of
//! the key takes the slow way (the key's ordered map, then the slot) and becomes the head only
//! if its window is newer; whatever hands a slot out (firing, removal, draining) first brings
//! its accumulator back from the head. The owner bounds the slot count
//! ([`WindowState::len`]); the byte figure counts each slot's inline size, its key's heap and
//! its accumulator as [`Aggregate::acc_bytes`] measured it when the slot was made or merged, so
//! it returns to zero when the last slot goes. Maps that empty out give their memory back.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hash;

use weir_runtime::HeapSize;

use super::table::KeyTable;
use crate::keyed::aggregate::Aggregate;

/// One `(key, window)` accumulator.
#[derive(Debug)]
pub(crate) struct Slot<K, Acc> {
    pub(crate) key: K,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// `None` while its key's head holds it (see the [module docs](self)).
    acc: Option<Acc>,
    /// Results emitted for this window so far (for a merged session: the most of its parts).
    pub(crate) firings: u32,
    /// Whether it is listed in `due`.
    due: bool,
    /// Bytes counted for it in [`WindowState::bytes`].
    bytes: usize,
}

impl<K, Acc> Slot<K, Acc> {
    /// The window's accumulator.
    pub(crate) fn acc(&self) -> &Acc {
        match &self.acc {
            Some(acc) => acc,
            None => unreachable!("a slot handed out holds its accumulator"),
        }
    }

    fn into_acc(self) -> Acc {
        match self.acc {
            Some(acc) => acc,
            None => unreachable!("a slot handed out holds its accumulator"),
        }
    }
}

/// Window accumulators of one instance (see the [module docs](self)).
#[derive(Debug)]
pub(crate) struct WindowState<K, Acc> {
    slots: Slab<Slot<K, Acc>>,
    by_key: KeyTable<K, KeyWindows<Acc>>,
    pending: BTreeSet<(i64, u64)>,
    retained: BTreeSet<(i64, u64)>,
    due: Vec<u64>,
    /// Scratch of [`fire`](Self::fire): the windows it emits, sorted. Kept between calls, so
    /// a firing of thousands of windows does not grow a new vector every time.
    ready: Vec<(i64, i64, u64)>,
    bytes: usize,
    lateness: i64,
    /// Whether a slot is due once the watermark reaches its start rather than its end.
    due_at_start: bool,
}

/// The head start of a key without a head.
const NO_HEAD: i64 = i64::MIN;

/// A key's table entry: its head — the newest window a row reached, with its accumulator —
/// and, boxed, the rest (see the [module docs](self)).
#[derive(Debug)]
struct KeyWindows<Acc> {
    /// The head's start, or [`NO_HEAD`].
    head_start: i64,
    /// The head's accumulator; without a head, a fresh one that counts for nothing.
    head_acc: Acc,
    /// Boxed: a row in time order reads only the head, so the entry stays small (with a `u64`
    /// key and accumulator, 32 bytes in the key table).
    cold: Box<ColdWindows>,
}

/// What of a key's entry only the slow way reads.
#[derive(Debug, Default)]
struct ColdWindows {
    /// The head's slot; `Some` exactly when the head start is not [`NO_HEAD`].
    head: Option<u64>,
    by_start: BTreeMap<i64, u64>,
}

impl<Acc> KeyWindows<Acc> {
    fn new(fresh: Acc) -> Self {
        Self {
            head_start: NO_HEAD,
            head_acc: fresh,
            cold: Box::default(),
        }
    }

    /// Whether the head is slot `id`.
    fn head_is(&self, id: u64) -> bool {
        self.cold.head == Some(id)
    }

    /// Takes the head's accumulator out, leaving the key without a head.
    fn take_head(&mut self, fresh: Acc) -> Acc {
        self.head_start = NO_HEAD;
        self.cold.head = None;
        std::mem::replace(&mut self.head_acc, fresh)
    }
}

/// Inline bytes of one slot and its index entries.
const fn slot_overhead<K, Acc>() -> usize {
    size_of::<Option<Slot<K, Acc>>>()
        + size_of::<(K, i64, u64)>()
        + size_of::<Option<(K, KeyWindows<Acc>)>>()
        + 3 * size_of::<(i64, u64)>()
}

/// Values by id, where an id is an index into a vector and freed ids are reused: a slot is
/// reached in one step on the per-row path. Its memory goes back when it empties.
#[derive(Debug)]
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u64>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn insert(&mut self, item: T) -> u64 {
        self.len += 1;
        match self.free.pop() {
            Some(id) => {
                self.items[id as usize] = Some(item);
                id
            }
            None => {
                self.items.push(Some(item));
                (self.items.len() - 1) as u64
            }
        }
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        self.items.get_mut(id as usize)?.as_mut()
    }

    fn remove(&mut self, id: u64) -> Option<T> {
        let item = self.items.get_mut(id as usize)?.take()?;
        self.len -= 1;
        if self.len == 0 {
            self.items = Vec::new();
            self.free = Vec::new();
        } else {
            self.free.push(id);
        }
        Some(item)
    }

    fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(id, item)| Some((id as u64, item.as_ref()?)))
    }
}

impl<T> std::ops::Index<u64> for Slab<T> {
    type Output = T;

    fn index(&self, id: u64) -> &T {
        match self.items.get(id as usize) {
            Some(Some(item)) => item,
            _ => panic!("slab id {id} is not held"),
        }
    }
}

impl<K: Hash + Eq + Clone + HeapSize, Acc> WindowState<K, Acc> {
    /// Empty state whose fired windows are kept `lateness` ms past their end.
    pub(crate) fn new(lateness: i64) -> Self {
        Self {
            slots: Slab::default(),
            by_key: KeyTable::default(),
            pending: BTreeSet::new(),
            retained: BTreeSet::new(),
            due: Vec::new(),
            ready: Vec::new(),
            bytes: 0,
            lateness,
            due_at_start: false,
        }
    }

    /// Makes slots due once the watermark reaches their *start*: a partial stage of session
    /// windows hands a session on that early, so that no instance still holds a piece of a
    /// session when the stage downstream fires it (a row that overlaps it arrives with an
    /// event time below its end, and so, by the watermark's promise, before a watermark past
    /// its start).
    pub(crate) fn due_at_start(mut self) -> Self {
        self.due_at_start = true;
        self
    }

    /// When a slot over `[start, end)` is due.
    fn due_time(&self, start: i64, end: i64) -> i64 {
        if self.due_at_start {
            start
        } else {
            end
        }
    }

    /// `(key, window)` slots held.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Slots that have not fired yet, plus changed ones waiting to be emitted.
    pub(crate) fn unfired(&self) -> usize {
        self.pending.len() + self.due.len()
    }

    /// Whether changed windows behind the watermark wait to be emitted.
    pub(crate) fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// Bytes held (see the [module docs](self)).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// When a window ending at `end` is cleaned up.
    pub(crate) fn cleanup_of(&self, end: i64) -> i64 {
        end.saturating_add(self.lateness)
    }

    /// Whether `key` holds a window overlapping `[start, end)`.
    pub(crate) fn overlaps(&self, key: &K, start: i64, end: i64) -> bool {
        self.by_key.get(key).is_some_and(|windows| {
            windows
                .cold
                .by_start
                .range(..end)
                .next_back()
                .is_some_and(|(_, id)| self.slots[*id].end > start)
        })
    }

    /// Hands `f` the accumulator of `key`'s window `[start, end)`, made from `agg.init()` if
    /// absent, and marks the window changed. `watermark` decides whether it waits to fire or
    /// is due now.
    #[inline]
    pub(crate) fn update<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        key: &K,
        (start, end): (i64, i64),
        watermark: i64,
        f: impl FnOnce(&mut Acc),
    ) {
        // The way of a row about in time order: the key's newest window, in its entry.
        let pending = self.due_time(start, end) > watermark;
        if let Some(windows) = self.by_key.get_mut(key) {
            if windows.head_start == start && start != NO_HEAD && pending {
                f(&mut windows.head_acc);
                return;
            }
        }
        let (id, in_head) = self.locate(agg, key, start, end);
        self.touch(id, watermark);
        let acc = if in_head {
            self.by_key.get_mut(key).map(|w| &mut w.head_acc)
        } else {
            self.slots.get_mut(id).and_then(|s| s.acc.as_mut())
        };
        match acc {
            Some(acc) => f(acc),
            None => unreachable!("a window's accumulator is in its slot or its key's head"),
        }
    }

    /// The id of `key`'s window `[start, end)`, inserted if absent, and whether the key's head
    /// holds it: it becomes the head if it is newer than the head (or there is none).
    fn locate<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        key: &K,
        start: i64,
        end: i64,
    ) -> (u64, bool) {
        // An older window, or the head itself: one probe of the key table.
        if let Some(windows) = self.by_key.get(key) {
            if let (Some(&id), Some(_)) = (windows.cold.by_start.get(&start), windows.cold.head) {
                if windows.head_start >= start {
                    return (id, windows.head_is(id));
                }
            }
        }
        let found = self
            .by_key
            .get(key)
            .and_then(|w| w.cold.by_start.get(&start).copied());
        let id = match found {
            Some(id) => id,
            None => self.insert(agg, key.clone(), start, end, agg.init(), 0),
        };
        let Some(windows) = self.by_key.get_mut(key) else {
            unreachable!("the key holds the window found or inserted above")
        };
        if start == NO_HEAD || (windows.cold.head.is_some() && windows.head_start >= start) {
            return (id, false); // a new window older than the head, or never one
        }
        // Newer than the head: the old head's accumulator goes back to its slot, this one's
        // comes out of it.
        let Some(slot) = self.slots.get_mut(id) else {
            unreachable!("the window found or inserted above is held")
        };
        let Some(acc) = slot.acc.take() else {
            unreachable!("a window not in the head holds its accumulator")
        };
        let old = std::mem::replace(&mut windows.head_acc, acc);
        if let Some(old_id) = windows.cold.head.replace(id) {
            if let Some(slot) = self.slots.get_mut(old_id) {
                slot.acc = Some(old);
            }
        }
        windows.head_start = start;
        (id, true)
    }

    /// Merges `acc` over `[start, end)` into `key`'s windows: into the same window (fixed
    /// windows), or, for sessions (`merging`), into every window it overlaps, which become one.
    pub(crate) fn absorb<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        key: &K,
        (start, end): (i64, i64),
        acc: Acc,
        merging: bool,
        watermark: i64,
    ) {
        if !merging {
            self.update(agg, key, (start, end), watermark, |slot| {
                agg.merge(slot, acc)
            });
            return;
        }
        let mut overlapping = Vec::new();
        if let Some(windows) = self.by_key.get(key) {
            for (_, &id) in windows.cold.by_start.range(..end).rev() {
                if self.slots[id].end <= start {
                    break; // disjoint and sorted: every earlier one ends earlier still
                }
                overlapping.push(id);
            }
        }
        let (mut lo, mut hi, mut firings, mut merged) = (start, end, 0, acc);
        for id in overlapping {
            // The key keeps its table entry: the merged window goes right back in. Removing
            // and re-inserting it for every row that extends a session left a tombstone per
            // row, and the table grew whenever they ran out its spare room.
            let slot = self.remove_slot(agg, id, false);
            lo = lo.min(slot.start);
            hi = hi.max(slot.end);
            firings = firings.max(slot.firings);
            agg.merge(&mut merged, slot.into_acc());
        }
        let id = self.insert(agg, key.clone(), lo, hi, merged, firings);
        self.touch(id, watermark);
    }

    fn insert<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        key: K,
        start: i64,
        end: i64,
        acc: Acc,
        firings: u32,
    ) -> u64 {
        let bytes = slot_overhead::<K, Acc>() + 2 * key.heap_size() + agg.acc_bytes(&acc);
        self.bytes += bytes;
        let by_key = self
            .by_key
            .get_or_insert_with(key.clone(), || KeyWindows::new(agg.init()));
        let id = self.slots.insert(Slot {
            key,
            start,
            end,
            acc: Some(acc),
            firings,
            due: false,
            bytes,
        });
        by_key.cold.by_start.insert(start, id);
        self.pending.insert((self.due_time(start, end), id));
        id
    }

    /// Marks a slot changed: one that waits for the watermark stays pending; one whose end the
    /// watermark passed is due now.
    fn touch(&mut self, id: u64, watermark: i64) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        let due_time = if self.due_at_start {
            slot.start
        } else {
            slot.end
        };
        if due_time <= watermark && !slot.due {
            slot.due = true;
            self.pending.remove(&(due_time, id));
            self.due.push(id);
        }
    }

    /// Brings a slot's accumulator back from its key's head, if the head holds it.
    fn settle<A: Aggregate<Acc = Acc>>(&mut self, agg: &A, id: u64) {
        let Some(slot) = self.slots.get_mut(id) else {
            return;
        };
        if slot.acc.is_some() {
            return;
        }
        if let Some(windows) = self.by_key.get_mut(&slot.key).filter(|w| w.head_is(id)) {
            slot.acc = Some(windows.take_head(agg.init()));
        }
    }

    /// Frees a slot and hands it out, its accumulator brought back from the head.
    fn remove<A: Aggregate<Acc = Acc>>(&mut self, agg: &A, id: u64) -> Slot<K, Acc> {
        self.remove_slot(agg, id, true)
    }

    /// [`remove`](Self::remove); the key's table entry goes too when its last window does,
    /// unless not `drop_key` (a merged window of the same key is about to take its place).
    fn remove_slot<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        id: u64,
        drop_key: bool,
    ) -> Slot<K, Acc> {
        let Some(mut slot) = self.slots.remove(id) else {
            unreachable!("ids in the indexes name held slots")
        };
        self.bytes -= slot.bytes;
        let cleanup = self.cleanup_of(slot.end);
        self.pending
            .remove(&(self.due_time(slot.start, slot.end), id));
        self.retained.remove(&(cleanup, id));
        if slot.due {
            self.due.retain(|&d| d != id);
        }
        if let Some(windows) = self.by_key.get_mut(&slot.key) {
            if windows.head_is(id) {
                slot.acc = Some(windows.take_head(agg.init()));
            }
            windows.cold.by_start.remove(&slot.start);
            if drop_key && windows.cold.by_start.is_empty() {
                self.by_key.remove(&slot.key);
            }
        }
        if drop_key {
            self.shrink();
        }
        slot
    }

    /// Gives memory back once the key table is mostly empty (the slab gives its own back when
    /// it empties).
    fn shrink(&mut self) {
        if self.by_key.buckets() > 64 {
            self.by_key.shrink();
        }
    }

    /// Hands `emit` every slot due to fire — pending ones whose end (or start, see
    /// [`due_at_start`](Self::due_at_start)) is at or behind `watermark`, and changed ones
    /// already behind it — in end order, then frees the windows
    /// whose cleanup time the watermark reached. `keep` says whether a fired slot is kept for
    /// lateness updates (a final stage) or handed on for good (a partial stage).
    pub(crate) fn fire<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        watermark: i64,
        keep: bool,
        mut emit: impl FnMut(&mut Slot<K, Acc>),
    ) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        for id in self.due.drain(..) {
            ready.push((self.slots[id].end, self.slots[id].start, id));
        }
        while let Some(&(due_time, id)) = self.pending.first() {
            if due_time > watermark {
                break;
            }
            self.pending.pop_first();
            ready.push((self.slots[id].end, self.slots[id].start, id));
        }
        ready.sort_unstable();
        for &(end, _, id) in &ready {
            let cleanup = self.cleanup_of(end);
            if !keep || cleanup <= watermark {
                // Fired for the last time: freed first, so its accumulator is at hand.
                let mut slot = self.remove(agg, id);
                slot.due = false;
                emit(&mut slot);
                continue;
            }
            self.settle(agg, id);
            let Some(slot) = self.slots.get_mut(id) else {
                continue;
            };
            slot.due = false;
            emit(slot);
            slot.firings = slot.firings.saturating_add(1);
            self.retained.insert((cleanup, id));
        }
        if self.slots.len() > 0 {
            self.ready = ready;
        }
        while let Some(&(cleanup, id)) = self.retained.first() {
            if cleanup > watermark {
                break;
            }
            self.remove(agg, id);
        }
    }

    /// Hands `emit` every slot and empties the state: pending ones in end order (a partial
    /// stage at its bound).
    pub(crate) fn drain<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        mut emit: impl FnMut(Slot<K, Acc>),
    ) {
        let mut ids: Vec<(i64, u64)> = self.slots.iter().map(|(id, s)| (s.end, id)).collect();
        ids.sort_unstable();
        for (_, id) in ids {
            let slot = self.remove(agg, id);
            emit(slot);
        }
        self.by_key.shrink();
    }
}

pub(crate) mod snapshot;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyed::aggregate::Count;

    #[test]
    fn fires_in_end_order_and_frees_behind_cleanup() {
        let count = Count::<()>::new();
        let mut state = WindowState::<u8, u64>::new(5);
        for (key, start) in [(1u8, 20), (2, 0), (1, 0), (2, 10)] {
            state.update(&count, &key, (start, start + 10), i64::MIN, |n| *n += 1);
        }
        assert_eq!(state.len(), 4);
        let mut fired = Vec::new();
        state.fire(&count, 20, true, |s| {
            fired.push((s.key, s.start, s.firings))
        });
        assert_eq!(
            fired,
            [(2, 0, 0), (1, 0, 0), (2, 10, 0)],
            "by end, start, arrival"
        );
        assert_eq!(
            state.len(),
            2,
            "both [0, 10) are freed at 15; [10, 20) is kept to 25"
        );
        // An update of a fired window is due at once, and fires again with a higher count.
        state.update(&count, &2, (10, 20), 20, |n| *n += 1);
        fired.clear();
        state.fire(&count, 20, true, |s| {
            fired.push((s.key, s.start, s.firings))
        });
        assert_eq!(fired, [(2, 10, 1)]);
        state.fire(&count, i64::MAX, true, |s| {
            fired.push((s.key, s.start, s.firings))
        });
        assert_eq!(state.len(), 0);
        assert_eq!(state.bytes(), 0);
    }

    #[test]
    fn a_u64_keys_entry_is_32_bytes() {
        assert_eq!(size_of::<Option<(u64, KeyWindows<u64>)>>(), 32);
    }

    #[test]
    fn a_head_handed_out_takes_no_more_rows() {
        let count = Count::<()>::new();
        let mut state = WindowState::<u8, u64>::new(0);
        for _ in 0..3 {
            state.update(&count, &1, (0, 10), i64::MIN, |n| *n += 1);
        }
        let mut drained = Vec::new();
        state.drain(&count, |s| drained.push((s.key, s.start, *s.acc())));
        assert_eq!(drained, [(1, 0, 3)]);
        // The same window again (a partial stage at its bound starts over): a fresh count.
        state.update(&count, &1, (0, 10), i64::MIN, |n| *n += 1);
        let mut fired = Vec::new();
        state.fire(&count, i64::MAX, true, |s| {
            fired.push((s.key, s.start, *s.acc()))
        });
        assert_eq!(fired, [(1, 0, 1)]);
        assert_eq!(state.bytes(), 0);
    }

    #[test]
    fn a_window_at_the_start_of_time_is_never_the_head() {
        let count = Count::<()>::new();
        let mut state = WindowState::<u8, u64>::new(0);
        let first = (i64::MIN, i64::MIN + 10);
        state.update(&count, &1, first, i64::MIN, |n| *n += 1);
        state.update(&count, &1, first, i64::MIN, |n| *n += 1);
        state.update(&count, &1, (0, 10), i64::MIN, |n| *n += 1);
        state.update(&count, &1, first, i64::MIN, |n| *n += 1);
        let mut fired = Vec::new();
        state.fire(&count, i64::MAX, true, |s| fired.push((s.start, *s.acc())));
        assert_eq!(fired, [(i64::MIN, 3), (0, 1)]);
        assert_eq!(state.len(), 0);
    }

    #[test]
    fn sessions_merge_what_overlaps_and_nothing_adjacent() {
        let count = Count::<()>::new();
        let mut state = WindowState::<u8, u64>::new(0);
        state.absorb(&count, &1, (0, 10), 1, true, i64::MIN);
        state.absorb(&count, &1, (10, 20), 1, true, i64::MIN); // adjacent: separate
        state.absorb(&count, &1, (30, 40), 1, true, i64::MIN);
        assert_eq!(state.len(), 3);
        state.absorb(&count, &1, (15, 35), 1, true, i64::MIN); // bridges the last two
        assert_eq!(state.len(), 2);
        assert!(state.overlaps(&1, 39, 50) && !state.overlaps(&1, 40, 50));
        let mut fired = Vec::new();
        state.fire(&count, i64::MAX, true, |s| {
            fired.push((s.start, s.end, *s.acc()))
        });
        assert_eq!(fired, [(0, 10, 1), (10, 40, 3)]);
        assert_eq!(state.bytes(), 0);
    }
}
