//! Connectors: where a pipeline meets the outside world — files (this module's readers and
//! writers for Arrow data) and HTTP ([`http`]).
//!
//! Readers ([`CsvReader`], [`NdjsonReader`], [`ParquetReader`], and [`FileSetReader`] over many
//! files) turn files into Arrow [`RecordBatch`]es; [`PartWriter`] writes batches into rolling part
//! files. The readers know nothing about the runtime: a pipeline source wraps a reader and calls
//! [`Iterator::next`] on a thread of its own each time downstream grants credit for one batch.
//! Everything CSV lives in [`csv`], including the parallel split reader
//! ([`csv_split`](csv::csv_split)), a pipeline source and operator built on the chunk parser.
//!
//! # Laziness protocol
//!
//! Every reader is *pull-only*: it does no work between calls to `next()`, and one call reads at
//! most what one batch needs plus the reader's I/O buffer:
//!
//! * CSV and NDJSON parse at most `batch_rows` records per call (good, dead-lettered and skipped
//!   records all count), through one fixed-size buffer (8 KiB for CSV, 64 KiB for NDJSON). The
//!   CSV reader with an inferred schema reads `infer_rows` records once, up front, and replays
//!   them.
//! * Parquet decodes one batch per call and fetches column chunks of at most one row group ahead
//!   (plus the footer, read when the file is opened).
//! * [`FileSetReader`] opens the next file only when the current one is exhausted.
//!
//! [`BatchReader::bytes_read`] reports the bytes pulled from storage so far, so the bound can be
//! checked: when the consumer stops pulling, `bytes_read` stops growing.
//!
//! # Bad records
//!
//! Text formats meet malformed records; [`BadRecordPolicy`] says what to do with them, and every
//! record is either delivered, dead-lettered, or counted as skipped — never silently dropped.
//! A dead letter carries the file, the 1-based physical line, the reason and the raw record.
//!
//! # Example
//!
//! ```
//! use weir_operators::connector::{CsvOptions, CsvReader};
//!
//! let data = "id,name\n1,ada\n2,grace\n";
//! let mut reader = CsvReader::new(data.as_bytes(), "inline.csv", CsvOptions::default())?;
//! let batch = reader.next().expect("one batch")?;
//! assert_eq!(batch.batch.num_rows(), 2);
//! assert!(reader.next().is_none());
//! # Ok::<(), weir_operators::connector::ReadError>(())
//! ```

mod assemble;
mod columns;
mod counting;
pub mod csv;
pub mod dead_letter;
pub(crate) mod encode;
pub mod files;
pub mod http;
pub mod ndjson;
pub mod parquet;
mod part_format;
pub mod part_writer;
pub mod position;
pub mod publish;

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

pub use self::csv::{CsvOptions, CsvReader, HeaderCheck};
pub use self::dead_letter::{dead_letter_schema, dead_letters_to_batch, DeadLetter};
pub use self::files::{FileFormat, FileSet, FileSetReader};
pub use self::ndjson::{NdjsonOptions, NdjsonReader};
pub use self::parquet::{ParquetOptions, ParquetPosition, ParquetReader};
pub use self::part_writer::{
    ParquetCompression, PartCommit, PartFile, PartFormat, PartRecovery, PartWriter,
    PartWriterOptions, PreCommit, WriteError, WriteSummary,
};
pub use self::position::{FilePosition, FileSetPosition, InFile, SetPosition};
pub use self::publish::{JobOutput, PublishError, Recovery, SuccessMarker, SUCCESS_FILE};

/// Name of the optional `UInt64` column holding each row's 1-based physical line number.
pub const LINE_COLUMN: &str = "_line";
/// Name of the optional `Utf8` column holding each row's raw record text (without terminator).
pub const RAW_COLUMN: &str = "_raw";
/// Default number of rows per batch.
pub const DEFAULT_BATCH_ROWS: usize = 1024;

