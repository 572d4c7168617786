//! [`WatermarkStrategy`]: how a source's rows get event times and its stream watermarks, and
//! [`Stamper`], the per-instance state that applies one.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, ArrowPrimitiveType, RecordBatch};

use super::bounded_watermark;
use crate::batch::{Batch, Timestamp};
use crate::error::OperatorError;
use crate::heap_size::Data;

/// The largest event time (or punctuation) in a batch, `None` if it has none.
type BatchMax<B> = Arc<dyn Fn(&B) -> Result<Option<Timestamp>, OperatorError> + Send + Sync>;

/// A strategy that knows its kind but not yet how to read event times: the start of
/// [`WatermarkStrategy::bounded`] and [`WatermarkStrategy::monotonic`], completed by
/// [`timestamps`](WatermarkStrategy::timestamps) or [`column`](WatermarkStrategy::column).
#[derive(Clone, Copy, Debug)]
pub struct Untimed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `max − bound − 1`.
    Bounded(i64),
    /// The largest punctuation so far.
    Punctuated,
    /// No watermark until the end.
    None,
}

/// How a source assigns event times and generates watermarks: bounded out-of-orderness,
/// monotonic, punctuated or none, with an optional idle timeout and an optional alignment group.
/// The [module docs](crate::event_time) state what each choice means.
///
/// `B` is the batch type of the stream it applies to: `Vec<T>` for typed rows (event times from
/// [`timestamps`](Self::timestamps)), Arrow `RecordBatch` (from a [`column`](Self::column)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_runtime::{Timestamp, WatermarkStrategy};
///
/// struct Order { ts: i64 }
/// impl weir_runtime::HeapSize for Order {} // owns no heap memory
///
/// // Rows up to three seconds out of order; an instance with nothing to read for a minute
/// // stops holding the watermark back; instances of group "orders" stay within ten minutes.
/// let strategy = WatermarkStrategy::bounded(Duration::from_secs(3))
///     .timestamps(|o: &Order| Timestamp(o.ts))
///     .idle_timeout(Duration::from_secs(60))
///     .align("orders", Duration::from_secs(600));
/// # let _: WatermarkStrategy<Vec<Order>> = strategy;
/// ```
pub struct WatermarkStrategy<B> {
    pub(crate) kind: Kind,
    pub(crate) stamps: Option<BatchMax<B>>,
    pub(crate) idle_timeout: Option<Duration>,
    /// The alignment group and its largest drift, ms.
    pub(crate) align: Option<(Arc<str>, i64)>,
}

impl<B> Clone for WatermarkStrategy<B> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            stamps: self.stamps.clone(),
            idle_timeout: self.idle_timeout,
            align: self.align.clone(),
        }
    }
}

impl<B> std::fmt::Debug for WatermarkStrategy<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatermarkStrategy")
            .field("kind", &self.kind)
            .field("idle_timeout", &self.idle_timeout)
            .field("align", &self.align)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WatermarkStrategy<Untimed> {
    /// Rows arrive at most `bound` out of order: after each batch the watermark is
    /// `max − bound − 1 ms` over every event time seen (Flink's definition). Say where event
    /// times come from next, with [`timestamps`](Self::timestamps) or [`column`](Self::column).
    pub fn bounded(bound: Duration) -> Self {
        Self {
            kind: Kind::Bounded(millis(bound)),
            stamps: None,
            idle_timeout: None,
            align: None,
        }
    }

    /// Event times never decrease: [`bounded`](Self::bounded) with a bound of zero.
    pub fn monotonic() -> Self {
        Self::bounded(Duration::ZERO)
    }

    /// Reads each row's event time with `timestamp`.
    pub fn timestamps<T, F>(self, timestamp: F) -> WatermarkStrategy<Vec<T>>
    where
        T: Data,
        F: Fn(&T) -> Timestamp + Send + Sync + 'static,
    {
        let stamps: BatchMax<Vec<T>> =
            Arc::new(move |rows: &Vec<T>| Ok(rows.iter().map(&timestamp).max()));
        self.with_stamps(stamps)
    }

    /// Reads event times from the column `name` of Arrow batches: a `Timestamp` of any unit
    /// (converted to milliseconds) or `Int64` milliseconds. Null event times are skipped. A
    /// batch without such a column fails the run, naming the column.
    ///
    /// ```
    /// use std::time::Duration;
    /// use arrow_array::RecordBatch;
    /// use weir_runtime::WatermarkStrategy;
    ///
    /// let strategy: WatermarkStrategy<RecordBatch> =
    ///     WatermarkStrategy::bounded(Duration::from_secs(5)).column("created_at");
    /// ```
    pub fn column(self, name: impl Into<String>) -> WatermarkStrategy<RecordBatch> {
        let name: Arc<str> = name.into().into();
        let stamps: BatchMax<RecordBatch> = Arc::new(move |batch| column_max(batch, &name));
        self.with_stamps(stamps)
    }

    /// Reads event times with `max`, which returns the largest event time in a batch (`None`
    /// for a batch without any): for batch types other than `Vec` and `RecordBatch`.
    pub fn batch_timestamps<B, F>(self, max: F) -> WatermarkStrategy<B>
    where
        F: Fn(&B) -> Result<Option<Timestamp>, OperatorError> + Send + Sync + 'static,
    {
        self.with_stamps(Arc::new(max))
    }

    fn with_stamps<B>(self, stamps: BatchMax<B>) -> WatermarkStrategy<B> {
        WatermarkStrategy {
            kind: self.kind,
            stamps: Some(stamps),
            idle_timeout: self.idle_timeout,
            align: self.align,
        }
    }

    /// Watermarks from punctuation: `punctuation` returns, for a row that carries one, the
    /// watermark it announces. After each batch the watermark is the largest so far.
    ///
    /// ```
    /// use weir_runtime::{Timestamp, WatermarkStrategy};
    ///
    /// enum Event { Row(i64), Tick(i64) }
    /// impl weir_runtime::HeapSize for Event {}
    /// let strategy = WatermarkStrategy::punctuated(|e: &Event| match e {
    ///     Event::Tick(t) => Some(Timestamp(*t)),
    ///     Event::Row(_) => None,
    /// });
    /// # let _: WatermarkStrategy<Vec<Event>> = strategy;
    /// ```
    pub fn punctuated<T, F>(punctuation: F) -> WatermarkStrategy<Vec<T>>
    where
        T: Data,
        F: Fn(&T) -> Option<Timestamp> + Send + Sync + 'static,
    {
        WatermarkStrategy {
            kind: Kind::Punctuated,
            stamps: Some(Arc::new(move |rows: &Vec<T>| {
                Ok(rows.iter().filter_map(&punctuation).max())
            })),
            idle_timeout: None,
            align: None,
        }
    }
}

