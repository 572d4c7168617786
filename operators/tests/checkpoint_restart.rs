//! A windowed keyed count under checkpoints and the restart strategy: a sink write fails once,
//! after a checkpoint has committed; the run restarts from that checkpoint in-process and its
//! results equal the counts computed directly, each window once. With partial key grouping the
//! window's split partials are restored too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use weir_operators::keyed::aggregate::Count;
use weir_operators::keyed::route::Strategy;
use weir_operators::prelude::*;
use weir_runtime::checkpoint::{decode, encode, SnapshotReader, SnapshotWriter};
use weir_runtime::{
    CheckpointConfig, InputPort, Output, RestartStrategy, Sink, SinkHandle, Source, SourceStatus,
};

const KEYS: u64 = 7;
const WINDOW_MS: u64 = 100;

/// What the source and the sink share across restarts: whether a checkpoint has committed
/// (the source pauses halfway until one has), and whether the failure was injected.
#[derive(Default)]
struct Shared {
    committed: bool,
    failed: bool,
    waker: Option<Waker>,
}

type Handle = Arc<Mutex<Shared>>;

/// Event `i` is `(i % KEYS, time i ms)`; a watermark of the last time after every batch. Its
/// position is the next event.
struct Events {
    next: u64,
    n: u64,
    shared: Handle,
}

impl Source for Events {
    type Output = Vec<(u64, i64)>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<(u64, i64)>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.next >= self.n / 2 {
            let mut s = self.shared.lock().unwrap();
            if !s.committed {
                s.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        while self.next < self.n && !out.is_full() {
            out.push((self.next % KEYS, self.next as i64));
            self.next += 1;
        }
        out.watermark(Timestamp(self.next as i64 - 1));
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
        encode(&self.next).map_err(|e| OperatorError::internal(e.to_string()))
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), OperatorError> {
        self.next = decode(position).map_err(|e| OperatorError::internal(e.to_string()))?;
        Ok(())
    }
}

type Counts = BTreeMap<(u64, i64), u64>;

/// Keeps `(key, window start) → count`; its state is everything it kept, so a restored sink
/// holds what the checkpoint covered. Fails one write once a checkpoint has committed.
struct Results {
    got: Counts,
    shared: Handle,
}

impl Sink for Results {
    type Input = Vec<Windowed<u64, u64>>;
    type Output = Counts;

    fn on_batch(&mut self, _: InputPort, batch: Self::Input) -> Result<(), OperatorError> {
        {
            let mut s = self.shared.lock().unwrap();
            if s.committed && !s.failed {
                s.failed = true;
                return Err(OperatorError::user("injected write failure"));
            }
        }
        for w in batch {
            assert_eq!(w.firing, 0, "no lateness: one result per window");
            let old = self.got.insert((w.key, w.start.0), w.value);
            assert!(old.is_none(), "window ({}, {}) twice", w.key, w.start.0);
        }
        Ok(())
    }

    fn commit(&mut self, _: u64) -> Result<(), OperatorError> {
        let mut s = self.shared.lock().unwrap();
        s.committed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        Ok(())
    }

    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        let entries: Vec<((u64, i64), u64)> = self.got.iter().map(|(k, v)| (*k, *v)).collect();
        state.put_instance(encode(&entries).map_err(|e| OperatorError::internal(e.to_string()))?);
        Ok(())
    }

    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        for bytes in state.instance_states() {
            let entries: Vec<((u64, i64), u64)> =
                decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
            self.got.extend(entries);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Counts, OperatorError> {
        Ok(std::mem::take(&mut self.got))
    }
}

fn expected(n: u64) -> Counts {
    let mut counts = Counts::new();
    for i in 0..n {
        let start = (i / WINDOW_MS * WINDOW_MS) as i64;
        *counts.entry((i % KEYS, start)).or_insert(0) += 1;
    }
    counts
}

/// Runs the job under the restart strategy; returns its results and restarts.
fn run(strategy: Strategy, n: u64) -> (Counts, u32) {
    let dir = tempfile::tempdir().unwrap();
    let shared = Handle::default();
    let last: Arc<Mutex<Option<SinkHandle<Counts>>>> = Arc::default();
    let handle = last.clone();
    let report = Pipeline::run_restartable(|| {
        let config = PipelineConfig {
            batch_rows: 64,
            parallelism: 2,
            ..PipelineConfig::default()
        }
        .checkpointing(
            CheckpointConfig::new(dir.path())
                .interval(Duration::from_millis(1))
                .restart(RestartStrategy {
                    attempts: 2,
                    backoff: Duration::ZERO,
                }),
        );
        let mut p = Pipeline::with_config("windowed count", config);
        let results = p
            .source(
                "events",
                Events {
                    next: 0,
                    n,
                    shared: shared.clone(),
                },
            )
            .key_by(|e: &(u64, i64)| e.0)
            .strategy(strategy)
            .window(Tumbling::of(Duration::from_millis(WINDOW_MS)), |e| {
                Timestamp(e.1)
            })
            .aggregate("count", Count::new())
            .sink(
                "results",
                Results {
                    got: Counts::new(),
                    shared: shared.clone(),
                },
            );
        *handle.lock().unwrap() = Some(results);
        p
    })
    .expect("the run succeeds after one restart");
    let got = last.lock().unwrap().take().and_then(|h| h.take());
    let restarts = report.checkpoints.expect("checkpoints ran").restarts;
    (got.expect("the last run's results"), restarts)
}

#[test]
fn a_windowed_count_restarted_after_a_failed_write_is_exact() {
    let n = 20_000;
    let (got, restarts) = run(Strategy::Hash, n);
    assert_eq!(restarts, 1);
    assert_eq!(got, expected(n));
}

#[test]
fn a_windowed_count_with_split_keys_restarted_after_a_failed_write_is_exact() {
    let n = 20_000;
    let (got, restarts) = run(Strategy::Pkg, n);
    assert_eq!(restarts, 1);
    assert_eq!(got, expected(n));
}
