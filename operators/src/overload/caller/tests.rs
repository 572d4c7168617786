//! The caller against simulated services, on tokio's paused clock: timers (service time,
//! backoff, `Retry-After`) advance virtually, so every run is exact and instant.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::*;
use crate::overload::limiter::AdaptiveConcurrencyConfig;
use crate::overload::retry::{RetryBudgetConfig, RetryPolicy};

/// A service that serves `capacity` calls at once in `latency` and answers 503 (or 429 with
/// `retry_after`) past that, recording the most calls it ever had in flight.
struct Service {
    capacity: usize,
    latency: Duration,
    retry_after: Option<Duration>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    served: AtomicUsize,
    rejected: AtomicUsize,
}

impl Service {
    fn new(capacity: usize, latency: Duration) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            latency,
            retry_after: None,
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
        })
    }

    fn call(self: &Arc<Self>) -> CallFn<u64, u64> {
        let service = Arc::clone(self);
        Arc::new(move |x: u64| {
            let service = Arc::clone(&service);
            Box::pin(async move {
                let n = service.in_flight.fetch_add(1, SeqCst) + 1;
                service.peak.fetch_max(n, SeqCst);
                if n > service.capacity {
                    service.in_flight.fetch_sub(1, SeqCst);
                    service.rejected.fetch_add(1, SeqCst);
                    return Err(match service.retry_after {
                        Some(d) => CallError::status(429, Some(d)),
                        None => CallError::status(503, None),
                    });
                }
                tokio::time::sleep(service.latency).await;
                service.in_flight.fetch_sub(1, SeqCst);
                service.served.fetch_add(1, SeqCst);
                Ok(x * 10)
            })
        })
    }
}

fn describe() -> Arc<dyn Fn(&u64) -> String + Send + Sync> {
    Arc::new(|x: &u64| x.to_string())
}

fn config(max: usize) -> CallerConfig {
    CallerConfig {
        concurrency: AdaptiveConcurrencyConfig {
            initial: 2,
            max,
            ..AdaptiveConcurrencyConfig::default()
        },
        ..CallerConfig::default()
    }
}

/// Feeds `inputs` as room allows and collects every finished record, like an operator would.
async fn drive<O: Send + 'static>(
    caller: &mut Caller<u64, O>,
    inputs: impl IntoIterator<Item = u64>,
) -> Vec<Finished<O>> {
    let mut inputs = inputs.into_iter().peekable();
    let mut out = Vec::new();
    poll_fn(|cx| loop {
        while caller.has_room() {
            match inputs.next() {
                Some(x) => caller.push(x),
                None => break,
            }
        }
        caller.poll(cx).expect("no call panics");
        while let Some(f) = caller.take_finished() {
            out.push(f);
        }
        if inputs.peek().is_none() && caller.is_idle() {
            return Poll::Ready(());
        }
        if !(caller.has_room() && inputs.peek().is_some()) {
            return Poll::Pending;
        }
    })
    .await;
    out
}

fn outputs<O: Copy>(finished: &[Finished<O>]) -> Vec<O> {
    finished
        .iter()
        .filter_map(|f| match f {
            Finished::Output(o) => Some(*o),
            Finished::Failed(_) => None,
        })
        .collect()
}

