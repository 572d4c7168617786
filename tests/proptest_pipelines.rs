//! Random pipelines against a plain-iterator reference.
//!
//! A random chain of row-wise operators over `u64` (a trunk, then a fan-out into 1–3 branches,
//! each with its own chain and a collecting sink) runs under random batch sizes, edge capacities,
//! byte bounds small enough to force the oversize path, and linger. Every sink must receive
//! exactly what the same chain computes on a `Vec`, in order (single-instance pipelines preserve
//! order), and the report must count the same rows.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{op, run_guarded};
use proptest::prelude::*;
use weir::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// `x * a + b` (wrapping).
    Map(u64, u64),
    /// Keep `x % m != r`.
    Filter(u64, u64),
    /// `Some(x / m)` if `x % m == 0`, else drop.
    FilterMap(u64),
    /// `x % k` copies: `x, x + 1, ..` (0 to k - 1 rows per row).
    FlatMap(u64),
    /// Counts the rows it sees.
    Inspect,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1u64..5, 0u64..100).prop_map(|(a, b)| Op::Map(a, b)),
        (2u64..5, 0u64..4).prop_map(|(m, r)| Op::Filter(m, r % m)),
        (1u64..4).prop_map(Op::FilterMap),
        (1u64..4).prop_map(Op::FlatMap),
        Just(Op::Inspect),
    ]
}

/// The reference: the same operator on a plain vector.
fn apply_ref(rows: Vec<u64>, op: &Op) -> Vec<u64> {
    match *op {
        Op::Map(a, b) => rows
            .into_iter()
            .map(|x| x.wrapping_mul(a).wrapping_add(b))
            .collect(),
        Op::Filter(m, r) => rows.into_iter().filter(|x| x % m != r).collect(),
        Op::FilterMap(m) => rows
            .into_iter()
            .filter(|x| x % m == 0)
            .map(|x| x / m)
            .collect(),
        Op::FlatMap(k) => rows
            .into_iter()
            .flat_map(|x| (0..x % k).map(move |j| x.wrapping_add(j)))
            .collect(),
        Op::Inspect => rows,
    }
}

/// The same operator in the pipeline. Inspect counters are returned with the rows they must see.
fn apply(s: Stream<u64>, op: &Op, name: String, seen: &mut Vec<Arc<AtomicU64>>) -> Stream<u64> {
    match *op {
        Op::Map(a, b) => s.map(name, move |x| x.wrapping_mul(a).wrapping_add(b)),
        Op::Filter(m, r) => s.filter(name, move |x| x % m != r),
        Op::FilterMap(m) => s.filter_map(name, move |x| (x % m == 0).then(|| x / m)),
        Op::FlatMap(k) => s.flat_map(name, move |x| (0..x % k).map(move |j| x.wrapping_add(j))),
        Op::Inspect => {
            let n = Arc::new(AtomicU64::new(0));
            seen.push(n.clone());
            s.inspect(name, move |_| {
                n.fetch_add(1, SeqCst);
            })
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    input: Vec<u64>,
    trunk: Vec<Op>,
    branches: Vec<Vec<Op>>,
    batch_rows: usize,
    capacity: usize,
    max_bytes: usize,
    linger_ms: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let ops = || proptest::collection::vec(op_strategy(), 0..4);
    (
        proptest::collection::vec(0u64..1_000, 0..400),
        ops(),
        proptest::collection::vec(ops(), 1..=3),
        1usize..=300,
        1usize..=8,
        prop_oneof![8usize..64, 64usize..=4096],
        prop_oneof![Just(0u64), Just(1u64)],
    )
        .prop_map(
            |(input, trunk, branches, batch_rows, capacity, max_bytes, linger_ms)| Case {
                input,
                trunk,
                branches,
                batch_rows,
                capacity,
                max_bytes,
                linger_ms,
            },
        )
}

/// Rows each inspect in `ops` sees when `rows` enter the chain, in order.
fn ref_chain(mut rows: Vec<u64>, ops: &[Op], inspects: &mut Vec<u64>) -> Vec<u64> {
    for op in ops {
        if let Op::Inspect = op {
            inspects.push(rows.len() as u64);
        }
        rows = apply_ref(rows, op);
    }
    rows
}

fn check(case: Case) {
    // The reference.
    let mut expected_inspects = Vec::new();
    let trunk_out = ref_chain(case.input.clone(), &case.trunk, &mut expected_inspects);
    let expected: Vec<Vec<u64>> = case
        .branches
        .iter()
        .map(|ops| ref_chain(trunk_out.clone(), ops, &mut expected_inspects))
        .collect();

    // The pipeline.
    let edge_cfg = EdgeConfig::default()
        .with_capacity(case.capacity)
        .with_max_bytes(case.max_bytes);
    let config = PipelineConfig {
        workers: Some(2),
        batch_rows: case.batch_rows,
        linger: Duration::from_millis(case.linger_ms),
        edge: edge_cfg,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("prop", config);
    let mut seen = Vec::new();
    let mut s = p.source("src", IterSource::new(case.input.clone()));
    for (i, op) in case.trunk.iter().enumerate() {
        s = apply(s, op, format!("t{i}"), &mut seen);
    }
    let n = case.branches.len();
    let mut trunk = Some(s);
    let mut sinks = Vec::new();
    for (b, ops) in case.branches.iter().enumerate() {
        // Fan-out: clone the trunk for every branch but the last, which takes it.
        let mut branch = if b + 1 < n {
            trunk.clone().expect("trunk kept until the last branch")
        } else {
            trunk.take().expect("trunk kept until the last branch")
        };
        for (i, op) in ops.iter().enumerate() {
            branch = apply(branch, op, format!("b{b}o{i}"), &mut seen);
        }
        sinks.push(branch.collect(format!("sink{b}")));
    }
    let report = run_guarded(p).unwrap_or_else(|e| panic!("{e}\n{case:?}"));

    for (b, (sink, want)) in sinks.iter().zip(&expected).enumerate() {
        let got = sink.take().expect("sink result");
        assert_eq!(&got, want, "branch {b} of {case:?}");
        assert_eq!(op(&report, &format!("sink{b}")).rows_in, want.len() as u64);
    }
    let seen: Vec<u64> = seen.iter().map(|c| c.load(SeqCst)).collect();
    assert_eq!(seen, expected_inspects, "rows seen by each inspect");
    assert_eq!(op(&report, "src").rows_out, case.input.len() as u64);
    assert_eq!(report.dropped_downstream_closed, 0);
    for e in &report.edges {
        assert_eq!(e.rows_in_flight, 0, "{e:?}");
        assert!(e.buffered == 0 && e.buffered_bytes == 0, "drained: {e:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_pipelines_match_the_iterator_reference(case in case()) {
        check(case);
    }
}

#[test]
fn a_fixed_case_with_every_operator_and_three_branches() {
    check(Case {
        input: (0..500).collect(),
        trunk: vec![Op::Map(3, 1), Op::FlatMap(3), Op::Inspect],
        branches: vec![
            vec![Op::Filter(2, 0)],
            vec![Op::FilterMap(2), Op::Inspect],
            vec![Op::FlatMap(2), Op::Map(1, 7)],
        ],
        batch_rows: 7,
        capacity: 1,
        max_bytes: 8,
        linger_ms: 1,
    });
}
