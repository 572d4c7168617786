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
//! A record longer than `max_record_bytes` (say, an unterminated quote swallowing the file)
//! fails the read instead of buffering without bound.
//!
//! Each parse instance reads its chunks with a `ChunkParser` (`connector/csv/chunk.rs`): plain
//! lines are split and parsed in place, other records go through the CSV parser, and the result
//! (rows, dead letters with file and line, skip counts, the `Fail` error) is the one a
//! [`CsvReader`](crate::connector::CsvReader) gives on the same bytes. Emptied chunk buffers go
//! back to the chunker through a small pool.
//!
//! Parsing dominates the cost, so with `p` parse instances on `p` cores the file is parsed `p`
//! times as fast as by one reader; the output's batch order across instances is not the file's.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_runtime::{
    Batch, InputPort, Operator, OperatorError, Output, Pipeline, Source, SourceStatus,
};

use super::chunk::{first_record, ChunkParser};
use super::{check_header, line_breaks, BOM};
use crate::columnar::read_error;
use crate::columnar::ArrowStream;
use crate::connector::{with_extra_columns, CsvOptions, FileSet, ReadError};
use crate::lane::{poll_slot, Lane, LaneTask};

/// A slice of a CSV file holding whole records.
#[derive(Debug, Clone)]
pub struct CsvChunk {
    /// The file's label.
    pub file: Arc<str>,
    /// Physical line of the first byte.
    pub first_line: u64,
    /// Records in the chunk (blank lines are not records).
    pub records: usize,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A chunk counts its records as rows and its buffer as bytes.
impl Batch for CsvChunk {
    fn rows(&self) -> usize {
        self.records
    }
    fn bytes(&self) -> usize {
        self.data.capacity()
    }
}

/// Quote state of the record scanner (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

/// The scanner's state after a byte that is neither a quote nor a line terminator, outside
/// quotes.
fn after(b: u8, delimiter: u8) -> Scan {
    if b == b'\r' || b == delimiter {
        Scan::StartField
    } else {
        Scan::InField
    }
}

/// Bytes read from the file per blocking read.
const READ_BYTES: usize = 256 * 1024;

/// One open file being cut into chunks.
struct FileCutter {
    file: File,
    label: Arc<str>,
    /// Bytes read but not yet cut; scanned up to `scanned`.
    pending: Vec<u8>,
    scanned: usize,
    state: Scan,
    /// Record ends and line breaks in `pending[..scanned]`; the last cut candidate.
    records: usize,
    newlines: u64,
    last_end: Option<(usize, usize, u64)>,
    /// Line breaks before `pending[0]`.
    line_base: u64,
    /// Nothing was scanned yet: a byte order mark at the start is still to be stripped.
    at_start: bool,
    /// Bytes per read ([`READ_BYTES`]; tests read less to put read boundaries anywhere).
    read_bytes: u64,
    /// Size of the last chunk cut, to size the next one's buffer.
    last_chunk_bytes: usize,
    pool: Arc<ChunkPool>,
    header: bool,
    eof: bool,
}

/// Cuts files into [`CsvChunk`]s; see the module docs.
struct Cutter {
    files: VecDeque<PathBuf>,
    current: Option<FileCutter>,
    opts: CsvOptions,
    schema: SchemaRef,
    records: usize,
    target_bytes: usize,
    max_record_bytes: usize,
    /// Bytes per read of a file.
    read_bytes: u64,
    bytes_read: u64,
    pool: Arc<ChunkPool>,
}

impl Cutter {
    fn open_next(&mut self) -> Result<bool, ReadError> {
        let Some(path) = self.files.pop_front() else {
            return Ok(false);
        };
        let label = path.display().to_string();
        let file = File::open(&path).map_err(|source| ReadError::Io {
            file: label.clone(),
            source,
        })?;
        self.current = Some(FileCutter {
            file,
            label: label.into(),
            pending: Vec::new(),
            scanned: 0,
            state: Scan::StartField,
            records: 0,
            newlines: 0,
            last_end: None,
            line_base: 0,
            at_start: true,
            read_bytes: self.read_bytes,
            last_chunk_bytes: 0,
            pool: self.pool.clone(),
            header: self.opts.has_header,
            eof: false,
        });
        Ok(true)
    }

