//! Per-instance counters and time accounting, aggregated only when read.
//!
//! Every operator instance owns an [`InstanceMetrics`] that only its own task writes, with
//! `Relaxed` atomics (no shared cache line between instances on the hot path). Time is split the
//! way Flink splits it:
//!
//! - **busy**: running operator code (for a sink, also waiting in [`Sink::poll_ready`]);
//! - **idle**: waiting for input (or, for a source, for its external data);
//! - **backpressured**: holding output, waiting for credit from downstream;
//! - **finishing**: after the end of its input, completing work and closing (a sink's commit
//!   and fsync, an operator's final flush). Counted apart from busy, because it does not limit
//!   the rate at which the pipeline moves rows.
//!
//! The task records only *transitions* between these states, so a task that never waits pays
//! nothing per batch. Readers add the time spent in the current state so far.
//!
//! # Chained operators
//!
//! Operators chained into one task share that task's clock; the report splits its time between
//! them when it is read:
//!
//! - each chained member times its own operator code on a batch whenever [`SAMPLE_ROWS`] rows
//!   have passed since the last one it timed (every batch, when batches are that large; two
//!   clock reads, under a nanosecond per row); its busy time is that sample scaled to all its
//!   rows, and the task's first operator keeps the rest of the task's busy time;
//! - time a chained member spends pending in its `poll_ready` (pacing itself, its asynchronous
//!   work at capacity) is its own busy time, and backpressure for the members before it, as it
//!   would be across an edge;
//! - idle and finishing time are the task's.
//!
//! # Event time
//!
//! Every instance records its watermark: a source the last one it sent, an operator or a sink
//! the last one over its inputs. A source with a watermark strategy also records its
//! [`EventTimeState`] (active, idle, paused by alignment, ended) and its time paused by
//! alignment. *Blocked* is not recorded apart: an active source whose time state is
//! backpressured (waiting for credit) is reported blocked, so the state costs nothing to keep.
//!
//! [`Sink::poll_ready`]: crate::operator::Sink::poll_ready

mod checkpoints;
mod latency;
mod report;

pub use checkpoints::CheckpointReport;
pub(crate) use checkpoints::CheckpointStats;

pub use latency::LatencyReport;
pub use report::{
    Bottleneck, EdgeReport, EventTimeReport, InstanceReport, OperatorReport, OverflowReport,
    RunReport,
};

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use crate::batch::Timestamp;
use crate::channel::EdgeProbe;
use crate::event_time::EventTimeState;
pub use crate::overflow::OverflowCounts;

/// A counter written by one task and read by any: `add` is a load and a store, not a locked
/// read-modify-write, so counting costs nothing on the hot path.
///
/// `fetch_add` and `load` mirror `AtomicU64`'s signatures so counters read like atomics; the
/// ordering argument is accepted for that and ignored (`Relaxed` is all a statistic needs).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new(value: u64) -> Self {
        Self(AtomicU64::new(value))
    }

    /// Adds `n`. Only the owning task may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds `n` (as [`add`](Self::add)); returns the previous value.
    #[inline]
    pub fn fetch_add(&self, n: u64, _order: std::sync::atomic::Ordering) -> u64 {
        let prev = self.0.load(Relaxed);
        self.0.store(prev.wrapping_add(n), Relaxed);
        prev
    }

    /// The current value.
    #[inline]
    pub fn load(&self, _order: std::sync::atomic::Ordering) -> u64 {
        self.0.load(Relaxed)
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Sets the value. Only the owning task may call this.
    #[inline]
    pub fn store(&self, v: u64, _order: std::sync::atomic::Ordering) {
        self.0.store(v, Relaxed);
    }
}

/// The state an instance is in, for time accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TimeState {
    /// Running operator code.
    Busy = 0,
    /// Waiting for input.
    Idle = 1,
    /// Waiting for downstream credit.
    Backpressured = 2,
    /// Completing work and closing after the end of input.
    Finishing = 3,
    /// Finished.
    Done = 4,
}

