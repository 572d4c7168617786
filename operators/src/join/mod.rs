//! Keyed joins of two streams: an interval join and a window join in event time, each freeing
//! its state behind the watermark, and a regular inner join whose state grows with the keys,
//! with an optional processing-time time-to-live.
//!
//! ```text
//! left  ──map(Left)──┐
//!                    ├─ name.union [1] ──hash(key)──▶ name [p] ──▶ (A, B)
//! right ──map(Right)─┘
//! ```
//!
//! # Wiring
//!
//! The runtime's multi-input operators take inputs of one type, so each side is mapped into a
//! [`JoinSide`] (`name.left`, `name.right`), the two are merged (`name.union`, one instance:
//! a pass-through, which also takes the minimum of the two sides' watermarks), and the merged
//! stream is routed by key hash over [`KeyGroups`] into the join's `p` instances: equal keys
//! of either side meet at the same instance. The join operator therefore sees the minimum
//! watermark over both sides.
//!
//! # Semantics (each kind's module says more)
//!
//! - [`interval`]: pairs `(a, b)` with equal keys and `a.ts ∈ [b.ts + lo, b.ts + hi]`, bounds
//!   inclusive, as Flink's interval join; emitted as soon as the second row of a pair arrives.
//! - [`window`]: pairs with equal keys in the same tumbling event-time window
//!   (`start = ⌊ts/size⌋·size`, end exclusive), emitted when the watermark reaches the window's
//!   end, as Flink's window join.
//! - [`regular`]: every pair with equal keys, emitted as soon as the second row arrives; no
//!   event time. Without a time-to-live its state holds every row ever seen.
//!
//! **Watermarks.** weir's watermark `w` promises that no row before `w` follows. A row is
//! freed as soon as no row the other side may still send can match it. The end of input is
//! the watermark at +∞: windows still open fire, and everything is freed.
//!
//! **Late rows.** An interval-join row behind the watermark (`ts < w`) is late and not joined,
//! as Flink drops it; a window-join row is late when its window has already fired
//! (`w ≥ end`). weir never drops silently: each late row becomes a dead letter with the reason
//! [`LATE_ROW`] (its raw text names the side, its event time and the watermark), counted in the
//! run report's `dead_letters` for the join and readable on its
//! [`dead_letters`](weir_runtime::StreamCore::dead_letters) stream.
//!
//! **State size.** Each operator reports the rows it buffers (their inline size and the heap
//! they own, [`HeapSize`]), its per-key and per-bucket bookkeeping, through
//! [`Operator::state_size`](weir_runtime::Operator::state_size): the report's `state_bytes`,
//! which returns to zero when nothing is buffered.
//!
//! # Examples
//!
//! ```
//! use weir_operators::join::{IntervalBounds, JoinExt};
//! use weir_operators::prelude::*;
//! use weir_runtime::Timestamp;
//!
//! let mut p = Pipeline::new("join");
//! // (user, event time in ms)
//! let clicks = p.source("clicks", IterSource::new([(1u32, 100i64), (2, 150), (1, 400)]));
//! let views = p.source("views", IterSource::new([(1u32, 90i64), (2, 10), (1, 395)]));
//! let pairs = clicks
//!     .join(views)
//!     .on(|c: &(u32, i64)| c.0, |v: &(u32, i64)| v.0)
//!     .parallelism(2)
//!     // a click within 0..=20 ms after a view of the same user
//!     .interval("click-after-view", IntervalBounds::new(0, 20), |c| Timestamp(c.1), |v| Timestamp(v.1))
//!     .collect("out");
//! p.run()?;
//! let mut pairs = pairs.take().unwrap();
//! pairs.sort();
//! assert_eq!(pairs, [((1, 100), (1, 90)), ((1, 400), (1, 395))]);
//! # Ok::<(), weir_runtime::RunError>(())
//! ```

pub mod interval;
pub mod regular;
pub mod window;

use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use weir_runtime::{Data, DeadLetter, HeapSize, Stream, Timestamp};

use crate::keyed::partition::{KeyPartitioner, LoadSignal};
use crate::keyed::route::{KeyGroups, KeyHasher, Strategy};
use crate::snapshot::KeyGrouping;
use crate::transform::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use interval::{IntervalBounds, IntervalJoin};
pub use regular::{InnerJoin, JoinOptions};
pub use window::WindowJoin;

/// The reason every late row's dead letter gives (see the [module docs](self#semantics-each-kinds-module-says-more)).
pub const LATE_ROW: &str = "late row: behind the watermark, it can no longer be joined";

/// Suffixes of the helper operators a join adds before itself (see the [module docs](self)).
pub const LEFT_SUFFIX: &str = ".left";
/// The right side's mapping operator.
pub const RIGHT_SUFFIX: &str = ".right";
/// The operator merging both sides.
pub const UNION_SUFFIX: &str = ".union";

/// A row of either side of a join, as the join operator receives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinSide<A, B> {
    /// A row of the left stream (the one `join` was called on).
    Left(A),
    /// A row of the right stream.
    Right(B),
}

