//! Operator chaining: forward-connected operators of equal parallelism run in one task.
//!
//! A hop between two tasks costs a hand-off through an edge and, when the consumer sleeps, a
//! wake-up of its thread; for cheap operators (a `map`, a `filter`) that is far more than the
//! operator itself. As in Flink, such operators are *chained* to their producer: the producer's
//! output is handed to the next operator by a plain call, and only the chain's last operator sends
//! through edges.
//!
//! An operator `v` is chained to its producer `u` when the pipeline's [`Chaining`] allows it and
//! the link is private: `u` has exactly one outgoing stream (no fan-out, no connected
//! dead-letter port), `v` has exactly one input, the stream is forward with equal parallelism,
//! and no edge (nor overflow policy) was configured for it. Sinks are never chained, so the constraint stays visible
//! where demand starts.
//!
//! What chaining changes in the report: rows and batches stay exact per operator; time (busy,
//! idle, backpressured) is measured per task and split between the chain's operators when the
//! report is read. A chained operator times its own `on_batch` once every
//! [`SAMPLE_ROWS`](crate::metrics::SAMPLE_ROWS) rows (two clock reads, so the per-row cost stays
//! under a nanosecond) and the time it spends pending in `poll_ready`; the task's first operator
//! keeps the rest of the busy time. The report names the chain.
//!
//! [`Chaining`]: crate::Chaining

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::barrier::{Barrier, CheckpointBarrier};
use crate::batch::{Batch, LatencyMarker, Message};
use crate::error::{ErrorKind, OperatorError, Origin};
use crate::exec::checkpoint::{check_snapshots, snapshot_blobs, Checkpoints};
use crate::exec::outputs::{DeadPort, Ports, Readiness};
use crate::metrics::InstanceMetrics;
use crate::operator::{InstanceInfo, Operator, Output};

/// Where an instance's output goes: edges ([`Ports`]) or the next operator of its chain.
pub(crate) trait Downstream<B: Batch>: Send {
    /// Takes everything `out` holds (data and the producer's rejects) and passes it on.
    fn dispatch(&mut self, out: &mut Output<B>) -> Result<(), OperatorError>;
    /// Passes a latency marker on at once, ahead of what chained operators hold in their
    /// partial batches (a marker does not wait for an operator's processing).
    fn latency(&mut self, m: LatencyMarker);
    /// Whether nothing is held waiting for credit.
    fn is_flushed(&self) -> bool;
    /// Waits until held output has been sent.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// Waits until there is credit for more.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness>;
    /// The producer has ended: finish what is downstream and queue end-of-stream.
    fn end(&mut self) -> Result<(), OperatorError>;
    /// Wakes consumers of sends whose wake-up was deferred; called before any wait.
    fn wake_consumers(&mut self);
    /// Since when the oldest partial batch held downstream (in chained operators) has waited.
    fn open_since(&self) -> Option<tokio::time::Instant>;
    /// Cuts and passes on every partial batch held downstream (the linger deadline passed).
    fn flush_open(&mut self) -> Result<(), OperatorError>;
    /// Drives what progresses without input: lossy edges, and the asynchronous work of chained
    /// operators ([`Operator::poll_flush`]), passing on what that work emits. Never waits; a
    /// wake-up is arranged through `cx` for work still in flight. After [`end`](Self::end), a
    /// chained operator passes end-of-stream on once its work is done.
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Result<Work, OperatorError>;
    /// `Ready` once every consumer at the end of the chain has gone; otherwise a wake-up is
    /// arranged for when they go. Never waits; called wherever the task waits for something
    /// other than credit, so cancellation reaches it.
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()>;
    /// The task ends because every consumer has gone away: chained operators count the rows
    /// they still hold (in their output and their state) as dropped because downstream closed.
    fn count_held(&mut self);
    /// Fills `slot`, an `Option<X>` for the batch type `X` of whoever asks (the task's head),
    /// with a spare buffer its consumers handed back, if it is empty and the chain's out edges
    /// carry `X` batches; chained operators' own outputs are refilled after it. A buffer a
    /// source allocates thus flows through in-place operators to the sink and back, with no
    /// boxing per batch (the slot is type-checked by one `TypeId` comparison).
    fn refill(&mut self, slot: &mut dyn Any);
}

