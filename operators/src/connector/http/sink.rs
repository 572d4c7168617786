//! The HTTP sink: POSTs every row as JSON to a service, at the pace the service can take.
//!
//! Each row is one request, sent through a [`Caller`]: at most the adaptive concurrency limit in
//! flight (AIMD on round-trip time and on 429/503), retries of retryable failures only, with
//! full-jitter backoff, a deadline, `Retry-After` honoured, and a retry budget (see
//! [`overload::caller`](crate::overload::caller)). The sink is [ready](Sink::poll_ready) only
//! while it holds fewer rows than the limit, so the limit is its demand: a service that slows
//! down slows the source, and nothing queues up in between. Rows the service refuses for good
//! (a 4xx other than 408/429, an exhausted retry, the budget spent) go to the sink's dead letters
//! with the reason and the JSON body.
//!
//! Keep the pipeline's batches small next to the limit (a batch is taken whole, so the sink may
//! hold up to `limit + batch_rows - 1` rows, plus at most `limit` waiting to be retried).

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::Serialize;
use weir_runtime::{Data, DeadLetter, InputPort, InstanceInfo, OperatorError, Sink};

use super::{HttpClient, HttpClientConfig};
use crate::overload::caller::{
    CallError, CallFn, Caller, CallerConfig, CallerMonitor, CallerStats, Finished,
};

/// Settings of an [`HttpSink`].
#[derive(Debug, Clone)]
pub struct HttpSinkConfig {
    /// Where rows are POSTed (`http://host:port/path`).
    pub url: String,
    /// The HTTP client (pool, bearer token, response size).
    pub client: HttpClientConfig,
    /// Concurrency, retries, budget and per-attempt timeout.
    pub caller: CallerConfig,
}

impl HttpSinkConfig {
    /// Defaults for posting to `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: HttpClientConfig::default(),
            caller: CallerConfig::default(),
        }
    }
}

/// POSTs rows of type `T` as JSON; see the [module docs](self). Yields its [`CallerStats`].
///
/// With checkpoints the sink is **at least once**: a request, once answered, cannot be taken
/// back, so it takes no part in the two-phase commit, and a run restored from a checkpoint
/// sends again the rows that followed it. Make the service idempotent (a key per row) where
/// duplicates matter.
///
/// ```no_run
/// use weir_operators::connector::http::{HttpSink, HttpSinkConfig};
/// use weir_operators::prelude::*;
///
/// let mut p = Pipeline::new("post");
/// let sink = HttpSink::new(HttpSinkConfig::new("http://127.0.0.1:8080/work"));
/// let monitor = sink.monitor(); // watch it while it runs
/// let stats = p.source("n", Generator::new(1_000, |i| serde_json::json!({ "n": i })))
///     .sink("post", sink);
/// p.run()?;
/// let stats = stats.take().unwrap();
/// println!("{} attempts for {} rows", stats.attempts, stats.successes);
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
pub struct HttpSink<T> {
    config: HttpSinkConfig,
    caller: Option<Caller<Bytes, ()>>,
    monitor: CallerMonitor,
    dead: Vec<DeadLetter>,
    _rows: std::marker::PhantomData<fn(T)>,
}

impl<T> std::fmt::Debug for HttpSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &self.config.url)
            .field("stats", &self.monitor.stats())
            .finish_non_exhaustive()
    }
}

impl<T> HttpSink<T> {
    /// A sink with `config`; the client and its tasks start when the pipeline runs.
    pub fn new(config: HttpSinkConfig) -> Self {
        Self {
            config,
            caller: None,
            monitor: CallerMonitor::default(),
            dead: Vec::new(),
            _rows: std::marker::PhantomData,
        }
    }

    /// A handle to watch the sink's counters (limit, attempts, latency) while it runs.
    pub fn monitor(&self) -> CallerMonitor {
        self.monitor.clone()
    }

    fn caller(&mut self) -> Result<&mut Caller<Bytes, ()>, OperatorError> {
        self.caller
            .as_mut()
            .ok_or_else(|| OperatorError::internal("the HTTP sink was used before it was opened"))
    }

    /// Moves finished rows out of the caller: failures become dead letters.
    fn collect(&mut self, cx: &mut Context<'_>) -> Result<(), OperatorError> {
        let caller = self.caller.as_mut().ok_or_else(|| {
            OperatorError::internal("the HTTP sink was used before it was opened")
        })?;
        caller.poll(cx)?;
        while let Some(done) = caller.take_finished() {
            if let Finished::Failed(letter) = done {
                self.dead.push(letter);
            }
        }
        Ok(())
    }
}

impl<T: Serialize + Data> Sink for HttpSink<T> {
    type Input = Vec<T>;
    type Output = CallerStats;

    fn open(&mut self, _info: &InstanceInfo) -> Result<(), OperatorError> {
        let client = HttpClient::new(self.config.client.clone());
        let url: Arc<str> = Arc::from(self.config.url.as_str());
        let timeout = self.config.caller.attempt_timeout;
        let call: CallFn<Bytes, ()> = Arc::new(move |body: Bytes| {
            let (client, url) = (client.clone(), Arc::clone(&url));
            Box::pin(async move {
                client
                    .post(&url, "application/json", body, timeout)
                    .await
                    .map(|_| ())
                    .map_err(CallError::from)
            })
        });
        let describe = Arc::new(|body: &Bytes| String::from_utf8_lossy(body).into_owned());
        let caller = Caller::new(call, describe, &self.config.caller, false)
            .map_err(|e| OperatorError::user(format!("invalid HTTP sink configuration: {e}")))?
            .with_monitor(self.monitor.clone());
        self.caller = Some(caller);
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Err(e) = self.collect(cx) {
            return Poll::Ready(Err(e));
        }
        if self.caller()?.has_room() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Err(e) = self.collect(cx) {
            return Poll::Ready(Err(e));
        }
        if self.caller()?.is_idle() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn on_batch(&mut self, _port: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        for row in batch {
            match serde_json::to_vec(&row) {
                Ok(body) => self.caller()?.push(Bytes::from(body)),
                Err(e) => self.dead.push(DeadLetter::new(
                    format!("the row cannot be encoded as JSON: {e}"),
                    String::new(),
                )),
            }
        }
        Ok(())
    }

    fn take_dead_letters(&mut self, out: &mut Vec<DeadLetter>) {
        out.append(&mut self.dead);
    }

    fn finish(&mut self) -> Result<CallerStats, OperatorError> {
        Ok(self.monitor.stats())
    }
}
