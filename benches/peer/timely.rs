//! weir beside timely-dataflow on the same pipelines, in one process, interleaved.
//!
//! ```text
//! cargo bench --manifest-path benches/peer/Cargo.toml -- --records 20000000 --runs 5
//! cargo bench --manifest-path benches/peer/Cargo.toml -- --only mem --mem-records 2000000 --sink-rate 4000000
//! ```
//!
//! Both sides run in this one binary (same profile, same global allocator: mimalloc) over `u64`
//! rows with the same stage functions as `weir bench pipeline` (`mix`, `keep` from
//! `weir_workloads::bench::pipeline`), and every run checks that both compute the same sum.
//!
//! | pipeline | weir | timely |
//! |---|---|---|
//! | `1w` | source → map → filter → sum, 1 worker thread | the same on one worker |
//! | `2w` | the same at parallelism 2 on 2 threads, each source instance producing half | 2 workers, each producing half, no exchange |
//! | `2w-exchange` | as `2w` with a hash partition (`key_by(..).partitioned()`) after `map` | as `2w` with `exchange` after `map` |
//! | `handoff` | one source instance → a sum sink in another task, 2 threads | worker 0 produces, `exchange` to worker 1, which sums |
//!
//! The timely programs are written the way its examples and benches write fast code:
//! - the source is an `operators::generic::source` that hands whole `Vec` containers of 1024
//!   rows to `give_container` (no per-record `give`, no `InputHandle` round trips) and emits
//!   [`TIMELY_BURST`] (8) containers per activation before re-activating itself,
//!   so scheduling is paid per 8 K rows and a burst stays in cache;
//! - the map is `map_in_place` (rewrites each container in place and forwards it), the filter
//!   is `vec::Filter` (`retain` on each container in place), the sum a `sink` that folds each
//!   container: no record is copied or re-buffered between operators;
//! - with the exchange, the filter reads its input through the `Exchange` pact itself (what
//!   `.exchange(..).filter(..)` computes, one operator fewer); in the hand-off, the sum reads
//!   through a `DistributorPact` that moves whole containers to worker 1 (`exchange(|_| 1)`
//!   would re-buffer every row through a per-worker container builder);
//! - `Config::process(n)` (typed in-process channels, no serialisation), and each worker steps
//!   itself until its dataflow completes (`step_or_park`, as `timely::execute` does).
//!
//! `--only mem` compares memory with a slow sink: a source of N and 10·N rows feeding a sink
//! paced to `--sink-rate` rows/s on another thread. Each variant runs in a child process (this
//! binary re-executed with `--child`), which reports its own peak RSS (`VmHWM`).

use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mimalloc::MiMalloc;
use timely::communication::Push;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{DistributorPact, Exchange as ExchangePact};
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline as Pact};
use timely::dataflow::channels::pushers::exchange::Distributor;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::operator::{source, Operator};
use timely::dataflow::operators::vec::{Filter, Map};
use timely::dataflow::{Scope, StreamVec};
use timely::progress::Stamp;
use timely::{Config, WorkerConfig};
use weir::prelude::*;
use weir_workloads::bench::pipeline::{keep, mix};

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Rows per timely container (timely's own default buffer is 8 KiB: 1024 `u64`).
const TIMELY_CONTAINER_ROWS: u64 = 1024;

/// Containers the timely source emits per activation before it re-activates itself
/// (`--timely-burst`).
static TIMELY_BURST: AtomicUsize = AtomicUsize::new(8);

/// The pipelines compared for throughput.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    OneWorker,
    TwoWorkers,
    TwoWorkersExchange,
    Handoff,
}

impl Shape {
    const ALL: [Shape; 4] = [
        Shape::OneWorker,
        Shape::TwoWorkers,
        Shape::TwoWorkersExchange,
        Shape::Handoff,
    ];

