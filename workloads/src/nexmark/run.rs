//! One Nexmark run: events in, watermarks, the late filter, a query, results out, and the
//! figures `weir nexmark` prints.
//!
//! ```text
//! events ──▶ watermarks ──▶ late ──▶ query N ──▶ results (NDJSON file or count)
//! (generator × P, or        │ dead letters: `late event`
//!  one NDJSON file reader)  │
//!  │ dead letters: malformed lines, with their line numbers
//! ```
//!
//! # Semantic choices
//!
//! - **Event time** is each event's `dateTime`. The generator advances it at
//!   [`GeneratorConfig::event_rate`] events per second of event time (see
//!   [`generator`](super::generator)), independent of how fast the run goes; a file brings
//!   whatever times it holds.
//! - **Watermark.** The source stamps watermarks with a bounded out-of-orderness strategy:
//!   `max − max_delay_ms − 1`, `max` being the largest `dateTime` seen by the source instance
//!   (runtime semantics in `weir_runtime::event_time`). The end of the input sends `+∞`, so
//!   every window closes.
//! - **Late rule.** An event is late iff its `dateTime` is below the largest `dateTime` of the
//!   events before it, minus `max_delay_ms`. The `late` operator, chained to the source, drops
//!   late events to its dead letters under the reason [`LATE_EVENT`] (the run report counts
//!   them), so no query ever sees an event behind its watermark: what passes is at least
//!   `max − max_delay_ms`, above any watermark sent before it. With one source instance (a
//!   file) "before it" is file order, and the results equal the query evaluated over the file
//!   without its late events ([`reference`](super::reference) applies the same rule). With
//!   generator instances each applies the rule to its own share; the generator's delays are
//!   bounded by its own `max_delay_ms` (3 s by default), so under the default 10 s bound
//!   nothing is late.
//! - **Figures.** `events` counts the events the source produced (malformed lines excluded,
//!   late events included); `events_per_cpu_s` divides them by the process's user + system CPU
//!   time over the run, generator included, as Flink's figures include their source.
//! - **Paced runs** ([`EventInput::Paced`]) release the generated events in wall time, their
//!   event time on the same clock, and measure every result row's latency from the creation of
//!   the input that made it final ([`pace`](super::pace) defines it per query); the run
//!   report's latency markers give the pipeline's own source → sink transit beside it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use weir_operators::prelude::*;
use weir_runtime::{
    DeadLetter, InputPort, Operator, Output, RunReport, SinkHandle, WatermarkStrategy,
};

use crate::process_cpu_time;

use super::generator::GeneratorConfig;
use super::io::{EventFileSource, GeneratorSource, NdjsonFileSink};
use super::model::Event;
use super::pace::{LatencySummary, Pace, ResultCount, Timing};
use super::queries::{self, QueryError, QueryOptions, ResultSink};

/// The dead-letter reason of a late event.
pub const LATE_EVENT: &str = "late event";
/// The events source's operator name.
pub const EVENTS: &str = "events";
/// The late filter's operator name.
pub const LATE: &str = "late";

/// Where the events come from.
#[derive(Clone, Debug, PartialEq)]
pub enum EventInput {
    /// Generated, by as many generator instances as the run's parallelism
    /// ([`QueryOptions::parallelism`]).
    Generate(GeneratorConfig),
    /// Generated as [`Generate`](Self::Generate) does, released at `rate` events per wall-clock
    /// second from the start of the run, with the event time on the same clock (the
    /// configuration's base time and event rate are replaced; see [`pace`](super::pace)).
    Paced {
        /// The events.
        generator: GeneratorConfig,
        /// Events per wall-clock second.
        rate: u64,
    },
    /// Read from an NDJSON file, by one instance.
    File(PathBuf),
}

/// What runs on the events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Query `n`.
    Query(u32),
    /// No query: the events (watermarked and late-filtered) into a count. The baseline the
    /// queries' figures stand beside.
    Events,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Query(n) => write!(f, "q{n}"),
            Workload::Events => f.write_str("gen"),
        }
    }
}

