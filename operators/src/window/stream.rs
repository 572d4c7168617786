//! The window builders: `keyed.window(..)`, `stream.window_all(..)` and the graph
//! `.aggregate(..)` makes (drawn in the [module docs](super)).

use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use weir_runtime::{
    Data, HeapSize, InputPort, Operator, OperatorError, Output, RunReport, Stream, Timestamp,
};

use super::assign::Assigner;
use super::stage::{Arrival, Fired, Partials, Results, WindowStage};
use crate::keyed::aggregate::Aggregate;
use crate::keyed::partition::LoadSignal;
use crate::keyed::route::Strategy;
use crate::keyed::stream::{route, with_parallelism, KeyedParts, COMBINE_SUFFIX, PARTIAL_SUFFIX};
use crate::keyed::{Combine, KeyedExt, KeyedStream};
use crate::snapshot::KeyGrouping;
use crate::transform::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Suffix of the operator that takes a windowed aggregation's results apart from its late rows.
pub const RESULTS_SUFFIX: &str = ".results";

/// Suffix of the operator whose rows out are the late rows (see [`late_rows`]).
pub const LATE_SUFFIX: &str = ".late";

/// Suffix of a sink for late rows nobody consumes. [`WindowedStream::aggregate`] adds no such
/// sink: its operator `name.results` counts the late rows as skipped (see [`late_rows`]).
pub const LATE_SINK_SUFFIX: &str = ".late.sink";

/// One window's result: the aggregate of the rows of `key` with an event time in
/// `[start, end)`.
///
/// The first result of a window has `firing == 0`. With allowed lateness, a row that arrives
/// after its window fired but before the window is cleaned up makes the window fire again with
/// the updated value and `firing` one higher: the result with the highest `firing` of a
/// `(key, start, end)` replaces the others. For session windows an update may cover a wider
/// `[start, end)` than an earlier result (the late row bridged two sessions): it replaces every
/// earlier result of its key whose window it covers.
///
/// ```
/// use weir_operators::window::Windowed;
/// use weir_runtime::Timestamp;
///
/// let w = Windowed { key: "nl", start: Timestamp(0), end: Timestamp(60_000), firing: 0, value: 3u64 };
/// assert_eq!(w.timestamp(), Timestamp(59_999)); // end − 1 ms, as in Flink
/// assert!(!w.is_update());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, HeapSize, serde::Serialize)]
pub struct Windowed<K, V> {
    /// The key (`()` for [`window_all`](WindowAllExt::window_all)).
    pub key: K,
    /// The window's first millisecond.
    pub start: Timestamp,
    /// The end of the window, exclusive.
    pub end: Timestamp,
    /// How many results of this window were emitted before this one (0: the first).
    pub firing: u32,
    /// The aggregate.
    pub value: V,
}

impl<K, V> Windowed<K, V> {
    /// The result's event time: `end − 1 ms`, the last instant of its window, so a window of
    /// window results puts it in the window it summarises.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp(self.end.0.saturating_sub(1))
    }

    /// Whether this result updates an earlier one of the same window (`firing > 0`).
    pub fn is_update(&self) -> bool {
        self.firing > 0
    }
}

/// Windows over a keyed stream.
pub trait WindowExt<T, K, F>: Sized {
    /// Windows the keyed stream by `windows` ([`Tumbling`](super::Tumbling),
    /// [`Sliding`](super::Sliding) or [`Session`](super::Session)), with each row's event time
    /// read by `time`; finish with [`WindowedStream::aggregate`]. The keyed stream's strategy,
    /// parallelism, key groups, combiner and key bound apply (see the [module docs](super));
    /// its [`Emit`](crate::keyed::Emit) setting does not: windows emit on the watermark.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::keyed::aggregate::Count;
    /// use weir_operators::prelude::*;
    /// use weir_operators::window::{Tumbling, Windowed};
    /// use weir_runtime::Timestamp;
    ///
    /// let mut p = Pipeline::new("clicks");
    /// // (user, event time in ms)
    /// let clicks = p.source("clicks", IterSource::new([(1u32, 5i64), (2, 7), (1, 12), (1, 3)]));
    /// let per_10ms = clicks
    ///     .key_by(|c: &(u32, i64)| c.0)
    ///     .window(Tumbling::of(Duration::from_millis(10)), |c: &(u32, i64)| Timestamp(c.1))
    ///     .aggregate("per_10ms", Count::new())
    ///     .collect("out");
    /// p.run()?; // no watermark: every window fires at the end of the input
    /// let mut got: Vec<_> = per_10ms.take().unwrap().into_iter()
    ///     .map(|w: Windowed<u32, u64>| (w.key, w.start.0, w.value))
    ///     .collect();
    /// got.sort();
    /// assert_eq!(got, [(1, 0, 2), (1, 10, 1), (2, 0, 1)]);
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn window<W, E>(self, windows: W, time: E) -> WindowedStream<T, K, F, E>
    where
        W: Into<Assigner>,
        E: Fn(&T) -> Timestamp + Clone + Send + Sync + 'static;
}

