//! The keyed exchange: source → map → `key_by(x).partitioned()` → filter → sum on `u64`, against
//! the same pipeline with forward edges, both at the same parallelism.
//!
//! The stages are [`pipeline`](super::pipeline)'s `mix` and `keep`, so the only difference
//! between [`Exchange::Keyed`] and [`Exchange::Forward`] is the hash exchange between map and
//! filter: hashing every row's key, routing it, and the edges that carry the pieces. Two more
//! variants help read the gap:
//!
//! - [`Exchange::Local`] puts the same partitioned edge between map and filter, but with a
//!   trivial partitioner that sends every batch whole to the producer's own instance index: the
//!   cost of the extra hop (tasks, edges, wake-ups) without hashing or splitting;
//! - [`Exchange::Chained`] is the forward pipeline at parallelism 1, for reference.
//!
//! Every variant computes the same wrapping sum, which the caller checks.

use std::time::{Duration, Instant};

use weir_operators::prelude::*;
use weir_runtime::partition::{Partitioner, TargetLoad};

use super::pipeline::{keep, mix};

/// How rows get from map to filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// `key_by(|x| *x).partitioned()`: the hash exchange under test.
    Keyed,
    /// Forward edges: map and filter chained in one task per instance.
    Forward,
    /// A partitioned edge whose partitioner sends each batch whole to the producer's own index.
    Local,
    /// Forward edges at parallelism 1 (whatever parallelism is asked for).
    Chained,
}

impl Exchange {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Exchange::Keyed => "keyed",
            Exchange::Forward => "forward",
            Exchange::Local => "local",
            Exchange::Chained => "chained-p1",
        }
    }
}

/// Sends every batch whole to one fixed target: the producer's instance, modulo the targets.
#[derive(Debug)]
struct ToOwnIndex(usize);

impl Partitioner<Vec<u64>> for ToOwnIndex {
    fn partition(&mut self, batch: Vec<u64>, _: &[TargetLoad], out: &mut Vec<(usize, Vec<u64>)>) {
        out.push((self.0, batch));
    }
}

/// The sum of the pipeline's rows as the fused loop computes it (the expected result).
pub fn expected(n: u64) -> u64 {
    (0..n).map(mix).filter(keep).fold(0u64, u64::wrapping_add)
}

/// Runs the pipeline over `n` rows with `exchange` between map and filter, at `parallelism`
/// (1 for [`Exchange::Chained`]); returns the sum and the wall time of the run.
///
/// # Errors
///
/// A failed run (which would be a bug).
pub fn run(
    exchange: Exchange,
    n: u64,
    parallelism: usize,
    batch_rows: usize,
    workers: Option<usize>,
) -> Result<(u64, Duration, RunReport), RunError> {
    let parallelism = if exchange == Exchange::Chained {
        1
    } else {
        parallelism.max(1)
    };
    let config = PipelineConfig {
        batch_rows,
        workers,
        parallelism,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::with_config("bench-keyed", config);
    let mapped = p.source("source", Generator::new(n, |i| i)).map("map", mix);
    let routed = match exchange {
        Exchange::Keyed => mapped.key_by(|x: &u64| *x).partitioned(),
        Exchange::Forward | Exchange::Chained => mapped,
        Exchange::Local => mapped.partition_with("local", |instance, targets| {
            ToOwnIndex(instance % targets.max(1))
        }),
    };
    let sum = routed
        .filter("filter", keep)
        .fold("sink", 0u64, u64::wrapping_add);
    let start = Instant::now();
    let report = weir::interrupt::run(p)?;
    let elapsed = start.elapsed();
    Ok((sum.take().unwrap_or_default(), elapsed, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exchange_computes_the_fused_sum() {
        let n = 50_000;
        let want = expected(n);
        for exchange in [
            Exchange::Keyed,
            Exchange::Forward,
            Exchange::Local,
            Exchange::Chained,
        ] {
            let (sum, _, report) = run(exchange, n, 2, 1024, Some(2)).expect("the run succeeds");
            assert_eq!(sum, want, "{}", exchange.name());
            assert!(report.operators.iter().any(|o| o.name == "filter"));
        }
    }
}
