//! The per-instance run loops, one per operator position, and their time accounting.
//!
//! Every loop follows the same order, which is the demand protocol seen from one instance:
//!
//! 1. drain held output (waiting here is *backpressured*);
//! 2. wait until downstream has credit (*backpressured*) — a source is polled only after this,
//!    and, for a source in a watermark alignment group, only once the group does not pause it
//!    (the same wait, also *backpressured*: see `source_time.rs`);
//! 3. wait until the operator is ready for input (`Operator::poll_ready`; *busy*) — sinks
//!    likewise (`Sink::poll_ready`);
//! 4. wait for input (*idle*), flushing a lingering partial batch when its deadline passes;
//! 5. run the operator on one batch (*busy*) and route what it emitted.
//!
//! After the end of its input an instance completes its work and closes (*finishing*: a sink's
//! commit, an operator's final flush), which is not busy time.
//!
//! After `yield_every` batches without waiting, the loop yields to the scheduler so instances
//! sharing a worker thread take turns.
//!
//! A partial batch's linger deadline is armed again inside every wait whenever it changes, so
//! rows pushed by the very call that then returned `Pending` (a source's last rows before it
//! waits, a window fired by a watermark) leave within one linger.
//!
//! Edges sized by time: an operator or a sink offers its inputs a drain-rate sample
//! (`Inputs::adapt`, with its non-idle time as the metrics accounted it) after every wait that
//! parked and at the end of every turn — where the time was just accounted, so no clock is read
//! for it — and the inputs resize their edges' credit when one is due (`channel/debloat.rs`).
//! After a wait for input it first hands them the idle time that wait was accounted
//! (`Inputs::resumed`), of which the part after a producer woke it counts as its own.
//!
//! Checkpoints: a source emits a due checkpoint barrier after step 2 (it takes a slot), behind
//! what it has sent, with its position snapshotted just before; a source waiting for data is
//! woken for it, and for a checkpoint it snapshotted becoming complete, which it is told of
//! (`Source::notify_checkpoint_complete`) before its next snapshot. An operator snapshots when its inputs return an aligned barrier, after its
//! work in flight is done, and passes the barrier on; a sink pre-commits, snapshots, and
//! commits between events once the coordinator committed the checkpoint (`checkpoint.rs`).
//!
//! Latency markers: a source emits one once it is due, after step 2, so it queues behind what
//! the source has sent and ahead of its partial batch; an operator passes one on as soon as it
//! reads it; a sink records its age, and the readiness it asked for before taking it is not
//! spent (the next event is taken without asking again).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::barrier::{Barrier, CheckpointBarrier, Ledger};
use crate::batch::{Batch, LatencyMarker};
use crate::checkpoint::BlobName;
use crate::error::OperatorError;
use crate::event_time::AlignGroups;
use crate::exec::chain::{
    emitted_mark, held_rows, hold_barrier, refill, refuse_barrier, release_barriers, Downstream,
    Work,
};
use crate::exec::checkpoint::{check_snapshots, snapshot_blobs, Checkpoints};
use crate::exec::inputs::{Event, Inputs};
use crate::exec::outputs::{DeadPort, Readiness};
use crate::exec::source_time::{Clock, SourceTime};
use crate::metrics::{InstanceMetrics, TimeState};
use crate::operator::{InstanceInfo, Operator, Output, Sink, Source, SourceStatus};
use crate::stop::StopSignal;

/// What every driver needs besides its operator.
pub(crate) struct DriverCtx {
    pub(crate) info: InstanceInfo,
    /// For a sink: where it reports the barriers it has handled.
    pub(crate) sink_slot: Option<(Arc<Ledger>, usize)>,
    pub(crate) metrics: Arc<InstanceMetrics>,
    pub(crate) linger: Duration,
    /// For a source: how often it emits a latency marker (zero: never).
    pub(crate) marker_interval: Duration,
    /// For an operator or a sink: the time its input edges should buffer (zero: their capacity).
    pub(crate) edge_target: Duration,
    pub(crate) yield_every: u32,
    pub(crate) stop: Arc<StopSignal>,
    /// The run's watermark alignment groups.
    pub(crate) align: Arc<AlignGroups>,
    /// The run's checkpoints, when they are on and reach this instance.
    pub(crate) checkpoints: Option<Arc<Checkpoints>>,
}

