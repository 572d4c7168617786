//! `csv_split` against [`CsvReader`] and an RFC 4180 reference on hostile inputs: CR, CRLF, LF
//! and mixed line ends, byte order marks, blank lines, quotes, invalid UTF-8, ragged rows, chunk
//! and read boundaries anywhere.

use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use arrow::util::display::array_value_to_string;
use proptest::prelude::*;
use weir_runtime::{InputPort, OperatorError, Pipeline, Sink};

use super::*;
use crate::connector::{
    BadRecordPolicy, CsvReader, DeadLetter, FileSet, HeaderCheck, RecordError, LINE_COLUMN,
};
use crate::transform::StreamExt;

/// A schema of `names`, every column non-null text.
pub(super) fn text_schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ))
}

pub(super) fn opts(schema: SchemaRef, has_header: bool, policy: BadRecordPolicy) -> CsvOptions {
    CsvOptions {
        has_header,
        line_column: true,
        raw_column: true,
        bad_records: policy,
        batch_rows: 3,
        ..CsvOptions::default().with_schema(schema)
    }
}

/// What a whole read produced: each row's line and fields as text, dead letters, skips, the
/// error's text, and the records handed to the parser.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Outcome {
    pub(super) rows: Vec<Row>,
    pub(super) dead: Vec<DeadLetter>,
    pub(super) skipped: u64,
    pub(super) error: Option<String>,
    pub(super) records: Option<usize>,
}

impl Outcome {
    pub(super) fn add(&mut self, batch: &RecordBatch) {
        let lines = batch
            .column_by_name(LINE_COLUMN)
            .expect("a line column")
            .as_primitive::<UInt64Type>();
        let data = batch.num_columns() - 2;
        for r in 0..batch.num_rows() {
            let fields = (0..data)
                .map(|c| array_value_to_string(batch.column(c), r).expect("displayable"))
                .collect();
            self.rows.push((lines.value(r), fields));
        }
    }

    /// Rows out + dead letters + skips.
    fn handled(&self) -> usize {
        self.rows.len() + self.dead.len() + usize::try_from(self.skipped).expect("small")
    }
}

pub(super) fn write(data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("f.csv");
    std::fs::write(&path, data).expect("writable");
    (dir, path)
}

