//! The split reader rewinds: for every position it reported after a chunk, the rows, dead
//! letters (with their line numbers), skips and error before it, followed by those of a reader
//! started there, are exactly those of one uninterrupted read, over several hostile files.

use std::path::PathBuf;

use proptest::prelude::*;
use weir_runtime::Pipeline;

use super::hostile::{hostile, opts, text_schema, write, Batches, Outcome, Row, NAMES};
use super::*;
use crate::connector::{
    BadRecordPolicy, CsvReader, FileFormat, FilePosition, FileSetReader, ReadError,
};
use crate::source::Rewind;
use crate::transform::StreamExt;

/// How far a read had got after one chunk: its position, and the outcome's lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Mark {
    position: SetPosition,
    rows: usize,
    dead: usize,
    skipped: u64,
}

/// Reads `files` from `start` as `csv_split` does (without the pipeline), marking the
/// position after every chunk.
fn read_from(
    files: &[PathBuf],
    o: &CsvOptions,
    records: usize,
    target: usize,
    read_bytes: u64,
    start: SetPosition,
) -> (Outcome, Vec<Mark>) {
    let mut cutter = Cutter {
        records,
        target_bytes: target,
        max_record_bytes: 1 << 20,
        read_bytes,
        ..Cutter::starting_at(
            files.iter().cloned(),
            start,
            o.clone(),
            o.schema.clone().expect("declared"),
            Arc::default(),
        )
    };
    assert_eq!(cutter.position(), start, "a cutter starts where it is told");
    let mut parser = ChunkParser::new(o.clone()).expect("a parser");
    let mut out = Outcome::default();
    let mut marks = Vec::new();
    loop {
        let chunk = match cutter.next_chunk() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e.to_string());
                return (out, marks);
            }
        };
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
            return (out, marks);
        }
        marks.push(Mark {
            position: cutter.position(),
            rows: out.rows.len(),
            dead: out.dead.len(),
            skipped: out.skipped,
        });
    }
    // Done: the position is past the last file.
    let end = cutter.position();
    assert_eq!(end.file, files.len());
    assert_eq!(end.at, FilePosition::START);
    (out, marks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_read_resumed_at_any_reported_position_completes_the_uninterrupted_read(
        (first, header) in hostile(),
        (second, _) in hostile(),
        policy in prop::sample::select(vec![
            BadRecordPolicy::DeadLetter,
            BadRecordPolicy::SkipCounted,
            BadRecordPolicy::Fail,
        ]),
        records in 1usize..4,
        target in 1usize..32,
        read_bytes in prop::sample::select(vec![1u64, 3, 7, 1 << 20]),
    ) {
        // The second file gets the first's header, so both read under one schema.
        let second = if header {
            [b"c0,c1,c2\r\n".as_slice(), &second].concat()
        } else {
            second
        };
        let (_d1, p1) = write(&first);
        let (_d2, p2) = write(&second);
        let files = [p1, p2];
        let o = opts(text_schema(&NAMES), header, policy);
        let (whole, marks) = read_from(&files, &o, records, target, read_bytes, SetPosition::START);
        for mark in &marks {
            let (rest, _) = read_from(&files, &o, records, target, read_bytes, mark.position);
            let rows: Vec<Row> = [&whole.rows[..mark.rows], &rest.rows].concat();
            prop_assert_eq!(&rows, &whole.rows, "rows resumed at {:?}", mark.position);
            let dead = [&whole.dead[..mark.dead], &rest.dead].concat();
            prop_assert_eq!(&dead, &whole.dead, "dead letters resumed at {:?}", mark.position);
            prop_assert_eq!(mark.skipped + rest.skipped, whole.skipped);
            prop_assert_eq!(&rest.error, &whole.error);
        }
    }
}

#[test]
fn csv_split_started_at_a_position_reads_the_rest_with_its_line_numbers() {
    let data = b"c0,c1,c2\r\n1,2,3\r\n4,\"5\r\nfive\",6\n\nbad\n7,8,9\r\n10,11,12";
    let (_dir, path) = write(data);
    let o = opts(text_schema(&NAMES), true, BadRecordPolicy::DeadLetter);
    let files = [path.clone()];
    let (whole, marks) = read_from(&files, &o, 1, 1 << 20, 1 << 20, SetPosition::START);
    // After `1,2,3`: byte 17, line 3.
    let mark = marks[0];
    assert_eq!(
        mark.position,
        SetPosition {
            file: 0,
            at: FilePosition {
                offset: 17,
                line: 3
            }
        }
    );

    let mut p = Pipeline::new("resume");
    let split = SplitOptions {
        parallelism: 2,
        records: Some(1),
        start: mark.position,
        ..SplitOptions::default()
    };
    let set = FileSet::from_paths("f", files.to_vec());
    let (stream, _) = csv_split(&mut p, "parse", set, o, split).expect("declared schema");
    let dead = stream.dead_letters().collect("dead");
    let out = stream.into_inner().sink("collect", Batches::default());
    p.run().expect("runs");
    let mut got = Outcome::default();
    for b in out.take_all().into_iter().flatten() {
        got.add(&b);
    }
    got.rows.sort();
    assert_eq!(got.rows, whole.rows[mark.rows..].to_vec());
    let mut dead = dead.take().expect("collected");
    dead.sort_by_key(|d| d.line);
    assert_eq!(dead, whole.dead[mark.dead..].to_vec());
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].line, Some(6), "the bad line keeps its number");
}

