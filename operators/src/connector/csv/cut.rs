//! Cutting CSV files into chunks of whole records: the scanner behind [`CsvChunker`](super::CsvChunker).
//!
//! A [`Cutter`] opens the files of a set in turn; a `FileCutter` reads one file [`READ_BYTES`]
//! at a time and scans what it read with the same quoting rules as the parser (RFC 4180: a quote
//! opens a quoted field only at the start of a field, a doubled quote inside one is literal,
//! `\r\n`, `\n` and a lone `\r` end records outside quotes), jumping from one `\r`, `\n` or quote
//! to the next with `memchr`. It cuts a chunk after the terminator that ends its `records`-th
//! record (blank lines are none), or earlier once the chunk holds `target_bytes`; it never cuts
//! between the `\r` and `\n` of a `\r\n`. It counts every line break, so each chunk knows the
//! physical line of its first byte. A UTF-8 byte order mark is stripped at a file's first byte
//! only; the header (the first record, after any blank lines) is checked and not passed on; a
//! record longer than `max_record_bytes` fails the read.
//!
//! The cutter knows where it stands: [`Cutter::position`] is the [`SetPosition`] of the first
//! byte not yet cut into a chunk (its file, byte offset and physical line), and a cutter built
//! with a `start` opens that file there (seeking, numbering lines from the saved line, and
//! expecting no header or byte order mark past byte 0), so its chunks are those an
//! uninterrupted cutter would cut from that point on.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use weir_runtime::Batch;

use super::chunk::first_record;
use super::pool::ChunkPool;
use super::{check_header, line_breaks, BOM};
use crate::connector::{CsvOptions, FilePosition, ReadError, SetPosition};

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
pub(super) const READ_BYTES: usize = 256 * 1024;

/// One open file being cut into chunks.
pub(super) struct FileCutter {
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
    /// File offset of `pending[0]`.
    offset_base: u64,
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
pub(super) struct Cutter {
    /// Files not opened yet.
    pub(super) files: VecDeque<PathBuf>,
    /// Index in the set of the next file to open.
    pub(super) next_file: usize,
    /// Where to open that file (a restored position), instead of its start.
    pub(super) resume_at: Option<FilePosition>,
    pub(super) current: Option<FileCutter>,
    pub(super) opts: CsvOptions,
    pub(super) schema: SchemaRef,
    pub(super) records: usize,
    pub(super) target_bytes: usize,
    pub(super) max_record_bytes: usize,
    /// Bytes per read of a file.
    pub(super) read_bytes: u64,
    pub(super) bytes_read: u64,
    pub(super) pool: Arc<ChunkPool>,
}

impl Cutter {
    /// A cutter of `files` (a set's files, in order) starting at `start`.
    pub(super) fn starting_at(
        files: impl IntoIterator<Item = PathBuf>,
        start: SetPosition,
        opts: CsvOptions,
        schema: SchemaRef,
        pool: Arc<ChunkPool>,
    ) -> Self {
        let records = opts.batch_rows;
        Cutter {
            files: files.into_iter().skip(start.file).collect(),
            next_file: start.file,
            resume_at: Some(start.at),
            current: None,
            opts,
            schema,
            records,
            target_bytes: usize::MAX,
            max_record_bytes: usize::MAX,
            read_bytes: READ_BYTES as u64,
            bytes_read: 0,
            pool,
        }
    }

    /// Moves a cutter that has not opened a file yet to `start`, a position of the same file
    /// set at or after the one it was built at (a checkpoint's).
    pub(super) fn seek(&mut self, start: SetPosition) -> Result<(), String> {
        if self.current.is_some() {
            return Err(
                "the reader has started; it can only be moved before its first read".into(),
            );
        }
        if start.file < self.next_file {
            return Err(format!(
                "position in file {} is before the reader's first file {}",
                start.file, self.next_file
            ));
        }
        let skip = (start.file - self.next_file).min(self.files.len());
        self.files.drain(..skip);
        self.next_file = start.file;
        self.resume_at = Some(start.at);
        Ok(())
    }

    /// The position of the first byte not yet cut into a chunk: after the last chunk
    /// [`next_chunk`](Self::next_chunk) returned (the header and blank lines skipped after it
    /// are cut again by a cutter started there, and again skipped).
    pub(super) fn position(&self) -> SetPosition {
        match &self.current {
            Some(cur) => SetPosition {
                file: self.next_file - 1,
                at: FilePosition {
                    offset: cur.offset_base,
                    line: cur.line_base + 1,
                },
            },
            None => SetPosition {
                file: self.next_file,
                at: self.resume_at.unwrap_or(FilePosition::START),
            },
        }
    }

    fn open_next(&mut self) -> Result<bool, ReadError> {
        let Some(path) = self.files.pop_front() else {
            return Ok(false);
        };
        let at = self.resume_at.take().unwrap_or(FilePosition::START);
        self.next_file += 1;
        let label = path.display().to_string();
        let io = |source| ReadError::Io {
            file: label.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        if at.offset > 0 {
            file.seek(SeekFrom::Start(at.offset)).map_err(io)?;
        }
        // Past byte 0 the header and any byte order mark are behind.
        let from_start = at.offset == 0;
        self.current = Some(FileCutter {
            file,
            label: label.into(),
            pending: Vec::new(),
            scanned: 0,
            state: Scan::StartField,
            records: 0,
            newlines: 0,
            last_end: None,
            line_base: at.line.saturating_sub(1),
            offset_base: at.offset,
            at_start: from_start,
            read_bytes: self.read_bytes,
            last_chunk_bytes: 0,
            pool: self.pool.clone(),
            header: self.opts.has_header && from_start,
            eof: false,
        });
        Ok(true)
    }

    /// The next chunk of any file, or `None` when every file is done.
    pub(super) fn next_chunk(&mut self) -> Result<Option<CsvChunk>, ReadError> {
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
                    self.offset_base += BOM.len() as u64;
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
        self.offset_base += end as u64;
        self.newlines = 0;
        chunk
    }
}

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
            next_file: 0,
            resume_at: None,
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
                    offset_base: 0,
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