/// A chained operator times its own code on a batch once this many rows have passed since the
/// last batch it timed.
pub const SAMPLE_ROWS: u64 = 64;

/// Counters of one operator instance. Written by its task only; read by anyone.
#[derive(Debug)]
pub struct InstanceMetrics {
    epoch: Instant,
    /// Rows received.
    pub rows_in: Counter,
    /// Rows sent (per logical output edge, counted once however many consumers).
    pub rows_out: Counter,
    /// Batches received.
    pub batches_in: Counter,
    /// Batches sent.
    pub batches_out: Counter,
    /// Bytes received.
    pub bytes_in: Counter,
    /// Bytes sent.
    pub bytes_out: Counter,
    /// Rows discarded because every consumer of an edge had gone away.
    pub dropped_downstream_closed: Counter,
    /// Peak bytes held in this instance's output while waiting for credit.
    pub peak_held_bytes: Counter,
    /// Records sent to the dead-letter port.
    pub dead_letters: Counter,
    /// Rows skipped on purpose (a skip-and-count policy).
    pub skipped: Counter,
    /// State entries held now, as the operator reports them ([`Operator::state_size`]).
    ///
    /// [`Operator::state_size`]: crate::operator::Operator::state_size
    pub state_keys: Counter,
    /// State bytes held now, as the operator reports them.
    pub state_bytes: Counter,
    /// The most state entries held at once.
    pub peak_state_keys: Counter,
    /// The most state bytes held at once.
    pub peak_state_bytes: Counter,
    /// The most updates of one state entry an operator reported
    /// ([`StateSize::hottest_key_updates`](crate::operator::StateSize::hottest_key_updates)).
    pub peak_hottest_key_updates: Counter,
    /// Rows dropped, spilled or rejected under an overflow policy (shared with the instance's
    /// [`OverflowCounter`](crate::OverflowCounter)).
    pub overflow: Arc<OverflowCounts>,
    ns: [AtomicU64; 4],
    state: AtomicU8,
    since_ns: AtomicU64,
    /// For an operator chained into another's task: that task's first operator, whose time
    /// figures are the task's.
    time_of: std::sync::OnceLock<Arc<InstanceMetrics>>,
    /// A chained operator's own time on its sampled batches, ns.
    sampled_ns: Counter,
    /// Rows of the batches whose time is in `sampled_ns`.
    sampled_rows: Counter,
    /// Rows received since the last sampled batch.
    unsampled_rows: Counter,
    /// A chained operator's time pending in `poll_ready`, ns (closed intervals).
    paced_ns: Counter,
    /// Since when (ns after the epoch, plus one) it has been pending; 0 when it is not.
    paced_since: AtomicU64,
    /// A source's last watermark sent, or an operator's or sink's last input watermark;
    /// `i64::MIN` before the first.
    watermark: AtomicI64,
    /// A source's [`EventTimeState`] code; 0 without a watermark strategy.
    event_time: AtomicU8,
    /// Time paused by watermark alignment, ns (closed intervals).
    aligned_ns: Counter,
    /// Since when (ns after the epoch, plus one) it has been paused; 0 when it is not.
    aligned_since: AtomicU64,
    /// How many times alignment paused it.
    pub alignment_pauses: Counter,
    /// How many times it went idle.
    pub idle_periods: Counter,
    /// For a sink: the ages of the latency markers it received, made at the first.
    latency: std::sync::OnceLock<latency::LatencyHistogram>,
}

