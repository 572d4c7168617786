//! The window join: pairs with equal keys in the same tumbling event-time window.
//!
//! Windows are epoch-aligned, `[k·size, (k+1)·size)` (`start = ⌊ts/size⌋·size`, end
//! exclusive), as weir's windows. Each `(key, window)` buffers both sides' rows; when the
//! watermark reaches the window's end (`w ≥ end`: every row of the window has arrived) the
//! window emits every pair of its left and right rows — windows in order of their end — and is
//! freed, as Flink's window join fires. A window with rows of one side only emits nothing.
//!
//! **Late rows.** A row whose window has already fired (`w ≥ end`) is late, as for weir's
//! windows: it is not joined and becomes a dead letter with the reason
//! [`LATE_ROW`](super::LATE_ROW). A row behind the watermark whose window is still open is
//! joined as usual.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::mem::size_of;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_runtime::{Data, InputPort, Operator, OperatorError, Output, StateSize, Timestamp};

use super::{late, row_bytes, JoinKeys, JoinSide, Side};
use crate::keyed::process::END_OF_TIME;
use crate::snapshot::{
    decode_group, decode_instance, KeyGrouping, KeyedSnapshot, SnapshotError, SnapshotHooks,
    SnapshotOut,
};

type Bucket<A, B> = (Vec<A>, Vec<B>);

/// The window-join operator (see the [module docs](self)); built by
/// [`KeyedJoin::window`](super::KeyedJoin::window).
pub struct WindowJoin<A, B, K, KA, KB, TA, TB> {
    keys: JoinKeys<K, KA, KB>,
    size: i64,
    left_time: TA,
    right_time: TB,
    windows: HashMap<(K, Timestamp), Bucket<A, B>, foldhash::fast::RandomState>,
    /// The keys with an open window, by the window's end.
    ends: BTreeMap<Timestamp, Vec<K>>,
    watermark: Option<Timestamp>,
    row_bytes: usize,
    /// Heap the keys own, in the window map and in `ends`.
    key_heap: usize,
    snapshots: Option<SnapshotHooks<Self>>,
}

