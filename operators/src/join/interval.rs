//! The interval join: pairs `(a, b)` with equal keys and `a.ts ∈ [b.ts + lo, b.ts + hi]`.
//!
//! As Flink's interval join: both bounds inclusive, `lo ≤ hi`, either may be negative. A pair is
//! emitted once, when the second of its two rows arrives (each side is buffered by key and
//! event time, and an arriving row is matched against the other side's buffer by a range
//! lookup).
//!
//! **Freeing.** A left row at `t` can only match right rows at `t - hi ..= t - lo`; every right
//! row still to come is at or after the watermark `w`, so the left row is freed once
//! `t - lo < w`. A right row at `t` matches left rows at `t + lo ..= t + hi`, and is freed once
//! `t + hi < w`. A row that arrives already past that point is matched and not buffered.
//!
//! **Late rows** (`ts < w`) are not joined, as Flink drops them, and become dead letters with
//! the reason [`LATE_ROW`](super::LATE_ROW) (see the [join docs](super)).

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

/// The bounds of an interval join: a left row at `ta` joins a right row at `tb` when
/// `tb + lo ≤ ta ≤ tb + hi` (milliseconds, inclusive).
///
/// # Examples
///
/// ```
/// use weir_operators::join::IntervalBounds;
///
/// let within_a_second_after = IntervalBounds::new(0, 1_000);
/// assert_eq!((within_a_second_after.lo(), within_a_second_after.hi()), (0, 1_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalBounds {
    lo: i64,
    hi: i64,
}

impl IntervalBounds {
    /// Bounds `lo ..= hi`, in milliseconds.
    ///
    /// # Panics
    ///
    /// If `lo > hi` (no pair could ever match).
    pub fn new(lo: i64, hi: i64) -> Self {
        assert!(
            lo <= hi,
            "an interval join's lower bound ({lo} ms) must not exceed its upper bound ({hi} ms)"
        );
        Self { lo, hi }
    }

    /// The lower bound, ms.
    pub fn lo(&self) -> i64 {
        self.lo
    }

    /// The upper bound, ms.
    pub fn hi(&self) -> i64 {
        self.hi
    }
}

/// One key's buffered rows, by event time.
struct Buffers<A, B> {
    left: BTreeMap<Timestamp, Vec<A>>,
    right: BTreeMap<Timestamp, Vec<B>>,
}

/// The interval-join operator (see the [module docs](self)); built by
/// [`KeyedJoin::interval`](super::KeyedJoin::interval).
pub struct IntervalJoin<A, B, K, KA, KB, TA, TB> {
    keys: JoinKeys<K, KA, KB>,
    bounds: IntervalBounds,
    left_time: TA,
    right_time: TB,
    buffers: HashMap<K, Buffers<A, B>, foldhash::fast::RandomState>,
    /// Buckets `(side, key, event time)` by the time after which they are freed.
    cleanup: BTreeMap<Timestamp, Vec<(Side, K, Timestamp)>>,
    watermark: Option<Timestamp>,
    /// Bytes of the buffered rows.
    row_bytes: usize,
    /// Buckets held (each with one cleanup entry).
    buckets: usize,
    /// Heap the keys own, in the buffer map and in the cleanup entries.
    key_heap: usize,
    snapshots: Option<SnapshotHooks<Self>>,
}

