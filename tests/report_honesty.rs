//! The run report tells the truth: the in-flight figure under fan-out, the operator it names as
//! the bottleneck (chained, parallel, finishing), and how the run ended.
//!
//! Per-row costs are busy-spun for a known time, and every assertion compares figures of the
//! same run with a wide margin, so a loaded machine changes the numbers but not the verdict.

mod common;

use std::num::NonZeroU64;
use std::task::{Context, Poll};
use std::time::Duration;

use common::op;
use weir::operators::keyed::aggregate::Count as KeyCount;
use weir::operators::overload::caller::CallerConfig;
use weir::operators::overload::limiter::AdaptiveConcurrencyConfig;
use weir::prelude::*;
use weir::runtime::metrics::Bottleneck;
use weir::runtime::partition::{Partitioner, TargetLoad};
use weir::runtime::{EdgeConfig, InputPort, OperatorError, PipelineConfig, RunReport};

/// A source of `batches` batches of `rows` rows, each allocated with `capacity` slots: a batch
/// holds more memory than its copies (a cloned `Vec` keeps no spare capacity).
struct Roomy {
    batches: u64,
    rows: usize,
    capacity: usize,
}

impl Source for Roomy {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        _cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.batches == 0 {
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        self.batches -= 1;
        let mut batch = Vec::with_capacity(self.capacity);
        batch.extend(0..self.rows as u64);
        out.emit(batch);
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

#[test]
fn peak_in_flight_under_fan_out_stays_within_the_edge_bound() {
    const BATCHES: u64 = 300;
    const ROWS: usize = 32;
    const CAPACITY: usize = 1024;
    let config = PipelineConfig {
        edge: EdgeConfig::default()
            .with_capacity(2)
            .with_max_bytes(12 << 10),
        ..common::config(ROWS)
    };
    let mut p = Pipeline::with_config("fan-out", config);
    let gen = p.source(
        "gen",
        Roomy {
            batches: BATCHES,
            rows: ROWS,
            capacity: CAPACITY,
        },
    );
    let fast = gen.clone().sink("fast", Count::new());
    // 9 600 rows at 100 000 rows/s: about 0.1 s, with `gen` waiting for `slow` throughout.
    let slow = gen.sink("slow", Throttle::new(Count::new(), 100_000.0));
    let report = common::run_guarded(p).unwrap();
    let total = BATCHES * ROWS as u64;
    assert_eq!((fast.take(), slow.take()), (Some(total), Some(total)));

    // One call's output held (the batch and its copy), plus every edge's bound.
    let (big, copy) = ((CAPACITY * 8) as u64, (ROWS * 8) as u64);
    let gen_report = &op(&report, "gen").instances[0];
    assert!(
        gen_report.peak_held_bytes > 0,
        "gen never waited:\n{report}"
    );
    assert!(
        gen_report.peak_held_bytes <= big + copy,
        "gen held {} B, more than one batch and its copy",
        gen_report.peak_held_bytes
    );
    let edges: u64 = report
        .edges
        .iter()
        .map(|e| (e.max_bytes as u64).max(big))
        .sum();
    assert!(
        report.peak_in_flight_bytes <= edges + big + copy,
        "peak in flight {} B > bound {} B:\n{report}",
        report.peak_in_flight_bytes,
        edges + big + copy
    );
}

/// A known amount of work (`steps` rounds of arithmetic the compiler cannot drop): a per-row
/// cost in CPU time, so a loaded machine stretches it as much as the code around it.
fn work(steps: u64, x: u64) -> u64 {
    let mut acc = x;
    for i in 0..steps {
        acc = std::hint::black_box(acc.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    acc
}

fn bottleneck(report: &RunReport) -> &Bottleneck {
    report
        .bottleneck
        .as_ref()
        .unwrap_or_else(|| panic!("no bottleneck named:\n{report}"))
}

/// Source → `map_async` (1 ms per row, 16 at a time) → sink, chained: the time `lookup` spends
/// pending in `poll_ready` is its own busy time, not backpressure from the idle sink. The verdict
/// is the same with chaining off.
#[test]
fn chained_pacing_is_the_paced_operators_busy_time() {
    for chaining in [Chaining::Operators, Chaining::Off] {
        let concurrency = AdaptiveConcurrencyConfig {
            initial: 16,
            min: 16,
            max: 16,
            ..AdaptiveConcurrencyConfig::default()
        };
        let config = CallerConfig {
            concurrency,
            ..CallerConfig::default()
        };
        let mut p = Pipeline::with_config(
            "paced",
            PipelineConfig {
                chaining,
                ..common::config(64)
            },
        );
        let rows = p
            .source("gen", Generator::new(1_600, |i| i))
            .map_async("lookup", config, |x: u64| async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(x)
            })
            .sink("sink", Count::new());
        let report = common::run_guarded(p).unwrap();
        assert_eq!(rows.take(), Some(1_600));
        let chained = op(&report, "lookup").chained_into.is_some();
        assert_eq!(chained, chaining == Chaining::Operators);
        assert_eq!(bottleneck(&report).operator, "lookup", "\n{report}");
        let (lookup, sink) = (op(&report, "lookup"), op(&report, "sink"));
        assert!(
            lookup.busy_ms_per_s > 5.0 * sink.busy_ms_per_s,
            "lookup is the busy one:\n{report}"
        );
    }
}

/// gen → `slow` (a few µs of work per row) → `noop`, chained: the member that costs most is named,
/// not the chain's last.
#[test]
fn the_costliest_member_of_a_chain_is_named() {
    const ROWS: u64 = 8_000;
    // Batches of `SAMPLE_ROWS` rows: every one is timed (smaller ones are sampled, which a
    // loaded machine's preemption makes noisy).
    let mut p = common::pipeline("chain", weir::runtime::metrics::SAMPLE_ROWS as usize);
    let rows = p
        .source("gen", Generator::new(ROWS, |i| i))
        .map("slow", |x: u64| work(1_000, x))
        .map("noop", |x: u64| x)
        .sink("sink", Count::new());
    let report = common::run_guarded(p).unwrap();
    assert_eq!(rows.take(), Some(ROWS));
    assert_eq!(op(&report, "noop").chained_into.as_deref(), Some("gen"));
    assert_eq!(bottleneck(&report).operator, "slow", "\n{report}");
    let (slow, noop) = (op(&report, "slow"), op(&report, "noop"));
    assert!(
        slow.busy_ms_per_s > 10.0 * noop.busy_ms_per_s,
        "slow's own time is its own:\n{report}"
    );
}

/// Nine rows in ten to target 0, the tenth to target 1.
struct NineToOne;

impl Partitioner<Vec<u64>> for NineToOne {
    fn partition(
        &mut self,
        batch: Vec<u64>,
        loads: &[TargetLoad],
        out: &mut Vec<(usize, Vec<u64>)>,
    ) {
        let (hot, cold): (Vec<u64>, Vec<u64>) = batch.into_iter().partition(|x| x % 10 != 0);
        out.push((0, hot));
        out.push((1 % loads.len(), cold));
    }
}

/// A stage at parallelism 2 with 90 % of rows on instance 0, after a cheap map on its own edge:
/// the stage's busiest instance is named, with its share of the rows, and shown on its own line.
#[test]
fn the_busiest_instance_of_a_skewed_stage_is_named() {
    const ROWS: u64 = 20_000;
    let config = PipelineConfig {
        chaining: Chaining::Off,
        ..common::config(256)
    };
    let mut p = Pipeline::with_config("skew", config);
    let rows = p
        .source("gen", Generator::new(ROWS, |i| i))
        .map("cheap", |x: u64| x + 1)
        .partition_with("nine-to-one", |_, _| NineToOne)
        .map("work", |x: u64| work(2_000, x))
        .parallelism(2)
        .sink("sink", Count::new());
    let report = common::run_guarded(p).unwrap();
    assert_eq!(rows.take(), Some(ROWS));
    let b = bottleneck(&report);
    assert_eq!(
        (b.operator.as_str(), b.instance),
        ("work", Some(0)),
        "\n{report}"
    );
    let share = b.rows_share.expect("a parallel bottleneck names its share");
    assert!((share - 0.9).abs() < 1e-9, "share {share}");
    let work = op(&report, "work");
    // Nine times the work; wall-clock busy time on a loaded machine keeps the order, not the
    // ratio (a preempted instance is busy while it waits for a core).
    assert_eq!(work.busiest_instance, 0);
    assert!(work.instances[0].busy_ms_per_s > work.instances[1].busy_ms_per_s);
    let text = report.to_string();
    assert!(text.contains("\n    #0 "), "per-instance lines:\n{text}");
    assert!(text.contains("`work` instance 0 of 2"), "\n{text}");
    assert!(text.contains("it took 90 % of the rows"), "\n{text}");
}

/// A sink whose commit (in `finish`: work worth 5 000 rows of `slow`) comes after the end of
/// its input.
struct Committing {
    rows: u64,
}

impl Sink for Committing {
    type Input = Vec<u64>;
    type Output = u64;

    fn on_batch(&mut self, _port: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.rows += batch.len() as u64;
        Ok(())
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        std::hint::black_box(work(5_000 * 200, self.rows));
        Ok(self.rows)
    }
}

/// A 1 000-row job whose sink commits for longer than the job ran: the commit is finishing
/// time, shown apart, and the operator that limited the rows' rate is named.
#[test]
fn commit_time_after_the_input_does_not_make_the_bottleneck() {
    let config = PipelineConfig {
        chaining: Chaining::Off,
        ..common::config(100)
    };
    let mut p = Pipeline::with_config("commit", config);
    let rows = p
        .source("gen", Generator::new(1_000, |i| i))
        .map("slow", |x: u64| work(200, x))
        .sink("dead_letters_with_a_long_name", Committing { rows: 0 });
    let report = common::run_guarded(p).unwrap();
    assert_eq!(rows.take(), Some(1_000));
    assert_eq!(bottleneck(&report).operator, "slow", "\n{report}");
    let sink = op(&report, "dead_letters_with_a_long_name");
    assert!(
        sink.finishing_ms_per_s > 3.0 * sink.busy_ms_per_s,
        "the commit is finishing time:\n{report}"
    );
    let text = report.to_string();
    let finishing = text
        .lines()
        .find(|l| l.starts_with("  finishing after end of input (not busy): "))
        .unwrap_or_else(|| panic!("no finishing line:\n{text}"));
    assert!(
        finishing.contains("`dead_letters_with_a_long_name` "),
        "\n{text}"
    );
    // The table's columns line up whatever the names' length.
    let lines: Vec<&str> = text.lines().skip(1).take(4).collect();
    let end = lines[0].find("backpr.").expect("header") + "backpr.".len();
    for line in &lines {
        assert_eq!(line.chars().count(), end, "misaligned:\n{text}");
    }
}

/// A run ended by `RunHandle::stop` says so, in words and in JSON; one that read to the end
/// says "finished".
#[test]
fn a_stopped_run_reports_stopped() {
    let mut p = common::pipeline("endless", 64);
    let _rows = p
        .source("gen", Generator::new(u64::MAX, |i| i))
        .sink("sink", Count::new());
    let handle = p.spawn().unwrap();
    handle.stop();
    let report = common::guarded("join", move || handle.join()).unwrap();
    assert!(report.finished && report.stopped);
    assert!(report
        .to_string()
        .starts_with("pipeline `endless` stopped after"));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["stopped"], serde_json::Value::Bool(true));

    let mut p = common::pipeline("short", 64);
    let _rows = p
        .source("gen", Generator::new(100, |i| i))
        .sink("sink", Count::new());
    let report = common::run_guarded(p).unwrap();
    assert!(report.finished && !report.stopped);
    assert!(report
        .to_string()
        .starts_with("pipeline `short` finished after"));
}

/// A keyed count at parallelism 2, each instance paced to 200 000 rows/s, with one key taking
/// 90 % of the rows: the instance that owns it is named, with the hot key's share.
#[test]
fn a_hot_keys_share_is_named_with_its_instance() {
    const ROWS: u64 = 20_000;
    let config = PipelineConfig {
        chaining: Chaining::Off,
        ..common::config(256)
    };
    let mut p = Pipeline::with_config("hot-key", config);
    let counts = p
        .source("gen", Generator::new(ROWS, |i| i))
        .map("cheap", |x: u64| x + 1)
        .key_by(|x: &u64| if x.is_multiple_of(10) { *x } else { 0 })
        .parallelism(2)
        .worker_capacity(NonZeroU64::new(200_000).expect("non-zero"))
        .aggregate("count", KeyCount::new())
        .collect("out");
    let report = common::run_guarded(p).unwrap();
    let counts = counts.take().expect("counts");
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), ROWS);
    let count = op(&report, "count");
    let hot = count
        .instances
        .iter()
        .max_by_key(|r| r.rows_in)
        .expect("two instances")
        .instance;
    let b = bottleneck(&report);
    assert_eq!(
        (b.operator.as_str(), b.instance),
        ("count", Some(hot)),
        "\n{report}"
    );
    let share = b
        .hot_key_share
        .expect("a keyed stage reports its hottest key");
    assert!(
        (share - 0.9).abs() < 1e-9,
        "hot key share {share}:\n{report}"
    );
    assert!(
        report.to_string().contains("its hottest key 90 % of all"),
        "\n{report}"
    );
}