impl<T, K, F> WindowExt<T, K, F> for KeyedStream<T, K, F>
where
    T: Data,
    K: Hash + Eq + Clone + Data,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    fn window<W, E>(self, windows: W, time: E) -> WindowedStream<T, K, F, E>
    where
        W: Into<Assigner>,
        E: Fn(&T) -> Timestamp + Clone + Send + Sync + 'static,
    {
        WindowedStream {
            parts: self.into_parts(),
            assigner: windows.into(),
            time,
            lateness: 0,
            max_windows: None,
            _key: PhantomData,
        }
    }
}

/// The key of a stream windowed as a whole.
fn no_key<T>(_: &T) {}

/// Windows over a whole, unkeyed stream.
pub trait WindowAllExt<T>: Sized {
    /// Windows the whole stream by `windows`, with each row's event time read by `time`. The
    /// final stage runs one instance (every row of a window meets there); with
    /// [`combine`](WindowedStream::combine) each upstream instance pre-aggregates per window
    /// first, so only partials reach it. Results have the key `()`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_operators::keyed::aggregate::{Project, Sum};
    /// use weir_operators::prelude::*;
    /// use weir_operators::window::Sliding;
    /// use weir_runtime::Timestamp;
    ///
    /// let mut p = Pipeline::new("revenue");
    /// // (cents, event time in ms)
    /// let sales = p.source("sales", IterSource::new([(100u64, 1i64), (250, 6), (50, 11)]));
    /// let totals = sales
    ///     .window_all(
    ///         Sliding::of(Duration::from_millis(10), Duration::from_millis(5)),
    ///         |s: &(u64, i64)| Timestamp(s.1),
    ///     )
    ///     .aggregate("revenue", Project::new(|s: &(u64, i64)| s.0, Sum::<u64>::new()))
    ///     .collect("out");
    /// p.run()?;
    /// let got: Vec<(i64, u128)> =
    ///     totals.take().unwrap().into_iter().map(|w| (w.start.0, w.value)).collect();
    /// assert_eq!(got, [(-5, 100), (0, 350), (5, 300), (10, 50)]); // in end order
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn window_all<W, E>(self, windows: W, time: E) -> WindowedStream<T, (), fn(&T), E>
    where
        W: Into<Assigner>,
        E: Fn(&T) -> Timestamp + Clone + Send + Sync + 'static;
}

impl<T: Data> WindowAllExt<T> for Stream<T> {
    fn window_all<W, E>(self, windows: W, time: E) -> WindowedStream<T, (), fn(&T), E>
    where
        W: Into<Assigner>,
        E: Fn(&T) -> Timestamp + Clone + Send + Sync + 'static,
    {
        let key: fn(&T) = no_key::<T>;
        let mut parts = self.key_by(key).into_parts();
        parts.strategy = Strategy::Hash;
        parts.parallelism = Some(1);
        parts.merge_parallelism = Some(1);
        WindowedStream {
            parts,
            assigner: windows.into(),
            time,
            lateness: 0,
            max_windows: None,
            _key: PhantomData,
        }
    }
}

/// A windowed stream being configured (see the [module docs](super)).
pub struct WindowedStream<T, K, F, E> {
    parts: KeyedParts<T, F>,
    assigner: Assigner,
    time: E,
    lateness: i64,
    max_windows: Option<usize>,
    _key: PhantomData<fn() -> K>,
}

