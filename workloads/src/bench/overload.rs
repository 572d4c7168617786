//! `weir bench overload`: a retry storm beside a paced client, against the same overloadable
//! service.
//!
//! An in-process [`TestService`] on loopback serves at most `K` requests at once, each in
//! `base × (1 + n / K)` with `n` in flight (so latency doubles as it fills), and answers `503`
//! (or `429`) past `K` at once — for free, or, with `rejection_cost`, after spending that long on
//! the request, during which it counts as in flight (a real service pays to refuse work). With `base` = 20 ms, `K = C × 2 × base` makes its capacity `C`
//! requests per second. Two clients are driven through the same open-loop arrival schedule,
//! `X` requests per second for `duration`, then `low` (half of `C` by default) for `recovery`,
//! each against a fresh service:
//!
//! * **naive**: every arrival is a call of [`NaiveRetryClient`], which retries a failure at once,
//!   up to three times, ignoring `Retry-After`;
//! * **weir**: a pipeline `arrivals → HttpSink`. The edge into the sink is declared
//!   `Overflow::DropNewest`: the sink's adaptive concurrency limit is its demand, and arrivals
//!   it has no room for are shed at the edge and counted, instead of queueing or retrying. The
//!   sink retries only retryable failures, with backoff, a deadline and a 10 % retry budget.
//!
//! Each client gets one [`OverloadRow`]: attempts per useful request (amplification =
//! attempts / successes at the service), goodput (successes per second over the overload phase
//! after its first `warmup` seconds), p50/p99 latency of successful calls from their first
//! attempt, and the time to recover after the load drops (the first whole second after the drop
//! with no rejection and at least 90 % of the low rate served).

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use weir_operators::connector::http::{HttpClient, HttpClientConfig, HttpSink, HttpSinkConfig};
use weir_operators::overload::caller::{CallerConfig, LatencyHistogram};
use weir_operators::overload::limiter::AdaptiveConcurrencyConfig;

use crate::http_service::{
    NaiveRetryClient, OverloadResponse, SecondCounts, TestService, TestServiceConfig,
    TestServiceTotals,
};
use weir_runtime::{
    EdgeConfig, OperatorError, Output, Overflow, Pipeline, PipelineConfig, Source, SourceStatus,
};

/// What `weir bench overload` runs.
#[derive(Debug, Clone)]
pub struct OverloadConfig {
    /// The service's capacity in requests per second (C).
    pub capacity_rps: f64,
    /// The offered load during the overload phase (X).
    pub offered_rps: f64,
    /// Length of the overload phase.
    pub duration: Duration,
    /// Length of the phase after it, at `low_rps`.
    pub recovery: Duration,
    /// The offered load after the overload phase.
    pub low_rps: f64,
    /// Seconds at the start of the overload phase left out of goodput (the limiter's ramp).
    pub warmup: Duration,
    /// The service time of a request alone.
    pub base_latency: Duration,
    /// Answer `429` with `Retry-After: 1` past capacity instead of `503`.
    pub answer_429: bool,
    /// Service time a rejection costs the service (it counts as in flight meanwhile).
    pub rejection_cost: Duration,
}

impl OverloadConfig {
    /// The default schedule for capacity `C` and offered load `X`.
    pub fn new(capacity_rps: f64, offered_rps: f64, duration: Duration) -> Self {
        Self {
            capacity_rps,
            offered_rps,
            duration,
            recovery: Duration::from_secs(3),
            low_rps: capacity_rps / 2.0,
            warmup: Duration::from_secs(2).min(duration / 2),
            base_latency: Duration::from_millis(20),
            answer_429: false,
            rejection_cost: Duration::ZERO,
        }
    }

    /// Requests the service takes at once: `C × 2 × base`, at least 1.
    pub fn service_concurrency(&self) -> usize {
        ((self.capacity_rps * 2.0 * self.base_latency.as_secs_f64()).round() as usize).max(1)
    }

    fn phases(&self) -> Vec<(Duration, f64)> {
        vec![
            (self.duration, self.offered_rps),
            (self.recovery, self.low_rps),
        ]
    }
}

