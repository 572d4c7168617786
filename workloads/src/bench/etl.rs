//! CSV → Parquet: weir's parallel pipeline against a one-thread program using the same
//! libraries (arrow-csv's reader feeding parquet's `ArrowWriter`), on the same file.
//!
//! Both read the orders CSV with the declared schema (`order_id u64, ts timestamp(ms),
//! customer_id u64, country utf8, amount f64, currency utf8, status utf8`) and write Snappy
//! Parquet with the same row-group size. The file is generated without malformed rows, since
//! the baseline's reader stops at the first bad record (weir's would dead-letter it). Both
//! write into fresh directories and report the rows they wrote, which must agree.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::etl::orders_csv_schema;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use weir_operators::columnar::{csv_split, PartSinkOptions, SplitOptions};
use weir_operators::connector::{CsvOptions, FileSet, ParquetCompression, PartFormat};
use weir_operators::prelude::*;

pub use crate::process_cpu_time;

/// Rows per row group in both programs.
pub const ROW_GROUP_ROWS: usize = 1 << 17;

/// The orders schema as arrow-csv reads it: the same types, with the timestamp's zone written as
/// an offset (arrow resolves `+00:00` without a time-zone database).
pub fn baseline_schema() -> SchemaRef {
    let fields: Vec<Field> = orders_csv_schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(unit, _) => f
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(*unit, Some("+00:00".into()))),
            _ => f.as_ref().clone(),
        })
        .collect();
    debug_assert!(fields.iter().any(
        |f| f.data_type() == &DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
    ));
    Arc::new(Schema::new(fields))
}

/// The baseline: one thread, arrow-csv → `ArrowWriter`, into `out/part-0.parquet`.
///
/// # Errors
/// I/O, CSV or Parquet errors.
pub fn baseline(
    input: &Path,
    out: &Path,
    batch_rows: usize,
) -> Result<(u64, Duration), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let start = Instant::now();
    let schema = baseline_schema();
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_batch_size(batch_rows)
        .build(File::open(input)?)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(
        File::create(out.join("part-0.parquet"))?,
        schema,
        Some(props),
    )?;
    let mut rows = 0u64;
    for batch in reader {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    writer.into_inner()?.sync_all()?;
    Ok((rows, start.elapsed()))
}

/// weir: the chunking reader, `parallelism` parse instances, `writers` Parquet part writers.
///
/// # Errors
/// A failed run.
pub fn weir(
    input: &Path,
    out: &Path,
    batch_rows: usize,
    parallelism: usize,
    writers: usize,
) -> Result<(u64, Duration, RunReport), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut p = Pipeline::with_config(
        "csv-to-parquet",
        PipelineConfig {
            batch_rows,
            ..PipelineConfig::default()
        },
    );
    let set = FileSet::from_paths("input", vec![input.to_owned()]);
    let opts = CsvOptions::default()
        .with_schema(orders_csv_schema())
        .with_batch_rows(batch_rows);
    let split = SplitOptions {
        parallelism,
        ..SplitOptions::default()
    };
    let (stream, _) = csv_split(&mut p, "parse", set, opts, split)?;
    let format = PartFormat::Parquet {
        compression: ParquetCompression::Snappy,
        row_group_rows: ROW_GROUP_ROWS,
    };
    let written = stream.write_parts("write", out, PartSinkOptions::new(format), writers);
    let report = weir::interrupt::run(p)?;
    let rows = written.take_all().iter().map(|s| s.rows).sum();
    Ok((rows, start.elapsed(), report))
}
