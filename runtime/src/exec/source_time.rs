//! Event time in a source's run loop: stamping what a call sealed, the idle timer, alignment,
//! and the `+∞` watermark at the end. The semantics are stated in
//! [`event_time`](crate::event_time); this module applies them at these points of the loop
//! (`driver.rs`):
//!
//! - **before every send**: the batches the source sealed are read for their event times and,
//!   if the watermark advanced, one watermark is put after them ([`SourceTime::stamp`]);
//!   after the send the alignment group learns it;
//! - **after waiting for credit**: the quiet time restarts ([`SourceTime::blocked`]), so time
//!   spent blocked never makes an instance idle;
//! - **before polling**: an instance its group pauses waits, as for credit (the same loop
//!   position, time counted as backpressured and as paused by alignment);
//! - **while the source is pending**: a tokio timer at `quiet since + idle timeout` wakes the
//!   loop (no polling in between); when it fires the instance announces itself idle
//!   ([`SourceTime::go_idle`]); rows it produces later make it active again
//!   ([`SourceTime::note_rows`]);
//! - **at the end**: `+∞` after the last batch ([`SourceTime::end`]), and the instance leaves its
//!   group.
//!
//! The run loop is generic over [`Clock`]: a source without a strategy runs it with
//! [`NoClock`], whose every event-time step compiles away, so it pays nothing per batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::batch::{Batch, Timestamp};
use crate::error::OperatorError;
use crate::event_time::{AlignGroups, EventTimeState, Member, Stamper, WatermarkStrategy};
use crate::metrics::InstanceMetrics;
use crate::operator::Output;

/// What a source's run loop keeps of event time: [`SourceTime`], or nothing ([`NoClock`]).
pub(crate) trait Clock<B: Batch>: Send + 'static {
    /// The event time to apply, if any; constant per type, so the loop's checks compile away.
    fn time(&mut self) -> Option<&mut SourceTime<B>>;
}

/// A source without a watermark strategy.
pub(crate) struct NoClock;

impl<B: Batch> Clock<B> for NoClock {
    #[inline(always)]
    fn time(&mut self) -> Option<&mut SourceTime<B>> {
        None
    }
}

impl<B: Batch> Clock<B> for SourceTime<B> {
    #[inline(always)]
    fn time(&mut self) -> Option<&mut SourceTime<B>> {
        Some(self)
    }
}

/// One source instance's event time.
pub(crate) struct SourceTime<B: Batch> {
    stamper: Stamper<B>,
    idle_timeout: Option<Duration>,
    /// Since when the source has returned `Pending` without producing rows.
    quiet_since: Option<Instant>,
    idle: bool,
    idle_sleep: Option<Pin<Box<Sleep>>>,
    member: Option<Member>,
    /// A watermark put in the output and not yet published to the group.
    unpublished: Option<Timestamp>,
    metrics: Arc<InstanceMetrics>,
}

impl<B: Batch> SourceTime<B> {
    /// The event time of one instance under `strategy`, joining its alignment group.
    pub(crate) fn new(
        strategy: &WatermarkStrategy<B>,
        groups: &AlignGroups,
        metrics: Arc<InstanceMetrics>,
    ) -> Self {
        let member = match &strategy.align {
            Some((group, drift)) if !strategy.is_none() => Some(groups.join(group, *drift)),
            _ => None,
        };
        metrics.set_event_time(EventTimeState::Active);
        Self {
            stamper: Stamper::new(strategy),
            idle_timeout: strategy.idle_timeout,
            quiet_since: None,
            idle: false,
            idle_sleep: None,
            member,
            unpublished: None,
            metrics,
        }
    }

    /// Reads the event times of the batches `out` sealed and, if the watermark advanced, puts it
    /// after them (the partial batch stays open behind it).
    ///
    /// # Errors
    ///
    /// Reading event times failed (a missing column, say).
    pub(crate) fn stamp(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        let mut any = false;
        for batch in out.sealed_batches() {
            self.stamper.observe(batch)?;
            any = true;
        }
        if any {
            if let Some(wm) = self.stamper.advance() {
                out.watermark_after_sealed(wm);
                self.metrics.note_watermark(wm);
                self.unpublished = Some(wm);
            }
        }
        Ok(())
    }

    /// What [`stamp`](Self::stamp) put in the output has been handed on: the group learns it.
    pub(crate) fn sent(&mut self) {
        if let Some(wm) = self.unpublished.take() {
            if let Some(member) = &mut self.member {
                member.publish(wm.0);
            }
        }
    }

    /// The instance waited for credit: the quiet time restarts.
    pub(crate) fn blocked(&mut self) {
        self.quiet_since = None;
    }

    /// The source produced rows: it is not quiet, and an idle instance is active again.
    pub(crate) fn note_rows(&mut self) {
        self.quiet_since = None;
        if self.idle {
            self.idle = false;
            self.metrics.set_event_time(EventTimeState::Active);
            if let Some(member) = &mut self.member {
                member.set_idle(false);
            }
        }
    }

    /// Whether its alignment group pauses it now.
    #[inline]
    pub(crate) fn is_paused(&self) -> bool {
        self.member.as_ref().is_some_and(Member::is_paused)
    }

    /// `Ready` once its alignment group lets it read.
    pub(crate) fn poll_aligned(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.member {
            Some(member) => member.poll_aligned(cx),
            None => Poll::Ready(()),
        }
    }

    /// Called while the source is pending: `Ready` once it has been quiet for the idle
    /// timeout (the timer arranges the wake-up). Never ready without a timeout or when idle.
    pub(crate) fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(timeout) = self.idle_timeout else {
            return Poll::Pending;
        };
        if self.idle {
            return Poll::Pending;
        }
        let since = *self.quiet_since.get_or_insert_with(Instant::now);
        let Some(deadline) = since.checked_add(timeout) else {
            return Poll::Pending;
        };
        let sleep = self
            .idle_sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }

    /// The idle timeout passed: what is pending goes first, then the idle marker.
    ///
    /// # Errors
    ///
    /// As [`stamp`](Self::stamp).
    pub(crate) fn go_idle(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        out.flush();
        self.stamp(out)?;
        out.idle();
        self.idle = true;
        self.quiet_since = None;
        self.metrics.idle_periods.add(1);
        self.metrics.set_event_time(EventTimeState::Idle);
        if let Some(member) = &mut self.member {
            member.set_idle(true);
        }
        Ok(())
    }

    /// The input ended: the last rows, then `+∞`; the instance leaves its group.
    ///
    /// # Errors
    ///
    /// As [`stamp`](Self::stamp).
    pub(crate) fn end(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        out.flush();
        self.stamp(out)?;
        out.watermark_after_sealed(Timestamp::MAX);
        self.stamper.end();
        self.unpublished = None;
        self.metrics.note_watermark(Timestamp::MAX);
        self.metrics.set_event_time(EventTimeState::Ended);
        if let Some(mut member) = self.member.take() {
            member.leave();
        }
        Ok(())
    }
}