fn failures<O>(finished: &[Finished<O>]) -> Vec<&DeadLetter> {
    finished
        .iter()
        .filter_map(|f| match f {
            Finished::Failed(d) => Some(d),
            Finished::Output(_) => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn converges_near_the_services_concurrency_and_never_exceeds_its_limit() {
    let service = Service::new(20, Duration::from_millis(10));
    let mut caller = Caller::new(service.call(), describe(), &config(64), false).unwrap();
    let finished = drive(&mut caller, 0..5_000).await;
    let stats = caller.monitor().stats();

    // Every record is accounted for: delivered or dead-lettered with a reason.
    assert_eq!(finished.len(), 5_000);
    assert_eq!(stats.successes as usize + failures(&finished).len(), 5_000);
    assert_eq!(stats.successes as usize, service.served.load(SeqCst));
    // The limit settled around the service's concurrency: probing past 20 meets 503s, which
    // cut it by 30 %.
    assert!(
        (12..=24).contains(&stats.limit),
        "final limit {}",
        stats.limit
    );
    assert!(
        stats.overloaded > 0,
        "the limiter never probed the capacity"
    );
    // Overload answers cost few extra attempts: retry amplification stays near 1.
    let amplification = stats.attempts as f64 / stats.successes as f64;
    assert!(amplification <= 1.1, "amplification {amplification}");
    assert!(stats.peak_in_flight <= 64);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn shrinks_on_429_and_honours_retry_after() {
    let service = Arc::new(Service {
        retry_after: Some(Duration::from_secs(2)),
        ..Arc::into_inner(Service::new(4, Duration::from_millis(10))).unwrap()
    });
    let mut cfg = config(64);
    cfg.concurrency.initial = 16;
    cfg.retry.max_attempts = 10;
    // This test is about the limiter and the hint, not the budget (tested below).
    cfg.budget.min_retries_per_sec = 1_000;
    let mut caller = Caller::new(service.call(), describe(), &cfg, false).unwrap();
    let started = Instant::now();
    let finished = drive(&mut caller, 0..16).await;
    let stats = caller.monitor().stats();
    assert_eq!(outputs(&finished).len(), 16);
    // Twelve of the first flight of sixteen met a 429, and the limit came down.
    assert!(service.rejected.load(SeqCst) >= 12);
    assert!(stats.limit <= 11, "limit {}", stats.limit);
    // Retries waited at least the two seconds the service asked for.
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(caller.monitor().latency().quantile(1.0) >= Duration::from_secs(2));
    assert!(service.peak.load(SeqCst) <= 16);
}

#[tokio::test(start_paused = true)]
async fn only_retryable_failures_are_retried_and_the_rest_are_dead_letters() {
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&attempts);
    let call: CallFn<u64, u64> = Arc::new(move |x| {
        counter.fetch_add(1, SeqCst);
        Box::pin(async move {
            match x {
                0 => Err(CallError::status(404, None)),
                1 => Err(CallError::status(503, None)),
                2 => Err(CallError::Permanent("body not encodable".into())),
                _ => Ok(x),
            }
        })
    });
    let mut caller = Caller::new(call, describe(), &config(8), true).unwrap();
    let finished = drive(&mut caller, 0..4).await;
    let stats = caller.monitor().stats();
    let dead = failures(&finished);
    assert_eq!(outputs(&finished), vec![3]);
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0].raw, "0");
    assert!(
        dead[0]
            .reason
            .starts_with("not retryable after 1 attempt: "),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[1].reason.starts_with("gave up after 3 attempts: "),
        "{}",
        dead[1].reason
    );
    assert!(dead[2].reason.contains("body not encodable"));
    // 404 and the permanent failure once each, 503 three times, the success once.
    assert_eq!(attempts.load(SeqCst), 6);
    assert_eq!(
        (stats.non_retryable, stats.attempts_exhausted, stats.retries),
        (2, 1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_gives_up_at_once() {
    let call: CallFn<u64, u64> = Arc::new(|_| {
        Box::pin(async { Err(CallError::status(429, Some(Duration::from_secs(60)))) })
    });
    let mut cfg = config(8);
    cfg.retry = RetryPolicy {
        deadline: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    let mut caller = Caller::new(call, describe(), &cfg, false).unwrap();
    let finished = drive(&mut caller, 0..3).await;
    let stats = caller.monitor().stats();
    assert_eq!(failures(&finished).len(), 3);
    assert_eq!((stats.attempts, stats.deadline_exceeded), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_caps_retries_at_a_tenth_of_the_calls() {
    // A service that always fails: without a budget every call would be sent three times.
    let call: CallFn<u64, u64> =
        Arc::new(|_| Box::pin(async { Err(CallError::status(503, None)) }));
    let mut cfg = config(8);
    cfg.budget = RetryBudgetConfig {
        ratio: 0.1,
        min_retries_per_sec: 0,
        max_tokens: 100,
    };
    let mut caller = Caller::new(call, describe(), &cfg, false).unwrap();
    let finished = drive(&mut caller, 0..2_000).await;
    let stats = caller.monitor().stats();
    assert_eq!(failures(&finished).len(), 2_000);
    assert!(stats.retries <= 200, "{} retries", stats.retries);
    assert!(stats.attempts <= 2_200, "{} attempts", stats.attempts);
    assert!(stats.budget_exhausted >= 1_800);
}

#[tokio::test(start_paused = true)]
async fn ordered_results_come_in_input_order_whatever_the_latency() {
    let call: CallFn<u64, u64> = Arc::new(|x| {
        Box::pin(async move {
            // Later records answer sooner.
            tokio::time::sleep(Duration::from_millis(100 - x % 100)).await;
            Ok(x)
        })
    });
    let mut caller = Caller::new(call, describe(), &config(16), true).unwrap();
    let finished = drive(&mut caller, 0..300).await;
    assert_eq!(outputs(&finished), (0..300).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_slow_attempt_times_out_as_an_overload_signal() {
    let call: CallFn<u64, u64> = Arc::new(|x| {
        Box::pin(async move {
            if x == 0 {
                std::future::pending::<()>().await;
            }
            Ok(x)
        })
    });
    let mut cfg = config(8);
    cfg.attempt_timeout = Duration::from_secs(1);
    cfg.retry.max_attempts = 1;
    let mut caller = Caller::new(call, describe(), &cfg, true).unwrap();
    let finished = drive(&mut caller, 0..2).await;
    assert_eq!(outputs(&finished), vec![1]);
    assert!(failures(&finished)[0]
        .reason
        .contains("no answer within 1s"));
    assert_eq!(caller.monitor().stats().overloaded, 1);
}
