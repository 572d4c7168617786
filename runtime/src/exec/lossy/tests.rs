//! Lossy edges end to end: a source that produces everything while its consumer is held back
//! by a gate, so what the consumer receives and what is counted are exact.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::operator::{Output, Sink, Source, SourceStatus};
use crate::spill::SpillQueue;
use crate::test_support::CollectAll;
use crate::{
    EdgeConfig, GraphError, JsonCodec, OperatorError, Overflow, Pipeline, PipelineConfig, RunError,
    RunReport,
};

/// Opened once; wakes whoever waits on it.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waiter: Mutex<Option<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(w) = self.waiter.lock().unwrap().take() {
            w.wake();
        }
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.open.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        *self.waiter.lock().unwrap() = Some(cx.waker().clone());
        if self.open.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Emits `0..n`, one row per batch, then opens the gate.
struct Numbers {
    next: u64,
    n: u64,
    gate: Arc<Gate>,
}

impl Source for Numbers {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        _: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.next == self.n {
            self.gate.open();
            return Poll::Ready(Ok(SourceStatus::Done));
        }
        out.push(self.next);
        self.next += 1;
        Poll::Ready(Ok(SourceStatus::Continue))
    }
}

/// Collects rows once the gate is open; closes after `take_then_close` batches if set.
struct Gated {
    gate: Arc<Gate>,
    rows: Vec<u64>,
    batches: usize,
    take_then_close: Option<usize>,
}

impl Sink for Gated {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.gate.poll(cx).map(Ok)
    }

    fn on_batch(&mut self, _: usize, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.rows.extend(batch);
        self.batches += 1;
        Ok(())
    }

    fn is_closed(&self) -> bool {
        // Not before the gate opens: the source has produced everything by then.
        self.gate.open.load(Ordering::SeqCst)
            && self.take_then_close.is_some_and(|n| self.batches >= n)
    }

    fn finish(&mut self) -> Result<Vec<u64>, OperatorError> {
        Ok(std::mem::take(&mut self.rows))
    }
}

fn config() -> PipelineConfig {
    PipelineConfig {
        batch_rows: 1,
        workers: Some(2),
        ..PipelineConfig::default()
    }
}

/// Runs numbers `0..n` into a gated sink over an edge of capacity 2 with `policy`.
fn run_gated(
    n: u64,
    policy: Overflow,
    close_after: Option<usize>,
) -> Result<(Vec<u64>, RunReport), RunError> {
    let gate = Arc::new(Gate::default());
    let mut p = Pipeline::with_config("lossy", config());
    let stream = p
        .source(
            "src",
            Numbers {
                next: 0,
                n,
                gate: gate.clone(),
            },
        )
        .with_edge(EdgeConfig::default().with_capacity(2).with_grant_chunk(1))
        .with_spill_codec(JsonCodec)
        .on_overflow(policy);
    let out = stream.sink(
        "sink",
        Gated {
            gate,
            rows: Vec::new(),
            batches: 0,
            take_then_close: close_after,
        },
    );
    let report = p.run()?;
    Ok((out.take().unwrap_or_default(), report))
}

#[test]
fn drop_newest_keeps_what_fit_and_counts_the_rest() {
    let (rows, report) = run_gated(10, Overflow::DropNewest, None).unwrap();
    assert_eq!(rows, vec![0, 1]);
    assert_eq!(report.overflow.dropped_newest, 8);
    assert_eq!(report.operators[0].overflow.dropped_newest, 8);
    assert_eq!(report.overflow.lost(), 8);
    assert_eq!(report.dropped_downstream_closed, 0);
}

#[test]
fn drop_oldest_keeps_the_newest_in_a_queue_as_large_as_the_edge() {
    let (rows, report) = run_gated(10, Overflow::DropOldest, None).unwrap();
    // Two in the edge, the two newest in the queue; the six between were evicted.
    assert_eq!(rows, vec![0, 1, 8, 9]);
    assert_eq!(report.overflow.dropped_oldest, 6);
    assert_eq!(report.overflow.dropped_newest, 0);
}

