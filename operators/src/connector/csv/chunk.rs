//! Parsing a chunk of whole CSV records held in memory, as [`CsvReader`](super::CsvReader) would.
//!
//! [`csv_split`](super::csv_split) cuts files into chunks that end at record ends and
//! know the physical line of their first byte. A [`ChunkParser`] turns one chunk into one batch
//! with the same rows, dead letters, skip count and error as a [`CsvReader`](super::CsvReader)
//! reading the same bytes, but faster on the common shape of a record:
//!
//! - **Plain lines**: a line (up to its first `\r` or `\n`) holding no quote is one record whose
//!   fields are the text between delimiters, exactly as the CSV parser reads it. Its fields are
//!   found with a byte search and parsed in place; its line number is one more than the line
//!   breaks before it and its raw text is the line itself.
//! - **Anything else** (quoted fields, which may span lines): the CSV parser reads that one
//!   record from where it starts, and the chunk goes on after it.
//!
//! Line terminators between records are handled in one place, the chunk loop: `\r\n`, `\n` and
//! a lone `\r` each end a line (as in the reader), and blank lines are skipped. A chunk that is
//! not valid UTF-8 is read record by record with the CSV parser, so invalid fields are reported
//! per record as the reader does.
//!
//! A chunk is a slice of a file: U+FEFF in it is data. The chunker strips a byte order mark at
//! the file's first byte before cutting, and the CSV parser (which would strip one at the start
//! of each record it reads from a reset) is kept from doing it here.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use csv::ByteRecord;

use super::{line_breaks, parse_record, trim_terminators, CsvOptions, BOM};
use crate::connector::assemble::Assembly;
use crate::connector::columns::Columns;
use crate::connector::{with_extra_columns, ReadBatch, ReadError, RecordError};

/// What one chunk produced: the batch (rows, dead letters, skips) and, under
/// [`BadRecordPolicy::Fail`], the error of the first bad record (the batch then holds the rows
/// before it).
#[derive(Debug)]
pub struct ChunkRead {
    /// The rows, dead letters and skip count; `None` if the chunk held no record.
    pub read: Option<ReadBatch>,
    /// The first bad record under `Fail`.
    pub error: Option<ReadError>,
}

/// Parses chunks of whole records with a declared schema; see the module docs.
#[derive(Debug)]
pub struct ChunkParser {
    opts: CsvOptions,
    schema: SchemaRef,
    columns: Columns,
    /// Text bytes per row of each column in the last chunk, to size the next chunk's builders.
    text_per_row: Vec<usize>,
    /// Field ranges of the plain line being parsed.
    fields: Vec<(usize, usize)>,
    /// The CSV parser for other records, with its field bytes and field ends.
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    record: ByteRecord,
    plain_ok: bool,
    /// Bytes that end a plain field: the delimiter, the quote, `\r` and `\n`.
    special: [bool; 256],
    /// The same four bytes, each repeated in all eight bytes of a word.
    splat: [u64; 4],
}

/// Where one record ended and how it went.
struct Parsed {
    /// Offset after the record's bytes.
    end: usize,
    /// Its raw text.
    raw: std::ops::Range<usize>,
    /// `\n`s in its bytes.
    newlines: u64,
    outcome: Result<(), RecordError>,
}

impl ChunkParser {
    /// A parser for `opts` (which must declare a schema; `has_header` and `first_line` are
    /// ignored: each chunk gives its first line).
    ///
    /// # Errors
    /// [`ReadError::InvalidOptions`] without a declared schema; [`ReadError::UnsupportedType`].
    pub fn new(opts: CsvOptions) -> Result<Self, ReadError> {
        let Some(data_schema) = opts.schema.clone() else {
            return Err(ReadError::InvalidOptions(
                "parsing chunks needs a declared schema".into(),
            ));
        };
        let columns = Columns::new(data_schema.clone(), 0)?;
        let schema = with_extra_columns(&data_schema, opts.line_column, opts.raw_column);
        // Plain lines are split on the delimiter; that is the parser's reading only when the
        // delimiter and quote are neither line breaks nor each other.
        let plain_ok = ![b'\n', b'\r', opts.quote].contains(&opts.delimiter)
            && ![b'\n', b'\r'].contains(&opts.quote);
        Ok(Self {
            text_per_row: vec![0; columns.len()],
            columns,
            schema,
            fields: Vec::new(),
            core: csv_core::ReaderBuilder::new()
                .delimiter(opts.delimiter)
                .quote(opts.quote)
                .build(),
            out: vec![0; 1024],
            ends: vec![0; 32],
            record: ByteRecord::new(),
            plain_ok,
            special: {
                let mut special = [false; 256];
                for b in [opts.delimiter, opts.quote, b'\r', b'\n'] {
                    special[usize::from(b)] = true;
                }
                special
            },
            splat: [opts.delimiter, opts.quote, b'\r', b'\n']
                .map(|b| u64::from(b) * 0x0101_0101_0101_0101),
            opts,
        })
    }