/// Polls `f` to completion, switching the instance to `state` while it is pending.
async fn wait_in<T>(
    metrics: &InstanceMetrics,
    state: TimeState,
    mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> T {
    poll_fn(|cx| match f(cx) {
        Poll::Ready(v) => Poll::Ready(v),
        Poll::Pending => {
            metrics.switch(state);
            Poll::Pending
        }
    })
    .await
}

/// Work an instance may do before it yields its worker thread: `yield_every` full batches'
/// worth of rows, or [`MAX_BATCHES_PER_TURN`] messages, whichever comes first (tokio's own
/// cooperative budget is 128 operations), so tiny batches do not pay a reschedule each.
struct Budget {
    rows_left: usize,
    batches_left: u32,
    rows: usize,
}

const MAX_BATCHES_PER_TURN: u32 = 128;

impl Budget {
    fn new(every: u32, batch_rows: usize) -> Self {
        // Small batches still get a turn's worth of rows (bounded by the batch count below).
        let rows = (every.max(1) as usize).saturating_mul(batch_rows.max(1024));
        Self {
            rows_left: rows,
            batches_left: MAX_BATCHES_PER_TURN,
            rows,
        }
    }

    /// Spends the work of one batch; returns whether the turn is over and the task must yield.
    fn spend(&mut self, rows: usize) -> bool {
        self.rows_left = self.rows_left.saturating_sub(rows.max(1));
        self.batches_left -= 1;
        if self.rows_left == 0 || self.batches_left == 0 {
            self.rows_left = self.rows;
            self.batches_left = MAX_BATCHES_PER_TURN;
            true
        } else {
            false
        }
    }
}

/// Gives the worker thread to the tasks queued behind this one, then continues.
///
/// The task wakes itself and returns `Pending` once, so the scheduler puts it at the back of
/// its worker's run queue: every task queued there runs before it again. (`tokio::task::
/// yield_now` instead defers the wake-up until the worker next polls its I/O and timer driver,
/// which under long-running neighbours can be many task polls later: a source sharing a worker
/// with busy consumers then starves them of input.)
async fn yield_to_queue() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Ends a turn: credits the time so far, wakes the consumers of what this turn sent, yields.
async fn end_turn<B: Batch, D: Downstream<B>>(metrics: &InstanceMetrics, outs: &mut D) {
    metrics.checkpoint();
    outs.wake_consumers();
    yield_to_queue().await;
}

/// Waits for room downstream, driving the asynchronous work of chained operators while it
/// waits (what it emits is passed on, and room waited for again), and calling `release` before
/// every wait so the task's inputs hand back the credit of what it took. Returns false if
/// every consumer has gone.
///
/// Chained work is driven only when there is no room: a chained operator whose results hold
/// its capacity says so through `poll_ready`, so its work cannot be starved, and the common path
/// (room at once) pays one call.
async fn make_room<B: Batch, D: Downstream<B>>(
    outs: &mut D,
    m: &InstanceMetrics,
    mut release: impl FnMut(),
) -> Result<bool, OperatorError> {
    loop {
        if !outs.is_flushed() {
            wait_in(m, TimeState::Backpressured, |cx| {
                let flushed = outs.poll_flush(cx);
                if flushed.is_pending() {
                    release();
                }
                flushed
            })
            .await;
        }
        let ready = wait_in(m, TimeState::Backpressured, |cx| {
            if let Poll::Ready(r) = outs.poll_ready(cx) {
                return Poll::Ready(Ok(Some(r)));
            }
            match outs.poll_work(cx) {
                Ok(Work::Emitted) => Poll::Ready(Ok(None)),
                Err(e) => Poll::Ready(Err(e)),
                // A chained operator that is not ready never asked the edges for credit: their
                // consumers going away must still end the wait.
                Ok(_) if outs.poll_closed(cx).is_ready() => {
                    Poll::Ready(Ok(Some(Readiness::AllClosed)))
                }
                Ok(_) => {
                    release();
                    Poll::Pending
                }
            }
        })
        .await?;
        match ready {
            Some(readiness) => return Ok(matches!(readiness, Readiness::Ready)),
            None => continue,
        }
    }
}

/// Sends End downstream and waits until it has been accepted (or the consumers are gone):
/// chained operators first finish their asynchronous work, passing its results on.
async fn finish_outputs<B: Batch, D: Downstream<B>>(
    outs: &mut D,
    out: &mut Output<B>,
    m: &InstanceMetrics,
) -> Result<(), OperatorError> {
    m.switch(TimeState::Finishing);
    out.flush();
    outs.dispatch(out)?;
    outs.end()?;
    loop {
        if !outs.is_flushed() {
            wait_in(m, TimeState::Backpressured, |cx| outs.poll_flush(cx)).await;
        }
        let work = wait_in(m, TimeState::Finishing, |cx| match outs.poll_work(cx) {
            // Nobody takes the results of the work still in flight: stop waiting for it.
            Ok(Work::InFlight) if outs.poll_closed(cx).is_ready() => Poll::Ready(Ok(Work::Idle)),
            Ok(Work::InFlight) => {
                outs.wake_consumers();
                Poll::Pending
            }
            r => Poll::Ready(r),
        })
        .await?;
        if work == Work::Idle {
            break;
        }
    }
    wait_in(m, TimeState::Backpressured, |cx| outs.poll_flush(cx)).await;
    Ok(())
}

/// Since when the oldest partial batch of this task (its own or a chained operator's) waits.
fn open_since<B: Batch, D: Downstream<B>>(out: &Output<B>, outs: &D) -> Option<Instant> {
    match (out.open_since(), outs.open_since()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn linger_deadline<B: Batch, D: Downstream<B>>(
    out: &Output<B>,
    outs: &D,
    linger: Duration,
) -> Option<Instant> {
    // A deadline too far to represent is no deadline (the configuration bounds `linger`).
    open_since(out, outs).and_then(|t| t.checked_add(linger))
}

/// Points `sleep` at `deadline` if that is not where it points already (`armed`): a partial
/// batch opened, or was cut, since the wait began.
fn rearm(
    sleep: &mut std::pin::Pin<&mut Option<tokio::time::Sleep>>,
    armed: &mut Option<Instant>,
    deadline: Option<Instant>,
) {
    if *armed != deadline {
        *armed = deadline;
        sleep.set(deadline.map(tokio::time::sleep_until));
    }
}

/// Cuts every partial batch of this task and passes it on.
fn flush_open<B: Batch, D: Downstream<B>>(
    out: &mut Output<B>,
    outs: &mut D,
) -> Result<(), OperatorError> {
    out.flush();
    outs.dispatch(out)?;
    outs.flush_open()
}

/// Sends what `out` sealed: for a source with a watermark strategy, stamped first (see
/// `source_time.rs`).
#[inline]
fn send<B: Batch, D: Downstream<B>>(
    out: &mut Output<B>,
    outs: &mut D,
    et: Option<&mut SourceTime<B>>,
) -> Result<(), OperatorError> {
    match et {
        None => outs.dispatch(out),
        Some(et) => {
            et.stamp(out)?;
            outs.dispatch(out)?;
            et.sent();
            Ok(())
        }
    }
}

/// [`flush_open`] for a source: its own partial batch is stamped as it goes.
fn flush_source<B: Batch, D: Downstream<B>>(
    out: &mut Output<B>,
    outs: &mut D,
    et: Option<&mut SourceTime<B>>,
) -> Result<(), OperatorError> {
    out.flush();
    send(out, outs, et)?;
    outs.flush_open()
}

/// When a source instance's next latency marker is due.
struct Markers {
    interval: Duration,
    next: Option<Instant>,
}

impl Markers {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: (!interval.is_zero()).then(|| Instant::now() + interval),
        }
    }

    /// Whether a marker is due now (one clock read per call while markers are on); if so, the
    /// next one is due an interval from now.
    #[inline]
    fn due(&mut self) -> bool {
        let Some(next) = self.next else { return false };
        let now = Instant::now();
        if now < next {
            return false;
        }
        self.next = Some(now + self.interval);
        true
    }
}

/// What ended a source's wait for data.
enum Polled {
    Status(Result<SourceStatus, OperatorError>),
    /// Linger deadline or stop: send what is open.
    Flush,
    /// Quiet for its idle timeout.
    Idle,
}

/// Waits while the source's alignment group pauses it: as for credit (backpressured), watching
/// the stop signal, its consumers going away and chained work meanwhile.
async fn wait_aligned<B: Batch, D: Downstream<B>>(
    et: &mut SourceTime<B>,
    outs: &mut D,
    m: &InstanceMetrics,
    stop: &StopSignal,
    watch_stop: bool,
    checkpoint: Option<(&Checkpoints, u64)>,
) -> Result<(), OperatorError> {
    m.align_pause_start();
    let mut stopped = pin!(stop.wait());
    let woke = wait_in(m, TimeState::Backpressured, |cx| {
        if et.poll_aligned(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        // A checkpoint barrier does not wait for the pause: it carries no rows.
        if let Some((ck, last)) = checkpoint {
            if ck.poll_due(cx, last).is_ready() {
                return Poll::Ready(Ok(()));
            }
        }
        match outs.poll_work(cx) {
            Ok(Work::Emitted) => return Poll::Ready(Ok(())),
            Err(e) => return Poll::Ready(Err(e)),
            Ok(_) => {}
        }
        if watch_stop && stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        // The next `make_room` sees the consumers gone.
        if outs.poll_closed(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        outs.wake_consumers();
        Poll::Pending
    })
    .await;
    m.align_pause_end();
    m.switch(TimeState::Busy);
    woke
}

/// Tells `source` of the complete checkpoint it has not been told of, if any (see
/// [`Source::notify_checkpoint_complete`]).
#[inline]
fn notify_complete<S: Source>(
    source: &mut S,
    ck: &Checkpoints,
    notified: &mut u64,
) -> Result<(), OperatorError> {
    let committed = ck.committed();
    if committed > *notified {
        *notified = committed;
        source.notify_checkpoint_complete(committed)?;
    }
    Ok(())
}

pub(crate) async fn run_source<S: Source, D: Downstream<S::Output>, C: Clock<S::Output>>(
    mut source: S,
    mut outs: D,
    ctx: DriverCtx,
    mut clock: C,
) -> Result<(), OperatorError> {
    let m = &*ctx.metrics;
    m.switch(TimeState::Busy);
    source.open(&ctx.info)?;
    // The last checkpoint this source emitted a barrier of, and the last complete one it was
    // told of.
    let mut checkpointed = 0;
    let mut notified = 0;
    if let Some(ck) = &ctx.checkpoints {
        if !source.can_snapshot() {
            return Err(OperatorError::user(format!(
                "source `{}` cannot report its position for a checkpoint (`Source::can_snapshot` \
                 is false): run it without checkpoints, or implement `snapshot` and `restore`",
                ctx.info.name
            )));
        }
        if let Some(position) = ck.restore_position(&ctx.info.name, ctx.info.instance)? {
            source.restore(&position)?;
        }
    }
    let mut out = Output::new(ctx.info.batch_rows).with_max_batch_bytes(ctx.info.max_batch_bytes);
    let mut budget = Budget::new(ctx.yield_every, ctx.info.batch_rows);
    let mut stopping = false;
    let mut closed = false;
    let origin = u32::try_from(ctx.info.instance).unwrap_or(u32::MAX);
    let mut markers = Markers::new(ctx.marker_interval);
    // Whether to look at the clock for a marker: after every wait and every turn, not per
    // batch (a source that never waits ends a turn every few batches).
    let mut look = true;
    loop {
        let mut waited = false;
        if !make_room(&mut outs, m, || waited = true).await? {
            // Every consumer has gone away: stop reading.
            outs.count_held();
            closed = true;
            break;
        }
        // Behind what it has sent, ahead of its partial batch: a marker waits in every queue
        // on its way as rows do.
        let look_now = std::mem::take(&mut look) || waited;
        if look_now && markers.due() {
            outs.latency(LatencyMarker::now(origin));
        }
        if ctx.stop.is_stopped() && !stopping {
            stopping = true;
            // A source may ask to hand on what it already acknowledged before it ends.
            if source.on_stop() == SourceStatus::Done {
                break;
            }
        }
        if let Some(ck) = &ctx.checkpoints {
            // Before the next snapshot: the position the source last snapshotted is the one a
            // complete checkpoint holds (one checkpoint is in flight at a time).
            notify_complete(&mut source, ck, &mut notified)?;
            if let Some(id) = ck.due(checkpointed) {
                // Everything it emitted goes before the barrier; its position is after it.
                flush_source(&mut out, &mut outs, clock.time())?;
                let blobs = source
                    .snapshot()
                    .map(|p| {
                        vec![(
                            BlobName::source_position(&*ctx.info.name, ctx.info.instance as u32),
                            p,
                        )]
                    })
                    .map_err(|e| e.to_string());
                out.checkpoint(CheckpointBarrier::new(id));
                send(&mut out, &mut outs, clock.time())?;
                ck.ack(id, blobs, Duration::ZERO);
                checkpointed = id;
                continue;
            }
        }
        if let Some(et) = clock.time() {
            if waited {
                et.blocked();
            }
            // Reading also waits for the alignment group, as it waits for credit.
            if et.is_paused() {
                if open_since(&out, &outs).is_some() {
                    // What it has goes before it waits.
                    flush_source(&mut out, &mut outs, Some(et))?;
                } else {
                    let ck = ctx.checkpoints.as_deref().map(|ck| (ck, checkpointed));
                    wait_aligned(et, &mut outs, m, &ctx.stop, !stopping, ck).await?;
                    et.blocked();
                }
                continue;
            }
        }
        // Poll the source; while it has nothing, we are idle, and a partial batch lingers only
        // until its deadline.
        let status = {
            // The deadline is armed again whenever it changes: a source that pushes a partial
            // batch and then returns `Pending` must see it leave one linger later, not at its
            // next wake-up.
            let mut armed = linger_deadline(&out, &outs, ctx.linger);
            let mut sleep = pin!(armed.map(tokio::time::sleep_until));
            let mut stopped = pin!(ctx.stop.wait());
            let watch_stop = !stopping;
            let mut first = true;
            let waited = &mut look;
            // Build the next batch in a buffer a consumer handed back, if one came.
            refill(&mut outs, &mut out);
            poll_fn(|cx| {
                if !first {
                    m.switch(TimeState::Busy);
                }
                first = false;
                if let Poll::Ready(r) = source.poll_produce(cx, &mut out) {
                    return Poll::Ready(Polled::Status(r));
                }
                if out.is_full() {
                    return Poll::Ready(Polled::Flush);
                }
                // Before parking: lossy edges move their backlog as credit returns, and
                // chained operators' asynchronous work progresses.
                match outs.poll_work(cx) {
                    Ok(Work::Emitted) => {
                        return Poll::Ready(Polled::Status(Ok(SourceStatus::Continue)))
                    }
                    Err(e) => return Poll::Ready(Polled::Status(Err(e))),
                    Ok(_) => {}
                }
                rearm(
                    &mut sleep,
                    &mut armed,
                    linger_deadline(&out, &outs, ctx.linger),
                );
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(Polled::Flush);
                    }
                }
                if watch_stop && stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Polled::Flush);
                }
                // Waiting for data, not for credit: the consumers going away must end the wait
                // too (the next `make_room` sees them gone).
                if outs.poll_closed(cx).is_ready() {
                    return Poll::Ready(Polled::Status(Ok(SourceStatus::Continue)));
                }
                // Quiet for its idle timeout: announce it (a timer wakes the task then).
                if let Some(et) = clock.time() {
                    if et.poll_idle(cx).is_ready() {
                        return Poll::Ready(Polled::Idle);
                    }
                }
                // A checkpoint is due: its barrier goes out between two calls; or one it
                // snapshotted is complete: the source is told between two calls.
                if let Some(ck) = &ctx.checkpoints {
                    if ck.poll_due(cx, checkpointed).is_ready() {
                        return Poll::Ready(Polled::Status(Ok(SourceStatus::Continue)));
                    }
                    if checkpointed > notified && ck.poll_committed(cx, checkpointed).is_ready() {
                        return Poll::Ready(Polled::Status(Ok(SourceStatus::Continue)));
                    }
                }
                outs.wake_consumers();
                m.switch(TimeState::Idle);
                *waited = true;
                Poll::Pending
            })
            .await
        };
        m.switch(TimeState::Busy);
        if let Some(et) = clock.time() {
            // Rows it produced end its quiet time (and its idleness).
            if !matches!(status, Polled::Idle) && (out.is_full() || out.has_open_batch()) {
                et.note_rows();
            }
        }
        match status {
            Polled::Status(Ok(SourceStatus::Continue)) => {}
            Polled::Status(Ok(SourceStatus::Done)) => break,
            Polled::Status(Err(e)) => return Err(e),
            Polled::Flush => flush_source(&mut out, &mut outs, clock.time())?,
            Polled::Idle => {
                if let Some(et) = clock.time() {
                    et.go_idle(&mut out)?;
                }
            }
        }
        if let Some(since) = open_since(&out, &outs) {
            if ctx.linger.is_zero() || since.elapsed() >= ctx.linger {
                flush_source(&mut out, &mut outs, clock.time())?;
            }
        }
        let before = m.rows_out.get();
        send(&mut out, &mut outs, clock.time())?;
        if budget.spend((m.rows_out.get() - before) as usize) {
            end_turn(m, &mut outs).await;
            look = true;
        }
    }
    if let Some(ck) = &ctx.checkpoints {
        // No later checkpoint can hold this source's position.
        ck.source_ended();
    }
    if let Some(et) = clock.time().filter(|_| !closed) {
        // The last rows, then +∞: every window downstream closes.
        et.end(&mut out)?;
    }
    finish_outputs(&mut outs, &mut out, m).await?;
    m.switch(TimeState::Done);
    Ok(())
}

