//! The orders ETL job as a pipeline: CSV in, clean Parquet orders, revenue by country and day,
//! and NDJSON dead letters out.
//!
//! # Graph
//!
//! ```text
//! read (chunker) ─▶ parse+validate ×p ─▶ orders ×p ─▶ drop_cancelled ×p ─▶ amount_usd ×p ─▶ clean ×p ─┬─▶ orders_clean (Parquet ×w)
//!                     │ dead letters                                                                     └─▶ revenue_columns ×p ─▶ revenue (hash agg) ─▶ revenue_by_country_day (Parquet)
//!                     └──────────────────────────────▶ dead_letters (NDJSON)
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
//! Output directories are replaced: the job removes `orders_clean/`, `revenue_by_country_day/`
//! and `dead_letters/` under the output directory before it runs. Parts are committed when each
//! sink finishes, so a failed run leaves no part file that looks complete.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::compute::kernels::cmp::neq;
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use serde::Serialize;
use weir_runtime::{EdgeConfig, Output, Pipeline, PipelineConfig, RunError, RunReport, SinkHandle};

use super::orders::{column, usd_rate};
use super::{clean_schema, orders_csv_options, orders_csv_schema, validate};
use crate::columnar::{
    csv_split_with, Agg, DeadLetterSink, PartSinkOptions, PlanError, SplitOptions,
};
use crate::connector::{FileSet, ParquetCompression, PartFormat, ReadError, WriteSummary};

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
}

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
        }
    }
}