    /// The next chunk of any file, or `None` when every file is done.
    fn next_chunk(&mut self) -> Result<Option<CsvChunk>, ReadError> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let (records, target, max) = (self.records, self.target_bytes, self.max_record_bytes);
            let delimiter = self.opts.delimiter;
            let quote = self.opts.quote;
            let cur = self.current.as_mut().expect("opened above");
            if let Some(chunk) =
                cur.cut(records, target, max, delimiter, quote, &mut self.bytes_read)?
            {
                if cur.header {
                    // A chunk of blank lines only (cut at `target_bytes`) holds no header yet.
                    if let Some(header) = first_record(&chunk.data, &self.opts) {
                        cur.header = false;
                        check_header(&chunk.file, &header, &self.schema, self.opts.header_names)?;
                    }
                    self.pool.put(chunk.data);
                    continue;
                }
                if chunk.records == 0 {
                    // Blank lines only (cut at `target_bytes`): no record to pass on.
                    debug_assert!(chunk.data.iter().all(|b| matches!(b, b'\r' | b'\n')));
                    self.pool.put(chunk.data);
                    continue;
                }
                return Ok(Some(chunk));
            }
            self.current = None;
        }
    }
}

impl FileCutter {
    /// Scans `pending[scanned..]`, stopping after the record end that completes `records`
    /// records (or the first after `target` bytes, or the first while the header is due).
    fn scan(&mut self, records: usize, target: usize, delimiter: u8, quote: u8) -> bool {
        if delimiter == quote || quote == b'\n' || quote == b'\r' {
            return self.scan_bytes(records, target, delimiter, quote);
        }
        // Jumps from one line terminator or quote to the next: the bytes between them only
        // decide whether a quote that follows is at the start of a field (after a delimiter).
        let mut state = self.state;
        let mut i = self.scanned;
        let mut found = false;
        while i < self.pending.len() {
            let bytes = &self.pending;
            if state == Scan::InQuoted {
                let rest = &bytes[i..];
                let k = memchr::memchr(quote, rest).unwrap_or(rest.len());
                let after_cr = i > 0 && bytes[i - 1] == b'\r';
                self.newlines += line_breaks(&rest[..k], after_cr);
                i += k;
                if i < bytes.len() {
                    i += 1;
                    state = Scan::QuoteInQuoted;
                }
                continue;
            }
            let rest = &bytes[i..];
            let Some(k) = memchr::memchr3(b'\n', b'\r', quote, rest) else {
                state = after(rest[rest.len() - 1], delimiter);
                i = bytes.len();
                break;
            };
            let before = if k == 0 {
                state
            } else {
                after(rest[k - 1], delimiter)
            };
            let at = i + k;
            if rest[k] == quote {
                i = at + 1;
                state = match before {
                    Scan::StartField | Scan::QuoteInQuoted => Scan::InQuoted,
                    _ => Scan::InField,
                };
                continue;
            }
            let Some(end) = self.record_end(at) else {
                // A `\r` last in what was read: wait for the byte after it.
                i = at;
                state = before;
                break;
            };
            i = end;
            state = Scan::StartField;
            if self.end_record(at, end, records, target) {
                found = true;
                break;
            }
        }
        self.state = state;
        self.scanned = i;
        found
    }

    /// The end of the line terminator at `pending[at]` (`\r\n`, `\n` or a lone `\r`), or `None`
    /// for a `\r` whose next byte is not read yet.
    fn record_end(&self, at: usize) -> Option<usize> {
        if self.pending[at] == b'\n' {
            return Some(at + 1);
        }
        match self.pending.get(at + 1) {
            Some(b'\n') => Some(at + 2),
            Some(_) => Some(at + 1),
            None => self.eof.then_some(at + 1),
        }
    }

    /// Counts the line break at `at..end` and the record it ends, unless the line is blank;
    /// whether the chunk is cut there (the header's chunk ends with the first record).
    fn end_record(&mut self, at: usize, end: usize, records: usize, target: usize) -> bool {
        let blank = at == self.last_end.map_or(0, |e| e.0);
        self.newlines += 1;
        if !blank {
            self.records += 1;
        }
        self.last_end = Some((end, self.records, self.newlines));
        end >= target || (!blank && (self.records >= records || self.header))
    }

    /// [`scan`](Self::scan), one byte at a time (for a quote that is also a delimiter or a line
    /// break).
    fn scan_bytes(&mut self, records: usize, target: usize, delimiter: u8, quote: u8) -> bool {
        let mut state = self.state;
        let mut i = self.scanned;
        let mut found = false;
        while i < self.pending.len() {
            let b = self.pending[i];
            if state == Scan::InQuoted {
                if b == quote {
                    state = Scan::QuoteInQuoted;
                } else if b == b'\r' || (b == b'\n' && !(i > 0 && self.pending[i - 1] == b'\r')) {
                    self.newlines += 1;
                }
                i += 1;
                continue;
            }
            if b == b'\n' || b == b'\r' {
                let Some(end) = self.record_end(i) else {
                    break;
                };
                let at = i;
                i = end;
                state = Scan::StartField;
                if self.end_record(at, end, records, target) {
                    found = true;
                    break;
                }
                continue;
            }
            state = if b == delimiter {
                Scan::StartField
            } else if b == quote {
                match state {
                    Scan::StartField | Scan::QuoteInQuoted => Scan::InQuoted,
                    _ => Scan::InField,
                }
            } else {
                Scan::InField
            };
            i += 1;
        }
        self.state = state;
        self.scanned = i;
        found
    }

