//! Keyed aggregation in running pipelines: exact under every strategy, merge stages where keys
//! split, routing within each key's allowed instances, bounded state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::num::{NonZeroU64, NonZeroUsize};

use proptest::prelude::{prop, prop_assert_eq, proptest, ProptestConfig};
use proptest::strategy::Strategy as _;
use weir_operators::keyed::aggregate::{Count, Mean, Project, Sum};
use weir_operators::keyed::route::{two_choices, KeyGroups, KeyHasher, SplitConfig, Strategy};
use weir_operators::keyed::{Combine, Emit, KeyedExt};
use weir_operators::prelude::{Generator, IterSource, Pipeline, PipelineConfig, StreamExt};
use weir_runtime::{
    GraphError, InputPort, InstanceInfo, Operator, OperatorError, Output, RunError, RunReport,
};

fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        batch_rows,
        workers: Some(2),
        ..PipelineConfig::default()
    }
}

fn split() -> Strategy {
    Strategy::HotKeySplit(
        SplitConfig::default()
            .with_threshold(0.05)
            .expect("a valid share")
            .with_warmup(0),
    )
}

/// Every strategy, with and without a combiner.
#[derive(Clone, Copy, Debug)]
struct Variant {
    strategy: Strategy,
    combine: Option<Combine>,
}

fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    for strategy in [Strategy::Hash, Strategy::Pkg, split()] {
        for combine in [
            None,
            Some(Combine::new(3)),
            Some(Combine::new(64).per_batch()),
        ] {
            out.push(Variant { strategy, combine });
        }
    }
    out
}

/// Counts and sums `(key, value)` rows keyed by key, the way `variant` says.
fn run_sum(
    rows: Vec<(u8, i32)>,
    variant: Variant,
    parallelism: usize,
    batch_rows: usize,
) -> (BTreeMap<u8, i128>, RunReport) {
    let mut p = Pipeline::with_config("sum", config(batch_rows));
    let mut keyed = p
        .source("rows", IterSource::new(rows))
        .key_by(|r: &(u8, i32)| r.0)
        .strategy(variant.strategy)
        .parallelism(parallelism);
    if let Some(c) = variant.combine {
        keyed = keyed.combine_with(c);
    }
    let out = keyed
        .aggregate("sum", Project::new(|r: &(u8, i32)| r.1, Sum::<i32>::new()))
        .collect("out");
    let report = p.run().expect("the run succeeds");
    let rows = out.take().expect("one sink instance");
    let mut result = BTreeMap::new();
    for (k, v) in rows {
        assert!(result.insert(k, v).is_none(), "key {k} emitted twice");
    }
    (result, report)
}

fn reference(rows: &[(u8, i32)]) -> BTreeMap<u8, i128> {
    let mut m = BTreeMap::new();
    for &(k, v) in rows {
        *m.entry(k).or_insert(0) += i128::from(v);
    }
    m
}