impl InstanceMetrics {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            rows_in: Counter::new(0),
            rows_out: Counter::new(0),
            batches_in: Counter::new(0),
            batches_out: Counter::new(0),
            bytes_in: Counter::new(0),
            bytes_out: Counter::new(0),
            dropped_downstream_closed: Counter::new(0),
            peak_held_bytes: Counter::new(0),
            dead_letters: Counter::new(0),
            skipped: Counter::new(0),
            state_keys: Counter::new(0),
            state_bytes: Counter::new(0),
            peak_state_keys: Counter::new(0),
            peak_state_bytes: Counter::new(0),
            peak_hottest_key_updates: Counter::new(0),
            overflow: Arc::default(),
            ns: [
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
                AtomicU64::new(0),
            ],
            state: AtomicU8::new(TimeState::Idle as u8),
            since_ns: AtomicU64::new(0),
            time_of: std::sync::OnceLock::new(),
            sampled_ns: Counter::new(0),
            sampled_rows: Counter::new(0),
            unsampled_rows: Counter::new(0),
            paced_ns: Counter::new(0),
            paced_since: AtomicU64::new(0),
            watermark: AtomicI64::new(i64::MIN),
            event_time: AtomicU8::new(0),
            aligned_ns: Counter::new(0),
            aligned_since: AtomicU64::new(0),
            alignment_pauses: Counter::new(0),
            idle_periods: Counter::new(0),
            latency: std::sync::OnceLock::new(),
        }
    }

    /// Records the age of a latency marker that reached this sink instance.
    #[inline]
    pub(crate) fn note_latency(&self, age: std::time::Duration) {
        self.latency
            .get_or_init(latency::LatencyHistogram::new)
            .record(age);
    }

    /// Adds the marker ages this instance recorded into `into` (of [`latency::BUCKETS`]
    /// entries); returns whether it recorded any.
    pub(crate) fn add_latency_to(&self, into: &mut [u64]) -> bool {
        match self.latency.get() {
            Some(h) => {
                h.add_to(into);
                true
            }
            None => false,
        }
    }

    /// Records the watermark an instance sent (a source) or received (others).
    #[inline]
    pub(crate) fn note_watermark(&self, watermark: Timestamp) {
        self.watermark.store(watermark.0, Relaxed);
    }

    /// A source's last watermark sent, or an operator's or sink's last input watermark.
    pub fn watermark(&self) -> Option<Timestamp> {
        let w = self.watermark.load(Relaxed);
        (w != i64::MIN).then_some(Timestamp(w))
    }

    /// Records a source's event-time state (active, idle, paused or ended; blocked is derived
    /// from its time state when read).
    pub(crate) fn set_event_time(&self, state: EventTimeState) {
        self.event_time.store(state.code(), Relaxed);
    }

    /// A source's event-time state, `None` without a watermark strategy: an active instance
    /// that waits for credit is reported blocked.
    pub fn event_time(&self) -> Option<EventTimeState> {
        let state = EventTimeState::from_code(self.event_time.load(Relaxed))?;
        if state == EventTimeState::Active
            && self.state.load(Relaxed) == TimeState::Backpressured as u8
        {
            return Some(EventTimeState::Blocked);
        }
        Some(state)
    }

    /// Alignment paused the source (from now, unless it already was).
    pub(crate) fn align_pause_start(&self) {
        if self.aligned_since.load(Relaxed) == 0 {
            self.alignment_pauses.add(1);
            self.aligned_since.store(self.now_ns() + 1, Relaxed);
        }
        self.set_event_time(EventTimeState::Paused);
    }

    /// The source may read again: its paused time so far is credited.
    pub(crate) fn align_pause_end(&self) {
        let since = self.aligned_since.load(Relaxed);
        if since != 0 {
            self.aligned_ns
                .add((self.now_ns() + 1).saturating_sub(since));
            self.aligned_since.store(0, Relaxed);
            self.set_event_time(EventTimeState::Active);
        }
    }

    /// Time paused by watermark alignment so far, ns.
    pub fn aligned_ns(&self) -> u64 {
        let mut ns = self.aligned_ns.get();
        let since = self.aligned_since.load(Relaxed);
        if since != 0 {
            ns += (self.now_ns() + 1).saturating_sub(since);
        }
        ns
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Time spent busy or backpressured as credited so far (not idle, not finishing), ns: no
    /// clock read, so the current state's time counts from its next switch or checkpoint.
    /// What an instance's drain rate is measured over (`channel/debloat.rs`).
    #[inline]
    pub(crate) fn active_ns(&self) -> u64 {
        self.ns[TimeState::Busy as usize].load(Relaxed)
            + self.ns[TimeState::Backpressured as usize].load(Relaxed)
    }

    /// Time spent waiting for input as credited so far, ns (no clock read, as
    /// [`active_ns`](Self::active_ns)).
    #[inline]
    pub(crate) fn idle_ns(&self) -> u64 {
        self.ns[TimeState::Idle as usize].load(Relaxed)
    }

    /// Moves the instance into `state`, crediting the time spent in the previous one.
    pub(crate) fn switch(&self, state: TimeState) {
        let prev = self.state.load(Relaxed);
        if prev == state as u8 {
            return;
        }
        let now = self.now_ns();
        let since = self.since_ns.load(Relaxed);
        if let Some(slot) = self.ns.get(prev as usize) {
            slot.store(slot.load(Relaxed) + now.saturating_sub(since), Relaxed);
        }
        self.since_ns.store(now, Relaxed);
        self.state.store(state as u8, Relaxed);
    }

    /// Credits time spent in the current state so far without changing state (called when a
    /// long-running task yields, so live readers see fresh numbers).
    pub(crate) fn checkpoint(&self) {
        let state = self.state.load(Relaxed);
        if let Some(slot) = self.ns.get(state as usize) {
            let now = self.now_ns();
            let since = self.since_ns.load(Relaxed);
            self.since_ns.store(now, Relaxed);
            slot.store(slot.load(Relaxed) + now.saturating_sub(since), Relaxed);
        }
    }

    /// Counts one received batch.
    #[inline]
    pub(crate) fn note_input(&self, rows: usize, bytes: usize) {
        self.rows_in.add(rows as u64);
        self.batches_in.add(1);
        self.bytes_in.add(bytes as u64);
    }

    /// Records held output bytes, keeping the peak.
    pub(crate) fn note_held(&self, bytes: usize) {
        let bytes = bytes as u64;
        if bytes > self.peak_held_bytes.load(Relaxed) {
            self.peak_held_bytes.store(bytes, Relaxed);
        }
    }

    /// Makes this instance report the time figures of `head`, the first operator of the task it
    /// is chained into.
    pub(crate) fn share_time_with(&self, head: Arc<InstanceMetrics>) {
        let _ = self.time_of.set(head);
    }

    /// Records the state size an operator reported, keeping the peaks.
    pub(crate) fn note_state(&self, size: crate::operator::StateSize) {
        self.state_keys.store(size.keys, Relaxed);
        self.state_bytes.store(size.bytes, Relaxed);
        if size.keys > self.peak_state_keys.load(Relaxed) {
            self.peak_state_keys.store(size.keys, Relaxed);
        }
        if size.bytes > self.peak_state_bytes.load(Relaxed) {
            self.peak_state_bytes.store(size.bytes, Relaxed);
        }
        if size.hottest_key_updates > self.peak_hottest_key_updates.get() {
            self.peak_hottest_key_updates
                .store(size.hottest_key_updates, Relaxed);
        }
    }

    /// Whether a chained operator should time this batch of `rows` rows: once [`SAMPLE_ROWS`]
    /// rows have passed since the last batch it timed. Only the owning task may call this.
    #[inline]
    pub(crate) fn sample_due(&self, rows: usize) -> bool {
        let since = self.unsampled_rows.get() + rows.max(1) as u64;
        let due = since >= SAMPLE_ROWS;
        self.unsampled_rows
            .store(if due { 0 } else { since }, Relaxed);
        due
    }

    /// Adds the time of one sampled batch of `rows` rows.
    pub(crate) fn note_sample(&self, rows: usize, ns: u64) {
        self.sampled_ns.add(ns);
        self.sampled_rows.add(rows.max(1) as u64);
    }

    /// A chained operator is pending in `poll_ready` (from now, unless it already was).
    #[inline]
    pub(crate) fn pace_start(&self) {
        if self.paced_since.load(Relaxed) == 0 {
            self.paced_since.store(self.now_ns() + 1, Relaxed);
        }
    }

    /// A chained operator is ready again: its pending time so far is credited.
    #[inline]
    pub(crate) fn pace_end(&self) {
        let since = self.paced_since.load(Relaxed);
        if since != 0 {
            self.paced_ns.add((self.now_ns() + 1).saturating_sub(since));
            self.paced_since.store(0, Relaxed);
        }
    }

    /// A chained operator's own time so far, ns: its code (estimated from the sampled batches)
    /// and its time pending in `poll_ready`. Zero for an operator running its own task.
    pub fn chained_ns(&self) -> ChainedTime {
        let sampled = self.sampled_rows.get();
        let code = if sampled == 0 {
            0
        } else {
            (self.sampled_ns.get() as u128 * self.rows_in.get().max(sampled) as u128
                / sampled as u128) as u64
        };
        let mut paced = self.paced_ns.get();
        let since = self.paced_since.load(Relaxed);
        if since != 0 {
            paced += (self.now_ns() + 1).saturating_sub(since);
        }
        ChainedTime { code, paced }
    }

    /// Nanoseconds spent busy, idle, backpressured and finishing so far, including the current
    /// state: the task's figures, for an operator chained into another's task.
    pub fn times_ns(&self) -> [u64; 4] {
        if let Some(head) = self.time_of.get() {
            return head.times_ns();
        }
        let mut out = [
            self.ns[0].load(Relaxed),
            self.ns[1].load(Relaxed),
            self.ns[2].load(Relaxed),
            self.ns[3].load(Relaxed),
        ];
        let state = self.state.load(Relaxed) as usize;
        if let Some(slot) = out.get_mut(state) {
            let since = self.since_ns.load(Relaxed);
            *slot += self.now_ns().saturating_sub(since);
        }
        out
    }
}