/// Refills the spare slot of `out` from `down`, and those of chained operators' outputs (see
/// [`Downstream::refill`]).
#[inline]
pub(crate) fn refill<B: Batch, D: Downstream<B> + ?Sized>(down: &mut D, out: &mut Output<B>) {
    down.refill(out.spare_slot());
}

/// Rows an operator instance still holds when its consumers have gone: what waits in its output
/// (taken from it) and what it keeps in its state ([`Operator::held_rows`]).
pub(crate) fn held_rows<O: Operator>(op: &O, out: &mut Output<O::Output>) -> u64 {
    out.flush();
    let pending: u64 = out.drain().map(|msg| msg.rows() as u64).sum();
    pending + op.held_rows()
}

/// What [`Downstream::poll_work`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    /// Nothing is in flight (and, after `end`, end-of-stream has been passed on everywhere).
    Idle,
    /// Work is in flight; a wake-up is arranged.
    InFlight,
    /// Chained operators emitted output (or passed end-of-stream on): room must be waited for
    /// before more work.
    Emitted,
}

impl Work {
    fn and(self, other: Work) -> Work {
        match (self, other) {
            (Work::Emitted, _) | (_, Work::Emitted) => Work::Emitted,
            (Work::InFlight, _) | (_, Work::InFlight) => Work::InFlight,
            _ => Work::Idle,
        }
    }
}

impl<B: Batch> Downstream<B> for Ports<B> {
    #[inline]
    fn refill(&mut self, slot: &mut dyn Any) {
        if let Some(slot) = slot.downcast_mut::<Option<B>>() {
            Ports::refill(self, slot);
        }
    }
    fn count_held(&mut self) {
        // Edges count what they hold when their consumers go; the ports hold nothing else.
    }
    fn dispatch(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        Ports::dispatch(self, out);
        Ok(())
    }
    #[inline]
    fn latency(&mut self, m: LatencyMarker) {
        Ports::latency(self, m);
    }
    fn is_flushed(&self) -> bool {
        Ports::is_flushed(self)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Ports::poll_flush(self, cx)
    }
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        Ports::poll_ready(self, cx)
    }
    fn end(&mut self) -> Result<(), OperatorError> {
        Ports::end(self);
        Ok(())
    }
    fn wake_consumers(&mut self) {
        Ports::wake_consumers(self);
    }
    fn open_since(&self) -> Option<tokio::time::Instant> {
        None
    }
    fn flush_open(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
    #[inline]
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Result<Work, OperatorError> {
        Ports::poll_lossy(self, cx);
        Ok(Work::Idle)
    }
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        Ports::poll_closed(self, cx)
    }
}

impl<B: Batch> Downstream<B> for Box<dyn Downstream<B>> {
    #[inline]
    fn refill(&mut self, slot: &mut dyn Any) {
        (**self).refill(slot)
    }
    fn count_held(&mut self) {
        (**self).count_held()
    }
    fn dispatch(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        (**self).dispatch(out)
    }
    fn latency(&mut self, m: LatencyMarker) {
        (**self).latency(m)
    }
    fn is_flushed(&self) -> bool {
        (**self).is_flushed()
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        (**self).poll_flush(cx)
    }
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        (**self).poll_ready(cx)
    }
    fn end(&mut self) -> Result<(), OperatorError> {
        (**self).end()
    }
    fn wake_consumers(&mut self) {
        (**self).wake_consumers();
    }
    fn open_since(&self) -> Option<tokio::time::Instant> {
        (**self).open_since()
    }
    fn flush_open(&mut self) -> Result<(), OperatorError> {
        (**self).flush_open()
    }
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Result<Work, OperatorError> {
        (**self).poll_work(cx)
    }
    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        (**self).poll_closed(cx)
    }
}

