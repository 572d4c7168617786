//! Live counters of a [`Caller`](super::Caller) and a lock-free latency histogram.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::overload::retry::GiveUp;

/// Sub-buckets per power of two: values are kept to within 1/16 (about 6 %).
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// Powers of two covered above the linear range: microseconds up to 2^44 (about 200 days).
const OCTAVES: usize = 44 - SUB_BITS as usize;
const BUCKETS: usize = SUB as usize + OCTAVES * SUB as usize;

/// A histogram of durations with about 6 % precision from 1 µs to months, in fixed memory
/// (about 5 KiB), recorded with one relaxed atomic add: safe to share between tasks.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_operators::overload::caller::LatencyHistogram;
///
/// let h = LatencyHistogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let p50 = h.quantile(0.5).as_secs_f64() * 1e3;
/// assert!((47.0..=53.0).contains(&p50), "{p50}");
/// assert_eq!(h.count(), 100);
/// ```
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let msb = 63 - micros.leading_zeros();
    let shift = msb - SUB_BITS;
    let octave = (msb - SUB_BITS + 1) as usize;
    let sub = ((micros >> shift) & (SUB - 1)) as usize;
    (octave * SUB as usize + sub).min(BUCKETS - 1)
}

/// The middle of bucket `i`, in microseconds.
fn value(i: usize) -> f64 {
    if i < SUB as usize {
        return i as f64;
    }
    let octave = i / SUB as usize;
    let sub = (i % SUB as usize) as u64;
    let shift = octave as u32 - 1;
    let low = (SUB + sub) << shift;
    low as f64 + ((1u64 << shift) as f64) / 2.0
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[index(micros)].fetch_add(1, Relaxed);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// The `q`-quantile (`0.0..=1.0`) of what was recorded; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_secs_f64(value(i) / 1e6);
            }
        }
        Duration::from_secs_f64(value(BUCKETS - 1) / 1e6)
    }
}

/// Counters shared between a caller and whoever watches it.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) attempts: AtomicU64,
    pub(crate) successes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    pub(crate) non_retryable: AtomicU64,
    pub(crate) attempts_exhausted: AtomicU64,
    pub(crate) deadline_exceeded: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
    pub(crate) limit: AtomicUsize,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) peak_in_flight: AtomicUsize,
    pub(crate) latency: LatencyHistogram,
}

impl Counters {
    pub(crate) fn gave_up(&self, why: GiveUp) {
        let slot = match why {
            GiveUp::NonRetryable => &self.non_retryable,
            GiveUp::AttemptsExhausted => &self.attempts_exhausted,
            GiveUp::DeadlineExceeded => &self.deadline_exceeded,
            GiveUp::BudgetExhausted => &self.budget_exhausted,
        };
        slot.fetch_add(1, Relaxed);
    }
}

/// What a caller did so far. `attempts / successes` is its retry amplification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CallerStats {
    /// Records taken (original calls).
    pub calls: u64,
    /// Attempts sent, retries included.
    pub attempts: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Retries scheduled.
    pub retries: u64,
    /// Answers that said "overloaded" (429, 503, timeout).
    pub overloaded: u64,
    /// Calls dead-lettered because the failure was not retryable.
    pub non_retryable: u64,
    /// Calls dead-lettered after the last allowed attempt.
    pub attempts_exhausted: u64,
    /// Calls dead-lettered because the next attempt would pass the deadline.
    pub deadline_exceeded: u64,
    /// Calls dead-lettered because the retry budget was spent.
    pub budget_exhausted: u64,
    /// The concurrency limit now.
    pub limit: usize,
    /// Attempts in flight now.
    pub in_flight: usize,
    /// Most attempts in flight at once.
    pub peak_in_flight: usize,
}

impl CallerStats {
    /// Calls that ended in the dead letters, for any reason.
    pub fn dead_lettered(&self) -> u64 {
        self.non_retryable
            + self.attempts_exhausted
            + self.deadline_exceeded
            + self.budget_exhausted
    }
}

/// A handle to watch a caller (an HTTP sink, a `map_async`) while it runs. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CallerMonitor(pub(crate) Arc<Counters>);

impl CallerMonitor {
    /// The counters now.
    pub fn stats(&self) -> CallerStats {
        let c = &self.0;
        CallerStats {
            calls: c.calls.load(Relaxed),
            attempts: c.attempts.load(Relaxed),
            successes: c.successes.load(Relaxed),
            retries: c.retries.load(Relaxed),
            overloaded: c.overloaded.load(Relaxed),
            non_retryable: c.non_retryable.load(Relaxed),
            attempts_exhausted: c.attempts_exhausted.load(Relaxed),
            deadline_exceeded: c.deadline_exceeded.load(Relaxed),
            budget_exhausted: c.budget_exhausted.load(Relaxed),
            limit: c.limit.load(Relaxed),
            in_flight: c.in_flight.load(Relaxed),
            peak_in_flight: c.peak_in_flight.load(Relaxed),
        }
    }

    /// Latency of successful calls, from the first attempt to the success (retries included).
    pub fn latency(&self) -> &LatencyHistogram {
        &self.0.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every value falls in a bucket whose middle is within 1/16 of it.
        #[test]
        fn buckets_keep_values_within_six_percent(micros in 0u64..(1 << 43)) {
            let v = value(index(micros));
            let err = (v - micros as f64).abs();
            prop_assert!(err <= (micros as f64 / 16.0).max(0.5), "{micros} -> {v}");
        }
    }

    #[test]
    fn quantiles_of_an_empty_and_a_single_valued_histogram() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.99), Duration::ZERO);
        h.record(Duration::from_micros(5));
        assert_eq!(h.quantile(0.0), Duration::from_micros(5));
        assert_eq!(h.quantile(1.0), Duration::from_micros(5));
    }
}
