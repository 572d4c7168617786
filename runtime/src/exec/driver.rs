//! The per-instance run loops, one per operator position, and their time accounting.
//!
//! Every loop follows the same order, which is the demand protocol seen from one instance:
//!
//! 1. drain held output (waiting here is *backpressured*);
//! 2. wait until downstream has credit (*backpressured*) — a source is polled only after this;
//! 3. wait for input (*idle*), flushing a lingering partial batch when its deadline passes;
//! 4. run the operator on one batch (*busy*) and route what it emitted.
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
            tokio::task::yield_now().await;
        }
    }
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
    let mut stopping = false;
    loop {
        if !make_room(&mut outs, m).await {
            // Every consumer has gone away: stop reading.
            break;
        }
        if ctx.stop.is_stopped() && !stopping {
            stopping = true;
            // A source may ask to hand on what it already acknowledged before it ends.
            if source.on_stop() == SourceStatus::Done {
                break;
            }
        }
        // Poll the source; while it has nothing, we are idle, and a partial batch lingers only
        // until its deadline.
        let status = {
            let deadline = linger_deadline(&out, ctx.linger);
            let mut sleep = pin!(deadline.map(tokio::time::sleep_until));
            let mut stopped = pin!(ctx.stop.wait());
            let watch_stop = !stopping;
            let mut first = true;
            poll_fn(|cx| {
                if !first {
                    m.switch(TimeState::Busy);
                }
                first = false;
                // Lossy edges move their backlog whenever credit returns.
                outs.poll_lossy(cx);
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
                if watch_stop && stopped.as_mut().poll(cx).is_ready() {
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
        let event = {
            if ctx.linger.is_zero() && out.open_since().is_some() {
                out.flush();
                outs.dispatch(&mut out);
                continue;
            }
            let deadline = linger_deadline(&out, ctx.linger);
            let mut sleep = pin!(deadline.map(tokio::time::sleep_until));
            let before = emitted_mark(&out);
            let mut ready = false;
            poll_fn(|cx| {
                outs.poll_lossy(cx);
                // Results of asynchronous work are emitted as they complete.
                if let Poll::Ready(Err(e)) = op.poll_flush(cx, &mut out) {
                    return Poll::Ready(Wake::Failed(e));
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
                if let Some(s) = sleep.as_mut().as_pin_mut() {
                    if s.poll(cx).is_ready() {
                        return Poll::Ready(Wake::Linger);
                    }
                }
                m.switch(state);
                Poll::Pending
            })
            .await
        };
        m.switch(TimeState::Busy);
        let event = match event {
            Wake::Input(ev) => Some(ev),
            Wake::Linger => None,
            Wake::Emitted => {
                outs.dispatch(&mut out);
                budget.spend(m).await;
                continue;
            }
            Wake::Failed(e) => return Err(e),
        };
        match event {
            None => out.flush(),
            Some(Ok(Event::Data(port, batch))) => {
                m.rows_in.fetch_add(batch.rows() as u64, Relaxed);
                m.batches_in.fetch_add(1, Relaxed);
                m.bytes_in.fetch_add(batch.bytes() as u64, Relaxed);
                op.on_batch(port, batch, &mut out)?;
            }
            Some(Ok(Event::Watermark(wm))) => op.on_watermark(wm, &mut out)?,
            Some(Ok(Event::End)) => {
                op.on_end(&mut out)?;
                break;
            }
            Some(Err(e)) => return Err(e),
        }
        outs.dispatch(&mut out);
        budget.spend(m).await;
    }
    // Work still in flight is finished, its results sent as they complete, before the end.
    loop {
        outs.dispatch(&mut out);
        if !make_room(&mut outs, m).await {
            m.switch(TimeState::Done);
            return Ok(());
        }
        let before = emitted_mark(&out);
        let done = wait_in(m, TimeState::Busy, |cx| {
            outs.poll_lossy(cx);
            match op.poll_flush(cx, &mut out) {
                Poll::Ready(r) => Poll::Ready(r.map(|()| true)),
                Poll::Pending if emitted_mark(&out) != before => Poll::Ready(Ok(false)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if done {
            break;
        }
    }
    finish_outputs(&mut outs, &mut out, m).await;
    m.switch(TimeState::Done);
    Ok(())
}

/// Why an operator's wait ended.
enum Wake<B> {
    Input(Result<Event<B>, OperatorError>),
    Linger,
    /// `poll_flush` emitted something: send it before going on.
    Emitted,
    Failed(OperatorError),
}

/// What an operator emitted so far, coarsely: a change means something new is there to send.
fn emitted_mark<B: Batch>(out: &Output<B>) -> (bool, bool, usize) {
    (
        out.is_full(),
        out.open_since().is_some(),
        out.dead_letter_count(),
    )
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
        let event = wait_in(m, TimeState::Idle, |cx| {
            // Work the sink has in flight progresses while it waits for input.
            if let Poll::Ready(Err(e)) = sink.poll_flush(cx) {
                return Poll::Ready(Err(e));
            }
            inputs.poll_next(cx)
        })
        .await;
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
    // Finish what is in flight before the result.
    wait_in(m, TimeState::Busy, |cx| sink.poll_flush(cx)).await?;
    let result = sink.finish();
    sink.take_dead_letters(&mut rejects);
    dead.dispatch(rejects, 0);
    dead.end();
    wait_in(m, TimeState::Backpressured, |cx| dead.poll_flush(cx)).await;
    m.switch(TimeState::Done);
    result
}