/// One batch pulled from a reader, with the records that could not become rows.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    /// Label of the file the batch came from (its path for file readers).
    pub file: Arc<str>,
    /// The decoded rows; may have zero rows when every record in the slice was bad.
    pub batch: RecordBatch,
    /// Bad records under [`BadRecordPolicy::DeadLetter`], in file order.
    pub dead_letters: Vec<DeadLetter>,
    /// Bad records dropped under [`BadRecordPolicy::SkipCounted`].
    pub skipped: u64,
}

/// What a text reader does with a record it cannot turn into a row.
///
/// | policy | cost |
/// |---|---|
/// | `Fail` | the read stops at the first bad record with [`ReadError::BadRecord`] |
/// | `DeadLetter` | the record (raw text, file, line, reason) travels in [`ReadBatch::dead_letters`] |
/// | `SkipCounted` | the record is dropped and only counted in [`ReadBatch::skipped`] |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadRecordPolicy {
    /// Stop reading with an error naming the file, line and cause.
    #[default]
    Fail,
    /// Keep the raw record with its reason so it can be inspected or replayed.
    DeadLetter,
    /// Drop the record and count it.
    SkipCounted,
}

/// Why one record could not become a row.
///
/// The `Display` text is the dead letter's `reason`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The record has a different number of fields than the schema.
    #[error("expected {expected} fields, found {found}")]
    FieldCount {
        /// Fields in the schema.
        expected: usize,
        /// Fields in the record.
        found: usize,
    },
    /// A field could not be parsed as its column's type.
    #[error("column `{column}`: expected {expected}, found {value:?}")]
    InvalidValue {
        /// Column name.
        column: String,
        /// What the column accepts, e.g. `"unsigned integer"`.
        expected: &'static str,
        /// The offending text (at most [`RecordError::MAX_VALUE_CHARS`] characters).
        value: String,
    },
    /// A non-nullable column has no value (a missing or `null` JSON key).
    #[error("column `{column}`: missing value for a non-nullable column")]
    MissingValue {
        /// Column name.
        column: String,
    },
    /// A field is not valid UTF-8.
    #[error("column `{column}`: invalid UTF-8")]
    InvalidUtf8 {
        /// Column name.
        column: String,
    },
    /// An NDJSON line is not a JSON object.
    #[error("invalid JSON object: {detail}")]
    InvalidJson {
        /// The parser's message.
        detail: String,
    },
    /// A line is longer than the reader's limit.
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
}

impl RecordError {
    /// Longest value text quoted in [`RecordError::InvalidValue`]; longer text is cut.
    pub const MAX_VALUE_CHARS: usize = 64;

    /// Builds [`RecordError::InvalidValue`], cutting `value` to [`Self::MAX_VALUE_CHARS`].
    pub fn invalid(column: &str, expected: &'static str, value: &str) -> Self {
        let value = match value.char_indices().nth(Self::MAX_VALUE_CHARS) {
            Some((cut, _)) => format!("{}…", &value[..cut]),
            None => value.to_owned(),
        };
        RecordError::InvalidValue {
            column: column.to_owned(),
            expected,
            value,
        }
    }
}