/// Skewed keys: key 0 about half the time, then a long tail.
fn skewed_rows() -> impl proptest::strategy::Strategy<Value = Vec<(u8, i32)>> {
    prop::collection::vec(
        (0u8..=255, -1000i32..1000).prop_map(|(k, v)| (if k < 128 { 0 } else { k % 40 }, v)),
        0..400,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn every_strategy_matches_the_sequential_result(
        rows in skewed_rows(),
        parallelism in 1usize..4,
        batch_rows in 1usize..40,
    ) {
        let want = reference(&rows);
        for variant in variants() {
            let (got, _) = run_sum(rows.clone(), variant, parallelism, batch_rows);
            prop_assert_eq!(&got, &want, "{:?} on {} instances", variant, parallelism);
        }
        // With periodic updates, the last row of each key is its result.
        for strategy in [Strategy::Hash, Strategy::Pkg, split()] {
            let mut p = Pipeline::with_config("updates", config(batch_rows));
            let out = p
                .source("rows", IterSource::new(rows.clone()))
                .key_by(|r: &(u8, i32)| r.0)
                .strategy(strategy)
                .parallelism(parallelism)
                .combine(4)
                .emit(Emit::EveryRows(NonZeroU64::new(7).expect("non-zero")))
                .aggregate("sum", Project::new(|r: &(u8, i32)| r.1, Sum::<i32>::new()))
                .collect("out");
            p.run().expect("the run succeeds");
            let last: BTreeMap<u8, i128> = out.take().expect("one sink").into_iter().collect();
            prop_assert_eq!(&last, &want, "{:?} with updates", strategy);
        }
    }
}

fn names(report: &RunReport) -> Vec<&str> {
    report.operators.iter().map(|o| o.name.as_str()).collect()
}

#[test]
fn a_merge_stage_is_inserted_exactly_when_keys_can_split() {
    let rows: Vec<(u8, i32)> = (0..500).map(|i| ((i % 7) as u8, i)).collect();
    let want = reference(&rows);
    let cases = [
        (Strategy::Hash, None, vec!["rows", "sum", "out"]),
        (
            Strategy::Pkg,
            None,
            vec!["rows", "sum.partial", "sum", "out"],
        ),
        (split(), None, vec!["rows", "sum.partial", "sum", "out"]),
        (
            Strategy::Hash,
            Some(Combine::new(4)),
            vec!["rows", "sum.combine", "sum", "out"],
        ),
        (
            Strategy::Pkg,
            Some(Combine::new(4)),
            vec!["rows", "sum.combine", "sum.partial", "sum", "out"],
        ),
    ];
    for (strategy, combine, expected) in cases {
        let (got, report) = run_sum(rows.clone(), Variant { strategy, combine }, 3, 16);
        assert_eq!(got, want, "{strategy:?} {combine:?}");
        assert_eq!(names(&report), expected, "{strategy:?} {combine:?}");
        let keyed = &report.operators[names(&report).len() - 2];
        assert_eq!(keyed.parallelism, 3);
        assert_eq!(keyed.instances.len(), 3, "every instance is reported");
    }
}

#[test]
fn the_combiner_cuts_shuffled_rows_and_stays_within_its_capacity() {
    // 10,000 rows over 5 keys, one batch of 1000 at a time.
    let rows: Vec<(u8, i32)> = (0..10_000).map(|i| ((i % 5) as u8, 1)).collect();
    let want = reference(&rows);
    let variant = Variant {
        strategy: Strategy::Hash,
        combine: Some(Combine::new(8)),
    };
    let (got, report) = run_sum(rows, variant, 2, 1000);
    assert_eq!(got, want);
    let combine = report
        .operators
        .iter()
        .find(|o| o.name == "sum.combine")
        .expect("a combiner");
    // Never full, so it flushes once, at the end: one partial per key.
    assert_eq!((combine.rows_in, combine.rows_out), (10_000, 5));
    assert_eq!(combine.peak_state_keys, 5);
    let per_batch = Variant {
        strategy: Strategy::Hash,
        combine: Some(Combine::new(8).per_batch()),
    };
    let (_, report) = run_sum(
        (0..10_000).map(|i| ((i % 5) as u8, 1)).collect(),
        per_batch,
        2,
        1000,
    );
    let combine = &report.operators[1];
    assert_eq!(combine.rows_out, 50, "5 keys per batch of 1000, 10 batches");
}

#[test]
fn a_final_stage_past_its_bound_fails_naming_it() {
    let rows: Vec<(u8, i32)> = (0..2000).map(|i| ((i * 7 % 50) as u8, i)).collect();
    let mut p = Pipeline::with_config("bounded", config(64));
    let out = p
        .source("rows", IterSource::new(rows))
        .key_by(|r: &(u8, i32)| r.0)
        .parallelism(1)
        .max_keys(4)
        .aggregate("sum", Project::new(|r: &(u8, i32)| r.1, Sum::<i32>::new()))
        .collect("out");
    let err = p.run().expect_err("the final stage cannot hold 50 keys");
    assert_eq!(err.operator(), Some("sum"));
    let msg = err.to_string();
    assert!(msg.contains("already holds 4 keys"), "{msg}");
    assert!(out.take().is_none());
}

#[test]
fn bounded_partials_drain_and_stay_exact() {
    let rows: Vec<(u8, i32)> = (0..3000).map(|i| ((i * 7 % 60) as u8, i)).collect();
    let want = reference(&rows);
    for strategy in [Strategy::Pkg, split()] {
        let mut p = Pipeline::with_config("bounded", config(50));
        let out = p
            .source("rows", IterSource::new(rows.clone()))
            .key_by(|r: &(u8, i32)| r.0)
            .strategy(strategy)
            .parallelism(3)
            .merge_parallelism(1)
            .partial_max_keys(4)
            .max_keys(60)
            .combine_with(Combine::new(5))
            .aggregate("sum", Project::new(|r: &(u8, i32)| r.1, Sum::<i32>::new()))
            .collect("out");
        let report = p.run().expect("the run succeeds");
        let got: BTreeMap<u8, i128> = out.take().expect("one sink").into_iter().collect();
        assert_eq!(got, want, "{strategy:?}");
        let op = |name: &str| {
            report
                .operators
                .iter()
                .find(|o| o.name == name)
                .expect("operator present")
        };
        let combine = op("sum.combine");
        assert!(combine.instances.iter().all(|i| i.peak_state_keys <= 5));
        assert!(
            combine.rows_out > 60,
            "a 5-key combiner drains often over 60 keys"
        );
        let partial = op("sum.partial");
        assert!(partial.instances.iter().all(|i| i.peak_state_keys <= 4));
        let fin = op("sum");
        assert_eq!(fin.peak_state_keys, 60);
        assert!(fin.peak_state_bytes > 0);
        assert_eq!(fin.state_keys, 0, "released at the end");
    }
}

/// Emits `(row, instance)` for every row it sees.
struct WhereAmI(usize);

impl Operator for WhereAmI {
    type Input = Vec<u64>;
    type Output = Vec<(u64, usize)>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.0 = info.instance;
        Ok(())
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<(u64, usize)>>,
    ) -> Result<(), OperatorError> {
        let me = self.0;
        out.emit(batch.into_iter().map(|k| (k, me)).collect());
        Ok(())
    }
}

