//! Lossy edges: the producer side of an edge declared with an [`Overflow`] policy other than
//! `Block`. The producer never waits for such an edge; what finds no room is dropped, queued or
//! spilled here, per target, and counted.
//!
//! # State per target
//!
//! ```text
//!   message ──► backlog empty and room?  ── yes ──► outlet
//!                     │ no
//!                     ▼
//!   DropNewest: count `dropped_newest`, drop
//!   DropOldest: queue ── full? evict the oldest batch, count `dropped_oldest`
//!   Spill:      spill file (tag | codec bytes) ── full? count `spill_full`, drop
//!
//!   pump (on every dispatch, on readiness checks and while the producer idles):
//!     queue front ──► outlet, while room
//!     Spill: queue empty → pop one record from the spill into the queue, count `unspilled`
//!     End (once everything before it is out) ──► outlet
//! ```
//!
//! Order is kept per target: a message goes straight to the outlet only when nothing is waiting
//! before it. The queue of a `DropOldest` target holds at most the edge's own capacity in
//! messages and bytes (one oversize batch is kept alone); for `Spill` it holds at most the one
//! record read back that found no room (records are read back only when the edge has credit, so
//! only its byte bound can refuse one); for `DropNewest` it is always empty. When a waiting
//! target cannot be pumped, [`LossyEdge::poll_drain`] registers the task for the outlet's
//! wake-up, so the backlog moves as soon as the consumer grants credit, whatever the producer is
//! doing.
//!
//! A spill that cannot be read back (an I/O error) is given up: its records stay on disk, counted
//! as `spill_failed`, and later overflow on that target is dropped and counted the same way.
//! Records the spill lost to damage in its files are counted as `spill_damaged_records`, with
//! the bytes skipped in `spill_damaged_bytes` (see [`spill`](crate::spill)).
//!
//! A spill record is a tag byte (`0` data, `1` watermark, `2` barrier, `3` idle) followed by the
//! codec's bytes, the watermark as little-endian `i64`, the barrier's origin (`u32`) and id
//! (`u64`) little-endian, or nothing for idle.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::barrier::{Barrier, CheckpointBarrier};
use crate::batch::{Batch, Message, Timestamp};
use crate::channel::{Outlet, TryReserveError, TrySendError};
use crate::error::OperatorError;
use crate::metrics::InstanceMetrics;
use crate::overflow::{Overflow, OverflowReason, SpillCodec};
use crate::spill::{SpillError, SpillQueue};

const TAG_DATA: u8 = 0;
const TAG_WATERMARK: u8 = 1;
const TAG_BARRIER: u8 = 2;
const TAG_IDLE: u8 = 3;
const TAG_CHECKPOINT: u8 = 4;

enum Policy<B> {
    DropNewest,
    DropOldest,
    Spill(Arc<dyn SpillCodec<B>>),
}

struct TargetState<B> {
    /// Messages waiting for room, oldest first, each with its bytes (measured once).
    queue: VecDeque<(Message<B>, usize)>,
    queue_bytes: usize,
    spill: Option<SpillQueue>,
    /// Damaged spill records and bytes already counted.
    damage_seen: (u64, u64),
    /// End is owed to this target once everything before it is out.
    end: bool,
}

/// The lossy state of one logical out-edge of one producer instance.
pub(crate) struct LossyEdge<B: Batch> {
    policy: Policy<B>,
    targets: Vec<TargetState<B>>,
    /// Bounds of a `DropOldest` queue: the edge's own capacity.
    max_messages: usize,
    max_bytes: usize,
    scratch: Vec<u8>,
}

fn count(m: &InstanceMetrics, reason: OverflowReason, rows: usize) {
    if rows > 0 {
        m.overflow.slot(reason).fetch_add(rows as u64, Relaxed);
    }
}

