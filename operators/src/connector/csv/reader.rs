//! Lazy CSV reader: the `csv` crate parses, Arrow builders collect typed columns.
//!
//! # Records, lines and raw text
//!
//! Records are read as RFC 4180 and Python's `csv` module read them: `\r\n`, `\n` and a lone
//! `\r` each end a record outside quotes; blank lines are skipped (before the header too); a UTF-8
//! byte order mark is stripped only at the input's first byte (anywhere else U+FEFF is data).
//!
//! The parser reads through a `Tap` that counts and retains the bytes it pulls. For each record
//! the reader takes the byte range from the end of the previous record to the parser's position
//! after this one; leading line terminators in that range are blank lines or the `\n` of a
//! preceding `\r\n`. A physical line ends at each line break: `\r\n`, `\n` or a lone `\r` (as
//! Python's universal newlines count them). The record's line is 1 + the line breaks before its
//! first byte, so quoted fields spanning lines, blank lines and CR, CRLF and LF files all get the
//! right number (the header, if any, is line 1 or the first line that is not blank). The raw
//! text is that range without leading and trailing `\r`/`\n` (and without the byte order mark).
//!
//! # Schema
//!
//! Declared ([`CsvOptions::schema`]): fields map to columns by position; a header, if present,
//! must have as many fields and, unless [`CsvOptions::header_names`] is
//! [`HeaderCheck::CountOnly`], the declared names in the same order. Inferred: the reader
//! parses the first [`CsvOptions::infer_rows`] records when it is created, infers each column's
//! type (see `infer_type`), keeps those records and replays them first. Inferred columns are
//! nullable and named after the header (or `column_1`, `column_2`, … without one).

use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::{Field, Schema, SchemaRef};
use csv::ByteRecord;

use crate::connector::assemble::Assembly;
use crate::connector::columns::{infer_type, Columns, MAX_PREALLOC_ROWS};
use crate::connector::counting::Tap;
use crate::connector::position::FilePosition;
use crate::connector::{
    with_extra_columns, BadRecordPolicy, BatchReader, ReadBatch, ReadError, RecordError,
    DEFAULT_BATCH_ROWS,
};

/// Options of [`CsvReader`].
#[derive(Debug, Clone)]
pub struct CsvOptions {
    /// The first record is a header (line 1). Default `true`.
    pub has_header: bool,
    /// Field delimiter. Default `b','`.
    pub delimiter: u8,
    /// Quote character; a doubled quote inside a quoted field is a literal quote. Default `b'"'`.
    pub quote: u8,
    /// Declared data schema; `None` infers it. Default `None`.
    pub schema: Option<SchemaRef>,
    /// Records sampled for inference (read ahead once, at creation). Default 1024.
    pub infer_rows: usize,
    /// Rows per batch; also the most records (good + bad) handled per `next()`. Default 1024.
    pub batch_rows: usize,
    /// Append a `_line: UInt64` column with each row's 1-based physical line. Default `false`.
    pub line_column: bool,
    /// Append a `_raw: Utf8` column with each row's raw text. Default `false`.
    pub raw_column: bool,
    /// What to do with a record that does not fit the schema. Default [`BadRecordPolicy::Fail`].
    pub bad_records: BadRecordPolicy,
    /// The physical line number of the input's first byte, for inputs that are a slice of a
    /// larger file (see [`csv_split`](super::csv_split)). Default 1. (The reader
    /// strips a byte order mark at its input's first byte whatever this line is.)
    pub first_line: u64,
    /// How a header is checked against a declared schema. Default [`HeaderCheck::Names`].
    pub header_names: HeaderCheck,
}

