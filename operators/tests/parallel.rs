//! Parallel operators and the partitionings of the edge into them: forward (1:1), rebalance,
//! broadcast, credit-aware rebalance; every instance in the report.

use weir_operators::prelude::*;
use weir_runtime::{InputPort, InstanceInfo, Operator, OperatorError, Output};

fn config(parallelism: usize) -> PipelineConfig {
    PipelineConfig {
        batch_rows: 10,
        workers: Some(2),
        parallelism,
        ..PipelineConfig::default()
    }
}

/// Tags every row with the instance that saw it.
struct Tag(usize);

impl Operator for Tag {
    type Input = Vec<u64>;
    type Output = Vec<(usize, u64)>;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.0 = info.instance;
        Ok(())
    }

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<(usize, u64)>>,
    ) -> Result<(), OperatorError> {
        let me = self.0;
        out.emit(batch.into_iter().map(|x| (me, x)).collect());
        Ok(())
    }
}

/// Rows seen per instance of `tag`, sorted, from its collected output.
fn by_instance(rows: Vec<(usize, u64)>, n: usize) -> Vec<Vec<u64>> {
    let mut out = vec![Vec::new(); n];
    for (i, x) in rows {
        out[i].push(x);
    }
    for v in &mut out {
        v.sort_unstable();
    }
    out
}

#[test]
fn forward_edges_connect_instance_i_to_instance_i() {
    // The pipeline default parallelism (3) applies to source and tag alike.
    let mut p = Pipeline::with_config("forward", config(3));
    let out = p
        .source_with("gen", |_| Generator::new(90, |i| i))
        .unary_with("tag", |_| Tag(0))
        .parallelism(3)
        .sink_with("out", |_| Collect::new());
    let report = p.run().expect("the run succeeds");
    let per_sink = out.take_all();
    assert_eq!(per_sink.len(), 3);
    for (i, rows) in per_sink.into_iter().enumerate() {
        // Generator instance i produces its contiguous share; tag i sees exactly that.
        let want: Vec<(usize, u64)> = (30 * i as u64..30 * (i as u64 + 1))
            .map(|x| (i, x))
            .collect();
        let mut rows = rows;
        rows.sort_unstable();
        assert_eq!(rows, want);
    }
    for op in &report.operators {
        assert_eq!(op.parallelism, 3, "{}", op.name);
        assert_eq!(op.instances.len(), 3, "{}", op.name);
        let idx: Vec<usize> = op.instances.iter().map(|i| i.instance).collect();
        assert_eq!(idx, [0, 1, 2]);
        assert!(op
            .instances
            .iter()
            .all(|i| i.rows_in == 30 || op.name == "gen"));
    }
}

#[test]
fn rebalance_spreads_batches_and_loses_nothing() {
    let mut p = Pipeline::with_config("rebalance", config(1));
    let out = p
        .source("gen", Generator::new(1000, |i| i))
        .rebalance()
        .unary_with("tag", |_| Tag(0))
        .parallelism(4)
        .collect("out");
    let report = p.run().expect("the run succeeds");
    let per = by_instance(out.take().expect("one sink"), 4);
    let mut all: Vec<u64> = per.concat();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    // Round-robin from instance 0, and every edge starts with credit: the first four batches
    // go to four different instances.
    assert!(per.iter().all(|rows| !rows.is_empty()));
    // Whole batches move: each instance's rows are a union of aligned 10-row batches.
    for rows in &per {
        assert_eq!(rows.len() % 10, 0);
    }
    let tag = &report.operators[1];
    assert_eq!(tag.instances.iter().map(|i| i.rows_in).sum::<u64>(), 1000);
}

#[test]
fn broadcast_sends_every_row_to_every_instance() {
    let mut p = Pipeline::with_config("broadcast", config(1));
    let out = p
        .source("gen", Generator::new(100, |i| i))
        .broadcast()
        .unary_with("tag", |_| Tag(0))
        .parallelism(3)
        .collect("out");
    p.run().expect("the run succeeds");
    let per = by_instance(out.take().expect("one sink"), 3);
    for rows in per {
        assert_eq!(rows, (0..100).collect::<Vec<_>>());
    }
}

#[test]
fn credit_rebalance_loses_nothing_and_uses_every_idle_instance() {
    let mut p = Pipeline::with_config("credit", config(1));
    let out = p
        .source("gen", Generator::new(1000, |i| i))
        .credit_rebalance()
        .unary_with("tag", |_| Tag(0))
        .parallelism(3)
        .collect("out");
    p.run().expect("the run succeeds");
    let per = by_instance(out.take().expect("one sink"), 3);
    let mut all: Vec<u64> = per.concat();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<_>>());
    // The first three batches find three edges with full credit: round-robin among equals.
    assert!(per.iter().all(|rows| !rows.is_empty()));
}