impl<B: Batch> LossyEdge<B> {
    /// The lossy state for `targets` outlets under `policy`; `spill_dirs` (one per target) and
    /// `codec` (an `Arc<dyn SpillCodec<B>>`) are used by `Spill`.
    ///
    /// # Errors
    ///
    /// A policy that is not lossy, a missing codec, or a spill directory that cannot be opened.
    pub(crate) fn new(
        policy: &Overflow,
        (targets, max_messages, max_bytes): (usize, usize, usize),
        codec: Option<Arc<dyn SpillCodec<B>>>,
        spill_dirs: &[PathBuf],
    ) -> Result<Self, OperatorError> {
        let empty = || TargetState {
            queue: VecDeque::new(),
            queue_bytes: 0,
            spill: None,
            damage_seen: (0, 0),
            end: false,
        };
        let (policy, states) = match policy {
            Overflow::DropNewest => (Policy::DropNewest, (0..targets).map(|_| empty()).collect()),
            Overflow::DropOldest => (Policy::DropOldest, (0..targets).map(|_| empty()).collect()),
            Overflow::Spill { max_bytes, .. } => {
                let codec = codec.ok_or_else(|| {
                    OperatorError::internal("a spilling edge was wired without its codec")
                })?;
                let mut states = Vec::with_capacity(targets);
                for dir in spill_dirs {
                    let queue = SpillQueue::open(dir, *max_bytes).map_err(|e| {
                        OperatorError::external("cannot open the spill of an overflowing edge", e)
                    })?;
                    states.push(TargetState {
                        spill: Some(queue),
                        ..empty()
                    });
                }
                if states.len() != targets {
                    return Err(OperatorError::internal(
                        "a spilling edge needs one spill directory per target",
                    ));
                }
                (Policy::Spill(codec), states)
            }
            Overflow::Block | Overflow::Reject => {
                return Err(OperatorError::internal(
                    "only DropNewest, DropOldest and Spill make an edge lossy",
                ))
            }
        };
        Ok(Self {
            policy,
            targets: states,
            max_messages: max_messages.max(1),
            max_bytes,
            scratch: Vec::new(),
        })
    }

    /// Bytes held in memory by the queues.
    pub(crate) fn held_bytes(&self) -> usize {
        self.targets.iter().map(|t| t.queue_bytes).sum()
    }

    /// Whether target `t` has nothing waiting (End included).
    fn is_drained_at(&self, t: usize) -> bool {
        let s = &self.targets[t];
        s.queue.is_empty() && !s.end && s.spill.as_ref().is_none_or(SpillQueue::is_empty)
    }

    /// Whether nothing waits for any live target.
    pub(crate) fn is_drained(&self, closed: &[bool]) -> bool {
        (0..self.targets.len()).all(|t| closed[t] || self.is_drained_at(t))
    }

    /// Takes `msg` for target `t`: sends it if nothing waits and there is room, applies the
    /// policy otherwise. Never waits.
    pub(crate) fn offer(
        &mut self,
        t: usize,
        outlet: &mut Outlet<B>,
        closed: &mut bool,
        msg: Message<B>,
        bytes: usize,
        m: &InstanceMetrics,
    ) {
        if *closed {
            count_closed(m, &msg);
            return;
        }
        if matches!(msg, Message::Latency(_)) {
            // A marker samples the path; it is never queued or spilled, and one that finds no
            // room here is not sent (it carries no rows, so nothing is lost).
            if self.backlog_empty(t) {
                let _ = outlet.try_send_sized(msg, 0);
            }
            return;
        }
        if matches!(msg, Message::End) {
            self.targets[t].end = true;
            self.pump(t, outlet, closed, m);
            return;
        }
        if self.backlog_empty(t) {
            match outlet.try_send_sized(msg, bytes) {
                Ok(()) => return,
                Err(TrySendError::Closed(msg)) => {
                    *closed = true;
                    count_closed(m, &msg);
                    self.close(t, m);
                    return;
                }
                Err(TrySendError::Full(msg)) => self.overflow(t, msg, bytes, m),
            }
        } else {
            self.overflow(t, msg, bytes, m);
        }
        self.pump(t, outlet, closed, m);
    }

    fn backlog_empty(&self, t: usize) -> bool {
        let s = &self.targets[t];
        s.queue.is_empty() && s.spill.as_ref().is_none_or(SpillQueue::is_empty)
    }

