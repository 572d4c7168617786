//! Per-instance counters and time accounting, aggregated only when read.
//!
//! Every operator instance owns an [`InstanceMetrics`] that only its own task writes, with
//! `Relaxed` atomics (no shared cache line between instances on the hot path). Time is split the
//! way Flink splits it:
//!
//! - **busy**: running operator code (for a sink, also waiting in [`Sink::poll_ready`]);
//! - **idle**: waiting for input (or, for a source, for its external data);
//! - **backpressured**: holding output, waiting for credit from downstream.
//!
//! The task records only *transitions* between these states, so a task that never waits pays
//! nothing per batch. Readers add the time spent in the current state so far.
//!
//! [`Sink::poll_ready`]: crate::operator::Sink::poll_ready

mod report;

pub use report::{
    Bottleneck, EdgeReport, InstanceReport, OperatorReport, OverflowReport, RunReport,
};

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use crate::channel::EdgeProbe;
use crate::overflow::OverflowReason;

/// Rows an instance dropped, spilled or rejected under an overflow policy, by reason (see
/// [`Overflow`](crate::Overflow)).
#[derive(Debug, Default)]
pub struct OverflowCounts {
    /// Rows dropped because they found no room.
    pub dropped_newest: AtomicU64,
    /// Rows evicted from a full queue by newer ones.
    pub dropped_oldest: AtomicU64,
    /// Rows written to a spill.
    pub spilled: AtomicU64,
    /// Rows read back from a spill and sent on.
    pub unspilled: AtomicU64,
    /// Rows dropped because the spill was full.
    pub spill_full: AtomicU64,
    /// Rows dropped because the spill could not be written or read back.
    pub spill_failed: AtomicU64,
    /// Rows refused to a client with a retry hint.
    pub rejected: AtomicU64,
    /// Dead letters not stored because their queue was full.
    pub dead_letters_not_stored: AtomicU64,
}

impl OverflowCounts {
    /// The counter of `reason`.
    pub fn slot(&self, reason: OverflowReason) -> &AtomicU64 {
        match reason {
            OverflowReason::DroppedNewest => &self.dropped_newest,
            OverflowReason::DroppedOldest => &self.dropped_oldest,
            OverflowReason::Spilled => &self.spilled,
            OverflowReason::Unspilled => &self.unspilled,
            OverflowReason::SpillFull => &self.spill_full,
            OverflowReason::SpillFailed => &self.spill_failed,
            OverflowReason::Rejected => &self.rejected,
            OverflowReason::DeadLetterNotStored => &self.dead_letters_not_stored,
        }
    }
}

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
    /// Finished.
    Done = 3,
}

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
    /// Rows dropped, spilled or rejected under an overflow policy.
    pub overflow: OverflowCounts,
    ns: [AtomicU64; 3],
    state: AtomicU8,
    since_ns: AtomicU64,
    /// For an operator chained into another's task: that task's first operator, whose time
    /// figures are the task's.
    time_of: std::sync::OnceLock<Arc<InstanceMetrics>>,
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
            overflow: OverflowCounts::default(),
            ns: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            state: AtomicU8::new(TimeState::Idle as u8),
            since_ns: AtomicU64::new(0),
            time_of: std::sync::OnceLock::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
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
    }

    /// Nanoseconds spent busy, idle and backpressured so far, including the current state.
    pub fn times_ns(&self) -> [u64; 3] {
        if let Some(head) = self.time_of.get() {
            return head.times_ns();
        }
        let mut out = [
            self.ns[0].load(Relaxed),
            self.ns[1].load(Relaxed),
            self.ns[2].load(Relaxed),
        ];
        let state = self.state.load(Relaxed) as usize;
        if state < 3 {
            let since = self.since_ns.load(Relaxed);
            out[state] += self.now_ns().saturating_sub(since);
        }
        out
    }
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
    pub(crate) epoch: Instant,
    pub(crate) nodes: Vec<NodeEntry>,
    pub(crate) instances: Vec<InstanceEntry>,
    pub(crate) edges: Vec<EdgeEntry>,
}

impl Registry {
    pub(crate) fn snapshot(&self, finished: bool) -> RunReport {
        report::build(self, finished)
    }
}