    /// Parses `data`, whose first byte is on physical line `first_line` of `file`.
    ///
    /// # Errors
    /// [`ReadError::Arrow`] if the batch cannot be assembled (a bug).
    pub fn parse(
        &mut self,
        data: &[u8],
        file: &Arc<str>,
        first_line: u64,
        records_hint: usize,
    ) -> Result<ChunkRead, ReadError> {
        let text = if self.plain_ok {
            std::str::from_utf8(data).ok()
        } else {
            None
        };
        self.columns.reset(records_hint, &self.text_per_row);
        let mut batch = Assembly::new(
            self.opts.line_column,
            self.opts.raw_column,
            records_hint,
            Some(data.len()),
        );
        let mut newlines = first_line.saturating_sub(1);
        let mut pos = 0;
        let mut error = None;
        while pos < data.len() {
            match data[pos] {
                b'\n' => {
                    newlines += 1;
                    pos += 1;
                    continue;
                }
                b'\r' => {
                    // `\r\n` or a lone `\r`: one line break either way.
                    newlines += 1;
                    pos += 1;
                    if data.get(pos) == Some(&b'\n') {
                        pos += 1;
                    }
                    continue;
                }
                _ => {}
            }
            let line = newlines + 1;
            let parsed = match text {
                Some(text) => self.plain(text, pos),
                None => None,
            };
            let parsed = match parsed {
                Some(p) => p,
                None => self.general(data, pos),
            };
            newlines += parsed.newlines;
            pos = parsed.end;
            let raw = &data[parsed.raw];
            match parsed.outcome {
                Ok(()) => batch.row(line, || String::from_utf8_lossy(raw)),
                Err(cause) => {
                    let raw = || String::from_utf8_lossy(raw).into_owned();
                    error = batch.bad(self.opts.bad_records, file, line, cause, raw);
                    if error.is_some() {
                        break;
                    }
                }
            }
        }
        if batch.handled() == 0 || (batch.rows() == 0 && error.is_some()) {
            self.columns.finish();
            return Ok(ChunkRead { read: None, error });
        }
        let arrays: Vec<ArrayRef> = self.columns.finish();
        let rows = batch.rows();
        for (i, a) in arrays.iter().enumerate() {
            if let Some(s) = a.as_any().downcast_ref::<arrow::array::StringArray>() {
                self.text_per_row[i] = s.value_data().len().div_ceil(rows.max(1)) + 1;
            }
        }
        let read = batch.finish(arrays, self.schema.clone(), file)?;
        Ok(ChunkRead {
            read: Some(read),
            error,
        })
    }

    /// The plain line starting at `pos`, parsed into the columns (committed if good), or `None`
    /// if the line is not plain.
    fn plain(&mut self, text: &str, pos: usize) -> Option<Parsed> {
        let bytes = text.as_bytes();
        self.fields.clear();
        let mut start = pos;
        let mut i = pos;
        // One pass to the line's end (its first `\r` or `\n`): split at delimiters, give up at
        // a quote.
        let end = loop {
            // Eight bytes at a time up to the next special byte.
            if let Some(word) = bytes.get(i..i + 8) {
                let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
                let hits = self
                    .splat
                    .iter()
                    .fold(0, |acc, &m| acc | zero_bytes(word ^ m));
                if hits == 0 {
                    i += 8;
                    continue;
                }
                // The lowest flagged byte is a real match (borrows only flag bytes above it).
                i += (hits.trailing_zeros() / 8) as usize;
            }
            let Some(&b) = bytes.get(i) else {
                break i;
            };
            if !self.special[usize::from(b)] {
                i += 1;
                continue;
            }
            if b == self.opts.delimiter {
                self.fields.push((start, i));
                start = i + 1;
            } else if b == b'\n' || b == b'\r' {
                break i;
            } else {
                return None;
            }
            i += 1;
        };
        self.fields.push((start, end));
        let outcome = self.parse_fields(text);
        Some(Parsed {
            end,
            raw: pos..end,
            newlines: 0,
            outcome,
        })
    }