#[test]
fn a_keys_rows_reach_only_its_allowed_instances() {
    let n = 5;
    let nz = NonZeroUsize::new(n).expect("5 is non-zero");
    let hasher = KeyHasher::default();
    for strategy in [Strategy::Hash, Strategy::Pkg] {
        let mut p = Pipeline::with_config("where", config(32));
        let out = p
            .source("keys", Generator::new(20_000, |i| (i * i) % 97 % 13))
            .key_by(|k: &u64| *k)
            .strategy(strategy)
            .partitioned()
            .unary_with("where", |_| WhereAmI(0))
            .parallelism(n)
            .collect("out");
        let report = p.run().expect("the run succeeds");
        let mut used: HashMap<u64, BTreeSet<usize>> = HashMap::new();
        let rows = out.take().expect("one sink");
        assert_eq!(rows.len(), 20_000);
        for (k, i) in rows {
            used.entry(k).or_default().insert(i);
        }
        for (k, instances) in used {
            let (a, b) = two_choices(hasher.hash_u64(k), nz);
            let allowed = match strategy {
                Strategy::Hash => BTreeSet::from([a]),
                _ => BTreeSet::from([a, b]),
            };
            assert!(
                instances.is_subset(&allowed),
                "{strategy:?}: key {k} on {instances:?}"
            );
        }
        let per_instance: u64 = report.operators[1]
            .instances
            .iter()
            .map(|i| i.rows_in)
            .sum();
        assert_eq!(per_instance, 20_000);
    }
}

#[test]
fn periodic_updates_end_with_the_final_result() {
    let rows: Vec<(u8, i32)> = (0..1000).map(|i| ((i % 4) as u8, 1)).collect();
    for strategy in [Strategy::Hash, Strategy::Pkg] {
        let mut p = Pipeline::with_config("updates", config(50));
        let out = p
            .source("rows", IterSource::new(rows.clone()))
            .key_by(|r: &(u8, i32)| r.0)
            .strategy(strategy)
            .parallelism(2)
            .emit(Emit::EveryRows(NonZeroU64::new(100).expect("non-zero")))
            .aggregate("count", Count::new())
            .collect("out");
        p.run().expect("the run succeeds");
        let rows = out.take().expect("one sink");
        assert!(rows.len() > 4, "{strategy:?}: updates before the end");
        let mut last = BTreeMap::new();
        let mut previous: HashMap<u8, u64> = HashMap::new();
        for (k, c) in rows {
            let p = previous.entry(k).or_default();
            assert!(c >= *p, "{strategy:?}: key {k} went back from {p} to {c}");
            *p = c;
            last.insert(k, c);
        }
        assert_eq!(
            last,
            BTreeMap::from([(0, 250), (1, 250), (2, 250), (3, 250)])
        );
    }
}

#[test]
fn paced_instances_are_exact_and_report_their_state() {
    let mut p = Pipeline::with_config("paced", config(64));
    let out = p
        .source("keys", Generator::new(4_000, |i| i % 10))
        .key_by(|k: &u64| *k)
        .strategy(Strategy::Pkg)
        .combine_with(Combine::new(4).per_batch())
        .parallelism(2)
        .worker_capacity(NonZeroU64::new(2_000_000).expect("non-zero"))
        .aggregate("mean", Mean::<u64>::new())
        .collect("out");
    let report = p.run().expect("the run succeeds");
    let got: BTreeMap<u64, Option<f64>> = out.take().expect("one sink").into_iter().collect();
    let want: BTreeMap<u64, Option<f64>> = (0..10).map(|k| (k, Some(k as f64))).collect();
    assert_eq!(got, want);
    let partial = report
        .operators
        .iter()
        .find(|o| o.name == "mean.partial")
        .expect("partial stage");
    assert_eq!(partial.instances.len(), 2);
    assert!(partial.instances.iter().all(|i| i.peak_state_keys <= 10));
    assert!(report.to_string().contains("state: `mean.partial`"));
}

#[test]
fn more_instances_than_key_groups_fail_before_the_run_naming_the_operator() {
    let groups = KeyGroups::new(4).expect("a valid count");
    let build = |parallelism: usize| {
        let mut p = Pipeline::with_config("groups", config(64));
        let out = p
            .source("numbers", Generator::new(1_000, |i| i))
            .key_by(|x: &u64| *x % 10)
            .key_groups(groups)
            .partitioned()
            .filter("keyed", |_| true)
            .parallelism(parallelism)
            .count("out");
        (p, out)
    };
    let (p, out) = build(4);
    p.run().expect("4 instances over 4 key groups run");
    assert_eq!(out.take(), Some(1_000));
    let (p, _) = build(5);
    match p.run() {
        Err(RunError::Graph(GraphError::InvalidConfig { operator, reason })) => {
            assert_eq!(operator, "keyed");
            assert!(reason.contains("runs 5 instances"), "{reason}");
            assert!(reason.contains("at most 4"), "{reason}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}
