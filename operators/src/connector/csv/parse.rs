//! The parsing half of [`csv_split`](super::csv_split): each instance parses chunks with its own
//! [`ChunkParser`], sends dead letters and skips to its ports, and runs the step on the batch.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use weir_runtime::{InputPort, Operator, OperatorError, Output};

use super::chunk::ChunkParser;
use super::cut::CsvChunk;
use super::pool::ChunkPool;
use crate::columnar::read_error;
use crate::connector::CsvOptions;

/// What [`csv_split_with`](super::csv_split_with) runs on every parsed batch, knowing its file: it emits the batch
/// (possibly filtered, with dead letters of its own) into the output. It must keep the schema.
pub trait ChunkStep:
    FnMut(&str, RecordBatch, &mut Output<RecordBatch>) -> Result<(), OperatorError>
    + Clone
    + Send
    + 'static
{
}

impl<F> ChunkStep for F where
    F: FnMut(&str, RecordBatch, &mut Output<RecordBatch>) -> Result<(), OperatorError>
        + Clone
        + Send
        + 'static
{
}

/// The parsing half of [`csv_split`](super::csv_split): a `ChunkParser` per instance, then the step.
#[derive(Debug)]
pub struct CsvParse<F> {
    opts: CsvOptions,
    step: F,
    /// Made on the first chunk (each instance has its own).
    parser: Option<ChunkParser>,
    /// Emptied chunk buffers go back to the reader.
    pool: Arc<ChunkPool>,
}

impl<F: Clone> Clone for CsvParse<F> {
    fn clone(&self) -> Self {
        Self {
            opts: self.opts.clone(),
            step: self.step.clone(),
            parser: None,
            pool: self.pool.clone(),
        }
    }
}

impl<F: ChunkStep> Operator for CsvParse<F> {
    type Input = CsvChunk;
    type Output = RecordBatch;

    fn on_batch(
        &mut self,
        _: InputPort,
        chunk: CsvChunk,
        out: &mut Output<RecordBatch>,
    ) -> Result<(), OperatorError> {
        let parser = match &mut self.parser {
            Some(p) => p,
            None => self
                .parser
                .insert(ChunkParser::new(self.opts.clone()).map_err(read_error)?),
        };
        let parsed = parser
            .parse(&chunk.data, &chunk.file, chunk.first_line, chunk.records)
            .map_err(read_error)?;
        self.pool.put(chunk.data);
        if let Some(read) = parsed.read {
            for dead in read.dead_letters {
                out.dead_letter(dead);
            }
            if read.skipped > 0 {
                out.skip(read.skipped);
            }
            (self.step)(&chunk.file, read.batch, out)?;
        }
        match parsed.error {
            Some(e) => Err(read_error(e)),
            None => Ok(()),
        }
    }
}

impl<F> CsvParse<F> {
    /// An operator parsing chunks with `opts`, running `step`, returning buffers to `pool`.
    pub(super) fn new(opts: CsvOptions, step: F, pool: Arc<ChunkPool>) -> Self {
        Self {
            opts,
            step,
            parser: None,
            pool,
        }
    }
}