impl<A: HeapSize, B: HeapSize> HeapSize for JoinSide<A, B> {
    const HAS_HEAP: bool = A::HAS_HEAP || B::HAS_HEAP;

    fn heap_size(&self) -> usize {
        match self {
            JoinSide::Left(a) => a.heap_size(),
            JoinSide::Right(b) => b.heap_size(),
        }
    }
}

/// Which side a buffered row came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    Left,
    Right,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// The dead letter of a late row.
pub(crate) fn late(side: Side, ts: Timestamp, watermark: Timestamp) -> DeadLetter {
    DeadLetter::new(
        LATE_ROW,
        format!(
            "{} row at {} ms, watermark {} ms",
            side.name(),
            ts.0,
            watermark.0
        ),
    )
}

/// Bytes a buffered row occupies: inline and on the heap.
#[inline]
pub(crate) fn row_bytes<T: HeapSize>(row: &T) -> usize {
    std::mem::size_of::<T>() + row.heap_size()
}

/// Joins for typed streams.
pub trait JoinExt<A: Data>: Sized {
    /// Starts a join of this stream (the left side) with `other` (the right side); choose the
    /// keys with [`JoinBuilder::on`], then the kind (see the [module docs](self)).
    fn join<B: Data>(self, other: Stream<B>) -> JoinBuilder<A, B>;
}

impl<A: Data> JoinExt<A> for Stream<A> {
    fn join<B: Data>(self, other: Stream<B>) -> JoinBuilder<A, B> {
        JoinBuilder {
            left: self,
            right: other,
        }
    }
}

/// Two streams to join, before their keys are chosen.
#[derive(Debug)]
pub struct JoinBuilder<A, B> {
    left: Stream<A>,
    right: Stream<B>,
}

impl<A: Data, B: Data> JoinBuilder<A, B> {
    /// Joins rows whose keys are equal: `left_key` of a left row, `right_key` of a right row.
    pub fn on<K, KA, KB>(self, left_key: KA, right_key: KB) -> KeyedJoin<A, B, K, KA, KB>
    where
        K: Hash + Eq + Clone + Data,
        KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
        KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
    {
        KeyedJoin {
            left: self.left,
            right: self.right,
            keys: JoinKeys {
                left: left_key,
                right: right_key,
                _key: PhantomData,
            },
            hasher: KeyHasher::default(),
            groups: KeyGroups::default(),
            parallelism: None,
        }
    }
}

/// The key functions of both sides.
#[derive(Debug)]
pub struct JoinKeys<K, KA, KB> {
    left: KA,
    right: KB,
    _key: PhantomData<fn() -> K>,
}

impl<K, KA: Clone, KB: Clone> Clone for JoinKeys<K, KA, KB> {
    fn clone(&self) -> Self {
        Self {
            left: self.left.clone(),
            right: self.right.clone(),
            _key: PhantomData,
        }
    }
}

impl<K, KA, KB> JoinKeys<K, KA, KB> {
    /// The keys of left rows (`left`) and of right rows (`right`), for building a join
    /// operator by hand ([`IntervalJoin::new`], say); [`JoinBuilder::on`] does it for a
    /// pipeline.
    ///
    /// ```
    /// use weir_operators::join::{IntervalBounds, IntervalJoin, JoinKeys, JoinSide};
    /// use weir_runtime::{Operator, Output, Timestamp};
    ///
    /// // (key, event time)
    /// let keys = JoinKeys::new(|a: &(u8, i64)| a.0, |b: &(u8, i64)| b.0);
    /// let time = |r: &(u8, i64)| Timestamp(r.1);
    /// let mut join = IntervalJoin::new(keys, IntervalBounds::new(0, 5), time, time);
    /// let mut out = Output::new(16);
    /// join.on_batch(0, vec![JoinSide::Right((1, 10)), JoinSide::Left((1, 12))], &mut out)?;
    /// assert_eq!(join.state_size().unwrap().keys, 1);
    /// // At watermark 18 no left row can reach the right row at 10 (10 + 5 < 18), nor any
    /// // right row the left row at 12 (12 − 0 < 18): both are freed.
    /// join.on_watermark(Timestamp(18), &mut out)?;
    /// assert_eq!(join.state_size().unwrap().bytes, 0);
    /// # Ok::<(), weir_runtime::OperatorError>(())
    /// ```
    pub fn new(left: KA, right: KB) -> Self {
        Self {
            left,
            right,
            _key: PhantomData,
        }
    }

    /// The key of a row of either side.
    pub(crate) fn of<A, B>(&self, row: &JoinSide<A, B>) -> K
    where
        KA: Fn(&A) -> K,
        KB: Fn(&B) -> K,
    {
        match row {
            JoinSide::Left(a) => (self.left)(a),
            JoinSide::Right(b) => (self.right)(b),
        }
    }
}

/// Two streams with their keys, being configured: finish with
/// [`interval`](Self::interval), [`window`](Self::window) or [`inner`](Self::inner).
pub struct KeyedJoin<A, B, K, KA, KB> {
    left: Stream<A>,
    right: Stream<B>,
    keys: JoinKeys<K, KA, KB>,
    hasher: KeyHasher,
    groups: KeyGroups,
    parallelism: Option<usize>,
}

