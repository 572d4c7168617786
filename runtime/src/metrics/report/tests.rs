use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::metrics::{InstanceEntry, InstanceMetrics, NodeEntry, SAMPLE_ROWS};
use crate::stop::StopSignal;

const MS: u64 = 1_000_000;

/// gen → slow → noop in one task, then a sink: the task was busy 600 ms, idle 100 ms and
/// waited 300 ms, of which `noop` was pending in `poll_ready` 200 ms.
fn chain_registry() -> Registry {
    let epoch = Instant::now() - Duration::from_secs(1);
    let node = |name: &str, kind, upstream: Vec<usize>, chained_into| NodeEntry {
        name: name.to_string(),
        kind,
        parallelism: 1,
        upstream,
        chained_into,
    };
    let nodes = vec![
        node("gen", NodeKind::Source, vec![], None),
        node("slow", NodeKind::Operator, vec![0], Some(0)),
        node("noop", NodeKind::Operator, vec![1], Some(0)),
        node("sink", NodeKind::Sink, vec![2], None),
    ];
    let metrics: Vec<Arc<InstanceMetrics>> = (0..4)
        .map(|_| Arc::new(InstanceMetrics::new(epoch)))
        .collect();
    let task = &metrics[0];
    task.ns[0].store(600 * MS, Relaxed);
    task.ns[1].store(100 * MS, Relaxed);
    task.ns[2].store(300 * MS, Relaxed);
    task.state
        .store(crate::metrics::TimeState::Done as u8, Relaxed);
    metrics[1].share_time_with(task.clone());
    metrics[2].share_time_with(task.clone());
    // `slow`: 1 000 rows, 100 of them timed at 50 ms: 500 ms in all.
    metrics[1].rows_in.add(1_000);
    metrics[1].note_sample(100, 50 * MS);
    // `noop`: 1 000 rows, all timed, 10 ms; pending 200 ms.
    metrics[2].rows_in.add(1_000);
    metrics[2].note_sample(1_000, 10 * MS);
    metrics[2].paced_ns.add(200 * MS);
    metrics[3]
        .state
        .store(crate::metrics::TimeState::Done as u8, Relaxed);
    Registry {
        pipeline: "chain".into(),
        stop: Arc::new(StopSignal::default()),
        epoch,
        nodes,
        instances: metrics
            .into_iter()
            .enumerate()
            .map(|(node, metrics)| InstanceEntry {
                node,
                instance: 0,
                metrics,
            })
            .collect(),
        edges: Vec::new(),
        checkpoints: std::sync::OnceLock::new(),
    }
}

#[test]
fn a_chains_time_is_split_between_its_members() {
    let times = chained_times(&chain_registry());
    // Busy: the members' own code, the rest to the head; `noop`'s pending time is its own
    // busy time and its producers' backpressure; the edge's 100 ms is everyone's.
    assert_eq!(times[&(1, 0)], [500 * MS, 100 * MS, 300 * MS, 0]);
    assert_eq!(times[&(2, 0)], [210 * MS, 100 * MS, 100 * MS, 0]);
    assert_eq!(times[&(0, 0)], [90 * MS, 100 * MS, 300 * MS, 0]);
    assert!(!times.contains_key(&(3, 0)));
}

#[test]
fn sampled_estimates_never_exceed_the_tasks_busy_time() {
    let reg = chain_registry();
    // `slow` claims 1 000 rows at 5 ms per row timed: far more than the task's 600 ms.
    reg.instances[1].metrics.note_sample(100, 5_000 * MS);
    let times = chained_times(&reg);
    let busy: u64 = (0..3).map(|n| times[&(n, 0)][0]).sum();
    // The code estimates are scaled into the 600 ms; `noop`'s 200 ms pending comes on top.
    assert!(busy <= 800 * MS + 2, "{busy}");
    assert!(times[&(1, 0)][0] > times[&(2, 0)][0]);
}

#[test]
fn the_report_names_the_chain_member_that_costs_most() {
    let report = build(&chain_registry(), true);
    let b = report.bottleneck.expect("a bottleneck");
    // `gen` waits for `slow` (300 ms/s), `slow` for `noop` (300), `noop` for `sink` (100):
    // of those, `slow` is the busiest (500 ms/s), not the chain's last member.
    assert_eq!(b.operator, "slow");
    assert_eq!(b.instance, None);
    assert!(!report.stopped);
}

#[test]
fn sampling_times_a_batch_once_enough_rows_have_passed() {
    let m = InstanceMetrics::new(Instant::now());
    // Large batches: every one is timed.
    assert!((0..4).all(|_| m.sample_due(SAMPLE_ROWS as usize)));
    // Batches of one row: one in `SAMPLE_ROWS`.
    let due = (0..10 * SAMPLE_ROWS).filter(|_| m.sample_due(1)).count();
    assert_eq!(due, 10);
}
