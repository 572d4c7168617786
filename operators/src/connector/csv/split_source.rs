//! The source half of [`csv_split`](super::csv_split): a [`Cutter`] on a thread of its own,
//! cutting one chunk per credit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use weir_runtime::{OperatorError, Output, Source, SourceStatus};

use super::cut::{CsvChunk, Cutter};
use crate::columnar::read_error;
use crate::connector::{ReadError, SetPosition};
use crate::lane::{poll_slot, Lane, LaneTask};
use crate::source::{decode_position, encode_position, Rewind};

type CutResult = (Box<Cutter>, Result<Option<CsvChunk>, ReadError>);

/// The source half of [`csv_split`](super::csv_split): cuts files into chunks, one per credit.
pub struct CsvChunker {
    cutter: Option<Box<Cutter>>,
    /// The thread cutting chunks, started on the first read.
    lane: Option<Lane>,
    in_flight: Option<LaneTask<CutResult>>,
    bytes_read: Arc<AtomicU64>,
    /// The cutter's position after the last chunk emitted.
    position: SetPosition,
}

impl std::fmt::Debug for CsvChunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvChunker")
            .field("reading", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}

impl Source for CsvChunker {
    type Output = CsvChunk;

    fn can_snapshot(&self) -> bool {
        true
    }

    /// The [`position`](Rewind::position) after the last chunk emitted.
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        encode_position(self)
    }

    /// Moves the reader, before its first read, to a checkpoint's position.
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let position: SetPosition = decode_position(position)?;
        let cutter = match (&mut self.cutter, &self.in_flight) {
            (Some(cutter), None) => cutter,
            _ => return Err(OperatorError::internal("restored after its first read")),
        };
        cutter.seek(position).map_err(OperatorError::user)?;
        self.position = position;
        Ok(())
    }

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<CsvChunk>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        loop {
            if let Some(joined) = std::task::ready!(poll_slot(&mut self.in_flight, cx, "read")) {
                let (cutter, item) = joined?;
                // Relaxed: a statistic; nothing else is synchronised through it.
                self.bytes_read.store(cutter.bytes_read, Ordering::Relaxed);
                if item.is_ok() {
                    self.position = cutter.position();
                }
                self.cutter = Some(cutter);
                return Poll::Ready(match item {
                    Ok(None) => Ok(SourceStatus::Done),
                    Ok(Some(chunk)) => {
                        out.emit(chunk);
                        Ok(SourceStatus::Continue)
                    }
                    Err(e) => Err(read_error(e)),
                });
            }
            let Some(mut cutter) = self.cutter.take() else {
                return Poll::Ready(Ok(SourceStatus::Done));
            };
            if self.lane.is_none() {
                self.lane = Some(Lane::start("weir-csv-read").map_err(|e| {
                    OperatorError::internal(format!("cannot start the reader: {e}"))
                })?);
            }
            let lane = self.lane.as_ref().expect("started above");
            self.in_flight = Some(lane.run(move || {
                let item = cutter.next_chunk();
                (cutter, item)
            }));
        }
    }
}

impl CsvChunker {
    /// A chunker running `cutter`, storing the bytes it has read in `bytes_read`.
    pub(super) fn new(cutter: Cutter, bytes_read: Arc<AtomicU64>) -> Self {
        Self {
            position: cutter.position(),
            cutter: Some(Box::new(cutter)),
            lane: None,
            in_flight: None,
            bytes_read,
        }
    }
}

impl Rewind for CsvChunker {
    type Position = SetPosition;

    /// The file, byte offset and line after the last chunk emitted; see
    /// [`csv_split`](super::csv_split)'s module docs.
    fn position(&self) -> SetPosition {
        self.position
    }
}
