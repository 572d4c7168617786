//! One edge between two threads beside crossbeam-channel and tokio mpsc, same batches, each
//! allocating every batch and recycling emptied ones.
//!
//! `cargo bench --bench edge`

// `criterion_group!` defines an undocumented public function.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mimalloc::MiMalloc;
use weir_workloads::bench::edge::{self, Buffers};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

const BATCHES: usize = 20_000;

/// One variant: `(batches, rows per batch, capacity, buffers) -> elapsed`.
type Variant = fn(usize, usize, usize, Buffers) -> Duration;
const CAPACITY: usize = 16;

fn bench_edge(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for rows in [1usize, 1024] {
        // One-row batches are cheap to move: ten times as many keep the run measurable.
        let batches = if rows == 1 { BATCHES * 10 } else { BATCHES };
        group.throughput(Throughput::Elements((batches * rows) as u64));
        let variants: [(&str, Variant); 4] = [
            ("weir_tasks", edge::weir_async),
            ("weir_threads", edge::weir),
            ("crossbeam", edge::crossbeam),
            ("tokio_mpsc", edge::tokio_mpsc),
        ];
        for (name, f) in variants {
            for buffers in Buffers::ALL {
                let id = BenchmarkId::new(format!("{name}_{}", buffers.name()), rows);
                group.bench_with_input(id, &rows, |b, &rows| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| f(batches, rows, CAPACITY, buffers))
                            .sum()
                    });
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_edge);
criterion_main!(benches);
