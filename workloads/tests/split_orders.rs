//! The parallel CSV split source against the sequential reader, on generated orders (with their
//! malformed rows).

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{SchemaRef, UInt64Type};
use weir_operators::columnar::{csv_split, ArrowStream, SplitOptions};
use weir_operators::connector::FileSet;
use weir_operators::prelude::*;
use weir_runtime::{InputPort, Sink, SinkHandle};

#[derive(Default)]
struct Batches(Vec<RecordBatch>);

impl Sink for Batches {
    type Input = RecordBatch;
    type Output = Vec<RecordBatch>;
    fn on_batch(&mut self, _: InputPort, b: RecordBatch) -> Result<(), OperatorError> {
        self.0.push(b);
        Ok(())
    }
    fn finish(&mut self) -> Result<Vec<RecordBatch>, OperatorError> {
        Ok(std::mem::take(&mut self.0))
    }
}

fn collect(stream: ArrowStream) -> (SchemaRef, SinkHandle<Vec<RecordBatch>>) {
    let schema = stream.schema().clone();
    (
        schema,
        stream.into_inner().sink("collect", Batches::default()),
    )
}

fn all(schema: &SchemaRef, handle: &SinkHandle<Vec<RecordBatch>>) -> RecordBatch {
    let batches: Vec<RecordBatch> = handle.take_all().into_iter().flatten().collect();
    concat_batches(schema, &batches).expect("batches of the stream's schema")
}

/// Parallel CSV parsing gives the rows and dead letters one sequential reader gives.
#[test]
fn split_csv_equals_the_sequential_reader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("orders.csv");
    weir_workloads::etl::generate_orders_csv(&path, 5_000, 3).expect("writable");
    let opts = weir_workloads::etl::orders_csv_options().with_batch_rows(97);

    let mut want_lines = Vec::new();
    let mut want_dead = Vec::new();
    for b in weir_operators::connector::CsvReader::from_path(&path, opts.clone()).expect("opens") {
        let b = b.expect("dead letters, no errors");
        let lines = b.batch.column_by_name("_line").expect("line column");
        want_lines.extend(lines.as_primitive::<UInt64Type>().values().iter().copied());
        want_dead.extend(b.dead_letters);
    }

    let mut p = Pipeline::new("split");
    let set = FileSet::from_paths("orders", vec![path.clone()]);
    let split = SplitOptions {
        parallelism: 3,
        target_bytes: 3000,
        ..SplitOptions::default()
    };
    let (stream, bytes) = csv_split(&mut p, "parse", set, opts, split).expect("declared schema");
    let dead = stream.dead_letters().collect("dead");
    let (schema, out) = collect(stream);
    p.run().expect("runs");
    let got = all(&schema, &out);
    let mut lines: Vec<u64> = got
        .column_by_name("_line")
        .expect("line column")
        .as_primitive::<UInt64Type>()
        .values()
        .to_vec();
    lines.sort_unstable();
    assert_eq!(lines, want_lines);
    let mut dead = dead.take().expect("collected");
    dead.sort_by_key(|d| d.line);
    assert_eq!(dead, want_dead);
    let size = std::fs::metadata(&path).expect("exists").len();
    assert_eq!(bytes.load(std::sync::atomic::Ordering::Relaxed), size);
    let ids = got
        .column_by_name("order_id")
        .expect("ids")
        .as_primitive::<UInt64Type>();
    assert!(ids.values().iter().all(|&i| i >= 10_000_000));
}
