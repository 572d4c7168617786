//! The run report: what happened, who was busy, who waited, and which operator was the constraint.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use super::latency::BUCKETS;
use super::{LatencyReport, NodeKind, OverflowCounts, Registry};
use crate::event_time::EventTimeState;

/// Rows dropped, spilled or rejected under overflow policies, by reason (see
/// [`Overflow`](crate::Overflow)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OverflowReport {
    /// Rows dropped because they found no room (`DropNewest`).
    pub dropped_newest: u64,
    /// Rows evicted from a full queue by newer ones (`DropOldest`).
    pub dropped_oldest: u64,
    /// Rows written to a spill.
    pub spilled: u64,
    /// Rows read back from a spill and sent on.
    pub unspilled: u64,
    /// Rows dropped because the spill was full.
    pub spill_full: u64,
    /// Rows dropped because the spill could not be written or read back.
    pub spill_failed: u64,
    /// Spilled records (batches) lost to damage in a spill file.
    pub spill_damaged_records: u64,
    /// Bytes of spill files skipped as damaged.
    pub spill_damaged_bytes: u64,
    /// Rows refused to a client with a retry hint (`Reject`).
    pub rejected: u64,
    /// Dead letters not stored because their queue was full (not rows; not in [`lost`](Self::lost)).
    pub dead_letters_not_stored: u64,
}

impl OverflowReport {
    fn read(c: &OverflowCounts) -> Self {
        Self {
            dropped_newest: c.dropped_newest.load(Relaxed),
            dropped_oldest: c.dropped_oldest.load(Relaxed),
            spilled: c.spilled.load(Relaxed),
            unspilled: c.unspilled.load(Relaxed),
            spill_full: c.spill_full.load(Relaxed),
            spill_failed: c.spill_failed.load(Relaxed),
            spill_damaged_records: c.spill_damaged_records.load(Relaxed),
            spill_damaged_bytes: c.spill_damaged_bytes.load(Relaxed),
            rejected: c.rejected.load(Relaxed),
            dead_letters_not_stored: c.dead_letters_not_stored.load(Relaxed),
        }
    }

    fn add(&mut self, o: &OverflowReport) {
        self.dropped_newest += o.dropped_newest;
        self.dropped_oldest += o.dropped_oldest;
        self.spilled += o.spilled;
        self.unspilled += o.unspilled;
        self.spill_full += o.spill_full;
        self.spill_failed += o.spill_failed;
        self.spill_damaged_records += o.spill_damaged_records;
        self.spill_damaged_bytes += o.spill_damaged_bytes;
        self.rejected += o.rejected;
        self.dead_letters_not_stored += o.dead_letters_not_stored;
    }