impl<A, B, K, KA, KB, TA, TB> std::fmt::Debug for IntervalJoin<A, B, K, KA, KB, TA, TB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntervalJoin")
            .field("bounds", &self.bounds)
            .field("watermark", &self.watermark)
            .field("keys", &self.buffers.len())
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl<A, B, K, KA, KB, TA, TB> IntervalJoin<A, B, K, KA, KB, TA, TB>
where
    A: Data + Clone,
    B: Data + Clone,
    K: Hash + Eq + Clone + Data,
    KA: Fn(&A) -> K + Send + 'static,
    KB: Fn(&B) -> K + Send + 'static,
    TA: Fn(&A) -> Timestamp + Send + 'static,
    TB: Fn(&B) -> Timestamp + Send + 'static,
{
    /// An interval join of rows keyed by `keys`, with event times from `left_time` and
    /// `right_time`.
    pub fn new(
        keys: JoinKeys<K, KA, KB>,
        bounds: IntervalBounds,
        left_time: TA,
        right_time: TB,
    ) -> Self {
        Self {
            keys,
            bounds,
            left_time,
            right_time,
            buffers: HashMap::default(),
            cleanup: BTreeMap::new(),
            watermark: None,
            row_bytes: 0,
            buckets: 0,
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

    /// Whether a row whose last chance to match is `until` may still match a row to come.
    fn still_needed(&self, until: Timestamp) -> bool {
        self.watermark.is_none_or(|w| until >= w)
    }

    fn left_row(&mut self, a: A, out: &mut Output<Vec<(A, B)>>) {
        let t = (self.left_time)(&a);
        if let Some(w) = self.watermark.filter(|w| t < *w) {
            out.dead_letter(late(Side::Left, t, w));
            return;
        }
        let key = (self.keys.left)(&a);
        let (lo, hi) = (self.bounds.lo, self.bounds.hi);
        let from = Timestamp(t.0.saturating_sub(hi));
        let to = Timestamp(t.0.saturating_sub(lo));
        if let Some(buf) = self.buffers.get(&key) {
            for (_, bs) in buf.right.range(from..=to) {
                for b in bs {
                    out.push((a.clone(), b.clone()));
                }
            }
        }
        if !self.still_needed(to) {
            return;
        }
        self.row_bytes += row_bytes(&a);
        let buf = self.buffer(&key);
        let bucket = buf.left.entry(t).or_default();
        let new = bucket.is_empty();
        bucket.push(a);
        if new {
            self.note_bucket(Side::Left, key, t, to);
        }
    }

    fn right_row(&mut self, b: B, out: &mut Output<Vec<(A, B)>>) {
        let t = (self.right_time)(&b);
        if let Some(w) = self.watermark.filter(|w| t < *w) {
            out.dead_letter(late(Side::Right, t, w));
            return;
        }
        let key = (self.keys.right)(&b);
        let (lo, hi) = (self.bounds.lo, self.bounds.hi);
        let from = Timestamp(t.0.saturating_add(lo));
        let to = Timestamp(t.0.saturating_add(hi));
        if let Some(buf) = self.buffers.get(&key) {
            for (_, as_) in buf.left.range(from..=to) {
                for a in as_ {
                    out.push((a.clone(), b.clone()));
                }
            }
        }
        if !self.still_needed(to) {
            return;
        }
        self.row_bytes += row_bytes(&b);
        let buf = self.buffer(&key);
        let bucket = buf.right.entry(t).or_default();
        let new = bucket.is_empty();
        bucket.push(b);
        if new {
            self.note_bucket(Side::Right, key, t, to);
        }
    }

    fn buffer(&mut self, key: &K) -> &mut Buffers<A, B> {
        if !self.buffers.contains_key(key) {
            self.key_heap += key.heap_size();
            self.buffers.insert(
                key.clone(),
                Buffers {
                    left: BTreeMap::new(),
                    right: BTreeMap::new(),
                },
            );
        }
        match self.buffers.get_mut(key) {
            Some(b) => b,
            None => unreachable!("inserted above"),
        }
    }

    fn note_bucket(&mut self, side: Side, key: K, t: Timestamp, until: Timestamp) {
        self.buckets += 1;
        self.key_heap += key.heap_size();
        self.cleanup.entry(until).or_default().push((side, key, t));
    }

    /// Frees every bucket no row at or after `watermark` can match.
    fn advance(&mut self, watermark: Timestamp) {
        let watermark = self.watermark.map_or(watermark, |w| w.max(watermark));
        self.watermark = Some(watermark);
        while let Some(entry) = self.cleanup.first_entry() {
            if *entry.key() >= watermark && watermark != END_OF_TIME {
                break;
            }
            for (side, key, t) in entry.remove() {
                self.buckets -= 1;
                self.key_heap -= key.heap_size();
                let Some(buf) = self.buffers.get_mut(&key) else {
                    continue;
                };
                match side {
                    Side::Left => {
                        if let Some(rows) = buf.left.remove(&t) {
                            self.row_bytes -= rows.iter().map(row_bytes).sum::<usize>();
                        }
                    }
                    Side::Right => {
                        if let Some(rows) = buf.right.remove(&t) {
                            self.row_bytes -= rows.iter().map(row_bytes).sum::<usize>();
                        }
                    }
                }
                if buf.left.is_empty() && buf.right.is_empty() {
                    self.buffers.remove(&key);
                    self.key_heap -= key.heap_size();
                }
            }
        }
        if self.buffers.capacity() > 64 && self.buffers.len() < self.buffers.capacity() / 4 {
            self.buffers.shrink_to(self.buffers.len() * 2);
        }
    }
}

impl<A, B, K, KA, KB, TA, TB> Operator for IntervalJoin<A, B, K, KA, KB, TA, TB>
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
                JoinSide::Left(a) => self.left_row(a, out),
                JoinSide::Right(b) => self.right_row(b, out),
            }
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Vec<(A, B)>>,
    ) -> Result<(), OperatorError> {
        self.advance(watermark);
        out.watermark(watermark);
        Ok(())
    }

    fn on_end(&mut self, _: &mut Output<Vec<(A, B)>>) -> Result<(), OperatorError> {
        // The end of input is the watermark at +∞: nothing buffered can match any more.
        self.advance(END_OF_TIME);
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        let key_entry = size_of::<(K, Buffers<A, B>)>() + 1;
        let bucket = size_of::<(Timestamp, Vec<A>)>().max(size_of::<(Timestamp, Vec<B>)>())
            + size_of::<(Side, K, Timestamp)>();
        Some(StateSize {
            keys: self.buffers.len() as u64,
            bytes: (self.row_bytes
                + self.buffers.len() * key_entry
                + self.buckets * bucket
                + self.key_heap) as u64,
            hottest_key_updates: 0,
        })
    }

    fn holds_rows(&self) -> bool {
        true
    }

    crate::snapshot::snapshot_hooks!(snapshots);
}