/// An operator running inside its producer's task.
pub(crate) struct Chained<O: Operator> {
    op: O,
    info: InstanceInfo,
    opened: bool,
    out: Output<O::Output>,
    down: Box<dyn Downstream<O::Output>>,
    /// This operator's counters.
    metrics: Arc<InstanceMetrics>,
    /// The producer's counters: its output and rejects are counted here, as its edges would.
    producer: Arc<InstanceMetrics>,
    /// The producer's dead-letter port (never connected on a chained link): counts its rejects.
    producer_dead: DeadPort,
    /// An error the operator's `poll_ready` returned, reported by the next dispatch or, if
    /// the producer has nothing to send, by `poll_work` before it waits.
    not_ready: Option<OperatorError>,
    /// Barriers waiting for the operator's work in flight (at most one per source).
    barriers: Vec<Barrier>,
    /// A checkpoint barrier waiting for the operator's work in flight.
    checkpoint: Option<CheckpointBarrier>,
    /// The run's checkpoints, when they are on.
    checkpoints: Option<Arc<Checkpoints>>,
    /// The producer has ended: once the operator's work is done, the end is passed on.
    ending: bool,
    /// End-of-stream has been passed on.
    ended: bool,
}

impl<O: Operator> Chained<O> {
    pub(crate) fn new(
        op: O,
        info: InstanceInfo,
        down: Box<dyn Downstream<O::Output>>,
        metrics: Arc<InstanceMetrics>,
        producer: Arc<InstanceMetrics>,
        checkpoints: Option<Arc<Checkpoints>>,
    ) -> Self {
        Self {
            op,
            out: Output::new(info.batch_rows).with_max_batch_bytes(info.max_batch_bytes),
            info,
            opened: false,
            down,
            metrics,
            producer_dead: DeadPort::new(None, producer.clone()),
            producer,
            not_ready: None,
            barriers: Vec::new(),
            checkpoint: None,
            checkpoints,
            ending: false,
            ended: false,
        }
    }
}

impl<O: Operator> Chained<O> {
    /// Opens the operator on first use, inside the running task.
    #[inline]
    fn open(&mut self) -> Result<(), OperatorError> {
        if self.opened {
            return Ok(());
        }
        self.open_now()
    }

    #[inline(never)]
    fn open_now(&mut self) -> Result<(), OperatorError> {
        self.opened = true;
        let info = self.info.clone();
        self.call(|op, _| op.open(&info))?;
        if let Some(ck) = self.checkpoints.clone() {
            check_snapshots(&self.op, &info).map_err(|e| self.attributed(e, false))?;
            let state = ck
                .restore_state(&info.name, info.instance, info.parallelism)
                .map_err(|e| self.attributed(e, false))?;
            if let Some(state) = state {
                self.call(|op, _| op.restore(&state))?;
            }
        }
        Ok(())
    }

    /// Snapshots the operator for checkpoint barrier `b` (its work in flight is done) and
    /// passes the barrier on.
    fn take_checkpoint(&mut self, b: CheckpointBarrier) {
        release_barriers(&mut self.barriers, &mut self.out);
        if let Some(ck) = &self.checkpoints {
            let blobs = snapshot_blobs(ck, &self.info, |w| self.op.snapshot(w));
            ck.ack(b.id(), blobs, std::time::Duration::ZERO);
        }
        self.out.checkpoint(b);
    }

    /// Runs one hook of the chained operator, attributing its error or panic to it.
    fn call(
        &mut self,
        f: impl FnOnce(&mut O, &mut Output<O::Output>) -> Result<(), OperatorError>,
    ) -> Result<(), OperatorError> {
        let (op, out) = (&mut self.op, &mut self.out);
        let result = catch_unwind(AssertUnwindSafe(|| f(op, out)));
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.attributed(e, false)),
            Err(payload) => Err(self.panicked(payload.as_ref())),
        }
    }

    fn panicked(&self, payload: &(dyn std::any::Any + Send)) -> OperatorError {
        let error = OperatorError::new(ErrorKind::User, crate::exec::panic_message(payload), None);
        self.attributed(error, true)
    }

    /// Names this operator as the error's origin (the task is its head's).
    fn attributed(&self, mut error: OperatorError, panicked: bool) -> OperatorError {
        if error.origin.is_none() {
            error.origin = Some(Origin {
                operator: self.info.name.to_string(),
                instance: self.info.instance,
                panicked,
            });
        }
        error
    }

    /// Polls the operator's asynchronous work, attributing its error or panic to it; returns
    /// whether it is done.
    fn poll_own_work(&mut self, cx: &mut Context<'_>) -> Result<bool, OperatorError> {
        let mut done = false;
        self.call(|op, out| match op.poll_flush(cx, out) {
            Poll::Ready(r) => {
                done = true;
                r
            }
            Poll::Pending => Ok(()),
        })?;
        Ok(done)
    }
}

