//! Keyed streams: `stream.key_by(|r| key)` and the aggregation graph it builds.
//!
//! [`KeyedExt::key_by`] returns a [`KeyedStream`] builder. Choose a routing [`Strategy`], an
//! optional combiner and bounds, then call [`aggregate`](KeyedStream::aggregate): it adds the
//! operators below and returns the stream of final `(key, result)` rows.
//!
//! ```text
//! Strategy::Hash, no combiner (each key on one instance):
//!   stream ──hash(key)──▶ name [p] ──▶ (K, Output)
//!
//! Strategy::Pkg / Strategy::HotKeySplit (a key may be on several instances):
//!   stream ──pkg(key)──▶ name.partial [p] ──hash(key)──▶ name [p_merge] ──▶ (K, Output)
//!
//! with .combine(capacity) (local pre-aggregation before the shuffle):
//!   stream ──▶ name.combine [c] ──<strategy>(key)──▶ … as above, folding partials
//! ```
//!
//! The merge stage (`name` after `name.partial`) is inserted automatically whenever a key can
//! reach more than one instance, so results are exact under every strategy: each partial
//! instance emits its `(key, accumulator)` pairs, hash partitioning sends all of a key's partials
//! to one merge instance, and [`Aggregate::merge`] combines them.
//!
//! # Bounds
//!
//! Every stage holds at most `max_keys` keys per instance ([`KeyedStream::max_keys`]; default
//! [`DEFAULT_MAX_KEYS`]). Partial stages and the combiner drain downstream when full; a final
//! stage fails the run with a message naming the bound (see [`stage`](super::stage)). Each
//! stage reports its keys and bytes held in the run report (`state_keys`, `peak_state_bytes`).
//! The combiner's rows out are the rows shuffled.

use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroU64;

use weir_runtime::{Batch, Data, Stream, StreamCore};

use super::aggregate::Aggregate;
use super::pace::Pace;
use super::partition::{CreditRebalance, KeyPartitioner, LoadSignal};
use super::route::{KeyGroups, KeyHasher, Strategy};
use super::stage::{KeyedStage, Role};
use crate::snapshot::KeyGrouping;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Default bound on the keys one keyed instance holds.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;

/// Suffix of the partial stage's name when a key can be split over instances.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Suffix of the combiner's name.
pub const COMBINE_SUFFIX: &str = ".combine";

/// When a keyed aggregation emits results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emit {
    /// Once per key, at the end of the stream.
    #[default]
    AtEnd,
    /// Also periodically. Stages fed raw rows act after every that many rows: a final stage
    /// emits the current result of each key that changed, a partial stage or combiner drains
    /// its partials downstream; a final stage fed partials emits the keys that changed after
    /// every batch of them. A key's last row (emitted at the end) is its final result.
    EveryRows(NonZeroU64),
}

impl Emit {
    fn every(self) -> Option<NonZeroU64> {
        match self {
            Emit::AtEnd => None,
            Emit::EveryRows(n) => Some(n),
        }
    }
}

/// Local pre-aggregation before the shuffle.
///
/// The combiner folds rows into a map of at most `capacity` keys and sends partial
/// accumulators on: its least-updated keys when the map is full (keys that keep coming stay and
/// keep absorbing rows, see [`KeyedState::drain_cold`](super::state::KeyedState::drain_cold)),
/// everything after every batch if
/// [`per_batch`](Self::per_batch), and at the end. A hot key then crosses the shuffle once per
/// flush instead of once per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Combine {
    capacity: usize,
    per_batch: bool,
    parallelism: Option<usize>,
}

impl Combine {
    /// A combiner holding up to `capacity` keys (at least 1), flushed when full.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            per_batch: false,
            parallelism: None,
        }
    }

    /// Also flush after every batch: nothing is held between batches (less reduction, no
    /// delay).
    pub fn per_batch(mut self) -> Self {
        self.per_batch = true;
        self
    }

    /// Instances of the combiner (default: the pipeline's default parallelism). Give it the
    /// upstream operator's parallelism so each combiner sits beside one producer.
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = Some(parallelism);
        self
    }
}

