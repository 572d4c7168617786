//! A run ends on its own whatever its tasks wait for: a sink that closes early cancels a source
//! waiting for data (not only one waiting for credit) and operators waiting in `poll_ready` or on
//! their asynchronous work; a chained operator's failure ends the run while its source is quiet.
//!
//! A run that hangs fails its test through a generous watchdog (it only turns a hang into a
//! failure; nothing is timed).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use weir_runtime::operator::{Output, Sink, Source, SourceStatus};
use weir_runtime::test_support::run_guarded;
use weir_runtime::{
    Chaining, InputPort, InstanceInfo, Operator, OperatorError, Pipeline, PipelineConfig, RunError,
};

const MODES: [Chaining; 2] = [Chaining::Off, Chaining::Operators];

/// Rows the source `src` emitted.
fn source_rows(report: &weir_runtime::RunReport) -> u64 {
    report
        .operators
        .iter()
        .find(|o| o.name == "src")
        .expect("the source is in the report")
        .rows_out
}

fn pipeline(name: &str, chaining: Chaining) -> Pipeline {
    Pipeline::with_config(
        name,
        PipelineConfig {
            chaining,
            batch_rows: 4,
            ..PipelineConfig::default()
        },
    )
}

/// Emits `rows` rows, then has nothing more, forever (and arranges no wake-up: nothing will
/// ever come, as from a socket nobody writes to).
struct ThenQuiet {
    left: u64,
}

impl Source for ThenQuiet {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.left == 0 {
            return Poll::Pending;
        }
        while self.left > 0 && !out.is_full() {
            out.push(self.left);
            self.left -= 1;
        }
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Takes `limit` rows, then says it is closed (its own consumer went away).
struct TakeThenClose {
    limit: u64,
    taken: Arc<AtomicU64>,
}

impl Sink for TakeThenClose {
    type Input = Vec<u64>;
    type Output = ();
    fn on_batch(&mut self, _: InputPort, b: Vec<u64>) -> Result<(), OperatorError> {
        self.taken.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(())
    }
    fn is_closed(&self) -> bool {
        self.taken.load(Ordering::Relaxed) >= self.limit
    }
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Passes rows on.
struct Pass;

impl Operator for Pass {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn on_batch(
        &mut self,
        _: InputPort,
        b: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        out.emit(b);
        Ok(())
    }
}

/// Passes its first batch on, then is never ready again and has work in flight forever (a
/// call to a service that never answers), arranging no wake-up.
struct StuckAfterOne {
    passed: bool,
}

impl Operator for StuckAfterOne {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if self.passed {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
    fn poll_flush(
        &mut self,
        _: &mut Context<'_>,
        _: &mut Output<Vec<u64>>,
    ) -> Poll<Result<(), OperatorError>> {
        if self.passed {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }
    fn on_batch(
        &mut self,
        _: InputPort,
        b: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        self.passed = true;
        out.emit(b);
        Ok(())
    }
}

#[test]
fn a_sink_closing_early_ends_a_run_whose_source_waits_for_data() {
    for chaining in MODES {
        let taken = Arc::new(AtomicU64::new(0));
        let mut p = pipeline("closed-source", chaining);
        p.source("src", ThenQuiet { left: 8 }).sink(
            "sink",
            TakeThenClose {
                limit: 4,
                taken: taken.clone(),
            },
        );
        let report = run_guarded(p).expect("the run succeeds");
        let taken = taken.load(Ordering::Relaxed);
        assert!(taken >= 4, "{chaining:?}");
        // Every row the source emitted is delivered or counted. (The source may not have read
        // all 8: once the sink has closed, nobody asks it for more.)
        let emitted = source_rows(&report);
        assert!((4..=8).contains(&emitted), "{chaining:?}: {emitted}");
        assert_eq!(
            taken + report.dropped_downstream_closed,
            emitted,
            "{chaining:?}"
        );
    }
}

#[test]
fn a_sink_closing_early_ends_a_run_whose_operator_waits_for_input() {
    for chaining in MODES {
        let taken = Arc::new(AtomicU64::new(0));
        let mut p = pipeline("closed-operator", chaining);
        p.source("src", ThenQuiet { left: 8 })
            .unary("pass", Pass)
            .unary("pass2", Pass)
            .sink(
                "sink",
                TakeThenClose {
                    limit: 4,
                    taken: taken.clone(),
                },
            );
        let report = run_guarded(p).expect("the run succeeds");
        let taken = taken.load(Ordering::Relaxed);
        assert!(taken >= 4, "{chaining:?}");
        let emitted = source_rows(&report);
        assert!((4..=8).contains(&emitted), "{chaining:?}: {emitted}");
        assert_eq!(
            taken + report.dropped_downstream_closed,
            emitted,
            "{chaining:?}"
        );
    }
}

#[test]
fn a_sink_closing_early_ends_a_run_whose_operator_is_never_ready_again() {
    for chaining in MODES {
        let taken = Arc::new(AtomicU64::new(0));
        let mut p = pipeline("closed-stuck", chaining);
        p.source("src", ThenQuiet { left: 100 })
            .unary("stuck", StuckAfterOne { passed: false })
            .sink(
                "sink",
                TakeThenClose {
                    limit: 4,
                    taken: taken.clone(),
                },
            );
        run_guarded(p).expect("the run succeeds");
        assert_eq!(taken.load(Ordering::Relaxed), 4, "{chaining:?}");
    }
}

#[derive(Clone, Copy, Debug)]
enum Fail {
    InOpen,
    InPollReady,
    PanicInPollReady,
}

/// Fails in `open` or in `poll_ready`, as told.
struct Failing {
    how: Fail,
}

impl Operator for Failing {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn open(&mut self, _: &InstanceInfo) -> Result<(), OperatorError> {
        if let Fail::InOpen = self.how {
            return Err(OperatorError::user("cannot reach the lookup service"));
        }
        Ok(())
    }
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Fail::PanicInPollReady = self.how {
            panic!("the lookup client broke");
        }
        Poll::Ready(Err(OperatorError::user("the lookup service refused us")))
    }
    fn on_batch(
        &mut self,
        _: InputPort,
        b: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        out.emit(b);
        Ok(())
    }
}

struct Discard;

impl Sink for Discard {
    type Input = Vec<u64>;
    type Output = ();
    fn on_batch(&mut self, _: InputPort, _: Vec<u64>) -> Result<(), OperatorError> {
        Ok(())
    }
    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

#[test]
fn an_operator_failing_in_open_or_poll_ready_ends_the_run_while_its_source_is_quiet() {
    for chaining in MODES {
        for (how, message) in [
            (Fail::InOpen, "cannot reach the lookup service"),
            (Fail::InPollReady, "the lookup service refused us"),
            (Fail::PanicInPollReady, "the lookup client broke"),
        ] {
            for behind in [false, true] {
                let mut p = pipeline("failing", chaining);
                let mut s = p.source("src", ThenQuiet { left: 0 });
                if behind {
                    // Failing as the second member of a chain.
                    s = s.unary("pass", Pass);
                }
                s.unary("lookup", Failing { how }).sink("sink", Discard);
                let err = run_guarded(p).expect_err("the operator's failure ends the run");
                let case = format!("{chaining:?}, {how:?}, behind {behind}: {err}");
                assert_eq!(err.operator(), Some("lookup"), "{case}");
                assert!(err.to_string().contains(message), "{case}");
                assert_eq!(
                    matches!(err, RunError::Panic { .. }),
                    matches!(how, Fail::PanicInPollReady),
                    "{case}"
                );
            }
        }
    }
}