    /// Rows lost to the pipeline: dropped for any reason, or rejected.
    pub fn lost(&self) -> u64 {
        self.dropped_newest
            + self.dropped_oldest
            + self.spill_full
            + self.spill_failed
            + self.spill_damaged_records
            + self.rejected
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `(name, rows)` of every non-zero reason, in report order.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        [
            ("dropped newest", self.dropped_newest),
            ("dropped oldest", self.dropped_oldest),
            ("spilled", self.spilled),
            ("unspilled", self.unspilled),
            ("spill full", self.spill_full),
            ("spill failed", self.spill_failed),
            ("spill damaged records", self.spill_damaged_records),
            ("spill damaged bytes", self.spill_damaged_bytes),
            ("rejected", self.rejected),
            ("dead letters not stored", self.dead_letters_not_stored),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// One operator instance's figures.
#[derive(Clone, Debug, Serialize)]
pub struct InstanceReport {
    /// Instance index.
    pub instance: usize,
    /// Rows received.
    pub rows_in: u64,
    /// Rows sent.
    pub rows_out: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Batches sent.
    pub batches_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Milliseconds per second spent running operator code.
    pub busy_ms_per_s: f64,
    /// Milliseconds per second spent waiting for input.
    pub idle_ms_per_s: f64,
    /// Milliseconds per second spent waiting for downstream credit.
    pub backpressured_ms_per_s: f64,
    /// Milliseconds per second spent completing work and closing after the end of input (a
    /// sink's commit, say): not busy time, since it does not limit the pipeline's rate.
    pub finishing_ms_per_s: f64,
    /// Rows discarded because their consumers had gone away.
    pub dropped_downstream_closed: u64,
    /// Peak bytes held in the instance's output while waiting for credit.
    pub peak_held_bytes: u64,
    /// Records sent to the dead-letter port.
    pub dead_letters: u64,
    /// Rows skipped on purpose.
    pub skipped: u64,
    /// State entries the instance holds now (keyed operators; 0 for stateless ones).
    pub state_keys: u64,
    /// State bytes the instance holds now.
    pub state_bytes: u64,
    /// The most state entries it held at once.
    pub peak_state_keys: u64,
    /// The most state bytes it held at once.
    pub peak_state_bytes: u64,
    /// The most updates of its most-updated key (keyed operators that count them; else 0).
    pub hottest_key_updates: u64,
    /// Rows dropped, spilled or rejected under overflow policies.
    pub overflow: OverflowReport,
    /// For a source: the last watermark it sent; for an operator or a sink: the last watermark
    /// over its inputs (ms since the epoch; `i64::MAX` after the end). `None` before the first.
    pub watermark: Option<i64>,
    /// For a source with a [`WatermarkStrategy`](crate::WatermarkStrategy): its event-time
    /// state and time paused by alignment.
    pub event_time: Option<EventTimeReport>,
}

/// A source instance's event time (see [`event_time`](crate::event_time)).
#[derive(Clone, Debug, Serialize)]
pub struct EventTimeReport {
    /// What it is doing now: active, blocked (waiting for credit), idle, paused by alignment,
    /// or ended.
    pub state: EventTimeState,
    /// Milliseconds it has spent paused by watermark alignment.
    pub aligned_paused_ms: f64,
    /// How many times alignment paused it.
    pub alignment_pauses: u64,
    /// How many times it went idle.
    pub idle_periods: u64,
}

/// One operator's figures, summed over its instances (time figures are averaged; the busiest
/// instance's are given apart).
#[derive(Clone, Debug, Serialize)]
pub struct OperatorReport {
    /// The operator's name.
    pub name: String,
    /// Source, operator or sink.
    pub kind: NodeKind,
    /// Number of instances.
    pub parallelism: usize,
    /// The operator whose task this one runs in, when it is chained (its time figures are its
    /// share of that task's, see [`metrics`](crate::metrics#chained-operators)).
    pub chained_into: Option<String>,
    /// Rows received.
    pub rows_in: u64,
    /// Rows sent.
    pub rows_out: u64,
    /// Rows per second through the operator (out for sources, in otherwise).
    pub rows_per_s: f64,
    /// Mean over instances, ms/s.
    pub busy_ms_per_s: f64,
    /// Mean over instances, ms/s.
    pub idle_ms_per_s: f64,
    /// Mean over instances, ms/s.
    pub backpressured_ms_per_s: f64,
    /// Mean over instances, ms/s.
    pub finishing_ms_per_s: f64,
    /// The busiest instance.
    pub busiest_instance: usize,
    /// The busiest instance's busy time, ms/s: what the bottleneck is judged on.
    pub max_busy_ms_per_s: f64,
    /// The most backpressured instance's backpressured time, ms/s.
    pub max_backpressured_ms_per_s: f64,
    /// Records sent to the dead-letter port.
    pub dead_letters: u64,
    /// Rows skipped on purpose.
    pub skipped: u64,
    /// State entries held now, summed over instances.
    pub state_keys: u64,
    /// State bytes held now, summed over instances.
    pub state_bytes: u64,
    /// Sum of the instances' peak state entries (an upper bound of the operator's peak).
    pub peak_state_keys: u64,
    /// Sum of the instances' peak state bytes (an upper bound of the operator's peak).
    pub peak_state_bytes: u64,
    /// Rows dropped, spilled or rejected under overflow policies.
    pub overflow: OverflowReport,
    /// For a sink: end-to-end latency from the latency markers it received, over its instances
    /// (`None` without markers).
    pub latency: Option<LatencyReport>,
    /// Per-instance figures.
    pub instances: Vec<InstanceReport>,
}

/// One physical edge.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeReport {
    /// Producer operator.
    pub from: String,
    /// Producer instance.
    pub from_instance: usize,
    /// Consumer operator.
    pub to: String,
    /// Consumer instance.
    pub to_instance: usize,
    /// Slot capacity.
    pub capacity: usize,
    /// Byte bound.
    pub max_bytes: usize,
    /// Messages buffered at the time of the report.
    pub buffered: usize,
    /// Credit outstanding at the time of the report.
    pub outstanding_credit: usize,
    /// The consumer's credit limit at the time of the report: at most this many messages
    /// buffered plus granted; below `capacity` while the edge is sized by time
    /// ([`PipelineConfig::edge_target_time`](crate::PipelineConfig::edge_target_time)).
    pub credit_limit: usize,
    /// Bytes buffered at the time of the report.
    pub buffered_bytes: usize,
    /// The most bytes this edge held at once.
    pub peak_bytes: usize,
    /// Rows sent into this edge.
    pub rows_sent: usize,
    /// Rows sent but not received (after a run: never delivered, because the consumer stopped).
    pub rows_in_flight: usize,
}

/// The operator that limits the pipeline's throughput, and why weir thinks so.
#[derive(Clone, Debug, Serialize)]
pub struct Bottleneck {
    /// Its name.
    pub operator: String,
    /// Its busiest instance, when it runs several.
    pub instance: Option<usize>,
    /// Its number of instances.
    pub parallelism: usize,
    /// The busiest instance's share of the operator's rows (0 to 1), when it runs several: a
    /// skewed key sends most rows to one instance.
    pub rows_share: Option<f64>,
    /// The share of the operator's input (0 to 1) that its busiest instance's hottest key took,
    /// when the operator reports its keys' updates (a keyed stage does).
    pub hot_key_share: Option<f64>,
    /// Its busiest instance's busy time, ms/s.
    pub busy_ms_per_s: f64,
    /// The most backpressured of its upstream operators, if any was.
    pub backpressured_upstream: Option<String>,
    /// That upstream's backpressured time, ms/s.
    pub upstream_backpressured_ms_per_s: f64,
}

/// What a run did. `Display` for people, `Serialize` for machines.
///
/// # Examples
///
/// ```
/// # use std::task::{Context, Poll};
/// # use weir_runtime::{InputPort, OperatorError, Output, Pipeline, Sink, Source, SourceStatus};
/// # struct Upto(u64, u64);
/// # impl Source for Upto {
/// #     type Output = Vec<u64>;
/// #     fn poll_produce(&mut self, _: &mut Context<'_>, out: &mut Output<Vec<u64>>)
/// #         -> Poll<Result<SourceStatus, OperatorError>> {
/// #         while self.0 < self.1 && !out.is_full() { out.push(self.0); self.0 += 1; }
/// #         Poll::Ready(Ok(if self.0 == self.1 { SourceStatus::Done } else { SourceStatus::Continue }))
/// #     }
/// # }
/// # struct Sum(u64);
/// # impl Sink for Sum {
/// #     type Input = Vec<u64>;
/// #     type Output = u64;
/// #     fn on_batch(&mut self, _: InputPort, b: Vec<u64>) -> Result<(), OperatorError> {
/// #         self.0 += b.iter().sum::<u64>(); Ok(())
/// #     }
/// #     fn finish(&mut self) -> Result<u64, OperatorError> { Ok(self.0) }
/// # }
/// let mut p = Pipeline::new("sum");
/// p.source("numbers", Upto(0, 5_000)).sink("sum", Sum(0));
/// let report = p.run()?;
/// assert!(report.finished);
/// let source = &report.operators[0];
/// assert_eq!((source.name.as_str(), source.rows_out), ("numbers", 5_000));
/// assert_eq!(report.operators[1].rows_in, 5_000);
/// println!("{report}"); // the table, the bottleneck and the memory bound
/// let json = serde_json::to_value(&report).expect("a report serializes");
/// assert_eq!(json["operators"][0]["rows_out"], 5_000);
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// The pipeline's name.
    pub pipeline: String,
    /// Whether the run had finished when this report was made (false for live snapshots).
    pub finished: bool,
    /// Whether the run was asked to stop ([`RunHandle::stop`](crate::RunHandle::stop), a signal)
    /// before it ended: its sources stopped reading early, so the run did not see all its input.
    pub stopped: bool,
    /// Wall-clock seconds since the run started.
    pub elapsed_s: f64,
    /// Per operator, in graph order.
    pub operators: Vec<OperatorReport>,
    /// Per physical edge.
    pub edges: Vec<EdgeReport>,
    /// The operator that limits throughput.
    pub bottleneck: Option<Bottleneck>,
    /// Upper bound of the bytes in flight at any moment: the sum of every edge's peak and every
    /// instance's peak held output.
    pub peak_in_flight_bytes: u64,
    /// The configured bound on edge bytes: the sum of every edge's `max_bytes`.
    pub edge_bytes_bound: u64,
    /// Rows never delivered because their consumers had stopped early: refused by a closed edge,
    /// or left in an edge when its consumer went away. Zero in a run that reads to the end.
    pub dropped_downstream_closed: u64,
    /// Records sent to dead-letter ports, over all operators.
    pub dead_letters: u64,
    /// Rows skipped on purpose, over all operators.
    pub skipped: u64,
    /// Rows dropped, spilled or rejected under overflow policies, over all operators.
    pub overflow: OverflowReport,
    /// End-to-end latency (source → sink) from the latency markers every sink received (see
    /// [`PipelineConfig::latency_marker_interval`](crate::PipelineConfig::latency_marker_interval));
    /// `None` when no marker reached a sink (markers off, or a run shorter than one interval).
    pub latency: Option<LatencyReport>,
    /// Checkpoints, when they are on.
    pub checkpoints: Option<super::CheckpointReport>,
}

fn per_s(ns: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        0.0
    } else {
        ns as f64 / elapsed_ns as f64 * 1000.0
    }
}

