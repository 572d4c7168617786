//! Lazy NDJSON reader: one JSON object per line into a declared schema.
//!
//! Each line must be one JSON object in UTF-8; its keys are matched to the schema's columns by
//! name (missing keys and `null` are null; extra keys are ignored, at any nesting depth; a key
//! given twice keeps its **last** value, as Python's `json` does). Values are taken from their
//! text, so a number is never rounded on its way in: an integer beyond its column's range, or an
//! integer literal a `Float64` column cannot hold exactly (beyond 2^53), is a bad record, as is
//! a leap second (`23:59:60`) for a timestamp column. Lines end at LF or CRLF; a UTF-8 byte order
//! mark at byte 0 is skipped (anywhere else it is data). Lines are read through a 64 KiB buffer
//! with a length limit, so a runaway line costs at most [`NdjsonOptions::max_line_bytes`] of
//! memory; it becomes a bad record and the reader resumes at the next line. Blank lines are
//! skipped but counted in line numbers.
//!
//! The reader [rewinds](crate::source::Rewind): [`NdjsonReader::position`] is the
//! [`FilePosition`] after the last batch it returned (the byte offset after the last line it
//! handled, and that line's successor's number), and [`NdjsonReader::from_path_at`] /
//! [`NdjsonReader::new_at`] reopen a file there, so the rows, `_line` values and dead letters
//! after a restore are those an uninterrupted read gives. A batch cut short by a bad record
//! under [`BadRecordPolicy::Fail`] ends its position *before* that record, so a restored reader
//! meets it (and fails) again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::assemble::Assembly;
use super::columns::{Columns, MAX_PREALLOC_ROWS};
use super::counting::CountingRead;
use super::csv::trim_terminators;
use super::position::FilePosition;
use super::{
    with_extra_columns, BadRecordPolicy, BatchReader, ReadBatch, ReadError, RecordError,
    DEFAULT_BATCH_ROWS,
};

/// Bytes of an over-long line kept as its dead letter's `raw`.
const TOO_LONG_RAW_PREFIX: usize = 1024;
const BUFFER_BYTES: usize = 64 * 1024;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Options of [`NdjsonReader`].
#[derive(Debug, Clone)]
pub struct NdjsonOptions {
    /// The schema to decode into.
    pub schema: SchemaRef,
    /// Rows per batch; also the most records (good + bad) handled per `next()`. Default 1024.
    pub batch_rows: usize,
    /// Append `_line: UInt64` (1-based physical line). Default `false`.
    pub line_column: bool,
    /// Append `_raw: Utf8` (the line without terminator). Default `false`.
    pub raw_column: bool,
    /// What to do with a bad line. Default [`BadRecordPolicy::Fail`].
    pub bad_records: BadRecordPolicy,
    /// Longest accepted line in bytes, terminator included. Default 16 MiB.
    pub max_line_bytes: usize,
}

impl NdjsonOptions {
    /// Default options for `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        NdjsonOptions {
            schema,
            batch_rows: DEFAULT_BATCH_ROWS,
            line_column: false,
            raw_column: false,
            bad_records: BadRecordPolicy::Fail,
            max_line_bytes: 16 << 20,
        }
    }
}

/// Lazy NDJSON reader yielding [`ReadBatch`]es; see the module docs.
pub struct NdjsonReader<R: Read> {
    input: BufReader<CountingRead<R>>,
    counter: Arc<AtomicU64>,
    label: Arc<str>,
    opts: NdjsonOptions,
    names: Vec<String>,
    /// Decoded text cells of the line being parsed, one per column.
    texts: Vec<String>,
    schema: SchemaRef,
    columns: Columns,
    buf: Vec<u8>,
    line: u64,
    /// Bytes of the lines read so far (from the file's start, resumed offset included).
    offset: u64,
    /// Where the line being read started.
    line_start: FilePosition,
    /// The position after the last batch returned.
    emitted: FilePosition,
    pending_error: Option<ReadError>,
    done: bool,
}

/// One line as read.
enum Line {
    Eof,
    Text,
    TooLong,
}

