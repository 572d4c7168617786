//! [`Assign`]: watermarks for a stream that is not a source's own, from an operator placed
//! after its producer.
//!
//! It applies a strategy's timestamps and kind exactly as a source does (one watermark after
//! each batch that advances it, `+∞` at the end) and **replaces** the watermarks arriving from
//! upstream, which it drops (as Flink's `assignTimestampsAndWatermarks` does). Idle timeouts and
//! alignment need a source's run loop (they are about what the source has not read yet) and do
//! not apply here; idleness from upstream still passes through.
//!
//! # Checkpoints
//!
//! Its state is what the strategy has seen: the largest event time (or punctuation) and the
//! last watermark sent, written as instance state at each checkpoint. A restored instance
//! continues from them, so the watermarks after a restore are the ones an uninterrupted run
//! sends (and which rows are late downstream does not change), instead of starting over from
//! the rows after the checkpoint. It also sends the restored watermark again ahead of its first
//! output: the edges after it are new, and without it every minimum downstream would wait for
//! this instance's next advance. Restored at a lower parallelism, an instance takes the lowest
//! state of those it stands for (see [`StamperState::lowest`]).

use super::strategy::{Stamper, StamperState, WatermarkStrategy};
use crate::batch::{Batch, Timestamp};
use crate::checkpoint::{decode, encode, SnapshotReader, SnapshotWriter};
use crate::error::OperatorError;
use crate::operator::{InputPort, Operator, Output};

/// An operator that assigns watermarks to the stream it forwards (see the module docs).
pub(crate) struct Assign<B: Batch> {
    stamper: Stamper<B>,
    /// The watermark a restore brought back, to send again ahead of the first output.
    resend: Option<Timestamp>,
}

impl<B: Batch> Assign<B> {
    pub(crate) fn new(strategy: &WatermarkStrategy<B>) -> Self {
        Self {
            stamper: Stamper::new(strategy),
            resend: None,
        }
    }

    /// Sends the restored watermark, once, before anything else.
    fn resend(&mut self, out: &mut Output<B>) {
        if let Some(wm) = self.resend.take() {
            out.watermark(wm);
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
        self.resend(out);
        self.stamper.observe(&batch)?;
        out.emit(batch);
        if let Some(wm) = self.stamper.advance() {
            out.watermark(wm);
        }
        Ok(())
    }

    fn on_watermark(&mut self, _: Timestamp, out: &mut Output<B>) -> Result<(), OperatorError> {
        self.resend(out);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<B>) -> Result<(), OperatorError> {
        self.resend = None;
        out.watermark(Timestamp::MAX);
        Ok(())
    }

    fn can_snapshot(&self) -> bool {
        true
    }

    /// The strategy's state: the largest event time seen and the last watermark sent.
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        let bytes = encode(&self.stamper.state()).map_err(|e| {
            OperatorError::internal(format!("encoding the watermark generator's state: {e}"))
        })?;
        state.put_instance(bytes);
        Ok(())
    }

    /// Continues from the checkpoint's state (the lowest, when it stands for several old
    /// instances); the restored watermark is sent again ahead of the first output.
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        let mut states = Vec::with_capacity(state.instance_states().len());
        for bytes in state.instance_states() {
            states.push(decode::<StamperState>(bytes).map_err(|e| {
                OperatorError::user(format!(
                    "the watermark generator's state does not decode: {e}"
                ))
            })?);
        }
        if let Some(restored) = StamperState::lowest(states) {
            self.stamper.restore(restored);
            self.resend = restored.sent.map(Timestamp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::batch::Message;

    fn strategy() -> WatermarkStrategy<Vec<i64>> {
        WatermarkStrategy::bounded(Duration::from_millis(10)).timestamps(|t: &i64| Timestamp(*t))
    }

    /// The watermarks `op` emits for `batch`, in order.
    fn watermarks(op: &mut Assign<Vec<i64>>, batch: Vec<i64>) -> Vec<i64> {
        let mut out = Output::new(1024);
        op.on_batch(0, batch, &mut out).expect("stamps");
        out.flush();
        out.drain()
            .filter_map(|m| match m {
                Message::Watermark(Timestamp(t)) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn snapshot(op: &mut Assign<Vec<i64>>) -> Vec<u8> {
        let mut w = SnapshotWriter::new(128);
        op.snapshot(&mut w).expect("snapshots");
        w.into_blob().expect("encodes")
    }

    #[test]
    fn a_restored_generator_continues_from_its_largest_event_time_not_from_scratch() {
        let mut run = Assign::new(&strategy());
        assert_eq!(watermarks(&mut run, vec![100, 500, 200]), [489]);
        let blob = snapshot(&mut run);
        // After the checkpoint: rows older than the largest seen move nothing.
        assert_eq!(watermarks(&mut run, vec![300]), Vec::<i64>::new());
        assert_eq!(watermarks(&mut run, vec![520]), [509]);

        let mut restored = Assign::new(&strategy());
        let state = SnapshotReader::from_blobs(128, 1, 0, 1, [blob.as_slice()]).expect("readable");
        restored.restore(&state).expect("restores");
        // The restored watermark first (the edges after it are new), then the same as above.
        assert_eq!(watermarks(&mut restored, vec![300]), [489]);
        assert_eq!(watermarks(&mut restored, vec![520]), [509]);

        // Started over instead, the generator would have sent 289 after the row at 300.
        let mut fresh = Assign::new(&strategy());
        assert_eq!(watermarks(&mut fresh, vec![300]), [289]);
    }

    #[test]
    fn a_generator_restored_for_several_old_instances_takes_the_lowest_state() {
        let (mut a, mut b) = (Assign::new(&strategy()), Assign::new(&strategy()));
        watermarks(&mut a, vec![1_000]);
        watermarks(&mut b, vec![400]);
        let (blob_a, blob_b) = (snapshot(&mut a), snapshot(&mut b));
        let mut merged = Assign::new(&strategy());
        let state = SnapshotReader::from_blobs(128, 1, 0, 1, [blob_a.as_slice(), &blob_b])
            .expect("readable");
        merged.restore(&state).expect("restores");
        assert_eq!(watermarks(&mut merged, vec![500]), [389, 489]);
        // One old instance that had seen nothing: the merged one starts from nothing.
        let mut c = Assign::new(&strategy());
        let blob_c = snapshot(&mut c);
        let mut merged = Assign::new(&strategy());
        let state = SnapshotReader::from_blobs(128, 1, 0, 1, [blob_a.as_slice(), &blob_c])
            .expect("readable");
        merged.restore(&state).expect("restores");
        assert_eq!(watermarks(&mut merged, vec![500]), [489]);
    }
}