/// One client's result: one JSON object per line of `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverloadRow {
    /// `naive` or `weir`.
    pub client: String,
    /// Offered load during the overload phase, requests per second.
    pub offered_rps: f64,
    /// The service's capacity, requests per second.
    pub capacity: f64,
    /// Requests the service takes at once.
    pub service_concurrency: usize,
    /// Length of the overload phase, seconds.
    pub duration_s: f64,
    /// Requests that arrived (over both phases).
    pub arrivals: u64,
    /// Requests the service received, retries included.
    pub attempts: u64,
    /// Requests the service served.
    pub successes: u64,
    /// Arrivals that ended without success: given up (naive, weir) or shed before any attempt
    /// (weir's `DropNewest` edge).
    pub failed: u64,
    /// Of `failed`, arrivals weir shed at the edge without sending them.
    pub shed: u64,
    /// Attempts per useful request: `attempts / successes`.
    pub amplification: f64,
    /// Successes per second during the overload phase, after the warm-up.
    pub goodput_rps: f64,
    /// Goodput as a share of the capacity.
    pub goodput_ratio: f64,
    /// Median latency of successful calls, first attempt to success, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Seconds from the load drop to the first second with no rejection and at least 90 % of
    /// the low rate served; `null` if that never happened.
    pub recovery_s: Option<f64>,
    /// The service's counts per second, from its start.
    pub per_second: Vec<SecondCounts>,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum OverloadError {
    /// A setting is out of range.
    #[error("invalid overload benchmark settings: {0}")]
    Config(String),
    /// The test service could not start.
    #[error("cannot start the test service: {0}")]
    Service(#[from] weir_operators::connector::http::BindError),
    /// The runtime could not start.
    #[error("cannot start a tokio runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The weir pipeline failed.
    #[error("the weir pipeline failed: {0}")]
    Run(#[from] weir_runtime::RunError),
}

/// Runs both clients, naive first, and returns their rows.
///
/// # Errors
///
/// Invalid settings, a service or runtime that cannot start, or a failed pipeline.
pub fn run(config: &OverloadConfig) -> Result<Vec<OverloadRow>, OverloadError> {
    let valid = |x: f64| x.is_finite() && x > 0.0;
    if !(valid(config.capacity_rps) && valid(config.offered_rps) && valid(config.low_rps)) {
        return Err(OverloadError::Config(
            "capacity, offered and low rates must be positive".into(),
        ));
    }
    if config.duration.is_zero() || config.offered_rps * config.duration.as_secs_f64() > 1e7 {
        return Err(OverloadError::Config(
            "the duration must be positive and the run at most 10 M requests".into(),
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("weir-bench-overload")
        .build()?;
    eprintln!("running the naive client...");
    let naive = runtime.block_on(naive_arm(config))?;
    eprintln!("running weir's sink...");
    let weir = runtime.block_on(weir_arm(config))?;
    Ok(vec![naive, weir])
}

fn start_service(config: &OverloadConfig) -> Result<TestService, OverloadError> {
    let concurrency = NonZeroUsize::new(config.service_concurrency()).expect("at least 1");
    Ok(TestService::start(TestServiceConfig {
        capacity: concurrency,
        base_latency: config.base_latency,
        overload: if config.answer_429 {
            OverloadResponse::TooManyRequests {
                retry_after: Duration::from_secs(1),
            }
        } else {
            OverloadResponse::ServiceUnavailable
        },
        rejection_cost: config.rejection_cost,
        ..TestServiceConfig::default()
    })?)
}

/// Arrivals due by `elapsed` under `phases` (piecewise constant rates), and the whole schedule's.
fn due(phases: &[(Duration, f64)], elapsed: Duration) -> f64 {
    let mut t = Duration::ZERO;
    let mut n = 0.0;
    for &(len, rate) in phases {
        let part = elapsed.saturating_sub(t).min(len);
        n += part.as_secs_f64() * rate;
        t += len;
    }
    n
}

fn total(phases: &[(Duration, f64)]) -> Duration {
    phases.iter().map(|p| p.0).sum()
}

/// The time at which arrival number `k` (0-based) is due.
fn due_at(phases: &[(Duration, f64)], k: u64) -> Option<Duration> {
    let mut t = Duration::ZERO;
    let mut before = 0.0;
    let target = k as f64 + 1.0;
    for &(len, rate) in phases {
        let here = len.as_secs_f64() * rate;
        if before + here >= target {
            return Some(t + Duration::from_secs_f64((target - before) / rate));
        }
        before += here;
        t += len;
    }
    None
}

async fn naive_arm(config: &OverloadConfig) -> Result<OverloadRow, OverloadError> {
    let service = start_service(config)?;
    let url = service.work_url();
    let client = Arc::new(NaiveRetryClient::new(HttpClient::new(HttpClientConfig {
        max_idle_per_host: 1024,
        ..HttpClientConfig::default()
    })));
    let latency = Arc::new(LatencyHistogram::new());
    let failed = Arc::new(AtomicU64::new(0));
    let phases = config.phases();
    let start = Instant::now();
    let mut calls = JoinSet::new();
    let mut sent = 0u64;
    // Open loop: arrivals follow the schedule whatever the answers. The calls in flight are
    // bounded by the schedule (rate × the longest call); the set is reaped as it goes.
    let cap = (config.offered_rps * 30.0) as usize + 1024;
    while let Some(at) = due_at(&phases, sent) {
        tokio::time::sleep_until(start + at).await;
        while calls.try_join_next().is_some() {}
        // Everything due by now, and at least the arrival we woke up for.
        let target = (due(&phases, start.elapsed()).floor() as u64).max(sent + 1);
        while sent < target {
            if calls.len() >= cap {
                // Never reached at sane settings; an arrival past the bound is counted lost.
                failed.fetch_add(1, Relaxed);
                sent += 1;
                continue;
            }
            let (client, url, latency, failed) = (
                Arc::clone(&client),
                url.clone(),
                Arc::clone(&latency),
                Arc::clone(&failed),
            );
            calls.spawn(async move {
                let began = Instant::now();
                let outcome = client
                    .post_json(&url, &json!({ "n": sent }), Duration::from_secs(10))
                    .await;
                if outcome.result.is_ok() {
                    latency.record(began.elapsed());
                } else {
                    failed.fetch_add(1, Relaxed);
                }
            });
            sent += 1;
        }
    }
    while calls.join_next().await.is_some() {}
    let totals = service.totals();
    let per_second = service.per_second();
    let _ = service.shutdown().await;
    Ok(row(
        "naive",
        config,
        sent,
        totals,
        failed.load(Relaxed),
        0,
        &latency,
        per_second,
    ))
}

/// Emits one JSON request body per arrival on the schedule, whatever its consumer does.
struct Arrivals {
    phases: Vec<(Duration, f64)>,
    start: Option<Instant>,
    emitted: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Source for Arrivals {
    type Output = Vec<Value>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Value>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let start = *self.start.get_or_insert_with(Instant::now);
        loop {
            let Some(at) = due_at(&self.phases, self.emitted) else {
                return Poll::Ready(Ok(SourceStatus::Done));
            };
            if start + at <= Instant::now() {
                out.push(json!({ "n": self.emitted }));
                self.emitted += 1;
                if out.is_full() {
                    return Poll::Ready(Ok(SourceStatus::Continue));
                }
                continue;
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(start + at)));
            timer.as_mut().reset(start + at);
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

/// The weir sink's settings for this service: AIMD on overload answers with Vector's default
/// decrease ratio (0.9), and a latency threshold above the service's own latency range (it
/// doubles as it fills without queueing, which is not congestion).
fn sink_caller(concurrency: usize) -> CallerConfig {
    CallerConfig {
        concurrency: AdaptiveConcurrencyConfig {
            initial: 4.min(concurrency.max(1)),
            max: (concurrency * 4).max(8),
            threshold_ratio: 2.5,
            decrease_factor: 0.9,
            ..AdaptiveConcurrencyConfig::default()
        },
        attempt_timeout: Duration::from_secs(10),
        ..CallerConfig::default()
    }
}

async fn weir_arm(config: &OverloadConfig) -> Result<OverloadRow, OverloadError> {
    let service = start_service(config)?;
    let mut sink_config = HttpSinkConfig::new(service.work_url());
    sink_config.caller = sink_caller(config.service_concurrency());
    let sink = HttpSink::<Value>::new(sink_config);
    let monitor = sink.monitor();
    let phases = config.phases();
    let pipeline_run = tokio::task::spawn_blocking(move || {
        let mut p = Pipeline::with_config(
            "overload",
            PipelineConfig {
                batch_rows: 1,
                workers: Some(2),
                linger: Duration::ZERO,
                ..PipelineConfig::default()
            },
        );
        let stats = p
            .source(
                "arrivals",
                Arrivals {
                    phases,
                    start: None,
                    emitted: 0,
                    timer: None,
                },
            )
            .with_edge(EdgeConfig::default().with_capacity(2))
            .on_overflow(Overflow::DropNewest)
            .sink("post", sink);
        let report = weir::interrupt::run(p)?;
        Ok::<_, weir_runtime::RunError>((report, stats.take().unwrap_or_default()))
    });
    let (report, stats) = pipeline_run
        .await
        .map_err(|e| OverloadError::Config(format!("the pipeline thread failed: {e}")))??;
    let totals = service.totals();
    let per_second = service.per_second();
    let _ = service.shutdown().await;
    let shed = report.overflow.dropped_newest;
    let arrivals = report.operators[0].rows_out;
    Ok(row(
        "weir",
        config,
        arrivals,
        totals,
        stats.dead_lettered() + shed,
        shed,
        monitor.latency(),
        per_second,
    ))
}

#[allow(clippy::too_many_arguments)]
fn row(
    client: &str,
    config: &OverloadConfig,
    arrivals: u64,
    totals: TestServiceTotals,
    failed: u64,
    shed: u64,
    latency: &LatencyHistogram,
    per_second: Vec<SecondCounts>,
) -> OverloadRow {
    let goodput = goodput(config, &per_second);
    OverloadRow {
        client: client.to_string(),
        offered_rps: config.offered_rps,
        capacity: config.capacity_rps,
        service_concurrency: config.service_concurrency(),
        duration_s: config.duration.as_secs_f64(),
        arrivals,
        attempts: totals.attempts,
        successes: totals.successes,
        failed,
        shed,
        amplification: totals.attempts as f64 / totals.successes.max(1) as f64,
        goodput_rps: goodput,
        goodput_ratio: goodput / config.capacity_rps,
        p50_ms: latency.quantile(0.5).as_secs_f64() * 1e3,
        p99_ms: latency.quantile(0.99).as_secs_f64() * 1e3,
        recovery_s: recovery(config, &per_second),
        per_second,
    }
}

/// Successes per second over the whole seconds of the overload phase after the warm-up.
fn goodput(config: &OverloadConfig, per_second: &[SecondCounts]) -> f64 {
    let from = config.warmup.as_secs();
    let to = config.duration.as_secs(); // exclusive
    if to <= from {
        return 0.0;
    }
    let served: u64 = per_second
        .iter()
        .filter(|s| (from..to).contains(&s.second))
        .map(|s| s.successes)
        .sum();
    served as f64 / (to - from) as f64
}

/// Whole seconds from the load drop to the first second with no rejection and at least 90 % of
/// the low rate served.
fn recovery(config: &OverloadConfig, per_second: &[SecondCounts]) -> Option<f64> {
    let drop = config.duration.as_secs();
    let end = total(&config.phases()).as_secs();
    (drop..end)
        .find(|&s| {
            let c = per_second
                .iter()
                .find(|c| c.second == s)
                .copied()
                .unwrap_or_default();
            c.rejections == 0 && c.successes as f64 >= 0.9 * config.low_rps
        })
        .map(|s| (s - drop) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_counts_arrivals_per_phase() {
        let phases = vec![
            (Duration::from_secs(2), 100.0),
            (Duration::from_secs(1), 10.0),
        ];
        assert_eq!(due(&phases, Duration::from_secs(1)), 100.0);
        assert_eq!(due(&phases, Duration::from_secs(3)), 210.0);
        assert_eq!(due(&phases, Duration::from_secs(9)), 210.0);
        assert_eq!(due_at(&phases, 0), Some(Duration::from_millis(10)));
        assert_eq!(due_at(&phases, 199), Some(Duration::from_secs(2)));
        assert_eq!(due_at(&phases, 200), Some(Duration::from_millis(2100)));
        assert_eq!(due_at(&phases, 209), Some(Duration::from_secs(3)));
        assert_eq!(due_at(&phases, 210), None);
    }

    #[test]
    fn goodput_and_recovery_read_the_per_second_counts() {
        let config = OverloadConfig {
            warmup: Duration::from_secs(1),
            ..OverloadConfig::new(100.0, 200.0, Duration::from_secs(3))
        };
        let s = |second, successes, rejections| SecondCounts {
            second,
            attempts: successes + rejections,
            successes,
            rejections,
        };
        let per_second = vec![
            s(0, 10, 5),
            s(1, 90, 5),
            s(2, 96, 0),
            s(3, 50, 3),
            s(4, 49, 0),
        ];
        assert_eq!(goodput(&config, &per_second), 93.0);
        // Second 3 still saw rejections; second 4 served 49 of the 50 offered.
        assert_eq!(recovery(&config, &per_second), Some(1.0));
        assert_eq!(config.service_concurrency(), 4);
    }
}