impl<B> WatermarkStrategy<B> {
    /// No watermark while the input lasts; `+∞` at its end. The stream holds every minimum it
    /// joins back until then (unless it goes idle), as Flink's `noWatermarks` does, and takes no
    /// part in alignment.
    ///
    /// ```
    /// use weir_runtime::WatermarkStrategy;
    ///
    /// let strategy = WatermarkStrategy::<Vec<u64>>::none();
    /// ```
    pub fn none() -> Self {
        Self {
            kind: Kind::None,
            stamps: None,
            idle_timeout: None,
            align: None,
        }
    }

    /// An instance whose source has had nothing to read for `timeout` goes idle: it stops
    /// holding watermarks and alignment back until its next row. Waiting for credit never
    /// counts (see the [module docs](crate::event_time)). Without it, an instance never goes
    /// idle.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Joins the alignment group `group` (every instance of every source naming it): an
    /// instance whose watermark is more than `max_drift` ahead of the slowest active member is
    /// paused until that one catches up.
    pub fn align(mut self, group: impl Into<String>, max_drift: Duration) -> Self {
        self.align = Some((group.into().into(), millis(max_drift)));
        self
    }

    /// Whether this strategy sends watermarks while its input lasts.
    pub(crate) fn is_none(&self) -> bool {
        self.kind == Kind::None
    }
}

/// The largest event time in column `name` of `batch`, in milliseconds.
fn column_max(batch: &RecordBatch, name: &str) -> Result<Option<Timestamp>, OperatorError> {
    let column = batch.column_by_name(name).ok_or_else(|| {
        OperatorError::user(format!(
            "the event-time column `{name}` is not in the batch; name an existing column"
        ))
    })?;
    fn max_of<T: ArrowPrimitiveType<Native = i64>>(
        a: &dyn Array,
        scale: impl Fn(i64) -> i64,
    ) -> Option<Option<Timestamp>> {
        let a = a.as_primitive_opt::<T>()?;
        let max = if a.null_count() == 0 {
            a.values().iter().copied().max()
        } else {
            a.iter().flatten().max()
        };
        Some(max.map(|v| Timestamp(scale(v))))
    }
    let a = column.as_ref();
    max_of::<TimestampMillisecondType>(a, |v| v)
        .or_else(|| max_of::<Int64Type>(a, |v| v))
        .or_else(|| max_of::<TimestampSecondType>(a, |v| v.saturating_mul(1000)))
        .or_else(|| max_of::<TimestampMicrosecondType>(a, |v| v.div_euclid(1000)))
        .or_else(|| max_of::<TimestampNanosecondType>(a, |v| v.div_euclid(1_000_000)))
        .ok_or_else(|| {
            OperatorError::user(format!(
                "the event-time column `{name}` is {}, not a timestamp or Int64 milliseconds",
                column.data_type()
            ))
        })
}

/// One instance's watermark generator: what a strategy has seen so far.
pub(crate) struct Stamper<B> {
    kind: Kind,
    stamps: Option<BatchMax<B>>,
    /// The largest event time (bounded) or punctuation (punctuated) seen.
    max: Option<i64>,
    /// The last watermark handed out.
    sent: Option<Timestamp>,
}

impl<B: Batch> Stamper<B> {
    pub(crate) fn new(strategy: &WatermarkStrategy<B>) -> Self {
        Self {
            kind: strategy.kind,
            stamps: strategy.stamps.clone(),
            max: None,
            sent: None,
        }
    }