#[test]
fn the_chunker_reports_its_start_before_it_reads() {
    let (_dir, path) = write(b"a,b,c\n");
    let o = opts(text_schema(&NAMES), false, BadRecordPolicy::DeadLetter);
    let start = SetPosition {
        file: 0,
        at: FilePosition { offset: 0, line: 1 },
    };
    let cutter = Cutter::starting_at(
        [path],
        start,
        o.clone(),
        o.schema.expect("declared"),
        Arc::default(),
    );
    let chunker = CsvChunker::new(cutter, Arc::default());
    assert_eq!(chunker.position(), start);
}

/// How far a sequential read had got after one batch.
#[derive(Debug, Clone, PartialEq)]
struct ReadMark<P> {
    position: P,
    rows: usize,
    dead: usize,
    skipped: u64,
}

/// Drains `reader`, marking `position()` after every batch; the error, if any, ends it.
fn drain<R, P>(
    reader: Result<R, ReadError>,
    position: impl Fn(&R) -> P,
) -> (Outcome, Vec<ReadMark<P>>)
where
    R: Iterator<Item = Result<crate::connector::ReadBatch, ReadError>>,
{
    let mut out = Outcome::default();
    let mut marks = Vec::new();
    let mut reader = match reader {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(e.to_string());
            return (out, marks);
        }
    };
    while let Some(read) = reader.next() {
        match read {
            Ok(r) => {
                out.add(&r.batch);
                out.dead.extend(r.dead_letters);
                out.skipped += r.skipped;
                marks.push(ReadMark {
                    position: position(&reader),
                    rows: out.rows.len(),
                    dead: out.dead.len(),
                    skipped: out.skipped,
                });
            }
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    (out, marks)
}

/// `rest` read from `mark` completes `whole`.
fn completes<P: std::fmt::Debug>(
    whole: &Outcome,
    mark: &ReadMark<P>,
    rest: &Outcome,
) -> Result<(), TestCaseError> {
    let rows: Vec<Row> = [&whole.rows[..mark.rows], &rest.rows].concat();
    prop_assert_eq!(&rows, &whole.rows, "rows resumed at {:?}", mark.position);
    let dead = [&whole.dead[..mark.dead], &rest.dead].concat();
    prop_assert_eq!(
        &dead,
        &whole.dead,
        "dead letters resumed at {:?}",
        mark.position
    );
    prop_assert_eq!(mark.skipped + rest.skipped, whole.skipped);
    prop_assert_eq!(
        &rest.error,
        &whole.error,
        "error resumed at {:?}",
        mark.position
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_reader_resumed_at_any_reported_position_completes_the_uninterrupted_read(
        (data, header) in hostile(),
        policy in prop::sample::select(vec![
            BadRecordPolicy::DeadLetter,
            BadRecordPolicy::SkipCounted,
            BadRecordPolicy::Fail,
        ]),
        batch_rows in 1usize..4,
        declared in any::<bool>(),
    ) {
        let (_dir, path) = write(&data);
        let mut o = opts(text_schema(&NAMES), header, policy).with_batch_rows(batch_rows);
        if !declared {
            // Inferred: the first records are read ahead and replayed.
            o.schema = None;
            o.infer_rows = 2;
        }
        let (whole, marks) = drain(CsvReader::from_path(&path, o.clone()), CsvReader::position);
        let (again, _) = drain(
            CsvReader::from_path_at(&path, o.clone(), FilePosition::START),
            CsvReader::position,
        );
        prop_assert_eq!(&again, &whole, "a reader opened at the start reads it all");
        for mark in &marks {
            let (rest, _) = drain(
                CsvReader::from_path_at(&path, o.clone(), mark.position),
                CsvReader::position,
            );
            completes(&whole, mark, &rest)?;
        }
    }

    #[test]
    fn a_file_set_resumed_at_any_reported_position_completes_the_uninterrupted_read(
        (first, header) in hostile(),
        (second, _) in hostile(),
        policy in prop::sample::select(vec![
            BadRecordPolicy::DeadLetter,
            BadRecordPolicy::SkipCounted,
            BadRecordPolicy::Fail,
        ]),
        batch_rows in 1usize..4,
    ) {
        let second = if header {
            [b"c0,c1,c2\r\n".as_slice(), &second].concat()
        } else {
            second
        };
        let (_d1, p1) = write(&first);
        let (_d2, p2) = write(&second);
        let set = FileSet::from_paths("set", vec![p1, p2]);
        let format = FileFormat::Csv(opts(text_schema(&NAMES), header, policy).with_batch_rows(batch_rows));
        let (whole, marks) = drain(set.clone().read(format.clone()), FileSetReader::position);
        for mark in &marks {
            let (rest, _) = drain(
                FileSetReader::new_at(set.clone(), format.clone(), mark.position),
                FileSetReader::position,
            );
            completes(&whole, mark, &rest)?;
        }
    }
}

#[test]
fn the_reader_resumes_after_a_crlf_split_by_its_position() {
    // `1,2,3\r` ends a record; the `\n` after it is the rest of its line break.
    let data = b"c0,c1,c2\r\n1,2,3\r\n4,5,6\r\n\r\n7,8,9\n";
    let (_dir, path) = write(data);
    let o = opts(text_schema(&NAMES), true, BadRecordPolicy::DeadLetter).with_batch_rows(1);
    let (whole, marks) = drain(CsvReader::from_path(&path, o.clone()), CsvReader::position);
    assert_eq!(
        whole.rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        [2, 3, 5]
    );
    for mark in &marks {
        let (rest, _) = drain(
            CsvReader::from_path_at(&path, o.clone(), mark.position),
            CsvReader::position,
        );
        assert_eq!(
            rest.rows,
            whole.rows[mark.rows..].to_vec(),
            "at {:?}",
            mark.position
        );
    }
    let end = marks.last().expect("three batches").position;
    assert_eq!(end.offset, data.len() as u64);
    assert_eq!(end.line, 6);
}