pub(super) fn build(reg: &Registry, finished: bool) -> RunReport {
    let elapsed = reg.epoch.elapsed();
    let elapsed_ns = elapsed.as_nanos() as u64;
    let mut operators: Vec<OperatorReport> = reg
        .nodes
        .iter()
        .map(|n| OperatorReport {
            name: n.name.clone(),
            kind: n.kind,
            parallelism: n.parallelism,
            chained_into: n.chained_into.map(|h| reg.nodes[h].name.clone()),
            rows_in: 0,
            rows_out: 0,
            rows_per_s: 0.0,
            busy_ms_per_s: 0.0,
            idle_ms_per_s: 0.0,
            backpressured_ms_per_s: 0.0,
            finishing_ms_per_s: 0.0,
            busiest_instance: 0,
            max_busy_ms_per_s: 0.0,
            max_backpressured_ms_per_s: 0.0,
            dead_letters: 0,
            skipped: 0,
            state_keys: 0,
            state_bytes: 0,
            peak_state_keys: 0,
            peak_state_bytes: 0,
            overflow: OverflowReport::default(),
            latency: None,
            instances: Vec::new(),
        })
        .collect();
    // Marker ages per operator (sinks only record them) and over the run.
    let mut latency: Vec<Option<Vec<u64>>> = vec![None; reg.nodes.len()];
    let mut all_latency = vec![0u64; BUCKETS];
    let mut peak_in_flight = 0u64;
    let mut dropped = 0u64;
    let chained = chained_times(reg);
    for entry in &reg.instances {
        let m = &entry.metrics;
        let [busy, idle, bp, fin] = chained
            .get(&(entry.node, entry.instance))
            .copied()
            .unwrap_or_else(|| m.times_ns());
        let r = InstanceReport {
            instance: entry.instance,
            rows_in: m.rows_in.load(Relaxed),
            rows_out: m.rows_out.load(Relaxed),
            batches_in: m.batches_in.load(Relaxed),
            batches_out: m.batches_out.load(Relaxed),
            bytes_in: m.bytes_in.load(Relaxed),
            bytes_out: m.bytes_out.load(Relaxed),
            busy_ms_per_s: per_s(busy, elapsed_ns),
            idle_ms_per_s: per_s(idle, elapsed_ns),
            backpressured_ms_per_s: per_s(bp, elapsed_ns),
            finishing_ms_per_s: per_s(fin, elapsed_ns),
            dropped_downstream_closed: m.dropped_downstream_closed.load(Relaxed),
            peak_held_bytes: m.peak_held_bytes.load(Relaxed),
            dead_letters: m.dead_letters.load(Relaxed),
            skipped: m.skipped.load(Relaxed),
            state_keys: m.state_keys.load(Relaxed),
            state_bytes: m.state_bytes.load(Relaxed),
            peak_state_keys: m.peak_state_keys.load(Relaxed),
            peak_state_bytes: m.peak_state_bytes.load(Relaxed),
            hottest_key_updates: m.peak_hottest_key_updates.get(),
            overflow: OverflowReport::read(&m.overflow),
            watermark: m.watermark().map(|t| t.0),
            event_time: m.event_time().map(|state| EventTimeReport {
                state,
                aligned_paused_ms: m.aligned_ns() as f64 / 1e6,
                alignment_pauses: m.alignment_pauses.get(),
                idle_periods: m.idle_periods.get(),
            }),
        };
        peak_in_flight = peak_in_flight.saturating_add(r.peak_held_bytes);
        dropped = dropped.saturating_add(r.dropped_downstream_closed);
        let counts = latency[entry.node].get_or_insert_with(|| vec![0; BUCKETS]);
        if m.add_latency_to(counts) {
            m.add_latency_to(&mut all_latency);
        }
        let op = &mut operators[entry.node];
        op.rows_in += r.rows_in;
        op.rows_out += r.rows_out;
        op.busy_ms_per_s += r.busy_ms_per_s;
        op.idle_ms_per_s += r.idle_ms_per_s;
        op.backpressured_ms_per_s += r.backpressured_ms_per_s;
        op.finishing_ms_per_s += r.finishing_ms_per_s;
        if op.instances.is_empty() || r.busy_ms_per_s > op.max_busy_ms_per_s {
            op.busiest_instance = r.instance;
            op.max_busy_ms_per_s = r.busy_ms_per_s;
        }
        op.max_backpressured_ms_per_s = op.max_backpressured_ms_per_s.max(r.backpressured_ms_per_s);
        op.dead_letters += r.dead_letters;
        op.skipped += r.skipped;
        op.state_keys += r.state_keys;
        op.state_bytes += r.state_bytes;
        op.peak_state_keys += r.peak_state_keys;
        op.peak_state_bytes += r.peak_state_bytes;
        op.overflow.add(&r.overflow);
        op.instances.push(r);
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    for (op, counts) in operators.iter_mut().zip(&latency) {
        op.latency = counts.as_deref().and_then(LatencyReport::of);
    }
    for op in &mut operators {
        let n = op.instances.len().max(1) as f64;
        op.busy_ms_per_s /= n;
        op.idle_ms_per_s /= n;
        op.backpressured_ms_per_s /= n;
        op.finishing_ms_per_s /= n;
        let rows = if op.kind == NodeKind::Source {
            op.rows_out
        } else {
            op.rows_in
        };
        op.rows_per_s = rows as f64 / secs;
    }
    let mut edge_bound = 0u64;
    let edges = reg
        .edges
        .iter()
        .map(|e| {
            let s = e.probe.stats();
            peak_in_flight = peak_in_flight.saturating_add(s.peak_bytes as u64);
            edge_bound = edge_bound.saturating_add(s.max_bytes as u64);
            if finished {
                dropped = dropped.saturating_add(s.rows_in_flight() as u64);
            }
            EdgeReport {
                from: reg.nodes[e.from].name.clone(),
                from_instance: e.from_instance,
                to: reg.nodes[e.to].name.clone(),
                to_instance: e.to_instance,
                capacity: s.capacity,
                max_bytes: s.max_bytes,
                buffered: s.buffered,
                outstanding_credit: s.outstanding_credit,
                credit_limit: s.credit_limit,
                buffered_bytes: s.buffered_bytes,
                peak_bytes: s.peak_bytes,
                rows_sent: s.rows_sent,
                rows_in_flight: s.rows_in_flight(),
            }
        })
        .collect();
    let bottleneck = find_bottleneck(reg, &operators);
    let dead_letters = operators.iter().map(|o| o.dead_letters).sum();
    let skipped = operators.iter().map(|o| o.skipped).sum();
    let mut overflow = OverflowReport::default();
    for op in &operators {
        overflow.add(&op.overflow);
    }
    RunReport {
        pipeline: reg.pipeline.clone(),
        finished,
        stopped: reg.stop.is_stopped(),
        elapsed_s: elapsed.as_secs_f64(),
        operators,
        edges,
        bottleneck,
        peak_in_flight_bytes: peak_in_flight,
        edge_bytes_bound: edge_bound,
        dropped_downstream_closed: dropped,
        dead_letters,
        skipped,
        overflow,
        latency: LatencyReport::of(&all_latency),
        checkpoints: reg.checkpoints.get().map(|c| c.report()),
    }
}

/// The time figures of every instance of a chain of two or more operators, split between them
/// (see [`metrics`](super#chained-operators)): `(node, instance) -> [busy, idle, bp, finishing]`.
fn chained_times(reg: &Registry) -> HashMap<(usize, usize), [u64; 4]> {
    let mut out = HashMap::new();
    if reg.nodes.iter().all(|n| n.chained_into.is_none()) {
        return out;
    }
    // Members of each chain in order: a member's producer is its single upstream.
    let depth = |mut n: usize| {
        let mut d = 0;
        while reg.nodes[n].chained_into.is_some() {
            match reg.nodes[n].upstream.first() {
                Some(&u) => n = u,
                None => break,
            }
            d += 1;
        }
        d
    };
    let mut chains: HashMap<usize, Vec<(usize, usize)>> = HashMap::new();
    for (n, node) in reg.nodes.iter().enumerate() {
        if let Some(head) = node.chained_into {
            chains.entry(head).or_default().push((depth(n), n));
        }
    }
    let metrics: HashMap<(usize, usize), &super::InstanceMetrics> = reg
        .instances
        .iter()
        .map(|e| ((e.node, e.instance), &*e.metrics))
        .collect();
    for (head, mut members) in chains {
        members.sort_unstable();
        for instance in 0..reg.nodes[head].parallelism {
            let Some(task) = metrics.get(&(head, instance)) else {
                continue;
            };
            let [busy, idle, bp, fin] = task.times_ns();
            let own: Vec<super::ChainedTime> = members
                .iter()
                .map(|&(_, n)| {
                    metrics
                        .get(&(n, instance))
                        .map(|m| m.chained_ns())
                        .unwrap_or_default()
                })
                .collect();
            // Sampled estimates never claim more than the task was busy.
            let code: u64 = own.iter().map(|t| t.code).sum();
            let scale = if code > busy {
                busy as f64 / code as f64
            } else {
                1.0
            };
            let paced: u64 = own.iter().map(|t| t.paced).sum();
            let edge_bp = bp.saturating_sub(paced);
            let mut code_left = busy;
            // Walking back from the tail: a member waits for the members after it.
            let mut paced_after = 0u64;
            for (&(_, n), t) in members.iter().zip(&own).rev() {
                let code = (t.code as f64 * scale) as u64;
                code_left = code_left.saturating_sub(code);
                out.insert(
                    (n, instance),
                    [code + t.paced, idle, edge_bp + paced_after, fin],
                );
                paced_after += t.paced;
            }
            out.insert(
                (head, instance),
                [code_left, idle, edge_bp + paced_after, fin],
            );
        }
    }
    out
}

/// Finishing time below this (ms/s) is not worth a line in the report.
const FINISHING_SHOWN_MS: f64 = 5.0;

/// Backpressure below this (ms/s) upstream of an operator is noise, not a constraint.
const BACKPRESSURE_SIGNIFICANT_MS: f64 = 50.0;

/// The bottleneck is the operator with the busiest instance among those whose producers are
/// backpressured (they wait for it); without significant backpressure anywhere, the operator
/// with the busiest instance overall. A chained operator's figures are its own share of its
/// task's (see [`chained_times`]), so a producer chained to it waits for it as across an edge.
///
/// Instances are judged one by one, not averaged: a parallel operator is as slow as its
/// busiest instance (a hot key makes one instance the constraint while the others idle).
fn find_bottleneck(reg: &Registry, ops: &[OperatorReport]) -> Option<Bottleneck> {
    let mut best: Option<(&OperatorReport, Option<&OperatorReport>)> = None;
    for (i, op) in ops.iter().enumerate() {
        let upstream = reg.nodes[i]
            .upstream
            .iter()
            .map(|&u| &ops[u])
            .max_by(|a, b| {
                a.max_backpressured_ms_per_s
                    .total_cmp(&b.max_backpressured_ms_per_s)
            });
        let Some(up) = upstream else { continue };
        if up.max_backpressured_ms_per_s < BACKPRESSURE_SIGNIFICANT_MS {
            continue;
        }
        if best.is_none_or(|(b, _)| op.max_busy_ms_per_s > b.max_busy_ms_per_s) {
            best = Some((op, Some(up)));
        }
    }
    let (op, up) = best.or_else(|| {
        ops.iter()
            .max_by(|a, b| a.max_busy_ms_per_s.total_cmp(&b.max_busy_ms_per_s))
            .map(|op| (op, None))
    })?;
    let parallel = op.instances.len() > 1;
    let rows = |r: &InstanceReport| {
        if op.kind == NodeKind::Source {
            r.rows_out
        } else {
            r.rows_in
        }
    };
    let total: u64 = op.instances.iter().map(rows).sum();
    let busiest = op
        .instances
        .iter()
        .find(|r| r.instance == op.busiest_instance);
    Some(Bottleneck {
        operator: op.name.clone(),
        instance: parallel.then_some(op.busiest_instance),
        parallelism: op.parallelism,
        rows_share: busiest
            .filter(|_| parallel && total > 0)
            .map(|r| rows(r) as f64 / total as f64),
        hot_key_share: busiest
            .filter(|r| r.hottest_key_updates > 0 && op.rows_in > 0)
            .map(|r| (r.hottest_key_updates as f64 / op.rows_in as f64).min(1.0)),
        busy_ms_per_s: op.max_busy_ms_per_s,
        backpressured_upstream: up.map(|u| u.name.clone()),
        upstream_backpressured_ms_per_s: up.map_or(0.0, |u| u.max_backpressured_ms_per_s),
    })
}

/// Whether a parallel operator's instances differ enough to show them one by one: in busy time
/// by 100 ms/s or more, or in rows by more than two to one.
fn instances_differ(op: &OperatorReport) -> bool {
    if op.instances.len() < 2 {
        return false;
    }
    let busy = op.instances.iter().map(|r| r.busy_ms_per_s);
    let (lo, hi) = busy.fold((f64::INFINITY, 0.0f64), |(lo, hi), b| {
        (lo.min(b), hi.max(b))
    });
    let rows = op.instances.iter().map(|r| r.rows_in.max(r.rows_out));
    let (rlo, rhi) = rows.fold((u64::MAX, 0), |(lo, hi), r| (lo.min(r), hi.max(r)));
    hi - lo >= 100.0 || rhi > rlo.saturating_mul(2).max(1)
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn show_watermark(w: Option<i64>) -> String {
    match w {
        None => "none".to_string(),
        Some(i64::MAX) => "+∞".to_string(),
        Some(w) => w.to_string(),
    }
}

fn human_rate(r: f64) -> String {
    if r >= 1e9 {
        format!("{:.2} G/s", r / 1e9)
    } else if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} K/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.finished, self.stopped) {
            (true, false) => "finished",
            (true, true) => "stopped",
            (false, false) => "running",
            (false, true) => "stopping",
        };
        writeln!(
            f,
            "pipeline `{}` {state} after {:.3} s",
            self.pipeline, self.elapsed_s
        )?;
        // The name column fits the longest name (at least 16 wide, as before).
        let w = self
            .operators
            .iter()
            .map(|o| o.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(16);
        writeln!(
            f,
            "  {:<w$} {:>4} {:>12} {:>12} {:>11} {:>8} {:>8} {:>8}",
            "operator", "par", "rows in", "rows out", "rate", "busy", "idle", "backpr."
        )?;
        let secs = self.elapsed_s.max(1e-9);
        for op in &self.operators {
            writeln!(
                f,
                "  {:<w$} {:>4} {:>12} {:>12} {:>11} {:>6.0}ms {:>6.0}ms {:>6.0}ms",
                op.name,
                op.parallelism,
                op.rows_in,
                op.rows_out,
                human_rate(op.rows_per_s),
                op.busy_ms_per_s,
                op.idle_ms_per_s,
                op.backpressured_ms_per_s
            )?;
            if instances_differ(op) {
                for r in &op.instances {
                    let rows = if op.kind == NodeKind::Source {
                        r.rows_out
                    } else {
                        r.rows_in
                    };
                    writeln!(
                        f,
                        "  {:<w$} {:>4} {:>12} {:>12} {:>11} {:>6.0}ms {:>6.0}ms {:>6.0}ms",
                        format!("  #{}", r.instance),
                        "",
                        r.rows_in,
                        r.rows_out,
                        human_rate(rows as f64 / secs),
                        r.busy_ms_per_s,
                        r.idle_ms_per_s,
                        r.backpressured_ms_per_s
                    )?;
                }
            }
        }
        writeln!(
            f,
            "  (time columns: milliseconds per second, mean over instances)"
        )?;
        let finishing: Vec<String> = self
            .operators
            .iter()
            // A chain's finishing time is its task's: shown once, under the chain's first operator.
            .filter(|o| o.chained_into.is_none() && o.finishing_ms_per_s >= FINISHING_SHOWN_MS)
            .map(|o| format!("`{}` {:.0} ms/s", o.name, o.finishing_ms_per_s))
            .collect();
        if !finishing.is_empty() {
            writeln!(
                f,
                "  finishing after end of input (not busy): {}",
                finishing.join(", ")
            )?;
        }
        for head in self.operators.iter().filter(|o| o.chained_into.is_none()) {
            let members: Vec<&str> = self
                .operators
                .iter()
                .filter(|o| o.chained_into.as_deref() == Some(head.name.as_str()))
                .map(|o| o.name.as_str())
                .collect();
            if !members.is_empty() {
                writeln!(
                    f,
                    "  chained into one task (time split by sampling): {} → {}",
                    head.name,
                    members.join(" → ")
                )?;
            }
        }
        match &self.bottleneck {
            Some(b) => {
                let who = match b.instance {
                    Some(i) => format!("`{}` instance {i} of {}", b.operator, b.parallelism),
                    None => format!("`{}`", b.operator),
                };
                let mut share = match b.rows_share {
                    Some(s) => format!("; it took {:.0} % of the rows", s * 100.0),
                    None => String::new(),
                };
                if let Some(s) = b.hot_key_share {
                    share += &format!("; its hottest key {:.0} % of all", s * 100.0);
                }
                match &b.backpressured_upstream {
                    Some(up) => writeln!(
                        f,
                        "  bottleneck: {who} (busy {:.0} ms/s while `{}` waited for it {:.0} ms/s{share})",
                        b.busy_ms_per_s, up, b.upstream_backpressured_ms_per_s
                    )?,
                    None => writeln!(
                        f,
                        "  bottleneck: {who} (busiest, busy {:.0} ms/s; no operator was backpressured{share})",
                        b.busy_ms_per_s
                    )?,
                }
            }
            None => writeln!(f, "  bottleneck: none")?,
        }
        let sized: Vec<String> = self
            .edges
            .iter()
            .filter(|e| e.credit_limit < e.capacity)
            .map(|e| {
                format!(
                    "`{}`#{} → `{}`#{} {}/{}",
                    e.from, e.from_instance, e.to, e.to_instance, e.credit_limit, e.capacity
                )
            })
            .collect();
        if !sized.is_empty() {
            const SHOWN: usize = 6;
            let more = match sized.len().saturating_sub(SHOWN) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            writeln!(
                f,
                "  edges sized by time (credit limit / capacity): {}{more}",
                sized[..sized.len().min(SHOWN)].join(", ")
            )?;
        }
        write!(
            f,
            "  peak in-flight: {} (edge bound {})",
            human_bytes(self.peak_in_flight_bytes),
            human_bytes(self.edge_bytes_bound)
        )?;
        if let Some(l) = &self.latency {
            write!(
                f,
                "\n  latency source → sink: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} markers)",
                l.p50_ms, l.p99_ms, l.max_ms, l.markers
            )?;
            let sinks: Vec<_> = self
                .operators
                .iter()
                .filter(|o| o.latency.is_some())
                .collect();
            if sinks.len() > 1 {
                for op in sinks {
                    let l = op.latency.as_ref().expect("filtered");
                    write!(
                        f,
                        "\n    at `{}`: p50 {:.1} ms, p99 {:.1} ms ({} markers)",
                        op.name, l.p50_ms, l.p99_ms, l.markers
                    )?;
                }
            }
        }
        if let Some(c) = &self.checkpoints {
            write!(f, "\n  {c}")?;
        }
        for op in self.operators.iter().filter(|o| o.peak_state_keys > 0) {
            write!(
                f,
                "\n  state: `{}` peak {} keys, {} (now {} keys, {})",
                op.name,
                op.peak_state_keys,
                human_bytes(op.peak_state_bytes),
                op.state_keys,
                human_bytes(op.state_bytes)
            )?;
        }
        for op in &self.operators {
            for r in &op.instances {
                if let Some(et) = &r.event_time {
                    write!(
                        f,
                        "\n  event time: `{}` #{} {}, watermark {}",
                        op.name,
                        r.instance,
                        et.state,
                        show_watermark(r.watermark)
                    )?;
                    if et.alignment_pauses > 0 {
                        write!(
                            f,
                            ", paused by alignment {:.0} ms ({} times)",
                            et.aligned_paused_ms, et.alignment_pauses
                        )?;
                    }
                    if et.idle_periods > 0 {
                        write!(f, ", idle {} times", et.idle_periods)?;
                    }
                }
            }
            if op.kind != NodeKind::Source && op.instances.iter().any(|r| r.watermark.is_some()) {
                let wms: Vec<String> = op
                    .instances
                    .iter()
                    .map(|r| show_watermark(r.watermark))
                    .collect();
                write!(f, "\n  watermark in: `{}` {}", op.name, wms.join(", "))?;
            }
        }
        if self.dead_letters > 0 || self.skipped > 0 {
            write!(f, "\n  rejected:")?;
            for op in self
                .operators
                .iter()
                .filter(|o| o.dead_letters + o.skipped > 0)
            {
                write!(
                    f,
                    " `{}` {} dead-lettered, {} skipped;",
                    op.name, op.dead_letters, op.skipped
                )?;
            }
        }
        if !self.overflow.is_empty() {
            write!(f, "\n  overflow:")?;
            for op in self.operators.iter().filter(|o| !o.overflow.is_empty()) {
                let counts: Vec<String> = op
                    .overflow
                    .nonzero()
                    .into_iter()
                    .map(|(name, rows)| format!("{name} {rows}"))
                    .collect();
                write!(f, " `{}` {};", op.name, counts.join(", "))?;
            }
        }
        if self.dropped_downstream_closed > 0 {
            write!(
                f,
                "\n  dropped (downstream closed): {} rows",
                self.dropped_downstream_closed
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
