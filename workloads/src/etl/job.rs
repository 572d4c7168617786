//! The orders ETL job as a pipeline: CSV in, clean Parquet orders, revenue by country and day
//! and by country and event-time hour, late rows, and NDJSON dead letters out.
//!
//! # Graph
//!
//! ```text
//! read (chunker) ─▶ parse+validate ×p ─▶ parse+validate.watermarks ×p ─▶ orders ×p ─▶ drop_cancelled ×p ─▶ amount_usd ×p ─▶ clean ×p ─┐
//!                     │ dead letters                                                                                  │
//!                     └──────────▶ dead_letters (NDJSON)                                                              │
//! ┌───────────────────────────────────────────────────────────────────────────────────────────────────────────────────┘
//! ├─▶ orders_clean (Parquet ×w)
//! └─▶ revenue_part ×p ─▶ refunded_part ×p ─┬─▶ day ×p ─▶ revenue_columns ×p ─▶ revenue (hash agg) ─▶ revenue_by_country_day (Parquet)
//!                                          └─▶ revenue_by_hour (1 h window) ─┬─▶ .results ─▶ revenue_by_country_hour (Parquet)
//!                                                                            └─▶ .late ─▶ late_clean ─▶ late_rows (Parquet)
//! ```
//!
//! `parse+validate` parses a chunk of whole records with the orders schema (malformed fields and
//! field counts become dead letters) and applies the domain rules ([`validate`]: negative amount,
//! unknown currency or status), knowing the chunk's file. The rest are the generic columnar
//! operators: a projection dropping the `_line` and `_raw` columns the dead letters needed (no
//! copy; the filter after it then copies only the order columns), a filter (`status != "cancelled"`, counted as filtered in the report), a computed
//! column (`amount_usd = amount × rate`), a projection to [`clean_schema`], and a keyed hash
//! aggregation by `(country, day)` with exact sums.
//!
//! # Event time
//!
//! `revenue_by_country_hour` is the daily table's aggregation per one-hour event-time tumbling
//! window of `ts` (no allowed lateness), keyed by country. Its watermark comes from
//! `parse+validate.watermarks`, chained to each parse instance: bounded out-of-orderness on `ts`
//! (the largest `ts` that instance has parsed minus [`EtlConfig::max_delay_ms`] and 1 ms, one
//! watermark per batch at most); the window takes the minimum over the instances. Rows of windows the
//! watermark has already closed are *late*: they are in `orders_clean` and the daily table like
//! every clean row, not in the hourly table, and are written to `late_rows` (the clean schema)
//! and counted ([`EtlSummary::late_rows`]). So the hourly `orders` plus the late rows equal the
//! clean rows, and on an input whose disorder stays within the bound the hourly table is the
//! plain group-by of the clean rows by country and hour. With one parse instance a row is late
//! exactly when its hour ends at or before that watermark after the earlier batches; with several, the window's watermark is the minimum over them, so at most those rows
//! are late, and which depends on how far each instance has read.
//!
//! # Output
//!
//! The five outputs are one unit, published by a [`JobOutput`]: the input is checked first (it
//! must exist and must not lie inside an output), then every sink writes into
//! `OUT/.weir-staging-<run_id>/`, and only a run that read all its input swaps `orders_clean/`,
//! `revenue_by_country_day/`, `dead_letters/`, `revenue_by_country_hour/` and `late_rows/` into
//! place, each with a `_SUCCESS` naming the run. A failed, stopped ([`EtlStop`]) or killed run
//! publishes nothing: the previous outputs stay as they were, and the next start cleans up (or
//! completes an interrupted publish).
//!
//! A directory input reads its `*.csv` files (links followed). An input without data rows
//! publishes an empty Parquet part holding the schema in each Parquet output, and says so in
//! [`EtlSummary::notes`] (for the tables; an empty `late_rows` is the usual case and goes
//! without a note).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::compute::kernels::cmp::neq;
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::error::ArrowError;
use serde::Serialize;
use weir_runtime::{
    CheckpointConfig, EdgeConfig, Output, Pipeline, PipelineConfig, RunError, RunReport,
    SinkHandle, StopSignal,
};

use super::orders::{column, usd_rate};
use super::{clean_schema, orders_csv_options, orders_csv_schema, validate};
use weir_operators::columnar::{
    csv_split_with, late_rows, Agg, ArrowStream, DeadLetterSink, PartSinkOptions, PlanError,
    SplitOptions,
};
use weir_operators::connector::publish::{new_run_id, staging_root};
use weir_operators::connector::{
    FileSet, JobOutput, ParquetCompression, PartCommit, PartFormat, PartWriter, PartWriterOptions,
    PublishError, ReadError, WriteError, WriteSummary,
};