    /// Cuts the next chunk, reading as needed; `None` at the end of the file.
    fn cut(
        &mut self,
        records: usize,
        target: usize,
        max_record: usize,
        delimiter: u8,
        quote: u8,
        bytes_read: &mut u64,
    ) -> Result<Option<CsvChunk>, ReadError> {
        loop {
            if self.at_start && (self.pending.len() >= BOM.len() || self.eof) {
                // A byte order mark only at the file's first byte, as the reader strips it.
                if self.pending.starts_with(BOM) {
                    self.pending.drain(..BOM.len());
                }
                self.at_start = false;
            }
            if !self.at_start && self.scan(records, target, delimiter, quote) {
                return Ok(Some(self.take_to_last_end()));
            }
            if self.eof {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                // The rest: whole records plus a last one without a line break (whatever
                // follows the last record end; an unterminated quote may hold line breaks).
                let unterminated =
                    usize::from(self.pending.len() > self.last_end.map_or(0, |e| e.0));
                self.last_end = Some((
                    self.pending.len(),
                    self.records + unterminated,
                    self.newlines,
                ));
                return Ok(Some(self.take_to_last_end()));
            }
            let open_record = self.pending.len() - self.last_end.map_or(0, |e| e.0);
            if open_record > max_record {
                return Err(ReadError::InvalidOptions(format!(
                    "{}: a record starting near line {} is longer than {max_record} bytes \
                     (an unterminated quote?)",
                    self.label,
                    self.line_base + self.last_end.map_or(0, |e| e.2) + 1
                )));
            }
            // Read without zero-filling, into room for about one chunk (the size of the last).
            if self.pending.capacity() - self.pending.len() < READ_BYTES {
                self.pending
                    .reserve(self.last_chunk_bytes.min(target).max(READ_BYTES) + READ_BYTES);
            }
            let n = (&mut self.file)
                .take(self.read_bytes)
                .read_to_end(&mut self.pending)
                .map_err(|source| ReadError::Io {
                    file: self.label.to_string(),
                    source,
                })?;
            *bytes_read += n as u64;
            if n == 0 {
                self.eof = true;
            }
        }
    }

    /// Moves `pending[..last_end]` into a chunk and keeps the rest.
    fn take_to_last_end(&mut self) -> CsvChunk {
        let (end, records, newlines) = self.last_end.take().expect("a record end was found");
        let mut rest = self.pool.take(end + READ_BYTES);
        rest.extend_from_slice(&self.pending[end..]);
        self.pending.truncate(end);
        self.last_chunk_bytes = end;
        let data = std::mem::replace(&mut self.pending, rest);
        let chunk = CsvChunk {
            file: self.label.clone(),
            first_line: self.line_base + 1,
            records,
            data,
        };
        self.scanned -= end.min(self.scanned);
        self.records = 0;
        self.line_base += newlines;
        self.newlines = 0;
        chunk
    }
}

type CutResult = (Box<Cutter>, Result<Option<CsvChunk>, ReadError>);

/// The source half of [`csv_split`]: cuts files into chunks, one per credit.
pub struct CsvChunker {
    cutter: Option<Box<Cutter>>,
    /// The thread cutting chunks, started on the first read.
    lane: Option<Lane>,
    in_flight: Option<LaneTask<CutResult>>,
    bytes_read: Arc<AtomicU64>,
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

/// What [`csv_split_with`] runs on every parsed batch, knowing its file: it emits the batch
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

/// The parsing half of [`csv_split`]: a `ChunkParser` per instance, then the step.
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

/// Chunk buffers the parse instances have emptied, for the reader to fill again: the buffers
/// are reused instead of being allocated and freed per chunk.
#[derive(Debug, Default)]
pub(crate) struct ChunkPool {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl ChunkPool {
    /// Buffers kept at most; more are freed.
    const MAX: usize = 8;

    fn put(&self, mut buf: Vec<u8>) {
        buf.clear();
        // A poisoned lock only means another instance panicked; the list is still valid.
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < Self::MAX {
            free.push(buf);
        }
    }

    /// An empty buffer with room for at least `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let found = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.pop()
        };
        match found {
            Some(mut buf) => {
                buf.reserve(capacity);
                buf
            }
            None => Vec::with_capacity(capacity),
        }
    }
}

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
}