/// One run's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// The events.
    pub input: EventInput,
    /// What runs on them.
    pub workload: Workload,
    /// Query options: parallelism (also the generator's and the workers'), the delay bound.
    pub options: QueryOptions,
    /// Where the results go (with [`Workload::Events`], the events are counted whatever it
    /// says).
    pub output: ResultSink,
    /// Where to write the dead letters (malformed lines, late events) as NDJSON, if anywhere;
    /// they are counted either way.
    pub dead_letters: Option<PathBuf>,
    /// Time each edge buffers at its consumer's rate (`None`: [`PipelineConfig`]'s default;
    /// zero: rows and bytes only).
    pub edge_target_time: Option<Duration>,
}

/// The pipeline of a run, before it starts.
#[derive(Debug)]
pub struct Built {
    /// The pipeline; run it with [`Pipeline::run`] or spawn it.
    pub pipeline: Pipeline,
    /// The number of result rows and their latency, after the run.
    pub results: SinkHandle<ResultCount>,
    /// The pace and the latency's terms, in a paced run.
    pub timing: Option<Timing>,
}

/// Builds the pipeline of `cfg` (see the [module docs](self)).
///
/// # Errors
///
/// The query is unknown or not built.
pub fn build(cfg: &RunConfig) -> Result<Built, QueryError> {
    let parallelism = cfg.options.parallelism.max(1);
    let mut p = Pipeline::with_config(
        format!("nexmark-{}", cfg.workload),
        PipelineConfig {
            workers: Some(parallelism),
            parallelism,
            edge_target_time: cfg
                .edge_target_time
                .unwrap_or(PipelineConfig::default().edge_target_time),
            ..PipelineConfig::default()
        },
    );
    let max_delay_ms = cfg.options.max_delay_ms.max(0);
    let mut timing = None;
    let (events, instances) = match &cfg.input {
        EventInput::Generate(gen) => {
            let gen = gen.clone();
            let events = p
                .source_with(EVENTS, move |_| GeneratorSource::new(gen.clone()))
                .parallelism(parallelism);
            (events, parallelism)
        }
        EventInput::Paced { generator, rate } => {
            let (gen, pace) = (generator.clone(), Pace::starting_now(*rate));
            timing = Some(Timing::new(pace, gen.clone(), max_delay_ms));
            let events = p
                .source_with(EVENTS, move |_| GeneratorSource::paced(gen.clone(), pace))
                .parallelism(parallelism);
            (events, parallelism)
        }
        EventInput::File(path) => (p.source(EVENTS, EventFileSource::new(path.clone())), 1),
    };
    let events = events.with_watermarks(
        WatermarkStrategy::bounded(Duration::from_millis(max_delay_ms as u64))
            .timestamps(|e: &Event| Timestamp(e.date_time())),
    );
    let malformed = events.dead_letters();
    let events = events
        .unary_with(LATE, move |_| LateFilter::new(max_delay_ms))
        .parallelism(instances);
    if let Some(path) = &cfg.dead_letters {
        let late = events.dead_letters();
        malformed
            .union("dead letters", [late])
            .parallelism(1)
            .sink("dead letters out", NdjsonFileSink::new(path.clone()));
    }
    let results = match cfg.workload {
        Workload::Events => queries::finish(events, &ResultSink::Count, timing.as_ref()),
        Workload::Query(n) => {
            queries::attach(n, events, &cfg.options, &cfg.output, timing.as_ref())?
        }
    };
    Ok(Built {
        pipeline: p,
        results,
        timing,
    })
}

/// Drops late events to its dead letters (see the [module docs](self)).
#[derive(Debug)]
pub struct LateFilter {
    max_delay_ms: i64,
    max_seen: i64,
}

impl LateFilter {
    /// A filter for a delay bound of `max_delay_ms`.
    pub fn new(max_delay_ms: i64) -> Self {
        LateFilter {
            max_delay_ms,
            max_seen: i64::MIN,
        }
    }

    /// Whether an event at `date_time`, arriving now, is late; if not, it counts as seen.
    pub fn is_late(&mut self, date_time: i64) -> bool {
        if date_time < self.max_seen.saturating_sub(self.max_delay_ms) {
            true
        } else {
            self.max_seen = self.max_seen.max(date_time);
            false
        }
    }
}

impl Operator for LateFilter {
    type Input = Vec<Event>;
    type Output = Vec<Event>;

