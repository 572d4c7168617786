//! Keyed process functions: per-key state and timers in event time and processing time
//! (Flink's `KeyedProcessFunction`).
//!
//! `stream.key_by(|r| key).process(name, f)` routes rows by key hash (every row of a key reaches
//! one instance, whatever [`Strategy`](super::route::Strategy) the keyed stream was given) into
//! instances that call `f` ([`KeyedProcessFunction`]) on each row with a [`ProcessContext`]
//! scoped to the row's key: its value state, its timers, the watermark and the processing time.
//!
//! # Semantics
//!
//! - **Value state.** One value of the function's `State` type per key ([`ProcessContext::value`],
//!   [`set`](ProcessContext::set), [`clear`](ProcessContext::clear), ...); a map or a list per key
//!   is a `State` that is a map or a list. Its size is measured with [`HeapSize`] after every
//!   callback and reported through [`Operator::state_size`], so the run report shows it (a
//!   `Vec` or map of plain values measures in constant time; one of `String`s visits them, so
//!   keep such values small). State grows with the keys: bound it by clearing values, with
//!   timers, or with a time-to-live.
//! - **Time-to-live** ([`ProcessOptions::ttl`]) runs in **processing time**, as Flink's state TTL:
//!   a value expires `ttl` after its last write (created, set or borrowed mutably; reads do not
//!   extend it), is never returned once expired, and is freed when the clock passes its expiry
//!   (the operator wakes for it; memory is given back, not just hidden).
//! - **Event-time timers** at `t` fire once the watermark passes `t` (`watermark > t`): weir's
//!   watermark `w` promises no row before `w` follows, so every row at or before `t` has
//!   arrived. To act at the end of a window `[s, e)`, register `e - 1`, as in Flink. They fire
//!   before the watermark is forwarded, so their output is ahead of it.
//! - **Processing-time timers** at `t` fire once the clock reads `t` or later. The operator
//!   arranges a wake-up for the earliest one through the clock ([`Clock::wait_until`]), so it
//!   never polls; the clock is read once per batch, per watermark and per wake-up.
//! - **Order.** Timers of a domain fire in time order; at equal times, in registration order.
//!   A key has at most one timer per domain and time: registering it again changes nothing.
//!   A timer registered by a callback for a time already passed fires in the same pass.
//! - **End of input** is the watermark at +∞: every pending event-time timer fires, in order
//!   (timers that those callbacks register do not: a periodic timer would re-register forever).
//!   Pending processing-time timers are dropped, as Flink drops them when a task finishes;
//!   values whose time-to-live has passed are freed. State left then stays in the report
//!   (`state_bytes`), which is how a test sees a leak.
//! - **Barriers.** Values, deadlines and timers can be written into a checkpoint by key group
//!   ([`KeyedSnapshot`], when the key and the `State` are
//!   serde types); until the executor takes operator snapshots, the operator refuses checkpoint
//!   barriers ([`Operator::holds_rows`]).
//!
//! # Examples
//!
//! Counting each user's rows and emitting the count when the watermark passes the
//! user's last row plus 10 ms (a session of sorts):
//!
//! ```
//! use weir_operators::keyed::process::{KeyedProcessFunction, ProcessContext};
//! use weir_operators::prelude::*;
//! use weir_runtime::{Output, Timestamp};
//!
//! #[derive(Clone)]
//! struct CountUntilQuiet;
//!
//! impl KeyedProcessFunction<u32, (u32, i64)> for CountUntilQuiet {
//!     type State = (u64, i64); // (rows, last timer)
//!     type Output = (u32, u64);
//!
//!     fn process(
//!         &mut self,
//!         (_, ts): (u32, i64),
//!         ctx: &mut ProcessContext<'_, u32, (u64, i64)>,
//!         _: &mut Output<Vec<(u32, u64)>>,
//!     ) -> Result<(), OperatorError> {
//!         let (rows, timer) = *ctx.get_or_insert_with(|| (0, i64::MIN));
//!         let next = timer.max(ts + 10);
//!         ctx.delete_event_time_timer(Timestamp(timer));
//!         ctx.register_event_time_timer(Timestamp(next));
//!         ctx.set((rows + 1, next));
//!         Ok(())
//!     }
//!
//!     fn on_timer(
//!         &mut self,
//!         _: Timestamp,
//!         ctx: &mut ProcessContext<'_, u32, (u64, i64)>,
//!         out: &mut Output<Vec<(u32, u64)>>,
//!     ) -> Result<(), OperatorError> {
//!         if let Some((rows, _)) = ctx.clear() {
//!             out.push((*ctx.key(), rows));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut p = Pipeline::new("quiet");
//! let counts = p
//!     .source("rows", IterSource::new([(1u32, 0i64), (2, 3), (1, 5), (1, 40)]))
//!     .key_by(|r: &(u32, i64)| r.0)
//!     .process("count", CountUntilQuiet)
//!     .collect("out");
//! p.run()?; // the end of input fires every event-time timer
//! let mut counts = counts.take().unwrap();
//! counts.sort();
//! assert_eq!(counts, [(1, 3), (2, 1)]);
//! # Ok::<(), weir_runtime::RunError>(())
//! ```

