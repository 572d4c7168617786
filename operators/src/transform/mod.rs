//! Row-wise transforms on typed streams, as the [`StreamExt`] extension trait.
//!
//! Every transform is a thin [`Operator`](weir_runtime::Operator) built through the runtime's
//! public `unary_with` / `multi` wiring, one value per instance (closures are cloned per instance).
//! The row-wise ones ([`Map`], [`Filter`], [`FilterMap`], [`Inspect`]) are one generic operator,
//! [`UnaryFn`], with the user's function as its state; [`unary_fn`] builds the same operator from
//! closures, for a one-input operator of your own without an `impl Operator`.

mod basic;
pub mod map_async;
mod unary_fn;

pub use basic::{
    Filter, FilterMap, FilterMapRows, FilterRows, FlatMap, Inspect, InspectRows, Map, MapRows,
    RowFn, Union,
};
pub use map_async::{AsyncStreamExt, MapAsync};
pub use unary_fn::{unary_fn, BatchFn, DefaultHook, EndFn, UnaryFn, WatermarkFn};

use std::path::PathBuf;

use weir_runtime::{Data, SinkHandle, Stream};

use crate::connector::WriteSummary;
use crate::sink::{Collect, Count, Discard, Fold, ForEach, IterSink, NdjsonSink, RowIter};

/// Operators on a stream of typed rows.
///
/// # Examples
///
/// ```
/// use weir_operators::prelude::*;
///
/// let mut p = Pipeline::new("evens");
/// let squares = p
///     .source("n", Generator::new(10, |i| i))
///     .filter("even", |x| x % 2 == 0)
///     .map("square", |x| x * x)
///     .collect("out");
/// p.run()?;
/// assert_eq!(squares.take().unwrap(), vec![0, 4, 16, 36, 64]);
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
pub trait StreamExt<T: Data>: Sized {
    /// Applies `f` to every row.
    fn map<U, F>(self, name: impl Into<String>, f: F) -> Stream<U>
    where
        U: Data,
        F: FnMut(T) -> U + Clone + Send + 'static;

    /// Keeps the rows for which `f` is true.
    fn filter<F>(self, name: impl Into<String>, f: F) -> Stream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + 'static;

    /// Applies `f` to every row, keeping the `Some` results.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("parse");
    /// let words = ["7", "x", "35"].map(String::from);
    /// let numbers = p
    ///     .source("words", IterSource::new(words))
    ///     .filter_map("parse", |w: String| w.parse::<u32>().ok())
    ///     .collect("out");
    /// p.run()?;
    /// assert_eq!(numbers.take(), Some(vec![7, 35]));
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn filter_map<U, F>(self, name: impl Into<String>, f: F) -> Stream<U>
    where
        U: Data,
        F: FnMut(T) -> Option<U> + Clone + Send + 'static;

    /// Replaces every row by the rows `f` returns for it (re-batched to the batch size). The
    /// rows are drawn from `f`'s iterator one batch at a time, as downstream credit allows, so
    /// one row may expand into any number of rows without holding them all.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("repeat");
    /// let rows = p
    ///     .source("n", Generator::new(3, |i| i))
    ///     .flat_map("repeat", |i| std::iter::repeat_n(i, i as usize))
    ///     .collect("out");
    /// p.run()?;
    /// assert_eq!(rows.take(), Some(vec![1, 2, 2]));
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn flat_map<U, I, F>(self, name: impl Into<String>, f: F) -> Stream<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        I::IntoIter: Send + 'static,
        F: FnMut(T) -> I + Clone + Send + 'static;

    /// Calls `f` on every row and passes the row on unchanged.
    fn inspect<F>(self, name: impl Into<String>, f: F) -> Stream<T>
    where
        F: FnMut(&T) + Clone + Send + 'static;

    /// Merges this stream with `others` (same row type), interleaving batches fairly.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("both");
    /// let low = p.source("low", Generator::new(100, |i| i));
    /// let high = p.source("high", Generator::new(100, |i| 1_000 + i));
    /// let sum = low.union("both", [high]).fold("sum", 0u64, |a, x| a + x);
    /// p.run()?;
    /// assert_eq!(sum.take(), Some(2 * 4_950 + 100_000));
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn union(
        self,
        name: impl Into<String>,
        others: impl IntoIterator<Item = Stream<T>>,
    ) -> Stream<T>;

    /// Calls `f` on every row at the end of the pipeline.
    fn for_each<F>(self, name: impl Into<String>, f: F) -> SinkHandle<()>
    where
        F: FnMut(T) + Send + 'static;

    /// Folds every row into an accumulator; the handle yields it after the run.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("max");
    /// let max = p
    ///     .source("n", Generator::new(1_000, |i| (i * 7) % 1_000))
    ///     .fold("max", 0u64, |m, x| m.max(x));
    /// p.run()?;
    /// assert_eq!(max.take(), Some(999));
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn fold<A, F>(self, name: impl Into<String>, init: A, f: F) -> SinkHandle<A>
    where
        A: Send + 'static,
        F: FnMut(A, T) -> A + Send + 'static;

    /// Counts rows.
    fn count(self, name: impl Into<String>) -> SinkHandle<u64>;

