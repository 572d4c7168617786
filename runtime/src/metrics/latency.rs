//! End-to-end latency from latency markers: a fixed-size, log-bucketed histogram per sink
//! instance, written by that instance's task alone and merged when a report is read.
//!
//! Ages are recorded in microseconds into buckets of 8 per power of two (the bucket a value
//! falls in is at most 1/8 wide relative to it, so a percentile is exact to 12.5 %, as an
//! HdrHistogram with one significant digit). Ages from a microsecond to about 12 days share one
//! table of [`BUCKETS`] counters; a longer one is counted in the last bucket. Recording is an index computation and a load and store of one counter: no allocation, no
//! lock, no read-modify-write (one writer).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Sub-buckets per power of two, as bits.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// The largest exponent kept: ages up to 2^40 µs.
const MAX_EXP: u32 = 39;
/// Buckets in a histogram.
pub(crate) const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as u64 * SUB) as usize;

/// The bucket of `us` microseconds.
#[inline]
fn index(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let e = (63 - us.leading_zeros()).min(MAX_EXP);
    let us = us.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = (us >> (e - SUB_BITS)) & (SUB - 1);
    ((e - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value, in µs, that falls in bucket `i`.
fn highest(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let low = (SUB + i % SUB) << (e - SUB_BITS);
    low + (1u64 << (e - SUB_BITS)) - 1
}

/// Marker ages seen by one sink instance.
#[derive(Debug)]
pub(crate) struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
}

impl LatencyHistogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one marker's age. Only the owning task may call this.
    #[inline]
    pub(crate) fn record(&self, age: Duration) {
        let us = u64::try_from(age.as_micros()).unwrap_or(u64::MAX);
        let c = &self.counts[index(us)];
        c.store(c.load(Relaxed) + 1, Relaxed);
    }

    /// Adds this histogram's counts into `into` (of [`BUCKETS`] entries).
    pub(crate) fn add_to(&self, into: &mut [u64]) {
        for (sum, c) in into.iter_mut().zip(self.counts.iter()) {
            *sum += c.load(Relaxed);
        }
    }
}

/// End-to-end latency from latency markers (see
/// [`PipelineConfig::latency_marker_interval`](crate::PipelineConfig::latency_marker_interval)):
/// how long markers took from their source to a sink, queueing and hand-offs included,
/// operators' own processing not.
///
/// Percentiles are the highest value of the histogram bucket they fall in (exact to 12.5 %,
/// never below the true value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyReport {
    /// Markers recorded.
    pub markers: u64,
    /// Median age at the sink, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms (to the bucket).
    pub max_ms: f64,
}

impl LatencyReport {
    /// The report of merged bucket counts, if any marker was recorded.
    pub(crate) fn of(counts: &[u64]) -> Option<Self> {
        let markers: u64 = counts.iter().sum();
        if markers == 0 {
            return None;
        }
        let at = |q: f64| {
            let rank = ((q * markers as f64).ceil() as u64).clamp(1, markers);
            let mut seen = 0;
            for (i, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return highest(i) as f64 / 1000.0;
                }
            }
            highest(counts.len() - 1) as f64 / 1000.0
        };
        Some(Self {
            markers,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_highest_value_is_at_most_an_eighth_above_it() {
        let mut last = 0;
        for us in (0..5_000u64)
            .chain((0..40).map(|e| 1u64 << e))
            .chain([u64::MAX / 2])
        {
            let i = index(us);
            assert!(i < BUCKETS, "{us} µs → bucket {i}");
            if us < 1 << (MAX_EXP + 1) {
                assert!(
                    highest(i) >= us,
                    "{us} µs above its bucket's top {}",
                    highest(i)
                );
                assert!(
                    highest(i) - us <= us / 8,
                    "{us} µs: bucket top {}",
                    highest(i)
                );
            }
        }
        for us in 0..5_000u64 {
            assert!(index(us) >= last, "buckets are ordered");
            last = index(us);
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_known_set_of_ages() {
        let h = LatencyHistogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let mut counts = vec![0; BUCKETS];
        h.add_to(&mut counts);
        let r = LatencyReport::of(&counts).unwrap();
        assert_eq!(r.markers, 100);
        assert!((50.0..=50.0 * 1.125).contains(&r.p50_ms), "{r:?}");
        assert!((99.0..=99.0 * 1.125).contains(&r.p99_ms), "{r:?}");
        assert!((100.0..=100.0 * 1.125).contains(&r.max_ms), "{r:?}");
        assert_eq!(LatencyReport::of(&vec![0; BUCKETS]), None);
    }
}