impl<T, K, F, E> std::fmt::Debug for WindowedStream<T, K, F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStream")
            .field("assigner", &self.assigner)
            .field("lateness_ms", &self.lateness)
            .field("strategy", &self.parts.strategy)
            .finish_non_exhaustive()
    }
}

fn piece<K, Acc, T>(fired: Fired<K, Acc, T>) -> Arrival<K, Acc, T> {
    match fired {
        Fired::Window {
            key,
            start,
            end,
            value,
            ..
        } => Arrival::Piece {
            key,
            start,
            end,
            acc: value,
        },
        Fired::Late(row) => Arrival::Late(row),
    }
}

impl<T, K, F, E> WindowedStream<T, K, F, E>
where
    T: Data + Clone,
    K: Hash + Eq + Clone + Data,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
    E: Fn(&T) -> Timestamp + Clone + Send + Sync + 'static,
{
    /// How long after its end a window still takes rows (default 0): each such row makes the
    /// window fire again with its updated result ([`Windowed::firing`]). Its state is freed
    /// when the watermark reaches `end + lateness`; a row whose every window is freed is late.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.lateness = i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// The most `(key, window)` accumulators one instance holds (default: the keyed stream's
    /// `max_keys`). A final stage fails past it, naming it; partial stages and the combiner
    /// hand their windows on.
    pub fn max_windows(mut self, max_windows: usize) -> Self {
        self.max_windows = Some(max_windows.max(1));
        self
    }

    /// Pre-aggregates per `(key, window)` before the shuffle, in a combiner of `capacity`
    /// windows ([`Combine::new`]): it hands its windows on when the watermark passes their end
    /// and when it is full.
    pub fn combine(self, capacity: usize) -> Self {
        self.combine_with(Combine::new(capacity))
    }

    /// Pre-aggregates per `(key, window)` before the shuffle, configured by `combine` (its
    /// `per_batch` setting does not apply: windows leave on the watermark).
    pub fn combine_with(mut self, combine: Combine) -> Self {
        self.parts.combine = Some(combine.parts());
        self
    }

    /// Aggregates each `(key, window)`'s rows with `agg`: one [`Windowed`] result per window
    /// when the watermark reaches its end (and updates within the allowed lateness), in end
    /// order per instance, followed by the watermark. Late rows go no further: the operator
    /// `name.results` counts them as skipped in the run report (see [`late_rows`]); use
    /// [`aggregate_with_late`](Self::aggregate_with_late) to receive them.
    pub fn aggregate<A>(self, name: impl Into<String>, agg: A) -> Stream<Windowed<K, A::Output>>
    where
        A: Aggregate<Input = T> + Clone + Send + 'static,
        A::Acc: Serialize + DeserializeOwned,
        A::Output: Data + Clone,
        K: Serialize + DeserializeOwned,
    {
        let name = name.into();
        let (fired, parallelism) = self.build(&name, agg);
        // One consumer, same parallelism: it runs in the window stage's task, so a watermark
        // (one per source batch) makes no extra hop to a late branch that takes nothing.
        let results = fired.unary_with(format!("{name}{RESULTS_SUFFIX}"), |_| {
            ResultsOnly::<K, A::Output, T>(PhantomData)
        });
        with_parallelism(results, parallelism)
    }

    /// As [`aggregate`](Self::aggregate), also returning the late rows as a stream of their
    /// own (the operator `name.late`), in arrival order per instance.
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// use std::time::Duration;
    /// use weir_operators::keyed::aggregate::Count;
    /// use weir_operators::prelude::*;
    /// use weir_operators::window::{late_rows, Tumbling};
    /// use weir_runtime::{Output, Source, SourceStatus, Timestamp};
    ///
    /// /// Event times, then a watermark at 20, then one more event time.
    /// struct Script(u8);
    /// impl Source for Script {
    ///     type Output = Vec<i64>;
    ///     fn poll_produce(&mut self, _: &mut Context<'_>, out: &mut Output<Vec<i64>>)
    ///         -> Poll<Result<SourceStatus, OperatorError>> {
    ///         match self.0 {
    ///             0 => out.extend([3, 12, 15]),
    ///             1 => out.watermark(Timestamp(20)),
    ///             _ => out.push(4), // its window [0, 10) fired and was freed at 10
    ///         }
    ///         self.0 += 1;
    ///         Poll::Ready(Ok(if self.0 == 3 { SourceStatus::Done } else { SourceStatus::Continue }))
    ///     }
    /// }
    ///
    /// let mut p = Pipeline::new("late");
    /// let (counts, late) = p
    ///     .source("times", Script(0))
    ///     .window_all(Tumbling::of(Duration::from_millis(10)), |t: &i64| Timestamp(*t))
    ///     .aggregate_with_late("count", Count::new());
    /// let (counts, late) = (counts.collect("counts"), late.collect("late"));
    /// let report = p.run()?;
    /// let counts: Vec<(i64, u64)> =
    ///     counts.take().unwrap().into_iter().map(|w| (w.start.0, w.value)).collect();
    /// assert_eq!(counts, [(0, 1), (10, 2)]);
    /// assert_eq!(late.take(), Some(vec![4]));
    /// assert_eq!(late_rows(&report, "count"), 1);
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    pub fn aggregate_with_late<A>(
        self,
        name: impl Into<String>,
        agg: A,
    ) -> (Stream<Windowed<K, A::Output>>, Stream<T>)
    where
        A: Aggregate<Input = T> + Clone + Send + 'static,
        A::Acc: Serialize + DeserializeOwned,
        A::Output: Data + Clone,
        K: Serialize + DeserializeOwned,
    {
        let name = name.into();
        let (fired, parallelism) = self.build(&name, agg);
        let results = fired.clone().filter_map(
            format!("{name}{RESULTS_SUFFIX}"),
            |f: Fired<K, A::Output, T>| match f {
                Fired::Window {
                    key,
                    start,
                    end,
                    firing,
                    value,
                } => Some(Windowed {
                    key,
                    start: Timestamp(start),
                    end: Timestamp(end),
                    firing,
                    value,
                }),
                Fired::Late(_) => None,
            },
        );
        let late = fired.filter_map(
            format!("{name}{LATE_SUFFIX}"),
            |f: Fired<K, A::Output, T>| match f {
                Fired::Late(row) => Some(row),
                Fired::Window { .. } => None,
            },
        );
        (
            with_parallelism(results, parallelism),
            with_parallelism(late, parallelism),
        )
    }

    /// Adds the window stages; returns their output and the final stage's parallelism.
    #[allow(clippy::type_complexity)]
    fn build<A>(self, name: &str, agg: A) -> (Stream<Fired<K, A::Output, T>>, Option<usize>)
    where
        A: Aggregate<Input = T> + Clone + Send + 'static,
        A::Acc: Serialize + DeserializeOwned,
        A::Output: Data + Clone,
        K: Serialize + DeserializeOwned,
    {
        let Self {
            parts,
            assigner,
            time,
            lateness,
            max_windows,
            ..
        } = self;
        let max = max_windows.unwrap_or(parts.max_keys);
        let partial_max = parts.partial_max_keys.unwrap_or(max);
        let split_keys = parts.strategy != Strategy::Hash;
        let (hasher, groups, strategy, signal) =
            (parts.hasher, parts.groups, parts.strategy, parts.signal);
        let grouping = KeyGrouping::new(hasher, groups);
        let final_parallelism = if split_keys {
            parts.merge_parallelism.or(parts.parallelism)
        } else {
            parts.parallelism
        };
        let key = parts.key;
        let rows = {
            let (key, time) = (key.clone(), time.clone());
            move || {
                let (key, time) = (key.clone(), time.clone());
                move |row: T| -> Arrival<K, A::Acc, T> {
                    Arrival::Row {
                        key: key(&row),
                        time: time(&row).0,
                        row,
                    }
                }
            }
        };
        let piece_hash = {
            let key = key.clone();
            move |f: &Fired<K, A::Acc, T>| match f {
                Fired::Window { key, .. } => hasher.hash_key(key),
                Fired::Late(row) => hasher.hash_key(&key(row)),
            }
        };
        let final_of_pieces = |pieces: Stream<Fired<K, A::Acc, T>>, agg: A| {
            let routed = route(
                pieces,
                Strategy::Hash,
                LoadSignal::Credit,
                groups,
                piece_hash.clone(),
            );
            let stage = routed.unary_with(name, move |_| {
                WindowStage::<_, K, T, A, Results, _>::new(
                    agg.clone(),
                    assigner,
                    lateness,
                    max,
                    piece::<K, A::Acc, T>,
                )
                .with_snapshots(grouping)
            });
            with_parallelism(stage, final_parallelism)
        };

        let pieces = match parts.combine {
            None => {
                let routed = route(parts.stream, strategy, signal, groups, {
                    let key = key.clone();
                    move |r: &T| hasher.hash_key(&key(r))
                });
                if !split_keys {
                    let stage = routed.unary_with(name, move |_| {
                        WindowStage::<T, K, T, A, Results, _>::new(
                            agg.clone(),
                            assigner,
                            lateness,
                            max,
                            rows(),
                        )
                        .with_snapshots(grouping)
                    });
                    return (
                        with_parallelism(stage, final_parallelism),
                        final_parallelism,
                    );
                }
                let partial_agg = agg.clone();
                let partials = routed.unary_with(format!("{name}{PARTIAL_SUFFIX}"), move |_| {
                    WindowStage::<T, K, T, A, Partials, _>::new(
                        partial_agg.clone(),
                        assigner,
                        lateness,
                        partial_max,
                        rows(),
                    )
                    .with_snapshots(grouping)
                });
                with_parallelism(partials, parts.parallelism)
            }
            Some((capacity, combine_parallelism)) => {
                let combine_agg = agg.clone();
                let combined =
                    parts
                        .stream
                        .unary_with(format!("{name}{COMBINE_SUFFIX}"), move |_| {
                            WindowStage::<T, K, T, A, Partials, _>::new(
                                combine_agg.clone(),
                                assigner,
                                lateness,
                                capacity,
                                rows(),
                            )
                            .with_snapshots(grouping)
                        });
                let combined = with_parallelism(combined, combine_parallelism);
                if !split_keys {
                    return (final_of_pieces(combined, agg), final_parallelism);
                }
                let routed = route(combined, strategy, signal, groups, piece_hash.clone());
                let partial_agg = agg.clone();
                let partials = routed.unary_with(format!("{name}{PARTIAL_SUFFIX}"), move |_| {
                    WindowStage::<_, K, T, A, Partials, _>::new(
                        partial_agg.clone(),
                        assigner,
                        lateness,
                        partial_max,
                        piece::<K, A::Acc, T>,
                    )
                    .with_snapshots(grouping)
                });
                with_parallelism(partials, parts.parallelism)
            }
        };
        (final_of_pieces(pieces, agg), final_parallelism)
    }
}

