//! A sink wrapper that limits the rows per second another sink accepts.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use weir_runtime::{Barrier, Batch, DeadLetter, InputPort, InstanceInfo, OperatorError, Sink};

/// Lets at most `rows_per_s` rows per second into the inner sink: the sink becomes the slowest
/// stage, and the pipeline's sources settle at its rate through backpressure.
///
/// Pacing is exact on average: each batch of `n` rows pushes the next admission time `n / rate`
/// seconds later; the sink is not ready until then (time that counts as busy). Every other hook
/// (`poll_flush`, `poll_barrier`, `poll_close`, closing, undelivered rows, dead letters) is the
/// inner sink's.
pub struct Throttle<K> {
    inner: K,
    rows_per_s: f64,
    next: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<K> std::fmt::Debug for Throttle<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("rows_per_s", &self.rows_per_s)
            .finish_non_exhaustive()
    }
}

impl<K> Throttle<K> {
    /// Limits `inner` to `rows_per_s` rows per second (must be positive).
    pub fn new(inner: K, rows_per_s: f64) -> Self {
        Self {
            inner,
            rows_per_s,
            next: None,
            sleep: None,
        }
    }
}

impl<K: Sink> Sink for Throttle<K> {
    type Input = K::Input;
    type Output = K::Output;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        if !(self.rows_per_s > 0.0 && self.rows_per_s.is_finite()) {
            return Err(OperatorError::user(format!(
                "throttle rate must be a positive number of rows per second, got {}",
                self.rows_per_s
            )));
        }
        self.inner.open(info)
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Some(next) = self.next {
            if Instant::now() < next {
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(next)));
                sleep.as_mut().reset(next);
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        self.inner.poll_ready(cx)
    }

    fn on_batch(&mut self, port: InputPort, batch: Self::Input) -> Result<(), OperatorError> {
        let now = Instant::now();
        let start = self
            .next
            .map_or(now, |n| n.max(now - Duration::from_millis(10)));
        let next = Duration::try_from_secs_f64(batch.rows() as f64 / self.rows_per_s)
            .ok()
            .and_then(|pause| start.checked_add(pause))
            .ok_or_else(|| {
                OperatorError::user(format!(
                    "throttle rate of {} rows per second is too small to pace a batch of {} rows",
                    self.rows_per_s,
                    batch.rows()
                ))
            })?;
        self.next = Some(next);
        self.inner.on_batch(port, batch)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.inner.poll_flush(cx)
    }

    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        barrier: Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        self.inner.poll_barrier(cx, barrier)
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_closed(cx)
    }

    fn undelivered_rows(&self) -> u64 {
        self.inner.undelivered_rows()
    }

    fn take_dead_letters(&mut self, out: &mut Vec<DeadLetter>) {
        self.inner.take_dead_letters(out);
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.inner.poll_close(cx)
    }

    fn finish(&mut self) -> Result<Self::Output, OperatorError> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Count;

    #[test]
    fn a_tiny_rate_holds_the_sink_back_and_an_unrepresentable_one_is_an_error() {
        let mut sink = Throttle::new(Count::<Vec<u64>>::new(), 1e-9);
        sink.on_batch(0, vec![1, 2, 3]).expect("counted");
        let next = sink.next.expect("paced");
        assert!(next > Instant::now() + Duration::from_secs(1 << 31)); // 3·10⁹ s
        let mut sink = Throttle::new(Count::<Vec<u64>>::new(), f64::MIN_POSITIVE);
        let err = sink
            .on_batch(0, vec![1])
            .expect_err("no clock holds that pause");
        assert!(err.to_string().contains("too small to pace"), "{err}");
    }

    /// Takes one extra poll to make a barrier durable, and notes the barriers it made durable.
    #[derive(Default)]
    struct SlowSync {
        polls: u32,
        synced: Vec<u64>,
    }

    impl Sink for SlowSync {
        type Input = Vec<u64>;
        type Output = Vec<u64>;
        fn on_batch(&mut self, _: InputPort, _: Vec<u64>) -> Result<(), OperatorError> {
            Ok(())
        }
        fn poll_barrier(
            &mut self,
            _: &mut Context<'_>,
            barrier: Barrier,
        ) -> Poll<Result<(), OperatorError>> {
            self.polls += 1;
            if self.polls % 2 == 1 {
                return Poll::Pending;
            }
            self.synced.push(barrier.id());
            Poll::Ready(Ok(()))
        }
        fn finish(&mut self) -> Result<Vec<u64>, OperatorError> {
            Ok(std::mem::take(&mut self.synced))
        }
    }

    #[test]
    fn a_barrier_waits_for_the_inner_sink_to_make_its_rows_durable() {
        // Before, the default `poll_barrier` (the inner `poll_flush`) reported rows durable
        // that the inner sink had not synced.
        let mut sink = Throttle::new(SlowSync::default(), 1e12);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let barrier = weir_runtime::Barriers::default().barrier(7);
        sink.on_batch(0, vec![1, 2]).expect("taken");
        assert!(sink.poll_barrier(&mut cx, barrier).is_pending());
        assert!(matches!(
            sink.poll_barrier(&mut cx, barrier),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(sink.finish().expect("finished"), vec![7]);
    }
}