mod clock;
mod snapshot;
mod store;
mod timers;

use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use weir_runtime::{
    Data, HeapSize, InputPort, Operator, OperatorError, Output, StateSize, Stream, Timestamp,
};

pub use clock::{Clock, ManualClock, SystemClock, Wait};
pub(crate) use store::ValueStore;
use timers::TimerQueue;

use super::stream::KeyedStream;
use crate::snapshot::{KeyGrouping, KeyedSnapshot, SnapshotHooks};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The watermark at the end of input: +∞.
pub const END_OF_TIME: Timestamp = Timestamp(i64::MAX);

/// Which clock a timer runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimeDomain {
    /// Event time: fires when the watermark passes it.
    EventTime,
    /// Processing time: fires when the clock reaches it.
    ProcessingTime,
}

impl HeapSize for TimeDomain {
    const HAS_HEAP: bool = false;
}

/// What a keyed process function does with each row and each timer of its key.
///
/// One copy (a clone) runs per instance; state kept in `self` is per instance, not per key —
/// keep per-key state in [`ProcessContext`]'s value.
///
/// # Errors
///
/// An error ends the run, reported with the operator's name.
pub trait KeyedProcessFunction<K, T>: Clone + Send + 'static {
    /// The value kept per key.
    type State: HeapSize + Send + 'static;
    /// The rows emitted.
    type Output: Data;

    /// Handles one row of the context's key.
    fn process(
        &mut self,
        row: T,
        ctx: &mut ProcessContext<'_, K, Self::State>,
        out: &mut Output<Vec<Self::Output>>,
    ) -> Result<(), OperatorError>;

    /// A timer of the context's key fired at `ts` ([`ProcessContext::time_domain`] says which
    /// kind). The default does nothing.
    fn on_timer(
        &mut self,
        _ts: Timestamp,
        _ctx: &mut ProcessContext<'_, K, Self::State>,
        _out: &mut Output<Vec<Self::Output>>,
    ) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// One key's view of the operator during a callback: its value state, its timers, the time.
pub struct ProcessContext<'a, K, S> {
    key: &'a K,
    store: &'a mut ValueStore<K, S>,
    event: &'a mut TimerQueue<K>,
    processing: &'a mut TimerQueue<K>,
    watermark: Option<Timestamp>,
    now: Timestamp,
    domain: Option<TimeDomain>,
}

impl<K, S> std::fmt::Debug for ProcessContext<'_, K, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessContext")
            .field("watermark", &self.watermark)
            .field("now", &self.now)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + HeapSize, S: HeapSize> ProcessContext<'_, K, S> {
    /// The key this call is for.
    pub fn key(&self) -> &K {
        self.key
    }

    /// The key's value, if it has one that has not expired.
    pub fn value(&self) -> Option<&S> {
        self.store.get(self.key, self.now)
    }

    /// The key's value to change in place (a write: it restarts the time-to-live).
    pub fn value_mut(&mut self) -> Option<&mut S> {
        self.store.get_mut(self.key, self.now)
    }

    /// The key's value, made by `init` if it has none (a write).
    pub fn get_or_insert_with(&mut self, init: impl FnOnce() -> S) -> &mut S {
        self.store.get_or_insert_with(self.key, self.now, init)
    }

    /// Sets the key's value (a write).
    pub fn set(&mut self, value: S) {
        self.store.set(self.key, value, self.now);
    }

    /// Removes the key's value and returns it (unless it had expired), freeing its memory.
    pub fn clear(&mut self) -> Option<S> {
        let live = self.store.get(self.key, self.now).is_some();
        self.store.remove(self.key).filter(|_| live)
    }

    /// The current watermark (the minimum over the inputs), if one has arrived.
    pub fn watermark(&self) -> Option<Timestamp> {
        self.watermark
    }

    /// The processing time of this call, in milliseconds since the Unix epoch.
    pub fn processing_time(&self) -> Timestamp {
        self.now
    }

    /// In [`on_timer`](KeyedProcessFunction::on_timer), which kind of timer fired; `None` in
    /// [`process`](KeyedProcessFunction::process).
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// Registers an event-time timer for this key at `ts` (see the [module docs](self) for
    /// when it fires). Registering one the key has already is a no-op.
    pub fn register_event_time_timer(&mut self, ts: Timestamp) {
        self.event.register(self.key, ts);
    }

    /// Deletes this key's event-time timer at `ts`, if any.
    pub fn delete_event_time_timer(&mut self, ts: Timestamp) {
        self.event.delete(self.key, ts);
    }

    /// Registers a processing-time timer for this key at `ts` (milliseconds since the Unix
    /// epoch on the operator's [`Clock`]).
    pub fn register_processing_time_timer(&mut self, ts: Timestamp) {
        self.processing.register(self.key, ts);
    }

    /// Deletes this key's processing-time timer at `ts`, if any.
    pub fn delete_processing_time_timer(&mut self, ts: Timestamp) {
        self.processing.delete(self.key, ts);
    }
}