    fn name(self) -> &'static str {
        match self {
            Shape::OneWorker => "1w",
            Shape::TwoWorkers => "2w",
            Shape::TwoWorkersExchange => "2w-exchange",
            Shape::Handoff => "handoff",
        }
    }

    fn workers(self) -> usize {
        match self {
            Shape::OneWorker => 1,
            _ => 2,
        }
    }

    /// The sum both sides must compute over `0..n`.
    fn expected(self, n: u64) -> u64 {
        match self {
            Shape::Handoff => (0..n).fold(0, u64::wrapping_add),
            _ => (0..n).map(mix).filter(keep).fold(0, u64::wrapping_add),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// weir

/// weir's placement of tasks on its workers (`--weir-placement`): 0 work stealing (the
/// default), 1 per worker, 2 colocated (instance `k` of every operator on worker `k`, the layout
/// of timely's workers).
static WEIR_PLACEMENT: AtomicUsize = AtomicUsize::new(0);

fn weir_config(workers: usize) -> PipelineConfig {
    let placement = match WEIR_PLACEMENT.load(Ordering::Relaxed) {
        1 => Placement::PerWorker,
        2 => Placement::Colocated,
        _ => Placement::WorkStealing,
    };
    PipelineConfig {
        workers: Some(workers),
        parallelism: workers,
        placement,
        ..PipelineConfig::default()
    }
}

/// One run of `shape` in weir: (sum, elapsed).
fn weir_run(shape: Shape, n: u64) -> Result<(u64, Duration), RunError> {
    let workers = shape.workers();
    let mut p = Pipeline::with_config("peer", weir_config(workers));
    let add = u64::wrapping_add;
    let sums = match shape {
        Shape::OneWorker | Shape::TwoWorkers => p
            .source_with("source", move |_| Generator::new(n, |i| i))
            .map("map", mix)
            .filter("filter", keep)
            .sink_with_parallelism("sum", workers, move |_| Fold::new(0u64, add)),
        Shape::TwoWorkersExchange => p
            .source_with("source", move |_| Generator::new(n, |i| i))
            .map("map", mix)
            .key_by(|x: &u64| *x)
            .partitioned()
            .filter("filter", keep)
            .sink_with_parallelism("sum", workers, move |_| Fold::new(0u64, add)),
        Shape::Handoff => p
            .source("source", Generator::new(n, |i| i))
            .sink("sum", Fold::new(0u64, add)),
    };
    let start = Instant::now();
    p.run()?;
    let elapsed = start.elapsed();
    let sum = sums.take_all().into_iter().fold(0, u64::wrapping_add);
    Ok((sum, elapsed))
}

// ---------------------------------------------------------------------------------------------
// timely

/// A source of the rows `lo..hi` as whole containers of [`TIMELY_CONTAINER_ROWS`], at most
/// [`TIMELY_BURST`] per activation; it drops its capability when done.
fn timely_source<'s>(scope: Scope<'s, u64>, lo: u64, hi: u64) -> StreamVec<'s, u64, u64> {
    let burst = TIMELY_BURST.load(Ordering::Relaxed);
    source::<_, CapacityContainerBuilder<Vec<u64>>, _, _>(scope, "Source", move |cap, info| {
        let activator = scope.activator_for(info.address);
        let mut cap = Some(cap);
        let mut next = lo;
        let mut batch: Vec<u64> = Vec::new();
        move |output| {
            if let Some(cap) = cap.as_ref() {
                let mut session = output.session(cap);
                for _ in 0..burst {
                    if next == hi {
                        break;
                    }
                    let end = (next + TIMELY_CONTAINER_ROWS).min(hi);
                    batch.clear();
                    batch.extend(next..end);
                    session.give_container(&mut batch);
                    next = end;
                }
            }
            if next == hi {
                cap = None;
            } else {
                activator.activate();
            }
        }
    })
}

