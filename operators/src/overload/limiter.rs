//! Adaptive concurrency: how many requests to keep in flight against a service whose capacity
//! is unknown and changes.
//!
//! # Algorithm
//!
//! [`AdaptiveConcurrency`] runs additive-increase / multiplicative-decrease (AIMD), the control
//! law of TCP congestion avoidance, on two signals: explicit overload answers (HTTP 429 / 503)
//! and a rise of the round-trip time above its baseline, as in TCP Vegas and Vector's adaptive
//! request concurrency. The output is [`limit()`](AdaptiveConcurrency::limit): the number of
//! requests allowed in flight, which an operator turns into its upstream demand.
//!
//! * **Window.** Responses are grouped in windows of `max(limit, min_window)` responses: roughly
//!   one round trip's worth at the current limit, which is TCP's "one increase per RTT" without
//!   a clock. `min_window` keeps the RTT mean of a window from resting on a handful of samples
//!   when the limit is small.
//! * **Baseline.** The mean RTT of successful responses in a window is compared with `baseline`,
//!   the no-load latency. The baseline follows lower window means with an EWMA (`rtt_alpha`) and
//!   does *not* follow higher ones: a baseline that chased rising latency would absorb the very
//!   queueing it is meant to detect. The exception is a window at `min` concurrency: nothing
//!   more can be shed there, so a higher latency is the service's new normal and the baseline
//!   moves up towards it (this is how the limiter recovers after the service itself got slower).
//! * **Increase.** At the end of a window with no overload answer, whose mean RTT is at most
//!   `baseline * threshold_ratio`, and during which the limit was fully used (the peak in-flight
//!   count reached it), the limit grows by one, up to `max`. A limit that is not used is not
//!   raised, so a quiet period does not bank concurrency that was never shown to be safe.
//! * **Decrease.** `limit = max(min, floor(limit * decrease_factor))`,
//!   - at once on an [`Outcome::Overloaded`] answer;
//!   - after `rise_windows` consecutive windows whose mean RTT exceeds the threshold (one noisy
//!     window does not cut throughput).
//! * **Recovery.** After a decrease the requests still in flight were sent under the old limit;
//!   their answers describe the congestion just reacted to. The next `in_flight` responses are
//!   therefore ignored (as TCP reacts to losses at most once per flight), and a new window
//!   starts after them. A burst of 429s from one flight thus costs one decrease, and each later
//!   flight that still meets 429s costs another.
//! * [`Outcome::Failed`] answers (other errors) count towards the window but carry no latency
//!   sample and no congestion signal.
//!
//! The state machine reads no clock: the caller measures each request's RTT and passes it in,
//! which makes the limiter deterministic to test and cheap to run.
//!
//! # Cost
//!
//! A few machine words; every call is O(1) with no allocation. The limiter guarantees
//! `min <= limit() <= max` at all times and that [`try_acquire`](AdaptiveConcurrency::try_acquire)
//! never admits more than `limit()` requests in flight. It does not guarantee convergence under
//! arbitrary latency noise: per-request jitter far above `threshold_ratio - 1` lowers the limit
//! (see the tests for the simulated service it is tuned against).

use std::time::Duration;

/// Configuration of an [`AdaptiveConcurrency`] limiter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConcurrencyConfig {
    /// Limit to start with. Default 4.
    pub initial: usize,
    /// Lowest limit; at least 1. Default 1.
    pub min: usize,
    /// Highest limit. Default 256.
    pub max: usize,
    /// EWMA weight of a new window mean when the baseline RTT moves, in `(0, 1]`. Default 0.1.
    pub rtt_alpha: f64,
    /// A window mean above `baseline * threshold_ratio` is an RTT rise; `> 1`. Default 1.25.
    pub threshold_ratio: f64,
    /// Multiplier applied on a decrease, in `(0, 1)`. Default 0.7.
    pub decrease_factor: f64,
    /// Fewest responses in a window; at least 1. Default 16.
    pub min_window: usize,
    /// Consecutive windows with an RTT rise needed before a decrease; at least 1. Default 3.
    pub rise_windows: u32,
}

impl Default for AdaptiveConcurrencyConfig {
    fn default() -> Self {
        Self {
            initial: 4,
            min: 1,
            max: 256,
            rtt_alpha: 0.1,
            threshold_ratio: 1.25,
            decrease_factor: 0.7,
            min_window: 16,
            rise_windows: 3,
        }
    }
}

/// An [`AdaptiveConcurrencyConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimiterConfigError {
    /// The limits are not ordered `1 <= min <= initial <= max`.
    #[error(
        "concurrency limits must satisfy 1 <= min ({min}) <= initial ({initial}) <= max ({max})"
    )]
    Limits {
        /// Configured `min`.
        min: usize,
        /// Configured `initial`.
        initial: usize,
        /// Configured `max`.
        max: usize,
    },
    /// A ratio is outside its range; the message names the field and the range.
    #[error("{field} = {value} is outside {range}")]
    Ratio {
        /// The field.
        field: &'static str,
        /// Its value.
        value: f64,
        /// The accepted range.
        range: &'static str,
    },
    /// `min_window` or `rise_windows` is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl AdaptiveConcurrencyConfig {
    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// The first field found out of range.
    pub fn validate(&self) -> Result<(), LimiterConfigError> {
        if self.min == 0 || self.min > self.initial || self.initial > self.max {
            return Err(LimiterConfigError::Limits {
                min: self.min,
                initial: self.initial,
                max: self.max,
            });
        }
        let ratio = |field, value: f64, ok: bool, range| {
            if ok {
                Ok(())
            } else {
                Err(LimiterConfigError::Ratio {
                    field,
                    value,
                    range,
                })
            }
        };
        let a = self.rtt_alpha;
        ratio("rtt_alpha", a, a > 0.0 && a <= 1.0, "(0, 1]")?;
        let t = self.threshold_ratio;
        ratio("threshold_ratio", t, t > 1.0 && t.is_finite(), "(1, inf)")?;
        let d = self.decrease_factor;
        ratio("decrease_factor", d, d > 0.0 && d < 1.0, "(0, 1)")?;
        if self.min_window == 0 {
            return Err(LimiterConfigError::Zero("min_window"));
        }
        if self.rise_windows == 0 {
            return Err(LimiterConfigError::Zero("rise_windows"));
        }
        Ok(())
    }
}

/// What a response said about the service's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request succeeded; its RTT is a latency sample.
    Success,
    /// The service shed load (HTTP 429 or 503, or a timeout the caller attributes to load).
    Overloaded,
    /// Any other failure: no latency sample, no congestion signal.
    Failed,
}

impl Outcome {
    /// Classifies an HTTP status: below 400 is `Success`, 429 and 503 are `Overloaded`, the rest
    /// `Failed`.
    pub fn from_status(status: u16) -> Self {
        match status {
            429 | 503 => Outcome::Overloaded,
            s if s < 400 => Outcome::Success,
            _ => Outcome::Failed,
        }
    }
}

/// Counters of an [`AdaptiveConcurrency`] limiter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LimiterStats {
    /// Responses reported.
    pub responses: u64,
    /// Windows completed.
    pub windows: u64,
    /// Additive increases.
    pub increases: u64,
    /// Decreases caused by overload answers.
    pub overload_decreases: u64,
    /// Decreases caused by an RTT rise.
    pub rtt_decreases: u64,
    /// Responses ignored while recovering from a decrease.
    pub ignored_in_recovery: u64,
}

/// The window being measured.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    /// Responses needed to close it.
    size: usize,
    responses: usize,
    samples: u32,
    rtt_sum: f64,
    peak_in_flight: usize,
}

/// An AIMD concurrency limiter driven by latency and overload answers; see the
/// [module docs](self) for the algorithm.
///
/// ```
/// use std::time::Duration;
/// use weir_operators::overload::limiter::{AdaptiveConcurrency, AdaptiveConcurrencyConfig, Outcome};
///
/// let mut limiter = AdaptiveConcurrency::new(AdaptiveConcurrencyConfig::default())?;
/// assert_eq!(limiter.limit(), 4);
/// while limiter.try_acquire() {} // dispatch up to the limit
/// assert_eq!(limiter.available(), 0);
/// limiter.on_response(Duration::from_millis(5), Outcome::Overloaded); // a 503
/// assert_eq!(limiter.limit(), 2); // floor(4 * 0.7)
/// # Ok::<(), weir_operators::overload::limiter::LimiterConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveConcurrency {
    config: AdaptiveConcurrencyConfig,
    limit: usize,
    in_flight: usize,
    /// No-load RTT estimate in seconds; `None` until the first window with samples.
    baseline: Option<f64>,
    window: Window,
    /// Consecutive windows with an RTT rise.
    rises: u32,
    /// Responses still to ignore after a decrease.
    recovery: usize,
    stats: LimiterStats,
}