    /// Takes in the event times of one batch.
    ///
    /// # Errors
    ///
    /// What reading them returned (a missing event-time column, say).
    #[inline]
    pub(crate) fn observe(&mut self, batch: &B) -> Result<(), OperatorError> {
        if let Some(stamps) = &self.stamps {
            if let Some(Timestamp(t)) = stamps(batch)? {
                self.max = Some(self.max.map_or(t, |m| m.max(t)));
            }
        }
        Ok(())
    }

    /// The watermark to send now, if it advanced past the last one sent.
    pub(crate) fn advance(&mut self) -> Option<Timestamp> {
        let max = self.max?;
        let wm = match self.kind {
            Kind::Bounded(bound) => bounded_watermark(max, bound),
            Kind::Punctuated => Timestamp(max),
            Kind::None => return None,
        };
        if self.sent.is_none_or(|s| wm > s) {
            self.sent = Some(wm);
            Some(wm)
        } else {
            None
        }
    }

    /// Notes that `+∞` was sent.
    pub(crate) fn end(&mut self) {
        self.sent = Some(Timestamp::MAX);
    }

    /// What this generator has seen and sent, for a checkpoint.
    pub(crate) fn state(&self) -> StamperState {
        StamperState {
            max: self.max,
            sent: self.sent.map(|t| t.0),
        }
    }

    /// Continues from `state` (what [`state`](Self::state) returned): the largest event time
    /// seen and the last watermark sent are back, so the next watermark is the one an
    /// uninterrupted generator would send, never one below what was sent.
    pub(crate) fn restore(&mut self, state: StamperState) {
        self.max = state.max;
        self.sent = state.sent.map(Timestamp);
    }
}

/// A [`Stamper`]'s state in a checkpoint: the largest event time (or punctuation) seen and the
/// last watermark sent, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StamperState {
    pub(crate) max: Option<i64>,
    pub(crate) sent: Option<i64>,
}

impl StamperState {
    /// The state of one generator standing for several (a restore at a lower parallelism): the
    /// lowest of each, so the merged generator claims no more progress than the slowest of
    /// them, as a minimum over inputs would. `None` for no state at all.
    pub(crate) fn lowest(states: impl IntoIterator<Item = StamperState>) -> Option<Self> {
        fn low(a: Option<i64>, b: Option<i64>) -> Option<i64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                // One of them had seen nothing: the merged one starts from nothing.
                _ => None,
            }
        }
        states.into_iter().reduce(|a, b| StamperState {
            max: low(a.max, b.max),
            sent: low(a.sent, b.sent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_watermark_trails_the_largest_event_time_by_the_bound_and_one_ms() {
        let s = WatermarkStrategy::bounded(Duration::from_millis(10))
            .timestamps(|t: &i64| Timestamp(*t));
        let mut st = Stamper::new(&s);
        st.observe(&vec![100, 50, 120]).unwrap();
        assert_eq!(st.advance(), Some(Timestamp(109)));
        // An older batch does not move it, nor does a batch without a new maximum.
        st.observe(&vec![30]).unwrap();
        assert_eq!(st.advance(), None);
        st.observe(&vec![121]).unwrap();
        assert_eq!(st.advance(), Some(Timestamp(110)));
    }

    #[test]
    fn punctuated_takes_the_largest_punctuation_as_given() {
        let s = WatermarkStrategy::punctuated(|t: &i64| (*t % 10 == 0).then_some(Timestamp(*t)));
        let mut st = Stamper::new(&s);
        st.observe(&vec![1, 2, 3]).unwrap();
        assert_eq!(st.advance(), None);
        st.observe(&vec![20, 30, 11]).unwrap();
        assert_eq!(st.advance(), Some(Timestamp(30)));
        st.observe(&vec![10]).unwrap();
        assert_eq!(st.advance(), None);
    }

    #[test]
    fn column_reads_millisecond_timestamps_and_int64_and_skips_nulls() {
        use arrow_array::{Int64Array, TimestampMillisecondArray, TimestampSecondArray};
        let ms: Arc<dyn Array> = Arc::new(TimestampMillisecondArray::from(vec![
            Some(5),
            None,
            Some(9),
        ]));
        let b = RecordBatch::try_from_iter([("ts", ms)]).unwrap();
        assert_eq!(column_max(&b, "ts").unwrap(), Some(Timestamp(9)));
        let i: Arc<dyn Array> = Arc::new(Int64Array::from(vec![7, 3]));
        let b = RecordBatch::try_from_iter([("ts", i)]).unwrap();
        assert_eq!(column_max(&b, "ts").unwrap(), Some(Timestamp(7)));
        let s: Arc<dyn Array> = Arc::new(TimestampSecondArray::from(vec![2]));
        let b = RecordBatch::try_from_iter([("ts", s)]).unwrap();
        assert_eq!(column_max(&b, "ts").unwrap(), Some(Timestamp(2000)));
        assert!(column_max(&b, "missing").is_err());
    }
}
