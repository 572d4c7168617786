//! `weir bench`: each benchmark beside its baseline, one module per benchmark.

mod checkpoint;
mod debloat;
mod edge;
mod etl;
mod ingest;
mod keyed;
mod latency;
mod overload;
mod pipeline;
mod placement;
mod skew;
mod windows;
mod windows_latency;

use clap::Subcommand;

use crate::Error;

/// The benchmarks.
#[derive(Subcommand)]
pub enum Bench {
    /// source → map → filter → sink on u64 against the hand-fused loop, over batch sizes.
    Pipeline(pipeline::PipelineArgs),
    /// The pipeline at parallelism 1 and 2 under each placement of tasks on workers, with
    /// each variant's run-to-run spread.
    Placement(placement::PlacementArgs),
    /// CSV → Parquet: weir's parallel pipeline against one thread of arrow-csv → parquet.
    Etl(etl::EtlArgs),
    /// A service overloaded at 2× its capacity: a naive retrying client beside weir's HTTP sink.
    Overload(overload::OverloadArgs),
    /// HTTP ingest throughput and acknowledgement latency, with `202` once records are in the
    /// hand-off and once they are fsynced to the write-ahead log, side by side.
    Ingest(ingest::IngestArgs),
    /// Source → sink latency of a 3-stage pipeline at a fraction of its capacity (10 % by
    /// default), batch size 1, linger 0.
    Latency(latency::LatencyArgs),
    /// One edge between two threads against crossbeam-channel and tokio mpsc.
    Edge(edge::EdgeArgs),
    /// Queueing delay p50 / p99 before and after a sink slows tenfold, with edges sized by
    /// rows only and by time as well (`edge_target_time`).
    Debloat(debloat::DebloatArgs),
    /// source → map → key_by(x).partitioned() → filter → sum against the same pipeline with
    /// forward edges, at the same parallelism.
    Keyed(keyed::KeyedArgs),
    /// A keyed count over Zipf-skewed keys under each routing strategy, each run checked
    /// against a sequential HashMap count (a wrong result fails the bench).
    Skew(skew::SkewArgs),
    /// One run of `bench skew`, in a process of its own; prints its outcome as one JSON line.
    #[command(hide = true)]
    SkewRun(skew::SkewRunArgs),
    /// Checkpoint duration and the in-flight bytes unaligned checkpoints capture with the
    /// sink, one instance with two input edges, throttled to a fraction of the source rate;
    /// then a restore from a checkpoint holding captured batches.
    Checkpoint(checkpoint::CheckpointArgs),
    /// A keyed count in tumbling event-time windows against the same count without windows,
    /// session windows, an interval join and the windows' peak RSS at N and 10·N rows, each run
    /// checked against a sequential reference.
    Windows(windows::WindowsArgs),
    /// One peak-RSS run of `bench windows`, in a process of its own; prints one JSON line.
    #[command(hide = true)]
    WindowsRun(windows::WindowsRunArgs),
    /// The tumbling-window count's maximum rate, then how long after a window could close its
    /// result reaches the sink (and the in-band markers' latency) at a fraction of that rate,
    /// the source paced by the wall clock.
    WindowsLatency(windows_latency::WindowsLatencyArgs),
}

/// Runs one benchmark, after a line naming the machine (except for `skew-run` and `windows-run`,
/// whose output is one JSON line).
pub fn run(b: Bench) -> Result<(), Error> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !matches!(b, Bench::SkewRun { .. } | Bench::WindowsRun { .. }) {
        println!("machine: {cores} cores, {cpu}");
    }
    match b {
        Bench::Pipeline(args) => pipeline::run(args),
        Bench::Placement(args) => placement::run(args),
        Bench::Etl(args) => etl::run(args),
        Bench::Overload(args) => overload::run(args),
        Bench::Ingest(args) => ingest::run(args),
        Bench::Edge(args) => edge::run(args),
        Bench::Debloat(args) => debloat::run(args),
        Bench::Latency(args) => latency::run(args),
        Bench::Keyed(args) => keyed::run(args),
        Bench::Skew(args) => skew::run(args),
        Bench::SkewRun(args) => skew::run_one(args),
        Bench::Checkpoint(args) => checkpoint::run(args),
        Bench::Windows(args) => windows::run(args),
        Bench::WindowsRun(args) => windows::run_one(args),
        Bench::WindowsLatency(args) => windows_latency::run(args),
    }
}
