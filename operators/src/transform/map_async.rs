//! `map_async`: enrich every row by calling an external service, without overloading it.
//!
//! Each row is one call of an async function, run through a [`Caller`]: at most the adaptive
//! concurrency limit in flight, retryable failures retried within the attempt limit, the
//! deadline and the retry budget, and the rest sent to the dead letters with the reason (see
//! [`overload::caller`](crate::overload::caller)). The operator takes input only while it holds
//! fewer rows than the limit ([`Operator::poll_ready`]), so the limit is its demand upstream.
//! Results are emitted in input order as soon as every earlier row has finished (a slow row holds
//! the ones after it back; they count against the limit meanwhile), and rows still in flight at
//! the end of the input are finished before the stream ends.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use weir_runtime::{Data, InputPort, InstanceInfo, Operator, OperatorError, Output, Stream};

use crate::overload::caller::{CallError, CallFn, Caller, CallerConfig, CallerMonitor, Finished};

/// The `map_async` operator; build it with [`AsyncStreamExt::map_async`].
pub struct MapAsync<T, U> {
    call: CallFn<T, U>,
    config: CallerConfig,
    caller: Option<Caller<T, U>>,
    monitor: CallerMonitor,
}

impl<T, U> Debug for MapAsync<T, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapAsync")
            .field("stats", &self.monitor.stats())
            .finish_non_exhaustive()
    }
}

impl<T, U> MapAsync<T, U>
where
    T: Clone + Debug + Data,
    U: Data,
{
    /// Calls `f` for every row under `config`, reporting into `monitor`.
    pub fn new<F, Fut>(config: CallerConfig, monitor: CallerMonitor, f: F) -> Self
    where
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<U, CallError>> + Send + 'static,
    {
        Self {
            call: Arc::new(move |row| Box::pin(f(row))),
            config,
            caller: None,
            monitor,
        }
    }

    fn caller(&mut self) -> Result<&mut Caller<T, U>, OperatorError> {
        self.caller
            .as_mut()
            .ok_or_else(|| OperatorError::internal("map_async was used before it was opened"))
    }
}