    fn on_batch(
        &mut self,
        _: InputPort,
        mut batch: Vec<Event>,
        out: &mut Output<Vec<Event>>,
    ) -> Result<(), OperatorError> {
        batch.retain(|e| {
            if self.is_late(e.date_time()) {
                let raw = serde_json::to_string(e).unwrap_or_default();
                out.dead_letter(DeadLetter::new(LATE_EVENT, raw));
                false
            } else {
                true
            }
        });
        out.emit(batch);
        Ok(())
    }
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    /// The run report.
    pub report: RunReport,
    /// Events the source produced (malformed lines excluded, late events included).
    pub events: u64,
    /// Malformed lines (file input).
    pub malformed: u64,
    /// Late events, left out.
    pub late: u64,
    /// Result rows written or counted.
    pub results: u64,
    /// Their latency from the creation of their inputs, in a paced run with results.
    pub latency: Option<LatencySummary>,
    /// The pace and the latency's terms, in a paced run.
    pub timing: Option<Timing>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The process's user + system CPU time over the run, where the platform tells.
    pub cpu: Option<Duration>,
}

/// The final line `weir nexmark` prints.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// `q0` … `q11`, or `gen`.
    pub query: String,
    /// Events the source produced.
    pub events: u64,
    /// Events per second of wall time.
    pub events_per_s: f64,
    /// Events per CPU-second (user + system time of the process), `null` where unknown or
    /// below the clock's 10 ms resolution.
    pub events_per_cpu_s: Option<f64>,
    /// Peak resident set size, `null` where unknown.
    pub peak_rss_bytes: Option<u64>,
    /// Median latency of the result rows from the creation of the input that made each final,
    /// ms: `null` unless paced (or without results).
    pub latency_p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub latency_p99_ms: Option<f64>,
    /// The largest of the same.
    pub latency_max_ms: Option<f64>,
    /// Median age of the latency markers at the result sink (the pipeline's source → sink
    /// transit), ms; `null` if none arrived.
    pub marker_p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub marker_p99_ms: Option<f64>,
}

impl Outcome {
    /// The final line's figures.
    pub fn summary(&self, workload: Workload) -> Summary {
        let per = |d: Duration| {
            let s = d.as_secs_f64();
            if s > 0.0 {
                self.events as f64 / s
            } else {
                0.0
            }
        };
        Summary {
            query: workload.to_string(),
            events: self.events,
            events_per_s: per(self.elapsed),
            // Below one clock tick of CPU time the figure would be a division by zero.
            events_per_cpu_s: self.cpu.filter(|c| !c.is_zero()).map(per),
            peak_rss_bytes: crate::peak_rss_bytes(),
            latency_p50_ms: self.latency.map(|l| l.p50_ms),
            latency_p99_ms: self.latency.map(|l| l.p99_ms),
            latency_max_ms: self.latency.map(|l| l.max_ms),
            marker_p50_ms: self.report.latency.map(|l| l.p50_ms),
            marker_p99_ms: self.report.latency.map(|l| l.p99_ms),
        }
    }
}

/// Runs `cfg`'s pipeline with `run` (which may spawn it and watch for signals, or just call
/// [`Pipeline::run`]) and measures it.
///
/// # Errors
///
/// Building the pipeline, or what `run` returns.
pub fn run_with<E>(
    cfg: &RunConfig,
    run: impl FnOnce(Pipeline) -> Result<RunReport, E>,
) -> Result<Outcome, E>
where
    E: From<QueryError>,
{
    let built = build(cfg)?;
    let cpu0 = process_cpu_time();
    let start = Instant::now();
    let report = run(built.pipeline)?;
    let elapsed = start.elapsed();
    let cpu = match (cpu0, process_cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let op = |name: &str| report.operators.iter().find(|o| o.name == name);
    let events = op(EVENTS).map_or(0, |o| o.rows_out);
    let malformed = op(EVENTS).map_or(0, |o| o.dead_letters);
    let late = op(LATE).map_or(0, |o| o.dead_letters);
    let results = built.results.take().unwrap_or_default();
    Ok(Outcome {
        report,
        events,
        malformed,
        late,
        results: results.rows,
        latency: results.latency,
        timing: built.timing,
        elapsed,
        cpu,
    })
}

/// Runs `cfg` to its end on this thread (see [`run_with`]).
///
/// # Errors
///
/// The query is unknown or not built, or the run failed.
pub fn run(cfg: &RunConfig) -> Result<Outcome, RunFailure> {
    run_with(cfg, |p| p.run().map_err(RunFailure::Run))
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// The query could not be attached.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] weir_runtime::RunError),
}

#[cfg(test)]
mod tests;
