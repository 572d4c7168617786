//! Sources pre-allocate a batch only up to the edges' byte bound, and a batch that grows past
//! that holds exactly its rows, so its bytes are what a pre-allocated batch's would be.

use weir_operators::prelude::*;

#[test]
fn an_iter_source_batch_capped_by_the_byte_bound_holds_exactly_its_rows() {
    let mut p = Pipeline::with_config(
        "prealloc",
        PipelineConfig {
            batch_rows: 100,
            // Less than one batch: every batch is oversize, pre-allocated for 62 rows.
            edge: EdgeConfig::default().with_max_bytes(62 * 8),
            ..PipelineConfig::default()
        },
    );
    let n = p
        .source("src", IterSource::new((0..1_000u64).filter(|_| true)))
        .sink("sink", Count::new());
    let report = p.run().expect("the run succeeds");
    assert_eq!(n.take(), Some(1_000));
    let src = report
        .operators
        .iter()
        .find(|o| o.name == "src")
        .expect("the source");
    assert_eq!(src.instances[0].bytes_out, 1_000 * 8);
}
