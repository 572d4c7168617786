//! Window state read out for a snapshot and put back: every `(key, window)` slot with its
//! accumulator, its firings, and whether it has fired (kept for lateness) or is due.
//!
//! The indexes are not state: they are rebuilt from the slots, and a restored key has no head
//! until a row reaches it (the head is where its newest window's accumulator lives, not a
//! different value). A slot restored beside one of the same key and window — a partial of a
//! split key from another old instance — merges into it, sessions by overlap.

use std::hash::Hash;

use weir_runtime::HeapSize;

use super::WindowState;
use crate::keyed::aggregate::Aggregate;

/// One slot as a snapshot holds it: key, start, end, accumulator, firings, fired, due.
pub(crate) type SlotEntry<K, Acc> = (K, i64, i64, Acc, u32, bool, bool);

impl<K: Hash + Eq + Clone + HeapSize, Acc> WindowState<K, Acc> {
    /// Every slot: `(key, start, end, accumulator, firings, fired, due)`, the accumulator
    /// taken from the key's head where it lives.
    pub(crate) fn slots(&self) -> impl Iterator<Item = SlotEntry<&K, &Acc>> {
        self.slots.iter().map(|(id, slot)| {
            let acc = match &slot.acc {
                Some(acc) => acc,
                None => match self.by_key.get(&slot.key).filter(|w| w.head_is(id)) {
                    Some(windows) => &windows.head_acc,
                    None => unreachable!("a slot's accumulator is in it or in its key's head"),
                },
            };
            let fired = self.retained.contains(&(self.cleanup_of(slot.end), id));
            (
                &slot.key,
                slot.start,
                slot.end,
                acc,
                slot.firings,
                fired,
                slot.due,
            )
        })
    }

    /// Puts back a slot from a snapshot, merged with any slot of its key it meets: the same
    /// window, or (`merging`, sessions) any window it overlaps.
    pub(crate) fn restore_slot<A: Aggregate<Acc = Acc>>(
        &mut self,
        agg: &A,
        (key, start, end, acc, firings, fired, due): SlotEntry<K, Acc>,
        merging: bool,
    ) {
        let mut met = Vec::new();
        if let Some(windows) = self.by_key.get(&key) {
            if merging {
                for (_, &id) in windows.cold.by_start.range(..end).rev() {
                    if self.slots[id].end <= start {
                        break;
                    }
                    met.push(id);
                }
            } else if let Some(&id) = windows.cold.by_start.get(&start) {
                met.push(id);
            }
        }
        let (mut lo, mut hi, mut firings, mut acc) = (start, end, firings, acc);
        let (mut fired_part, mut unfired_part, mut due) = (fired, !fired, due);
        for id in met {
            let was_fired = self
                .retained
                .contains(&(self.cleanup_of(self.slots[id].end), id));
            let slot = self.remove_slot(agg, id, false);
            fired_part |= was_fired;
            unfired_part |= !was_fired;
            due |= slot.due;
            lo = lo.min(slot.start);
            hi = hi.max(slot.end);
            firings = firings.max(slot.firings);
            agg.merge(&mut acc, slot.into_acc());
        }
        // A fired window that took rows it has not emitted fires again.
        due |= fired_part && unfired_part;
        let id = self.insert(agg, key, lo, hi, acc, firings);
        if fired_part || due {
            self.pending.remove(&(self.due_time(lo, hi), id));
        }
        if fired_part {
            self.retained.insert((self.cleanup_of(hi), id));
        }
        if due {
            if let Some(slot) = self.slots.get_mut(id) {
                slot.due = true;
            }
            self.due.push(id);
        }
    }
}