/// A chained operator's own share of its task's time (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainedTime {
    /// Running its own code, ns (estimated from sampled batches).
    pub code: u64,
    /// Pending in its `poll_ready`, ns.
    pub paced: u64,
}

/// What kind of operator a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Produces data.
    Source,
    /// Transforms data.
    Operator,
    /// Consumes data.
    Sink,
}

pub(crate) struct InstanceEntry {
    pub(crate) node: usize,
    pub(crate) instance: usize,
    pub(crate) metrics: Arc<InstanceMetrics>,
}

pub(crate) struct EdgeEntry {
    pub(crate) from: usize,
    pub(crate) from_instance: usize,
    pub(crate) to: usize,
    pub(crate) to_instance: usize,
    pub(crate) probe: EdgeProbe,
}

pub(crate) struct NodeEntry {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parallelism: usize,
    pub(crate) upstream: Vec<usize>,
    /// The first operator of the task this one runs in, if it is chained.
    pub(crate) chained_into: Option<usize>,
}

/// Everything needed to build a [`RunReport`] at any moment of a run.
pub(crate) struct Registry {
    pub(crate) pipeline: String,
    /// The run's stop signal: a report made after a stop was asked for says "stopped".
    pub(crate) stop: Arc<crate::stop::StopSignal>,
    pub(crate) epoch: Instant,
    pub(crate) nodes: Vec<NodeEntry>,
    pub(crate) instances: Vec<InstanceEntry>,
    pub(crate) edges: Vec<EdgeEntry>,
    /// The run's checkpoint figures, when checkpoints are on.
    pub(crate) checkpoints: std::sync::OnceLock<Arc<CheckpointStats>>,
}

impl Registry {
    pub(crate) fn snapshot(&self, finished: bool) -> RunReport {
        report::build(self, finished)
    }
}
