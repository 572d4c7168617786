use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;

/// Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110.
fn rfc_date() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(784_111_777)
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn parses_delay_seconds() {
    let now = rfc_date();
    assert_eq!(parse_retry_after("120", now), Ok(120 * SEC));
    assert_eq!(parse_retry_after("0", now), Ok(Duration::ZERO));
    assert_eq!(parse_retry_after(" \t7 ", now), Ok(7 * SEC));
    assert_eq!(parse_retry_after("007", now), Ok(7 * SEC));
}

#[test]
fn parses_all_three_http_date_forms_relative_to_now() {
    let now = rfc_date() - 90 * SEC;
    for value in [
        "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
        "Sun Nov  6 08:49:37 1994",       // asctime
    ] {
        assert_eq!(parse_retry_after(value, now), Ok(90 * SEC), "{value}");
    }
}

#[test]
fn a_date_in_the_past_means_now() {
    let now = rfc_date() + 3600 * SEC;
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Ok(Duration::ZERO)
    );
}

#[test]
fn rejects_garbage() {
    let now = rfc_date();
    assert_eq!(parse_retry_after("", now), Err(RetryAfterError::Empty));
    assert_eq!(parse_retry_after("  ", now), Err(RetryAfterError::Empty));
    for value in [
        "-5",
        "+5",
        "1.5",
        "5s",
        "soon",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Nov 1994",
        "١٢",
    ] {
        assert!(
            matches!(
                parse_retry_after(value, now),
                Err(RetryAfterError::Invalid { .. })
            ),
            "{value:?} should be invalid"
        );
    }
    assert!(matches!(
        parse_retry_after("18446744073709551616", now),
        Err(RetryAfterError::Overflow { .. })
    ));
    let long = "x".repeat(10_000);
    match parse_retry_after(&long, now) {
        Err(RetryAfterError::Invalid { value }) => assert_eq!(value.len(), 64),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn drain_rate_measures_a_steady_rate() {
    let t0 = Instant::now();
    let mut rate = DrainRate::new(5 * SEC, t0);
    assert_eq!(rate.rows_per_sec(), None);
    for i in 1..=100 {
        rate.observe(t0 + Duration::from_millis(10 * i), 1000);
    }
    let r = rate.rows_per_sec().unwrap();
    assert!(close(r, 100_000.0), "{r}");
}

#[test]
fn drain_rate_moves_halfway_in_one_half_life() {
    let t0 = Instant::now();
    let mut rate = DrainRate::new(2 * SEC, t0);
    let mut t = t0;
    for _ in 0..10 {
        t += SEC;
        rate.observe(t, 1000);
    }
    // The rate drops to 200 rows/s; irregular steps adding up to one half-life.
    for ms in [100, 700, 50, 1150] {
        let dt = Duration::from_millis(ms);
        t += dt;
        rate.observe(t, (200 * ms) / 1000);
    }
    let r = rate.rows_per_sec().unwrap();
    assert!(close(r, 600.0), "{r}");
}

#[test]
fn same_instant_observations_are_added_up() {
    let t0 = Instant::now();
    let mut rate = DrainRate::new(SEC, t0);
    let t1 = t0 + Duration::from_millis(100);
    rate.observe(t1, 0);
    rate.observe(t1, 30);
    rate.observe(t1, 20);
    assert!(close(rate.rows_per_sec().unwrap(), 0.0));
    rate.observe(t1 + Duration::from_millis(100), 0);
    // 50 rows over 100 ms, blended with a half-life of 1 s: 500 * (1 - 2^-0.1).
    let expected = 500.0 * (1.0 - (-0.1f64).exp2());
    assert!(close(rate.rows_per_sec().unwrap(), expected));
}

#[test]
fn a_stalled_drain_decays() {
    let t0 = Instant::now();
    let mut rate = DrainRate::new(3 * SEC, t0);
    rate.observe(t0 + SEC, 400);
    assert!(close(rate.rows_per_sec_at(t0 + SEC).unwrap(), 400.0));
    assert!(close(rate.rows_per_sec_at(t0 + 4 * SEC).unwrap(), 200.0));
    assert!(close(rate.rows_per_sec_at(t0 + 7 * SEC).unwrap(), 100.0));
    assert_eq!(
        rate.rows_per_sec(),
        Some(400.0),
        "reading does not change the meter"
    );
}

#[test]
fn retry_after_follows_backlog_and_rate() {
    let (min, max) = (SEC, 60 * SEC);
    assert_eq!(retry_after_for(10_000, Some(1000.0), min, max), 10 * SEC);
    assert_eq!(retry_after_for(10_001, Some(1000.0), min, max), 11 * SEC);
    assert_eq!(retry_after_for(10_000, Some(500.0), min, max), 20 * SEC);
    assert_eq!(retry_after_for(0, Some(1000.0), min, max), SEC);
    assert_eq!(retry_after_for(u64::MAX, Some(1000.0), min, max), 60 * SEC);
    for unknown in [
        None,
        Some(0.0),
        Some(-3.0),
        Some(f64::NAN),
        Some(f64::INFINITY),
    ] {
        assert_eq!(
            retry_after_for(10, unknown, min, max),
            60 * SEC,
            "{unknown:?}"
        );
    }
    // Sub-second bounds round up; an inverted range collapses to min.
    assert_eq!(
        retry_after_for(
            0,
            Some(1.0),
            Duration::from_millis(1),
            Duration::from_millis(1500)
        ),
        SEC
    );
    assert_eq!(
        retry_after_for(100, Some(1.0), 30 * SEC, 10 * SEC),
        30 * SEC
    );
}

#[test]
fn retry_after_from_a_measured_drain() {
    let t0 = Instant::now();
    let mut rate = DrainRate::new(10 * SEC, t0);
    for i in 1..=20 {
        rate.observe(t0 + Duration::from_millis(250 * i), 750); // 3000 rows/s
    }
    let hint = retry_after_for(45_000, rate.rows_per_sec(), SEC, 120 * SEC);
    assert_eq!(hint, 15 * SEC);
}

proptest! {
    /// Any delay-seconds value round-trips.
    #[test]
    fn delay_seconds_round_trip(secs in any::<u64>()) {
        prop_assert_eq!(parse_retry_after(&secs.to_string(), rfc_date()), Ok(Duration::from_secs(secs)));
    }

    /// The hint is whole seconds in `[min, max]`, covers the drain time unless capped, and
    /// never shrinks when the backlog grows.
    #[test]
    fn hint_is_clamped_and_monotone(
        backlog in 0u64..10_000_000,
        extra in 0u64..10_000_000,
        rate in 0.001f64..1e7,
        min_s in 0u64..30,
        span in 0u64..300,
    ) {
        let (min, max) = (Duration::from_secs(min_s), Duration::from_secs(min_s + span));
        let a = retry_after_for(backlog, Some(rate), min, max);
        let b = retry_after_for(backlog + extra, Some(rate), min, max);
        prop_assert!(min <= a && a <= max);
        prop_assert!(a <= b);
        prop_assert_eq!(a.subsec_nanos(), 0);
        prop_assert!(a.as_secs() as f64 >= (backlog as f64 / rate).min(max.as_secs() as f64) - 1e-9);
    }
}

#[test]
fn header_values_round_up_to_at_least_one_second() {
    assert_eq!(delta_seconds(Duration::ZERO), 1);
    assert_eq!(delta_seconds(Duration::from_millis(1)), 1);
    assert_eq!(delta_seconds(Duration::from_secs(2)), 2);
    assert_eq!(delta_seconds(Duration::from_millis(2001)), 3);
}

#[test]
fn a_client_reads_an_overlong_delay_as_the_longest_wait_and_ignores_junk() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    assert_eq!(
        retry_after_hint("99999999999999999999999", now),
        Some(Duration::from_secs(u64::MAX))
    );
    assert_eq!(retry_after_hint("7", now), Some(Duration::from_secs(7)));
    for junk in ["", " ", "-1", "1.5", "1e3", "tomorrow"] {
        assert_eq!(retry_after_hint(junk, now), None, "{junk:?}");
    }
}

#[test]
fn idle_time_skipped_with_resume_does_not_lower_the_rate() {
    let t0 = Instant::now();
    let mut rate = DrainRate::new(Duration::from_secs(1), t0);
    rate.observe(t0 + Duration::from_secs(1), 100);
    assert!(close(rate.rows_per_sec().unwrap(), 100.0));
    // Nothing to drain for ten seconds, then 100 rows in the next second.
    rate.resume(t0 + Duration::from_secs(11));
    rate.observe(t0 + Duration::from_secs(12), 100);
    assert!(close(rate.rows_per_sec().unwrap(), 100.0));
    // Without `resume` the same second reads as a stall.
    let mut stalled = DrainRate::new(Duration::from_secs(1), t0);
    stalled.observe(t0 + Duration::from_secs(1), 100);
    stalled.observe(t0 + Duration::from_secs(12), 100);
    assert!(stalled.rows_per_sec().unwrap() < 20.0);
}
