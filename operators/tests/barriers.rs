//! Barriers through the built-in operators: the keyed aggregation stages and the columnar hash
//! aggregate keep rows across batches and refuse them, naming themselves; the row-wise
//! transforms (map, filter, flat_map, map_async, the Arrow conversions) pass every one, behind
//! every row that came before it; the part sinks and the NDJSON sink complete one only once
//! the rows before it are in renamed parts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::Int64Type;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use weir_operators::columnar::{Agg, ArrowStream, DeadLetterSink, PartSinkOptions, ToArrowExt};
use weir_operators::connector::{
    CsvOptions, FileFormat, FileSet, NdjsonOptions, ParquetCompression, ParquetOptions, PartCommit,
    PartFormat,
};
use weir_operators::keyed::aggregate::{Project, Sum};
use weir_operators::keyed::route::Strategy;
use weir_operators::keyed::Combine;
use weir_operators::overload::caller::{CallError, CallerConfig};
use weir_operators::prelude::*;
use weir_runtime::barrier::Barriers;
use weir_runtime::{Batch, Chaining, DeadLetter, InstanceInfo, Output, Source, SourceStatus};

const MODES: [Chaining; 2] = [Chaining::Off, Chaining::Operators];

fn pipeline(name: &str, chaining: Chaining) -> Pipeline {
    Pipeline::with_config(
        name,
        PipelineConfig {
            chaining,
            batch_rows: 8,
            ..PipelineConfig::default()
        },
    )
}

/// One step of a [`Script`].
enum Step<B> {
    Rows(B),
    Barrier(u64),
}

/// Called with each barrier id as it completes.
type OnComplete = Arc<dyn Fn(u64) + Send + Sync>;

/// A source that plays its steps in order, one a poll, and calls `on_complete` as its
/// barriers complete.
struct Script<B> {
    steps: VecDeque<Step<B>>,
    on_complete: OnComplete,
    barriers: Barriers,
}

impl<B> Script<B> {
    fn new(steps: impl IntoIterator<Item = Step<B>>, on_complete: OnComplete) -> Self {
        Self {
            steps: steps.into_iter().collect(),
            on_complete,
            barriers: Barriers::default(),
        }
    }
}

impl<B: Batch> Source for Script<B> {
    type Output = B;
    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.barriers = info.barriers.clone();
        let f = self.on_complete.clone();
        self.barriers.subscribe(move |id| f(id));
        Ok(())
    }
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<B>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        match self.steps.pop_front() {
            None => Poll::Ready(Ok(SourceStatus::Done)),
            Some(Step::Rows(b)) => {
                out.emit(b);
                Poll::Ready(Ok(SourceStatus::Continue))
            }
            Some(Step::Barrier(id)) => {
                out.barrier(self.barriers.barrier(id));
                Poll::Ready(Ok(SourceStatus::Continue))
            }
        }
    }
}

fn ignore() -> OnComplete {
    Arc::new(|_| {})
}

/// A barrier ahead of every row, then rows: an operator that refuses barriers only while it
/// holds rows would let this one pass.
fn barrier_first<B>(batches: impl IntoIterator<Item = B>) -> Vec<Step<B>> {
    std::iter::once(Step::Barrier(1))
        .chain(batches.into_iter().map(Step::Rows))
        .collect()
}

/// The run failed at `operator`, which said it cannot pass a barrier.
fn assert_refused(result: Result<RunReport, RunError>, operator: &str, what: &str) {
    let err = result.expect_err("a barrier cannot pass an aggregation");
    let RunError::Operator {
        operator: failed,
        error,
        ..
    } = &err
    else {
        panic!("{what}: an operator error, not {err}");
    };
    assert_eq!(failed, operator, "{what}: {err}");
    let text = error.to_string();
    assert!(
        text.contains(operator) && text.contains("barrier"),
        "{what}: {text}"
    );
}

