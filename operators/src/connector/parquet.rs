//! Lazy Parquet reader with column projection.
//!
//! Opening reads the footer only. Each `next()` decodes one batch of at most
//! [`ParquetOptions::batch_rows`] rows; the decoder fetches the projected column chunks of a row
//! group when it first needs them, so the reader is never more than one row group ahead of its
//! consumer. Bytes fetched are counted under the decoder ([`BatchReader::bytes_read`]).
//!
//! The reader [rewinds](crate::source::Rewind): [`ParquetReader::position`] is the
//! [`ParquetPosition`] after the last batch it returned (a row group and the rows of it
//! already returned), and [`ParquetReader::open_at`] reopens the file there, decoding from that
//! row group on and skipping the rows returned before, so the batches that follow hold the rows
//! an uninterrupted read gives after that point.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatchReader;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use serde::{Deserialize, Serialize};

use super::counting::CountingFile;
use super::{BatchReader, ReadBatch, ReadError, DEFAULT_BATCH_ROWS};

/// Options of [`ParquetReader`].
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// Rows per batch. Default 1024.
    pub batch_rows: usize,
    /// Top-level columns to read, in the order wanted; `None` reads all. Default `None`.
    pub columns: Option<Vec<String>>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            batch_rows: DEFAULT_BATCH_ROWS,
            columns: None,
        }
    }
}

/// A position in a Parquet file: the row group being read and the rows of it already
/// returned (the file's row-group count and 0 once every row is read).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ParquetPosition {
    /// Index of the row group in the file.
    pub row_group: usize,
    /// Rows of that row group already returned.
    pub row: u64,
}

/// Lazy Parquet reader yielding [`ReadBatch`]es (never with dead letters: Parquet is typed).
pub struct ParquetReader {
    inner: ParquetRecordBatchReader,
    counter: Arc<AtomicU64>,
    label: Arc<str>,
    schema: SchemaRef,
    /// Maps the decoder's column order (file order) to the requested order.
    reorder: Option<Vec<usize>>,
    /// Rows in each row group, in file order.
    group_rows: Vec<u64>,
    /// The position after the last batch returned.
    emitted: ParquetPosition,
    done: bool,
}

impl ParquetReader {
    /// Opens `path` and reads its footer.
    ///
    /// # Errors
    /// [`ReadError::Io`], [`ReadError::Parquet`] for a file that is not Parquet,
    /// [`ReadError::UnknownColumn`] for a projected column the file lacks,
    /// [`ReadError::InvalidOptions`] for zero `batch_rows`.
    pub fn open(path: impl AsRef<Path>, opts: ParquetOptions) -> Result<Self, ReadError> {
        Self::open_at(path, opts, ParquetPosition::default())
    }

