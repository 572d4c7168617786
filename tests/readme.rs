//! The README's "First file pipeline" is `examples/file_pipeline.rs` verbatim, and it computes
//! what a plain reading of the same CSV computes.

use std::collections::BTreeMap;
use std::path::Path;

use weir::arrow::array::{Array, AsArray, RecordBatch};
use weir::arrow::datatypes::{Int64Type, UInt64Type};
use weir::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

mod common;

#[path = "../examples/file_pipeline.rs"]
#[allow(dead_code)]
mod file_pipeline;

const EXAMPLE: &str = include_str!("../examples/file_pipeline.rs");
const README: &str = include_str!("../README.md");

use common::between;

#[test]
fn the_readme_listing_is_the_example() {
    let example = between(EXAMPLE, "// README: begin\n", "// README: end");
    let section = between(README, "## First file pipeline", "\n## ");
    let listing = between(section, "```rust\n", "```\n");
    assert_eq!(
        listing, example,
        "copy the example's marked lines into the README"
    );
}

/// Per country: (orders, items, revenue in cents), and the bad rows, read plainly.
fn reference(csv: &str) -> (BTreeMap<String, (u64, i64, i64)>, u64) {
    let mut groups = BTreeMap::new();
    let mut bad = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        match (f[2].parse::<i64>(), f[3].parse::<i64>()) {
            (Ok(q), Ok(c)) if q > 0 => {
                let e = groups.entry(f[0].to_owned()).or_insert((0, 0, 0));
                e.0 += 1;
                e.1 += q;
                e.2 += q * c;
            }
            (Ok(_), Ok(_)) => {}
            _ => bad += 1,
        }
    }
    (groups, bad)
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).expect("the part exists");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .expect("a Parquet file")
        .collect::<Result<_, _>>()
        .expect("readable batches")
}

#[test]
fn the_first_file_pipeline_writes_what_a_plain_reading_computes() {
    let dir = std::env::temp_dir().join(format!("weir-readme-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let input = dir.join("sales.csv");
    file_pipeline::generate_sales(&input, 5_000).expect("sales written");
    let out = dir.join("out");

    let file_pipeline::Sales {
        pipeline,
        written,
        bad_rows,
    } = file_pipeline::sales_by_country(&input, &out).expect("a plan");
    pipeline.run().expect("the run");
    let written = written.take().expect("a summary");
    let (want, want_bad) = reference(&std::fs::read_to_string(&input).expect("the input"));
    assert_eq!(bad_rows.take(), Some(want_bad));
    assert_eq!(want_bad, 5, "every 1000th row is malformed");
    assert_eq!(written.rows, want.len() as u64);

    let mut got = BTreeMap::new();
    for part in &written.files {
        for b in read_parquet(&part.path) {
            let (country, orders) = (b.column(0).as_string::<i32>(), b.column(1));
            let (items, revenue) = (b.column(2), b.column(3));
            for i in 0..b.num_rows() {
                got.insert(
                    country.value(i).to_owned(),
                    (
                        orders.as_primitive::<UInt64Type>().value(i),
                        items.as_primitive::<Int64Type>().value(i),
                        revenue.as_primitive::<Int64Type>().value(i),
                    ),
                );
            }
            assert_eq!(revenue.null_count(), 0);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, want);
}