/// The late rows of the windowed aggregation `name` in a run: the rows out of its operator
/// `name.late` ([`WindowedStream::aggregate_with_late`]) or the rows its operator
/// `name.results` skipped ([`WindowedStream::aggregate`]); 0 if there is neither.
pub fn late_rows(report: &RunReport, name: &str) -> u64 {
    let (late, results) = (
        format!("{name}{LATE_SUFFIX}"),
        format!("{name}{RESULTS_SUFFIX}"),
    );
    report
        .operators
        .iter()
        .map(|o| {
            if o.name == late {
                o.rows_out
            } else if o.name == results {
                o.skipped
            } else {
                0
            }
        })
        .sum()
}

/// `name.results` of [`WindowedStream::aggregate`]: each window's value as a [`Windowed`]; a
/// late row, which `aggregate` hands to no one, is counted as skipped.
struct ResultsOnly<K, V, T>(PhantomData<fn(K, V, T)>);

impl<K: Data, V: Data, T: Data> Operator for ResultsOnly<K, V, T> {
    type Input = Vec<Fired<K, V, T>>;
    type Output = Vec<Windowed<K, V>>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<Fired<K, V, T>>,
        out: &mut Output<Vec<Windowed<K, V>>>,
    ) -> Result<(), OperatorError> {
        let mut late = 0;
        for fired in batch {
            match fired {
                Fired::Window {
                    key,
                    start,
                    end,
                    firing,
                    value,
                } => out.push(Windowed {
                    key,
                    start: Timestamp(start),
                    end: Timestamp(end),
                    firing,
                    value,
                }),
                Fired::Late(_) => late += 1,
            }
        }
        if late > 0 {
            out.skip(late);
        }
        Ok(())
    }
}
