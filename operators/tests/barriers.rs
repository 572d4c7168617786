//! Barriers through the built-in operators: the keyed aggregation stages and the columnar hash
//! aggregate keep rows across batches and refuse them, naming themselves; the row-wise
//! transforms (map, filter, flat_map, map_async, the Arrow conversions) pass every one, behind
//! every row that came before it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};
use weir_operators::columnar::{Agg, ArrowStream, ToArrowExt};
use weir_operators::keyed::aggregate::{Project, Sum};
use weir_operators::keyed::route::Strategy;
use weir_operators::keyed::Combine;
use weir_operators::overload::caller::{CallError, CallerConfig};
use weir_operators::prelude::*;
use weir_runtime::barrier::Barriers;
use weir_runtime::{Batch, Chaining, InstanceInfo, Output, Source, SourceStatus};

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