impl<T, U> Operator for MapAsync<T, U>
where
    T: Clone + Debug + Data,
    U: Data,
{
    type Input = Vec<T>;
    type Output = Vec<U>;

    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        let describe = Arc::new(|row: &T| format!("{row:?}"));
        let caller = Caller::new(Arc::clone(&self.call), describe, &self.config, true)
            .map_err(|e| OperatorError::user(format!("invalid map_async configuration: {e}")))?
            .with_monitor(self.monitor.clone());
        self.caller = Some(caller);
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let caller = self.caller()?;
        if let Err(e) = caller.poll(cx) {
            return Poll::Ready(Err(e));
        }
        if caller.has_room() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn on_batch(
        &mut self,
        _port: InputPort,
        batch: Vec<T>,
        _out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        let caller = self.caller()?;
        for row in batch {
            caller.push(row);
        }
        Ok(())
    }

    fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<U>>,
    ) -> Poll<Result<(), OperatorError>> {
        let caller = self.caller()?;
        if let Err(e) = caller.poll(cx) {
            return Poll::Ready(Err(e));
        }
        let mut results = Vec::new();
        while let Some(done) = caller.take_finished() {
            match done {
                Finished::Output(u) => results.push(u),
                Finished::Failed(letter) => {
                    // Keep the order of results around the dead letter.
                    out.emit(std::mem::take(&mut results));
                    out.dead_letter(letter);
                }
            }
        }
        out.emit(results);
        if caller.is_idle() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

/// Operators on typed streams that call external services.
pub trait AsyncStreamExt<T: Data>: Sized {
    /// Replaces every row by `f(row).await`, with at most the adaptive concurrency limit of
    /// calls in flight, retries and dead letters as [`CallerConfig`] says; results in input
    /// order. See the [module docs](self).
    ///
    /// ```
    /// use weir_operators::overload::caller::{CallError, CallerConfig};
    /// use weir_operators::prelude::*;
    ///
    /// let mut p = Pipeline::new("enrich");
    /// let out = p
    ///     .source("ids", Generator::new(100, |i| i))
    ///     .map_async("lookup", CallerConfig::default(), |id: u64| async move {
    ///         // A real enrichment calls a service here.
    ///         if id == 13 { Err(CallError::status(404, None)) } else { Ok(id * 2) }
    ///     })
    ///     .collect("out");
    /// let report = p.run()?;
    /// assert_eq!(out.take().unwrap().len(), 99);
    /// assert_eq!(report.dead_letters, 1); // id 13, not retryable
    /// # Ok::<(), weir_runtime::RunError>(())
    /// ```
    fn map_async<U, F, Fut>(self, name: impl Into<String>, config: CallerConfig, f: F) -> Stream<U>
    where
        T: Clone + Debug,
        U: Data,
        F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<U, CallError>> + Send + 'static;

    /// As [`map_async`](Self::map_async), reporting into `monitor` so the calls can be watched
    /// while the pipeline runs.
    fn map_async_monitored<U, F, Fut>(
        self,
        name: impl Into<String>,
        config: CallerConfig,
        monitor: CallerMonitor,
        f: F,
    ) -> Stream<U>
    where
        T: Clone + Debug,
        U: Data,
        F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<U, CallError>> + Send + 'static;
}

impl<T: Data> AsyncStreamExt<T> for Stream<T> {
    fn map_async<U, F, Fut>(self, name: impl Into<String>, config: CallerConfig, f: F) -> Stream<U>
    where
        T: Clone + Debug,
        U: Data,
        F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<U, CallError>> + Send + 'static,
    {
        self.map_async_monitored(name, config, CallerMonitor::default(), f)
    }

    fn map_async_monitored<U, F, Fut>(
        self,
        name: impl Into<String>,
        config: CallerConfig,
        monitor: CallerMonitor,
        f: F,
    ) -> Stream<U>
    where
        T: Clone + Debug,
        U: Data,
        F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<U, CallError>> + Send + 'static,
    {
        self.unary_with(name, move |_| {
            MapAsync::new(config.clone(), monitor.clone(), f.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use weir_runtime::{Pipeline, PipelineConfig};

    use super::*;
    use crate::overload::limiter::AdaptiveConcurrencyConfig;
    use crate::overload::retry::RetryPolicy;
    use crate::prelude::{Generator, StreamExt};

    #[test]
    fn results_keep_input_order_retries_succeed_and_refusals_are_dead_lettered() {
        let failed_once = Arc::new(AtomicBool::new(false));
        let config = CallerConfig {
            concurrency: AdaptiveConcurrencyConfig {
                initial: 8,
                max: 8,
                ..AdaptiveConcurrencyConfig::default()
            },
            retry: RetryPolicy {
                base: Duration::from_millis(1),
                ..RetryPolicy::default()
            },
            ..CallerConfig::default()
        };
        let monitor = CallerMonitor::default();
        let mut p = Pipeline::with_config(
            "enrich",
            PipelineConfig {
                batch_rows: 3,
                ..PipelineConfig::default()
            },
        );
        let out = p
            .source("ids", Generator::new(50, |i| i))
            .map_async_monitored("lookup", config, monitor.clone(), move |id: u64| {
                let failed_once = Arc::clone(&failed_once);
                async move {
                    // Later ids answer sooner, so completion order is not input order.
                    tokio::time::sleep(Duration::from_micros(500 * (50 - id))).await;
                    match id {
                        7 => Err(CallError::status(404, None)),
                        9 if !failed_once.swap(true, Ordering::SeqCst) => {
                            Err(CallError::status(503, None))
                        }
                        _ => Ok(id * 10),
                    }
                }
            })
            .collect("out");
        let report = p.run().expect("the run succeeds");
        let want: Vec<u64> = (0..50).filter(|&i| i != 7).map(|i| i * 10).collect();
        assert_eq!(out.take().expect("collected"), want);
        assert_eq!(report.dead_letters, 1);
        let stats = monitor.stats();
        assert_eq!((stats.calls, stats.attempts, stats.retries), (50, 51, 1));
        assert!(stats.peak_in_flight <= 8);
    }
}