pub(crate) async fn run_operator<O: Operator, D: Downstream<O::Output>>(
    mut op: O,
    mut inputs: Inputs<O::Input>,
    mut outs: D,
    ctx: DriverCtx,
) -> Result<(), OperatorError> {
    let m = &*ctx.metrics;
    m.switch(TimeState::Busy);
    op.open(&ctx.info)?;
    // An unaligned checkpoint's acknowledgement, held until its capture is done.
    let mut held = None;
    if let Some(ck) = &ctx.checkpoints {
        check_snapshots(&op, &ctx.info)?;
        restore_inputs(ck, &ctx.info, &mut inputs)?;
        if let Some(state) =
            ck.restore_state(&ctx.info.name, ctx.info.instance, ctx.info.parallelism)?
        {
            op.restore(&state)?;
        }
    }
    inputs.size_by_time(ctx.edge_target);
    let mut out = Output::new(ctx.info.batch_rows).with_max_batch_bytes(ctx.info.max_batch_bytes);
    let mut budget = Budget::new(ctx.yield_every, ctx.info.batch_rows);
    // Barriers waiting for the operator's work in flight (at most one per source).
    let mut barriers: Vec<Barrier> = Vec::new();
    loop {
        let mut waited = false;
        let room = make_room(&mut outs, m, || {
            waited = true;
            inputs.release_credit();
        })
        .await?;
        if !room {
            // Cancelled from downstream: dropping our inputs releases our producers.
            count_held(&op, &mut out, &mut outs, m);
            m.switch(TimeState::Done);
            return Ok(());
        }
        if waited {
            m.switch(TimeState::Busy);
            inputs.adapt(m.active_ns());
        }
        if ctx.linger.is_zero() && open_since(&out, &outs).is_some() {
            flush_open(&mut out, &mut outs)?;
            continue;
        }
        // Wait for input (idle) once the operator is ready for it (busy until then: it paces
        // itself), while its own asynchronous work and that of chained operators progresses and a
        // partial batch leaves when its linger deadline passes.
        let event = {
            let mut armed = linger_deadline(&out, &outs, ctx.linger);
            let mut sleep = pin!(armed.map(tokio::time::sleep_until));
            let before = emitted_mark(&out);
            let idle_before = m.idle_ns();
            let mut ready = false;
            let mut parked = false;
            let event = poll_fn(|cx| {
                // Results of asynchronous work are emitted as they complete; barriers held
                // behind it follow once none is left.
                match op.poll_flush(cx, &mut out) {
                    Poll::Ready(Err(e)) => return Poll::Ready(Wake::Failed(e)),
                    Poll::Ready(Ok(())) => release_barriers(&mut barriers, &mut out),
                    Poll::Pending => {}
                }
                // Processing-time timers and time-to-live free state here, on the clock.
                if let Some(size) = op.state_size() {
                    m.note_state(size);
                }
                if emitted_mark(&out) != before {
                    return Poll::Ready(Wake::Emitted);
                }
                let mut state = TimeState::Idle;
                if !ready {
                    match op.poll_ready(cx) {
                        Poll::Ready(Ok(())) => ready = true,
                        Poll::Ready(Err(e)) => return Poll::Ready(Wake::Failed(e)),
                        // Not ready for input: working at capacity.
                        Poll::Pending => state = TimeState::Busy,
                    }
                }
                if ready {
                    if let Poll::Ready(ev) = inputs.poll_next(cx) {
                        return Poll::Ready(Wake::Input(ev));
                    }
                }
                // Before parking: chained operators' asynchronous work progresses (on the
                // common path input is there and this is skipped; a chained operator whose
                // results hold its capacity stops input through `poll_ready`).
                match outs.poll_work(cx) {
                    Ok(Work::Emitted) => return Poll::Ready(Wake::Emitted),
                    Err(e) => return Poll::Ready(Wake::Failed(e)),
                    Ok(_) => {}
                }
                // Rows a chained operator's work left in a partial batch linger from now.
                rearm(
                    &mut sleep,
                    &mut armed,
                    linger_deadline(&out, &outs, ctx.linger),
                );
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(Wake::Linger);
                    }
                }
                // Waiting for input, for readiness or for its own work: the consumers going
                // away must end the wait too.
                if outs.poll_closed(cx).is_ready() {
                    return Poll::Ready(Wake::Closed);
                }
                if state == TimeState::Busy {
                    // Pacing itself: what it took is handed back as credit at its pace.
                    inputs.release_credit();
                }
                outs.wake_consumers();
                m.switch(state);
                parked = true;
                Poll::Pending
            })
            .await;
            m.switch(TimeState::Busy);
            if parked {
                inputs.resumed(m.idle_ns() - idle_before);
                inputs.adapt(m.active_ns());
            }
            event
        };
        let mut rows = 0;
        let event = match event {
            Wake::Input(ev) => Some(ev),
            Wake::Linger => None,
            Wake::Emitted => {
                outs.dispatch(&mut out)?;
                if budget.spend(0) {
                    end_turn(m, &mut outs).await;
                    inputs.adapt(m.active_ns());
                }
                continue;
            }
            Wake::Failed(e) => return Err(e),
            // The next `make_room` sees every consumer gone and ends the instance.
            Wake::Closed => continue,
        };
        match event {
            None => flush_open(&mut out, &mut outs)?,
            Some(Ok(Event::Data(port, batch, bytes))) => {
                rows = batch.rows();
                m.note_input(batch.rows(), bytes);
                refill(&mut outs, &mut out);
                op.on_batch(port, batch, &mut out)?;
                if let Some(spare) = op.take_spare() {
                    inputs.recycle(spare);
                }
                if let Some(size) = op.state_size() {
                    m.note_state(size);
                }
            }
            Some(Ok(Event::Watermark(wm))) => {
                m.note_watermark(wm);
                op.on_watermark(wm, &mut out)?;
                // A watermark fires windows and timers: what they held is freed here.
                if let Some(size) = op.state_size() {
                    m.note_state(size);
                }
            }
            // Every live input is idle: so is this instance, downstream.
            Some(Ok(Event::Idle)) => out.idle(),
            // Passed on at once, not behind the operator's own work.
            Some(Ok(Event::Latency(mk))) => outs.latency(mk),
            Some(Ok(Event::Barrier(b))) => {
                refuse_barrier(&op, &ctx.info)?;
                hold_barrier(&mut barriers, b);
                // Most operators have nothing in flight: the barrier follows at once.
                let mut noop = Context::from_waker(Waker::noop());
                match op.poll_flush(&mut noop, &mut out) {
                    Poll::Ready(Ok(())) => release_barriers(&mut barriers, &mut out),
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => {}
                }
            }
            Some(Ok(Event::Checkpoint(b, how))) => {
                let alignment = inputs.last_alignment();
                // The work in flight completes first: its results belong before the barrier.
                wait_in(m, TimeState::Busy, |cx| op.poll_flush(cx, &mut out)).await?;
                release_barriers(&mut barriers, &mut out);
                if let Some(ck) = &ctx.checkpoints {
                    let blobs = snapshot_blobs(ck, &ctx.info, |w| op.snapshot(w));
                    ck.aligned(&mut held, b.id(), how, blobs, alignment);
                }
                out.checkpoint(b);
            }
            Some(Ok(Event::Captured(id, captured))) => {
                if let Some(ck) = &ctx.checkpoints {
                    ck.captured(&mut held, &ctx.info, id, captured);
                }
            }
            Some(Ok(Event::End)) => {
                m.switch(TimeState::Finishing);
                op.on_end(&mut out)?;
                if let Some(size) = op.state_size() {
                    m.note_state(size);
                }
                break;
            }
            Some(Err(e)) => return Err(e),
        }
        outs.dispatch(&mut out)?;
        if budget.spend(rows) {
            end_turn(m, &mut outs).await;
            inputs.adapt(m.active_ns());
        }
    }
    // Work still in flight is finished, its results sent as they complete, before the end.
    loop {
        outs.dispatch(&mut out)?;
        if !make_room(&mut outs, m, || inputs.release_credit()).await? {
            count_held(&op, &mut out, &mut outs, m);
            m.switch(TimeState::Done);
            return Ok(());
        }
        let before = emitted_mark(&out);
        m.switch(TimeState::Finishing);
        let done = wait_in(m, TimeState::Finishing, |cx| {
            match outs.poll_work(cx) {
                Ok(Work::Emitted) => return Poll::Ready(Ok(false)),
                Err(e) => return Poll::Ready(Err(e)),
                Ok(_) => {}
            }
            match op.poll_flush(cx, &mut out) {
                Poll::Ready(r) => Poll::Ready(r.map(|()| true)),
                Poll::Pending if emitted_mark(&out) != before => Poll::Ready(Ok(false)),
                // Nobody takes the results: the next `make_room` ends the instance.
                Poll::Pending if outs.poll_closed(cx).is_ready() => Poll::Ready(Ok(false)),
                Poll::Pending => {
                    outs.wake_consumers();
                    Poll::Pending
                }
            }
        })
        .await?;
        if done {
            break;
        }
    }
    release_barriers(&mut barriers, &mut out);
    finish_outputs(&mut outs, &mut out, m).await?;
    m.switch(TimeState::Done);
    Ok(())
}