/// Operators for keyed processing on a typed stream.
pub trait KeyedExt<T: Data>: Sized {
    /// Keys the stream by `key`; configure and finish with
    /// [`KeyedStream::aggregate`] or [`KeyedStream::partitioned`].
    ///
    /// ```
    /// use weir_operators::keyed::aggregate::Count;
    /// use weir_operators::keyed::route::Strategy;
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("words");
    /// let counts = p
    ///     .source("words", IterSource::new(["a", "b", "a", "c", "a"]))
    ///     .key_by(|w: &&str| w.to_string())
    ///     .strategy(Strategy::Pkg)
    ///     .parallelism(2)
    ///     .aggregate("count", Count::new())
    ///     .collect("out");
    /// p.run()?;
    /// let mut counts = counts.take().unwrap();
    /// counts.sort();
    /// assert_eq!(counts, [("a".to_string(), 3), ("b".to_string(), 1), ("c".to_string(), 1)]);
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn key_by<K, F>(self, key: F) -> KeyedStream<T, K, F>
    where
        K: Hash + Eq + Clone + Data,
        F: Fn(&T) -> K + Clone + Send + Sync + 'static;
}

impl<T: Data> KeyedExt<T> for Stream<T> {
    fn key_by<K, F>(self, key: F) -> KeyedStream<T, K, F>
    where
        K: Hash + Eq + Clone + Data,
        F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    {
        KeyedStream {
            stream: self,
            key,
            strategy: Strategy::Hash,
            signal: LoadSignal::Credit,
            hasher: KeyHasher::default(),
            groups: KeyGroups::default(),
            parallelism: None,
            merge_parallelism: None,
            combine: None,
            max_keys: DEFAULT_MAX_KEYS,
            partial_max_keys: None,
            emit: Emit::AtEnd,
            worker_capacity: None,
            _key: PhantomData,
        }
    }
}

/// Partitioning for any stream, keyed or not.
pub trait PartitionExt<B: Batch>: Sized {
    /// Sends each batch to the next operator's instance with the most outstanding credit — the
    /// least backpressured one ([`CreditRebalance`]).
    fn credit_rebalance(self) -> StreamCore<B>;
}

impl<B: Batch> PartitionExt<B> for StreamCore<B> {
    fn credit_rebalance(self) -> StreamCore<B> {
        self.partition_with("credit", |_, _| CreditRebalance::new())
    }
}

/// A stream keyed by `F`, being configured (see the [module docs](self)).
pub struct KeyedStream<T, K, F> {
    stream: Stream<T>,
    key: F,
    strategy: Strategy,
    signal: LoadSignal,
    hasher: KeyHasher,
    groups: KeyGroups,
    parallelism: Option<usize>,
    merge_parallelism: Option<usize>,
    combine: Option<Combine>,
    max_keys: usize,
    partial_max_keys: Option<usize>,
    emit: Emit,
    worker_capacity: Option<NonZeroU64>,
    _key: PhantomData<fn() -> K>,
}

impl<T, K, F> std::fmt::Debug for KeyedStream<T, K, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedStream")
            .field("strategy", &self.strategy)
            .field("parallelism", &self.parallelism)
            .field("combine", &self.combine)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

pub(crate) fn with_parallelism<B: Batch>(s: StreamCore<B>, p: Option<usize>) -> StreamCore<B> {
    match p {
        Some(p) => s.parallelism(p),
        None => s,
    }
}

pub(crate) fn route<R, H>(
    stream: Stream<R>,
    strategy: Strategy,
    signal: LoadSignal,
    groups: KeyGroups,
    hash: H,
) -> Stream<R>
where
    R: Data,
    H: Fn(&R) -> u64 + Clone + Send + Sync + 'static,
{
    let label = format!("{}(key)", strategy.name());
    // More instances than key groups would leave some without keys: refused when the run is
    // planned, naming the operator.
    stream.partition_with_limit(label, groups.count(), move |_, targets| {
        KeyPartitioner::with_key_groups(targets, strategy, signal, groups, hash.clone())
    })
}