#[test]
fn keyed_aggregation_stages_refuse_a_barrier_before_they_hold_any_row() {
    // (how the aggregation is planned, the first stage that keeps rows)
    let plans: [(&str, Strategy, Option<Combine>, &str); 4] = [
        ("hash", Strategy::Hash, None, "sum"),
        // A combiner that drains every batch holds nothing: the stage after it refuses.
        (
            "per-batch combiner",
            Strategy::Hash,
            Some(Combine::new(64).per_batch()),
            "sum",
        ),
        (
            "combiner",
            Strategy::Hash,
            Some(Combine::new(64)),
            "sum.combine",
        ),
        ("pkg", Strategy::Pkg, None, "sum.partial"),
    ];
    for chaining in MODES {
        for (plan, strategy, combine, refuses) in plans {
            let rows: Vec<Vec<(u8, i64)>> = (0..10)
                .map(|b| {
                    (0..8)
                        .map(|i| ((b * 8 + i) as u8 % 5, i64::from(i)))
                        .collect()
                })
                .collect();
            let mut p = pipeline("keyed", chaining);
            let mut keyed = p
                .source("rows", Script::new(barrier_first(rows), ignore()))
                .key_by(|r: &(u8, i64)| r.0)
                .strategy(strategy)
                .parallelism(2);
            if let Some(c) = combine {
                keyed = keyed.combine_with(c);
            }
            let _ = keyed
                .aggregate("sum", Project::new(|r: &(u8, i64)| r.1, Sum::<i64>::new()))
                .collect("out");
            assert_refused(p.run(), refuses, &format!("{plan}, {chaining:?}"));
        }
    }
}

fn columns() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::UInt64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

fn record_batch(from: u64, to: u64) -> RecordBatch {
    RecordBatch::try_new(
        columns(),
        vec![
            Arc::new(UInt64Array::from_iter_values((from..to).map(|i| i % 3))) as ArrayRef,
            Arc::new(Int64Array::from_iter_values((from..to).map(|i| i as i64))),
        ],
    )
    .expect("matching columns")
}