/// Settings of the ETL job.
#[derive(Debug, Clone)]
pub struct EtlConfig {
    /// A CSV file, or a directory of CSV files read in name order.
    pub input: PathBuf,
    /// Where the three output directories go.
    pub out: PathBuf,
    /// Parse instances, and the job-wide parallelism of the stages after them (default: the
    /// number of cores).
    pub parallelism: usize,
    /// Instances writing `orders_clean` (default: the number of cores).
    pub writers: usize,
    /// Rows per batch (default 8192).
    pub batch_rows: usize,
    /// Compression of the Parquet outputs (default Snappy).
    pub compression: ParquetCompression,
    /// Rows per `orders_clean` part (default 1 048 576).
    pub part_rows: u64,
    /// Worker threads (default: the number of cores).
    pub workers: Option<usize>,
    /// How far the watermark trails the largest `ts` a parse instance has seen, in ms (default
    /// [`DEFAULT_MAX_DELAY_MS`], one hour): the disorder `revenue_by_country_hour` absorbs
    /// before a row is late.
    pub max_delay_ms: u64,
    /// Where the run writes checkpoints (default none: no checkpoints). A run given a directory
    /// that holds a complete checkpoint of an unfinished run resumes it: the sources start at
    /// the checkpoint's positions, the operators from its state, and the outputs from the
    /// staging folder of that run, so what is published equals an uninterrupted run's.
    pub checkpoint_dir: Option<PathBuf>,
    /// Time between checkpoints, ms (default 1000), with [`checkpoint_dir`](Self::checkpoint_dir).
    pub checkpoint_interval_ms: u64,
    /// Time each edge buffers at its consumer's rate (default `None`: [`PipelineConfig`]'s;
    /// zero: rows and bytes only).
    pub edge_target_time: Option<std::time::Duration>,
}

/// The file in a checkpoint directory naming the run its checkpoints belong to.
const RUN_FILE: &str = "etl-run";

/// The default [`EtlConfig::max_delay_ms`]: one hour.
pub const DEFAULT_MAX_DELAY_MS: u64 = 3_600_000;

/// The size of the hourly table's windows, ms.
pub const HOUR_MS: i64 = 3_600_000;

impl EtlConfig {
    /// Defaults for `input` and `out`.
    pub fn new(input: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            input: input.into(),
            out: out.into(),
            parallelism: cores,
            writers: cores,
            batch_rows: 8192,
            compression: ParquetCompression::Snappy,
            part_rows: 1 << 20,
            workers: None,
            max_delay_ms: DEFAULT_MAX_DELAY_MS,
            checkpoint_dir: None,
            checkpoint_interval_ms: 1000,
            edge_target_time: None,
        }
    }
}

