//! Tests of the columnar operators, sources and sinks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
};
use arrow::compute::concat_batches;
use arrow::compute::kernels::cmp::gt;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};
use proptest::prelude::*;
use weir_runtime::{
    HeapSize, InputPort, OperatorError, Pipeline, PipelineConfig, Sink, SinkHandle,
};

use super::*;
use crate::connector::{
    CsvOptions, FileFormat, FileSet, NdjsonOptions, ParquetCompression, ParquetOptions, PartFormat,
};
use crate::transform::StreamExt;

/// Collects batches (a test sink; bounded by the test's small inputs).
#[derive(Default)]
struct Batches(Vec<RecordBatch>);

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

fn collect(stream: ArrowStream) -> (SchemaRef, SinkHandle<Vec<RecordBatch>>) {
    let schema = stream.schema().clone();
    (
        schema,
        stream.into_inner().sink("collect", Batches::default()),
    )
}

fn all(schema: &SchemaRef, handle: &SinkHandle<Vec<RecordBatch>>) -> RecordBatch {
    let batches: Vec<RecordBatch> = handle.take_all().into_iter().flatten().collect();
    concat_batches(schema, &batches).expect("batches of the stream's schema")
}

fn kv_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn kv(keys: &[&str], values: &[Option<i64>]) -> RecordBatch {
    RecordBatch::try_new(
        kv_schema(),
        vec![
            Arc::new(StringArray::from(keys.to_vec())) as ArrayRef,
            Arc::new(Int64Array::from(values.to_vec())),
        ],
    )
    .expect("matching columns")
}

fn source(p: &mut Pipeline, batches: Vec<RecordBatch>) -> ArrowStream {
    ArrowStream::source(p, "src", BatchSource::new(kv_schema(), batches))
}

#[test]
fn project_filter_with_column_and_cast() {
    let mut p = Pipeline::new("ops");
    let s = source(
        &mut p,
        vec![
            kv(&["a", "b"], &[Some(1), Some(-2)]),
            kv(&["c"], &[None]),
            kv(&["d", "e"], &[Some(5), Some(7)]),
        ],
    )
    .filter("positive", |b| gt(b.column(1), &Int64Array::new_scalar(0)))
    .with_column("double", Field::new("v2", DataType::Int64, true), |b| {
        arrow::compute::kernels::numeric::mul(b.column(1), &Int64Array::new_scalar(2))
    })
    .expect("new column")
    .cast("as_float", "v2", DataType::Float64)
    .expect("castable")
    .project("pick", &["v2", "k"])
    .expect("known columns");
    assert_eq!(
        s.schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>(),
        vec!["v2", "k"]
    );
    let (schema, out) = collect(s);
    let report = p.run().expect("runs");
    let got = all(&schema, &out);
    assert_eq!(
        got.column(0)
            .as_primitive::<Float64Type>()
            .values()
            .to_vec(),
        vec![2.0, 10.0, 14.0]
    );
    assert_eq!(
        got.column(1)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect::<Vec<_>>(),
        vec!["a", "d", "e"]
    );
    let filter = report
        .operators
        .iter()
        .find(|o| o.name == "positive")
        .expect("in report");
    assert_eq!((filter.rows_in, filter.rows_out), (5, 3));
}

#[test]
fn plan_errors_name_the_operator_and_column() {
    let mut p = Pipeline::new("errors");
    let err = source(&mut p, vec![])
        .project("p", &["nope"])
        .expect_err("unknown");
    assert!(
        matches!(&err, PlanError::UnknownColumn { operator, column, .. } if operator == "p" && column == "nope"),
        "{err}"
    );
    let mut p = Pipeline::new("errors");
    let err = source(&mut p, vec![])
        .cast("c", "k", DataType::Struct(Default::default()))
        .expect_err("utf8 to struct");
    assert!(matches!(err, PlanError::CannotCast { .. }), "{err}");
    let mut p = Pipeline::new("errors");
    let err = source(&mut p, vec![])
        .aggregate("a", &["v"], vec![Agg::sum("k", "s")])
        .expect_err("utf8 sum");
    assert!(matches!(err, PlanError::NotNumeric { .. }), "{err}");
}

