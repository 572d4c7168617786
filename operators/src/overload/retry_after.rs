//! `Retry-After`: the hint a client must honour, and the hint a server should give.
//!
//! # Client side
//!
//! [`parse_retry_after`] reads a `Retry-After` header value (RFC 9110 §10.2.3), either
//! `delay-seconds` (one or more ASCII digits) or an `HTTP-date` (IMF-fixdate, or the obsolete
//! RFC 850 and asctime forms, via the `httpdate` crate), relative to a `now` the caller
//! supplies. A date in the past means "retry now" (zero). Anything else is an error, never a
//! guess: a client that misreads the hint either hammers the server or stalls.
//!
//! # Server side
//!
//! A server that rejects work with 429/503 should say when to come back, and a constant is the
//! wrong answer: too short and clients return before there is room, too long and capacity sits
//! idle. The honest hint is *the time to drain the backlog ahead of the caller*:
//!
//! ```text
//! retry_after = clamp(ceil(backlog_rows / drain_rate), min, max)      (whole seconds)
//! ```
//!
//! [`DrainRate`] measures the drain rate: an exponentially weighted moving average of rows per
//! second, fed with `(Instant, rows)` observations. The weight of each new interval depends on
//! its length, `w = 1 - 2^(-dt / half_life)`, so irregular observations are averaged correctly
//! and the estimate forgets at a fixed rate in time (half of the weight is older than
//! `half_life`), not in number of calls. [`retry_after_for`] turns backlog and rate into the
//! header value; an unknown or zero rate yields `max`.
//!
//! # Cost
//!
//! `DrainRate` holds four words and reads no clock: the caller passes `Instant`s, which keeps it
//! deterministic under test. Parsing allocates only for the error message.

use std::time::{Duration, Instant, SystemTime};

/// A `Retry-After` value that is neither delay-seconds nor an HTTP-date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryAfterError {
    /// The value is empty or only whitespace.
    #[error("empty Retry-After value")]
    Empty,
    /// Delay-seconds too large to represent.
    #[error("Retry-After delay {digits} seconds does not fit in 64 bits")]
    Overflow {
        /// The digits as received (truncated to 64 characters).
        digits: String,
    },
    /// Neither form.
    #[error("Retry-After value {value:?} is neither delay-seconds nor an HTTP-date")]
    Invalid {
        /// The value as received (truncated to 64 characters).
        value: String,
    },
}

/// Keeps error messages short whatever a peer sends.
fn excerpt(value: &str) -> String {
    value.chars().take(64).collect()
}