/// Errors of the ETL job.
#[derive(Debug, thiserror::Error)]
pub enum EtlJobError {
    /// The input could not be listed or opened.
    #[error("cannot read the input: {0}")]
    Read(#[from] ReadError),
    /// The input does not exist or cannot be inspected.
    #[error("input {path}: {source}")]
    Input {
        /// The input.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory input holds no `*.csv` file.
    #[error("input {dir}: no *.csv files in the directory")]
    NoCsvFiles {
        /// The directory.
        dir: PathBuf,
    },
    /// The input lies inside an output the job would replace.
    #[error("input {input} lies inside the output {output}, which the job replaces; move the input or choose another --out")]
    InputInsideOutput {
        /// The input.
        input: PathBuf,
        /// The output holding it.
        output: PathBuf,
    },
    /// The outputs could not be staged or published.
    #[error("cannot publish the outputs: {0}")]
    Publish(#[from] PublishError),
    /// An empty part could not be written for an input without rows.
    #[error("cannot write an empty part: {0}")]
    EmptyPart(#[from] WriteError),
    /// The pipeline could not be built (a bug: the schemas are fixed).
    #[error("cannot build the pipeline: {0}")]
    Plan(#[from] PlanError),
    /// The checkpoint directory's run file could not be read or written.
    #[error("checkpoints {0}: {1}")]
    Checkpoints(PathBuf, #[source] std::io::Error),
    /// The run failed.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// What the ETL job did.
#[derive(Debug, Clone, Serialize)]
pub struct EtlSummary {
    /// Records read (data rows: good, dead-lettered and filtered).
    pub rows_read: u64,
    /// Rows written to `orders_clean`.
    pub rows_written: u64,
    /// Cancelled orders dropped.
    pub rows_filtered: u64,
    /// Records sent to the dead letters.
    pub dead_letters: u64,
    /// Rows in `revenue_by_country_day`.
    pub revenue_groups: u64,
    /// Rows in `revenue_by_country_hour`.
    pub hourly_groups: u64,
    /// Clean rows that came after the watermark had closed their hour: in `late_rows`, not in
    /// `revenue_by_country_hour`.
    pub late_rows: u64,
    /// Bytes of input read.
    pub input_bytes: u64,
    /// Wall-clock seconds of the run.
    pub elapsed_s: f64,
    /// `rows_read / elapsed_s`.
    pub rows_per_s: f64,
    /// Input megabytes (10⁶ bytes) per second.
    pub mb_per_s: f64,
    /// The run's id, named by each published output's `_SUCCESS`.
    pub run_id: String,
    /// Whether the run was stopped ([`EtlStop`]) before the end of its input.
    pub stopped: bool,
    /// Whether the outputs were published (false when stopped: the previous outputs stay).
    pub published: bool,
    /// Things a user should know about the outputs (e.g. an input without rows).
    pub notes: Vec<String>,
    /// The part files written, per output (in the staging folder until published).
    #[serde(skip)]
    pub parts: EtlParts,
}

/// Stops a running ETL job: its sources end their streams, the pipeline drains, the report is
/// made, and nothing is published. Clones share one stop; a stop asked for before the run
/// starts takes effect as it starts.
#[derive(Debug, Clone, Default)]
pub struct EtlStop {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    /// The run's stop signal once it runs.
    run: Mutex<Option<Arc<StopSignal>>>,
    /// 0 while not stopped; else the exit code the stop calls for (128 + signal, or 1).
    code: AtomicU8,
}

impl EtlStop {
    /// A stop not yet asked for.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop (exit code 1 if nothing more specific is known).
    pub fn stop(&self) {
        self.stop_with_code(1);
    }

    /// Asks the run to stop, recording the exit code the caller should end with (the first
    /// stop's code is kept).
    pub fn stop_with_code(&self, code: u8) {
        // SeqCst pairs with `attach`: a stop either sees the run's signal under the lock or is
        // seen by `attach` after it stores the signal.
        let _ =
            self.inner
                .code
                .compare_exchange(0, code.max(1), Ordering::SeqCst, Ordering::SeqCst);
        let run = self.inner.run.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signal) = run.as_ref() {
            signal.stop();
        }
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.exit_code().is_some()
    }

    /// The exit code of the stop asked for, if any.
    pub fn exit_code(&self) -> Option<u8> {
        match self.inner.code.load(Ordering::SeqCst) {
            0 => None,
            code => Some(code),
        }
    }

    fn attach(&self, signal: Arc<StopSignal>) {
        let mut run = self.inner.run.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_stopped() {
            signal.stop();
        }
        *run = Some(signal);
    }

    /// Stops on SIGINT (exit code 130) or SIGTERM (143); on other platforms on Ctrl-C. A second
    /// signal ends the process at once with that code (what was staged is rolled back by the
    /// next start). The signals are watched by a thread of their own for the rest of the
    /// process's life; call this once per process.
    ///
    /// # Errors
    /// The signal handlers could not be installed.
    pub fn stop_on_signals(&self) -> std::io::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let stop = self.clone();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (mut int, mut term) = runtime.block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::terminate())?,
                ))
            })?;
            std::thread::Builder::new()
                .name("weir-signals".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        loop {
                            let (name, code) = tokio::select! {
                                _ = int.recv() => ("SIGINT", 130),
                                _ = term.recv() => ("SIGTERM", 143),
                            };
                            stop.on_signal(name, code);
                        }
                    });
                })?;
        }
        #[cfg(not(unix))]
        {
            std::thread::Builder::new()
                .name("weir-signals".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        while tokio::signal::ctrl_c().await.is_ok() {
                            stop.on_signal("Ctrl-C", 130);
                        }
                    });
                })?;
        }
        Ok(())
    }

    fn on_signal(&self, name: &str, code: u8) {
        if self.is_stopped() {
            eprintln!("{name} again: exiting at once; the next start removes what was staged");
            std::process::exit(i32::from(code));
        }
        eprintln!(
            "{name}: stopping; sources end their streams, the pipeline drains, nothing is published"
        );
        self.stop_with_code(code);
    }
}

/// The part files of each output.
#[derive(Debug, Clone, Default)]
pub struct EtlParts {
    /// `orders_clean/`.
    pub clean: Vec<WriteSummary>,
    /// `revenue_by_country_day/`.
    pub revenue: Vec<WriteSummary>,
    /// `dead_letters/`.
    pub dead_letters: Vec<WriteSummary>,
    /// `revenue_by_country_hour/`.
    pub hourly: Vec<WriteSummary>,
    /// `late_rows/`.
    pub late: Vec<WriteSummary>,
}