/// The reference: per key, (rows, non-null count, sum, min, max).
type Model = BTreeMap<String, (u64, u64, i64, Option<i64>, Option<i64>)>;

fn model(rows: &[(String, Option<i64>)]) -> Model {
    let mut m = Model::new();
    for (k, v) in rows {
        let e = m.entry(k.clone()).or_insert((0, 0, 0, None, None));
        e.0 += 1;
        if let Some(v) = *v {
            e.1 += 1;
            e.2 += v;
            e.3 = Some(e.3.map_or(v, |x| x.min(v)));
            e.4 = Some(e.4.map_or(v, |x| x.max(v)));
        }
    }
    m
}

fn run_aggregate(rows: &[(String, Option<i64>)], chunk: usize, instances: usize) -> RecordBatch {
    let batches: Vec<RecordBatch> = rows
        .chunks(chunk.max(1))
        .map(|c| {
            let keys: Vec<&str> = c.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<i64>> = c.iter().map(|(_, v)| *v).collect();
            kv(&keys, &values)
        })
        .collect();
    let mut p = Pipeline::new("agg");
    let s = source(&mut p, batches)
        .aggregate(
            "agg",
            &["k"],
            vec![
                Agg::count("rows"),
                Agg::count_of("v", "n"),
                Agg::sum("v", "sum"),
                Agg::min("v", "min"),
                Agg::max("v", "max"),
                Agg::mean("v", "mean"),
            ],
        )
        .expect("valid plan")
        .parallelism(instances);
    let (schema, out) = collect(s);
    p.run().expect("runs");
    let got = all(&schema, &out);
    // Instances emit sorted groups; sort across instances by key.
    let keys = got.column(0).as_string::<i32>();
    let mut order: Vec<usize> = (0..got.num_rows()).collect();
    order.sort_by_key(|&i| keys.value(i).to_owned());
    let idx = arrow::array::UInt32Array::from(order.iter().map(|&i| i as u32).collect::<Vec<_>>());
    arrow::compute::take_record_batch(&got, &idx).expect("in range")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Grouped results equal a plain model whatever the batch cut and the number of instances.
    #[test]
    fn aggregation_matches_the_model(
        rows in proptest::collection::vec(("[a-e]", proptest::option::of(-1000i64..1000)), 0..200),
        chunk in 1usize..50,
        instances in 1usize..4,
    ) {
        let got = run_aggregate(&rows, chunk, instances);
        let m = model(&rows);
        prop_assert_eq!(got.num_rows(), m.len());
        let keys = got.column(0).as_string::<i32>();
        let count = got.column(1).as_primitive::<UInt64Type>();
        let n = got.column(2).as_primitive::<UInt64Type>();
        let sum = got.column(3).as_primitive::<arrow::datatypes::Int64Type>();
        let min = got.column(4).as_primitive::<Float64Type>();
        let max = got.column(5).as_primitive::<Float64Type>();
        let mean = got.column(6).as_primitive::<Float64Type>();
        for (i, (k, (rows_k, n_k, sum_k, min_k, max_k))) in m.iter().enumerate() {
            prop_assert_eq!(keys.value(i), k.as_str());
            prop_assert_eq!(count.value(i), *rows_k);
            prop_assert_eq!(n.value(i), *n_k);
            prop_assert_eq!(sum.value(i), *sum_k);
            prop_assert_eq!(min.is_valid(i).then(|| min.value(i)), min_k.map(|x| x as f64));
            prop_assert_eq!(max.is_valid(i).then(|| max.value(i)), max_k.map(|x| x as f64));
            let want_mean = (*n_k > 0).then(|| *sum_k as f64 / *n_k as f64);
            prop_assert_eq!(mean.is_valid(i).then(|| mean.value(i)), want_mean);
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, weir_runtime::HeapSize)]
struct Order {
    id: u64,
    country: String,
    amount: f64,
    note: Option<String>,
}

#[test]
fn typed_rows_round_trip_through_arrow() {
    let orders: Vec<Order> = (0..2500u64)
        .map(|i| Order {
            id: i,
            country: ["DE", "US", "JP"][i as usize % 3].to_owned(),
            amount: i as f64 / 8.0,
            note: (i % 7 == 0).then(|| format!("n{i}")),
        })
        .collect();
    let mut p = Pipeline::new("serde");
    let arrow = p
        .source("orders", crate::source::IterSource::new(orders.clone()))
        .to_arrow("to_arrow")
        .expect("traceable type");
    assert_eq!(
        arrow
            .schema()
            .field_with_name("note")
            .map(|f| f.is_nullable())
            .ok(),
        Some(true)
    );
    let back = arrow.to_rows::<Order>("to_rows").collect("out");
    p.run().expect("runs");
    assert_eq!(back.take().expect("collected"), orders);
}

fn wide_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("x", DataType::Float64, true),
    ]))
}