/// Sets up a checkpointed instance's inputs: the alignment timeout, and the batches they
/// captured in the checkpoint restored, replayed first.
fn restore_inputs<B: Batch>(
    ck: &Checkpoints,
    info: &InstanceInfo,
    inputs: &mut Inputs<B>,
) -> Result<(), OperatorError> {
    inputs.set_align_timeout(ck.align_timeout());
    for (i, bytes) in ck.restore_in_flight(&info.name, info.instance, inputs.len())? {
        inputs.replay(i, &bytes)?;
    }
    Ok(())
}

/// An operator instance ends because every consumer has gone away: the rows it still holds, in
/// its output and in its state ([`Operator::held_rows`]), are counted as dropped because
/// downstream closed, as the rows in its output edges are.
fn count_held<O: Operator, D: Downstream<O::Output>>(
    op: &O,
    out: &mut Output<O::Output>,
    outs: &mut D,
    m: &InstanceMetrics,
) {
    m.dropped_downstream_closed.add(held_rows(op, out));
    outs.count_held();
}

/// Why an operator's wait ended.
enum Wake<B> {
    Input(Result<Event<B>, OperatorError>),
    Linger,
    /// `poll_flush` emitted something: send it before going on.
    Emitted,
    Failed(OperatorError),
    /// Every consumer has gone away.
    Closed,
}