fn by_reader(path: &Path, opts: CsvOptions) -> Outcome {
    let mut out = Outcome::default();
    let reader = match CsvReader::from_path(path, opts) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    for read in reader {
        match read {
            Ok(r) => {
                out.add(&r.batch);
                out.dead.extend(r.dead_letters);
                out.skipped += r.skipped;
            }
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    out
}

/// What `csv_split` does, without the pipeline: the chunker cuts chunks of `records` records
/// (or `target` bytes) reading `read_bytes` at a time, a parser parses each as `CsvParse` does.
fn by_split(
    path: &Path,
    opts: CsvOptions,
    records: usize,
    target: usize,
    read_bytes: u64,
) -> Outcome {
    let mut cutter = Cutter {
        files: [path.to_path_buf()].into(),
        next_file: 0,
        resume_at: None,
        current: None,
        schema: opts.schema.clone().expect("declared"),
        opts: opts.clone(),
        records,
        target_bytes: target,
        max_record_bytes: 1 << 20,
        read_bytes,
        bytes_read: 0,
        pool: Arc::default(),
    };
    let mut parser = ChunkParser::new(opts).expect("a parser");
    let mut out = Outcome {
        records: Some(0),
        ..Outcome::default()
    };
    loop {
        let chunk = match cutter.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        };
        *out.records.as_mut().expect("counted") += chunk.records;
        let got = parser
            .parse(&chunk.data, &chunk.file, chunk.first_line, chunk.records)
            .expect("assembles");
        if let Some(r) = got.read {
            out.add(&r.batch);
            out.dead.extend(r.dead_letters);
            out.skipped += r.skipped;
        }
        if let Some(e) = got.error {
            out.error = Some(e.to_string());
            break;
        }
    }
    if out.error.is_none() {
        let size = std::fs::metadata(path).expect("exists").len();
        assert_eq!(cutter.bytes_read, size, "every byte is read");
    }
    out
}

/// One record of the reference reading: its first line and its fields.
type Record = (u64, Vec<Vec<u8>>);

/// A row: its line and its fields as text.
pub(super) type Row = (u64, Vec<String>);

/// RFC 4180 as Python's `csv` module reads it (`newline=''`, `utf-8-sig`, not strict), blank
/// lines skipped: `\r\n`, `\n` and a lone `\r` end records and lines outside quotes and lines
/// inside them; a quote opens a quoted field only at a field's start; `""` in one is a quote;
/// text after a closing quote joins the field; a BOM is stripped at byte 0 only.
fn reference(data: &[u8]) -> Vec<Record> {
    #[derive(PartialEq)]
    enum St {
        Between,
        Start,
        Field,
        Quoted,
        QuoteInQuoted,
    }
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let mut out = Vec::new();
    let (mut line, mut first) = (1u64, 1u64);
    let (mut fields, mut field) = (Vec::new(), Vec::new());
    let mut st = St::Between;
    for (i, &b) in data.iter().enumerate() {
        let term = b == b'\r' || b == b'\n';
        let is_break = b == b'\r' || (b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
        if st == St::Between && !term {
            st = St::Start;
            first = line;
        }
        match st {
            St::Between => {}
            St::Start | St::Field | St::QuoteInQuoted if term => {
                fields.push(std::mem::take(&mut field));
                out.push((first, std::mem::take(&mut fields)));
                st = St::Between;
            }
            St::Start | St::Field | St::QuoteInQuoted if b == b',' => {
                fields.push(std::mem::take(&mut field));
                st = St::Start;
            }
            St::Start if b == b'"' => st = St::Quoted,
            St::Quoted if b == b'"' => st = St::QuoteInQuoted,
            St::QuoteInQuoted if b == b'"' => {
                field.push(b'"');
                st = St::Quoted;
            }
            St::Quoted => field.push(b),
            St::Start | St::Field | St::QuoteInQuoted => {
                field.push(b);
                st = St::Field;
            }
        }
        if is_break {
            line += 1;
        }
    }
    if st != St::Between {
        fields.push(field);
        out.push((first, fields));
    }
    out
}

/// The rows and dead-letter (line, reason) pairs the reference gives for `records` read with
/// text columns named `names` under `DeadLetter`.
fn expected(records: &[Record], names: &[&str]) -> (Vec<Row>, Vec<(u64, String)>) {
    let (mut rows, mut dead) = (Vec::new(), Vec::new());
    for (line, fields) in records {
        if fields.len() != names.len() {
            let e = RecordError::FieldCount {
                expected: names.len(),
                found: fields.len(),
            };
            dead.push((*line, e.to_string()));
            continue;
        }
        let text: Result<Vec<String>, usize> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| String::from_utf8(f.clone()).map_err(|_| i))
            .collect();
        match text {
            Ok(t) => rows.push((*line, t)),
            Err(i) => {
                let e = RecordError::InvalidUtf8 {
                    column: names[i].to_owned(),
                };
                dead.push((*line, e.to_string()));
            }
        }
    }
    (rows, dead)
}

pub(super) const NAMES: [&str; 3] = ["c0", "c1", "c2"];

/// Pieces of hostile CSV.
const PIECES: &[&[u8]] = &[
    b"1",
    b"ab",
    b"",
    b",",
    b",",
    b",",
    b"\n",
    b"\n",
    b"\r\n",
    b"\r",
    b"\"",
    b"\"\"",
    b"\"x\r\ny\"",
    b"\"a,\"\"b\"",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3\xa9",
    b" ",
];

/// Line ends of the header and blank lines before it.
const ENDS: &[&[u8]] = &[b"\n", b"\r\n", b"\r"];

pub(super) fn hostile() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(ENDS), 0..3),
        prop::sample::select(ENDS),
        prop::collection::vec(prop::sample::select(PIECES), 0..40),
        any::<bool>(),
    )
        .prop_map(|(bom, blanks, end, pieces, header)| {
            let mut data = Vec::new();
            if bom {
                data.extend_from_slice(b"\xef\xbb\xbf");
            }
            if header {
                blanks.iter().for_each(|b| data.extend_from_slice(b));
                data.extend_from_slice(b"c0,c1,c2");
                data.extend_from_slice(end);
            }
            pieces.iter().for_each(|p| data.extend_from_slice(p));
            (data, header)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// `csv_split` gives what `CsvReader` gives (rows with their lines, dead letters with line,
    /// reason and raw text, skips, the error), both give what the reference reading gives, and
    /// every record is a row, a dead letter or a skip.
    #[test]
    fn split_equals_the_reader_and_the_reference(
        (data, header) in hostile(),
        policy in prop::sample::select(vec![
            BadRecordPolicy::DeadLetter,
            BadRecordPolicy::DeadLetter,
            BadRecordPolicy::SkipCounted,
            BadRecordPolicy::Fail,
        ]),
        records in 1usize..5,
        target in 1usize..48,
        read_bytes in prop::sample::select(vec![1u64, 2, 3, 5, 8, 13, 1 << 20]),
    ) {
        let (_dir, path) = write(&data);
        let o = opts(text_schema(&NAMES), header, policy);
        let want = by_reader(&path, o.clone());
        let got = by_split(&path, o, records, target, read_bytes);
        prop_assert_eq!(&got.rows, &want.rows);
        prop_assert_eq!(&got.dead, &want.dead);
        prop_assert_eq!(got.skipped, want.skipped);
        prop_assert_eq!(&got.error, &want.error);

        let mut refs = reference(&data);
        if header {
            let (_, names) = refs.remove(0);
            prop_assert_eq!(names, NAMES.map(|n| n.as_bytes().to_vec()).to_vec());
        }
        let (rows, dead) = expected(&refs, &NAMES);
        match dead.first() {
            Some(&(line, _)) if policy == BadRecordPolicy::Fail => {
                // The rows before the first bad record, then its error.
                let before: Vec<_> = rows.iter().filter(|r| r.0 < line).cloned().collect();
                prop_assert_eq!(&want.rows, &before);
                let at = format!(":{line}: bad record");
                prop_assert!(
                    want.error.as_deref().is_some_and(|e| e.contains(&at)),
                    "{:?} {}", want.error, at
                );
            }
            _ => {
                prop_assert_eq!(&want.error, &None);
                prop_assert_eq!(&want.rows, &rows);
                match policy {
                    BadRecordPolicy::SkipCounted => {
                        prop_assert_eq!(want.skipped, dead.len() as u64);
                    }
                    _ => {
                        let reasons: Vec<(u64, String)> = want
                            .dead
                            .iter()
                            .map(|d| (d.line.unwrap_or(0), d.reason.clone()))
                            .collect();
                        prop_assert_eq!(reasons, dead);
                    }
                }
                // Rows in (the records read) = rows out + dead letters (+ skips), in both.
                prop_assert_eq!(want.handled(), refs.len());
                prop_assert_eq!(got.records, Some(refs.len()));
                prop_assert_eq!(got.handled(), refs.len());
            }
        }
    }
}

/// Both readings of `data` (with a header, text columns `c0..c2`, dead letters), checked equal.
fn both(data: &[u8]) -> Outcome {
    let (_dir, path) = write(data);
    let o = opts(text_schema(&NAMES), true, BadRecordPolicy::DeadLetter);
    let want = by_reader(&path, o.clone());
    for (records, target, read_bytes) in [(1, 1, 1), (2, 5, 3), (1024, 4 << 20, 1 << 20)] {
        let mut got = by_split(&path, o.clone(), records, target, read_bytes);
        got.records = None;
        assert_eq!(
            got, want,
            "{data:?} cut at {records} records / {target} bytes"
        );
    }
    want
}

fn row(line: u64, fields: [&str; 3]) -> Row {
    (line, fields.map(str::to_owned).to_vec())
}

#[test]
fn a_header_ended_by_a_lone_cr_keeps_the_first_row() {
    let got = both(b"c0,c1,c2\r1,a,b\n2,c,d\n3,e,f\n");
    assert_eq!(
        got.rows,
        vec![
            row(2, ["1", "a", "b"]),
            row(3, ["2", "c", "d"]),
            row(4, ["3", "e", "f"])
        ]
    );
    assert!(got.dead.is_empty() && got.error.is_none());
}

#[test]
fn a_cr_only_file_yields_every_row_with_its_line() {
    let mut data = b"c0,c1,c2\r".to_vec();
    for i in 0..400 {
        data.extend_from_slice(format!("{i},x,y\r").as_bytes());
    }
    let got = both(&data);
    assert_eq!(got.rows.len(), 400);
    assert_eq!(got.rows[399], row(401, ["399", "x", "y"]));

    // No record is longer than 4096 bytes, though the file has no `\n`.
    let (_dir, path) = write(&data);
    let o = opts(text_schema(&NAMES), true, BadRecordPolicy::Fail);
    let mut cutter = Cutter {
        files: [path].into(),
        next_file: 0,
        resume_at: None,
        current: None,
        schema: text_schema(&NAMES),
        opts: o,
        records: 100,
        target_bytes: 4 << 20,
        max_record_bytes: 4096,
        read_bytes: READ_BYTES as u64,
        bytes_read: 0,
        pool: Arc::default(),
    };
    let mut records = 0;
    while let Some(c) = cutter.next_chunk().expect("records end at each CR") {
        records += c.records;
    }
    assert_eq!(records, 400);
}

#[test]
fn blank_lines_before_the_header_are_skipped() {
    let got = both(b"\n\r\n\r\nc0,c1,c2\n1,a,b\n\n2,c,d");
    assert_eq!(
        got.rows,
        vec![row(5, ["1", "a", "b"]), row(7, ["2", "c", "d"])]
    );
}

#[test]
fn a_byte_order_mark_is_stripped_at_byte_0_only() {
    // Without a header, the first field of row 1 is typed: a kept mark would dead-letter it.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let data = b"\xef\xbb\xbf1,a\n2,\xef\xbb\xbfb\n\xef\xbb\xbf3,c\n\xef\xbb\xbf4,\"d\"\n";
    let (_dir, path) = write(data);
    let o = opts(schema, false, BadRecordPolicy::DeadLetter);
    let want = by_reader(&path, o.clone());
    let got = by_split(&path, o, 1, 1, 1);
    assert_eq!(got.rows, want.rows);
    assert_eq!(got.dead, want.dead);
    assert_eq!(
        want.rows,
        vec![
            (1, vec!["1".to_owned(), "a".to_owned()]),
            (2, vec!["2".to_owned(), "\u{feff}b".to_owned()]),
        ]
    );
    // U+FEFF inside the file is data: `\u{feff}3` is not a number (on a plain line or not).
    assert_eq!(want.dead.len(), 2);
    assert_eq!(want.dead[0].line, Some(3));
    assert_eq!(want.dead[0].raw, "\u{feff}3,c");
    assert_eq!(want.dead[1].line, Some(4));
    assert_eq!(want.dead[1].raw, "\u{feff}4,\"d\"");

    // With a header: the mark before it is stripped; one in a quoted field is data.
    let got = both(b"\xef\xbb\xbfc0,c1,c2\r\n\"\xef\xbb\xbf\",\xef\xbb\xbf\"q\",x\r\n");
    assert_eq!(got.rows, vec![row(2, ["\u{feff}", "\u{feff}\"q\"", "x"])]);
}

#[test]
fn header_names_must_be_the_declared_ones() {
    let data = b"c0,c2,c1\n1,a,b\n";
    let (_dir, path) = write(data);
    let file = path.display().to_string();
    let o = opts(text_schema(&NAMES), true, BadRecordPolicy::Fail);
    let want = format!(
        "{file}: header names [\"c0\", \"c2\", \"c1\"] are not the declared schema's \
         [\"c0\", \"c1\", \"c2\"] (declare the file's names, or read by position with \
         HeaderCheck::CountOnly)"
    );
    assert_eq!(by_reader(&path, o.clone()).error.as_deref(), Some(&*want));
    assert_eq!(
        by_split(&path, o.clone(), 2, 64, 4).error.as_deref(),
        Some(&*want)
    );

    // The opt-out reads by position.
    let o = o.with_header_names(HeaderCheck::CountOnly);
    let want = by_reader(&path, o.clone());
    assert_eq!(want.rows, vec![row(2, ["1", "a", "b"])]);
    assert_eq!(by_split(&path, o.clone(), 2, 64, 4).rows, want.rows);

    // The count is checked either way.
    let (_dir, path) = write(b"c0,c1\n1,a\n");
    let err = by_split(&path, o, 2, 64, 4).error;
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("header has 2 fields but the declared schema has 3")),
        "{err:?}"
    );
}