impl AdaptiveConcurrency {
    /// A limiter starting at `config.initial`.
    ///
    /// # Errors
    ///
    /// As [`AdaptiveConcurrencyConfig::validate`].
    pub fn new(config: AdaptiveConcurrencyConfig) -> Result<Self, LimiterConfigError> {
        config.validate()?;
        let mut limiter = Self {
            config,
            limit: config.initial,
            in_flight: 0,
            baseline: None,
            window: Window::default(),
            rises: 0,
            recovery: 0,
            stats: LimiterStats::default(),
        };
        limiter.start_window();
        Ok(limiter)
    }

    /// The current concurrency limit, in `[min, max]`.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests admitted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many more requests may be dispatched now: the demand to request upstream. Zero
    /// while a decrease has left more in flight than the new limit.
    pub fn available(&self) -> usize {
        self.limit.saturating_sub(self.in_flight)
    }

    /// The baseline (no-load) RTT, once measured.
    pub fn baseline_rtt(&self) -> Option<Duration> {
        self.baseline.map(Duration::from_secs_f64)
    }

    /// Counters since creation.
    pub fn stats(&self) -> LimiterStats {
        self.stats
    }

    /// Admits one request if fewer than `limit()` are in flight. Every admitted request must
    /// end in exactly one [`on_response`](Self::on_response) or [`on_cancel`](Self::on_cancel).
    pub fn try_acquire(&mut self) -> bool {
        if self.in_flight >= self.limit {
            return false;
        }
        self.in_flight += 1;
        self.window.peak_in_flight = self.window.peak_in_flight.max(self.in_flight);
        true
    }

    /// Releases a request that ended without an answer (cancelled, or never sent): no signal.
    pub fn on_cancel(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Reports the answer to an admitted request, `rtt` after it was sent.
    ///
    /// A response with no admitted request outstanding (a caller bug) is still taken as a
    /// signal; the in-flight count saturates at zero.
    pub fn on_response(&mut self, rtt: Duration, outcome: Outcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.stats.responses += 1;
        if self.recovery > 0 {
            self.recovery -= 1;
            self.stats.ignored_in_recovery += 1;
            if self.recovery == 0 {
                self.start_window();
            }
            return;
        }
        match outcome {
            Outcome::Overloaded => {
                self.stats.overload_decreases += 1;
                self.decrease();
                return;
            }
            Outcome::Success => {
                self.window.rtt_sum += rtt.as_secs_f64();
                self.window.samples += 1;
            }
            Outcome::Failed => {}
        }
        self.window.responses += 1;
        if self.window.responses >= self.window.size {
            self.end_window();
        }
    }

    fn start_window(&mut self) {
        self.window = Window {
            size: self.limit.max(self.config.min_window),
            peak_in_flight: self.in_flight,
            ..Window::default()
        };
    }

    fn decrease(&mut self) {
        let cut = (self.limit as f64 * self.config.decrease_factor).floor() as usize;
        self.limit = cut.max(self.config.min);
        self.rises = 0;
        self.recovery = self.in_flight;
        self.start_window();
    }

    fn end_window(&mut self) {
        self.stats.windows += 1;
        let w = self.window;
        if w.samples == 0 {
            // No latency evidence either way.
            self.start_window();
            return;
        }
        let mean = w.rtt_sum / f64::from(w.samples);
        let alpha = self.config.rtt_alpha;
        let baseline = *self.baseline.get_or_insert(mean);
        if mean > baseline * self.config.threshold_ratio {
            if self.limit == self.config.min {
                // Nothing left to shed: the slower service is the new normal.
                self.baseline = Some(baseline + alpha * (mean - baseline));
            }
            self.rises += 1;
            if self.rises >= self.config.rise_windows {
                self.stats.rtt_decreases += 1;
                self.decrease();
                return;
            }
        } else {
            self.rises = 0;
            if mean < baseline {
                self.baseline = Some(baseline + alpha * (mean - baseline));
            }
            if w.peak_in_flight >= self.limit && self.limit < self.config.max {
                self.limit += 1;
                self.stats.increases += 1;
            }
        }
        self.start_window();
    }
}

#[cfg(test)]
mod tests;
