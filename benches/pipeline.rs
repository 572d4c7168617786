//! source → map → filter → sink on u64 beside the hand-fused single-thread loop, over batch sizes.
//!
//! `cargo bench --bench pipeline`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mimalloc::MiMalloc;
use weir_workloads::bench::pipeline;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const ROWS: u64 = 10_000_000;

fn bench_pipeline(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(ROWS));
    group.bench_function("fused_loop", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| pipeline::fused(ROWS).1).sum());
    });
    for batch in [1usize, 16, 256, 1024, 4096] {
        // Batch size 1 moves one row per message: fewer rows keep the run short.
        let rows = if batch == 1 { ROWS / 10 } else { ROWS };
        group.throughput(Throughput::Elements(rows));
        group.bench_with_input(BenchmarkId::new("weir", batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| match pipeline::weir(rows, batch, None, None) {
                        Ok((_, elapsed, _)) => elapsed,
                        Err(e) => panic!("benchmark pipeline failed: {e}"),
                    })
                    .sum()
            });
        });
        group.bench_with_input(
            BenchmarkId::new("one_thread_batched", batch),
            &batch,
            |b, &batch| {
                b.iter_custom(|iters| (0..iters).map(|_| pipeline::batched(rows, batch).1).sum());
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