/// Collects batches (bounded by the test's small inputs).
#[derive(Default)]
pub(super) struct Batches(Vec<RecordBatch>);

impl Sink for Batches {
    type Input = RecordBatch;
    type Output = Vec<RecordBatch>;
    fn on_batch(&mut self, _: InputPort, b: RecordBatch) -> Result<(), OperatorError> {
        self.0.push(b);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>, OperatorError> {
        Ok(std::mem::take(&mut self.0))
    }
}

/// Through a pipeline: every row of a mixed CR / CRLF / LF file arrives, and the parse
/// operator's rows in (the records cut) = rows out + dead letters.
#[test]
fn csv_split_delivers_every_record_of_mixed_line_ends() {
    let mut data = b"\xef\xbb\xbf\r\nc0,c1,c2\r".to_vec();
    for i in 0..300 {
        let end: &[u8] = [&b"\n"[..], b"\r\n", b"\r"][i % 3];
        let bad = if i % 7 == 0 { ",extra" } else { "" };
        data.extend_from_slice(format!("{i},\"q{i}\r\nz\",v{bad}").as_bytes());
        data.extend_from_slice(end);
    }
    let (_dir, path) = write(&data);
    let o = opts(text_schema(&NAMES), true, BadRecordPolicy::DeadLetter);
    let want = by_reader(&path, o.clone());
    assert_eq!(want.rows.len() + want.dead.len(), 300);

    let mut p = Pipeline::new("split");
    let set = FileSet::from_paths("f", vec![path.clone()]);
    let split = SplitOptions {
        parallelism: 2,
        records: Some(7),
        target_bytes: 100,
        ..SplitOptions::default()
    };
    let (stream, _) = csv_split(&mut p, "parse", set, o, split).expect("declared schema");
    let dead = stream.dead_letters().collect("dead");
    let out = stream.into_inner().sink("collect", Batches::default());
    let report = p.run().expect("runs");
    let mut got = Outcome::default();
    for b in out.take_all().into_iter().flatten() {
        got.add(&b);
    }
    got.rows.sort();
    let mut dead = dead.take().expect("collected");
    dead.sort_by_key(|d| d.line);
    assert_eq!(got.rows, want.rows);
    assert_eq!(dead, want.dead);
    let parse = report
        .operators
        .iter()
        .find(|o| o.name == "parse")
        .expect("the parse operator");
    assert_eq!(parse.rows_in, 300);
    assert_eq!(
        parse.rows_in,
        parse.rows_out + parse.dead_letters + parse.skipped
    );
}
