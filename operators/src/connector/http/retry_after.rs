//! `Retry-After` (RFC 9110 §10.2.3): either delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value into the wait it asks for, counted from `now`.
///
/// Delta-seconds (`"120"`) give that many seconds; an HTTP-date gives the time from `now` until
/// then, or zero when it has passed. Anything else is `None`.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use weir_operators::connector::http::parse_retry_after;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings overflow u64: treat them as "very long".
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Formats a wait as whole delta-seconds, rounded up and at least 1: a `Retry-After: 0` would
/// invite the immediate retry the hint exists to prevent.
pub(crate) fn format_delta_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rounds_up_to_at_least_one_second() {
        assert_eq!(format_delta_seconds(Duration::ZERO), 1);
        assert_eq!(format_delta_seconds(Duration::from_millis(1)), 1);
        assert_eq!(format_delta_seconds(Duration::from_secs(2)), 2);
        assert_eq!(format_delta_seconds(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn a_past_date_means_no_wait_and_junk_is_none() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for junk in ["", " ", "-1", "1.5", "1e3", "tomorrow"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    proptest! {
        #[test]
        fn delta_seconds_round_trip(secs in 0u64..1_000_000_000) {
            prop_assert_eq!(parse_retry_after(&secs.to_string(), SystemTime::now()), Some(Duration::from_secs(secs)));
        }

        #[test]
        fn http_dates_round_trip(now_secs in 0u64..4_000_000_000, ahead in 0u64..1_000_000) {
            let now = UNIX_EPOCH + Duration::from_secs(now_secs);
            let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
            prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(ahead)));
        }
    }
}
