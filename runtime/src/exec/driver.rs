//! The per-instance run loops, one per operator position, and their time accounting.
//!
//! Every loop follows the same order, which is the demand protocol seen from one instance:
//!
//! 1. drain held output (waiting here is *backpressured*);
//! 2. wait until downstream has credit (*backpressured*) — a source is polled only after this;
//! 3. wait until the operator is ready for input (`Operator::poll_ready`; *busy*) — sinks
//!    likewise (`Sink::poll_ready`);
//! 4. wait for input (*idle*), flushing a lingering partial batch when its deadline passes;
//! 5. run the operator on one batch (*busy*) and route what it emitted.
//!
//! After `yield_every` batches without waiting, the loop yields to the scheduler so instances
//! sharing a worker thread take turns.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::batch::Batch;
use crate::error::OperatorError;
use crate::exec::inputs::{Event, Inputs};
use crate::exec::outputs::{DeadPort, Ports, Readiness};
use crate::exec::StopSignal;
use crate::metrics::{InstanceMetrics, TimeState};
use crate::operator::{InstanceInfo, Operator, Output, Sink, Source, SourceStatus};

/// What every driver needs besides its operator.
pub(crate) struct DriverCtx {
    pub(crate) info: InstanceInfo,
    pub(crate) metrics: Arc<InstanceMetrics>,
    pub(crate) linger: Duration,
    pub(crate) yield_every: u32,
    pub(crate) stop: Arc<StopSignal>,
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

struct Budget {
    left: u32,
    every: u32,
}

impl Budget {
    fn new(every: u32) -> Self {
        let every = every.max(1);
        Self { left: every, every }
    }

