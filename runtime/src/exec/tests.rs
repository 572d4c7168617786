//! The asynchronous hooks of the operator API as the executor drives them: `Operator::poll_ready`
//! and `poll_flush`, `Sink::poll_flush`, `Source::on_stop`. Work "in flight" completes on a later
//! poll (a future that is pending once), so every test is exact and needs no clock.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::operator::{InputPort, Operator, Output, Sink, Source, SourceStatus};
use crate::test_support::{CollectAll, Upto};
use crate::{Chaining, OperatorError, Pipeline, PipelineConfig};

/// Pending on its first poll (after waking its task), ready on the next: a result that arrives
/// "later".
struct Later(bool);

impl Future for Later {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Doubles every row "asynchronously", at most `limit` rows in flight, emitting in order.
struct AsyncDouble {
    limit: usize,
    batch_rows: usize,
    in_flight: VecDeque<(u64, Later)>,
    peak: usize,
}

impl Operator for AsyncDouble {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn open(&mut self, info: &crate::InstanceInfo) -> Result<(), OperatorError> {
        self.batch_rows = info.batch_rows;
        Ok(())
    }

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if self.in_flight.len() + self.batch_rows <= self.limit {
            Poll::Ready(Ok(()))
        } else {
            // `poll_flush` runs in the same wait and wakes us as results complete.
            Poll::Pending
        }
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        _: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        self.in_flight
            .extend(batch.into_iter().map(|x| (x, Later(false))));
        self.peak = self.peak.max(self.in_flight.len());
        if self.peak > self.limit {
            return Err(OperatorError::internal(format!(
                "{} rows in flight, limit {}",
                self.peak, self.limit
            )));
        }
        Ok(())
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<(), OperatorError>> {
        let mut done = Vec::new();
        while let Some((x, later)) = self.in_flight.front_mut() {
            if Pin::new(later).poll(cx).is_pending() {
                break;
            }
            done.push(*x * 2);
            self.in_flight.pop_front();
        }
        out.emit(done);
        if self.in_flight.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        batch_rows,
        workers: Some(2),
        ..PipelineConfig::default()
    }
}

fn async_double(limit: usize) -> AsyncDouble {
    AsyncDouble {
        limit,
        batch_rows: 0,
        in_flight: VecDeque::new(),
        peak: 0,
    }
}

#[test]
fn an_operator_with_work_in_flight_takes_input_only_below_its_limit_and_finishes_it() {
    // In a task of its own and chained into its producer's task, alone and two in a row.
    for chaining in [Chaining::Off, Chaining::Operators] {
        for depth in [1, 2] {
            for (rows, batch_rows, limit) in [(1000, 1, 3), (1000, 4, 4), (7, 8, 8)] {
                let mut p = Pipeline::with_config(
                    "async",
                    PipelineConfig {
                        chaining,
                        ..config(batch_rows)
                    },
                );
                let mut stream = p
                    .source("n", Upto(0, rows))
                    .unary("double0", async_double(limit));
                if depth == 2 {
                    stream = stream.unary("double1", async_double(limit));
                }
                let out = stream.sink("out", CollectAll::default());
                let report = p.run().unwrap();
                let case = format!("{chaining:?}, depth {depth}, rows {rows}, batch {batch_rows}");
                // Every result arrives, in order, including those still in flight at the end.
                let want: Vec<u64> = (0..rows).map(|x| x << depth).collect();
                assert_eq!(out.take().unwrap(), want, "{case}");
                let chained = report
                    .operators
                    .iter()
                    .filter(|o| o.name.starts_with("double") && o.chained_into.is_some())
                    .count();
                let expected = if chaining == Chaining::Off { 0 } else { depth };
                assert_eq!(chained, expected, "{case}");
            }
        }
    }
}

/// A sink whose writes complete later; it is ready for at most `limit` pending writes.
struct AsyncWrites {
    limit: usize,
    pending: VecDeque<(u64, Later)>,
    written: Vec<u64>,
}

impl AsyncWrites {
    fn complete(&mut self, cx: &mut Context<'_>) {
        while let Some((x, later)) = self.pending.front_mut() {
            if Pin::new(later).poll(cx).is_pending() {
                break;
            }
            self.written.push(*x);
            self.pending.pop_front();
        }
    }
}

impl Sink for AsyncWrites {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.complete(cx);
        if self.pending.len() < self.limit {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.complete(cx);
        if self.pending.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn on_batch(&mut self, _: usize, b: Vec<u64>) -> Result<(), OperatorError> {
        self.pending
            .extend(b.into_iter().map(|x| (x, Later(false))));
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<u64>, OperatorError> {
        if !self.pending.is_empty() {
            return Err(OperatorError::internal("finished with writes in flight"));
        }
        Ok(std::mem::take(&mut self.written))
    }
}

#[test]
fn a_sink_finishes_its_work_in_flight_before_its_result() {
    let mut p = Pipeline::with_config("writes", config(16));
    let out = p.source("n", Upto(0, 500)).sink(
        "w",
        AsyncWrites {
            limit: 4,
            pending: VecDeque::new(),
            written: Vec::new(),
        },
    );
    p.run().unwrap();
    assert_eq!(out.take().unwrap(), (0..500).collect::<Vec<_>>());
}

/// Waits for the stop; asked to stop, it hands on what it "acknowledged" and ends.
struct Acknowledged {
    stopping: bool,
}

impl Source for Acknowledged {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.stopping {
            out.emit(vec![7, 8, 9]);
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        // Nothing arrives until the stop (no wake-up is ever arranged).
        Poll::Pending
    }

    fn on_stop(&mut self) -> SourceStatus {
        self.stopping = true;
        SourceStatus::Continue
    }
}

#[test]
fn a_source_asked_to_stop_may_hand_on_what_it_holds() {
    let mut p = Pipeline::with_config("stop", config(16));
    let out = p
        .source("acks", Acknowledged { stopping: false })
        .sink("out", CollectAll::default());
    let handle = p.spawn().unwrap();
    handle.stop();
    handle.join().unwrap();
    assert_eq!(out.take().unwrap(), vec![7, 8, 9]);
}

#[test]
fn by_default_a_stopped_source_ends_at_once() {
    struct Never;
    impl Source for Never {
        type Output = Vec<u64>;
        fn poll_produce(
            &mut self,
            _: &mut Context<'_>,
            _: &mut Output<Vec<u64>>,
        ) -> Poll<Result<SourceStatus, OperatorError>> {
            Poll::Pending
        }
    }
    let mut p = Pipeline::with_config("stop", config(16));
    let out = p.source("never", Never).sink("out", CollectAll::default());
    let handle = p.spawn().unwrap();
    handle.stop();
    handle.join().unwrap();
    assert_eq!(out.take().unwrap(), Vec::<u64>::new());
}

/// Counts the rows it has produced into `produced`.
struct Counting {
    next: u64,
    produced: tokio::sync::watch::Sender<u64>,
}

impl Source for Counting {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        out.push(self.next);
        self.next += 1;
        self.produced.send_replace(self.next);
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Takes a batch only with a permit from the test; publishes the rows it has taken.
struct Permitted {
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    waiting: Option<Pin<Box<dyn Future<Output = tokio::sync::OwnedSemaphorePermit> + Send>>>,
    received: tokio::sync::watch::Sender<u64>,
}

impl Sink for Permitted {
    type Input = Vec<u64>;
    type Output = ();

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let permits = std::sync::Arc::clone(&self.permits);
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(async move { permits.acquire_owned().await.unwrap() }));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(permit) => {
                permit.forget();
                self.waiting = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn on_batch(&mut self, _: usize, b: Vec<u64>) -> Result<(), OperatorError> {
        self.received.send_modify(|n| *n += b.len() as u64);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

#[test]
fn a_sink_that_paces_itself_hands_back_credit_for_each_batch_it_takes() {
    use std::time::Duration;
    use tokio::sync::{watch, Semaphore};

    // An edge of 8 messages whose credit is re-granted in chunks of 4: without handing credit
    // back as it waits on its own pace, the sink would let its producer send again only after
    // taking 4 batches.
    let (produced_tx, mut produced) = watch::channel(0u64);
    let (received_tx, mut received) = watch::channel(0u64);
    let permits = std::sync::Arc::new(Semaphore::new(0));
    let mut p = Pipeline::with_config(
        "paced",
        PipelineConfig {
            batch_rows: 1,
            edge: crate::EdgeConfig::default()
                .with_capacity(8)
                .with_grant_chunk(4),
            ..config(1)
        },
    );
    p.source(
        "n",
        Counting {
            next: 0,
            produced: produced_tx,
        },
    )
    .sink(
        "paced",
        Permitted {
            permits: permits.clone(),
            waiting: None,
            received: received_tx,
        },
    );
    let handle = p.spawn().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // A bound on a failing test, not a wait for data: every wait below ends as soon as the
    // counter reaches its value.
    let bound = Duration::from_secs(60);
    let checked: Result<(), String> = rt.block_on(async {
        let wait = |rx: &mut watch::Receiver<u64>, n: u64, what: &'static str| {
            let mut rx = rx.clone();
            async move {
                let reached = matches!(
                    tokio::time::timeout(bound, rx.wait_for(|&v| v == n)).await,
                    Ok(Ok(_))
                );
                if reached {
                    Ok(())
                } else {
                    Err(format!("{what}: expected {n}, have {}", *rx.borrow()))
                }
            }
        };
        wait(&mut produced, 8, "rows produced (the edge fills)").await?;
        for taken in 1..=3u64 {
            permits.add_permits(1);
            wait(&mut received, taken, "rows taken by the sink").await?;
            // One batch taken, one message of credit back: the producer sends one more.
            wait(
                &mut produced,
                8 + taken,
                "rows produced after the sink took one",
            )
            .await?;
        }
        Ok(())
    });
    // Stop the run either way, so a failure is reported rather than hung on.
    handle.stop();
    permits.add_permits(1 << 20);
    handle.join().unwrap();
    checked.unwrap();
}
