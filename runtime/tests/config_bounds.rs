//! Configuration is checked before anything runs: sizes that would abort the process (a batch
//! pre-allocated at `1 << 40` rows) or panic inside an operator's task (`linger = Duration::MAX`
//! overflowing an `Instant`) are a clear `InvalidConfig` naming the field, and no batch is
//! pre-allocated beyond the edges' byte bound.

use std::task::{Context, Poll};
use std::time::Duration;

use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::{
    EdgeConfig, GraphError, InputPort, OperatorError, Pipeline, PipelineConfig, RunError,
};

/// Pushes `n` rows one by one (through `Output::push`, which pre-allocates a batch).
struct Rows(u64);

impl Source for Rows {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        while self.0 > 0 {
            out.push(self.0);
            self.0 -= 1;
        }
        Poll::Ready(Ok(SourceStatus::Done))
    }
}

struct Sum;

impl Sink for Sum {
    type Input = Vec<u64>;
    type Output = u64;
    fn on_batch(&mut self, _: InputPort, _: Vec<u64>) -> Result<(), OperatorError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(0)
    }
}

fn run_with(config: PipelineConfig) -> Result<(), RunError> {
    let mut p = Pipeline::with_config("bounds", config);
    p.source("src", Rows(10)).sink("sink", Sum);
    p.run().map(|_| ())
}

fn invalid_config(result: Result<(), RunError>) -> (String, String) {
    match result {
        Err(RunError::Graph(GraphError::InvalidConfig { operator, reason })) => (operator, reason),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn oversized_settings_are_invalid_config_not_an_abort_or_a_panic() {
    let cases = [
        (
            PipelineConfig {
                batch_rows: 1 << 40,
                ..PipelineConfig::default()
            },
            "batch_rows",
        ),
        (
            PipelineConfig {
                batch_rows: usize::MAX,
                ..PipelineConfig::default()
            },
            "batch_rows",
        ),
        (
            PipelineConfig {
                linger: Duration::MAX,
                ..PipelineConfig::default()
            },
            "linger",
        ),
        (
            PipelineConfig {
                parallelism: usize::MAX,
                ..PipelineConfig::default()
            },
            "parallelism",
        ),
        (
            PipelineConfig {
                workers: Some(1 << 40),
                ..PipelineConfig::default()
            },
            "workers",
        ),
        (
            PipelineConfig {
                edge: EdgeConfig::default().with_capacity(0),
                ..PipelineConfig::default()
            },
            "capacity",
        ),
    ];
    for (config, field) in cases {
        let (operator, reason) = invalid_config(run_with(config));
        assert!(operator.starts_with("bounds "), "{operator}");
        assert!(reason.contains(field), "{field}: {reason}");
    }
}

#[test]
fn an_operators_oversized_parallelism_is_invalid_config() {
    let mut p = Pipeline::new("bounds");
    p.source("src", Rows(10))
        .parallelism(1 << 40)
        .sink("sink", Sum);
    let (operator, reason) = invalid_config(p.run().map(|_| ()));
    assert_eq!(operator, "src");
    assert!(reason.contains("parallelism"), "{reason}");
}

#[test]
fn the_largest_settings_run() {
    let config = PipelineConfig {
        batch_rows: PipelineConfig::MAX_BATCH_ROWS,
        linger: PipelineConfig::MAX_LINGER,
        ..PipelineConfig::default()
    };
    run_with(config).expect("the largest valid settings run");
}

#[test]
fn a_batch_is_never_pre_allocated_beyond_the_byte_bound() {
    let bound = EdgeConfig::default().max_bytes;
    let out = Output::<Vec<u64>>::new(PipelineConfig::MAX_BATCH_ROWS).with_max_batch_bytes(bound);
    assert_eq!(out.row_capacity(), bound / 8);
    let small = Output::<Vec<u64>>::new(1024).with_max_batch_bytes(bound);
    assert_eq!(small.row_capacity(), 1024);
    // A batch pre-allocated below its row count grows to exactly its rows, never past them.
    let mut capped = Output::<Vec<u64>>::new(100).with_max_batch_bytes(62 * 8);
    assert_eq!(capped.row_capacity(), 62);
    capped.extend(0..100u64);
    let batches: Vec<_> = capped.drain().collect();
    assert_eq!(batches.len(), 1);
    match &batches[0] {
        weir_runtime::Message::Data(b) => assert_eq!((b.len(), b.capacity()), (100, 100)),
        other => panic!("expected data, got {other:?}"),
    }
    // Zero-sized rows allocate nothing, whatever the count.
    let unit = Output::<Vec<()>>::new(1 << 20).with_max_batch_bytes(bound);
    assert_eq!(unit.row_capacity(), 1 << 20);
}