fn wide(from: u64, n: u64) -> RecordBatch {
    let ids: Vec<u64> = (from..from + n).collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| (i % 5 != 0).then(|| format!("n,\"{i}\"\n")))
        .collect();
    let xs: Vec<Option<f64>> = ids
        .iter()
        .map(|i| (i % 3 != 0).then(|| *i as f64 / 3.0))
        .collect();
    RecordBatch::try_new(
        wide_schema(),
        vec![
            Arc::new(UInt64Array::from(ids)) as ArrayRef,
            Arc::new(StringArray::from(names)),
            Arc::new(Float64Array::from(xs)),
        ],
    )
    .expect("matching columns")
}

/// Every format: a pipeline writes rolling parts, another pipeline reads the directory back.
#[test]
fn every_connector_round_trips_through_pipelines() {
    let input: Vec<RecordBatch> = (0..7).map(|k| wide(k * 300, 300)).collect();
    let want = concat_batches(&wide_schema(), &input).expect("same schema");
    for (format, read) in [
        (
            PartFormat::parquet(ParquetCompression::Zstd { level: 3 }),
            FileFormat::Parquet(ParquetOptions::default()),
        ),
        (
            PartFormat::csv(),
            FileFormat::Csv(CsvOptions::default().with_schema(wide_schema())),
        ),
        (
            PartFormat::Ndjson,
            FileFormat::Ndjson(NdjsonOptions::new(wide_schema())),
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut p = Pipeline::new("write");
        let summary = ArrowStream::source(
            &mut p,
            "src",
            BatchSource::new(wide_schema(), input.clone()),
        )
        .write_parts(
            "parts",
            dir.path(),
            PartSinkOptions::new(format.clone()).max_rows(500),
            1,
        );
        p.run().expect("writes");
        let summary = summary.take().expect("one instance");
        assert_eq!(summary.rows, 2100);
        assert_eq!(
            summary.files.len(),
            5,
            "{format:?}: 2100 rows in parts of 500"
        );

        let mut p = Pipeline::new("read");
        let src =
            ReaderSource::files(FileSet::dir(dir.path()).expect("listable"), read).expect("opens");
        let (schema, out) = collect(ArrowStream::source(&mut p, "read", src));
        p.run().expect("reads");
        let got = all(&schema, &out);
        assert_eq!(got.num_rows(), 2100, "{format:?}");
        for c in 0..3 {
            assert_eq!(
                got.column(c).as_ref(),
                want.column(c).as_ref(),
                "{format:?} column {c}"
            );
        }
    }
}

/// A gate the test opens: the flag, and the waker of the sink waiting on it.
#[derive(Default)]
struct Gate(std::sync::Mutex<(bool, Option<std::task::Waker>)>);

impl Gate {
    fn open(&self) {
        let waker = {
            let mut g = self.0.lock().expect("not poisoned");
            g.0 = true;
            g.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A sink that takes nothing until the test opens its gate.
struct Gated {
    gate: Arc<Gate>,
    rows: u64,
}

impl Sink for Gated {
    type Input = RecordBatch;
    type Output = u64;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let mut g = self.gate.0.lock().expect("not poisoned");
        if g.0 {
            return Poll::Ready(Ok(()));
        }
        g.1 = Some(cx.waker().clone());
        Poll::Pending
    }
    fn on_batch(&mut self, _: InputPort, b: RecordBatch) -> Result<(), OperatorError> {
        self.rows += b.num_rows() as u64;
        Ok(())
    }
    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.rows)
    }
}

/// A stalled sink stops the file reads: while it takes nothing, the source reads at most what
/// the edge holds plus one batch; once it drains, the whole file is read.
#[tokio::test(start_paused = true)]
async fn stalled_sink_stops_file_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.csv");
    let mut text = String::from("id,name\n");
    for i in 0..20_000u64 {
        text.push_str(&format!("{i},name-{i}\n"));
    }
    std::fs::write(&path, &text).expect("writable");
    let row_bytes = text.len() as u64 / 20_000 + 1;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
    ]));
    let opts = CsvOptions::default()
        .with_schema(schema)
        .with_batch_rows(100);

    let gate = Arc::new(Gate::default());
    let mut p = Pipeline::with_config(
        "stall",
        PipelineConfig {
            edge: weir_runtime::EdgeConfig::default().with_capacity(4),
            ..PipelineConfig::default()
        },
    );
    let source = ReaderSource::csv(&path, opts).expect("opens");
    let bytes = source.bytes_read();
    let rows = ArrowStream::source(&mut p, "read", source)
        .into_inner()
        .sink(
            "gated",
            Gated {
                gate: gate.clone(),
                rows: 0,
            },
        );
    let run = p.run_async();
    let mut run = std::pin::pin!(run);
    // Virtual time: this sleep ends only once every task is idle and no blocking read is in
    // flight, that is when the source has stopped for want of credit.
    tokio::select! {
        r = &mut run => panic!("the run ended with its sink stalled: {r:?}"),
        () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
    }
    let stalled = bytes.load(std::sync::atomic::Ordering::Relaxed);
    // Edge of 4 slots + one batch held + one in the reader, plus the parser's 8 KiB buffer.
    let bound = 6 * 100 * row_bytes + 8 * 1024;
    assert!(
        stalled > 0,
        "the source read something before the edge filled"
    );
    assert!(
        stalled <= bound,
        "read {stalled} bytes ahead of a stalled sink (bound {bound})"
    );
    gate.open();
    let report = run.await.expect("runs to the end");
    assert_eq!(rows.take(), Some(20_000));
    assert_eq!(
        bytes.load(std::sync::atomic::Ordering::Relaxed),
        text.len() as u64
    );
    assert_eq!(report.operators[0].rows_out, 20_000);
}