#[test]
fn spill_delivers_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Overflow::Spill {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
    };
    let (rows, report) = run_gated(10, policy, None).unwrap();
    assert_eq!(rows, (0..10).collect::<Vec<_>>());
    assert_eq!(report.overflow.spilled, 8);
    assert_eq!(report.overflow.unspilled, 8);
    assert_eq!(report.overflow.lost(), 0);
    let left = SpillQueue::open(dir.path().join("src-0-to-sink-0"), 1 << 20).unwrap();
    assert!(left.is_empty());
}

#[test]
fn spill_stops_at_its_byte_bound_and_counts_what_did_not_fit() {
    // Each record is a tag byte and `[k]` (4 bytes) in a 24-byte frame header: 29 bytes, so
    // one segment of 161 bytes (its 16-byte header and five frames) holds exactly five.
    let dir = tempfile::tempdir().unwrap();
    let policy = Overflow::Spill {
        dir: dir.path().to_path_buf(),
        max_bytes: 161,
    };
    let (rows, report) = run_gated(10, policy, None).unwrap();
    assert_eq!(rows, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(report.overflow.spilled, 5);
    assert_eq!(report.overflow.spill_full, 3);
    assert_eq!(report.overflow.lost(), 3);
}

fn spill_record(value: u64) -> Vec<u8> {
    let mut record = vec![0u8];
    record.extend_from_slice(format!("[{value}]").as_bytes());
    record
}

#[test]
fn a_spill_left_by_an_earlier_run_is_delivered_first_and_a_corrupt_record_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let spill_dir = dir.path().join("src-0-to-sink-0");
    {
        let mut q = SpillQueue::open(&spill_dir, 1 << 20).unwrap();
        for v in [100, 101, 102] {
            q.push(&spill_record(v)).unwrap();
        }
    }
    corrupt_second_frame(&spill_dir);
    let policy = Overflow::Spill {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
    };
    let (rows, report) = run_gated(10, policy, None).unwrap();
    let mut want = vec![100, 102];
    want.extend(0..10);
    assert_eq!(rows, want);
    assert_eq!(report.overflow.spill_damaged_records, 1);
    assert_eq!(
        report.overflow.spill_damaged_bytes,
        24 + spill_record(101).len() as u64
    );
    assert_eq!(report.overflow.spill_failed, 0);
    assert_eq!(report.overflow.spilled, 10);
    assert_eq!(report.overflow.unspilled, 12);
}

/// Flips a payload byte of the second frame of the only segment.
fn corrupt_second_frame(spill_dir: &Path) {
    let segment = std::fs::read_dir(spill_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "spill"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // A 16-byte segment header, then frames with 24-byte headers.
    let frame = 24 + spill_record(100).len();
    bytes[16 + frame + 24 + 2] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
}

#[test]
fn spilled_records_survive_into_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Overflow::Spill {
        dir: dir.path().to_path_buf(),
        max_bytes: 1 << 20,
    };
    // The consumer goes away without taking anything: 0 and 1 are lost in the edge (and
    // counted), 2..10 stay spilled.
    let (rows, report) = run_gated(10, policy.clone(), Some(0)).unwrap();
    assert_eq!(rows, Vec::<u64>::new());
    assert_eq!(report.overflow.spilled, 8);
    assert_eq!(report.overflow.unspilled, 0);
    assert_eq!(report.dropped_downstream_closed, 2);

    // Started again with nothing new to read, the pipeline delivers what was left.
    let (rows, report) = run_gated(0, policy, None).unwrap();
    assert_eq!(rows, (2..10).collect::<Vec<_>>());
    assert_eq!(report.overflow.unspilled, 8);
}

