//! State round trips of the columnar hash aggregation and tumbling windows: snapshot part-way,
//! restore at another parallelism by key group, and the results equal an uninterrupted run's.

use std::num::NonZeroUsize;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::util::display::array_value_to_string;
use proptest::prelude::*;
use weir_runtime::{Batch, Message, Operator, Output, Timestamp};

use super::super::aggregate::{plan_aggregate, HashAggregate, KeyPartitioner};
use super::super::Agg;
use super::{Fired, Spec, TumblingWindowAggregate, FIRING};
use crate::snapshot::{restore, KeyGrouping, KeyedSnapshot, SnapshotOut};

/// A batch of `(key, t, v)` rows, or a watermark.
#[derive(Clone, Debug)]
enum Step {
    Rows(Vec<(i64, i64, i64)>),
    Wm(i64),
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Int64, true),
    ]))
}

fn batch(rows: &[(i64, i64, i64)]) -> RecordBatch {
    let column = |f: fn(&(i64, i64, i64)) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
    };
    RecordBatch::try_new(
        schema(),
        vec![column(|r| r.0), column(|r| r.1), column(|r| r.2)],
    )
    .expect("three columns")
}

/// Every row of `batch` as text, one string per row.
fn lines(tag: &str, batch: &RecordBatch) -> Vec<String> {
    (0..batch.num_rows())
        .map(|i| {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    // Without chrono-tz the display cannot name "UTC": print the instant.
                    DataType::Timestamp(..) => {
                        format!(
                            "{:?}",
                            c.as_primitive::<TimestampMillisecondType>().value(i)
                        )
                    }
                    _ => array_value_to_string(c.as_ref(), i).expect("printable"),
                })
                .collect();
            format!("{tag} {}", cells.join(","))
        })
        .collect()
}

/// Instances behind the columnar key partitioner.
struct Run<O: Operator<Input = RecordBatch>> {
    ops: Vec<O>,
    out: Output<O::Output>,
    got: Vec<String>,
    show: fn(&O::Output) -> Vec<String>,
}

impl<O> Run<O>
where
    O: Operator<Input = RecordBatch> + KeyedSnapshot,
    O::Output: Batch,
{
    fn new(ops: Vec<O>, show: fn(&O::Output) -> Vec<String>) -> Self {
        Self {
            ops,
            out: Output::new(64),
            got: Vec::new(),
            show,
        }
    }

    fn collect(&mut self) {
        self.out.flush();
        for msg in self.out.drain() {
            if let Message::Data(b) = msg {
                self.got.extend((self.show)(&b));
            }
        }
    }

    fn play(&mut self, steps: &[Step]) {
        let n = NonZeroUsize::new(self.ops.len()).expect("an instance");
        let router = KeyPartitioner::new(&schema(), vec![0]).expect("an Int64 key");
        for step in steps {
            match step {
                Step::Rows(rows) => {
                    let batch = batch(rows);
                    let targets = router.targets(&batch, n).expect("encodable keys");
                    for (i, op) in self.ops.iter_mut().enumerate() {
                        let mine: Vec<u32> = (0..targets.len() as u32)
                            .filter(|&r| targets[r as usize] == i)
                            .collect();
                        if mine.is_empty() {
                            continue;
                        }
                        let part = take_record_batch(&batch, &UInt32Array::from(mine))
                            .expect("indices in range");
                        op.on_batch(0, part, &mut self.out).expect("runs");
                    }
                }
                Step::Wm(w) => {
                    for op in &mut self.ops {
                        op.on_watermark(Timestamp(*w), &mut self.out).expect("runs");
                    }
                }
            }
            self.collect();
        }
    }

    fn end(&mut self) {
        for op in &mut self.ops {
            op.on_end(&mut self.out).expect("runs");
        }
        self.collect();
    }

    fn state(&self) -> (u64, u64) {
        self.ops
            .iter()
            .filter_map(|op| op.state_size())
            .fold((0, 0), |(k, b), s| (k + s.keys, b + s.bytes))
    }
}

/// The sorted output of an uninterrupted run and of a run cut after `cut` steps (snapshot at
/// `p1` instances, restore at `p2`), and the state `(keys, bytes)` before and after.
#[allow(clippy::type_complexity)]
fn round_trip<O>(
    make: impl Fn() -> O,
    show: fn(&O::Output) -> Vec<String>,
    steps: &[Step],
    cut: usize,
    (p1, p2): (usize, usize),
) -> (Vec<String>, Vec<String>, (u64, u64), (u64, u64))
where
    O: Operator<Input = RecordBatch> + KeyedSnapshot,
    O::Output: Batch,
{
    let cut = cut.min(steps.len());
    let grouping = KeyGrouping::default();
    let mut whole = Run::new((0..p1).map(|_| make()).collect(), show);
    whole.play(steps);
    whole.end();
    let mut first = Run::new((0..p1).map(|_| make()).collect(), show);
    first.play(&steps[..cut]);
    let snapshots: Vec<_> = first
        .ops
        .iter()
        .map(|op| {
            let mut out = SnapshotOut::new(grouping);
            op.snapshot(&mut out).expect("encodes");
            out.finish()
        })
        .collect();
    let p = NonZeroUsize::new(p2).expect("an instance");
    let mut second = Run::new((0..p2).map(|_| make()).collect(), show);
    for (i, op) in second.ops.iter_mut().enumerate() {
        restore(op, &snapshots, grouping.groups().range(i, p)).expect("restores");
    }
    let (before, after) = (first.state(), second.state());
    second.got = first.got;
    second.play(&steps[cut..]);
    second.end();
    let (mut expected, mut got) = (whole.got, second.got);
    expected.sort();
    got.sort();
    (expected, got, before, after)
}

