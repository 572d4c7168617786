//! Retrying failed requests without turning an outage into a retry storm.
//!
//! # Protocol
//!
//! A client that retries blindly multiplies the load on a service exactly when the service is
//! least able to take it. Three checks, applied in this order after a failed attempt, keep
//! retries useful and bounded:
//!
//! 1. **Is the failure worth retrying?** [`classify`] sorts HTTP statuses: 408, 429, 502, 503
//!    and 504 say "not now" and are [`Retryability::Retryable`]; every other status (all other
//!    4xx, which repeat identically, and 500/501/505…, which are treated as deterministic
//!    server faults) is not. [`Failure::Transport`] (connection refused or reset, timeout) is
//!    retryable — at-least-once delivery accepts that a request whose answer was lost may arrive
//!    twice.
//! 2. **Does this request have attempts and time left?** [`RetryPolicy::decide`] allows at most
//!    `max_attempts` attempts in total and never schedules one past `deadline` (measured from
//!    the first attempt). The delay is capped exponential backoff with *full jitter*: retry `n`
//!    waits a uniformly random time in `[0, min(cap, base * 2^(n-1))]`, which spreads the
//!    retries of many clients that failed together instead of synchronising them. A server's
//!    `Retry-After` is a floor on that delay.
//! 3. **Can the client as a whole afford it?** [`RetryBudget`] is a token bucket in the manner
//!    of gRPC retry throttling and Finagle's `RetryBudget`: every original request deposits
//!    `ratio` of a token (10 % by default), every retry withdraws a whole one, so retries add at
//!    most `ratio` to the load however many requests fail. A small floor of
//!    `min_retries_per_sec` keeps a trickle of retries possible when traffic is too low to fund
//!    them. Deposits are capped at `max_tokens`, so a long healthy period cannot bank a burst.
//!
//! Give up when any check says no, and count the reason ([`GiveUp`]): each is an explicit,
//! visible overload decision, not a silent drop.
//!
//! # Cost
//!
//! [`RetryPolicy`] is plain configuration; [`RetryBudget`] holds four integers and uses exact
//! integer arithmetic (milli-tokens), so its bound holds without rounding drift: over any span
//! of time `T`, successful withdrawals are at most
//! `ratio * deposits + min_retries_per_sec * (T + 1 s)`. Neither reads a clock: time is passed
//! in, randomness comes from the caller's RNG.

use std::time::{Duration, Instant};

use rand::{Rng, RngExt};

/// Whether a failure may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryability {
    /// The same request may succeed later.
    Retryable,
    /// Retrying would fail the same way (or there is nothing to retry).
    NonRetryable,
}

/// How an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with this HTTP status.
    Status(u16),
    /// No answer: connect error, reset, timeout. The request may or may not have been processed.
    Transport,
}

impl Failure {
    /// Classifies the failure: statuses as [`classify`], transport errors as retryable.
    pub fn retryability(self) -> Retryability {
        match self {
            Failure::Status(status) => classify(status),
            Failure::Transport => Retryability::Retryable,
        }
    }
}

/// Classifies an HTTP status: 408, 429, 502, 503 and 504 are retryable, everything else is not
/// (including 1xx–3xx, for which there is nothing to retry).
pub fn classify(status: u16) -> Retryability {
    match status {
        408 | 429 | 502 | 503 | 504 => Retryability::Retryable,
        _ => Retryability::NonRetryable,
    }
}

/// Why a request is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GiveUp {
    /// The failure is not retryable.
    NonRetryable,
    /// `max_attempts` attempts were made.
    AttemptsExhausted,
    /// The next attempt would start after the deadline.
    DeadlineExceeded,
    /// The client's [`RetryBudget`] is spent.
    BudgetExhausted,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop, for this reason.
    GiveUp(GiveUp),
}