    fn parse_fields(&mut self, text: &str) -> Result<(), RecordError> {
        if self.fields.len() != self.columns.len() {
            return Err(RecordError::FieldCount {
                expected: self.columns.len(),
                found: self.fields.len(),
            });
        }
        // Delimiters are ASCII, so every field boundary is a char boundary of `text`.
        for (i, &(a, b)) in self.fields.iter().enumerate() {
            self.columns.parse_text(i, &text[a..b])?;
        }
        let fields = &self.fields;
        self.columns.commit(|i| &text[fields[i].0..fields[i].1]);
        Ok(())
    }

    /// The record starting at `pos` read by the CSV parser, parsed into the columns (committed
    /// if good).
    fn general(&mut self, data: &[u8], pos: usize) -> Parsed {
        let mut end = pos
            + read_one(
                &mut self.core,
                &data[pos..],
                &mut self.out,
                &mut self.ends,
                &mut self.record,
            );
        while end > pos && matches!(data[end - 1], b'\r' | b'\n') {
            // The terminator the parser stopped at is left to the chunk loop, which counts line
            // breaks (`\r\n` as one) in one place.
            end -= 1;
        }
        let raw = trim_range(data, pos, end);
        let outcome = parse_record(&mut self.columns, &self.record);
        if outcome.is_ok() {
            let record = &self.record;
            // parse_record() checked every field is UTF-8.
            self.columns.commit(|i| {
                record
                    .get(i)
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .unwrap_or("")
            });
        }
        Parsed {
            end,
            raw,
            // A record starts after a line break or at the chunk's start, never after a `\r`.
            newlines: line_breaks(&data[pos..end], false),
            outcome,
        }
    }
}

/// Reads the record at the start of `input` (which is not a line terminator) into `record`
/// with `core`, using `out` and `ends` as the parser's buffers; returns the bytes it took.
fn read_one(
    core: &mut csv_core::Reader,
    mut input: &[u8],
    out: &mut Vec<u8>,
    ends: &mut Vec<usize>,
    record: &mut ByteRecord,
) -> usize {
    use csv_core::ReadRecordResult;
    let len = input.len();
    core.reset();
    let (mut outlen, mut endlen) = (0, 0);
    if input.starts_with(BOM) {
        // A reset parser strips a byte order mark from the first input it is given if that
        // holds all three bytes: give it one byte first, so U+FEFF inside a file stays data.
        let (_, nin, nout, nend) = core.read_record(&input[..1], &mut out[..], &mut ends[..]);
        input = &input[nin..];
        outlen += nout;
        endlen += nend;
    }
    loop {
        let (res, nin, nout, nend) =
            core.read_record(input, &mut out[outlen..], &mut ends[endlen..]);
        input = &input[nin..];
        outlen += nout;
        endlen += nend;
        match res {
            // At the end of the data, an empty input tells the parser the record ends.
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::OutputFull => out.resize(out.len().max(64) * 2, 0),
            ReadRecordResult::OutputEndsFull => ends.resize(ends.len().max(8) * 2, 0),
            ReadRecordResult::Record | ReadRecordResult::End => break,
        }
    }
    record.clear();
    let mut start = 0;
    for &e in &ends[..endlen] {
        record.push_field(&out[start..e]);
        start = e;
    }
    len - input.len()
}

/// The first record of `data` (after any blank lines) as the chunk parser reads it, or `None`
/// if `data` holds only line terminators: a header cut from a file by the chunker.
pub(crate) fn first_record(data: &[u8], opts: &CsvOptions) -> Option<ByteRecord> {
    let pos = data.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let mut core = csv_core::ReaderBuilder::new()
        .delimiter(opts.delimiter)
        .quote(opts.quote)
        .build();
    let mut record = ByteRecord::new();
    read_one(
        &mut core,
        &data[pos..],
        &mut vec![0; 1024],
        &mut vec![0; 32],
        &mut record,
    );
    Some(record)
}

/// A word with the high bit set in (at least) the lowest zero byte of `x`, and 0 if `x` has no
/// zero byte.
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(0x0101_0101_0101_0101) & !x & 0x8080_8080_8080_8080
}

/// `data[a..b]` without leading and trailing `\r` / `\n` (as [`trim_terminators`]), as a range.
fn trim_range(data: &[u8], a: usize, b: usize) -> std::ops::Range<usize> {
    let slice = &data[a..b];
    let lead = slice
        .iter()
        .take_while(|b| **b == b'\n' || **b == b'\r')
        .count();
    let len = trim_terminators(slice).len();
    a + lead..a + lead + len
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