/// The built job: its pipeline and the handles its results arrive on.
#[derive(Debug)]
pub struct EtlJob {
    /// The pipeline, ready to run.
    pub pipeline: Pipeline,
    clean: SinkHandle<WriteSummary>,
    revenue: SinkHandle<WriteSummary>,
    dead: SinkHandle<WriteSummary>,
    hourly: SinkHandle<WriteSummary>,
    late: SinkHandle<WriteSummary>,
    bytes_read: Arc<AtomicU64>,
    input: PathBuf,
    out: PathBuf,
    run_id: String,
    /// The schemas of `orders_clean`, `revenue_by_country_day`, `revenue_by_country_hour` and
    /// `late_rows`.
    schemas: [SchemaRef; 4],
    checkpoint_dir: Option<PathBuf>,
    /// The run resumes its checkpoints and staging folder.
    resuming: bool,
}

/// The names of the job's five outputs, in [`output_dirs`] order.
pub const OUTPUTS: [&str; 5] = [
    "orders_clean",
    "revenue_by_country_day",
    "dead_letters",
    "revenue_by_country_hour",
    "late_rows",
];

/// The name of the hourly window operator (its late rows are counted by `revenue_by_hour.late`,
/// see [`late_rows`]).
pub const HOURLY_WINDOW: &str = "revenue_by_hour";

/// The five output directories under `out`.
pub fn output_dirs(out: &Path) -> [PathBuf; 5] {
    OUTPUTS.map(|name| out.join(name))
}

/// Checks, before anything is touched, that `input` exists and does not lie inside one of the
/// outputs under `out` (or a staging folder there), which a run replaces or removes.
///
/// # Errors
/// [`EtlJobError::Input`], [`EtlJobError::InputInsideOutput`].
pub fn check_input(input: &Path, out: &Path) -> Result<(), EtlJobError> {
    let input_err = |source| EtlJobError::Input {
        path: input.to_owned(),
        source,
    };
    let input = std::fs::canonicalize(input).map_err(input_err)?;
    let Ok(out) = std::fs::canonicalize(out) else {
        // No output directory yet: nothing in it to collide with.
        return Ok(());
    };
    let Ok(rest) = input.strip_prefix(&out) else {
        return Ok(());
    };
    let Some(first) = rest.components().next() else {
        return Ok(());
    };
    let first = first.as_os_str().to_string_lossy().into_owned();
    if OUTPUTS.contains(&first.as_str()) || first.starts_with(".weir-") {
        return Err(EtlJobError::InputInsideOutput {
            output: out.join(first),
            input,
        });
    }
    Ok(())
}

const MS_PER_DAY: i64 = 86_400_000;

/// `amount × rate(currency)` for a validated batch.
fn amount_usd(batch: &RecordBatch) -> Result<ArrayRef, ArrowError> {
    let err = |e: super::EtlError| ArrowError::ComputeError(e.to_string());
    let amount = column::<Float64Array>(batch, "amount", DataType::Float64).map_err(err)?;
    let currency = column::<StringArray>(batch, "currency", DataType::Utf8).map_err(err)?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let rate = usd_rate(currency.value(i)).ok_or_else(|| {
            ArrowError::ComputeError(format!(
                "currency {:?} has no USD rate; validate before converting",
                currency.value(i)
            ))
        })?;
        out.push(amount.value(i) * rate);
    }
    Ok(Arc::new(Float64Array::from(out)))
}

/// `amount_usd` where `status` is one of `statuses`, else 0.
fn usd_where(batch: &RecordBatch, statuses: &[&str]) -> Result<ArrayRef, ArrowError> {
    let err = |e: super::EtlError| ArrowError::ComputeError(e.to_string());
    let usd = column::<Float64Array>(batch, "amount_usd", DataType::Float64).map_err(err)?;
    let status = column::<StringArray>(batch, "status", DataType::Utf8).map_err(err)?;
    Ok(Arc::new(Float64Array::from_iter_values(
        (0..batch.num_rows()).map(|i| {
            if statuses.contains(&status.value(i)) {
                usd.value(i)
            } else {
                0.0
            }
        }),
    )))
}

/// The UTC day of `ts`.
fn utc_day(batch: &RecordBatch) -> Result<ArrayRef, ArrowError> {
    let ts = batch
        .column_by_name("ts")
        .ok_or_else(|| ArrowError::SchemaError("no column `ts`".into()))?;
    let ts = ts
        .as_any()
        .downcast_ref::<arrow::array::TimestampMillisecondArray>()
        .ok_or_else(|| ArrowError::SchemaError("`ts` is not a millisecond timestamp".into()))?;
    let day: Date32Array = ts.try_unary(|ms| {
        i32::try_from(ms.div_euclid(MS_PER_DAY)).map_err(|_| {
            ArrowError::ComputeError(format!("timestamp {ms} ms is out of Date32 range"))
        })
    })?;
    Ok(Arc::new(day))
}