/// Errors of the ETL job.
#[derive(Debug, thiserror::Error)]
pub enum EtlJobError {
    /// The input could not be listed or opened.
    #[error("cannot read the input: {0}")]
    Read(#[from] ReadError),
    /// An output directory could not be cleared.
    #[error("cannot clear {path}: {source}")]
    Clear {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline could not be built (a bug: the schemas are fixed).
    #[error("cannot build the pipeline: {0}")]
    Plan(#[from] PlanError),
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
    /// Bytes of input read.
    pub input_bytes: u64,
    /// Wall-clock seconds of the run.
    pub elapsed_s: f64,
    /// `rows_read / elapsed_s`.
    pub rows_per_s: f64,
    /// Input megabytes (10⁶ bytes) per second.
    pub mb_per_s: f64,
    /// The part files written, per output.
    #[serde(skip)]
    pub parts: EtlParts,
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
}

/// The built job: its pipeline and the handles its results arrive on.
#[derive(Debug)]
pub struct EtlJob {
    /// The pipeline, ready to run.
    pub pipeline: Pipeline,
    clean: SinkHandle<WriteSummary>,
    revenue: SinkHandle<WriteSummary>,
    dead: SinkHandle<WriteSummary>,
    bytes_read: Arc<AtomicU64>,
}

/// The three output directories under `out`.
pub fn output_dirs(out: &Path) -> [PathBuf; 3] {
    [
        out.join("orders_clean"),
        out.join("revenue_by_country_day"),
        out.join("dead_letters"),
    ]
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

/// Removes the job's output directories under `out`.
///
/// # Errors
/// [`EtlJobError::Clear`].
pub fn clear_outputs(out: &Path) -> Result<(), EtlJobError> {
    for dir in output_dirs(out) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(EtlJobError::Clear { path: dir, source }),
        }
    }
    Ok(())
}

/// Builds the job's pipeline (does not touch the output directories).
///
/// # Errors
/// [`EtlJobError::Read`] if the input cannot be listed or opened.
pub fn build(config: &EtlConfig) -> Result<EtlJob, EtlJobError> {
    let is_dir = config.input.is_dir();
    let set = if is_dir {
        FileSet::dir(&config.input)?
    } else {
        let label = config.input.display().to_string();
        FileSet::from_paths(&label, vec![config.input.clone()])
    };
    if set.files().is_empty() {
        return Err(ReadError::NoFiles {
            location: config.input.display().to_string(),
        }
        .into());
    }
    let batch_rows = config.batch_rows.max(1);
    let mut pipeline = Pipeline::with_config(
        "etl",
        PipelineConfig {
            workers: config.workers,
            // Every stage after the parser runs `parallelism` instances, unless it sets its own.
            parallelism: config.parallelism.max(1),
            batch_rows,
            // Batches of 8192 orders carry ~0.5 MiB (with the raw text); four of them per edge
            // keep the stages overlapped while bounding memory.
            edge: EdgeConfig::default()
                .with_capacity(8)
                .with_max_bytes(2 << 20),
            ..PipelineConfig::default()
        },
    );
    let p = config.parallelism.max(1);
    let validate_step = |file: &str, batch: RecordBatch, out: &mut Output<RecordBatch>| {
        let (valid, dead) = validate(&batch, Some(file))
            .map_err(|e| weir_runtime::OperatorError::user(format!("validate: {e}")))?;
        for d in dead {
            out.dead_letter(d);
        }
        out.emit(valid);
        Ok(())
    };
    let (parsed, bytes_read) = csv_split_with(
        &mut pipeline,
        "parse+validate",
        set,
        orders_csv_options().with_batch_rows(batch_rows),
        SplitOptions {
            parallelism: p,
            ..SplitOptions::default()
        },
        validate_step,
    )?;
    let dead_letters = parsed.dead_letters();
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
    debug_assert!(crate::connector::same_fields(
        clean.schema(),
        &clean_schema()
    ));
    let [clean_dir, revenue_dir, dead_dir] = output_dirs(&config.out);
    let parquet = PartFormat::Parquet {
        compression: config.compression,
        row_group_rows: 1 << 17,
    };
    let clean_handle = clean.clone().write_parts(
        "orders_clean",
        clean_dir,
        PartSinkOptions::new(parquet.clone()).max_rows(config.part_rows),
        config.writers.max(1),
    );
    let revenue_handle = clean
        .with_column("day", Field::new("day", DataType::Date32, false), utc_day)?
        .with_column(
            "revenue_part",
            Field::new("revenue_part", DataType::Float64, false),
            |b| usd_where(b, &["placed", "shipped"]),
        )?
        .with_column(
            "refunded_part",
            Field::new("refunded_part", DataType::Float64, false),
            |b| usd_where(b, &["refunded"]),
        )?
        .project(
            "revenue_columns",
            &["country", "day", "revenue_part", "refunded_part"],
        )?
        .aggregate(
            "revenue",
            &["country", "day"],
            vec![
                Agg::count("orders"),
                Agg::sum("revenue_part", "revenue_usd"),
                Agg::sum("refunded_part", "refunded_usd"),
            ],
        )?
        .parallelism(1)
        .write_parts(
            "revenue_by_country_day",
            revenue_dir,
            PartSinkOptions::new(parquet),
            1,
        );
    let dead_handle = dead_letters.sink(
        "dead_letters",
        DeadLetterSink::ndjson(dead_dir).keep_file(is_dir),
    );
    Ok(EtlJob {
        pipeline,
        clean: clean_handle,
        revenue: revenue_handle,
        dead: dead_handle,
        bytes_read,
    })
}

impl EtlJob {
    /// Runs the job and sums up what it did from the report and the sinks' summaries.
    ///
    /// # Errors
    /// [`EtlJobError::Run`].
    pub fn run(self) -> Result<(EtlSummary, RunReport), EtlJobError> {
        let start = Instant::now();
        let report = self.pipeline.run()?;
        let elapsed_s = start.elapsed().as_secs_f64();
        let parts = EtlParts {
            clean: self.clean.take_all(),
            revenue: self.revenue.take_all(),
            dead_letters: self.dead.take_all(),
        };
        let op = |name: &str| report.operators.iter().find(|o| o.name == name);
        let parse = op("parse+validate");
        let filter = op("drop_cancelled");
        // Every data record the parser saw: rows it emitted, plus its dead letters and skips.
        let rows_read = parse.map_or(0, |o| o.rows_out + o.dead_letters + o.skipped);
        let rows_filtered = filter.map_or(0, |o| o.rows_in - o.rows_out);
        let rows_written = parts.clean.iter().map(|s| s.rows).sum();
        let revenue_groups = parts.revenue.iter().map(|s| s.rows).sum();
        // Relaxed: the run has ended; the counter is only a statistic.
        let input_bytes = self.bytes_read.load(Ordering::Relaxed);
        let secs = elapsed_s.max(1e-9);
        let summary = EtlSummary {
            rows_read,
            rows_written,
            rows_filtered,
            dead_letters: report.dead_letters,
            revenue_groups,
            input_bytes,
            elapsed_s,
            rows_per_s: rows_read as f64 / secs,
            mb_per_s: input_bytes as f64 / 1e6 / secs,
            parts,
        };
        Ok((summary, report))
    }
}

/// Clears the outputs under `config.out`, builds the job and runs it.
///
/// # Errors
/// As [`clear_outputs`], [`build`] and [`EtlJob::run`].
pub fn run(config: &EtlConfig) -> Result<(EtlSummary, RunReport), EtlJobError> {
    clear_outputs(&config.out)?;
    build(config)?.run()
}

#[cfg(test)]
#[path = "job_tests.rs"]
mod tests;
