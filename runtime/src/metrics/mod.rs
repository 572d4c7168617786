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
        }
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
    pub rows_in: AtomicU64,
    /// Rows sent (per logical output edge, counted once however many consumers).
    pub rows_out: AtomicU64,
    /// Batches received.
    pub batches_in: AtomicU64,
    /// Batches sent.
    pub batches_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Rows discarded because every consumer of an edge had gone away.
    pub dropped_downstream_closed: AtomicU64,
    /// Peak bytes held in this instance's output while waiting for credit.
    pub peak_held_bytes: AtomicU64,
    /// Records sent to the dead-letter port.
    pub dead_letters: AtomicU64,
    /// Rows skipped on purpose (a skip-and-count policy).
    pub skipped: AtomicU64,
    /// Rows dropped, spilled or rejected under an overflow policy.
    pub overflow: OverflowCounts,
    ns: [AtomicU64; 3],
    state: AtomicU8,
    since_ns: AtomicU64,
}

impl InstanceMetrics {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            rows_in: AtomicU64::new(0),
            rows_out: AtomicU64::new(0),
            batches_in: AtomicU64::new(0),
            batches_out: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            dropped_downstream_closed: AtomicU64::new(0),
            peak_held_bytes: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            overflow: OverflowCounts::default(),
            ns: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
            state: AtomicU8::new(TimeState::Idle as u8),
            since_ns: AtomicU64::new(0),
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
            slot.fetch_add(now.saturating_sub(since), Relaxed);
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
            let since = self.since_ns.swap(now, Relaxed);
            slot.fetch_add(now.saturating_sub(since), Relaxed);
        }
    }

    /// Records held output bytes, keeping the peak.
    pub(crate) fn note_held(&self, bytes: usize) {
        let bytes = bytes as u64;
        if bytes > self.peak_held_bytes.load(Relaxed) {
            self.peak_held_bytes.store(bytes, Relaxed);
        }
    }

    /// Nanoseconds spent busy, idle and backpressured so far, including the current state.
    pub fn times_ns(&self) -> [u64; 3] {
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
