//! Benchmark workloads shared by `weir bench` and the criterion benches, each beside its
//! baseline so a ratio is always measured in the same run.

pub mod checkpoint;
pub mod debloat;
pub mod edge;
pub mod etl;
pub mod ingest;
pub mod keyed;
pub mod latency;
pub mod overload;
pub mod overload_plot;
pub mod pipeline;
pub mod placement;
pub mod skew;
pub mod skew_plot;
pub mod windows;
pub mod windows_latency;

use std::time::Duration;

/// The `p` quantile (nearest rank) of sorted values; zero for none.
pub(crate) fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The median of some durations (the lower middle for an even count).
pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort_unstable();
    xs.get(xs.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

/// Rows per second for `rows` rows in `d`.
pub fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64().max(1e-12)
}