#[test]
fn the_hash_aggregate_refuses_a_barrier_before_it_holds_any_group() {
    for chaining in MODES {
        for parallelism in [1, 2] {
            let mut p = pipeline("grouped", chaining);
            let batches = (0..5).map(|b| record_batch(b * 10, b * 10 + 10));
            let source = p.source("batches", Script::new(barrier_first(batches), ignore()));
            let _ = ArrowStream::new(source, columns())
                .aggregate("by_k", &["k"], vec![Agg::sum("v", "total")])
                .expect("a valid plan")
                .parallelism(parallelism)
                .sink("out", Count::new());
            assert_refused(
                p.run(),
                "by_k",
                &format!("parallelism {parallelism}, {chaining:?}"),
            );
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, HeapSize)]
struct Row {
    v: u64,
}

/// What the row-wise pipeline makes of input row `r`: `r * 3` unless `r % 4 == 1`, repeated
/// `r % 5` times as `x * 10 + j`.
fn expected(r: u64) -> Vec<u64> {
    if r % 4 == 1 {
        return Vec::new();
    }
    let x = r * 3;
    (0..x % 5).map(|j| x * 10 + j).collect()
}

#[test]
fn row_wise_transforms_pass_every_barrier_behind_the_rows_before_it() {
    const ROWS: u64 = 600;
    const STEP: u64 = 7;
    for chaining in MODES {
        // Values the sinks took, and what each completed barrier found missing.
        let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let broken: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let completed: Arc<Mutex<Vec<u64>>> = Arc::default();
        let on_complete: OnComplete = {
            let (seen, broken, completed) = (seen.clone(), broken.clone(), completed.clone());
            Arc::new(move |id| {
                let seen = seen.lock().unwrap();
                for r in 0..id {
                    for v in expected(r) {
                        if !seen.contains_key(&v) {
                            broken.lock().unwrap().push((id, v));
                        }
                    }
                }
                completed.lock().unwrap().push(id);
            })
        };
        let mut steps = Vec::new();
        for start in (0..ROWS).step_by(STEP as usize) {
            let end = (start + STEP).min(ROWS);
            steps.push(Step::Rows((start..end).collect::<Vec<u64>>()));
            steps.push(Step::Barrier(end));
        }
        let mut p = pipeline("row-wise", chaining);
        let rows = p
            .source("rows", Script::new(steps, on_complete))
            .map("triple", |r: u64| r * 3)
            .filter("drop", |x: &u64| (x / 3) % 4 != 1)
            // Up to four rows per row: an input batch expands over several output batches.
            .flat_map("repeat", |x: u64| (0..x % 5).map(move |j| x * 10 + j))
            .map_async("echo", CallerConfig::default(), |v: u64| async move {
                tokio::task::yield_now().await;
                Ok::<_, CallError>(Row { v })
            })
            .to_arrow("arrow")
            .expect("a traceable row type")
            .to_rows::<Row>("rows-again");
        let sink_seen = seen.clone();
        let _ = rows.rebalance().sink_with_parallelism("seen", 2, move |_| {
            let seen = sink_seen.clone();
            ForEach::new(move |r: Row| *seen.lock().unwrap().entry(r.v).or_insert(0) += 1)
        });
        p.run().expect("the run succeeds");
        assert_eq!(
            broken.lock().unwrap().first(),
            None,
            "{chaining:?}: a completed barrier is behind every row before it"
        );
        let completed = completed.lock().unwrap();
        assert_eq!(completed.last(), Some(&ROWS), "{chaining:?}");
        assert!(completed.windows(2).all(|w| w[0] < w[1]), "{chaining:?}");
        let want: HashMap<u64, u32> = (0..ROWS).flat_map(expected).map(|v| (v, 1)).collect();
        assert_eq!(*seen.lock().unwrap(), want, "{chaining:?}: every row once");
    }
}

/// The `v` column of every visible part of `format` in `dir`, sorted.
fn values_in_parts(dir: &std::path::Path, format: &PartFormat) -> Vec<i64> {
    let set = FileSet::dir_with_extension(dir, format.extension()).expect("listable");
    if set.files().is_empty() {
        return Vec::new();
    }
    let read = match format {
        PartFormat::Csv { .. } => FileFormat::Csv(CsvOptions::default().with_schema(columns())),
        PartFormat::Ndjson => FileFormat::Ndjson(NdjsonOptions::new(columns())),
        PartFormat::Parquet { .. } => FileFormat::Parquet(ParquetOptions::default()),
    };
    let mut values: Vec<i64> = Vec::new();
    for b in set.read(read).expect("opens") {
        let b = b.expect("a visible part is complete");
        values.extend(
            b.batch
                .column(1)
                .as_primitive::<Int64Type>()
                .values()
                .iter(),
        );
    }
    values.sort_unstable();
    values
}

#[test]
fn a_part_sink_completes_a_barrier_once_the_rows_before_it_are_in_renamed_parts() {
    const ROWS: u64 = 300;
    for format in [
        PartFormat::csv(),
        PartFormat::Ndjson,
        PartFormat::parquet(ParquetCompression::Snappy),
    ] {
        for parallelism in [1, 2] {
            let what = format!("{format:?}, {parallelism} instance(s)");
            let dir = tempfile::tempdir().expect("temp dir");
            let broken: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
            let completed: Arc<Mutex<Vec<u64>>> = Arc::default();
            let on_complete: OnComplete = {
                let (path, format) = (dir.path().to_owned(), format.clone());
                let (broken, completed) = (broken.clone(), completed.clone());
                Arc::new(move |id| {
                    // Read inside the subscriber: what is on disk when the barrier completes.
                    let on_disk = values_in_parts(&path, &format);
                    let missing = (0..id as i64)
                        .filter(|v| on_disk.binary_search(v).is_err())
                        .count();
                    if missing > 0 {
                        broken.lock().unwrap().push((id, missing));
                    }
                    completed.lock().unwrap().push(id);
                })
            };
            let mut steps = Vec::new();
            for start in (0..ROWS).step_by(40) {
                let end = (start + 40).min(ROWS);
                steps.push(Step::Rows(record_batch(start, end)));
                steps.push(Step::Barrier(end));
            }
            let mut p = pipeline("parts", Chaining::Operators);
            let source = p.source("batches", Script::new(steps, on_complete));
            let opts = PartSinkOptions::new(format.clone())
                .max_rows(25)
                .commit(PartCommit::EachPart);
            let summaries = ArrowStream::new(source, columns()).write_parts(
                "parts",
                dir.path(),
                opts,
                parallelism,
            );
            p.run().expect("the run succeeds");
            assert_eq!(broken.lock().unwrap().first(), None, "{what}");
            assert_eq!(completed.lock().unwrap().last(), Some(&ROWS), "{what}");
            let written: u64 = summaries.take_all().iter().map(|s| s.rows).sum();
            assert_eq!(written, ROWS, "{what}");
            assert_eq!(
                values_in_parts(dir.path(), &format),
                (0..ROWS as i64).collect::<Vec<_>>(),
                "{what}"
            );
        }
    }
}

#[test]
fn a_part_sink_that_commits_on_finish_refuses_a_barrier_saying_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = pipeline("parts", Chaining::Operators);
    let steps = vec![Step::Rows(record_batch(0, 10)), Step::Barrier(10)];
    let source = p.source("batches", Script::new(steps, ignore()));
    let _ = ArrowStream::new(source, columns()).write_parts(
        "parts",
        dir.path(),
        PartSinkOptions::new(PartFormat::Ndjson),
        1,
    );
    let err = p
        .run()
        .expect_err("parts committed on finish cannot be durable before it");
    assert_eq!(err.operator(), Some("parts"), "{err}");
    assert!(err.to_string().contains("PartCommit::EachPart"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).expect("listable").collect();
    assert!(left.is_empty(), "the failed sink removed its hidden parts");
}

#[test]
fn a_dead_letter_sink_completes_a_barrier_once_the_letters_before_it_are_in_renamed_parts() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Per completed barrier: the letters on disk then.
    let seen: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
    let on_complete: OnComplete = {
        let (path, seen) = (dir.path().to_owned(), seen.clone());
        Arc::new(move |id| {
            let lines: usize = FileSet::dir(&path)
                .expect("listable")
                .files()
                .iter()
                .map(|f| {
                    std::fs::read_to_string(f)
                        .expect("readable")
                        .lines()
                        .count()
                })
                .sum();
            seen.lock().unwrap().push((id, lines));
        })
    };
    let letters = |n: usize| -> Vec<DeadLetter> {
        (0..n)
            .map(|i| DeadLetter::new("bad", format!("row {i}")))
            .collect()
    };
    let steps = vec![
        Step::Rows(letters(3)),
        Step::Barrier(3),
        Step::Rows(letters(4)),
        Step::Barrier(7),
    ];
    let mut p = pipeline("letters", Chaining::Operators);
    let opts = PartSinkOptions::new(PartFormat::Ndjson).commit(PartCommit::EachPart);
    let summary = p
        .source("letters", Script::new(steps, on_complete))
        .sink("dead", DeadLetterSink::new(dir.path(), opts));
    p.run().expect("the run succeeds");
    assert_eq!(*seen.lock().unwrap(), vec![(3, 3), (7, 7)]);
    assert_eq!(summary.take().map(|s| s.files.len()), Some(2));
}

