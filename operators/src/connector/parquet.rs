//! Lazy Parquet reader with column projection.
//!
//! Opening reads the footer only. Each `next()` decodes one batch of at most
//! [`ParquetOptions::batch_rows`] rows; the decoder fetches the projected column chunks of a row
//! group when it first needs them, so the reader is never more than one row group ahead of its
//! consumer. Bytes fetched are counted under the decoder ([`BatchReader::bytes_read`]).

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

/// Lazy Parquet reader yielding [`ReadBatch`]es (never with dead letters: Parquet is typed).
pub struct ParquetReader {
    inner: ParquetRecordBatchReader,
    counter: Arc<AtomicU64>,
    label: Arc<str>,
    schema: SchemaRef,
    /// Maps the decoder's column order (file order) to the requested order.
    reorder: Option<Vec<usize>>,
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
            done: false,
        })
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
        if result.is_err() {
            self.done = true;
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
