//! Reactive Streams rules about demand itself, for batched credit: a `request(0)`-style
//! configuration (zero slots, zero bytes, zero parallelism) is an error, never a panic (rule
//! 3.9); zero sizes in the pipeline's own settings are clamped; huge bounds saturate rather than
//! overflow (rule 3.17). The same rules on a bare edge are the runtime's
//! (`runtime/tests/reactive_streams.rs`).

mod common;

use common::{op, pipeline, run_guarded};
use weir::prelude::*;
use weir::GraphError;

// ---------------------------------------------------------------------------------------------
// `request(0)` equivalents are errors, never panics (rule 3.9)

fn gen_count(config: PipelineConfig, edge_cfg: Option<EdgeConfig>) -> (Pipeline, SinkHandle<u64>) {
    let mut p = Pipeline::with_config("zero", config);
    let mut s = p.source("gen", Generator::new(10, |i| i));
    if let Some(cfg) = edge_cfg {
        s = s.with_edge(cfg);
    }
    let n = s.count("count");
    (p, n)
}

fn assert_invalid_config(result: Result<RunReport, RunError>, operator: &str, field: &str) {
    let err = result.expect_err("an invalid configuration must not run");
    let RunError::Graph(e) = &err else {
        panic!("expected a graph error, got {err:?}")
    };
    assert!(
        matches!(e, GraphError::InvalidConfig { operator: o, .. } if o == operator),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains(operator) && msg.contains(field), "{msg}");
}

#[test]
fn a_zero_capacity_edge_is_a_graph_error() {
    let cfg = EdgeConfig::default().with_capacity(0);
    assert!(cfg.validate().is_err());
    let (p, _) = gen_count(common::config(4), Some(cfg));
    assert!(matches!(
        p.validate(),
        Err(GraphError::InvalidConfig { .. })
    ));
    assert_invalid_config(p.run(), "gen", "capacity");
}

#[test]
fn a_zero_byte_edge_is_a_graph_error() {
    let cfg = EdgeConfig::default().with_max_bytes(0);
    assert!(cfg.validate().is_err());
    let (p, _) = gen_count(common::config(4), Some(cfg));
    assert_invalid_config(p.run(), "gen", "max_bytes");
}

#[test]
fn a_zero_capacity_default_edge_is_an_error_not_a_panic() {
    let config = PipelineConfig {
        edge: EdgeConfig::default().with_capacity(0),
        ..common::config(4)
    };
    let (p, _) = gen_count(config, None);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.run()));
    let result = result.expect("run() must return an error, not panic");
    assert!(
        matches!(
            result,
            Err(RunError::Graph(GraphError::InvalidConfig { .. }))
        ),
        "{result:?}"
    );
}

#[test]
fn zero_parallelism_on_an_operator_is_a_graph_error() {
    let mut p = pipeline("par0", 4);
    let _n = p
        .source("gen", Generator::new(10, |i| i))
        .map("m", |x| x)
        .parallelism(0)
        .count("count");
    assert_invalid_config(p.run(), "m", "parallelism");
}

#[test]
fn zero_sizes_in_the_pipeline_config_are_clamped_and_run() {
    let config = PipelineConfig {
        workers: Some(0),
        parallelism: 0,
        batch_rows: 0,
        yield_every: 0,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("clamped", config);
    let out = p.source("gen", Generator::new(10, |i| i)).collect("all");
    let report = run_guarded(p).unwrap();
    assert_eq!(out.take(), Some((0..10).collect::<Vec<_>>()));
    let gen = op(&report, "gen");
    assert_eq!(gen.parallelism, 1, "parallelism 0 runs one instance");
    assert_eq!(
        gen.instances[0].batches_out, 10,
        "batch_rows 0 is one row per batch"
    );
}

// ---------------------------------------------------------------------------------------------
// Saturating demand (rule 3.17): huge bounds never overflow

fn huge_edges_pipeline(capacity: usize) -> (Pipeline, SinkHandle<u64>) {
    let huge = EdgeConfig::default()
        .with_capacity(capacity)
        .with_max_bytes(usize::MAX / 2);
    let mut p = pipeline("huge", 64);
    let n = p
        .source("gen", Generator::new(1_000, |i| i))
        .with_edge(huge)
        .map("a", |x| x + 1)
        .with_edge(huge)
        .map("b", |x| x * 2)
        .with_edge(huge)
        .count("count");
    (p, n)
}

#[test]
fn huge_byte_bounds_in_a_pipeline_report_saturates() {
    let (p, n) = huge_edges_pipeline(4);
    let report = run_guarded(p).expect("the run succeeds");
    assert_eq!(n.take(), Some(1_000));
    assert_eq!(report.edge_bytes_bound, u64::MAX, "the sum saturates");
    for e in &report.edges {
        assert_eq!(e.max_bytes, usize::MAX / 2);
        assert!(e.peak_bytes <= 4 * 64 * 8, "{e:?}");
    }
}

#[test]
fn a_huge_edge_capacity_is_not_a_panic() {
    let (p, n) = huge_edges_pipeline(usize::MAX / 2);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.run()));
    // Slots are allocated up front, so a capacity past the limit is refused before anything runs,
    // naming the operator the first such edge leaves.
    match result.expect("run() must not panic on a huge capacity") {
        Err(RunError::Graph(GraphError::InvalidConfig { operator, reason })) => {
            assert_eq!(operator, "gen");
            assert!(reason.contains("edge capacity"), "{reason}");
            assert!(reason.contains("exceeds the limit"), "{reason}");
        }
        other => panic!("expected an invalid edge configuration, got {other:?}"),
    }
    assert_eq!(n.take(), None, "nothing ran");
}