/// How the header of a file is checked against the declared schema
/// ([`CsvOptions::header_names`]). Fields always map to columns by position.
///
/// | choice | a header with the declared names in another order, or other names |
/// |---|---|
/// | [`Names`](HeaderCheck::Names) | fails the read with [`ReadError::HeaderNames`], naming the file, the expected and the found names |
/// | [`CountOnly`](HeaderCheck::CountOnly) | is read by position: same-typed columns may be silently swapped |
///
/// Either way a header with another number of fields fails with [`ReadError::HeaderMismatch`].
///
/// ```
/// use weir_operators::connector::csv::{CsvOptions, HeaderCheck};
///
/// // Headers whose names differ from the schema's (say, in another language) are read by
/// // position.
/// let opts = CsvOptions::default().with_header_names(HeaderCheck::CountOnly);
/// assert_eq!(opts.header_names, HeaderCheck::CountOnly);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeaderCheck {
    /// The header's names must equal the declared field names, in order (byte for byte).
    #[default]
    Names,
    /// Only the header's number of fields is checked.
    CountOnly,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            has_header: true,
            delimiter: b',',
            quote: b'"',
            schema: None,
            infer_rows: DEFAULT_BATCH_ROWS,
            batch_rows: DEFAULT_BATCH_ROWS,
            line_column: false,
            raw_column: false,
            bad_records: BadRecordPolicy::Fail,
            first_line: 1,
            header_names: HeaderCheck::Names,
        }
    }
}

impl CsvOptions {
    /// These options with a declared schema.
    pub fn with_schema(mut self, schema: SchemaRef) -> Self {
        self.schema = Some(schema);
        self
    }
    /// These options with `batch_rows` rows per batch.
    pub fn with_batch_rows(mut self, batch_rows: usize) -> Self {
        self.batch_rows = batch_rows;
        self
    }
    /// These options with the given bad-record policy.
    pub fn with_bad_records(mut self, policy: BadRecordPolicy) -> Self {
        self.bad_records = policy;
        self
    }
    /// These options with the given header check ([`HeaderCheck::CountOnly`] to read a header
    /// with other names by position).
    pub fn with_header_names(mut self, check: HeaderCheck) -> Self {
        self.header_names = check;
        self
    }
}

/// The UTF-8 byte order mark, stripped at a file's first byte only.
pub(crate) const BOM: &[u8] = b"\xef\xbb\xbf";

/// Line breaks in `bytes`: each `\r` and each `\n` not just after a `\r` (so `\r\n` is one);
/// `after_cr` tells whether the byte before `bytes[0]` is a `\r`.
pub(crate) fn line_breaks(bytes: &[u8], after_cr: bool) -> u64 {
    let crs = memchr::memchr_iter(b'\r', bytes).count();
    let lfs = memchr::memchr_iter(b'\n', bytes)
        .filter(|&i| match i.checked_sub(1) {
            Some(j) => bytes[j] != b'\r',
            None => !after_cr,
        })
        .count();
    (crs + lfs) as u64
}

/// Checks a header against the declared schema (see [`HeaderCheck`]).
pub(crate) fn check_header(
    file: &str,
    header: &ByteRecord,
    schema: &Schema,
    check: HeaderCheck,
) -> Result<(), ReadError> {
    if header.len() != schema.fields().len() {
        return Err(ReadError::HeaderMismatch {
            file: file.to_owned(),
            expected: schema.fields().len(),
            found: header.len(),
        });
    }
    let same = header
        .iter()
        .zip(schema.fields())
        .all(|(h, f)| h == f.name().as_bytes());
    if check == HeaderCheck::Names && !same {
        return Err(ReadError::HeaderNames {
            file: file.to_owned(),
            expected: schema.fields().iter().map(|f| f.name().clone()).collect(),
            found: header
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect(),
        });
    }
    Ok(())
}

/// One parsed record with its position.
#[derive(Debug)]
struct Located {
    record: ByteRecord,
    line: u64,
    raw: String,
    /// The position just past it.
    after: FilePosition,
}

/// Lazy CSV reader yielding [`ReadBatch`]es.
///
/// # Rewinding
///
/// The reader [rewinds](crate::source::Rewind): [`CsvReader::position`] is the [`FilePosition`]
/// after the last batch it returned — the byte offset just past the last record it handled (a
/// row, a dead letter or a skip) and the physical line starting there — and
/// [`CsvReader::from_path_at`] reopens the file there, so its rows, `_line` values and dead
/// letters are those an uninterrupted read gives after that point. A record ending in `\r`
/// may leave the offset on the `\n` of its `\r\n`; a reader reopened there reads the byte
/// before the offset to know that `\n` ends no line of its own. A batch cut short by a bad
/// record under [`BadRecordPolicy::Fail`] ends its position *before* that record, so a
/// reopened reader meets it (and fails) again. Past byte 0 the header is behind and U+FEFF is
/// data; a reader reopened there without a declared schema infers it from the file's start.
pub struct CsvReader<R: Read> {
    parser: csv::Reader<Tap<R>>,
    label: Arc<str>,
    opts: CsvOptions,
    data_schema: SchemaRef,
    schema: SchemaRef,
    columns: Columns,
    /// Records read for inference, replayed first (at most `infer_rows`).
    replay: std::collections::VecDeque<Located>,
    record: ByteRecord,
    /// Line breaks before the end of the previous record.
    newlines: u64,
    /// The previous record's bytes ended with `\r` (a `\n` next is part of its `\r\n`).
    after_cr: bool,
    /// Stream offsets where the last record read in place started and ended.
    start: u64,
    end: u64,
    /// File offset of stream offset 0 (non-zero for a reader reopened at a position).
    offset_base: u64,
    /// The position after the record last read in place.
    after: FilePosition,
    /// The position after the last batch returned.
    emitted: FilePosition,
    /// A bad record met under `Fail` after some good rows; reported by the next call.
    pending_error: Option<ReadError>,
    done: bool,
}