impl<A, B, K, KA, KB> std::fmt::Debug for KeyedJoin<A, B, K, KA, KB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedJoin")
            .field("groups", &self.groups)
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl<A, B, K, KA, KB> KeyedJoin<A, B, K, KA, KB>
where
    A: Data + Clone,
    B: Data + Clone,
    K: Hash + Eq + Clone + Data,
    KA: Fn(&A) -> K + Clone + Send + Sync + 'static,
    KB: Fn(&B) -> K + Clone + Send + Sync + 'static,
{
    /// Instances of the join operator (default: the pipeline's default parallelism).
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = Some(parallelism);
        self
    }

    /// The key groups both sides are routed by (default [`KeyGroups::default`]): the most
    /// instances the join may run.
    pub fn key_groups(mut self, groups: KeyGroups) -> Self {
        self.groups = groups;
        self
    }

    /// The key hash (default [`KeyHasher::default`]).
    pub fn hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// Joins pairs whose left time is within `bounds` of their right time (see
    /// [`interval`]). `left_time` and `right_time` give each side's event time.
    pub fn interval<TA, TB>(
        self,
        name: impl Into<String>,
        bounds: IntervalBounds,
        left_time: TA,
        right_time: TB,
    ) -> Stream<(A, B)>
    where
        TA: Fn(&A) -> Timestamp + Clone + Send + Sync + 'static,
        TB: Fn(&B) -> Timestamp + Clone + Send + Sync + 'static,
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        K: Serialize + DeserializeOwned,
    {
        let keys = self.keys.clone();
        let grouping = self.grouping();
        self.wire(name, move |_| {
            IntervalJoin::new(keys.clone(), bounds, left_time.clone(), right_time.clone())
                .with_snapshots(grouping)
        })
    }

    /// Joins pairs in the same tumbling event-time window of `size` (see [`window`]), as
    /// [`Tumbling`](crate::window::Tumbling) windows are sized.
    ///
    /// # Panics
    ///
    /// If `size` is under one millisecond.
    pub fn window<TA, TB>(
        self,
        name: impl Into<String>,
        size: Duration,
        left_time: TA,
        right_time: TB,
    ) -> Stream<(A, B)>
    where
        TA: Fn(&A) -> Timestamp + Clone + Send + Sync + 'static,
        TB: Fn(&B) -> Timestamp + Clone + Send + Sync + 'static,
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        K: Serialize + DeserializeOwned,
    {
        let size_ms = i64::try_from(size.as_millis()).unwrap_or(i64::MAX);
        assert!(
            size_ms > 0,
            "a window join's window must be at least 1 ms, got {size:?}"
        );
        let keys = self.keys.clone();
        let grouping = self.grouping();
        self.wire(name, move |_| {
            WindowJoin::new(keys.clone(), size_ms, left_time.clone(), right_time.clone())
                .with_snapshots(grouping)
        })
    }

    /// Joins every pair with equal keys (see [`regular`]).
    pub fn inner(self, name: impl Into<String>, options: JoinOptions) -> Stream<(A, B)>
    where
        A: Serialize + DeserializeOwned,
        B: Serialize + DeserializeOwned,
        K: Serialize + DeserializeOwned,
    {
        let keys = self.keys.clone();
        let grouping = self.grouping();
        self.wire(name, move |_| {
            InnerJoin::new(keys.clone(), &options).with_snapshots(grouping)
        })
    }

    /// How both sides' keys are filed into key groups.
    fn grouping(&self) -> KeyGrouping {
        KeyGrouping::new(self.hasher, self.groups)
    }

    /// Maps, merges and routes both sides into the operator `make` builds per instance.
    fn wire<O>(
        self,
        name: impl Into<String>,
        make: impl FnMut(&weir_runtime::InstanceInfo) -> O + Send + 'static,
    ) -> Stream<(A, B)>
    where
        O: weir_runtime::Operator<Input = Vec<JoinSide<A, B>>, Output = Vec<(A, B)>>,
    {
        let name = name.into();
        let left = self
            .left
            .map(format!("{name}{LEFT_SUFFIX}"), JoinSide::<A, B>::Left);
        let right = self
            .right
            .map(format!("{name}{RIGHT_SUFFIX}"), JoinSide::<A, B>::Right);
        let (keys, hasher, groups) = (self.keys, self.hasher, self.groups);
        let hash = move |r: &JoinSide<A, B>| hasher.hash_key(&keys.of(r));
        let routed = left
            .union(format!("{name}{UNION_SUFFIX}"), [right])
            .partition_with_limit("hash(key)", groups.count(), move |_, targets| {
                KeyPartitioner::with_key_groups(
                    targets,
                    Strategy::Hash,
                    LoadSignal::Credit,
                    groups,
                    hash.clone(),
                )
            });
        let joined = routed.unary_with(name, make);
        match self.parallelism {
            Some(p) => joined.parallelism(p),
            None => joined,
        }
    }
}

#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