pub(crate) async fn run_sink<K: Sink>(
    mut sink: K,
    mut inputs: Inputs<K::Input>,
    mut dead: DeadPort,
    ctx: DriverCtx,
) -> Result<K::Output, OperatorError> {
    let m = &*ctx.metrics;
    m.switch(TimeState::Busy);
    sink.open(&ctx.info)?;
    // An unaligned checkpoint's acknowledgement, held until its capture is done.
    let mut held = None;
    if let Some(ck) = &ctx.checkpoints {
        restore_inputs(ck, &ctx.info, &mut inputs)?;
        if let Some(state) =
            ck.restore_state(&ctx.info.name, ctx.info.instance, ctx.info.parallelism)?
        {
            sink.restore(&state)?;
        }
    }
    // The checkpoint this sink pre-committed and has not committed yet.
    let mut to_commit: Option<u64> = None;
    inputs.size_by_time(ctx.edge_target);
    let mut budget = Budget::new(ctx.yield_every, ctx.info.batch_rows);
    let mut rejects = Vec::new();
    // A latency marker does not spend the sink's readiness: the event after it is taken
    // without asking again (a sink that paces itself per event is not charged for markers).
    let mut still_ready = false;
    loop {
        if let (Some(id), Some(ck)) = (to_commit, &ctx.checkpoints) {
            if ck.committed() >= id {
                to_commit = None;
                sink.commit(id)?;
            }
        }
        if !dead.is_flushed() {
            wait_in(m, TimeState::Backpressured, |cx| dead.poll_flush(cx)).await;
        }
        wait_in(m, TimeState::Backpressured, |cx| dead.poll_ready(cx)).await;
        // Demand starts here: take nothing until the sink is ready for it. A sink that paces
        // itself hands back the credit of what it took as it goes, not in chunks.
        let mut parked = false;
        if !std::mem::take(&mut still_ready) {
            wait_in(m, TimeState::Busy, |cx| {
                let ready = sink.poll_ready(cx);
                if ready.is_pending() {
                    if sink.poll_closed(cx).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    inputs.release_credit();
                    parked = true;
                }
                ready
            })
            .await?;
        }
        if sink.is_closed() {
            break;
        }
        let idle_before = m.idle_ns();
        let event = wait_in(m, TimeState::Idle, |cx| {
            // Work the sink has in flight progresses while it waits for input.
            if let Poll::Ready(Err(e)) = sink.poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
            match inputs.poll_next(cx) {
                Poll::Ready(ev) => Poll::Ready(ev.map(|e| Some(Some(e)))),
                // Its own consumer went away while nothing arrived.
                Poll::Pending if sink.poll_closed(cx).is_ready() => Poll::Ready(Ok(None)),
                // A checkpoint it pre-committed completed: commit it now.
                Poll::Pending
                    if to_commit
                        .zip(ctx.checkpoints.as_ref())
                        .is_some_and(|(id, ck)| ck.poll_committed(cx, id).is_ready()) =>
                {
                    Poll::Ready(Ok(Some(None)))
                }
                Poll::Pending => {
                    parked = true;
                    Poll::Pending
                }
            }
        })
        .await;
        m.switch(TimeState::Busy);
        if parked {
            inputs.resumed(m.idle_ns() - idle_before);
            inputs.adapt(m.active_ns());
        }
        let mut rows = 0;
        let Some(event) = event? else { break };
        let Some(event) = event else {
            continue;
        };
        match event {
            Event::Data(port, batch, bytes) => {
                rows = batch.rows();
                m.note_input(batch.rows(), bytes);
                sink.on_batch(port, batch)?;
                if let Some(spare) = sink.take_spare() {
                    inputs.recycle(spare);
                }
                sink.take_dead_letters(&mut rejects);
                if !rejects.is_empty() {
                    dead.dispatch(std::mem::take(&mut rejects), 0);
                }
            }
            Event::Watermark(wm) => m.note_watermark(wm),
            Event::Latency(mk) => {
                m.note_latency(mk.age());
                still_ready = true;
            }
            Event::Idle => {}
            Event::Barrier(b) => {
                // What came before it is made durable before it is reported.
                wait_in(m, TimeState::Busy, |cx| sink.poll_barrier(cx, b)).await?;
                if let Some((ledger, k)) = &ctx.sink_slot {
                    ledger.report(*k, b);
                }
            }
            Event::Checkpoint(b, how) => {
                let alignment = inputs.last_alignment();
                // What came before it is made pending (durable, not yet published).
                wait_in(m, TimeState::Busy, |cx| sink.poll_pre_commit(cx, b.id())).await?;
                if let Some(ck) = &ctx.checkpoints {
                    let blobs = snapshot_blobs(ck, &ctx.info, |w| sink.snapshot(w));
                    ck.aligned(&mut held, b.id(), how, blobs, alignment);
                    to_commit = Some(b.id());
                }
                // Behind the letters it rejected before it (sent after every batch).
                dead.checkpoint(b);
            }
            Event::Captured(id, captured) => {
                if let Some(ck) = &ctx.checkpoints {
                    ck.captured(&mut held, &ctx.info, id, captured);
                }
            }
            Event::End => break,
        }
        if budget.spend(rows) {
            m.checkpoint();
            inputs.adapt(m.active_ns());
            yield_to_queue().await;
        }
    }
    // Finish what is in flight, then close, before the result: after the end of input, this is
    // not busy time (a commit does not limit the rate rows move at).
    m.switch(TimeState::Finishing);
    let closed = wait_in(m, TimeState::Finishing, |cx| match sink.poll_flush(cx) {
        Poll::Ready(Ok(())) => sink.poll_close(cx),
        other => other,
    })
    .await;
    let result = closed.and_then(|()| sink.finish());
    m.dropped_downstream_closed
        .fetch_add(sink.undelivered_rows(), Relaxed);
    sink.take_dead_letters(&mut rejects);
    dead.dispatch(rejects, 0);
    dead.end();
    wait_in(m, TimeState::Backpressured, |cx| dead.poll_flush(cx)).await;
    m.switch(TimeState::Done);
    result
}
