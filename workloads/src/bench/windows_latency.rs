//! `weir bench windows-latency`: how long after a tumbling window could close its result
//! reaches the sink, at a fraction of the windowed count's maximum rate.
//!
//! The pipeline is the tumbling count of [`bench windows`](super::windows): rows `(key, event
//! time)` with keys from [`ZipfKeys`], keyed at `parallelism`, counted in [`TUMBLING`] windows,
//! the source stamped with [`WatermarkStrategy::bounded`]`(`[`BOUND`]`)`. Only the source
//! differs: it is **paced by the wall clock**. Row `i` falls due `i / rate` seconds after the
//! run's epoch; each time the source is polled it emits, as one batch, every row due by now (at
//! most a batch), and stamps them with the current wall time in ms since the epoch as their
//! event time. With nothing due it gives its worker back and is polled again at once (it waits
//! without sleeping on a timer, as the [`latency`](super::latency) harness does). So event time
//! *is* wall time, and a window closes in wall time exactly when it closes in event time.
//!
//! **Latency of a window result.** The watermark is `max − bound − 1 ms` over the event times
//! seen, and a window `[start, end)` fires when the watermark reaches `end`: when a row stamped
//! `end + bound + 1 ms` has been read. Under pacing that row is emitted at wall time
//! `end + bound + 1 ms` at the earliest, so
//!
//! ```text
//! latency(window) = sink arrival (wall, since the epoch) − (end + BOUND + 1 ms)
//! ```
//!
//! — the time the runtime takes to carry the closing watermark to the window stage, fire the
//! window, and move its result to the sink (every result of a second's windows fires in one
//! burst, so the tail is the last of the burst). Windows that end too late to be closed by a
//! watermark (the run's last ones, fired by the end of the input) are left out. The run
//! report's in-band latency markers
//! ([`RunReport::latency`](weir_runtime::RunReport::latency)) are given beside it: the age of
//! a marker from the source to each sink, the queueing delay of the data path.
//!
//! **Maximum rate.** [`max_rate`] runs the same pipeline unpaced (every poll emits a full
//! batch stamped with the wall time): rows over wall time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_operators::keyed::aggregate::Count;
use weir_operators::prelude::{
    KeyedExt, Pipeline, PipelineConfig, StreamExt, Timestamp, Tumbling, WindowExt, Windowed,
};
use weir_runtime::metrics::LatencyReport;
use weir_runtime::{OperatorError, Output, Source, SourceStatus, WatermarkStrategy};

use super::percentile;
use super::windows::{Row, WindowsConfig, WindowsError, BOUND, TUMBLING};
use crate::zipf::ZipfKeys;

/// Emits rows as they fall due at `rate` (see the [module docs](self)).
struct Paced {
    epoch: Instant,
    /// Rows per second; infinite: a full batch every poll.
    rate: f64,
    sent: u64,
    total: u64,
    keys: ZipfKeys,
    /// The event time of the last batch, for the sink's cut-off.
    last_ts: Arc<AtomicI64>,
}