/// An interval join's state in a checkpoint: per key group, each key's buffered rows of both
/// sides in time order (a bucket's rows in arrival order); as instance state, the watermark
/// (restored as the highest of the old instances'). Cleanup times are derived from the rows'
/// times again, so a restored join frees what the old one would have, and reports the same
/// state. Keys are hash-routed; a key met in two snapshots keeps the rows of both.
impl<A, B, K, KA, KB, TA, TB> KeyedSnapshot for IntervalJoin<A, B, K, KA, KB, TA, TB>
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
        out.keyed(self.buffers.iter().map(|(key, buf)| {
            let left: Vec<&A> = buf.left.values().flatten().collect();
            let right: Vec<&B> = buf.right.values().flatten().collect();
            (grouping.group(key), (key, left, right))
        }))?;
        out.instance(&self.watermark.map(|w| w.0))
    }

    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError> {
        let keys: Vec<(K, Vec<A>, Vec<B>)> = decode_group(group, bytes)?;
        let (lo, hi) = (self.bounds.lo, self.bounds.hi);
        for (key, left, right) in keys {
            for a in left {
                let t = (self.left_time)(&a);
                self.row_bytes += row_bytes(&a);
                let bucket = self.buffer(&key).left.entry(t).or_default();
                let new = bucket.is_empty();
                bucket.push(a);
                if new {
                    self.note_bucket(
                        Side::Left,
                        key.clone(),
                        t,
                        Timestamp(t.0.saturating_sub(lo)),
                    );
                }
            }
            for b in right {
                let t = (self.right_time)(&b);
                self.row_bytes += row_bytes(&b);
                let bucket = self.buffer(&key).right.entry(t).or_default();
                let new = bucket.is_empty();
                bucket.push(b);
                if new {
                    self.note_bucket(
                        Side::Right,
                        key.clone(),
                        t,
                        Timestamp(t.0.saturating_add(hi)),
                    );
                }
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