/// Parses a `Retry-After` header value into the delay from `now`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use weir_operators::overload::retry_after::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after("120", now)?, Duration::from_secs(120));
/// assert_eq!(
///     parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now)?,
///     Duration::from_secs(30)
/// );
/// assert!(parse_retry_after("soon", now).is_err());
/// # Ok::<(), weir_operators::overload::retry_after::RetryAfterError>(())
/// ```
///
/// # Errors
///
/// [`RetryAfterError`] if the value is empty, out of range, or malformed.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Result<Duration, RetryAfterError> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    if value.is_empty() {
        return Err(RetryAfterError::Empty);
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().map(Duration::from_secs).map_err(|_| {
            RetryAfterError::Overflow {
                digits: excerpt(value),
            }
        });
    }
    let at = httpdate::parse_http_date(value).map_err(|_| RetryAfterError::Invalid {
        value: excerpt(value),
    })?;
    Ok(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An EWMA meter of rows drained per second; see the [module docs](self).
///
/// ```
/// use std::time::{Duration, Instant};
/// use weir_operators::overload::retry_after::{retry_after_for, DrainRate};
///
/// let t0 = Instant::now();
/// let mut rate = DrainRate::new(Duration::from_secs(5), t0);
/// for i in 1..=10 {
///     rate.observe(t0 + Duration::from_millis(100 * i), 200); // 2000 rows/s
/// }
/// let hint = retry_after_for(9_000, rate.rows_per_sec(), Duration::from_secs(1), Duration::from_secs(60));
/// assert_eq!(hint, Duration::from_secs(5)); // ceil(9000 / 2000)
/// ```
#[derive(Debug, Clone)]
pub struct DrainRate {
    half_life: Duration,
    last: Instant,
    /// Rows observed at `last` that no interval has absorbed yet (same-instant observations).
    pending_rows: u64,
    rate: Option<f64>,
}

impl DrainRate {
    /// A meter that starts measuring at `start`, forgetting with `half_life` (zero: the rate is
    /// always the last interval's).
    pub fn new(half_life: Duration, start: Instant) -> Self {
        Self {
            half_life,
            last: start,
            pending_rows: 0,
            rate: None,
        }
    }

    /// Records that `rows` rows drained since the previous observation, as of `at`.
    ///
    /// Observations at the same instant (or, defensively, an earlier one) are added up and
    /// attributed to the next interval that has a length.
    pub fn observe(&mut self, at: Instant, rows: u64) {
        self.pending_rows = self.pending_rows.saturating_add(rows);
        let dt = at.saturating_duration_since(self.last);
        if dt.is_zero() {
            return;
        }
        self.rate = Some(self.blend(dt));
        self.pending_rows = 0;
        self.last = at;
    }

    /// Starts the next interval at `at` without counting the time since the last observation:
    /// call it when the consumer had nothing to drain until `at` (an empty backlog), so that
    /// idle time does not read as a slow drain. Rows observed at the same instant are kept.
    pub fn resume(&mut self, at: Instant) {
        if at > self.last {
            self.last = at;
        }
    }

    /// The drain rate as of the last observation; `None` before the first interval.
    pub fn rows_per_sec(&self) -> Option<f64> {
        self.rate
    }

    /// The drain rate at `now`, counting the time since the last observation as an interval in
    /// which only the pending rows drained: a stalled consumer's rate decays towards zero
    /// instead of keeping its last value.
    pub fn rows_per_sec_at(&self, now: Instant) -> Option<f64> {
        let dt = now.saturating_duration_since(self.last);
        if dt.is_zero() {
            return self.rate;
        }
        Some(self.blend(dt))
    }

    /// The EWMA after an interval of length `dt > 0` that drained `pending_rows`.
    fn blend(&self, dt: Duration) -> f64 {
        let instant = self.pending_rows as f64 / dt.as_secs_f64();
        let Some(rate) = self.rate else {
            return instant;
        };
        let weight = if self.half_life.is_zero() {
            1.0
        } else {
            1.0 - (-(dt.as_secs_f64() / self.half_life.as_secs_f64())).exp2()
        };
        rate + weight * (instant - rate)
    }
}

/// Rounds up to whole seconds.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `Retry-After` header value (delay-seconds) for a wait: whole seconds, rounded up and at
/// least 1, since a `Retry-After: 0` would invite the immediate retry the hint exists to prevent.
///
/// ```
/// use std::time::Duration;
/// use weir_operators::overload::retry_after::delta_seconds;
///
/// assert_eq!(delta_seconds(Duration::ZERO), 1);
/// assert_eq!(delta_seconds(Duration::from_millis(2001)), 3);
/// ```
pub fn delta_seconds(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// [`parse_retry_after`] for a client: `None` for a malformed value (ignore the hint), and an
/// out-of-range delay read as the longest wait there is rather than ignored.
pub fn retry_after_hint(value: &str, now: SystemTime) -> Option<Duration> {
    match parse_retry_after(value, now) {
        Ok(wait) => Some(wait),
        Err(RetryAfterError::Overflow { .. }) => Some(Duration::from_secs(u64::MAX)),
        Err(_) => None,
    }
}

/// The `Retry-After` to send with a rejection: the time to drain `backlog_rows` at
/// `rows_per_sec`, rounded up to whole seconds and clamped to `[min, max]` (both rounded up to
/// whole seconds too; `max` below `min` is raised to `min`). An unknown, zero, negative or
/// non-finite rate gives `max`.
///
/// Send it as `Retry-After: {hint.as_secs()}`.
pub fn retry_after_for(
    backlog_rows: u64,
    rows_per_sec: Option<f64>,
    min: Duration,
    max: Duration,
) -> Duration {
    let min_s = ceil_secs(min);
    let max_s = ceil_secs(max).max(min_s);
    let secs = match rows_per_sec {
        Some(rate) if rate.is_finite() && rate > 0.0 => {
            let drain = (backlog_rows as f64 / rate).ceil();
            if drain >= max_s as f64 {
                max_s
            } else {
                (drain as u64).max(min_s)
            }
        }
        _ => max_s,
    };
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests;