impl<A, B, K, KA, KB, TA, TB> std::fmt::Debug for WindowJoin<A, B, K, KA, KB, TA, TB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowJoin")
            .field("size", &self.size)
            .field("watermark", &self.watermark)
            .field("windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

impl<A, B, K, KA, KB, TA, TB> WindowJoin<A, B, K, KA, KB, TA, TB>
where
    A: Data + Clone,
    B: Data + Clone,
    K: Hash + Eq + Clone + Data,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
    TA: Fn(&A) -> Timestamp + Send + 'static,
    TB: Fn(&B) -> Timestamp + Send + 'static,
{
    /// A window join of rows keyed by `keys` in tumbling windows of `size_ms` (at least 1).
    pub fn new(keys: JoinKeys<K, KA, KB>, size_ms: i64, left_time: TA, right_time: TB) -> Self {
        Self {
            keys,
            size: size_ms.max(1),
            left_time,
            right_time,
            windows: HashMap::default(),
            ends: BTreeMap::new(),
            watermark: None,
            row_bytes: 0,
            key_heap: 0,
            snapshots: None,
        }
    }

    /// Makes the join write its state into checkpoints and read it back, keys filed by
    /// `grouping` (that of the keyed edge in front of it).
    pub fn with_snapshots(mut self, grouping: KeyGrouping) -> Self
    where
        Self: KeyedSnapshot,
    {
        self.snapshots = Some(SnapshotHooks::new(grouping));
        self
    }

    /// The window `[start, end)` of `t`.
    fn window_of(&self, t: Timestamp) -> (Timestamp, Timestamp) {
        let start =
            t.0.div_euclid(self.size)
                .checked_mul(self.size)
                .unwrap_or(i64::MIN);
        (Timestamp(start), Timestamp(start.saturating_add(self.size)))
    }

    /// The bucket of `key`'s window of `t`, or the late dead letter if it has fired.
    fn bucket(
        &mut self,
        side: Side,
        key: K,
        t: Timestamp,
    ) -> Result<&mut Bucket<A, B>, weir_runtime::DeadLetter> {
        let (start, end) = self.window_of(t);
        if let Some(w) = self.watermark.filter(|w| *w >= end) {
            return Err(late(side, t, w));
        }
        let slot = (key, start);
        if !self.windows.contains_key(&slot) {
            self.key_heap += 2 * slot.0.heap_size();
            self.ends.entry(end).or_default().push(slot.0.clone());
            self.windows.insert(slot.clone(), (Vec::new(), Vec::new()));
        }
        match self.windows.get_mut(&slot) {
            Some(b) => Ok(b),
            None => unreachable!("inserted above"),
        }
    }

    /// Fires and frees every window that ends at or before `watermark`.
    fn advance(&mut self, watermark: Timestamp, out: &mut Output<Vec<(A, B)>>) {
        let watermark = self.watermark.map_or(watermark, |w| w.max(watermark));
        self.watermark = Some(watermark);
        while let Some(entry) = self.ends.first_entry() {
            if *entry.key() > watermark {
                break;
            }
            let end = *entry.key();
            let start = Timestamp(end.0.saturating_sub(self.size));
            for key in entry.remove() {
                self.key_heap -= 2 * key.heap_size();
                let Some((left, right)) = self.windows.remove(&(key, start)) else {
                    continue;
                };
                self.row_bytes -= left.iter().map(row_bytes).sum::<usize>()
                    + right.iter().map(row_bytes).sum::<usize>();
                for a in &left {
                    for b in &right {
                        out.push((a.clone(), b.clone()));
                    }
                }
            }
        }
        if self.windows.capacity() > 64 && self.windows.len() < self.windows.capacity() / 4 {
            self.windows.shrink_to(self.windows.len() * 2);
        }
    }
}

impl<A, B, K, KA, KB, TA, TB> Operator for WindowJoin<A, B, K, KA, KB, TA, TB>
where
    A: Data + Clone,
    B: Data + Clone,
    K: Hash + Eq + Clone + Data,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
    TA: Fn(&A) -> Timestamp + Send + 'static,
    TB: Fn(&B) -> Timestamp + Send + 'static,
{
    type Input = Vec<JoinSide<A, B>>;
    type Output = Vec<(A, B)>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<JoinSide<A, B>>,
        out: &mut Output<Vec<(A, B)>>,
    ) -> Result<(), OperatorError> {
        for row in batch {
            match row {
                JoinSide::Left(a) => {
                    let (t, key) = ((self.left_time)(&a), (self.keys.left)(&a));
                    let bytes = row_bytes(&a);
                    match self.bucket(Side::Left, key, t) {
                        Ok(bucket) => bucket.0.push(a),
                        Err(dead) => {
                            out.dead_letter(dead);
                            continue;
                        }
                    }
                    self.row_bytes += bytes;
                }
                JoinSide::Right(b) => {
                    let (t, key) = ((self.right_time)(&b), (self.keys.right)(&b));
                    let bytes = row_bytes(&b);
                    match self.bucket(Side::Right, key, t) {
                        Ok(bucket) => bucket.1.push(b),
                        Err(dead) => {
                            out.dead_letter(dead);
                            continue;
                        }
                    }
                    self.row_bytes += bytes;
                }
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Vec<(A, B)>>,
    ) -> Result<(), OperatorError> {
        self.advance(watermark, out);
        out.watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Vec<(A, B)>>) -> Result<(), OperatorError> {
        // The end of input is the watermark at +∞: every open window fires.
        self.advance(END_OF_TIME, out);
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        let entry = size_of::<((K, Timestamp), Bucket<A, B>)>() + 1 + size_of::<K>();
        Some(StateSize {
            keys: self.windows.len() as u64,
            bytes: (self.row_bytes + self.windows.len() * entry + self.key_heap) as u64,
            hottest_key_updates: 0,
        })
    }

    /// The pairs the open windows would emit.
    fn held_rows(&self) -> u64 {
        self.windows
            .values()
            .map(|(l, r)| (l.len() * r.len()) as u64)
            .sum()
    }

    fn holds_rows(&self) -> bool {
        true
    }

    crate::snapshot::snapshot_hooks!(snapshots);
}

/// A window join's state in a checkpoint: per key group, each open `(key, window)` with the
/// rows of both sides in arrival order; as instance state, the watermark (restored as the
/// highest of the old instances'). A restored join fires the same pairs and reports the same
/// state. Keys are hash-routed; a window met in two snapshots keeps the rows of both.
impl<A, B, K, KA, KB, TA, TB> KeyedSnapshot for WindowJoin<A, B, K, KA, KB, TA, TB>
where
    A: Data + Clone + Serialize + DeserializeOwned,
    B: Data + Clone + Serialize + DeserializeOwned,
    K: Hash + Eq + Clone + Data + Serialize + DeserializeOwned,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
    TA: Fn(&A) -> Timestamp + Send + 'static,
    TB: Fn(&B) -> Timestamp + Send + 'static,
{
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError> {
        let grouping = out.grouping();
        out.keyed(self.windows.iter().map(|((key, start), (left, right))| {
            (grouping.group(key), (key, start.0, left, right))
        }))?;
        out.instance(&self.watermark.map(|w| w.0))
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let windows: Vec<(K, i64, Vec<A>, Vec<B>)> = decode_group(group, bytes)?;
        for (key, start, left, right) in windows {
            let slot = (key, Timestamp(start));
            if !self.windows.contains_key(&slot) {
                self.key_heap += 2 * slot.0.heap_size();
                let end = Timestamp(start.saturating_add(self.size));
                self.ends.entry(end).or_default().push(slot.0.clone());
                self.windows.insert(slot.clone(), (Vec::new(), Vec::new()));
            }
            self.row_bytes += left.iter().map(row_bytes).sum::<usize>()
                + right.iter().map(row_bytes).sum::<usize>();
            if let Some(bucket) = self.windows.get_mut(&slot) {
                bucket.0.extend(left);
                bucket.1.extend(right);
            }
        }
        Ok(())
    }

    fn restore_instance(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let watermark: Option<i64> = decode_instance(bytes)?;
        if let Some(w) = watermark.map(Timestamp) {
            self.watermark = Some(self.watermark.map_or(w, |m| m.max(w)));
        }
        Ok(())
    }
}