#[test]
fn a_lossy_branch_never_holds_back_the_main_one() {
    let gate = Arc::new(Gate::default());
    let mut p = Pipeline::with_config("tap", config());
    let numbers = p.source(
        "src",
        Numbers {
            next: 0,
            n: 1000,
            gate: gate.clone(),
        },
    );
    let main = numbers.clone().sink("main", CollectAll::default());
    let tap = numbers
        .with_edge(EdgeConfig::default().with_capacity(2))
        .on_overflow(Overflow::DropNewest)
        .sink(
            "tap",
            Gated {
                gate,
                rows: Vec::new(),
                batches: 0,
                take_then_close: None,
            },
        );
    let report = p.run().unwrap();
    // The tap's consumer took nothing until the source had finished: the main branch got
    // everything regardless, and the tap's losses are counted.
    assert_eq!(main.take().unwrap(), (0..1000).collect::<Vec<_>>());
    assert_eq!(tap.take().unwrap(), vec![0, 1]);
    assert_eq!(report.overflow.dropped_newest, 998);
}

#[test]
fn policies_that_cannot_apply_to_an_edge_fail_validation() {
    let gate = Arc::new(Gate::default());
    let build = |policy: Overflow, codec: bool| {
        let mut p = Pipeline::with_config("invalid", config());
        let mut s = p
            .source(
                "src",
                Numbers {
                    next: 0,
                    n: 1,
                    gate: gate.clone(),
                },
            )
            .on_overflow(policy);
        if codec {
            s = s.with_spill_codec(JsonCodec);
        }
        s.sink(
            "sink",
            Gated {
                gate: gate.clone(),
                rows: Vec::new(),
                batches: 0,
                take_then_close: None,
            },
        );
        p.validate()
    };
    let spill = |max_bytes| Overflow::Spill {
        dir: "unused".into(),
        max_bytes,
    };
    for (policy, codec, needle) in [
        (Overflow::Reject, true, "Reject"),
        (spill(1 << 20), false, "with_spill_codec"),
        (spill(40), true, "more than 40 bytes"),
    ] {
        match build(policy, codec) {
            Err(GraphError::InvalidConfig { operator, reason }) => {
                assert_eq!(operator, "src");
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("expected an invalid configuration, got {other:?}"),
        }
    }
    assert!(build(Overflow::Block, false).is_ok());
}

#[test]
fn the_report_shows_overflow_by_reason() {
    let (_, report) = run_gated(10, Overflow::DropNewest, None).unwrap();
    let text = report.to_string();
    assert!(text.contains("overflow: `src` dropped newest 8;"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["overflow"]["dropped_newest"], 8);
    assert_eq!(
        json["operators"][0]["instances"][0]["overflow"]["dropped_newest"],
        8
    );
}

#[test]
fn markers_survive_the_spill_in_order_idle_included() {
    use crate::batch::{Message, Timestamp};
    use crate::exec::lossy::LossyEdge;
    use crate::metrics::InstanceMetrics;

    let dir = tempfile::tempdir().unwrap();
    let policy = Overflow::Spill {
        dir: dir.path().into(),
        max_bytes: 1 << 20,
    };
    let codec: Arc<dyn crate::SpillCodec<Vec<u64>>> = Arc::new(JsonCodec);
    let mut lossy = LossyEdge::new(
        &policy,
        (1, 1, 1 << 20),
        Some(codec),
        &[dir.path().join("t0")],
    )
    .unwrap();
    let (mut tx, mut rx) = crate::channel::edge::<Vec<u64>>(EdgeConfig::default().with_capacity(1));
    let m = InstanceMetrics::new(std::time::Instant::now());
    let mut closed = false;
    let sent = vec![
        Message::Data(vec![1]),
        Message::Watermark(Timestamp(7)),
        Message::Idle,
        Message::Data(vec![2]),
        Message::End,
    ];
    // The edge holds one message: the rest is spilled, then read back as room appears.
    for msg in sent.clone() {
        let bytes = msg.bytes();
        lossy.offer(0, &mut tx, &mut closed, msg, bytes, &m);
    }
    let mut got = Vec::new();
    while got.last() != Some(&Message::End) {
        got.push(rx.try_recv().expect("pumped before it is read"));
        lossy.pump(0, &mut tx, &mut closed, &m);
    }
    assert_eq!(got, sent);
}