    /// Applies the policy to a message (of `bytes`) that cannot be sent now.
    fn overflow(&mut self, t: usize, msg: Message<B>, bytes: usize, m: &InstanceMetrics) {
        match &self.policy {
            Policy::DropNewest => count(m, OverflowReason::DroppedNewest, msg.rows()),
            Policy::DropOldest => {
                let s = &mut self.targets[t];
                s.queue_bytes += bytes;
                s.queue.push_back((msg, bytes));
                while s.queue.len() > 1
                    && (s.queue.len() > self.max_messages || s.queue_bytes > self.max_bytes)
                {
                    let (old, old_bytes) = s.queue.pop_front().expect("more than one queued");
                    s.queue_bytes -= old_bytes;
                    count(m, OverflowReason::DroppedOldest, old.rows());
                }
            }
            Policy::Spill(codec) => {
                let rows = msg.rows();
                self.scratch.clear();
                let encoded = match &msg {
                    Message::Data(batch) => {
                        self.scratch.push(TAG_DATA);
                        codec.encode(batch, &mut self.scratch)
                    }
                    Message::Watermark(ts) => {
                        self.scratch.push(TAG_WATERMARK);
                        self.scratch.extend_from_slice(&ts.0.to_le_bytes());
                        Ok(())
                    }
                    Message::Barrier(b) => {
                        self.scratch.push(TAG_BARRIER);
                        self.scratch.extend_from_slice(&b.origin().to_le_bytes());
                        self.scratch.extend_from_slice(&b.id().to_le_bytes());
                        Ok(())
                    }
                    Message::Checkpoint(b) => {
                        self.scratch.push(TAG_CHECKPOINT);
                        self.scratch.extend_from_slice(&b.id().to_le_bytes());
                        Ok(())
                    }
                    Message::Idle => {
                        self.scratch.push(TAG_IDLE);
                        Ok(())
                    }
                    Message::End => unreachable!("End is never spilled"),
                    Message::Latency(_) => unreachable!("markers are never spilled"),
                };
                if let Err(e) = encoded {
                    tracing::warn!(error = %e, "a batch could not be encoded for the spill; dropped");
                    count(m, OverflowReason::SpillFailed, rows.max(1));
                    return;
                }
                let Some(spill) = self.targets[t].spill.as_mut() else {
                    // The spill failed earlier and was given up (see `pump`).
                    count(m, OverflowReason::SpillFailed, rows.max(1));
                    return;
                };
                match spill.push(&self.scratch) {
                    Ok(()) => count(m, OverflowReason::Spilled, rows),
                    Err(SpillError::Full { .. } | SpillError::RecordTooLarge { .. }) => {
                        count(m, OverflowReason::SpillFull, rows);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "spill write failed; the batch is dropped");
                        count(m, OverflowReason::SpillFailed, rows.max(1));
                    }
                }
            }
        }
        m.note_held(self.held_bytes());
    }

    /// Moves what waits for target `t` into its outlet while there is room. Returns whether
    /// nothing is left.
    pub(crate) fn pump(
        &mut self,
        t: usize,
        outlet: &mut Outlet<B>,
        closed: &mut bool,
        m: &InstanceMetrics,
    ) -> bool {
        loop {
            if *closed {
                return true;
            }
            let s = &mut self.targets[t];
            if let Some((msg, bytes)) = s.queue.pop_front() {
                s.queue_bytes -= bytes;
                match outlet.try_send_sized(msg, bytes) {
                    Ok(()) => continue,
                    Err(TrySendError::Full(msg)) => {
                        s.queue_bytes += bytes;
                        s.queue.push_front((msg, bytes));
                        return false;
                    }
                    Err(TrySendError::Closed(msg)) => {
                        *closed = true;
                        count_closed(m, &msg);
                        self.close(t, m);
                        return true;
                    }
                }
            }
            if let Some(spill) = s.spill.as_mut().filter(|q| !q.is_empty()) {
                // Read a record back only when the edge has credit for it, so a record leaves
                // the disk just before it is sent, not to wait in memory.
                match outlet.try_reserve(0) {
                    Ok(_permit) => {}
                    Err(TryReserveError::Full) => return false,
                    Err(TryReserveError::Closed) => {
                        *closed = true;
                        self.close(t, m);
                        return true;
                    }
                }
                let popped = spill.pop();
                let stats = spill.stats();
                let damage = (stats.damaged_records, stats.damaged_bytes);
                count(
                    m,
                    OverflowReason::SpillDamaged,
                    damage.0.saturating_sub(s.damage_seen.0) as usize,
                );
                m.overflow
                    .spill_damaged_bytes
                    .fetch_add(damage.1.saturating_sub(s.damage_seen.1), Relaxed);
                s.damage_seen = damage;
                match popped {
                    Ok(Some(record)) => {
                        if let Some(msg) = self.decode(&record, m) {
                            count(m, OverflowReason::Unspilled, msg.rows());
                            let s = &mut self.targets[t];
                            let bytes = msg.bytes();
                            s.queue_bytes += bytes;
                            s.queue.push_back((msg, bytes));
                        }
                        continue;
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        // A spill that cannot be read back is given up: its records stay on
                        // disk for inspection, counted as failed, and later overflow on this
                        // target is dropped (also counted) rather than written behind them.
                        let left = s.spill.take().map_or(0, |q| q.len());
                        tracing::error!(error = %e, records = left, "reading the spill back failed; giving it up");
                        count(m, OverflowReason::SpillFailed, left as usize);
                        continue;
                    }
                }
            }
            if s.end {
                match outlet.try_send(Message::End) {
                    Ok(()) => s.end = false,
                    Err(TrySendError::Full(_)) => return false,
                    Err(TrySendError::Closed(_)) => *closed = true,
                }
            }
            return true;
        }
    }

    fn decode(&self, record: &[u8], m: &InstanceMetrics) -> Option<Message<B>> {
        let Policy::Spill(codec) = &self.policy else {
            return None;
        };
        let failed = |why: &dyn std::fmt::Display| {
            tracing::warn!(error = %why, "a spilled record could not be decoded; dropped");
            count(m, OverflowReason::SpillFailed, 1);
            None
        };
        match record.split_first() {
            Some((&TAG_DATA, rest)) => match codec.decode(rest) {
                Ok(batch) => Some(Message::Data(batch)),
                Err(e) => failed(&e),
            },
            Some((&TAG_WATERMARK, rest)) => match <[u8; 8]>::try_from(rest) {
                Ok(bytes) => Some(Message::Watermark(Timestamp(i64::from_le_bytes(bytes)))),
                Err(_) => failed(&"a spilled watermark is not 8 bytes"),
            },
            Some((&TAG_BARRIER, rest)) if rest.len() == 12 => {
                let (origin, id) = rest.split_at(4);
                let origin = u32::from_le_bytes(origin.try_into().expect("4 bytes"));
                let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
                Some(Message::Barrier(Barrier::new(origin, id)))
            }
            Some((&TAG_CHECKPOINT, rest)) => match <[u8; 8]>::try_from(rest) {
                Ok(bytes) => Some(Message::Checkpoint(CheckpointBarrier::new(
                    u64::from_le_bytes(bytes),
                ))),
                Err(_) => failed(&"a spilled checkpoint barrier is not 8 bytes"),
            },
            Some((&TAG_IDLE, [])) => Some(Message::Idle),
            _ => failed(&"unknown spill record tag"),
        }
    }

    /// The consumer of target `t` went away: drop what is queued in memory (counted as
    /// undelivered); a spill stays on disk for the next run.
    fn close(&mut self, t: usize, m: &InstanceMetrics) {
        let s = &mut self.targets[t];
        for (msg, _) in s.queue.drain(..) {
            count_closed(m, &msg);
        }
        s.queue_bytes = 0;
        s.end = false;
    }

    /// Pumps target `t` and, if something is left, arranges a wake-up for when its outlet has
    /// room. `Ready` once nothing waits.
    pub(crate) fn poll_drain(
        &mut self,
        t: usize,
        outlet: &mut Outlet<B>,
        closed: &mut bool,
        cx: &mut Context<'_>,
        m: &InstanceMetrics,
    ) -> Poll<()> {
        loop {
            if self.pump(t, outlet, closed, m) {
                return Poll::Ready(());
            }
            let bytes = self.targets[t].queue.front().map_or(0, |&(_, bytes)| bytes);
            match outlet.poll_reserve(cx, bytes) {
                Poll::Pending => return Poll::Pending,
                // Room appeared meanwhile, or the consumer went away: pump again.
                Poll::Ready(_) => continue,
            }
        }
    }
}

fn count_closed(m: &InstanceMetrics, msg: &Message<impl Batch>) {
    m.dropped_downstream_closed
        .fetch_add(msg.rows() as u64, Relaxed);
}

#[cfg(test)]
mod tests;