impl Source for Paced {
    type Output = Vec<Row>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<Row>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.sent >= self.total {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        let now = self.epoch.elapsed();
        let due = if self.rate.is_finite() {
            ((now.as_secs_f64() * self.rate) as u64 + 1).min(self.total)
        } else {
            self.total
        };
        let n = due.saturating_sub(self.sent).min(out.batch_rows() as u64);
        if n == 0 {
            // Nothing due yet: give the worker back and come straight back.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let ts = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
        let mut batch = out.batch_with_capacity(n as usize);
        let keys = &mut self.keys;
        batch.extend((0..n).map(|_| (keys.next().unwrap_or_default(), ts)));
        out.emit(batch);
        self.sent += n;
        self.last_ts.store(ts, Ordering::Relaxed);
        Poll::Ready(Ok(if self.sent == self.total {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
}

/// What one paced (or unpaced) run measured.
#[derive(Clone, Debug, Serialize)]
pub struct PacedOutcome {
    /// Rows emitted.
    pub rows: u64,
    /// The rate asked for (rows/s; infinite when unpaced, serialised as null).
    pub offered: f64,
    /// Rows over the run's wall time.
    pub achieved: f64,
    /// Wall time of the run, s.
    pub seconds: f64,
    /// Window results whose latency was measured (closed by a watermark).
    pub windows: u64,
    /// Window-result latency percentiles, ms (see the [module docs](self)).
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// The run report's in-band latency markers, source → sinks.
    pub markers: Option<LatencyReport>,
    /// Rows the results counted (every row emitted, if nothing was lost or late).
    pub counted: u64,
}

/// Runs the tumbling count over `rows` rows emitted at `rate` rows/s (`f64::INFINITY`:
/// unpaced); `cfg.records` is ignored. Markers are emitted every `marker_interval`.
///
/// # Errors
///
/// Bad Zipf parameters or a failed run.
pub fn run_paced(
    cfg: &WindowsConfig,
    rows: u64,
    rate: f64,
    marker_interval: Duration,
) -> Result<PacedOutcome, WindowsError> {
    let default = PipelineConfig::default();
    let config = PipelineConfig {
        batch_rows: cfg.batch_rows,
        workers: cfg.workers,
        latency_marker_interval: marker_interval,
        edge_target_time: cfg.edge_target_time.unwrap_or(default.edge_target_time),
        ..default
    };
    let mut p = Pipeline::with_config("bench-windows-latency", config);
    let last_ts = Arc::new(AtomicI64::new(i64::MIN));
    let epoch = Instant::now();
    let source = Paced {
        epoch,
        rate,
        sent: 0,
        total: rows,
        keys: ZipfKeys::new(cfg.keys, cfg.zipf, cfg.seed)?,
        last_ts: last_ts.clone(),
    };
    // (window end, arrival ns since the epoch, count) of every result.
    type Arrivals = Vec<(i64, u64, u64)>;
    let arrivals = p
        .source("source", source)
        .with_watermarks(WatermarkStrategy::bounded(BOUND).timestamps(|r: &Row| Timestamp(r.1)))
        .key_by(|r: &Row| r.0)
        .parallelism(cfg.parallelism)
        .window(Tumbling::of(TUMBLING), |r: &Row| Timestamp(r.1))
        .aggregate("count", Count::new())
        .fold(
            "sink",
            Arrivals::new(),
            move |mut a: Arrivals, w: Windowed<u64, u64>| {
                a.push((w.end.0, epoch.elapsed().as_nanos() as u64, w.value));
                a
            },
        );
    let start = Instant::now();
    let report = weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    let arrivals = arrivals.take().unwrap_or_default();
    let counted = arrivals.iter().map(|a| a.2).sum();
    // A window whose closing row was never emitted was fired by the end of the input.
    let last = last_ts.load(Ordering::Relaxed);
    let close = |end: i64| end + BOUND.as_millis() as i64 + 1;
    let mut ms: Vec<f64> = arrivals
        .iter()
        .filter(|&&(end, _, _)| close(end) <= last)
        .map(|&(end, at, _)| (at as f64 - close(end) as f64 * 1e6) / 1e6)
        .collect();
    ms.sort_unstable_by(f64::total_cmp);
    Ok(PacedOutcome {
        rows,
        offered: rate,
        achieved: rows as f64 / elapsed.as_secs_f64().max(1e-9),
        seconds: elapsed.as_secs_f64(),
        windows: ms.len() as u64,
        p50_ms: percentile(&ms, 0.50),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
        markers: report.latency,
        counted,
    })
}

/// The maximum rate: `rows` rows unpaced, rows over wall time.
///
/// # Errors
///
/// As [`run_paced`].
pub fn max_rate(cfg: &WindowsConfig, rows: u64) -> Result<PacedOutcome, WindowsError> {
    run_paced(cfg, rows, f64::INFINITY, Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_run_counts_every_row_and_measures_closed_windows() {
        let cfg = WindowsConfig {
            keys: 100,
            batch_rows: 256,
            workers: Some(2),
            ..WindowsConfig::default()
        };
        // 1.25 s of rows at 40 K rows/s: the first second's windows close by watermark, the
        // rest by the end of the input.
        let r = run_paced(&cfg, 50_000, 40_000.0, Duration::from_millis(10)).expect("runs");
        assert_eq!(r.counted, 50_000, "every row is counted once");
        assert_eq!(r.windows, 100, "one window per key closes by watermark");
        assert!(r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms);
        assert!(r.markers.is_some_and(|m| m.markers > 0));
    }

    #[test]
    fn percentiles_are_nearest_ranks() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(percentile::<f64>(&[], 0.5), 0.0);
    }
}