    /// Collects rows into a `Vec` (at most [`Collect::DEFAULT_LIMIT`] rows; past it the run
    /// fails rather than grow without bound — use [`Collect::with_limit`] to choose).
    fn collect(self, name: impl Into<String>) -> SinkHandle<Vec<T>>;

    /// Consumes rows and drops them, counting them.
    fn discard(self, name: impl Into<String>) -> SinkHandle<u64>;

    /// Ends the stream in a bounded hand-off to an ordinary thread: iterate the returned
    /// [`RowIter`] while the pipeline runs (start it with `Pipeline::spawn`). At most `capacity`
    /// batches wait for the reader (at most
    /// [`EdgeConfig::MAX_CAPACITY`](weir_runtime::EdgeConfig::MAX_CAPACITY)); a slow reader
    /// backpressures the whole pipeline.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("iter");
    /// let rows = p.source("n", Generator::new(10_000, |i| i)).into_iter("rows", 4);
    /// let run = p.spawn()?;
    /// let evens = rows.filter(|x| x % 2 == 0).count(); // on this thread, as the run goes
    /// run.join()?;
    /// assert_eq!(evens, 5_000);
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn into_iter(self, name: impl Into<String>, capacity: usize) -> RowIter<T>;

    /// Ends the stream in NDJSON part files under `dir` (one JSON line per row), written by
    /// `parallelism` instances of one [`NdjsonSink`] with its default limits (batches spread
    /// round-robin over them; the instances share its run id). The rows before each barrier
    /// are in fsynced, visible parts before the barrier is reported; see
    /// [`sink::ndjson`](crate::sink::ndjson) for the file protocol. The handle yields each
    /// instance's summary. Build the sink yourself to set its limits.
    ///
    /// ```
    /// use weir_operators::prelude::*;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let mut p = Pipeline::new("numbers");
    /// let summaries = p.source("n", Generator::new(1_000, |i| i)).write_ndjson("files", dir.path(), 2);
    /// p.run()?;
    /// let rows: u64 = summaries.take_all().iter().map(|s| s.rows).sum();
    /// assert_eq!(rows, 1_000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn write_ndjson(
        self,
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        parallelism: usize,
    ) -> SinkHandle<WriteSummary>
    where
        T: serde::Serialize;
}

impl<T: Data> StreamExt<T> for Stream<T> {
    fn map<U, F>(self, name: impl Into<String>, f: F) -> Stream<U>
    where
        U: Data,
        F: FnMut(T) -> U + Clone + Send + 'static,
    {
        self.unary_with(name, move |_| Map::new(f.clone()))
    }

    fn filter<F>(self, name: impl Into<String>, f: F) -> Stream<T>
    where
        F: FnMut(&T) -> bool + Clone + Send + 'static,
    {
        self.unary_with(name, move |_| Filter::new(f.clone()))
    }

    fn filter_map<U, F>(self, name: impl Into<String>, f: F) -> Stream<U>
    where
        U: Data,
        F: FnMut(T) -> Option<U> + Clone + Send + 'static,
    {
        self.unary_with(name, move |_| FilterMap::new(f.clone()))
    }

    fn flat_map<U, I, F>(self, name: impl Into<String>, f: F) -> Stream<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        I::IntoIter: Send + 'static,
        F: FnMut(T) -> I + Clone + Send + 'static,
    {
        self.unary_with(name, move |_| FlatMap::new(f.clone()))
    }

    fn inspect<F>(self, name: impl Into<String>, f: F) -> Stream<T>
    where
        F: FnMut(&T) + Clone + Send + 'static,
    {
        self.unary_with(name, move |_| Inspect::new(f.clone()))
    }

    fn union(
        self,
        name: impl Into<String>,
        others: impl IntoIterator<Item = Stream<T>>,
    ) -> Stream<T> {
        self.multi(name, others, Union::new())
    }

    fn for_each<F>(self, name: impl Into<String>, f: F) -> SinkHandle<()>
    where
        F: FnMut(T) + Send + 'static,
    {
        self.sink(name, ForEach::new(f))
    }

    fn fold<A, F>(self, name: impl Into<String>, init: A, f: F) -> SinkHandle<A>
    where
        A: Send + 'static,
        F: FnMut(A, T) -> A + Send + 'static,
    {
        self.sink(name, Fold::new(init, f))
    }

    fn count(self, name: impl Into<String>) -> SinkHandle<u64> {
        self.sink(name, Count::new())
    }

    fn collect(self, name: impl Into<String>) -> SinkHandle<Vec<T>> {
        self.sink(name, Collect::new())
    }

    fn discard(self, name: impl Into<String>) -> SinkHandle<u64> {
        self.sink(name, Discard::new())
    }

    fn into_iter(self, name: impl Into<String>, capacity: usize) -> RowIter<T> {
        let (sink, iter) = IterSink::new(capacity);
        self.sink(name, sink);
        iter
    }

    fn write_ndjson(
        self,
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        parallelism: usize,
    ) -> SinkHandle<WriteSummary>
    where
        T: serde::Serialize,
    {
        let sink = NdjsonSink::<T>::new(dir);
        let stream = if parallelism > 1 {
            self.rebalance()
        } else {
            self
        };
        stream.sink_with_parallelism(name, parallelism, move |_| sink.clone())
    }
}
