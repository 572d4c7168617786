//! What checkpoints in the executor cost, and how long they take behind a slow sink.
//!
//! ```text
//! cargo bench -p weir-runtime --bench checkpoint_overhead [-- ROWS [ROUNDS [KEYS]]]
//! ```
//!
//! 1. **Throughput**: a keyed count (`source → hash by key group → count ×2 → sink`, `KEYS`
//!    keys, default 100 000, per-key-group snapshots) of `ROWS` rows (default 300 M), with
//!    checkpoints every second and without, interleaved for `ROUNDS` rounds (default 3); the
//!    ratio of the medians is the figure.
//! 2. **Duration behind a slow sink**: the same job with the sink paced at a tenth of the
//!    rate the unpaced run measured, checkpoints every second for about 8 s, aligned and then
//!    with a 100 ms alignment timeout (unaligned past it): checkpoint duration p50 / p99, and
//!    what the unaligned ones captured.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use weir_runtime::checkpoint::{decode, encode, SnapshotReader, SnapshotWriter};
use weir_runtime::partition::{Partitioner, TargetLoad};
use weir_runtime::{
    CheckpointConfig, CheckpointReport, InputPort, KeyGroupRange, Operator, OperatorError, Output,
    Pipeline, PipelineConfig, Sink, Source, SourceStatus,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GROUPS: u32 = 128;

fn group_of(key: u64) -> u32 {
    let hash = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((u128::from(hash) * u128::from(GROUPS)) >> 64) as u32
}

/// Keys `i * 7919 % keys` for `i` in `next..n`; its position is `next`.
struct Keys {
    next: u64,
    n: u64,
    keys: u64,
}

impl Source for Keys {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        let rows = out.batch_rows() as u64;
        let end = (self.next + rows).min(self.n);
        let mut batch = out.batch_with_capacity(rows as usize);
        batch.extend((self.next..end).map(|i| i.wrapping_mul(7919) % self.keys));
        out.emit(batch);
        self.next = end;
        Poll::Ready(Ok(if self.next == self.n {
            SourceStatus::Done
        } else {
            SourceStatus::Continue
        }))
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self) -> Result<Vec<u8>, OperatorError> {
        Ok(self.next.to_le_bytes().to_vec())
    }
    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| OperatorError::user("8 bytes"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

struct ByGroup;

impl Partitioner<Vec<u64>> for ByGroup {
    fn partition(
        &mut self,
        batch: Vec<u64>,
        loads: &[TargetLoad],
        out: &mut Vec<(usize, Vec<u64>)>,
    ) {
        let p = loads.len() as u32;
        let mut pieces = vec![Vec::with_capacity(batch.len() / loads.len() + 1); loads.len()];
        for key in batch {
            let owner = KeyGroupRange::owner(GROUPS, p, group_of(key)).unwrap_or(0);
            pieces[owner as usize].push(key);
        }
        out.extend(pieces.into_iter().enumerate());
    }
}

#[derive(Default)]
struct Count(HashMap<u64, u64>);

impl Operator for Count {
    type Input = Vec<u64>;
    type Output = Vec<(u64, u64)>;
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        _: &mut Output<Vec<(u64, u64)>>,
    ) -> Result<(), OperatorError> {
        for key in batch {
            *self.0.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }
    fn on_end(&mut self, out: &mut Output<Vec<(u64, u64)>>) -> Result<(), OperatorError> {
        out.extend(self.0.drain());
        Ok(())
    }
    fn holds_rows(&self) -> bool {
        true
    }
    fn can_snapshot(&self) -> bool {
        true
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        let mut groups: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
        for (&k, &c) in &self.0 {
            groups.entry(group_of(k)).or_default().push((k, c));
        }
        for (g, entries) in groups {
            let bytes = encode(&entries).map_err(|e| OperatorError::internal(e.to_string()))?;
            state.put_group(g, bytes);
        }
        Ok(())
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        for (_, bytes) in state.groups() {
            let entries: Vec<(u64, u64)> =
                decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
            self.0.extend(entries);
        }
        Ok(())
    }
}

/// Sums the counts; with a rate, takes rows no faster than `rate` rows per second.
struct Total {
    sum: u64,
    rate: Option<f64>,
    start: Option<Instant>,
    taken: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Sink for Total {
    type Input = Vec<(u64, u64)>;
    type Output = u64;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let Some(rate) = self.rate else {
            return Poll::Ready(Ok(()));
        };
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.taken as f64 / rate);
        if Instant::now() >= due {
            self.sleep = None;
            return Poll::Ready(Ok(()));
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
    fn on_batch(&mut self, _: InputPort, batch: Vec<(u64, u64)>) -> Result<(), OperatorError> {
        self.taken += batch.len() as u64;
        self.sum += batch.iter().map(|(_, c)| c).sum::<u64>();
        Ok(())
    }
    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.sum)
    }
}

/// A keyed count with rows passing through a rate-limited identity before the count when
/// `pace` is set (the "sink" being slow: the count's input is where the backpressure starts).
struct Paced {
    rate: f64,
    start: Option<Instant>,
    taken: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Operator for Paced {
    type Input = Vec<u64>;
    type Output = Vec<u64>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let due = start + Duration::from_secs_f64(self.taken as f64 / self.rate);
        if Instant::now() >= due {
            self.sleep = None;
            return Poll::Ready(Ok(()));
        }
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        self.taken += batch.len() as u64;
        out.emit(batch);
        Ok(())
    }
}

/// CPU seconds this process has used (user + system, from `/proc/self/stat`; 0 where the
/// kernel does not say).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

struct Run {
    secs: f64,
    cpu: f64,
    checkpoints: Option<CheckpointReport>,
}

fn run(rows: u64, keys: u64, checkpoint: Option<CheckpointConfig>, pace: Option<f64>) -> Run {
    let mut cfg = PipelineConfig {
        workers: Some(2),
        ..PipelineConfig::default()
    };
    cfg.checkpoint = checkpoint;
    let mut p = Pipeline::with_config("keyed count", cfg);
    let mut s = p.source(
        "keys",
        Keys {
            next: 0,
            n: rows,
            keys,
        },
    );
    if let Some(rate) = pace {
        s = s.unary(
            "paced",
            Paced {
                rate,
                start: None,
                taken: 0,
                sleep: None,
            },
        );
    }
    let total = s
        .partition_with("by key group", |_, _| ByGroup)
        .unary_with("count", |_| Count::default())
        .parallelism(2)
        .sink(
            "total",
            Total {
                sum: 0,
                rate: None,
                start: None,
                taken: 0,
                sleep: None,
            },
        );
    let (start, cpu) = (Instant::now(), cpu_secs());
    let report = p.run().expect("the run");
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu;
    assert_eq!(total.take(), Some(rows), "every row counted once");
    Run {
        secs,
        cpu,
        checkpoints: report.checkpoints,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rows: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(300_000_000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let keys: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    println!("keyed count of {rows} rows over {keys} keys, count ×2, {rounds} rounds");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let (mut off_cpu, mut on_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let a = run(rows, keys, None, None);
        let sub = dir.path().join(format!("throughput-{round}"));
        let b = run(
            rows,
            keys,
            Some(CheckpointConfig::new(&sub).interval(Duration::from_secs(1))),
            None,
        );
        let c = b.checkpoints.expect("checkpoints on");
        println!(
            "round {round}: none {:.1} M rows/s ({:.1} M rows per CPU-s), 1 s checkpoints {:.1} M \
             rows/s ({:.1} M rows per CPU-s; {c})",
            rows as f64 / a.secs / 1e6,
            rows as f64 / a.cpu / 1e6,
            rows as f64 / b.secs / 1e6,
            rows as f64 / b.cpu / 1e6,
        );
        off_cpu.push(rows as f64 / a.cpu);
        on_cpu.push(rows as f64 / b.cpu);
        off.push(rows as f64 / a.secs);
        on.push(rows as f64 / b.secs);
    }
    let (off, on) = (median(off), median(on));
    let (off_cpu, on_cpu) = (median(off_cpu), median(on_cpu));
    println!(
        "median: none {:.1} M rows/s, 1 s checkpoints {:.1} M rows/s, ratio {:.3}; per CPU-s: \
         none {:.1} M, 1 s checkpoints {:.1} M, ratio {:.3}",
        off / 1e6,
        on / 1e6,
        on / off,
        off_cpu / 1e6,
        on_cpu / 1e6,
        on_cpu / off_cpu
    );
    // Behind a slow stage at a tenth of the unpaced rate, for about 8 s.
    let rate = off / 10.0;
    let slow_rows = (rate * 8.0) as u64;
    for (label, timeout) in [("aligned", None), ("unaligned past 100 ms", Some(100))] {
        let mut cfg = CheckpointConfig::new(dir.path().join(format!("slow-{label}")))
            .interval(Duration::from_secs(1));
        if let Some(ms) = timeout {
            cfg = cfg.alignment_timeout(Duration::from_millis(ms));
        }
        let r = run(slow_rows, keys, Some(cfg), Some(rate));
        let c = r.checkpoints.expect("checkpoints on");
        println!(
            "slow stage at {:.1} M rows/s, {label}: {:.1} s, {c}",
            rate / 1e6,
            r.secs
        );
    }
}