/// A sink folding each container into `sum`, its input connected by `pact`.
fn timely_sum<P>(stream: StreamVec<'_, u64, u64>, pact: P, sum: Rc<Cell<u64>>)
where
    P: ParallelizationContract<u64, Vec<u64>>,
{
    stream.sink(pact, "Sum", move |(input, _frontier)| {
        input.for_each(|_time, data| {
            sum.set(data.iter().fold(sum.get(), |a, &x| a.wrapping_add(x)));
        });
    });
}

/// A timely [`Distributor`] that sends every container whole to one worker.
struct ToWorker(usize);

impl<C: Default> Distributor<C> for ToWorker {
    fn partition<T: Clone, P: Push<Message<T, C>>>(
        &mut self,
        container: &mut C,
        stamp: &Stamp<T>,
        pushers: &mut [P],
    ) {
        Message::push_at(container, stamp.clone(), &mut pushers[self.0]);
    }

    fn flush<T: Clone, P: Push<Message<T, C>>>(&mut self, _: &Stamp<T>, _: &mut [P]) {}
}

/// Builds `shape` on this worker and steps it to completion; returns the worker's sum.
fn timely_worker(worker: &mut timely::worker::Worker, shape: Shape, n: u64) -> u64 {
    let (index, peers) = (worker.index() as u64, worker.peers() as u64);
    // Each worker's contiguous share of 0..n; in the hand-off only worker 0 produces.
    let (lo, hi) = match shape {
        Shape::Handoff => (0, if index == 0 { n } else { 0 }),
        _ => (n * index / peers, n * (index + 1) / peers),
    };
    let sum = Rc::new(Cell::new(0u64));
    let out = sum.clone();
    worker.dataflow::<u64, _, _>(move |scope| {
        let rows = timely_source(scope, lo, hi);
        match shape {
            Shape::OneWorker | Shape::TwoWorkers => {
                timely_sum(rows.map_in_place(|x| *x = mix(*x)).filter(keep), Pact, out);
            }
            Shape::TwoWorkersExchange => {
                // The filter reads its input through the exchange pact itself (what
                // `.exchange(..).filter(..)` does with one operator fewer).
                let mapped = rows.map_in_place(|x| *x = mix(*x));
                let pact = ExchangePact::new(|x: &u64| *x);
                let kept = mapped.unary(pact, "ExchangeFilter", |_, _| {
                    move |input, output| {
                        input.for_each_stamp(|cap, data| {
                            let mut session = output.session(&cap);
                            for data in data {
                                data.retain(keep);
                                session.give_container(data);
                            }
                        });
                    }
                });
                timely_sum(kept, Pact, out);
            }
            // Whole containers to worker 1: no per-record routing (`exchange(|_| 1)` would
            // re-buffer every row).
            Shape::Handoff => timely_sum(rows, DistributorPact(|_peers| ToWorker(1)), out),
        }
    });
    while worker.has_dataflows() {
        worker.step_or_park(None);
    }
    sum.get()
}

/// One run of `shape` in timely: (sum, elapsed).
fn timely_run(shape: Shape, n: u64) -> Result<(u64, Duration), String> {
    let start = Instant::now();
    let sum = if shape.workers() == 1 {
        // One worker on the calling thread: timely's cheapest form (no thread, no channels).
        timely::execute::execute_directly(move |worker| timely_worker(worker, shape, n))
    } else {
        let config = Config {
            communication: timely::CommunicationConfig::Process(shape.workers()),
            worker: WorkerConfig::default(),
        };
        let guards = timely::execute(config, move |worker| timely_worker(worker, shape, n))?;
        let mut total = 0u64;
        for result in guards.join() {
            total = total.wrapping_add(result?);
        }
        total
    };
    Ok((sum, start.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// memory with a slow sink (one child process per variant)

/// Blocks until `rows` rows are due at `rate` rows/s since `start`.
fn pace(start: Instant, rows: u64, rate: f64) {
    let due = start + Duration::from_secs_f64(rows as f64 / rate);
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

/// weir: one source instance → `Throttle(Count)` on 2 threads: the source follows the sink.
fn weir_slow(n: u64, rate: f64) -> Result<u64, RunError> {
    let mut p = Pipeline::with_config("peer-slow-sink", weir_config(2));
    let count = p
        .source("source", Generator::new(n, |i| i))
        .sink("sink", Throttle::new(Count::new(), rate));
    p.run()?;
    Ok(count.take().unwrap_or_default())
}

/// timely: worker 0 produces as fast as it can and exchanges to worker 1, whose sink counts at
/// `rate` rows/s. Nothing slows worker 0: the rows wait in the exchange channel.
fn timely_slow(n: u64, rate: f64) -> Result<u64, String> {
    let config = Config {
        communication: timely::CommunicationConfig::Process(2),
        worker: WorkerConfig::default(),
    };
    let guards = timely::execute(config, move |worker| {
        let hi = if worker.index() == 0 { n } else { 0 };
        let count = Rc::new(Cell::new(0u64));
        let out = count.clone();
        worker.dataflow::<u64, _, _>(move |scope| {
            let start = Instant::now();
            let to_worker_1 = DistributorPact(|_peers| ToWorker(1));
            timely_source(scope, 0, hi).sink(to_worker_1, "SlowSink", move |(input, _frontier)| {
                input.for_each(|_time, data| {
                    out.set(out.get() + data.len() as u64);
                    pace(start, out.get(), rate);
                });
            });
        });
        while worker.has_dataflows() {
            worker.step_or_park(None);
        }
        count.get()
    })?;
    let mut total = 0;
    for result in guards.join() {
        total += result?;
    }
    Ok(total)
}

/// Runs one memory variant in this (child) process and prints one line for the parent.
fn child(variant: &str, n: u64, rate: f64) -> Result<(), String> {
    let start = Instant::now();
    let count = match variant {
        "weir" => weir_slow(n, rate).map_err(|e| e.to_string())?,
        "timely" => timely_slow(n, rate)?,
        other => return Err(format!("unknown --child variant {other:?}")),
    };
    if count != n {
        return Err(format!("{variant}: the sink counted {count} rows of {n}"));
    }
    let rss = weir_workloads::peak_rss_bytes().unwrap_or(0);
    println!(
        "child {variant} {n} {rss} {:.3}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Re-runs this binary as a child for one memory variant: (peak RSS bytes, seconds).
fn spawn_child(variant: &str, n: u64, rate: f64) -> Result<(u64, f64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new(exe)
        .args(["--child", variant, "--mem-records", &n.to_string()])
        .args(["--sink-rate", &rate.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("child {variant} {n} failed: {stdout}{stderr}"));
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("child "))
        .ok_or_else(|| format!("child {variant} {n} printed no result: {stdout}"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let bad = || format!("child {variant} {n}: bad line {line:?}");
    let rss = fields
        .get(3)
        .and_then(|f| f.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let secs = fields
        .get(4)
        .and_then(|f| f.parse::<f64>().ok())
        .ok_or_else(bad)?;
    Ok((rss, secs))
}

// ---------------------------------------------------------------------------------------------
// the command line

struct Args {
    records: u64,
    runs: usize,
    mem_records: u64,
    sink_rate: f64,
    only: Vec<String>,
    child: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        records: 20_000_000,
        runs: 5,
        mem_records: 2_000_000,
        sink_rate: 4_000_000.0,
        only: Vec::new(),
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "--records" => args.records = value()?.parse().map_err(|e| format!("{e}"))?,
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("{e}"))?,
            "--mem-records" => args.mem_records = value()?.parse().map_err(|e| format!("{e}"))?,
            "--sink-rate" => args.sink_rate = value()?.parse().map_err(|e| format!("{e}"))?,
            "--only" => args.only = value()?.split(',').map(str::to_owned).collect(),
            "--child" => args.child = Some(value()?),
            "--timely-burst" => {
                let burst: usize = value()?.parse().map_err(|e| format!("{e}"))?;
                TIMELY_BURST.store(burst.max(1), Ordering::Relaxed);
            }
            "--weir-placement" => {
                let placement = match value()?.as_str() {
                    "work-stealing" => 0,
                    "per-worker" => 1,
                    "colocated" => 2,
                    other => return Err(format!("unknown placement {other:?}")),
                };
                WEIR_PLACEMENT.store(placement, Ordering::Relaxed);
            }
            "--help" | "-h" => {
                println!(
                    "cargo bench --manifest-path benches/peer/Cargo.toml -- [--records N] [--runs R] \
                     [--only 1w,2w,2w-exchange,handoff,mem] [--mem-records N] [--sink-rate R] \
                     [--timely-burst CONTAINERS] \
                     [--weir-placement work-stealing|per-worker|colocated]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.runs == 0 || args.records == 0 || args.mem_records == 0 {
        return Err("--records, --mem-records and --runs must be positive".into());
    }
    if !(args.sink_rate > 0.0 && args.sink_rate.is_finite()) {
        return Err("--sink-rate must be a positive number of rows per second".into());
    }
    Ok(args)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

fn throughput(args: &Args, shapes: &[Shape]) -> Result<(), String> {
    let n = args.records;
    let expected: Vec<u64> = shapes.iter().map(|s| s.expected(n)).collect();
    // rates[shape] = (weir rows/s per run, timely rows/s per run)
    let mut rates = vec![(Vec::new(), Vec::new()); shapes.len()];
    for run in 0..args.runs {
        for (k, &shape) in shapes.iter().enumerate() {
            // Alternate which side goes first, so neither always runs on a warmer machine.
            for side in 0..2 {
                let weir_side = (run + side) % 2 == 0;
                let (sum, elapsed) = if weir_side {
                    weir_run(shape, n).map_err(|e| e.to_string())?
                } else {
                    timely_run(shape, n)?
                };
                let who = if weir_side { "weir" } else { "timely" };
                if sum != expected[k] {
                    return Err(format!(
                        "{who} {}: sum {sum} differs from the loop's {}",
                        shape.name(),
                        expected[k]
                    ));
                }
                let rate = n as f64 / elapsed.as_secs_f64();
                eprintln!(
                    "run {run} {:<12} {who:<7} {:>9.1} M rows/s",
                    shape.name(),
                    rate / 1e6
                );
                if weir_side {
                    rates[k].0.push(rate);
                } else {
                    rates[k].1.push(rate);
                }
            }
        }
    }
    println!(
        "\n{n} rows, medians of {} runs (weir and timely interleaved; ratio: median of each run's weir/timely)\n",
        args.runs
    );
    println!("| pipeline | weir rows/s | timely rows/s | weir / timely | ratio min–max |");
    println!("|---|---|---|---|---|");
    for (k, &shape) in shapes.iter().enumerate() {
        let (w, t) = &rates[k];
        let ratios: Vec<f64> = w.iter().zip(t).map(|(w, t)| w / t).collect();
        let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "| {} | {:.1} M | {:.1} M | {:.2} | {lo:.2}–{hi:.2} |",
            shape.name(),
            median(w.clone()) / 1e6,
            median(t.clone()) / 1e6,
            median(ratios),
        );
    }
    Ok(())
}

fn memory(args: &Args) -> Result<(), String> {
    let rate = args.sink_rate;
    println!(
        "\nslow sink at {:.1} M rows/s on another thread; peak RSS of a child process per run\n",
        rate / 1e6
    );
    println!("| records | weir peak RSS | timely peak RSS | weir s | timely s |");
    println!("|---|---|---|---|---|");
    for n in [args.mem_records, args.mem_records * 10] {
        let (w_rss, w_s) = spawn_child("weir", n, rate)?;
        let (t_rss, t_s) = spawn_child("timely", n, rate)?;
        println!(
            "| {n} | {:.1} MiB | {:.1} MiB | {w_s:.2} | {t_s:.2} |",
            w_rss as f64 / 1048576.0,
            t_rss as f64 / 1048576.0
        );
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    if let Some(variant) = &args.child {
        return child(variant, args.mem_records, args.sink_rate);
    }
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let shapes: Vec<Shape> = Shape::ALL
        .into_iter()
        .filter(|s| wanted(s.name()))
        .collect();
    if !shapes.is_empty() {
        throughput(&args, &shapes)?;
    }
    if wanted("mem") {
        memory(&args)?;
    }
    Ok(())
}