/// A run that fails after parts were completed leaves no file that looks complete: the sink's
/// parts (committed on finish) and its in-progress part are deleted.
#[test]
fn a_failed_run_leaves_no_complete_looking_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = Pipeline::new("fails");
    let batches: Vec<RecordBatch> = (0..10).map(|k| wide(k * 100, 100)).collect();
    let mut seen = 0;
    ArrowStream::source(&mut p, "src", BatchSource::new(wide_schema(), batches))
        .map_batches("boom", wide_schema(), move |b| {
            seen += 1;
            if seen == 8 {
                Err(arrow::error::ArrowError::ComputeError(
                    "disk on fire".into(),
                ))
            } else {
                Ok(b.clone())
            }
        })
        .write_parts(
            "parts",
            dir.path(),
            PartSinkOptions::new(PartFormat::parquet(ParquetCompression::Snappy)).max_rows(150),
            1,
        );
    let err = p.run().expect_err("the map fails");
    assert_eq!(err.operator(), Some("boom"), "{err}");
    // A write still in flight on the sink's thread when the run was cancelled may leave its
    // hidden `.inprogress` file for a moment (it is deleted when that write returns); nothing
    // visible may remain.
    let visible: Vec<String> = std::fs::read_dir(dir.path())
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(visible.is_empty(), "left behind: {visible:?}");
    assert!(FileSet::dir(dir.path())
        .expect("listable")
        .files()
        .is_empty());
}
