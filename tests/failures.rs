//! Errors and panics in sources, transforms and sinks end the run with an error naming exactly
//! that operator and instance, with the error's kind and message or the panic's message; never a
//! hang (every run is joined under a guard). Graph errors live in `graph_validation.rs`.

mod common;

use common::{pipeline, run_guarded};
use weir::prelude::*;
use weir::runtime::ErrorKind;
use weir_runtime::test_support::{BadSource, Fail};

/// Passes rows through and fails on row `at`.
struct BadOp {
    seen: u64,
    at: u64,
    fail: Fail,
}

impl Operator for BadOp {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(
        &mut self,
        _: usize,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        for x in batch {
            if self.seen == self.at {
                return Err(self.fail.fire("transform", self.at));
            }
            self.seen += 1;
            out.push(x);
        }
        Ok(())
    }
}

/// Consumes rows and fails on row `at`.
struct BadSink {
    seen: u64,
    at: u64,
    fail: Fail,
}

impl Sink for BadSink {
    type Input = Vec<u64>;
    type Output = u64;

    fn on_batch(&mut self, _: usize, batch: Vec<u64>) -> Result<(), OperatorError> {
        for _ in batch {
            if self.seen == self.at {
                return Err(self.fail.fire("sink", self.at));
            }
            self.seen += 1;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.seen)
    }
}

fn assert_fails(result: Result<RunReport, RunError>, fail: Fail, operator: &str, what: &str) {
    let err = result.expect_err("the run must fail");
    assert_eq!(err.operator(), Some(operator), "{err}");
    let text = format!("{what} broke at row 500");
    match (fail, &err) {
        (
            Fail::Error,
            RunError::Operator {
                instance, error, ..
            },
        ) => {
            assert_eq!(*instance, 0);
            assert_eq!(error.kind(), ErrorKind::User);
            assert_eq!(error.message(), text);
            assert!(err.to_string().contains(operator), "{err}");
        }
        (
            Fail::Panic,
            RunError::Panic {
                instance, message, ..
            },
        ) => {
            assert_eq!(*instance, 0);
            assert_eq!(message, &format!("{what} exploded at row 500"));
        }
        _ => panic!("wrong variant for a {}: {err:?}", what),
    }
}

fn source_case(fail: Fail) {
    let mut p = pipeline("bad-source", 64);
    let _n = p
        .source(
            "src",
            BadSource {
                next: 0,
                at: 500,
                fail,
            },
        )
        .map("id", |x| x)
        .count("count");
    assert_fails(run_guarded(p), fail, "src", "source");
}

fn transform_case(fail: Fail) {
    let mut p = pipeline("bad-op", 64);
    let _n = p
        .source("gen", Generator::new(10_000, |i| i))
        .unary(
            "op",
            BadOp {
                seen: 0,
                at: 500,
                fail,
            },
        )
        .count("count");
    assert_fails(run_guarded(p), fail, "op", "transform");
}

fn sink_case(fail: Fail) {
    let mut p = pipeline("bad-sink", 64);
    let _n = p
        .source("gen", Generator::new(10_000, |i| i))
        .map("id", |x| x)
        .sink(
            "sink",
            BadSink {
                seen: 0,
                at: 500,
                fail,
            },
        );
    assert_fails(run_guarded(p), fail, "sink", "sink");
}

#[test]
fn a_source_error_names_the_source() {
    source_case(Fail::Error);
}

#[test]
fn a_source_panic_names_the_source() {
    source_case(Fail::Panic);
}

#[test]
fn a_transform_error_names_the_transform() {
    transform_case(Fail::Error);
}

#[test]
fn a_transform_panic_names_the_transform() {
    transform_case(Fail::Panic);
}

#[test]
fn a_panicking_map_closure_names_the_map() {
    let mut p = pipeline("bad-map", 64);
    let _n = p
        .source("gen", Generator::new(10_000, |i| i))
        .map("explode", |x| {
            assert!(x != 500, "transform exploded at row 500");
            x
        })
        .count("count");
    assert_fails(run_guarded(p), Fail::Panic, "explode", "transform");
}

#[test]
fn a_sink_error_names_the_sink() {
    sink_case(Fail::Error);
}

#[test]
fn a_sink_panic_names_the_sink() {
    sink_case(Fail::Panic);
}