impl CsvReader<File> {
    /// Opens `path` for reading.
    ///
    /// # Errors
    /// [`ReadError::Io`] if it cannot be opened; the errors of [`CsvReader::new`].
    pub fn from_path(path: impl AsRef<Path>, opts: CsvOptions) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| ReadError::Io {
            file: path.display().to_string(),
            source,
        })?;
        CsvReader::new(file, &path.display().to_string(), opts)
    }

    /// Opens `path` at `at`, a [`position`](CsvReader::position) saved by a reader of the same
    /// file with the same options: the rows, line numbers and dead letters that follow are
    /// those an uninterrupted read gives (see [Rewinding](CsvReader#rewinding)). At byte 0 this is
    /// [`from_path`](Self::from_path) numbering lines from `at.line`.
    ///
    /// # Errors
    /// As [`from_path`](Self::from_path); [`ReadError::Io`] if it cannot seek to `at`.
    pub fn from_path_at(
        path: impl AsRef<Path>,
        mut opts: CsvOptions,
        at: FilePosition,
    ) -> Result<Self, ReadError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        if at.offset == 0 {
            opts.first_line = at.line;
            return CsvReader::from_path(path, opts);
        }
        if opts.schema.is_none() {
            // The schema an uninterrupted read has: inferred from the file's start.
            let schema = CsvReader::from_path(path, opts.clone())?.data_schema();
            opts.schema = Some(schema);
        }
        let io = |source| ReadError::Io {
            file: label.clone(),
            source,
        };
        let mut file = File::open(path).map_err(io)?;
        // Does the offset fall between the `\r` and the `\n` of a `\r\n`?
        file.seek(SeekFrom::Start(at.offset - 1)).map_err(io)?;
        let mut before = [0u8];
        file.read_exact(&mut before).map_err(io)?;
        let mut reader = CsvReader::with_tap(Tap::new(file).one_byte_first(), &label, opts, at)?;
        reader.after_cr = before[0] == b'\r';
        Ok(reader)
    }
}

impl CsvReader<std::io::Empty> {
    /// A reader over bytes already in memory: as [`CsvReader::new`], without copying them
    /// into the reader's window.
    ///
    /// # Errors
    /// As [`CsvReader::new`].
    pub fn from_bytes(data: Vec<u8>, label: &str, opts: CsvOptions) -> Result<Self, ReadError> {
        let start = FilePosition {
            offset: 0,
            line: opts.first_line,
        };
        Self::with_tap(Tap::preloaded(std::io::empty(), data), label, opts, start)
    }
}

impl<R: Read> CsvReader<R> {
    /// A reader over `input`, labelled `label` in batches, dead letters and errors.
    ///
    /// Reads the header (and, without a declared schema, the inference sample) right away.
    ///
    /// # Errors
    /// [`ReadError::InvalidOptions`] for zero `batch_rows`; [`ReadError::UnsupportedType`] for a
    /// declared column type text cannot hold; [`ReadError::HeaderMismatch`]; I/O and parse errors.
    pub fn new(input: R, label: &str, opts: CsvOptions) -> Result<Self, ReadError> {
        let start = FilePosition {
            offset: 0,
            line: opts.first_line,
        };
        Self::with_tap(Tap::new(input), label, opts, start)
    }

