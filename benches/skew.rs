//! A small `weir bench skew`: the keyed count over Zipf keys (z = 1.0) under each strategy,
//! beside the sequential HashMap count of the same keys (the single-thread baseline). Every
//! iteration's result is checked; a wrong count panics the bench.
//!
//! `cargo bench --bench skew`; the full matrix is `weir bench skew` (see BENCHMARKS.md).

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mimalloc::MiMalloc;
use weir_workloads::bench::skew::{run_once, sequential_count, SkewConfig, SkewStrategy};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn skew(c: &mut Criterion) {
    let cfg = SkewConfig {
        records: 200_000,
        ..SkewConfig::default()
    };
    let zipf = 1.0;
    let (reference, _) = sequential_count(&cfg, zipf).expect("valid Zipf parameters");
    let mut group = c.benchmark_group("skew-z1.0-p16");
    group.throughput(Throughput::Elements(cfg.records));
    group.sample_size(10);
    group.bench_function("sequential-hashmap", |b| {
        b.iter(|| black_box(sequential_count(&cfg, zipf).expect("valid parameters")))
    });
    for strategy in [
        SkewStrategy::Hash,
        SkewStrategy::Pkg,
        SkewStrategy::Split,
        SkewStrategy::Combine,
    ] {
        group.bench_function(strategy.name(), |b| {
            b.iter(|| {
                let (row, _) =
                    run_once(&cfg, zipf, strategy, 16, 0, &reference).expect("the run succeeds");
                assert!(row.correct, "{} counted wrong", strategy.name());
                row
            })
        });
    }
    group.finish();
}

criterion_group!(benches, skew);
criterion_main!(benches);