fn add<A: Aggregate>(agg: &A, acc: &mut A::Acc, value: A::Input) {
    agg.add(acc, &value);
}

fn merge<A: Aggregate>(agg: &A, acc: &mut A::Acc, other: A::Acc) {
    agg.merge(acc, other);
}

fn finish<A: Aggregate, K>(agg: &A, key: K, acc: A::Acc) -> (K, A::Output) {
    (key, agg.finish(&acc))
}

fn partial<A: Aggregate, K>(_: &A, key: K, acc: A::Acc) -> (K, A::Acc) {
    (key, acc)
}

impl<T, K, F> KeyedStream<T, K, F>
where
    T: Data,
    K: Hash + Eq + Clone + Data,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    /// How keys are spread over the instances (default [`Strategy::Hash`]).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// What two-choice strategies compare (default [`LoadSignal::Credit`]).
    pub fn load_signal(mut self, signal: LoadSignal) -> Self {
        self.signal = signal;
        self
    }

    /// The key hash (default [`KeyHasher::default`]).
    pub fn hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// The key groups keys are routed by (default [`KeyGroups::default`], 128 groups): the most
    /// instances any keyed stage of this stream may run, fixed for the life of the job's keyed
    /// state (see [`KeyGroups`]). A stage with more instances fails the run before it starts.
    pub fn key_groups(mut self, groups: KeyGroups) -> Self {
        self.groups = groups;
        self
    }

    /// Instances of the keyed operator (default: the pipeline's default parallelism).
    pub fn parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = Some(parallelism);
        self
    }

    /// Instances of the merge stage, when one is inserted (default: as
    /// [`parallelism`](Self::parallelism)).
    pub fn merge_parallelism(mut self, parallelism: usize) -> Self {
        self.merge_parallelism = Some(parallelism);
        self
    }

    /// Pre-aggregates locally before the shuffle, in a combiner of `capacity` keys flushed
    /// when full ([`Combine::new`]).
    pub fn combine(self, capacity: usize) -> Self {
        self.combine_with(Combine::new(capacity))
    }

    /// Pre-aggregates locally before the shuffle, configured by `combine`.
    pub fn combine_with(mut self, combine: Combine) -> Self {
        self.combine = Some(combine);
        self
    }

    /// The most keys one instance of a stage holds (default [`DEFAULT_MAX_KEYS`]). A final
    /// stage fails past it; partial stages drain.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// The most keys one instance of a partial stage (before a merge stage) holds, if it should
    /// differ from [`max_keys`](Self::max_keys): a smaller bound trades more rows into the
    /// merge stage for less memory. Partial stages drain when full, so any bound is exact.
    pub fn partial_max_keys(mut self, max_keys: usize) -> Self {
        self.partial_max_keys = Some(max_keys.max(1));
        self
    }

    /// When results are emitted (default [`Emit::AtEnd`]).
    pub fn emit(mut self, emit: Emit) -> Self {
        self.emit = emit;
        self
    }

    /// Limits every instance of the keyed operator (the stage right after the shuffle) to
    /// `rows_per_s` rows per second, emulating one machine of that capacity per instance (see
    /// [`pace`](super::pace)).
    pub fn worker_capacity(mut self, rows_per_s: NonZeroU64) -> Self {
        self.worker_capacity = Some(rows_per_s);
        self
    }

    /// The stream partitioned by key with the configured strategy, without an aggregation:
    /// connect your own parallel operator to it. With a strategy other than
    /// [`Strategy::Hash`], a key's rows may reach several instances (within its candidates).
    pub fn partitioned(self) -> Stream<T> {
        let (key, hasher) = (self.key, self.hasher);
        route(
            self.stream,
            self.strategy,
            self.signal,
            self.groups,
            move |r: &T| hasher.hash_key(&key(r)),
        )
    }

    /// The stream routed by key hash within the configured key groups (every row of a key
    /// reaches one instance, whatever the strategy), the key function, and the configured
    /// parallelism: for keyed stages that keep per-key state of their own.
    /// How the stream files keys into key groups: its hash and key groups.
    pub(crate) fn grouping(&self) -> KeyGrouping {
        KeyGrouping::new(self.hasher, self.groups)
    }

    pub(crate) fn hash_routed(self) -> (Stream<T>, F, Option<usize>) {
        let (key, hasher) = (self.key.clone(), self.hasher);
        let routed = route(
            self.stream,
            Strategy::Hash,
            self.signal,
            self.groups,
            move |r: &T| hasher.hash_key(&key(r)),
        );
        (routed, self.key, self.parallelism)
    }

    /// Aggregates each key's rows with `agg` and returns one `(key, result)` row per key at
    /// the end of the stream (plus updates with [`Emit::EveryRows`]). Operators are named
    /// `name`, `name.partial` and `name.combine` (see the [module docs](self)).
    pub fn aggregate<A>(self, name: impl Into<String>, agg: A) -> Stream<(K, A::Output)>
    where
        A: Aggregate<Input = T> + Clone + Send + 'static,
        A::Acc: Serialize + DeserializeOwned,
        A::Output: Data,
        K: Serialize + DeserializeOwned,
    {
        let name = name.into();
        let every = self.emit.every();
        let final_role = Role::Final { updates: every };
        // A final stage fed partials reports after every batch of them: each batch is some
        // upstream stage's periodic drain.
        let merge_role = Role::Final {
            updates: every.map(|_| NonZeroU64::MIN),
        };
        let partial_role = Role::Partial {
            per_batch: false,
            flush_every: every,
        };
        let split_keys = self.strategy != Strategy::Hash;
        let (max_keys, capacity) = (self.max_keys, self.worker_capacity);
        let partial_max_keys = self.partial_max_keys.unwrap_or(max_keys);
        let pace = move || capacity.and_then(|r| Pace::new(r.get() as f64));
        let (hasher, groups) = (self.hasher, self.groups);
        let grouping = KeyGrouping::new(hasher, groups);
        let merge_parallelism = self.merge_parallelism.or(self.parallelism);

        let Some(combine) = self.combine else {
            let key = self.key.clone();
            let routed = route(
                self.stream,
                self.strategy,
                self.signal,
                groups,
                move |r: &T| hasher.hash_key(&key(r)),
            );
            let key = self.key;
            let stage_name = if split_keys {
                format!("{name}{PARTIAL_SUFFIX}")
            } else {
                name.clone()
            };
            if !split_keys {
                let agg = agg.clone();
                let keyed = routed.unary_with(stage_name, move |_| {
                    let key = key.clone();
                    KeyedStage::new(
                        agg.clone(),
                        move |r: T| (key(&r), r),
                        add::<A>,
                        finish::<A, K>,
                        final_role,
                        max_keys,
                    )
                    .with_snapshots(grouping)
                    .with_pace(pace())
                });
                return with_parallelism(keyed, self.parallelism);
            }
            let partial_agg = agg.clone();
            let partials = routed.unary_with(stage_name, move |_| {
                let key = key.clone();
                KeyedStage::new(
                    partial_agg.clone(),
                    move |r: T| (key(&r), r),
                    add::<A>,
                    partial::<A, K>,
                    partial_role,
                    partial_max_keys,
                )
                .with_snapshots(grouping)
                .with_pace(pace())
            });
            let partials = with_parallelism(partials, self.parallelism);
            let merged = merge_stage(partials, name, agg, (hasher, groups), merge_role, max_keys);
            return with_parallelism(merged, merge_parallelism);
        };

        // Combiner first, then shuffle partials.
        let key = self.key;
        let combine_agg = agg.clone();
        let combined = self
            .stream
            .unary_with(format!("{name}{COMBINE_SUFFIX}"), move |_| {
                let key = key.clone();
                KeyedStage::new(
                    combine_agg.clone(),
                    move |r: T| (key(&r), r),
                    add::<A>,
                    partial::<A, K>,
                    Role::Partial {
                        per_batch: combine.per_batch,
                        flush_every: every,
                    },
                    combine.capacity,
                )
                .with_snapshots(grouping)
            });
        let combined = with_parallelism(combined, combine.parallelism);
        let routed = route(
            combined,
            self.strategy,
            self.signal,
            groups,
            move |r: &(K, A::Acc)| hasher.hash_key(&r.0),
        );
        if !split_keys {
            let keyed = routed.unary_with(name, move |_| {
                KeyedStage::new(
                    agg.clone(),
                    std::convert::identity,
                    merge::<A>,
                    finish::<A, K>,
                    merge_role,
                    max_keys,
                )
                .with_snapshots(grouping)
                .with_pace(pace())
            });
            return with_parallelism(keyed, self.parallelism);
        }
        let partial_agg = agg.clone();
        let partials = routed.unary_with(format!("{name}{PARTIAL_SUFFIX}"), move |_| {
            KeyedStage::new(
                partial_agg.clone(),
                std::convert::identity,
                merge::<A>,
                partial::<A, K>,
                partial_role,
                partial_max_keys,
            )
            .with_snapshots(grouping)
            .with_pace(pace())
        });
        let partials = with_parallelism(partials, self.parallelism);
        let merged = merge_stage(partials, name, agg, (hasher, groups), merge_role, max_keys);
        with_parallelism(merged, merge_parallelism)
    }
}