/// The numbers in the visible NDJSON parts of `dir` (one a line), sorted.
fn numbers_in_parts(dir: &std::path::Path) -> Vec<u64> {
    let set = FileSet::dir_with_extension(dir, "ndjson").expect("listable");
    let mut numbers: Vec<u64> = Vec::new();
    for f in set.files() {
        let text = std::fs::read_to_string(f).expect("readable");
        numbers.extend(
            text.lines()
                .map(|l| l.parse::<u64>().expect("a whole line")),
        );
    }
    numbers.sort_unstable();
    numbers
}

#[test]
fn an_ndjson_sink_completes_a_barrier_once_the_rows_before_it_are_in_renamed_parts() {
    const ROWS: u64 = 300;
    const STEP: u64 = 40;
    // (instances, behind a throttle)
    for (parallelism, throttled) in [(1, false), (2, false), (1, true)] {
        for chaining in MODES {
            let what = format!("{parallelism} instance(s), throttled {throttled}, {chaining:?}");
            let dir = tempfile::tempdir().expect("temp dir");
            let broken: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
            let completed: Arc<Mutex<Vec<u64>>> = Arc::default();
            let on_complete: OnComplete = {
                let path = dir.path().to_owned();
                let (broken, completed) = (broken.clone(), completed.clone());
                Arc::new(move |id| {
                    // Read inside the subscriber: what is on disk when the barrier completes.
                    let on_disk = numbers_in_parts(&path);
                    let missing = (0..id)
                        .filter(|v| on_disk.binary_search(v).is_err())
                        .count();
                    if missing > 0 {
                        broken.lock().unwrap().push((id, missing));
                    }
                    completed.lock().unwrap().push(id);
                })
            };
            let mut steps = Vec::new();
            for start in (0..ROWS).step_by(STEP as usize) {
                let end = (start + STEP).min(ROWS);
                steps.push(Step::Rows((start..end).collect::<Vec<u64>>()));
                steps.push(Step::Barrier(end));
            }
            let mut p = pipeline("ndjson", chaining);
            let rows = p
                .source("rows", Script::new(steps, on_complete))
                .map("same", |r: u64| r);
            let sink = NdjsonSink::new(dir.path());
            let summaries = match (parallelism, throttled) {
                (1, false) => rows.sink("files", sink),
                (1, true) => rows.sink("files", Throttle::new(sink, 1e12)),
                (n, _) => rows
                    .rebalance()
                    .sink_with_parallelism("files", n, move |_| sink.clone()),
            };
            p.run().expect("the run succeeds");
            assert_eq!(broken.lock().unwrap().first(), None, "{what}");
            assert_eq!(completed.lock().unwrap().last(), Some(&ROWS), "{what}");
            assert_eq!(
                numbers_in_parts(dir.path()),
                (0..ROWS).collect::<Vec<_>>(),
                "{what}"
            );
            if parallelism == 1 {
                // Every barrier completed a part of the rows since the one before.
                let summary = summaries.take().expect("one instance");
                let per_part: Vec<u64> = summary.files.iter().map(|f| f.rows).collect();
                let mut want = vec![STEP; (ROWS / STEP) as usize];
                want.push(ROWS % STEP);
                assert_eq!(per_part, want, "{what}");
            }
        }
    }
}
