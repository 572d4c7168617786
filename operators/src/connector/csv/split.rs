//! Parallel CSV: one demand-driven reader cuts files into chunks of whole records, several
//! instances parse them.
//!
//! # Plan
//!
//! ```text
//! CsvChunker (1 instance) ──rebalance──▶ CsvParse[0..p] ──▶ RecordBatch stream
//!   reads bytes, finds record ends         ChunkParser over one chunk: typed columns,
//!   (quote-aware), counts lines            dead letters with file + line, skip counts
//! ```
//!
//! The chunker reads only on credit, one chunk per `poll_produce`, on its own thread (as
//! [`ReaderSource`](crate::columnar::ReaderSource)). It strips a UTF-8 byte order mark at a file's first
//! byte (nowhere else), jumps from one `\r`, `\n` or quote to the next with `memchr` and scans
//! with the same quoting rules as the parser (RFC 4180: a quote opens a quoted field only at
//! the start of a field, a doubled quote inside one is literal, `\r\n`, `\n` and a lone `\r`
//! end records outside quotes) and cuts a chunk after the terminator that ends its
//! `records`-th record (blank lines are none), or earlier once the chunk holds `target_bytes`; it
//! never cuts between the `\r` and `\n` of a `\r\n`. It counts every line break (`\r\n`, `\n` or
//! a lone `\r`), so each chunk knows the physical line of its first byte and the parser numbers
//! lines exactly as one sequential reader would. The header (the first record, after any blank
//! lines) is checked against the schema, its names included unless
//! [`HeaderCheck::CountOnly`](crate::connector::HeaderCheck) is set, and not passed on.
//!
//! Each piece has a file of its own: `cut.rs` (the scanner), `split_source.rs` ([`CsvChunker`],
//! which runs it on credit), `parse.rs` ([`CsvParse`]) and `pool.rs` (the buffers between them);
//! this file holds the builders.
//!
//! A record longer than `max_record_bytes` (say, an unterminated quote swallowing the file)
//! fails the read instead of buffering without bound.
//!
//! Each parse instance reads its chunks with a `ChunkParser` (`connector/csv/chunk.rs`): plain
//! lines are split and parsed in place, other records go through the CSV parser, and the result
//! (rows, dead letters with file and line, skip counts, the `Fail` error) is the one a
//! [`CsvReader`](crate::connector::CsvReader) gives on the same bytes. Emptied chunk buffers go
//! back to the chunker through a small pool.
//!
//! # Rewinding
//!
//! The chunker is the split reader's only source instance, and the parse instances hold
//! nothing between chunks, so the reader's position is the chunker's: the [`SetPosition`]
//! (file, byte offset, line) after the last chunk it emitted, read with
//! [`Rewind::position`](crate::source::Rewind::position). [`SplitOptions::start`] builds a
//! reader that starts there; its chunks, and so its rows and dead letters with their line
//! numbers, are those the uninterrupted reader emits after that point.
//!
//! Parsing dominates the cost, so with `p` parse instances on `p` cores the file is parsed `p`
//! times as fast as by one reader; the output's batch order across instances is not the file's.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_runtime::{Output, Pipeline};

use super::chunk::ChunkParser;
use super::cut::{Cutter, READ_BYTES};
use super::parse::{ChunkStep, CsvParse};
use super::pool::ChunkPool;
use super::split_source::CsvChunker;
use crate::columnar::ArrowStream;
use crate::connector::{with_extra_columns, CsvOptions, FileSet, ReadError, SetPosition};

/// Options of [`csv_split`] beyond the CSV options.
#[derive(Debug, Clone)]
pub struct SplitOptions {
    /// Parse instances. Default: the number of cores.
    pub parallelism: usize,
    /// Records per chunk (and so rows per batch). Default: the CSV options' `batch_rows`.
    pub records: Option<usize>,
    /// A chunk is cut at the first record end past this size. Default 4 MiB.
    pub target_bytes: usize,
    /// Longest record accepted. Default 64 MiB.
    pub max_record_bytes: usize,
    /// Where to start reading: a [`CsvChunker`]'s saved [`position`](crate::source::Rewind),
    /// to resume a run over the same files. Default: the first file's start.
    pub start: SetPosition,
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            records: None,
            target_bytes: 4 << 20,
            max_record_bytes: 64 << 20,
            start: SetPosition::START,
        }
    }
}

/// Reads the CSV files of `set` in order, parsing on `split.parallelism` instances; see the
/// module docs. The schema must be declared (`opts.schema`); the returned counter holds the
/// bytes read so far. Bad records follow `opts.bad_records` and go to the parse operator's
/// dead-letter port.
///
/// # Errors
/// [`ReadError::InvalidOptions`] without a declared schema or with zero sizes;
/// [`ReadError::UnsupportedType`] for a column type the parser cannot read.
pub fn csv_split(
    pipeline: &mut Pipeline,
    name: &str,
    set: FileSet,
    opts: CsvOptions,
    split: SplitOptions,
) -> Result<(ArrowStream, Arc<AtomicU64>), ReadError> {
    let emit = |_: &str, batch: RecordBatch, out: &mut Output<RecordBatch>| {
        out.emit(batch);
        Ok(())
    };
    csv_split_with(pipeline, name, set, opts, split, emit)
}

/// [`csv_split`], running `step` on every parsed batch in the parse instance, with the batch's
/// file label (to validate rows and dead-letter them with their file, say).
///
/// # Errors
/// As [`csv_split`].
pub fn csv_split_with<F: ChunkStep>(
    pipeline: &mut Pipeline,
    name: &str,
    set: FileSet,
    opts: CsvOptions,
    split: SplitOptions,
    step: F,
) -> Result<(ArrowStream, Arc<AtomicU64>), ReadError> {
    let Some(data_schema) = opts.schema.clone() else {
        return Err(ReadError::InvalidOptions(
            "parallel CSV reading needs a declared schema".into(),
        ));
    };
    let records = split.records.unwrap_or(opts.batch_rows);
    if records == 0 || split.target_bytes == 0 || split.parallelism == 0 || opts.batch_rows == 0 {
        return Err(ReadError::InvalidOptions(
            "records, target_bytes, parallelism and batch_rows must be at least 1".into(),
        ));
    }
    // Fail now on a column type the parser cannot read.
    ChunkParser::new(opts.clone())?;
    let schema: SchemaRef = with_extra_columns(&data_schema, opts.line_column, opts.raw_column);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let pool = Arc::new(ChunkPool::default());
    let cutter = Cutter {
        records,
        target_bytes: split.target_bytes,
        max_record_bytes: split.max_record_bytes.max(1),
        read_bytes: READ_BYTES as u64,
        ..Cutter::starting_at(
            set.files().iter().cloned(),
            split.start,
            opts.clone(),
            data_schema.clone(),
            pool.clone(),
        )
    };
    let chunker = CsvChunker::new(cutter, bytes_read.clone());
    let parse = CsvParse::new(opts, step, pool);
    let stream = pipeline
        .source(format!("{name}.read"), chunker)
        .rebalance()
        .unary_with(name.to_owned(), move |_| parse.clone())
        .parallelism(split.parallelism);
    Ok((ArrowStream::new(stream, schema), bytes_read))
}

#[cfg(test)]
#[path = "split_tests.rs"]
mod hostile;

#[cfg(test)]
#[path = "rewind_tests.rs"]
mod rewind;