impl NdjsonReader<File> {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// [`ReadError::Io`] if it cannot be opened; the errors of [`NdjsonReader::new`].
    pub fn from_path(path: impl AsRef<Path>, opts: NdjsonOptions) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| ReadError::Io {
            file: path.display().to_string(),
            source,
        })?;
        NdjsonReader::new(file, &path.display().to_string(), opts)
    }

    /// Opens `path` at `at`, a [`position`](NdjsonReader::position) saved by a reader of the
    /// same file: the rows and line numbers that follow are those an uninterrupted read gives.
    ///
    /// # Errors
    /// As [`from_path`](Self::from_path); [`ReadError::Io`] if it cannot seek to `at`.
    pub fn from_path_at(
        path: impl AsRef<Path>,
        opts: NdjsonOptions,
        at: FilePosition,
    ) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let io = |source| ReadError::Io {
            file: label.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        file.seek(SeekFrom::Start(at.offset)).map_err(io)?;
        NdjsonReader::new_at(file, &label, opts, at)
    }
}

impl<R: Read> NdjsonReader<R> {
    /// A reader over `input`, labelled `label`. Reads nothing until the first `next()`.
    ///
    /// # Errors
    /// [`ReadError::InvalidOptions`] for zero `batch_rows` or `max_line_bytes`;
    /// [`ReadError::UnsupportedType`] for a column type it cannot decode.
    pub fn new(input: R, label: &str, opts: NdjsonOptions) -> Result<Self, ReadError> {
        Self::new_at(input, label, opts, FilePosition::START)
    }

    /// A reader over `input`, which must already stand at `at.offset` of the data, numbering
    /// lines from `at.line` (see [`from_path_at`](NdjsonReader::from_path_at)).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn new_at(
        input: R,
        label: &str,
        opts: NdjsonOptions,
        at: FilePosition,
    ) -> Result<Self, ReadError> {
        if opts.batch_rows == 0 || opts.max_line_bytes == 0 {
            return Err(ReadError::InvalidOptions(
                "batch_rows and max_line_bytes must be at least 1".into(),
            ));
        }
        let counter = Arc::new(AtomicU64::new(0));
        let columns = Columns::new(opts.schema.clone(), opts.batch_rows)?;
        Ok(NdjsonReader {
            input: BufReader::with_capacity(
                BUFFER_BYTES,
                CountingRead::new(input, counter.clone()),
            ),
            counter,
            label: label.into(),
            names: opts
                .schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect(),
            texts: vec![String::new(); opts.schema.fields().len()],
            schema: with_extra_columns(&opts.schema, opts.line_column, opts.raw_column),
            columns,
            buf: Vec::new(),
            line: at.line.saturating_sub(1),
            offset: at.offset,
            line_start: at,
            emitted: at,
            pending_error: None,
            done: false,
            opts,
        })
    }

    fn io_error(&self, source: std::io::Error) -> ReadError {
        ReadError::Io {
            file: self.label.to_string(),
            source,
        }
    }

    /// Reads the next line into `self.buf` (cut at the limit).
    fn read_line(&mut self) -> Result<Line, ReadError> {
        self.buf.clear();
        self.line_start = FilePosition {
            offset: self.offset,
            line: self.line + 1,
        };
        let limit = self.opts.max_line_bytes;
        let n = (&mut self.input)
            .take(limit as u64)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| self.io_error(e))?;
        if n == 0 {
            return Ok(Line::Eof);
        }
        self.offset += n as u64;
        self.line += 1;
        if self.line == 1 && self.buf.starts_with(BOM) {
            // A byte order mark at byte 0 is no part of the data (elsewhere it is).
            self.buf.drain(..BOM.len());
        }
        if n < limit || self.buf.last() == Some(&b'\n') {
            return Ok(Line::Text);
        }
        // Exactly `limit` bytes: too long unless the input ends here.
        let at_end = match self.input.fill_buf() {
            Ok(rest) => rest.is_empty(),
            Err(e) => return Err(self.io_error(e)),
        };
        if at_end {
            return Ok(Line::Text);
        }
        // Cut at the limit: discard the rest of the line.
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) => return Err(self.io_error(e)),
            };
            if chunk.is_empty() {
                break;
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(p) => {
                    self.input.consume(p + 1);
                    self.offset += p as u64 + 1;
                    break;
                }
                None => {
                    let len = chunk.len();
                    self.input.consume(len);
                    self.offset += len as u64;
                }
            }
        }
        self.buf.truncate(TOO_LONG_RAW_PREFIX);
        // Keep the prefix whole characters: a cut through one would end `raw` in U+FFFD.
        if let Err(e) = std::str::from_utf8(&self.buf) {
            if e.error_len().is_none() {
                self.buf.truncate(e.valid_up_to());
            }
        }
        Ok(Line::TooLong)
    }
}