    /// Opens `path` at `at`, a [`position`](ParquetReader::position) saved by a reader of the
    /// same file with the same options: the rows that follow are those an uninterrupted read
    /// returns after that point (in batches that may be cut elsewhere).
    ///
    /// # Errors
    /// As [`open`](Self::open); [`ReadError::InvalidOptions`] for a position past the file's
    /// row groups or rows.
    pub fn open_at(
        path: impl AsRef<Path>,
        opts: ParquetOptions,
        at: ParquetPosition,
    ) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        if opts.batch_rows == 0 {
            return Err(ReadError::InvalidOptions(
                "batch_rows must be at least 1".into(),
            ));
        }
        let file = File::open(path).map_err(|source| ReadError::Io {
            file: label.clone(),
            source,
        })?;
        let parquet_err = |source| ReadError::Parquet {
            file: label.clone(),
            source,
        };
        let counter = Arc::new(AtomicU64::new(0));
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(CountingFile::new(file, counter.clone()))
                .map_err(parquet_err)?
                .with_batch_size(opts.batch_rows);
        let group_rows: Vec<u64> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
            .collect();
        let past = match group_rows.get(at.row_group) {
            Some(&rows) => at.row > rows,
            None => at.row_group > group_rows.len() || at.row > 0,
        };
        if past {
            return Err(ReadError::InvalidOptions(format!(
                "{label}: position {at:?} is past the file's {} row groups",
                group_rows.len()
            )));
        }
        let builder = if at == ParquetPosition::default() {
            builder
        } else {
            let skip = usize::try_from(at.row).unwrap_or(usize::MAX);
            builder
                .with_row_groups((at.row_group..group_rows.len()).collect())
                .with_offset(skip)
        };
        let file_schema = builder.schema().clone();
        let (builder, reorder) = match &opts.columns {
            None => (builder, None),
            Some(wanted) => {
                let mut indices = Vec::with_capacity(wanted.len());
                for name in wanted {
                    let index =
                        file_schema
                            .index_of(name)
                            .map_err(|_| ReadError::UnknownColumn {
                                file: label.clone(),
                                column: name.clone(),
                                available: file_schema
                                    .fields()
                                    .iter()
                                    .map(|f| f.name().clone())
                                    .collect(),
                            })?;
                    indices.push(index);
                }
                let mask = ProjectionMask::roots(builder.parquet_schema(), indices.iter().copied());
                // The decoder yields projected columns in file order; find each wanted one there.
                let mut sorted = indices.clone();
                sorted.sort_unstable();
                sorted.dedup();
                let reorder = indices
                    .iter()
                    .map(|i| sorted.binary_search(i).unwrap_or_default())
                    .collect::<Vec<usize>>();
                (builder.with_projection(mask), Some(reorder))
            }
        };
        let inner = builder.build().map_err(parquet_err)?;
        let decoded = inner.schema();
        let schema = match &reorder {
            Some(order) => Arc::new(decoded.project(order).map_err(|source| ReadError::Arrow {
                file: label.clone(),
                source,
            })?),
            None => decoded,
        };
        Ok(ParquetReader {
            inner,
            counter,
            label: label.into(),
            schema,
            reorder,
            group_rows,
            emitted: at,
            done: false,
        })
    }

    /// The position after the last batch returned; the start (or the position it was opened
    /// at) before the first.
    pub fn position(&self) -> ParquetPosition {
        self.emitted
    }

    /// `at` moved on by `rows` rows, through as many row groups as they fill.
    fn advance(&self, mut at: ParquetPosition, rows: u64) -> ParquetPosition {
        at.row += rows;
        while let Some(&n) = self.group_rows.get(at.row_group) {
            if at.row < n {
                break;
            }
            at.row -= n;
            at.row_group += 1;
        }
        at
    }
}

impl Iterator for ParquetReader {
    type Item = Result<ReadBatch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let result = match self.inner.next()? {
            Ok(batch) => match &self.reorder {
                Some(order) => batch.project(order).map_err(|source| ReadError::Arrow {
                    file: self.label.to_string(),
                    source,
                }),
                None => Ok(batch),
            },
            Err(source) => Err(decode_error(&self.label, source)),
        };
        match &result {
            Ok(batch) => self.emitted = self.advance(self.emitted, batch.num_rows() as u64),
            Err(_) => self.done = true,
        }
        Some(result.map(|batch| ReadBatch {
            file: self.label.clone(),
            batch,
            dead_letters: Vec::new(),
            skipped: 0,
        }))
    }
}

/// A decoding failure: damage in the file is a Parquet error naming the file (the decoder hands
/// it over as an Arrow error wrapping the Parquet message).
fn decode_error(file: &str, source: ArrowError) -> ReadError {
    match source {
        ArrowError::ParquetError(message) => ReadError::Parquet {
            file: file.to_owned(),
            source: ParquetError::General(
                message
                    .strip_prefix("Parquet error: ")
                    .unwrap_or(&message)
                    .to_owned(),
            ),
        },
        source => ReadError::Arrow {
            file: file.to_owned(),
            source,
        },
    }
}

impl crate::source::Rewind for ParquetReader {
    type Position = ParquetPosition;

    fn position(&self) -> ParquetPosition {
        self.emitted
    }
}

impl BatchReader for ParquetReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn bytes_read(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for ParquetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetReader")
            .field("label", &self.label)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}