/// Hash-partitions partials by key into a final stage that merges them.
fn merge_stage<K, A>(
    partials: Stream<(K, A::Acc)>,
    name: String,
    agg: A,
    (hasher, groups): (KeyHasher, KeyGroups),
    role: Role,
    max_keys: usize,
) -> Stream<(K, A::Output)>
where
    K: Hash + Eq + Clone + Data + Serialize + DeserializeOwned,
    A: Aggregate + Clone + Send + 'static,
    A::Acc: Serialize + DeserializeOwned,
    A::Output: Data,
{
    let grouping = KeyGrouping::new(hasher, groups);
    route(
        partials,
        Strategy::Hash,
        LoadSignal::Credit,
        groups,
        move |r: &(K, A::Acc)| hasher.hash_key(&r.0),
    )
    .unary_with(name, move |_| {
        KeyedStage::new(
            agg.clone(),
            std::convert::identity,
            merge::<A>,
            finish::<A, K>,
            role,
            max_keys,
        )
        .with_snapshots(grouping)
    })
}

/// A keyed stream's configuration, taken apart by the builders that extend it (windows).
pub(crate) struct KeyedParts<T, F> {
    pub(crate) stream: Stream<T>,
    pub(crate) key: F,
    pub(crate) strategy: Strategy,
    pub(crate) signal: LoadSignal,
    pub(crate) hasher: KeyHasher,
    pub(crate) groups: KeyGroups,
    pub(crate) parallelism: Option<usize>,
    pub(crate) merge_parallelism: Option<usize>,
    /// The combiner's capacity and parallelism, if any.
    pub(crate) combine: Option<(usize, Option<usize>)>,
    pub(crate) max_keys: usize,
    pub(crate) partial_max_keys: Option<usize>,
}

impl<T, K, F> KeyedStream<T, K, F> {
    /// The configuration, for builders in other modules.
    pub(crate) fn into_parts(self) -> KeyedParts<T, F> {
        KeyedParts {
            stream: self.stream,
            key: self.key,
            strategy: self.strategy,
            signal: self.signal,
            hasher: self.hasher,
            groups: self.groups,
            parallelism: self.parallelism,
            merge_parallelism: self.merge_parallelism,
            combine: self.combine.map(|c| c.parts()),
            max_keys: self.max_keys,
            partial_max_keys: self.partial_max_keys,
        }
    }
}

impl Combine {
    /// The capacity and parallelism, for builders in other modules.
    pub(crate) fn parts(&self) -> (usize, Option<usize>) {
        (self.capacity, self.parallelism)
    }
}
