//! [`Assign`]: watermarks for a stream that is not a source's own, from an operator placed
//! after its producer.
//!
//! It applies a strategy's timestamps and kind exactly as a source does (one watermark after
//! each batch that advances it, `+∞` at the end) and **replaces** the watermarks arriving from
//! upstream, which it drops (as Flink's `assignTimestampsAndWatermarks` does). Idle timeouts and
//! alignment need a source's run loop (they are about what the source has not read yet) and do
//! not apply here; idleness from upstream still passes through.

use super::strategy::{Stamper, WatermarkStrategy};
use crate::batch::{Batch, Timestamp};
use crate::error::OperatorError;
use crate::operator::{InputPort, Operator, Output};

/// An operator that assigns watermarks to the stream it forwards (see the module docs).
pub(crate) struct Assign<B: Batch> {
    stamper: Stamper<B>,
}

impl<B: Batch> Assign<B> {
    pub(crate) fn new(strategy: &WatermarkStrategy<B>) -> Self {
        Self {
            stamper: Stamper::new(strategy),
        }
    }
}

impl<B: Batch> Operator for Assign<B> {
    type Input = B;
    type Output = B;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: B,
        out: &mut Output<B>,
    ) -> Result<(), OperatorError> {
        self.stamper.observe(&batch)?;
        out.emit(batch);
        if let Some(wm) = self.stamper.advance() {
            out.watermark(wm);
        }
        Ok(())
    }

    fn on_watermark(&mut self, _: Timestamp, _: &mut Output<B>) -> Result<(), OperatorError> {
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        out.watermark(Timestamp::MAX);
        Ok(())
    }
}