impl Default for SplitOptions {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            records: None,
            target_bytes: 4 << 20,
            max_record_bytes: 64 << 20,
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
    let chunker = CsvChunker {
        cutter: Some(Box::new(Cutter {
            files: set.files().iter().cloned().collect(),
            current: None,
            schema: data_schema.clone(),
            opts: opts.clone(),
            records,
            target_bytes: split.target_bytes,
            max_record_bytes: split.max_record_bytes.max(1),
            read_bytes: READ_BYTES as u64,
            bytes_read: 0,
            pool: pool.clone(),
        })),
        lane: None,
        in_flight: None,
        bytes_read: bytes_read.clone(),
    };
    let parse = CsvParse {
        opts,
        step,
        parser: None,
        pool,
    };
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
mod tests {
    use super::*;

    fn cut_all(
        text: &str,
        records: usize,
        target: usize,
        header: bool,
    ) -> Vec<(u64, usize, String)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.csv");
        std::fs::write(&path, text).expect("writable");
        let mut cutter = Cutter {
            files: [path].into(),
            current: None,
            opts: CsvOptions {
                has_header: header,
                ..CsvOptions::default()
            },
            schema: Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("a", arrow::datatypes::DataType::Utf8, true),
                arrow::datatypes::Field::new("b", arrow::datatypes::DataType::Utf8, true),
            ])),
            records,
            target_bytes: target,
            max_record_bytes: 1 << 20,
            read_bytes: READ_BYTES as u64,
            bytes_read: 0,
            pool: Arc::default(),
        };
        let mut out = Vec::new();
        while let Some(c) = cutter.next_chunk().expect("readable") {
            out.push((
                c.first_line,
                c.records,
                String::from_utf8(c.data).expect("utf8"),
            ));
        }
        assert_eq!(cutter.bytes_read, text.len() as u64);
        out
    }

    #[test]
    fn cuts_whole_records_and_numbers_lines() {
        let text = "a,b\n1,\"x\ny\"\r\n2,\"q\"\"\n\"\n\n3,z\n4,w";
        let got = cut_all(text, 2, usize::MAX, true);
        assert_eq!(
            got,
            vec![
                (2, 2, "1,\"x\ny\"\r\n2,\"q\"\"\n\"\n".to_string()),
                // A blank line is no record.
                (6, 2, "\n3,z\n4,w".to_string()),
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn the_fast_scan_cuts_where_the_byte_scan_does(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec!["a", "1", ",", "\"", "\"\"", "\n", "\r", "\r\n", " "]),
                0..80,
            ),
            records in 1usize..4,
            target in 1usize..64,
        ) {
            let text: String = pieces.concat();
            let mut cuts = Vec::new();
            for fast in [true, false] {
                let mut f = FileCutter {
                    file: File::open("/dev/null").expect("opens"),
                    label: "x".into(),
                    pending: text.clone().into_bytes(),
                    scanned: 0,
                    state: Scan::StartField,
                    records: 0,
                    newlines: 0,
                    last_end: None,
                    line_base: 0,
                    at_start: false,
                    read_bytes: READ_BYTES as u64,
                    last_chunk_bytes: 0,
                    pool: Arc::default(),
                    header: false,
                    eof: true,
                };
                let mut seen = Vec::new();
                loop {
                    let hit = if fast {
                        f.scan(records, target, b',', b'"')
                    } else {
                        f.scan_bytes(records, target, b',', b'"')
                    };
                    seen.push((hit, f.scanned, f.state, f.records, f.newlines, f.last_end));
                    if !hit {
                        break;
                    }
                    f.take_to_last_end();
                }
                cuts.push(seen);
            }
            proptest::prop_assert_eq!(&cuts[0], &cuts[1]);
        }
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_is_literal() {
        // As in the parser: `a"b` does not open a quoted field, so the line break ends the record.
        let got = cut_all("x\"y,1\nz,2\n", 1, usize::MAX, false);
        assert_eq!(
            got,
            vec![(1, 1, "x\"y,1\n".to_string()), (2, 1, "z,2\n".to_string())]
        );
    }

    #[test]
    fn blank_lines_alone_make_no_chunk() {
        // Cut at every record end past 1 byte: the blank lines between records are no chunk
        // (the next chunk's first line counts them).
        let got = cut_all("a,b\r\n\r\n1,2\n\n\r\r\n3,4\r\n\n", 5, 1, true);
        assert_eq!(
            got,
            vec![(3, 1, "1,2\n".to_string()), (7, 1, "3,4\r\n".to_string())]
        );
    }
}
