//! A reader dropped early ends the run even while the source has nothing to send: cancellation
//! reaches a source that waits for data, not only one that waits for credit.

use std::pin::Pin;
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use weir_operators::prelude::*;
use weir_runtime::Chaining;

/// Yields `0..n`, then nothing, forever (and arranges no wake-up: nothing will ever come).
struct ThenQuiet {
    next: u64,
    n: u64,
}

impl futures_core::Stream for ThenQuiet {
    type Item = u64;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<u64>> {
        if self.next == self.n {
            return Poll::Pending;
        }
        self.next += 1;
        Poll::Ready(Some(self.next - 1))
    }
}

#[test]
fn dropping_the_reader_ends_a_run_whose_source_waits_for_data() {
    for chaining in [Chaining::Off, Chaining::Operators] {
        let mut p = Pipeline::with_config(
            "reader-dropped",
            PipelineConfig {
                batch_rows: 4,
                linger: Duration::ZERO,
                chaining,
                ..PipelineConfig::default()
            },
        );
        let mut rows = p
            .source("src", AsyncSource::new(ThenQuiet { next: 0, n: 4 }))
            .map("double", |x| x * 2)
            .into_iter("rows", 4);
        let handle = p.spawn().expect("the pipeline starts");
        // One batch, partly read: the sink then waits for input that never comes.
        let first: Vec<u64> = rows.by_ref().take(3).collect();
        assert_eq!(first, [0, 2, 4]);
        drop(rows);
        // Only a hang trips this watchdog; nothing is timed.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(handle.join());
        });
        let report = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the run ended once its reader was gone")
            .expect("the run succeeds");
        let delivered = 3;
        assert_eq!(
            delivered + report.dropped_downstream_closed,
            4,
            "{chaining:?}: every row is delivered or counted"
        );
    }
}

#[test]
fn an_oversized_reader_capacity_is_capped_not_a_panic() {
    let mut p = Pipeline::with_config("huge-reader", PipelineConfig::default());
    let rows = p
        .source("src", IterSource::new(0..10u64))
        .into_iter("rows", usize::MAX);
    let handle = p.spawn().expect("the pipeline starts");
    assert_eq!(rows.collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    handle.join().expect("the run succeeds");
}
