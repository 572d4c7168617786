//! `Operator::poll_ready` (an operator pacing itself) and `Operator::state_size` (its state in
//! the run report).

use std::task::{Context, Poll};

use weir_runtime::operator::Output;
use weir_runtime::test_support::{CollectAll, Upto};
use weir_runtime::{InputPort, Operator, OperatorError, Pipeline, PipelineConfig, StateSize};

/// Not ready `pending` times before every input, waking itself each time; counts what it saw.
struct Gate {
    pending: u32,
    left: u32,
    polls_pending: u64,
    inputs: u64,
}

impl Operator for Gate {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if self.left > 0 {
            self.left -= 1;
            self.polls_pending += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        assert_eq!(
            self.left, 0,
            "an input was taken while the operator was not ready"
        );
        self.left = self.pending;
        self.inputs += 1;
        out.emit(batch);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Vec<u64>>) -> Result<(), OperatorError> {
        assert_eq!(
            self.left, 0,
            "the end was taken while the operator was not ready"
        );
        // Every input but the end was preceded by `pending` refusals, and so was the end.
        out.push(self.polls_pending);
        out.push(self.inputs);
        Ok(())
    }
}

/// Each operator in its own task: these tests pin the hooks' order around the operator's own
/// input (a chained operator's `poll_ready` is consulted before its task takes input instead).
fn small_batches() -> PipelineConfig {
    PipelineConfig {
        batch_rows: 10,
        workers: Some(2),
        chaining: weir_runtime::Chaining::Off,
        ..PipelineConfig::default()
    }
}

#[test]
fn a_pending_operator_takes_no_input_until_woken() {
    let mut p = Pipeline::with_config("gate", small_batches());
    let out = p
        .source("n", Upto(0, 100))
        .unary(
            "gate",
            Gate {
                pending: 3,
                left: 3,
                polls_pending: 0,
                inputs: 0,
            },
        )
        .sink("all", CollectAll(Vec::new()));
    p.run().expect("the run succeeds");
    let mut rows = out.take().expect("one sink instance");
    let inputs = rows.pop().expect("input count");
    let pending = rows.pop().expect("pending count");
    assert_eq!(rows, (0..100).collect::<Vec<_>>());
    assert_eq!(inputs, 10);
    // 3 refusals before each of the 10 batches and before the end.
    assert_eq!(pending, 33);
}

struct Failing;

impl Operator for Failing {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        Poll::Ready(Err(OperatorError::user("budget exhausted")))
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        _: Vec<u64>,
        _: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        unreachable!("never ready")
    }
}

#[test]
fn a_poll_ready_error_fails_the_run_naming_the_operator() {
    let mut p = Pipeline::with_config("fail", small_batches());
    let _ = p
        .source("n", Upto(0, 100))
        .unary("failing", Failing)
        .sink("all", CollectAll(Vec::new()));
    let err = p.run().expect_err("poll_ready failed");
    assert_eq!(err.operator(), Some("failing"));
    assert!(err.to_string().contains("budget exhausted"), "{err}");
}

/// Holds one key per distinct `x % 7` seen, 16 bytes each, and drops them all at the end.
struct Distinct(std::collections::BTreeSet<u64>);

impl Operator for Distinct {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        _: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        self.0.extend(batch.iter().map(|x| x % 7));
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Vec<u64>>) -> Result<(), OperatorError> {
        out.extend(std::mem::take(&mut self.0));
        Ok(())
    }

    fn state_size(&self) -> Option<StateSize> {
        let keys = self.0.len() as u64;
        Some(StateSize {
            keys,
            bytes: keys * 16,
            ..StateSize::default()
        })
    }
}

#[test]
fn state_sizes_reach_the_report_with_their_peaks() {
    let mut p = Pipeline::with_config("state", small_batches());
    let out = p
        .source("n", Upto(0, 100))
        .unary("distinct", Distinct(Default::default()))
        .sink("all", CollectAll(Vec::new()));
    let report = p.run().expect("the run succeeds");
    assert_eq!(out.take().expect("one sink").len(), 7);
    let op = report
        .operators
        .iter()
        .find(|o| o.name == "distinct")
        .expect("reported");
    assert_eq!(
        (op.state_keys, op.state_bytes),
        (0, 0),
        "dropped at the end"
    );
    assert_eq!((op.peak_state_keys, op.peak_state_bytes), (7, 112));
    assert_eq!(op.instances[0].peak_state_keys, 7);
    let source = &report.operators[0];
    assert_eq!(source.peak_state_keys, 0, "stateless operators report none");
    assert!(report
        .to_string()
        .contains("state: `distinct` peak 7 keys, 112 B"));
}