fn aggregate() -> HashAggregate {
    aggregate_of(&[
        Agg::count("n"),
        Agg::sum("v", "sum"),
        Agg::mean("v", "mean"),
        Agg::min("v", "min"),
    ])
}

fn aggregate_of(aggs: &[Agg]) -> HashAggregate {
    let input = schema();
    let (keys, inputs, fields) = plan_aggregate("agg", &input, &["k"], aggs, &[]).expect("a plan");
    HashAggregate::new("agg", &input, keys, inputs, Arc::new(Schema::new(fields)))
        .expect("an Int64 key")
}

fn window(lateness: i64) -> TumblingWindowAggregate {
    let input = schema();
    let start = Field::new(
        "start",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    );
    let aggs = [Agg::count("n"), Agg::sum("v", "sum")];
    let (keys, inputs, mut fields) =
        plan_aggregate("w", &input, &["k"], &aggs, &[start]).expect("a plan");
    if lateness > 0 {
        fields.push(Field::new(FIRING, DataType::UInt32, false));
    }
    let spec = Spec {
        name: "w".into(),
        input,
        keys,
        inputs,
        schema: Arc::new(Schema::new(fields)),
        time: 1,
        size: 10,
        lateness,
    };
    TumblingWindowAggregate::new(&spec).expect("an Int64 key")
}

fn show_fired(f: &Fired) -> Vec<String> {
    match f {
        Fired::Windows(b) => lines("window", b),
        Fired::Late(b) => lines("late", b),
    }
}

fn show_batch(b: &RecordBatch) -> Vec<String> {
    lines("group", b)
}

/// Rows about in time order (some behind the watermark), watermarks rising.
fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => prop::collection::vec((0i64..20, 0i64..10, -12i64..4, -50i64..50), 1..10),
        1 => Just(Vec::new()),
    ];
    prop::collection::vec((step, 0i64..6), 1..30).prop_map(|parts| {
        let (mut now, mut wm, mut steps) = (0i64, i64::MIN, Vec::new());
        for (rows, advance) in parts {
            if rows.is_empty() {
                wm = wm.max(now - 4);
                steps.push(Step::Wm(wm));
                continue;
            }
            now += advance;
            steps.push(Step::Rows(
                rows.into_iter()
                    .map(|(k, dt, jitter, v)| (k, now + dt + jitter, v))
                    .collect(),
            ));
        }
        steps
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn a_hash_aggregation_restored_at_any_parallelism_ends_as_an_uninterrupted_one(
        steps in steps(),
        cut in 0usize..30,
        p1 in 1usize..4,
        p2 in 1usize..5,
    ) {
        let (expected, got, before, after) =
            round_trip(aggregate, show_batch, &steps, cut, (p1, p2));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(after, before, "the same groups and bytes are held");
    }

    #[test]
    fn columnar_windows_restored_at_any_parallelism_fire_as_uninterrupted_ones(
        steps in steps(),
        cut in 0usize..30,
        lateness in prop_oneof![Just(0i64), 1i64..15],
        p1 in 1usize..4,
        p2 in 1usize..5,
    ) {
        let (expected, got, before, after) =
            round_trip(|| window(lateness), show_fired, &steps, cut, (p1, p2));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(after.0, before.0, "the same groups are held");
    }
}

#[test]
fn a_key_group_of_another_shape_is_refused() {
    let mut one = Run::new(vec![aggregate()], show_batch);
    one.play(&[Step::Rows(vec![(1, 0, 5)])]);
    let mut out = SnapshotOut::new(KeyGrouping::default());
    one.ops[0].snapshot(&mut out).expect("encodes");
    let snapshot = out.finish();
    // An aggregation of two aggregates; the snapshot holds four per key.
    let mut two = aggregate_of(&[Agg::count("n"), Agg::sum("v", "sum")]);
    let err = restore(&mut two, &[snapshot], 0..128).expect_err("another shape");
    assert!(
        matches!(
            err,
            crate::snapshot::SnapshotError::Shape {
                expected: 2,
                found: 4,
                ..
            }
        ),
        "{err}"
    );
}