/// Fails the run if a barrier reached an operator that keeps rows across calls: passing it
/// would cover rows not yet emitted.
pub(crate) fn refuse_barrier<O: Operator>(
    op: &O,
    info: &InstanceInfo,
) -> Result<(), OperatorError> {
    let held = op.held_rows();
    if op.holds_rows() || held > 0 {
        return Err(OperatorError::user(format!(
            "`{}` keeps rows across batches{}, so it cannot pass a barrier from a source that \
             needs to know when its rows are handled (durable acknowledgement): turn \
             checkpoints on (`PipelineConfig::checkpointing`), which snapshot what it keeps \
             and tell the source by checkpoint instead, or run it in a pipeline without such \
             a source",
            info.name,
            if held > 0 {
                format!(" ({held} held now)")
            } else {
                String::new()
            }
        )));
    }
    Ok(())
}

/// Notes a barrier to pass on once the operator's work in flight is done; a later barrier of
/// the same source replaces an earlier one.
pub(crate) fn hold_barrier(held: &mut Vec<Barrier>, b: Barrier) {
    match held.iter_mut().find(|h| h.origin() == b.origin()) {
        Some(h) if h.id() < b.id() => *h = b,
        Some(_) => {}
        None => held.push(b),
    }
}

/// Passes on the barriers held: the operator has nothing in flight.
pub(crate) fn release_barriers<B: Batch>(held: &mut Vec<Barrier>, out: &mut Output<B>) {
    for b in held.drain(..) {
        out.barrier(b);
    }
}

/// What an operator emitted so far, coarsely: a change means something new is there to send.
pub(crate) fn emitted_mark<B: Batch>(out: &Output<B>) -> (bool, bool, usize) {
    (
        out.is_full(),
        out.open_since().is_some(),
        out.dead_letter_count(),
    )
}

impl<O: Operator> Downstream<O::Input> for Chained<O> {
    fn refill(&mut self, slot: &mut dyn Any) {
        self.down.refill(slot);
        // Then this operator's own output, for the batches it builds (an in-place operator
        // never uses it, and so keeps at most this one spare).
        refill(&mut self.down, &mut self.out);
    }
    fn count_held(&mut self) {
        self.metrics
            .dropped_downstream_closed
            .add(held_rows(&self.op, &mut self.out));
        self.down.count_held();
    }
    fn dispatch(&mut self, out: &mut Output<O::Input>) -> Result<(), OperatorError> {
        self.open()?;
        if let Some(e) = self.not_ready.take() {
            return Err(e);
        }
        let (dead, skipped) = out.take_rejects();
        self.producer_dead.dispatch(dead, skipped);
        // An input batch the operator is done with goes back to the producer's output.
        let mut spare = None;
        for msg in out.drain() {
            match msg {
                Message::Data(batch) => {
                    let (rows, bytes) = (batch.rows(), batch.bytes());
                    self.producer.rows_out.add(rows as u64);
                    self.producer.batches_out.add(1);
                    self.producer.bytes_out.add(bytes as u64);
                    self.metrics.note_input(rows, bytes);
                    if self.metrics.sample_due(rows) {
                        let start = std::time::Instant::now();
                        let result = self.call(|op, out| op.on_batch(0, batch, out));
                        self.metrics
                            .note_sample(rows, start.elapsed().as_nanos() as u64);
                        result?;
                    } else {
                        self.call(|op, out| op.on_batch(0, batch, out))?;
                    }
                    if spare.is_none() {
                        spare = self.op.take_spare();
                    }
                    if let Some(size) = self.op.state_size() {
                        self.metrics.note_state(size);
                    }
                }
                Message::Watermark(ts) => {
                    self.metrics.note_watermark(ts);
                    self.call(|op, out| op.on_watermark(ts, out))?;
                    // A watermark fires windows and timers: what they held is freed here.
                    if let Some(size) = self.op.state_size() {
                        self.metrics.note_state(size);
                    }
                }
                // Its one input is idle: so is it.
                Message::Idle => self.out.idle(),
                Message::Barrier(b) => {
                    refuse_barrier(&self.op, &self.info).map_err(|e| self.attributed(e, false))?;
                    hold_barrier(&mut self.barriers, b);
                    // Most operators have nothing in flight: the barrier follows at once;
                    // otherwise `poll_work` passes it on once their work is done.
                    let mut noop = Context::from_waker(Waker::noop());
                    if self.poll_own_work(&mut noop)? {
                        release_barriers(&mut self.barriers, &mut self.out);
                    }
                }
                Message::Checkpoint(b) => {
                    // Snapshot once the work in flight is done (`poll_work` does it later
                    // otherwise); one link's input has nothing to align.
                    let mut noop = Context::from_waker(Waker::noop());
                    if self.poll_own_work(&mut noop)? {
                        self.take_checkpoint(b);
                    } else {
                        self.checkpoint = Some(b);
                    }
                }
                // Operators never emit markers; a producer passes them on with `latency`.
                Message::Latency(m) => self.down.latency(m),
                Message::End => {}
            }
        }
        if let Some(spare) = spare {
            out.recycle(spare);
        }
        // Rows pushed one by one stay in a partial batch until it fills or the task's linger
        // deadline passes (`flush_open`), as they would in a task of their own.
        self.down.dispatch(&mut self.out)
    }