/// Per-request retry limits and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included. Default 3; 1 disables retries.
    pub max_attempts: u32,
    /// Backoff ceiling of the first retry. Default 100 ms.
    pub base: Duration,
    /// Largest backoff ceiling. Default 10 s.
    pub cap: Duration,
    /// No attempt starts later than this after the first one. Default 30 s.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The backoff ceiling of retry number `retry` (1 for the first retry):
    /// `min(cap, base * 2^(retry-1))`, saturating.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(63);
        let nanos = self.base.as_nanos().saturating_mul(1u128 << doublings);
        let nanos = nanos.min(self.cap.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A full-jitter backoff for retry number `retry`: uniform in `[0, ceiling(retry)]`.
    pub fn backoff<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.random_range(0..=ceiling))
    }

    /// Decides what to do after attempt number `attempts_made` (1 for the first) failed,
    /// `elapsed` after the first attempt started. `retry_after` is the server's hint, if any
    /// (see [`retry_after`](super::retry_after)); the delay is never shorter than it.
    ///
    /// This does not consult a [`RetryBudget`]: withdraw from it only when this returns
    /// `RetryAfter`, so requests that give up anyway do not spend tokens.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use rand::{rngs::SmallRng, SeedableRng};
    /// use weir_operators::overload::retry::*;
    ///
    /// let policy = RetryPolicy::default();
    /// let mut budget = RetryBudget::new(RetryBudgetConfig::default(), Instant::now());
    /// let mut rng = SmallRng::seed_from_u64(7);
    /// budget.deposit(); // one original request was sent
    ///
    /// let failure = Failure::Status(503);
    /// let decision = match policy.decide(1, Duration::ZERO, failure.retryability(), None, &mut rng) {
    ///     RetryDecision::RetryAfter(_) if !budget.try_withdraw(Instant::now()) => {
    ///         RetryDecision::GiveUp(GiveUp::BudgetExhausted)
    ///     }
    ///     decision => decision,
    /// };
    /// assert!(matches!(decision, RetryDecision::RetryAfter(d) if d <= Duration::from_millis(100)));
    /// ```
    pub fn decide<R: Rng + ?Sized>(
        &self,
        attempts_made: u32,
        elapsed: Duration,
        retryability: Retryability,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> RetryDecision {
        if retryability == Retryability::NonRetryable {
            return RetryDecision::GiveUp(GiveUp::NonRetryable);
        }
        if attempts_made >= self.max_attempts {
            return RetryDecision::GiveUp(GiveUp::AttemptsExhausted);
        }
        let mut delay = self.backoff(attempts_made, rng);
        if let Some(hint) = retry_after {
            delay = delay.max(hint);
        }
        if elapsed.saturating_add(delay) >= self.deadline {
            return RetryDecision::GiveUp(GiveUp::DeadlineExceeded);
        }
        RetryDecision::RetryAfter(delay)
    }
}

/// Configuration of a [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Tokens deposited per original request, in `[0, 1]`: the share of extra load retries may
    /// add. Default 0.1; kept to a thousandth.
    pub ratio: f64,
    /// Retries per second allowed regardless of traffic; also the floor's burst (one second's
    /// worth). Default 10.
    pub min_retries_per_sec: u32,
    /// Largest deposit balance, in tokens. Default 100.
    pub max_tokens: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.1,
            min_retries_per_sec: 10,
            max_tokens: 100,
        }
    }
}

/// Milli-tokens per token.
const MILLI: u64 = 1000;

/// A client-wide token bucket that caps retries at a fraction of original requests; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct RetryBudget {
    /// Milli-tokens deposited per request.
    deposit: u64,
    /// Deposit balance and its cap, in milli-tokens.
    balance: u64,
    max_balance: u64,
    /// Floor: milli-tokens per second, balance (capped at one second's worth).
    floor_rate: u64,
    floor_balance: u64,
    /// Floor accounting: creation time and milli-tokens accrued so far.
    start: Instant,
    floor_accrued: u64,
}

impl RetryBudget {
    /// A budget whose floor starts full (one second's worth), created at `now`. A `ratio`
    /// outside `[0, 1]` (or NaN) is clamped into it.
    pub fn new(config: RetryBudgetConfig, now: Instant) -> Self {
        let ratio = if config.ratio.is_nan() {
            0.0
        } else {
            config.ratio.clamp(0.0, 1.0)
        };
        let floor_rate = u64::from(config.min_retries_per_sec) * MILLI;
        Self {
            deposit: (ratio * MILLI as f64).round() as u64,
            balance: 0,
            max_balance: u64::from(config.max_tokens) * MILLI,
            floor_rate,
            floor_balance: floor_rate,
            start: now,
            floor_accrued: 0,
        }
    }

    /// Records one original request (not a retry).
    pub fn deposit(&mut self) {
        self.balance = (self.balance + self.deposit).min(self.max_balance);
    }

    /// Takes one token for a retry at `now`, from deposits first, then from the floor.
    /// Returns `false` (and takes nothing) if less than one token is available.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.refill_floor(now);
        if self.balance + self.floor_balance < MILLI {
            return false;
        }
        let from_balance = self.balance.min(MILLI);
        self.balance -= from_balance;
        self.floor_balance -= MILLI - from_balance;
        true
    }

    /// Whole tokens available at `now` (deposits plus floor).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill_floor(now);
        (self.balance + self.floor_balance) / MILLI
    }

    fn refill_floor(&mut self, now: Instant) {
        // Exact: accrued = rate * elapsed, computed from the start so no rounding accumulates.
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let accrued = elapsed.saturating_mul(u128::from(self.floor_rate)) / 1_000_000_000;
        let accrued = u64::try_from(accrued).unwrap_or(u64::MAX);
        let fresh = accrued.saturating_sub(self.floor_accrued);
        self.floor_accrued = self.floor_accrued.max(accrued);
        self.floor_balance = self
            .floor_balance
            .saturating_add(fresh)
            .min(self.floor_rate);
    }
}

#[cfg(test)]
mod tests;