    /// A reader over `tap`, which stands at `start` of the data. Past byte 0 the header is
    /// behind: it is not read, and the schema must be declared.
    fn with_tap(
        tap: Tap<R>,
        label: &str,
        opts: CsvOptions,
        start: FilePosition,
    ) -> Result<Self, ReadError> {
        if opts.batch_rows == 0 {
            return Err(ReadError::InvalidOptions(
                "batch_rows must be at least 1".into(),
            ));
        }
        let parser = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(opts.delimiter)
            .quote(opts.quote)
            .from_reader(tap);
        let mut reader = CsvReader {
            parser,
            label: label.into(),
            data_schema: Arc::new(Schema::empty()),
            schema: Arc::new(Schema::empty()),
            columns: Columns::new(Arc::new(Schema::empty()), 0)?,
            replay: Default::default(),
            record: ByteRecord::new(),
            newlines: start.line.saturating_sub(1),
            after_cr: false,
            start: 0,
            end: 0,
            offset_base: start.offset,
            after: start,
            emitted: start,
            pending_error: None,
            done: false,
            opts,
        };
        let header = if reader.opts.has_header && start.offset == 0 {
            reader.next_record()?.map(|l| l.record)
        } else {
            None
        };
        let data_schema = match reader.opts.schema.clone() {
            Some(schema) => {
                if let Some(h) = &header {
                    check_header(label, h, &schema, reader.opts.header_names)?;
                }
                schema
            }
            None => reader.infer(header.as_ref())?,
        };
        reader.columns = Columns::new(data_schema.clone(), reader.opts.batch_rows)?;
        reader.schema = with_extra_columns(
            &data_schema,
            reader.opts.line_column,
            reader.opts.raw_column,
        );
        reader.data_schema = data_schema;
        Ok(reader)
    }

    /// The data schema (declared or inferred), without `_line` / `_raw`.
    pub fn data_schema(&self) -> SchemaRef {
        self.data_schema.clone()
    }