/// Parses one line into the scratch row of `columns`, decoding text cells into `texts`.
fn parse_object(
    columns: &mut Columns,
    names: &[String],
    texts: &mut [String],
    line: &[u8],
) -> Result<(), RecordError> {
    let line = std::str::from_utf8(line).map_err(|e| RecordError::InvalidJson {
        detail: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
    })?;
    // Each value is kept as its text, so numbers are read from what was written; a key given
    // twice keeps its last value.
    let object = match serde_json::from_str::<HashMap<String, &RawValue>>(line) {
        Ok(o) => o,
        Err(e) => {
            // A data error is well-formed JSON of another kind, named by its first byte.
            let kind = (e.classify() == Category::Data)
                .then(|| json_kind(line.trim_start().as_bytes().first().copied()))
                .flatten();
            let detail = match kind {
                Some(kind) => format!("expected an object, found {kind}"),
                None => e.to_string(),
            };
            return Err(RecordError::InvalidJson { detail });
        }
    };
    for (i, (name, text)) in names.iter().zip(texts.iter_mut()).enumerate() {
        columns.parse_json(i, object.get(name.as_str()).map(|v| v.get()), text)?;
    }
    Ok(())
}

impl<R: Read> NdjsonReader<R> {
    fn read_batch(&mut self) -> Result<Option<ReadBatch>, ReadError> {
        let cap = self.opts.batch_rows.min(MAX_PREALLOC_ROWS);
        let mut batch = Assembly::new(self.opts.line_column, self.opts.raw_column, cap, None);
        while batch.handled() < cap {
            let outcome = match self.read_line()? {
                Line::Eof => {
                    self.done = true;
                    break;
                }
                Line::TooLong => Err(RecordError::TooLong {
                    limit: self.opts.max_line_bytes,
                }),
                Line::Text => {
                    let text = trim_terminators(&self.buf);
                    // Blank: JSON whitespace only (a form feed is not, so it is a bad line).
                    if text
                        .iter()
                        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                    {
                        continue;
                    }
                    parse_object(&mut self.columns, &self.names, &mut self.texts, text)
                }
            };
            let raw = || String::from_utf8_lossy(trim_terminators(&self.buf));
            match outcome {
                Ok(()) => {
                    let texts = &self.texts;
                    self.columns.commit(|i| texts[i].as_str());
                    batch.row(self.line, raw);
                }
                Err(cause) => {
                    let raw = || raw().into_owned();
                    if let Some(err) =
                        batch.bad(self.opts.bad_records, &self.label, self.line, cause, raw)
                    {
                        if batch.rows() == 0 {
                            return Err(err);
                        }
                        self.pending_error = Some(err);
                        break;
                    }
                }
            }
        }
        // A batch cut short by a failing record ends before it: a restored reader meets it again.
        self.emitted = if self.pending_error.is_some() {
            self.line_start
        } else {
            FilePosition {
                offset: self.offset,
                line: self.line + 1,
            }
        };
        if batch.handled() == 0 {
            return Ok(None);
        }
        let columns = self.columns.finish();
        batch
            .finish(columns, self.schema.clone(), &self.label)
            .map(Some)
    }
}

/// The kind of JSON value starting with `first`.
fn json_kind(first: Option<u8>) -> Option<&'static str> {
    Some(match first? {
        b'n' => "null",
        b't' | b'f' => "a boolean",
        b'-' | b'0'..=b'9' => "a number",
        b'"' => "a string",
        b'[' => "an array",
        _ => return None,
    })
}

impl<R: Read> Iterator for NdjsonReader<R> {
    type Item = Result<ReadBatch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.done {
            return None;
        }
        match self.read_batch() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<R: Read> NdjsonReader<R> {
    /// The position after the last batch returned (see the [module docs](self)).
    pub fn position(&self) -> FilePosition {
        self.emitted
    }
}

impl<R: Read> crate::source::Rewind for NdjsonReader<R> {
    type Position = FilePosition;

    fn position(&self) -> FilePosition {
        self.emitted
    }
}

impl<R: Read + Send> BatchReader for NdjsonReader<R> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn bytes_read(&self) -> u64 {
        self.counter.load(Ordering::Relaxed)
    }
}

impl<R: Read> std::fmt::Debug for NdjsonReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonReader")
            .field("label", &self.label)
            .field("line", &self.line)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "ndjson_tests.rs"]
mod tests;