/// Builds the job's pipeline, writing into the staging folder of a new run under `config.out`
/// (touches nothing: the folder is made when the run starts).
///
/// ```text
/// CSV files ─▶ parse+validate ─▶ parse+validate.watermarks ─▶ … ─▶ clean ─┬─▶ orders_clean (Parquet)
///                   │                                     ├─▶ … ─▶ revenue ─▶ revenue_by_country_day (Parquet)
///                   │                                     └─▶ … ─▶ revenue_by_hour ─┬─▶ revenue_by_country_hour (Parquet)
///                   │                                                               └─▶ late_rows (Parquet)
///                   └─ dead letters ─────────────────────────────────────▶ dead_letters (NDJSON)
/// ```
///
/// # Errors
/// [`EtlJobError::Read`] if a directory input cannot be listed; [`EtlJobError::NoCsvFiles`] if
/// it holds no `*.csv`.
pub fn build(config: &EtlConfig) -> Result<EtlJob, EtlJobError> {
    let is_dir = config.input.is_dir();
    let set = input_files(&config.input, is_dir)?;
    let resumed = match &config.checkpoint_dir {
        Some(dir) => resumable_run(dir)?,
        None => None,
    };
    let resuming = resumed.is_some();
    let mut pipeline_cfg = pipeline_config(config);
    if let Some(dir) = &config.checkpoint_dir {
        pipeline_cfg = pipeline_cfg.checkpointing(
            CheckpointConfig::new(dir)
                .interval(Duration::from_millis(config.checkpoint_interval_ms.max(1)))
                .restore(resuming),
        );
    }
    let mut pipeline = Pipeline::with_config("etl", pipeline_cfg);
    // With checkpoints, every sink commits its parts by checkpoint inside the staging folder;
    // a resumed run's sinks finish or discard what the crash left there.
    let sink_opts = |format: PartFormat| {
        let opts = PartSinkOptions::new(format);
        if config.checkpoint_dir.is_some() {
            opts.commit(PartCommit::OnCheckpoint).resume(resuming)
        } else {
            opts
        }
    };

    // Source: the files, cut into chunks and parsed in parallel, each row validated, then
    // watermarks trailing each parse instance's largest `ts`.
    let (parsed, bytes_read) = parse_and_validate(&mut pipeline, set, config)?;
    let dead_letters = parsed.dead_letters();
    let parsed =
        parsed.bounded_out_of_orderness("ts", Duration::from_millis(config.max_delay_ms))?;

    // Operators: the clean orders, and the revenue per country and day, and per country and
    // event-time hour, computed from them.
    let clean = clean_orders(parsed)?;
    let clean_schema = clean.schema().clone();
    let run_id = resumed.unwrap_or_else(new_run_id);
    let [clean_dir, revenue_dir, dead_dir, hourly_dir, late_dir] =
        output_dirs(&staging_root(&config.out, &run_id));
    let parquet = parquet_format(config);
    let clean_handle = clean.clone().write_parts(
        "orders_clean",
        clean_dir,
        sink_opts(parquet.clone()).max_rows(config.part_rows),
        config.writers.max(1),
    );
    let parts = revenue_parts(clean)?;
    let revenue = revenue_by_country_day(parts.clone())?;
    let (hourly, late) = revenue_by_country_hour(parts)?;
    let schemas = [
        clean_schema,
        revenue.schema().clone(),
        hourly.schema().clone(),
        late.schema().clone(),
    ];

    // Sinks: Parquet parts for the tables and the late rows, NDJSON for the dead letters.
    let revenue_handle = revenue.write_parts(
        "revenue_by_country_day",
        revenue_dir,
        sink_opts(parquet.clone()),
        1,
    );
    let hourly_handle = hourly.write_parts(
        "revenue_by_country_hour",
        hourly_dir,
        sink_opts(parquet.clone()),
        1,
    );
    let late_handle = late.write_parts("late_rows", late_dir, sink_opts(parquet), 1);
    let dead_handle = dead_letters.sink(
        "dead_letters",
        DeadLetterSink::new(dead_dir, sink_opts(PartFormat::Ndjson)).keep_file(is_dir),
    );
    Ok(EtlJob {
        pipeline,
        clean: clean_handle,
        revenue: revenue_handle,
        dead: dead_handle,
        hourly: hourly_handle,
        late: late_handle,
        bytes_read,
        input: config.input.clone(),
        out: config.out.clone(),
        run_id,
        schemas,
        checkpoint_dir: config.checkpoint_dir.clone(),
        resuming,
    })
}

