//! Tests of the columnar tumbling windows and the bounded out-of-orderness watermarks, against a
//! model that replays the rows in order with the same rules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, UInt64Type};
use proptest::prelude::*;
use weir_runtime::{
    InputPort, Message, Operator, OperatorError, Output, Pipeline, PipelineConfig, RunReport, Sink,
    SinkHandle, Timestamp,
};

use super::*;
use crate::columnar::BatchSource;

/// Collects batches (a test sink; bounded by the tests' small inputs).
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

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, false),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
            false,
        ),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// One input row: key, event time, value.
type Row = (String, i64, i64);

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))) as ArrayRef,
            Arc::new(
                TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone("+02:00"),
            ),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .expect("the test schema")
}

fn input_rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut rows = Vec::new();
    for b in batches {
        let k = b.column(0).as_string::<i32>();
        let t = b
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let v = b.column(2).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            rows.push((k.value(i).to_owned(), t.value(i), v.value(i)));
        }
    }
    rows
}

/// `(key, window start, count, sum)` per result row.
type Result4 = (String, i64, u64, i64);

/// Each result row, and its `firing` if the output has the column.
fn result_rows_with_firing(batches: &[RecordBatch]) -> Vec<(Result4, Option<u32>)> {
    let mut rows = Vec::new();
    for b in batches {
        assert_eq!(
            b.schema().field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        let k = b.column(0).as_string::<i32>();
        let start = b
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
        let n = b.column(2).as_primitive::<UInt64Type>();
        let sum = b.column(3).as_primitive::<Int64Type>();
        let firing = (b.num_columns() == 5)
            .then(|| b.column(4).as_primitive::<arrow::datatypes::UInt32Type>());
        for i in 0..b.num_rows() {
            rows.push((
                (
                    k.value(i).to_owned(),
                    start.value(i),
                    n.value(i),
                    sum.value(i),
                ),
                firing.map(|f| f.value(i)),
            ));
        }
    }
    rows
}

/// The model: the rows replayed batch by batch; after each batch the watermark is the largest
/// time so far minus `delay` and 1 ms (never backwards); a row is late when its window
/// `[⌊t/size⌋·size, … + size)` ends `lateness` or more before the watermark it meets. Returns
/// the final results sorted by (key, start) and the late rows in input order.
fn model(batches: &[Vec<Row>], size: i64, delay: i64, lateness: i64) -> (Vec<Result4>, Vec<Row>) {
    let mut groups: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    let mut late = Vec::new();
    let mut watermark: Option<i64> = None;
    let mut max_seen: Option<i64> = None;
    for batch in batches {
        for (k, t, v) in batch {
            let start = t.div_euclid(size) * size;
            if watermark.is_some_and(|w| start + size + lateness <= w) {
                late.push((k.clone(), *t, *v));
            } else {
                let g = groups.entry((k.clone(), start)).or_default();
                g.0 += 1;
                g.1 += v;
            }
        }
        if let Some(m) = batch.iter().map(|r| r.1).max() {
            max_seen = Some(max_seen.map_or(m, |s| s.max(m)));
        }
        if let Some(m) = max_seen {
            let next = m - delay - 1;
            watermark = Some(watermark.map_or(next, |w| w.max(next)));
        }
    }
    let results = groups
        .into_iter()
        .map(|((k, start), (n, sum))| (k, start, n, sum))
        .collect();
    (results, late)
}

/// Runs `batches` through watermarks (`delay`) and a tumbling window (`size`, `instances`):
/// results as they arrived, late rows as they arrived, and the report.
fn run_window(
    batches: &[Vec<Row>],
    size: i64,
    delay: i64,
    instances: usize,
) -> (Vec<Result4>, Vec<Row>, RunReport) {
    let (results, late, report) = run_window_late(batches, size, delay, 0, instances);
    (results.into_iter().map(|(r, _)| r).collect(), late, report)
}

/// As `run_window`, with allowed `lateness`: results with their `firing`.
#[allow(clippy::type_complexity)]
fn run_window_late(
    batches: &[Vec<Row>],
    size: i64,
    delay: i64,
    lateness: i64,
    instances: usize,
) -> (Vec<(Result4, Option<u32>)>, Vec<Row>, RunReport) {
    let config = PipelineConfig {
        batch_rows: 7,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("windows", config);
    let input: Vec<RecordBatch> = batches.iter().map(|b| batch(b)).collect();
    let (results, late) = ArrowStream::source(&mut p, "rows", BatchSource::new(schema(), input))
        .bounded_out_of_orderness("t", Duration::from_millis(delay as u64))
        .expect("a time column")
        .tumbling_window("t", Duration::from_millis(size as u64))
        .allowed_lateness(Duration::from_millis(lateness as u64))
        .parallelism(instances)
        .aggregate_with_late("w", &["k"], vec![Agg::count("n"), Agg::sum("v", "sum")])
        .expect("a valid plan");
    let results: SinkHandle<Vec<RecordBatch>> = results.sink("results", Batches::default());
    let late: SinkHandle<Vec<RecordBatch>> = late.sink("late", Batches::default());
    let report = p.run().expect("runs");
    let results = result_rows_with_firing(&results.take_all().concat());
    assert!(
        results.iter().all(|(_, f)| f.is_some() == (lateness > 0)),
        "a firing column exactly with lateness"
    );
    let late = input_rows(&late.take_all().concat());
    (results, late, report)
}

fn rows_strategy() -> impl Strategy<Value = Vec<Vec<Row>>> {
    proptest::collection::vec(
        proptest::collection::vec(("[a-c]", -20i64..120, -50i64..50), 0..12),
        0..14,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Out-of-order batches: the results equal the model's group-by of the rows that were not
    /// late, the late rows are exactly the model's, counted by `w.late`, and no state is left.
    #[test]
    fn windows_equal_a_sorted_model_and_late_rows_are_routed_exactly(
        batches in rows_strategy(),
        size in 1i64..25,
        delay in 0i64..40,
        lateness in prop_oneof![Just(0i64), 1i64..30],
        instances in 1usize..4,
    ) {
        let (results, mut late, report) =
            run_window_late(&batches, size, delay, lateness, instances);
        let (want, mut want_late) = model(&batches, size, delay, lateness);
        // Per (key, window): firings 0, 1, … in the order they came; the last one is final.
        let mut last: BTreeMap<(String, i64), (Result4, u32)> = BTreeMap::new();
        for (r, firing) in results {
            let id = (r.0.clone(), r.1);
            let before = last.get(&id).map_or(0, |(_, n)| *n);
            prop_assert_eq!(firing.unwrap_or(0), before, "{:?}", id);
            prop_assert!(lateness > 0 || before == 0, "without lateness one result: {:?}", id);
            last.insert(id, (r, before + 1));
        }
        let finals: Vec<Result4> = last.into_values().map(|(r, _)| r).collect();
        prop_assert_eq!(finals, want);
        late.sort();
        want_late.sort();
        prop_assert_eq!(late_rows(&report, "w"), want_late.len() as u64);
        prop_assert_eq!(late, want_late);
        let w = report.operators.iter().find(|o| o.name == "w").expect("the window");
        prop_assert_eq!((w.state_keys, w.state_bytes), (0, 0));
        let rows: usize = batches.iter().map(Vec::len).sum();
        prop_assert_eq!(w.rows_in, rows as u64);
    }
}

#[test]
fn one_instance_emits_windows_in_order_and_late_rows_as_they_came() {
    let batches = vec![
        vec![("b".into(), 5, 1), ("a".into(), 12, 2), ("a".into(), 3, 4)],
        vec![("a".into(), 31, 8), ("b".into(), -1, 16)], // after the watermark 12 − 1 − 1
        vec![
            ("a".into(), 9, 32),
            ("b".into(), 25, 64),
            ("a".into(), 10, 128),
        ], // 31 − 1 − 1
    ];
    let (results, late, report) = run_window(&batches, 10, 1, 1);
    assert_eq!(
        results,
        vec![
            ("a".into(), 0, 1, 4), // [0, 10) fired by the watermark 10, by key
            ("b".into(), 0, 1, 1),
            ("a".into(), 10, 1, 2),  // [10, 20) fired by the watermark 29
            ("b".into(), 20, 1, 64), // the rest at the end of the input, in window order
            ("a".into(), 30, 1, 8),
        ]
    );
    assert_eq!(
        late,
        vec![
            ("b".into(), -1, 16),
            ("a".into(), 9, 32),
            ("a".into(), 10, 128)
        ],
        "[-10, 0) and [0, 10) are gone at 10, [10, 20) at 29; [20, 30) is open at 29"
    );
    assert_eq!(late_rows(&report, "w"), 3);
}

/// A hand-driven instance: `(size 10, no key)` counting rows of column `t` (Int64).
fn instance() -> (TumblingWindowAggregate, SchemaRef) {
    instance_with_lateness(0)
}

/// As `instance`, with allowed `lateness` (and then a `firing` column).
fn instance_with_lateness(lateness: i64) -> (TumblingWindowAggregate, SchemaRef) {
    let input = Arc::new(Schema::new(vec![Field::new("t", DataType::Int64, true)]));
    let (keys, inputs, fields) = super::super::aggregate::plan_aggregate(
        "w",
        &input,
        &[],
        &[Agg::count("n")],
        &[Field::new(
            "start",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        )],
    )
    .expect("a valid plan");
    let mut fields = fields;
    if lateness > 0 {
        fields.push(Field::new(FIRING, DataType::UInt32, false));
    }
    let spec = Spec {
        name: "w".into(),
        input: input.clone(),
        keys,
        inputs,
        schema: Arc::new(Schema::new(fields)),
        time: 0,
        size: 10,
        lateness,
    };
    (TumblingWindowAggregate::new(&spec).expect("no keys"), input)
}

fn times(input: &SchemaRef, t: Vec<Option<i64>>) -> RecordBatch {
    RecordBatch::try_new(
        input.clone(),
        vec![Arc::new(Int64Array::from(t)) as ArrayRef],
    )
    .expect("one column")
}

/// What one call emitted: `W(start, count)` results (`F(start, count, firing)` with lateness),
/// `L(rows)` late batches, `M(w)` watermarks.
#[derive(Debug, PartialEq)]
enum Out {
    W(i64, u64),
    F(i64, u64, u32),
    L(usize),
    M(i64),
}

fn emitted(out: &mut Output<Fired>) -> Vec<Out> {
    let mut got = Vec::new();
    for m in out.drain() {
        match m {
            Message::Data(Fired::Windows(b)) => {
                let start = b
                    .column(0)
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                let n = b.column(1).as_primitive::<UInt64Type>();
                let firing = (b.num_columns() == 3)
                    .then(|| b.column(2).as_primitive::<arrow::datatypes::UInt32Type>());
                for i in 0..b.num_rows() {
                    got.push(match firing {
                        None => Out::W(start.value(i), n.value(i)),
                        Some(f) => Out::F(start.value(i), n.value(i), f.value(i)),
                    });
                }
            }
            Message::Data(Fired::Late(b)) => got.push(Out::L(b.num_rows())),
            Message::Watermark(w) => got.push(Out::M(w.0)),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[test]
fn a_window_fires_when_the_watermark_reaches_its_end_before_the_watermark_and_frees_its_state() {
    let (mut op, input) = instance();
    let mut out = Output::new(1024);
    op.on_batch(
        0,
        times(&input, vec![Some(0), Some(9), Some(10), Some(25)]),
        &mut out,
    )
    .expect("runs");
    assert_eq!(emitted(&mut out), vec![]);
    assert_eq!(op.state_size().map(|s| s.keys), Some(3));
    assert!(op.state_size().is_some_and(|s| s.bytes > 0));
    assert_eq!(op.held_rows(), 3);

    op.on_watermark(Timestamp(9), &mut out).expect("runs");
    assert_eq!(
        emitted(&mut out),
        vec![Out::M(9)],
        "[0, 10) is still open at 9"
    );
    op.on_watermark(Timestamp(25), &mut out).expect("runs");
    assert_eq!(
        emitted(&mut out),
        vec![Out::W(0, 2), Out::W(10, 1), Out::M(25)],
        "w ≥ end fires, in window order, before the watermark"
    );
    assert_eq!(op.state_size().map(|s| s.keys), Some(1));

    // 19 and −5 are late (their windows are gone); 21 is below the watermark, but its window
    // [20, 30) is still open.
    op.on_batch(
        0,
        times(&input, vec![Some(19), Some(21), Some(-5)]),
        &mut out,
    )
    .expect("runs");
    assert_eq!(emitted(&mut out), vec![Out::L(2)]);
    op.on_end(&mut out).expect("runs");
    assert_eq!(emitted(&mut out), vec![Out::W(20, 2)]);
    assert_eq!(op.state_size().map(|s| (s.keys, s.bytes)), Some((0, 0)));
    assert_eq!(op.held_rows(), 0);

    let err = op
        .on_batch(0, times(&input, vec![Some(1), None]), &mut out)
        .expect_err("no event time");
    assert!(
        err.to_string().contains("null event time in column `t`"),
        "{err}"
    );
}

#[test]
fn within_the_lateness_a_row_updates_its_window_and_after_it_the_row_is_late() {
    let (mut op, input) = instance_with_lateness(5);
    let mut out = Output::new(1024);
    let mut step = |op: &mut TumblingWindowAggregate, t: Option<Vec<i64>>, w: Option<i64>| {
        if let Some(t) = t {
            let t = t.into_iter().map(Some).collect();
            op.on_batch(0, times(&input, t), &mut out).expect("runs");
        }
        if let Some(w) = w {
            op.on_watermark(Timestamp(w), &mut out).expect("runs");
        }
        emitted(&mut out)
    };
    assert_eq!(step(&mut op, Some(vec![0, 9, 12]), None), vec![]);
    assert_eq!(
        step(&mut op, None, Some(10)),
        vec![Out::F(0, 2, 0), Out::M(10)]
    );
    assert_eq!(
        step(&mut op, Some(vec![3]), None),
        vec![Out::F(0, 3, 1)],
        "[0, 10) is kept until 15: updated at once"
    );
    assert_eq!(op.held_rows(), 1, "[10, 20) has not fired");
    assert_eq!(step(&mut op, None, Some(15)), vec![Out::M(15)]);
    assert_eq!(
        op.state_size().map(|s| s.keys),
        Some(1),
        "[0, 10) freed at 15"
    );
    assert_eq!(step(&mut op, Some(vec![4, 14]), None), vec![Out::L(1)]);
    assert_eq!(
        step(&mut op, None, Some(22)),
        vec![Out::F(10, 2, 0), Out::M(22)]
    );
    assert_eq!(
        step(&mut op, Some(vec![-30, 19, 21]), None),
        vec![Out::L(1), Out::F(10, 3, 1)],
        "the late row, then the update; [20, 30) is open"
    );
    assert_eq!(
        step(&mut op, None, Some(41)),
        vec![Out::F(20, 1, 0), Out::M(41)],
        "[20, 30) fires and is freed at once (30 + 5 ≤ 41)"
    );
    assert_eq!(
        step(&mut op, Some(vec![35]), None),
        vec![Out::F(30, 1, 0)],
        "[30, 40) gets its first row within its lateness: it fires with that batch"
    );
    op.on_end(&mut out).expect("runs");
    assert_eq!(emitted(&mut out), vec![], "nothing left to fire");
    assert_eq!(op.state_size().map(|s| (s.keys, s.bytes)), Some((0, 0)));
}

#[test]
fn the_plan_refuses_a_time_column_without_milliseconds_and_a_clashing_start_column() {
    let mut p = Pipeline::new("plan");
    let stream = ArrowStream::source(&mut p, "rows", BatchSource::new(schema(), vec![]));
    let err = stream
        .clone()
        .tumbling_window("k", Duration::from_secs(1))
        .aggregate("w", &[], vec![Agg::count("n")])
        .expect_err("a string is no event time");
    assert!(matches!(err, PlanError::NotEventTime { .. }), "{err}");
    let err = stream
        .clone()
        .bounded_out_of_orderness("v2", Duration::ZERO)
        .expect_err("no such column");
    assert!(matches!(err, PlanError::UnknownColumn { .. }), "{err}");
    let err = stream
        .tumbling_window("t", Duration::from_secs(1))
        .start_column("k")
        .aggregate("w", &["k"], vec![Agg::count("n")])
        .expect_err("two columns named k");
    assert!(matches!(err, PlanError::DuplicateColumn { .. }), "{err}");
}