/// How a keyed process stage keeps its state and tells processing time.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::keyed::process::{ManualClock, ProcessOptions};
/// use weir_runtime::Timestamp;
///
/// let clock = ManualClock::new(Timestamp(0));
/// let options = ProcessOptions::default()
///     .ttl(Duration::from_secs(60))
///     .clock(clock.clone());
/// # let _ = options;
/// ```
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            ttl: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ProcessOptions {
    /// Values expire `ttl` of processing time after their last write (see the
    /// [module docs](self)). Default: never.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The clock processing time is read from (default [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn ttl_ms(&self) -> Option<i64> {
        self.ttl
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The keyed process operator (see the [module docs](self)); built by
/// [`KeyedStream::process`], or driven by hand in tests.
pub struct ProcessStage<T, K, KF, P>
where
    P: KeyedProcessFunction<K, T>,
{
    key: KF,
    f: P,
    store: ValueStore<K, <P as KeyedProcessFunction<K, T>>::State>,
    event: TimerQueue<K>,
    processing: TimerQueue<K>,
    clock: Arc<dyn Clock>,
    watermark: Option<Timestamp>,
    /// The pending wake-up for the earliest processing-time deadline, and that deadline.
    wait: Option<(Timestamp, Wait)>,
    ended: bool,
    snapshots: Option<SnapshotHooks<Self>>,
}

impl<T, K, KF, P> std::fmt::Debug for ProcessStage<T, K, KF, P>
where
    P: KeyedProcessFunction<K, T>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessStage")
            .field("watermark", &self.watermark)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<T, K, KF, P> ProcessStage<T, K, KF, P>
where
    T: Data,
    K: Hash + Eq + Clone + Data,
    KF: Fn(&T) -> K + Send + 'static,
    P: KeyedProcessFunction<K, T>,
{
    /// A stage keying rows by `key` and calling `f`.
    pub fn new(key: KF, f: P, options: &ProcessOptions) -> Self {
        Self {
            key,
            f,
            store: ValueStore::new(options.ttl_ms()),
            event: TimerQueue::new(),
            processing: TimerQueue::new(),
            clock: options.clock.clone(),
            watermark: None,
            wait: None,
            ended: false,
            snapshots: None,
        }
    }

    /// Makes the stage write its state into checkpoints and read it back, keys filed by
    /// `grouping` (that of the keyed edge in front of it).
    pub fn with_snapshots(mut self, grouping: KeyGrouping) -> Self
    where
        Self: KeyedSnapshot,
    {
        self.snapshots = Some(SnapshotHooks::new(grouping));
        self
    }

    /// Calls `on_timer` for `key`'s timer at `ts`.
    fn fire(
        &mut self,
        key: K,
        ts: Timestamp,
        domain: TimeDomain,
        now: Timestamp,
        out: &mut Output<Vec<P::Output>>,
    ) -> Result<(), OperatorError> {
        let mut ctx = ProcessContext {
            key: &key,
            store: &mut self.store,
            event: &mut self.event,
            processing: &mut self.processing,
            watermark: self.watermark,
            now,
            domain: Some(domain),
        };
        let r = self.f.on_timer(ts, &mut ctx, out);
        self.store.remeasure(&key);
        r
    }

    /// Fires the processing-time timers due at `now` and frees expired state.
    fn run_clock(
        &mut self,
        now: Timestamp,
        out: &mut Output<Vec<P::Output>>,
    ) -> Result<(), OperatorError> {
        while let Some((ts, _, key)) = self.processing.pop_until(now) {
            self.fire(key, ts, TimeDomain::ProcessingTime, now, out)?;
        }
        self.store.expire(now);
        Ok(())
    }

    /// Fires the event-time timers before `watermark`; at [`END_OF_TIME`], every timer
    /// registered before the call.
    fn advance(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Vec<P::Output>>,
    ) -> Result<(), OperatorError> {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
        let now = self.clock.now();
        if watermark == END_OF_TIME {
            let mark = self.event.mark();
            while let Some((ts, seq, key)) = self.event.pop_until(END_OF_TIME) {
                if seq < mark {
                    self.fire(key, ts, TimeDomain::EventTime, now, out)?;
                }
            }
            return Ok(());
        }
        let limit = Timestamp(watermark.0.saturating_sub(1));
        while let Some((ts, _, key)) = self.event.pop_until(limit) {
            self.fire(key, ts, TimeDomain::EventTime, now, out)?;
        }
        Ok(())
    }

    /// The earliest processing-time deadline: a timer or an expiry.
    fn next_deadline(&self) -> Option<Timestamp> {
        match (self.processing.peek(), self.store.next_expiry()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<T, K, KF, P> Operator for ProcessStage<T, K, KF, P>
where
    T: Data,
    K: Hash + Eq + Clone + Data,
    KF: Fn(&T) -> K + Send + 'static,
    P: KeyedProcessFunction<K, T>,
{
    type Input = Vec<T>;
    type Output = Vec<P::Output>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<P::Output>>,
    ) -> Result<(), OperatorError> {
        let now = self.clock.now();
        self.run_clock(now, out)?;
        for row in batch {
            let key = (self.key)(&row);
            let mut ctx = ProcessContext {
                key: &key,
                store: &mut self.store,
                event: &mut self.event,
                processing: &mut self.processing,
                watermark: self.watermark,
                now,
                domain: None,
            };
            let r = self.f.process(row, &mut ctx, out);
            self.store.remeasure(&key);
            r?;
        }
        Ok(())
    }

    fn on_watermark(
        &mut self,
        watermark: Timestamp,
        out: &mut Output<Vec<P::Output>>,
    ) -> Result<(), OperatorError> {
        self.advance(watermark, out)?;
        out.watermark(watermark);
        Ok(())
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<P::Output>>,
    ) -> Poll<Result<(), OperatorError>> {
        loop {
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            let Some(deadline) = self.next_deadline() else {
                self.wait = None;
                return Poll::Ready(Ok(()));
            };
            let now = self.clock.now();
            if deadline <= now {
                if let Err(e) = self.run_clock(now, out) {
                    return Poll::Ready(Err(e));
                }
                continue;
            }
            if self.wait.as_ref().is_none_or(|(at, _)| *at != deadline) {
                self.wait = Some((deadline, self.clock.wait_until(deadline)));
            }
            let Some((_, wait)) = self.wait.as_mut() else {
                unreachable!("set above")
            };
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
    }

    fn on_end(&mut self, out: &mut Output<Vec<P::Output>>) -> Result<(), OperatorError> {
        if self.watermark != Some(END_OF_TIME) {
            self.advance(END_OF_TIME, out)?;
        }
        self.processing.clear();
        self.store.expire(self.clock.now());
        self.wait = None;
        self.ended = true;
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        Some(StateSize {
            keys: (self.store.len() + self.event.len() + self.processing.len()) as u64,
            bytes: (self.store.bytes() + self.event.bytes() + self.processing.bytes()) as u64,
            hottest_key_updates: 0,
        })
    }

    fn holds_rows(&self) -> bool {
        true
    }

    crate::snapshot::snapshot_hooks!(snapshots);
}

impl<T, K, F> KeyedStream<T, K, F>
where
    T: Data,
    K: Hash + Eq + Clone + Data,
    F: Fn(&T) -> K + Clone + Send + Sync + 'static,
{
    /// Runs `f` on every row with its key's state and timers (see the [module docs](self)),
    /// with default [`ProcessOptions`]: no time-to-live, the system clock.
    pub fn process<P>(self, name: impl Into<String>, f: P) -> Stream<P::Output>
    where
        P: KeyedProcessFunction<K, T>,
        P::State: Serialize + DeserializeOwned,
        K: Serialize + DeserializeOwned,
    {
        self.process_with(name, f, ProcessOptions::default())
    }

    /// As [`process`](Self::process), with `options`.
    pub fn process_with<P>(
        self,
        name: impl Into<String>,
        f: P,
        options: ProcessOptions,
    ) -> Stream<P::Output>
    where
        P: KeyedProcessFunction<K, T>,
        P::State: Serialize + DeserializeOwned,
        K: Serialize + DeserializeOwned,
    {
        let grouping = self.grouping();
        let (routed, key, parallelism) = self.hash_routed();
        let stage = routed.unary_with(name, move |_| {
            ProcessStage::new(key.clone(), f.clone(), &options).with_snapshots(grouping)
        });
        match parallelism {
            Some(p) => stage.parallelism(p),
            None => stage,
        }
    }
}

#[cfg(test)]
mod tests;