/// The run whose checkpoints `dir` holds, if it holds a complete one (a manifest) of a run
/// that has not published: the run to resume.
fn resumable_run(dir: &Path) -> Result<Option<String>, EtlJobError> {
    let run = match std::fs::read_to_string(dir.join(RUN_FILE)) {
        Ok(run) => run.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EtlJobError::Checkpoints(dir.join(RUN_FILE), e)),
    };
    let entries = std::fs::read_dir(dir).map_err(|e| EtlJobError::Checkpoints(dir.into(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| EtlJobError::Checkpoints(dir.into(), e))?;
        let is_chk = entry.file_name().to_string_lossy().starts_with("chk-");
        if is_chk && entry.path().join("_manifest").is_file() && !run.is_empty() {
            return Ok(Some(run));
        }
    }
    Ok(None)
}

/// Names `run_id` as the run of the checkpoints in `dir`: written to a temporary file, fsynced,
/// renamed, then the directory fsynced, so a crash leaves the old name or the new one.
fn write_run_file(dir: &Path, run_id: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{RUN_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    std::io::Write::write_all(&mut file, run_id.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(RUN_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Removes the checkpoints in `dir` of runs that will not be resumed (a fresh run starts): the
/// run file first, so a crash part way leaves nothing that looks resumable.
fn remove_stale_checkpoints(dir: &Path) -> std::io::Result<()> {
    remove_run_file(dir)?;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("chk-") {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}

/// Forgets the run of the checkpoints in `dir` before it publishes, so a later run given the
/// same directory starts afresh instead of resuming a published run.
fn remove_run_file(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(RUN_FILE)) {
        Ok(()) => std::fs::File::open(dir)?.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The CSV files of `input`: the file itself, or the `*.csv` files of a directory (`is_dir`).
fn input_files(input: &Path, is_dir: bool) -> Result<FileSet, EtlJobError> {
    let set = if is_dir {
        FileSet::dir_with_extension(input, "csv")?
    } else {
        let label = input.display().to_string();
        FileSet::from_paths(&label, vec![input.to_path_buf()])
    };
    if set.files().is_empty() {
        return Err(EtlJobError::NoCsvFiles {
            dir: input.to_path_buf(),
        });
    }
    Ok(set)
}

/// Workers, parallelism, batch size and edge bounds of the job's pipeline.
fn pipeline_config(config: &EtlConfig) -> PipelineConfig {
    PipelineConfig {
        workers: config.workers,
        // Every stage after the parser runs `parallelism` instances, unless it sets its own.
        parallelism: config.parallelism.max(1),
        batch_rows: config.batch_rows.max(1),
        // Batches of 8192 orders carry ~0.5 MiB (with the raw text); four of them per edge
        // keep the stages overlapped while bounding memory.
        edge: EdgeConfig::default()
            .with_capacity(8)
            .with_max_bytes(2 << 20),
        edge_target_time: config
            .edge_target_time
            .unwrap_or(PipelineConfig::default().edge_target_time),
        ..PipelineConfig::default()
    }
}

/// The orders of `set`, parsed on `config.parallelism` instances; rows that break the rules
/// (see [`validate`]) go to the parse operator's dead letters with their file.
fn parse_and_validate(
    pipeline: &mut Pipeline,
    set: FileSet,
    config: &EtlConfig,
) -> Result<(ArrowStream, Arc<AtomicU64>), EtlJobError> {
    let validate_step = |file: &str, batch: RecordBatch, out: &mut Output<RecordBatch>| {
        let (valid, dead) = validate(&batch, Some(file))
            .map_err(|e| weir_runtime::OperatorError::user(format!("validate: {e}")))?;
        for d in dead {
            out.dead_letter(d);
        }
        out.emit(valid);
        Ok(())
    };
    Ok(csv_split_with(
        pipeline,
        "parse+validate",
        set,
        orders_csv_options().with_batch_rows(config.batch_rows.max(1)),
        SplitOptions {
            parallelism: config.parallelism.max(1),
            ..SplitOptions::default()
        },
        validate_step,
    )?)
}

/// The valid orders without the cancelled ones, with `amount_usd`, in [`clean_schema`].
fn clean_orders(parsed: ArrowStream) -> Result<ArrowStream, EtlJobError> {
    // `_line` and `_raw` served the dead letters of parse+validate; dropping them here (no copy)
    // keeps the filter from copying them.
    let orders_schema = orders_csv_schema();
    let orders: Vec<&str> = orders_schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let clean = parsed
        .project("orders", &orders)?
        .filter("drop_cancelled", |b| {
            let status = b
                .column_by_name("status")
                .ok_or_else(|| ArrowError::SchemaError("no column `status`".into()))?;
            neq(status, &StringArray::new_scalar("cancelled"))
        })
        .with_column(
            "amount_usd",
            Field::new("amount_usd", DataType::Float64, false),
            amount_usd,
        )?
        .project(
            "clean",
            &[
                "order_id",
                "ts",
                "customer_id",
                "country",
                "amount_usd",
                "status",
            ],
        )?;
    debug_assert!(clean
        .schema()
        .fields()
        .iter()
        .zip(clean_schema().fields())
        .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type()));
    Ok(clean)
}

/// The clean orders with `revenue_part` (USD of placed and shipped orders, else 0) and
/// `refunded_part` (USD of refunded ones, else 0), which both revenue tables sum.
fn revenue_parts(clean: ArrowStream) -> Result<ArrowStream, EtlJobError> {
    Ok(clean
        .with_column(
            "revenue_part",
            Field::new("revenue_part", DataType::Float64, false),
            |b| usd_where(b, &["placed", "shipped"]),
        )?
        .with_column(
            "refunded_part",
            Field::new("refunded_part", DataType::Float64, false),
            |b| usd_where(b, &["refunded"]),
        )?)
}

/// The three aggregates both revenue tables compute.
fn revenue_aggs() -> Vec<Agg> {
    vec![
        Agg::count("orders"),
        Agg::sum("revenue_part", "revenue_usd"),
        Agg::sum("refunded_part", "refunded_usd"),
    ]
}

/// Orders, revenue and refunds per country and event-time hour (one instance), and the late
/// rows in the clean schema; see the module docs.
fn revenue_by_country_hour(parts: ArrowStream) -> Result<(ArrowStream, ArrowStream), EtlJobError> {
    let (hourly, late) = parts
        .tumbling_window("ts", Duration::from_millis(HOUR_MS as u64))
        .start_column("hour")
        .parallelism(1)
        .aggregate_with_late(HOURLY_WINDOW, &["country"], revenue_aggs())?;
    let schema = clean_schema();
    let clean_columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let late = late.project("late_clean", &clean_columns)?;
    Ok((hourly, late))
}

/// Orders, revenue and refunds per country and UTC day, from the clean orders with their
/// revenue parts (one instance).
fn revenue_by_country_day(parts: ArrowStream) -> Result<ArrowStream, EtlJobError> {
    Ok(parts
        .with_column("day", Field::new("day", DataType::Date32, false), utc_day)?
        .project(
            "revenue_columns",
            &["country", "day", "revenue_part", "refunded_part"],
        )?
        .aggregate("revenue", &["country", "day"], revenue_aggs())?
        .parallelism(1))
}

/// The Parquet format of both tables.
fn parquet_format(config: &EtlConfig) -> PartFormat {
    PartFormat::Parquet {
        compression: config.compression,
        row_group_rows: 1 << 17,
    }
}

impl EtlJob {
    /// The run's id (its staging folder and, once published, each output's `_SUCCESS`).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Runs the job to the end of its input and publishes the outputs.
    ///
    /// # Errors
    /// As [`run_until`](Self::run_until).
    pub fn run(self) -> Result<(EtlSummary, RunReport), EtlJobError> {
        self.run_until(&EtlStop::new())
    }

    /// Runs the job until the end of its input or `stop`, whichever comes first, then publishes
    /// the outputs if the input was read to its end; see the module docs.
    ///
    /// # Errors
    /// [`check_input`]'s errors before anything is touched; [`EtlJobError::Publish`] if the
    /// outputs cannot be staged or published; [`EtlJobError::Run`]. After an error the previous
    /// outputs are as they were (or, if publishing failed after it committed, completed by the
    /// next start).
    pub fn run_until(self, stop: &EtlStop) -> Result<(EtlSummary, RunReport), EtlJobError> {
        check_input(&self.input, &self.out)?;
        let mut output = if self.resuming {
            JobOutput::resume(&self.out, &OUTPUTS, &self.run_id)?
        } else {
            JobOutput::begin_with_id(&self.out, &OUTPUTS, self.run_id.clone())?
        };
        if let Some(dir) = &self.checkpoint_dir {
            if !self.resuming {
                // A fresh run must never resume another run's checkpoint: killed before its
                // own first one completes, it would restore an older run's positions and parts.
                remove_stale_checkpoints(dir)
                    .map_err(|e| EtlJobError::Checkpoints(dir.clone(), e))?;
            }
            write_run_file(dir, &self.run_id)
                .map_err(|e| EtlJobError::Checkpoints(dir.join(RUN_FILE), e))?;
        }
        let start = Instant::now();
        let handle = self.pipeline.spawn()?;
        stop.attach(handle.stop_signal());
        let report = handle.join()?;
        let elapsed_s = start.elapsed().as_secs_f64();
        let mut parts = EtlParts {
            clean: self.clean.take_all(),
            revenue: self.revenue.take_all(),
            dead_letters: self.dead.take_all(),
            hourly: self.hourly.take_all(),
            late: self.late.take_all(),
        };
        let op = |name: &str| report.operators.iter().find(|o| o.name == name);
        let parse = op("parse+validate");
        let filter = op("drop_cancelled");
        // Every data record the parser saw: rows it emitted, plus its dead letters and skips.
        let rows_read = parse.map_or(0, |o| o.rows_out + o.dead_letters + o.skipped);
        let rows_filtered = filter.map_or(0, |o| o.rows_in - o.rows_out);
        let rows_written = parts.clean.iter().map(|s| s.rows).sum();
        let revenue_groups = parts.revenue.iter().map(|s| s.rows).sum();
        let hourly_groups = parts.hourly.iter().map(|s| s.rows).sum();
        let late = late_rows(&report, HOURLY_WINDOW);
        // Relaxed: the run has ended; the counter is only a statistic.
        let input_bytes = self.bytes_read.load(Ordering::Relaxed);
        let secs = elapsed_s.max(1e-9);
        let stopped = stop.is_stopped();
        let mut notes = Vec::new();
        if stopped {
            output.abort()?;
            notes.push(format!(
                "stopped: nothing published; {} keeps its previous outputs",
                self.out.display()
            ));
        } else {
            let [clean_schema, revenue_schema, hourly_schema, late_schema] = self.schemas;
            for (name, written, schema, note) in [
                (OUTPUTS[0], &mut parts.clean, clean_schema, true),
                (OUTPUTS[1], &mut parts.revenue, revenue_schema, true),
                (OUTPUTS[3], &mut parts.hourly, hourly_schema, true),
                (OUTPUTS[4], &mut parts.late, late_schema, false),
            ] {
                if written.iter().all(|s| s.files.is_empty()) {
                    let writer = PartWriter::create(
                        output.staging_dir(name),
                        schema,
                        PartWriterOptions::new(PartFormat::parquet(ParquetCompression::Snappy)),
                    )?;
                    written.push(writer.finish_with_empty_part()?);
                    if note {
                        notes.push(format!(
                            "{name}: no rows; an empty Parquet part holds the schema"
                        ));
                    }
                }
            }
            output.record(OUTPUTS[0], &parts.clean);
            output.record(OUTPUTS[1], &parts.revenue);
            output.record(OUTPUTS[2], &parts.dead_letters);
            output.record(OUTPUTS[3], &parts.hourly);
            output.record(OUTPUTS[4], &parts.late);
            if let Some(dir) = &self.checkpoint_dir {
                // A crash from here on starts the next run afresh: nothing is half published.
                remove_run_file(dir)
                    .map_err(|e| EtlJobError::Checkpoints(dir.join(RUN_FILE), e))?;
            }
            output.publish()?;
            for list in [
                &mut parts.clean,
                &mut parts.revenue,
                &mut parts.dead_letters,
                &mut parts.hourly,
                &mut parts.late,
            ] {
                published_paths(list, &self.out, &self.run_id);
            }
        }
        let summary = EtlSummary {
            rows_read,
            rows_written,
            rows_filtered,
            dead_letters: report.dead_letters,
            revenue_groups,
            hourly_groups,
            late_rows: late,
            input_bytes,
            elapsed_s,
            rows_per_s: rows_read as f64 / secs,
            mb_per_s: input_bytes as f64 / 1e6 / secs,
            run_id: self.run_id,
            stopped,
            published: !stopped,
            notes,
            parts,
        };
        Ok((summary, report))
    }
}

/// Points the part paths of a published run at their published place.
fn published_paths(list: &mut [WriteSummary], out: &Path, run_id: &str) {
    let staging = staging_root(out, run_id);
    for file in list.iter_mut().flat_map(|s| s.files.iter_mut()) {
        if let Ok(rest) = file.path.strip_prefix(&staging) {
            file.path = out.join(rest);
        }
    }
}

/// Builds the job and runs it to the end of its input; see [`EtlJob::run_until`].
///
/// # Errors
/// As [`build`] and [`EtlJob::run_until`].
pub fn run(config: &EtlConfig) -> Result<(EtlSummary, RunReport), EtlJobError> {
    run_until(config, &EtlStop::new())
}

/// Builds the job and runs it until the end of its input or `stop`.
///
/// # Errors
/// As [`build`] and [`EtlJob::run_until`]; the input is checked before anything else.
pub fn run_until(
    config: &EtlConfig,
    stop: &EtlStop,
) -> Result<(EtlSummary, RunReport), EtlJobError> {
    check_input(&config.input, &config.out)?;
    build(config)?.run_until(stop)
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