/// Errors from opening or reading files.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{file}: I/O error: {source}")]
    Io {
        /// File label.
        file: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A bad record under [`BadRecordPolicy::Fail`].
    #[error("{file}:{line}: bad record: {cause} (use BadRecordPolicy::DeadLetter to keep going)")]
    BadRecord {
        /// File label.
        file: String,
        /// 1-based physical line.
        line: u64,
        /// Why the record is bad.
        cause: RecordError,
    },
    /// The CSV parser failed (other than on a bad record, which follows the policy).
    #[error("{file}: CSV error: {source}")]
    Csv {
        /// File label.
        file: String,
        /// The cause.
        #[source]
        source: ::csv::Error,
    },
    /// The Parquet decoder failed.
    #[error("{file}: Parquet error: {source}")]
    Parquet {
        /// File label.
        file: String,
        /// The cause.
        #[source]
        source: ::parquet::errors::ParquetError,
    },
    /// Assembling a batch failed (a bug in the reader or an inconsistent schema).
    #[error("{file}: cannot assemble a batch: {source}")]
    Arrow {
        /// File label.
        file: String,
        /// The cause.
        #[source]
        source: ArrowError,
    },
    /// The declared schema has a column type the text readers cannot parse.
    #[error(
        "column `{column}` has type {data_type}, which text readers cannot parse; \
         declare UInt64, Int64, Float64, Boolean, Utf8, Timestamp or Date32"
    )]
    UnsupportedType {
        /// Column name.
        column: String,
        /// The declared type.
        data_type: DataType,
    },
    /// A projected column does not exist.
    #[error("{file}: no column `{column}`; the file has {available:?}")]
    UnknownColumn {
        /// File label.
        file: String,
        /// The requested column.
        column: String,
        /// Columns the file has.
        available: Vec<String>,
    },
    /// A file in a set has a different schema than the first file.
    #[error("{file}: schema {found:?} differs from the set's schema {expected:?}; declare a schema or split the set")]
    SchemaMismatch {
        /// File label.
        file: String,
        /// The set's schema.
        expected: SchemaRef,
        /// This file's schema.
        found: SchemaRef,
    },
    /// A file set matched nothing and no schema was declared.
    #[error("no files at {location}; without files or a declared schema the schema is unknown")]
    NoFiles {
        /// The directory or pattern.
        location: String,
    },
    /// A glob pattern is malformed.
    #[error("invalid glob pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// The cause.
        #[source]
        source: glob::PatternError,
    },
    /// The header has a different number of fields than the declared schema.
    #[error("{file}: header has {found} fields but the declared schema has {expected}")]
    HeaderMismatch {
        /// File label.
        file: String,
        /// Fields in the declared schema.
        expected: usize,
        /// Fields in the header.
        found: usize,
    },
    /// The header's names are not the declared schema's (see [`HeaderCheck`]).
    #[error(
        "{file}: header names {found:?} are not the declared schema's {expected:?} \
         (declare the file's names, or read by position with HeaderCheck::CountOnly)"
    )]
    HeaderNames {
        /// File label.
        file: String,
        /// Field names of the declared schema.
        expected: Vec<String>,
        /// Field names in the header.
        found: Vec<String>,
    },
    /// Options are inconsistent (e.g. zero batch rows).
    #[error("invalid reader options: {0}")]
    InvalidOptions(String),
}

/// A pull-based batch reader: the seam a pipeline source wraps.
///
/// Each call to `next()` does a bounded amount of blocking I/O (see the module docs); after
/// `None` or an error it keeps returning `None`.
pub trait BatchReader: Iterator<Item = Result<ReadBatch, ReadError>> + Send {
    /// Schema of every batch this reader yields.
    fn schema(&self) -> SchemaRef;
    /// Bytes pulled from storage so far.
    fn bytes_read(&self) -> u64;
}

impl<R: BatchReader + ?Sized> BatchReader for Box<R> {
    fn schema(&self) -> SchemaRef {
        (**self).schema()
    }
    fn bytes_read(&self) -> u64 {
        (**self).bytes_read()
    }
}

/// Adds `_line` / `_raw` to a data schema when asked to.
pub(crate) fn with_extra_columns(data: &SchemaRef, line: bool, raw: bool) -> SchemaRef {
    use arrow::datatypes::{Field, Schema};
    if !line && !raw {
        return data.clone();
    }
    let mut fields: Vec<Arc<Field>> = data.fields().iter().cloned().collect();
    if line {
        fields.push(Arc::new(Field::new(LINE_COLUMN, DataType::UInt64, false)));
    }
    if raw {
        fields.push(Arc::new(Field::new(RAW_COLUMN, DataType::Utf8, false)));
    }
    Arc::new(Schema::new_with_metadata(fields, data.metadata().clone()))
}

/// Schemas equal up to metadata.
pub(crate) fn same_fields(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

#[cfg(test)]
mod tests;
