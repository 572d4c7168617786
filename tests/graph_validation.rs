//! Graph validation: an invalid pipeline is refused before anything runs, with the `GraphError`
//! variant that names the problem and the operator (or pipeline) at fault; `run()` reports what
//! `validate()` finds. The DOT export shows every operator and every connection.

use weir::prelude::*;
use weir::{GraphError, RunError};

// ---------------------------------------------------------------------------------------------
// Graph validation

fn graph_error(p: Pipeline) -> GraphError {
    let from_validate = p.validate().expect_err("invalid graph");
    match p.run() {
        Err(RunError::Graph(e)) => {
            assert_eq!(e, from_validate, "run() reports what validate() found");
            e
        }
        other => panic!("expected a graph error, got {other:?}"),
    }
}

#[test]
fn an_empty_pipeline_has_no_source() {
    let e = graph_error(Pipeline::new("nothing"));
    assert_eq!(
        e,
        GraphError::NoSource {
            pipeline: "nothing".into()
        }
    );
    assert!(e.to_string().contains("`nothing`"), "{e}");
}

#[test]
fn a_pipeline_without_a_sink_is_refused() {
    let mut p = Pipeline::new("sinkless");
    let _s = p.source("gen", Generator::new(10, |i| i)).map("m", |x| x);
    let e = graph_error(p);
    assert_eq!(
        e,
        GraphError::NoSink {
            pipeline: "sinkless".into()
        }
    );
    assert!(e.to_string().contains("`sinkless`"), "{e}");
}

#[test]
fn an_unconsumed_source_is_named() {
    let mut p = Pipeline::new("orphan");
    let _n = p.source("gen", Generator::new(10, |i| i)).count("count");
    let _orphan = p.source("lonely", Generator::new(10, |i| i));
    let e = graph_error(p);
    assert_eq!(
        e,
        GraphError::Unconsumed {
            operator: "lonely".into()
        }
    );
    assert!(e.to_string().contains("`lonely`"), "{e}");
}

#[test]
fn an_unconsumed_branch_is_named() {
    let mut p = Pipeline::new("dangling");
    let gen = p.source("gen", Generator::new(10, |i| i));
    let _dangling = gen.clone().map("half", |x| x / 2);
    let _n = gen.count("count");
    let e = graph_error(p);
    assert_eq!(
        e,
        GraphError::Unconsumed {
            operator: "half".into()
        }
    );
}

#[test]
fn duplicate_names_are_refused() {
    let mut p = Pipeline::new("dups");
    let _n = p
        .source("same", Generator::new(10, |i| i))
        .map("same", |x| x)
        .count("count");
    let e = graph_error(p);
    assert_eq!(
        e,
        GraphError::DuplicateName {
            name: "same".into()
        }
    );
    assert!(e.to_string().contains("`same`"), "{e}");
}

#[test]
fn the_dot_export_shows_every_operator_and_connection() {
    let mut p = Pipeline::new("dot");
    let a = p.source("alpha", Generator::new(10, |i| i));
    let b = p.source("beta \"quoted\"", Generator::new(10, |i| i));
    let (ia, ib) = (a.node().index(), b.node().index());
    let u = a.union("merge", [b]);
    let iu = u.node().index();
    let sq = u.rebalance().map("square", |x| x * x).parallelism(2);
    let isq = sq.node().index();
    let _c1 = sq.clone().count("count");
    let _c2 = sq.collect("collect");
    let dot = p.to_dot();
    for name in [
        "alpha",
        "beta \\\"quoted\\\"",
        "merge",
        "square",
        "count",
        "collect",
    ] {
        assert!(dot.contains(name), "`{name}` missing from\n{dot}");
    }
    // Sinks are the next nodes after `square`, in the order they were added.
    let expected = [
        (ia, iu),
        (ib, iu),
        (iu, isq),
        (isq, isq + 1),
        (isq, isq + 2),
    ];
    for (from, to) in expected {
        assert!(
            dot.contains(&format!("n{from} -> n{to}")),
            "n{from} -> n{to} in\n{dot}"
        );
    }
    assert_eq!(
        dot.matches(" -> ").count(),
        expected.len(),
        "one edge per connection:\n{dot}"
    );
    assert!(dot.contains("rebalance"), "{dot}");
    assert!(p.validate().is_ok());
}
