//! Demand-driven file sources over the connector's blocking readers.
//!
//! # Protocol
//!
//! The runtime calls [`Source::poll_produce`] only when every downstream edge has credit. Each
//! call reads **at most one batch**:
//!
//! ```text
//! poll_produce ── no read in flight ──▶ move the reader onto its lane: next()
//!      │                                        │
//!      └── read in flight ──▶ poll the lane task ◀┘  (Pending: the task wakes us)
//!                                │ Ready
//!                                ▼
//!            reader comes back; emit the batch, its dead letters and its skip count
//! ```
//!
//! The lane is the source's own thread (started on the first read), so the reader's buffers stay
//! with one thread. So blocking I/O and parsing never run on the async workers, a read is started only when
//! credit has reached the source, and a stalled sink (no credit) means no `poll_produce` and no
//! reads: bytes read ahead are bounded by the edges' capacities plus one batch. The bytes pulled
//! from storage are published after every batch on a shared counter
//! ([`ReaderSource::bytes_read`]) so the bound can be observed.
//!
//! When the run is cancelled mid-read, dropping the source waits for the read of one batch in
//! progress to finish and drops the reader on the lane's thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_runtime::{ErrorKind, OperatorError, Output, Source, SourceStatus};

use super::SchemaSource;
use crate::connector::{
    BatchReader, CsvOptions, CsvReader, FileFormat, FileSet, NdjsonOptions, NdjsonReader,
    ParquetOptions, ParquetReader, ReadBatch, ReadError,
};
use crate::lane::{poll_slot, Lane, LaneTask};

type Reader = Box<dyn BatchReader>;
type ReadResult = (Reader, Option<Result<ReadBatch, ReadError>>);

/// A source reading one batch per credit from a [`BatchReader`]; see the module docs.
pub struct ReaderSource {
    schema: SchemaRef,
    reader: Option<Reader>,
    /// The thread reading, started on the first read.
    lane: Option<Lane>,
    in_flight: Option<LaneTask<ReadResult>>,
    bytes_read: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReaderSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaderSource")
            .field("schema", &self.schema)
            .field("reading", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}

/// The operator error for a failed read: a bad record is the input's fault, the rest external.
pub(crate) fn read_error(e: ReadError) -> OperatorError {
    let kind = match e {
        ReadError::BadRecord { .. } | ReadError::SchemaMismatch { .. } => ErrorKind::User,
        ReadError::InvalidOptions(_) | ReadError::UnsupportedType { .. } => ErrorKind::User,
        ReadError::HeaderMismatch { .. } | ReadError::HeaderNames { .. } => ErrorKind::User,
        _ => ErrorKind::External,
    };
    OperatorError::new(kind, "cannot read input", Some(Box::new(e)))
}

/// Sends what one read produced: dead letters and the skip count to the dead-letter port, rows
/// to the output.
pub(crate) fn emit_read(read: ReadBatch, out: &mut Output<RecordBatch>) {
    for dead in read.dead_letters {
        out.dead_letter(dead);
    }
    if read.skipped > 0 {
        out.skip(read.skipped);
    }
    out.emit(read.batch);
}

impl ReaderSource {
    /// A source over an opened reader.
    pub fn new(reader: impl BatchReader + 'static) -> Self {
        let bytes_read = Arc::new(AtomicU64::new(reader.bytes_read()));
        Self {
            schema: reader.schema(),
            reader: Some(Box::new(reader)),
            lane: None,
            in_flight: None,
            bytes_read,
        }
    }

    /// A CSV file (reads the header, and the inference sample without a declared schema).
    ///
    /// # Errors
    /// As [`CsvReader::from_path`].
    pub fn csv(path: impl AsRef<std::path::Path>, opts: CsvOptions) -> Result<Self, ReadError> {
        Ok(Self::new(CsvReader::from_path(path, opts)?))
    }

    /// An NDJSON file.
    ///
    /// # Errors
    /// As [`NdjsonReader::from_path`].
    pub fn ndjson(
        path: impl AsRef<std::path::Path>,
        opts: NdjsonOptions,
    ) -> Result<Self, ReadError> {
        Ok(Self::new(NdjsonReader::from_path(path, opts)?))
    }

    /// A Parquet file, one batch per credit, projected to `opts.columns` (reads the footer).
    ///
    /// # Errors
    /// As [`ParquetReader::open`].
    pub fn parquet(
        path: impl AsRef<std::path::Path>,
        opts: ParquetOptions,
    ) -> Result<Self, ReadError> {
        Ok(Self::new(ParquetReader::open(path, opts)?))
    }

    /// The files of a directory or glob, in order (opens the first).
    ///
    /// # Errors
    /// As [`FileSet::read`].
    pub fn files(set: FileSet, format: FileFormat) -> Result<Self, ReadError> {
        Ok(Self::new(set.read(format)?))
    }

    /// Bytes the reader has pulled from storage, updated after every batch.
    pub fn bytes_read(&self) -> Arc<AtomicU64> {
        self.bytes_read.clone()
    }
}

impl SchemaSource for ReaderSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Source for ReaderSource {
    type Output = RecordBatch;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<RecordBatch>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        loop {
            if let Some(joined) = std::task::ready!(poll_slot(&mut self.in_flight, cx, "read")) {
                let (reader, item) = joined?;
                // Relaxed: a statistic; nothing else is synchronised through it.
                self.bytes_read
                    .store(reader.bytes_read(), Ordering::Relaxed);
                self.reader = Some(reader);
                return Poll::Ready(match item {
                    None => Ok(SourceStatus::Done),
                    Some(Err(e)) => Err(read_error(e)),
                    Some(Ok(read)) => {
                        emit_read(read, out);
                        Ok(SourceStatus::Continue)
                    }
                });
            }
            let Some(mut reader) = self.reader.take() else {
                return Poll::Ready(Ok(SourceStatus::Done));
            };
            if self.lane.is_none() {
                self.lane = Some(Lane::start("weir-read").map_err(|e| {
                    OperatorError::internal(format!("cannot start the reader: {e}"))
                })?);
            }
            let lane = self.lane.as_ref().expect("started above");
            self.in_flight = Some(lane.run(move || {
                let item = reader.next();
                (reader, item)
            }));
        }
    }
}

/// A source emitting batches held in memory (for tests and examples).
#[derive(Debug)]
pub struct BatchSource {
    schema: SchemaRef,
    batches: std::vec::IntoIter<RecordBatch>,
}

impl BatchSource {
    /// Emits `batches` (all of `schema`) in order, one per credit.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Self {
        Self {
            schema,
            batches: batches.into_iter(),
        }
    }
}

impl SchemaSource for BatchSource {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl Source for BatchSource {
    type Output = RecordBatch;

    fn poll_produce(
        &mut self,
        _cx: &mut Context<'_>,
        out: &mut Output<RecordBatch>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        Poll::Ready(Ok(match self.batches.next() {
            Some(b) => {
                out.emit(b);
                SourceStatus::Continue
            }
            None => SourceStatus::Done,
        }))
    }
}
