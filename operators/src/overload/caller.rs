//! Calling an external service from inside a pipeline without overloading it: the engine under
//! the HTTP sink and `map_async`.
//!
//! # Protocol
//!
//! A [`Caller`] takes records, calls an async function once per record (an HTTP request, say),
//! and retries failures that are worth it. Everything it decides comes from the primitives of
//! this module's siblings:
//!
//! ```text
//!   push(record) ──► queued ──(limiter.try_acquire)──► attempt in flight ──► answer
//!                      ▲                                                       │
//!                      │            ┌────── success ──► finished (output) ◄────┤
//!                      │            │                                          │ failure
//!                      └─ due ◄─ waiting on a timer ◄── RetryAfter(d) ◄── policy.decide
//!                                   (budget.try_withdraw)                      │ GiveUp
//!                                                                              ▼
//!                                                          finished (dead letter, reason)
//! ```
//!
//! * **Concurrency.** Attempts in flight never exceed the [`AdaptiveConcurrency`] limit, which
//!   adapts to round-trip times and to 429/503 answers (AIMD). Every answer is reported to it
//!   with the attempt's round-trip time.
//! * **Demand.** [`Caller::has_room`] is true while fewer records than the limit are held
//!   outside the retry timers (queued, in flight, or finished and not yet taken) and fewer than
//!   the limit wait on a retry timer: an operator takes input only then, so its limit *is* its
//!   demand upstream, and a slower service slows the source rather than filling a queue. A
//!   record waiting out a backoff or a `Retry-After` is not load on the service, so it does not
//!   hold a place of the limit (it has its own bound). A batch taken at once may overshoot by up
//!   to its size minus one; those records wait in the queue, never in flight beyond the limit.
//!   In all, a caller holds at most `2 × limit + batch - 1` records.
//! * **Retries.** Only retryable failures ([`CallError::retryability`]), at most
//!   `retry.max_attempts` attempts, capped exponential backoff with full jitter, never past the
//!   deadline measured from the first attempt, a `Retry-After` honoured as a floor, and each
//!   retry paid for from a [`RetryBudget`] that original calls fill at 10 % a call. Whatever is
//!   given up becomes a dead letter carrying the reason ([`GiveUp`]), counted by reason.
//! * **Waiting.** A retry waits on one timer (the earliest due retry), never in a sleep loop.
//!   Retries go before new records when the limiter has room.
//!
//! # Tasks
//!
//! Each attempt runs as a task of a [`JoinSet`] the caller owns (so attempts of one operator run
//! in parallel on the runtime's workers); dropping the caller aborts every attempt. No task
//! outlives it.

mod error;
mod stats;
#[cfg(test)]
mod tests;

pub use error::CallError;
pub use stats::{CallerMonitor, CallerStats, LatencyHistogram};

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use weir_runtime::{DeadLetter, OperatorError};

use super::limiter::{AdaptiveConcurrency, AdaptiveConcurrencyConfig, LimiterConfigError};
use super::retry::{GiveUp, RetryBudget, RetryBudgetConfig, RetryDecision, RetryPolicy};

/// A boxed call future.
pub type CallFuture<O> = Pin<Box<dyn Future<Output = Result<O, CallError>> + Send>>;

/// The function a [`Caller`] calls once per attempt.
pub type CallFn<T, O> = Arc<dyn Fn(T) -> CallFuture<O> + Send + Sync>;

/// Settings of a [`Caller`].
#[derive(Debug, Clone)]
pub struct CallerConfig {
    /// The adaptive concurrency limit.
    pub concurrency: AdaptiveConcurrencyConfig,
    /// Attempts, backoff and deadline per record.
    pub retry: RetryPolicy,
    /// How much retrying the whole caller may do.
    pub budget: RetryBudgetConfig,
    /// An attempt that has no answer after this long fails as a timeout (an overload signal).
    pub attempt_timeout: Duration,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

impl Default for CallerConfig {
    fn default() -> Self {
        Self {
            concurrency: AdaptiveConcurrencyConfig::default(),
            retry: RetryPolicy::default(),
            budget: RetryBudgetConfig::default(),
            attempt_timeout: Duration::from_secs(10),
            seed: 0x5eed,
        }
    }
}

/// A record the caller is done with.
#[derive(Debug)]
pub enum Finished<O> {
    /// The call succeeded.
    Output(O),
    /// The call was given up; the dead letter says why.
    Failed(DeadLetter),
}

enum State<O> {
    Queued,
    InFlight,
    Waiting,
    Done(Finished<O>),
}

struct Item<T, O> {
    value: T,
    attempts: u32,
    first_sent: Option<Instant>,
    state: State<O>,
}

type Answer<O> = (u64, Duration, Result<O, CallError>);

/// The calling engine; see the [module docs](self).
pub struct Caller<T, O> {
    call: CallFn<T, O>,
    describe: Arc<dyn Fn(&T) -> String + Send + Sync>,
    limiter: AdaptiveConcurrency,
    policy: RetryPolicy,
    budget: RetryBudget,
    attempt_timeout: Duration,
    rng: Pcg64Mcg,
    /// Emit in input order (`map_async`) or as calls finish (sinks).
    ordered: bool,
    next_seq: u64,
    items: BTreeMap<u64, Item<T, O>>,
    queued: VecDeque<u64>,
    retries: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Finished records, in the order they finished (unordered mode only).
    finished: VecDeque<Finished<O>>,
    in_flight: JoinSet<Answer<O>>,
    /// Wakes the caller when the earliest retry is due; made on first use (a timer needs the
    /// runtime, a caller may be built outside it).
    timer: Option<Pin<Box<Sleep>>>,
    counters: CallerMonitor,
}

impl<T, O> std::fmt::Debug for Caller<T, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("limit", &self.limiter.limit())
            .field("held", &(self.items.len() + self.finished.len()))
            .finish_non_exhaustive()
    }
}