    fn latency(&mut self, m: LatencyMarker) {
        self.down.latency(m);
    }

    fn is_flushed(&self) -> bool {
        self.down.is_flushed()
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.down.poll_flush(cx)
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Readiness> {
        if let Err(e) = self.open() {
            // Reported by the next dispatch, as a `poll_ready` error is.
            self.not_ready = Some(e);
            return self.down.poll_ready(cx);
        }
        // The chained operator may pace itself, like the head of a task does: time pending here
        // is its own busy time, not its producer's. Its error is reported by the next dispatch
        // or, while the producer has nothing to send, by `poll_work`, which the producer calls
        // before it waits.
        let op = &mut self.op;
        match catch_unwind(AssertUnwindSafe(|| op.poll_ready(cx))) {
            Ok(Poll::Pending) => {
                self.metrics.pace_start();
                self.down.wake_consumers();
                return Poll::Pending;
            }
            Ok(Poll::Ready(Err(e))) => self.not_ready = Some(self.attributed(e, false)),
            Err(payload) => self.not_ready = Some(self.panicked(payload.as_ref())),
            Ok(Poll::Ready(Ok(()))) => {}
        }
        self.metrics.pace_end();
        self.down.poll_ready(cx)
    }

    fn end(&mut self) -> Result<(), OperatorError> {
        // The end is passed on by `poll_work`, once work in flight is done.
        self.metrics.pace_end();
        self.open()?;
        self.call(|op, out| op.on_end(out))?;
        if let Some(size) = self.op.state_size() {
            self.metrics.note_state(size);
        }
        self.ending = true;
        Ok(())
    }

    fn wake_consumers(&mut self) {
        self.down.wake_consumers();
    }

    fn open_since(&self) -> Option<tokio::time::Instant> {
        match (self.out.open_since(), self.down.open_since()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush_open(&mut self) -> Result<(), OperatorError> {
        self.out.flush();
        self.down.dispatch(&mut self.out)?;
        self.down.flush_open()
    }

    fn poll_work(&mut self, cx: &mut Context<'_>) -> Result<Work, OperatorError> {
        if let Some(e) = self.not_ready.take() {
            return Err(e);
        }
        let below = self.down.poll_work(cx)?;
        if self.ended {
            return Ok(below);
        }
        self.open()?;
        let before = emitted_mark(&self.out);
        let done = self.poll_own_work(cx)?;
        if done {
            release_barriers(&mut self.barriers, &mut self.out);
            if let Some(b) = self.checkpoint.take() {
                self.take_checkpoint(b);
            }
        }
        let mut mine = if emitted_mark(&self.out) != before {
            self.down.dispatch(&mut self.out)?;
            Work::Emitted
        } else if done {
            Work::Idle
        } else {
            Work::InFlight
        };
        if done && self.ending {
            self.out.flush();
            self.down.dispatch(&mut self.out)?;
            self.down.end()?;
            self.ended = true;
            mine = Work::Emitted;
        }
        Ok(mine.and(below))
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.down.poll_closed(cx)
    }
}