#[test]
fn a_failing_open_names_the_operator() {
    struct NoOpen;
    impl Sink for NoOpen {
        type Input = Vec<u64>;
        type Output = ();
        fn open(&mut self, _: &InstanceInfo) -> Result<(), OperatorError> {
            Err(OperatorError::user("cannot open"))
        }
        fn on_batch(&mut self, _: usize, _: Vec<u64>) -> Result<(), OperatorError> {
            Ok(())
        }
        fn finish(&mut self) -> Result<(), OperatorError> {
            Ok(())
        }
    }
    let mut p = pipeline("bad-open", 64);
    let _h = p
        .source("gen", Generator::new(u64::MAX, |i| i))
        .sink("closed", NoOpen);
    let err = run_guarded(p).expect_err("open failed");
    assert_eq!(err.operator(), Some("closed"));
    assert!(err.to_string().contains("cannot open"), "{err}");
}

#[test]
fn a_failing_instance_is_named_with_its_index() {
    let mut p = pipeline("bad-instance", 16);
    let _n = p
        .source("gen", Generator::new(10_000, |i| i))
        .unary_with("par", |info| BadOp {
            seen: 0,
            at: if info.instance == 1 { 500 } else { u64::MAX },
            fail: Fail::Error,
        })
        .parallelism(3)
        .count("count");
    match run_guarded(p) {
        Err(RunError::Operator {
            operator,
            instance,
            error,
        }) => {
            assert_eq!((operator.as_str(), instance), ("par", 1));
            assert_eq!(error.message(), "transform broke at row 500");
        }
        other => panic!("expected an operator error, got {other:?}"),
    }
}

#[test]
fn a_failing_sink_in_one_branch_of_a_fan_out_fails_the_run() {
    let mut p = pipeline("bad-branch", 32);
    let gen = p
        .source("gen", Generator::new(u64::MAX, |i| i))
        .with_edge(EdgeConfig::default().with_capacity(2));
    let _ok = gen.clone().count("fine");
    let _bad = gen.sink(
        "broken",
        BadSink {
            seen: 0,
            at: 500,
            fail: Fail::Error,
        },
    );
    assert_fails(run_guarded(p), Fail::Error, "broken", "sink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_async_reports_the_failing_operator() {
    let mut p = pipeline("bad-async", 64);
    let _n = p
        .source("gen", Generator::new(10_000, |i| i))
        .unary(
            "op",
            BadOp {
                seen: 0,
                at: 500,
                fail: Fail::Error,
            },
        )
        .count("count");
    let result = tokio::time::timeout(common::GUARD, p.run_async())
        .await
        .expect("run_async ended");
    assert_fails(result, Fail::Error, "op", "transform");
}

/// Passes rows through and fails when its input ends.
struct FailsAtEnd;

impl Operator for FailsAtEnd {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(
        &mut self,
        _: usize,
        b: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        out.emit(b);
        Ok(())
    }

    fn on_end(&mut self, _: &mut Output<Vec<u64>>) -> Result<(), OperatorError> {
        Err(OperatorError::user("cannot flush"))
    }
}

#[test]
fn an_error_at_end_of_stream_names_the_operator() {
    let mut p = pipeline("bad-end", 64);
    let n = p
        .source("gen", Generator::new(1_000, |i| i))
        .unary("ender", FailsAtEnd)
        .count("count");
    let err = run_guarded(p).expect_err("on_end failed");
    assert_eq!(err.operator(), Some("ender"), "{err}");
    assert!(err.to_string().contains("cannot flush"), "{err}");
    assert_eq!(n.take(), None, "the sink never finished");
}

#[test]
fn a_sink_failing_in_finish_names_the_sink() {
    struct NoFinish(u64);
    impl Sink for NoFinish {
        type Input = Vec<u64>;
        type Output = u64;
        fn on_batch(&mut self, _: usize, b: Vec<u64>) -> Result<(), OperatorError> {
            self.0 += b.len() as u64;
            Ok(())
        }
        fn finish(&mut self) -> Result<u64, OperatorError> {
            Err(OperatorError::user(format!("lost {} rows", self.0)))
        }
    }
    let mut p = pipeline("bad-finish", 64);
    let out = p
        .source("gen", Generator::new(1_000, |i| i))
        .sink("final", NoFinish(0));
    let err = run_guarded(p).expect_err("finish failed");
    assert_eq!(err.operator(), Some("final"), "{err}");
    assert!(
        err.to_string().contains("lost 1000 rows"),
        "all rows came first: {err}"
    );
    assert_eq!(out.take(), None);
}