impl<T, O> Caller<T, O>
where
    T: Clone + Send + 'static,
    O: Send + 'static,
{
    /// A caller of `call`, describing records in dead letters with `describe`; results in input
    /// order when `ordered`, else as they finish.
    ///
    /// # Errors
    ///
    /// The concurrency configuration is invalid.
    pub fn new(
        call: CallFn<T, O>,
        describe: Arc<dyn Fn(&T) -> String + Send + Sync>,
        config: &CallerConfig,
        ordered: bool,
    ) -> Result<Self, LimiterConfigError> {
        let limiter = AdaptiveConcurrency::new(config.concurrency)?;
        let counters = CallerMonitor::default();
        counters.0.limit.store(limiter.limit(), Relaxed);
        Ok(Self {
            call,
            describe,
            limiter,
            policy: config.retry,
            budget: RetryBudget::new(config.budget, Instant::now().into_std()),
            attempt_timeout: config.attempt_timeout,
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            ordered,
            next_seq: 0,
            items: BTreeMap::new(),
            queued: VecDeque::new(),
            retries: BinaryHeap::new(),
            finished: VecDeque::new(),
            in_flight: JoinSet::new(),
            timer: None,
            counters,
        })
    }

    /// Reports into `monitor` instead of a fresh one, so it can be handed out before the caller
    /// exists.
    pub fn with_monitor(mut self, monitor: CallerMonitor) -> Self {
        monitor.0.limit.store(self.limiter.limit(), Relaxed);
        self.counters = monitor;
        self
    }

    /// A handle to watch this caller's counters.
    pub fn monitor(&self) -> CallerMonitor {
        self.counters.clone()
    }

    /// Records held: queued, in flight, waiting to retry, or finished and not taken.
    pub fn held(&self) -> usize {
        self.items.len() + self.finished.len()
    }

    /// Whether the caller may take another record: fewer than its concurrency limit are held
    /// outside the retry timers (queued, in flight, finished and not taken), and fewer than the
    /// limit wait on a retry timer.
    pub fn has_room(&self) -> bool {
        let limit = self.limiter.limit();
        let waiting = self.retries.len();
        self.held() - waiting < limit && waiting < limit
    }

    /// Whether nothing is held.
    pub fn is_idle(&self) -> bool {
        self.held() == 0
    }

    /// Takes a record; it is called as soon as the limit allows (call [`poll`](Self::poll)).
    pub fn push(&mut self, value: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.items.insert(
            seq,
            Item {
                value,
                attempts: 0,
                first_sent: None,
                state: State::Queued,
            },
        );
        self.queued.push_back(seq);
        self.counters.0.calls.fetch_add(1, Relaxed);
    }

    /// Handles answers that arrived, sends what the limit allows, and arms the retry timer.
    /// Wake-ups are arranged through `cx` for the next answer and the next due retry.
    ///
    /// # Errors
    ///
    /// A call panicked.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Result<(), OperatorError> {
        loop {
            self.dispatch();
            // Polled after sending, so the set registers our waker for what is in flight.
            let mut answered = false;
            while let Poll::Ready(Some(joined)) = self.in_flight.poll_join_next(cx) {
                let (seq, rtt, result) = joined.map_err(|e| {
                    OperatorError::user(format!("a call failed without an answer: {e}"))
                })?;
                self.answer(seq, rtt, result);
                answered = true;
            }
            if answered {
                // Answers free slots and schedule retries: send again.
                continue;
            }
            self.counters
                .0
                .in_flight
                .store(self.limiter.in_flight(), Relaxed);
            let Some(&Reverse((due, _))) = self.retries.peek() else {
                return Ok(());
            };
            if due <= Instant::now() {
                // Due, but the limiter is full: an answer will wake us.
                return Ok(());
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            timer.as_mut().reset(due);
            if timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
        }
    }

    /// The next finished record: in input order when ordered (only once every earlier record
    /// has finished), else in the order they finished.
    pub fn take_finished(&mut self) -> Option<Finished<O>> {
        if !self.ordered {
            return self.finished.pop_front();
        }
        let entry = self.items.first_entry()?;
        if !matches!(entry.get().state, State::Done(_)) {
            return None;
        }
        match entry.remove().state {
            State::Done(f) => Some(f),
            _ => unreachable!("checked above"),
        }
    }

    fn dispatch(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((due, seq))) = self.retries.peek() {
            if due > now || !self.limiter.try_acquire() {
                break;
            }
            self.retries.pop();
            self.send(seq, now);
        }
        while let Some(&seq) = self.queued.front() {
            if !self.limiter.try_acquire() {
                break;
            }
            self.queued.pop_front();
            self.budget.deposit();
            self.send(seq, now);
        }
    }

    fn send(&mut self, seq: u64, now: Instant) {
        let item = self
            .items
            .get_mut(&seq)
            .expect("scheduled records are held");
        item.attempts += 1;
        item.first_sent.get_or_insert(now);
        item.state = State::InFlight;
        let call = (self.call)(item.value.clone());
        let timeout = self.attempt_timeout;
        self.in_flight.spawn(async move {
            let sent = Instant::now();
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(result) => result,
                Err(_) => Err(CallError::timeout(timeout)),
            };
            (seq, sent.elapsed(), result)
        });
        let c = &self.counters.0;
        c.attempts.fetch_add(1, Relaxed);
        c.peak_in_flight
            .fetch_max(self.limiter.in_flight(), Relaxed);
    }

    fn answer(&mut self, seq: u64, rtt: Duration, result: Result<O, CallError>) {
        let c = Arc::clone(&self.counters.0);
        let now = Instant::now();
        let outcome = match &result {
            Ok(_) => super::limiter::Outcome::Success,
            Err(e) => e.outcome(),
        };
        if outcome == super::limiter::Outcome::Overloaded {
            c.overloaded.fetch_add(1, Relaxed);
        }
        self.limiter.on_response(rtt, outcome);
        c.limit.store(self.limiter.limit(), Relaxed);
        let Some(item) = self.items.get_mut(&seq) else {
            return;
        };
        let since_first = now - item.first_sent.unwrap_or(now);
        let error = match result {
            Ok(output) => {
                c.successes.fetch_add(1, Relaxed);
                c.latency.record(since_first);
                self.finish(seq, Finished::Output(output));
                return;
            }
            Err(e) => e,
        };
        let decision = self.policy.decide(
            item.attempts,
            since_first,
            error.retryability(),
            error.retry_after(),
            &mut self.rng,
        );
        let decision = match decision {
            RetryDecision::RetryAfter(_) if !self.budget.try_withdraw(now.into_std()) => {
                RetryDecision::GiveUp(GiveUp::BudgetExhausted)
            }
            d => d,
        };
        match decision {
            RetryDecision::RetryAfter(delay) => {
                item.state = State::Waiting;
                // A delay no clock can hold (a huge configured cap) waits as long as one can.
                let at = now
                    .checked_add(delay)
                    .unwrap_or_else(|| now + Duration::from_secs(1 << 32));
                self.retries.push(Reverse((at, seq)));
                c.retries.fetch_add(1, Relaxed);
            }
            RetryDecision::GiveUp(why) => {
                c.gave_up(why);
                let reason = format!(
                    "{} after {} attempt{}: {error}",
                    give_up_text(why),
                    item.attempts,
                    if item.attempts == 1 { "" } else { "s" }
                );
                let letter = DeadLetter::new(reason, (self.describe)(&item.value));
                self.finish(seq, Finished::Failed(letter));
            }
        }
    }

    fn finish(&mut self, seq: u64, finished: Finished<O>) {
        if self.ordered {
            if let Some(item) = self.items.get_mut(&seq) {
                item.state = State::Done(finished);
            }
        } else {
            self.items.remove(&seq);
            self.finished.push_back(finished);
        }
    }
}

fn give_up_text(why: GiveUp) -> &'static str {
    match why {
        GiveUp::NonRetryable => "not retryable",
        GiveUp::AttemptsExhausted => "gave up",
        GiveUp::DeadlineExceeded => "deadline exceeded",
        GiveUp::BudgetExhausted => "retry budget spent",
    }
}
