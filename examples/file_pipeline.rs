//! A first file pipeline: a CSV file → Arrow operators (filter, a computed column, a keyed
//! aggregation) → Parquet, with malformed rows counted as dead letters. The README's "First file
//! pipeline" shows [`sales_by_country`] as it is here (a test keeps the two the same).
//!
//! ```text
//! cargo run --release --example file_pipeline                     # on 100 000 generated sales
//! cargo run --release --example file_pipeline -- --input sales.csv --out out/sales
//! ```
//!
//! Ctrl-C or SIGTERM stops the source; the pipeline drains, prints its report, and the exit
//! code (130 / 143) says it was stopped.

// The listing's fields are the README's to explain (it keeps them short).
#![allow(missing_docs)]

// README: begin
use std::{path::Path, sync::Arc};
use weir::arrow::array::Int64Array;
use weir::arrow::compute::kernels::{cmp::gt, numeric::mul};
use weir::arrow::datatypes::{DataType, Field, Schema};
use weir::operators::columnar::{Agg, ArrowStream, PartSinkOptions, ReaderSource};
use weir::operators::connector::{
    BadRecordPolicy, CsvOptions, ParquetCompression, PartFormat, WriteSummary,
};
use weir::prelude::*;

/// The pipeline, and what it will have written and rejected once it has run.
pub struct Sales {
    pub pipeline: Pipeline,
    pub written: SinkHandle<WriteSummary>,
    pub bad_rows: SinkHandle<u64>,
}

/// Reads `sales.csv` (`country,item,quantity,cents`), keeps the rows that sold something, and
/// writes orders, items and revenue (in cents) per country as Parquet under `out`. Rows that do
/// not fit the schema go to the dead letters, counted.
pub fn sales_by_country(input: &Path, out: &Path) -> Result<Sales, Box<dyn std::error::Error>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("country", DataType::Utf8, false),
        Field::new("item", DataType::Utf8, false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("cents", DataType::Int64, false),
    ]));
    let csv = CsvOptions::default()
        .with_schema(schema)
        .with_bad_records(BadRecordPolicy::DeadLetter);

    let mut p = Pipeline::new("sales");
    let sales = ArrowStream::source(&mut p, "sales.csv", ReaderSource::csv(input, csv)?);
    let bad_rows = sales.dead_letters().count("bad_rows");
    let parquet = PartSinkOptions::new(PartFormat::parquet(ParquetCompression::Snappy));
    let written = sales
        .filter("sold", |b| gt(b.column(2), &Int64Array::new_scalar(0)))
        .with_column(
            "revenue",
            Field::new("revenue", DataType::Int64, false),
            |b| mul(b.column(2), b.column(3)), // overflow is an error, not a wrap
        )?
        .aggregate(
            "by_country",
            &["country"],
            vec![
                Agg::count("orders"),
                Agg::sum("quantity", "items"), // Int64 in, Int64 out
                Agg::sum("revenue", "revenue_cents"),
            ],
        )?
        .write_parts("sales_by_country", out, parquet, 1);
    Ok(Sales {
        pipeline: p,
        written,
        bad_rows,
    })
}
// README: end

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(about = "CSV → Arrow operators → Parquet: sales per country")]
struct Args {
    /// A sales CSV (`country,item,quantity,cents`); default: generate `--records` sales.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Where the Parquet parts go.
    #[arg(long, default_value = "./out/sales_by_country")]
    out: PathBuf,
    /// Sales to generate when no `--input` is given.
    #[arg(long, visible_alias = "rows", default_value_t = 100_000)]
    records: u64,
}

/// Writes `rows` generated sales (every 1000th with a malformed quantity) to `path`.
pub fn generate_sales(path: &Path, rows: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("csv.partial");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    writeln!(w, "country,item,quantity,cents")?;
    for i in 0..rows {
        let country = ["DE", "FR", "JP", "US"][(i % 4) as usize];
        if i % 1000 == 999 {
            writeln!(w, "{country},item-{},lots,{}", i % 37, 100 + i % 900)?;
        } else {
            writeln!(w, "{country},item-{},{},{}", i % 37, i % 5, 100 + i % 900)?;
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(tmp, path)
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    let interrupts = weir::interrupt::install()?;
    let input = match args.input {
        Some(input) => input,
        None => {
            let dir = args.out.join("..").join("input");
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("sales.csv");
            generate_sales(&path, args.records)?;
            path
        }
    };
    let Sales {
        pipeline,
        written,
        bad_rows,
    } = sales_by_country(&input, &args.out)?;
    let (report, stopped_by) = interrupts.run(pipeline)?;
    println!("{report}");
    let written = written.take().unwrap_or_default();
    println!(
        "{} rows in {} Parquet part(s) under {}; {} bad row(s)",
        written.rows,
        written.files.len(),
        args.out.display(),
        bad_rows.take().unwrap_or_default()
    );
    if let Some(signal) = stopped_by {
        println!("stopped by {signal}: the parts cover the rows read until then");
    }
    Ok(weir::interrupt::exit_code(stopped_by))
}