    async fn spend(&mut self, metrics: &InstanceMetrics) {
        self.left -= 1;
        if self.left == 0 {
            self.left = self.every;
            metrics.checkpoint();
            yield_to_queue().await;
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

/// Waits for room downstream. Returns false if every consumer has gone.
async fn make_room<B: Batch>(outs: &mut Ports<B>, m: &InstanceMetrics) -> bool {
    if !outs.is_flushed() {
        wait_in(m, TimeState::Backpressured, |cx| outs.poll_flush(cx)).await;
    }
    matches!(
        wait_in(m, TimeState::Backpressured, |cx| outs.poll_ready(cx)).await,
        Readiness::Ready
    )
}

/// Sends End downstream and waits until it has been accepted (or the consumers are gone).
async fn finish_outputs<B: Batch>(outs: &mut Ports<B>, out: &mut Output<B>, m: &InstanceMetrics) {
    out.flush();
    outs.dispatch(out);
    outs.end();
    wait_in(m, TimeState::Backpressured, |cx| outs.poll_flush(cx)).await;
}

fn linger_deadline<B: Batch>(out: &Output<B>, linger: Duration) -> Option<Instant> {
    out.open_since().map(|t| Instant::from_std(t) + linger)
}

pub(crate) async fn run_source<S: Source>(
    mut source: S,
    mut outs: Ports<S::Output>,
    ctx: DriverCtx,
) -> Result<(), OperatorError> {
    let m = &*ctx.metrics;
    m.switch(TimeState::Busy);
    source.open(&ctx.info)?;
    let mut out = Output::new(ctx.info.batch_rows);
    let mut budget = Budget::new(ctx.yield_every);
    loop {
        if !make_room(&mut outs, m).await {
            // Every consumer has gone away: stop reading.
            break;
        }
        if ctx.stop.is_stopped() {
            break;
        }
        // Poll the source; while it has nothing, we are idle, and a partial batch lingers only
        // until its deadline.
        let status = {
            let deadline = linger_deadline(&out, ctx.linger);
            let mut sleep = pin!(deadline.map(tokio::time::sleep_until));
            let mut stopped = pin!(ctx.stop.wait());
            let mut first = true;
            poll_fn(|cx| {
                if !first {
                    m.switch(TimeState::Busy);
                }
                first = false;
                if let Poll::Ready(r) = source.poll_produce(cx, &mut out) {
                    return Poll::Ready(Some(r));
                }
                if out.is_full() {
                    return Poll::Ready(None);
                }
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(None);
                    }
                }
                if stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
                m.switch(TimeState::Idle);
                Poll::Pending
            })
            .await
        };
        m.switch(TimeState::Busy);
        match status {
            Some(Ok(SourceStatus::Continue)) => {}
            Some(Ok(SourceStatus::Done)) => break,
            Some(Err(e)) => return Err(e),
            // Linger deadline or stop: send what we have.
            None => out.flush(),
        }
        if let Some(since) = out.open_since() {
            if ctx.linger.is_zero() || since.elapsed() >= ctx.linger {
                out.flush();
            }
        }
        outs.dispatch(&mut out);
        budget.spend(m).await;
    }
    finish_outputs(&mut outs, &mut out, m).await;
    m.switch(TimeState::Done);
    Ok(())
}

pub(crate) async fn run_operator<O: Operator>(
    mut op: O,
    mut inputs: Inputs<O::Input>,
    mut outs: Ports<O::Output>,
    ctx: DriverCtx,
) -> Result<(), OperatorError> {
    let m = &*ctx.metrics;
    m.switch(TimeState::Busy);
    op.open(&ctx.info)?;
    let mut out = Output::new(ctx.info.batch_rows);
    let mut budget = Budget::new(ctx.yield_every);
    loop {
        if !make_room(&mut outs, m).await {
            // Cancelled from downstream: dropping our inputs releases our producers.
            m.switch(TimeState::Done);
            return Ok(());
        }
        if ctx.linger.is_zero() && out.open_since().is_some() {
            out.flush();
            outs.dispatch(&mut out);
            continue;
        }
        // The operator's own readiness (it may pace itself): busy while pending, and a partial
        // batch still leaves when its linger deadline passes.
        let ready = {
            let deadline = linger_deadline(&out, ctx.linger);
            // The timer is made only if the operator is not ready, so the common path pays
            // one call.
            let mut sleep = None;
            wait_in(m, TimeState::Busy, |cx| {
                if let Poll::Ready(r) = op.poll_ready(cx) {
                    return Poll::Ready(Some(r));
                }
                let Some(deadline) = deadline else {
                    return Poll::Pending;
                };
                sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)))
                    .as_mut()
                    .poll(cx)
                    .map(|()| None)
            })
            .await
        };
        match ready {
            Some(r) => r?,
            None => {
                out.flush();
                outs.dispatch(&mut out);
                continue;
            }
        }
        let event = {
            let deadline = linger_deadline(&out, ctx.linger);
            let mut sleep = pin!(deadline.map(tokio::time::sleep_until));
            wait_in(m, TimeState::Idle, |cx| {
                if let Poll::Ready(ev) = inputs.poll_next(cx) {
                    return Poll::Ready(Some(ev));
                }
                match sleep.as_mut().as_pin_mut() {
                    Some(s) => s.poll(cx).map(|()| None),
                    None => Poll::Pending,
                }
            })
            .await
        };
        m.switch(TimeState::Busy);
        match event {
            None => out.flush(),
            Some(Ok(Event::Data(port, batch))) => {
                m.rows_in.fetch_add(batch.rows() as u64, Relaxed);
                m.batches_in.fetch_add(1, Relaxed);
                m.bytes_in.fetch_add(batch.bytes() as u64, Relaxed);
                op.on_batch(port, batch, &mut out)?;
                if let Some(size) = op.state_size() {
                    m.note_state(size);
                }
            }
            Some(Ok(Event::Watermark(wm))) => op.on_watermark(wm, &mut out)?,
            Some(Ok(Event::End)) => {
                op.on_end(&mut out)?;
                if let Some(size) = op.state_size() {
                    m.note_state(size);
                }
                break;
            }
            Some(Err(e)) => return Err(e),
        }
        outs.dispatch(&mut out);
        budget.spend(m).await;
    }
    finish_outputs(&mut outs, &mut out, m).await;
    m.switch(TimeState::Done);
    Ok(())
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
    let mut budget = Budget::new(ctx.yield_every);
    let mut rejects = Vec::new();
    loop {
        if !dead.is_flushed() {
            wait_in(m, TimeState::Backpressured, |cx| dead.poll_flush(cx)).await;
        }
        wait_in(m, TimeState::Backpressured, |cx| dead.poll_ready(cx)).await;
        // Demand starts here: take nothing until the sink is ready for it.
        wait_in(m, TimeState::Busy, |cx| sink.poll_ready(cx)).await?;
        if sink.is_closed() {
            break;
        }
        let event = wait_in(m, TimeState::Idle, |cx| inputs.poll_next(cx)).await;
        m.switch(TimeState::Busy);
        match event? {
            Event::Data(port, batch) => {
                m.rows_in.fetch_add(batch.rows() as u64, Relaxed);
                m.batches_in.fetch_add(1, Relaxed);
                m.bytes_in.fetch_add(batch.bytes() as u64, Relaxed);
                sink.on_batch(port, batch)?;
                sink.take_dead_letters(&mut rejects);
                if !rejects.is_empty() {
                    dead.dispatch(std::mem::take(&mut rejects), 0);
                }
            }
            Event::Watermark(_) => {}
            Event::End => break,
        }
        budget.spend(m).await;
    }
    let result = sink.finish();
    sink.take_dead_letters(&mut rejects);
    dead.dispatch(rejects, 0);
    dead.end();
    wait_in(m, TimeState::Backpressured, |cx| dead.poll_flush(cx)).await;
    m.switch(TimeState::Done);
    result
}