    fn infer(&mut self, header: Option<&ByteRecord>) -> Result<SchemaRef, ReadError> {
        while self.replay.len() < self.opts.infer_rows {
            match self.next_record()? {
                Some(located) => self.replay.push_back(located),
                None => break,
            }
        }
        let width = header
            .map(ByteRecord::len)
            .or_else(|| self.replay.front().map(|l| l.record.len()))
            .unwrap_or(0);
        let fields: Vec<Field> = (0..width)
            .map(|i| {
                let name = match header.and_then(|h| h.get(i)) {
                    Some(n) => String::from_utf8_lossy(n).into_owned(),
                    None => format!("column_{}", i + 1),
                };
                let samples = self
                    .replay
                    .iter()
                    .filter_map(move |l| l.record.get(i))
                    .map(|b| std::str::from_utf8(b).unwrap_or(""));
                Field::new(name, infer_type(samples), true)
            })
            .collect();
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Parses the next record and locates it, or `None` at the end of input.
    fn next_record(&mut self) -> Result<Option<Located>, ReadError> {
        let Some(line) = self.next_in_place()? else {
            return Ok(None);
        };
        let raw = String::from_utf8_lossy(self.current_raw()).into_owned();
        Ok(Some(Located {
            record: std::mem::take(&mut self.record),
            line,
            raw,
            after: self.after,
        }))
    }

    /// The raw text of the record [`next_in_place`](Self::next_in_place) just read (valid until
    /// the next read).
    fn current_raw(&self) -> &[u8] {
        trim_terminators(self.parser.get_ref().slice(self.start, self.end))
    }

    /// Parses the next record into `self.record` (reusing its buffers) and returns its line.
    fn next_in_place(&mut self) -> Result<Option<u64>, ReadError> {
        let start = self.end;
        self.parser.get_mut().release(start);
        let more = self
            .parser
            .read_byte_record(&mut self.record)
            .map_err(|source| ReadError::Csv {
                file: self.label.to_string(),
                source,
            })?;
        if !more {
            return Ok(None);
        }
        let end = self.parser.position().byte();
        let mut start = start;
        if start == 0
            && self.offset_base == 0
            && self.parser.get_ref().slice(0, end).starts_with(BOM)
        {
            // The parser stripped the byte order mark; it is neither raw text nor a line.
            start = BOM.len() as u64;
        }
        let bytes = self.parser.get_ref().slice(start, end);
        let lead = bytes
            .iter()
            .take_while(|b| **b == b'\n' || **b == b'\r')
            .count();
        let line = 1 + self.newlines + line_breaks(&bytes[..lead], self.after_cr);
        self.newlines += line_breaks(bytes, self.after_cr);
        if let Some(&last) = bytes.last() {
            self.after_cr = last == b'\r';
        }
        self.start = start;
        self.end = end;
        self.after = FilePosition {
            offset: self.offset_base + end,
            line: self.newlines + 1,
        };
        Ok(Some(line))
    }

    fn read_batch(&mut self) -> Result<Option<ReadBatch>, ReadError> {
        let cap = self.opts.batch_rows.min(MAX_PREALLOC_ROWS);
        let mut batch = Assembly::new(self.opts.line_column, self.opts.raw_column, cap, None);
        // The position after the last record this batch handled.
        let mut handled = self.emitted;
        while batch.handled() < cap {
            // Records read for inference come first; then records parsed in place.
            let replayed = self.replay.pop_front();
            let line = match &replayed {
                Some(l) => l.line,
                None => match self.next_in_place()? {
                    Some(line) => line,
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            let (record, after) = match &replayed {
                Some(l) => (&l.record, l.after),
                None => (&self.record, self.after),
            };
            match parse_record(&mut self.columns, record) {
                Ok(()) => {
                    // parse_record() checked every field is UTF-8.
                    self.columns.commit(|i| {
                        record
                            .get(i)
                            .and_then(|b| std::str::from_utf8(b).ok())
                            .unwrap_or("")
                    });
                    batch.row(line, || match &replayed {
                        Some(l) => Cow::Borrowed(l.raw.as_str()),
                        None => String::from_utf8_lossy(self.current_raw()),
                    });
                    handled = after;
                }
                Err(cause) => {
                    let raw = || match &replayed {
                        Some(l) => l.raw.clone(),
                        None => String::from_utf8_lossy(self.current_raw()).into_owned(),
                    };
                    if let Some(err) =
                        batch.bad(self.opts.bad_records, &self.label, line, cause, raw)
                    {
                        if batch.rows() == 0 {
                            return Err(err);
                        }
                        // Deliver the good rows before it; fail on the next call.
                        self.pending_error = Some(err);
                        break;
                    }
                    handled = after;
                }
            }
        }
        if batch.handled() == 0 {
            return Ok(None);
        }
        let columns = self.columns.finish();
        let batch = batch.finish(columns, self.schema.clone(), &self.label)?;
        self.emitted = handled;
        Ok(Some(batch))
    }

    /// The position after the last batch returned (see [Rewinding](CsvReader#rewinding)); the start
    /// before the first.
    pub fn position(&self) -> FilePosition {
        self.emitted
    }
}

/// Parses one record into the scratch row of `columns`.
pub(crate) fn parse_record(columns: &mut Columns, record: &ByteRecord) -> Result<(), RecordError> {
    if record.len() != columns.len() {
        return Err(RecordError::FieldCount {
            expected: columns.len(),
            found: record.len(),
        });
    }
    for (i, field) in record.iter().enumerate() {
        let s = std::str::from_utf8(field).map_err(|_| RecordError::InvalidUtf8 {
            column: columns.name(i).to_owned(),
        })?;
        columns.parse_text(i, s)?;
    }
    Ok(())
}

/// `bytes` without leading and trailing `\r` / `\n`.
pub(crate) fn trim_terminators(bytes: &[u8]) -> &[u8] {
    let is_term = |b: &u8| *b == b'\n' || *b == b'\r';
    let start = bytes
        .iter()
        .position(|b| !is_term(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_term(b))
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = Result<ReadBatch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending_error.take() {
            self.done = true;
            self.replay.clear();
            return Some(Err(e));
        }
        if self.done && self.replay.is_empty() {
            return None;
        }
        match self.read_batch() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                self.done = true;
                self.replay.clear();
                Some(Err(e))
            }
        }
    }
}

impl<R: Read> crate::source::Rewind for CsvReader<R> {
    type Position = FilePosition;

    fn position(&self) -> FilePosition {
        self.emitted
    }
}

impl<R: Read + Send> BatchReader for CsvReader<R> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn bytes_read(&self) -> u64 {
        self.parser.get_ref().bytes_read()
    }
}

impl<R: Read> std::fmt::Debug for CsvReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvReader")
            .field("label", &self.label)
            .field("schema", &self.schema)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
