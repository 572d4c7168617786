//! Dead letters committed by checkpoint: an operator rejects every fifth row to its dead-letter
//! port, a `DeadLetterSink` writes them into NDJSON parts committed in two phases by checkpoint,
//! and the run fails once after a checkpoint has committed; restarted from it by the restart
//! strategy, the visible dead-letter parts hold each rejected row exactly once, as the main
//! sink holds each kept row once.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use weir_operators::columnar::{DeadLetterSink, PartSinkOptions};
use weir_operators::connector::{PartCommit, PartFormat};
use weir_operators::prelude::*;
use weir_runtime::checkpoint::{decode, encode, SnapshotReader, SnapshotWriter};
use weir_runtime::{
    CheckpointConfig, DeadLetter, InputPort, Operator, Output, RestartStrategy, Sink, SinkHandle,
    Source, SourceStatus,
};

/// What the job's parts share across restarts: whether a checkpoint has committed (the source
/// pauses halfway until one has), and whether the failure was injected.
#[derive(Default)]
struct Shared {
    committed: bool,
    failed: bool,
    waker: Option<Waker>,
}

type Handle = Arc<Mutex<Shared>>;

/// Emits `0..n`; its position is the next number.
struct Numbers {
    next: u64,
    n: u64,
    shared: Handle,
}

impl Source for Numbers {
    type Output = Vec<u64>;

    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if self.next >= self.n / 2 {
            let mut s = self.shared.lock().unwrap();
            if !s.committed {
                s.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        while self.next < self.n && !out.is_full() {
            out.push(self.next);
            self.next += 1;
        }
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

/// Rejects every fifth number (raw: the number, line: the number + 1); fails the run once,
/// at its first batch after a checkpoint has committed.
struct Reject(Handle);

impl Operator for Reject {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<u64>,
        out: &mut Output<Vec<u64>>,
    ) -> Result<(), OperatorError> {
        {
            let mut s = self.0.lock().unwrap();
            if s.committed && !s.failed {
                s.failed = true;
                return Err(OperatorError::user("injected failure"));
            }
        }
        for k in batch {
            if k % 5 == 0 {
                out.dead_letter(DeadLetter::new("a multiple of 5", k.to_string()).at_line(k + 1));
            } else {
                out.push(k);
            }
        }
        Ok(())
    }
}

/// Keeps the numbers it gets; its state is all of them. Notes each commit.
struct Kept {
    got: Vec<u64>,
    shared: Handle,
}

impl Sink for Kept {
    type Input = Vec<u64>;
    type Output = Vec<u64>;

    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.got.extend(batch);
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
        state.put_instance(encode(&self.got).map_err(|e| OperatorError::internal(e.to_string()))?);
        Ok(())
    }

    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        for bytes in state.instance_states() {
            let got: Vec<u64> =
                decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
            self.got.extend(got);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<u64>, OperatorError> {
        Ok(std::mem::take(&mut self.got))
    }
}

/// The `raw` of every dead letter in the visible NDJSON parts of `dir`.
fn letters(dir: &Path) -> Vec<u64> {
    let mut raws = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the dead-letter directory") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        for line in std::fs::read_to_string(&path).expect("a part").lines() {
            let letter: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            raws.push(
                letter["raw"]
                    .as_str()
                    .expect("raw")
                    .parse()
                    .expect("a number"),
            );
        }
    }
    raws
}

#[test]
fn a_restored_run_commits_each_dead_letter_once() {
    let n = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (checkpoints, dead_dir) = (dir.path().join("checkpoints"), dir.path().join("dead"));
    let shared = Handle::default();
    let last: Arc<Mutex<Option<SinkHandle<Vec<u64>>>>> = Arc::default();
    let handle = last.clone();
    let report = Pipeline::run_restartable(|| {
        let config = PipelineConfig {
            batch_rows: 64,
            workers: Some(2),
            ..PipelineConfig::default()
        }
        .checkpointing(
            CheckpointConfig::new(&checkpoints)
                .interval(Duration::from_millis(1))
                .restart(RestartStrategy {
                    attempts: 2,
                    backoff: Duration::ZERO,
                }),
        );
        let mut p = Pipeline::with_config("dead letters", config);
        let checked = p
            .source(
                "numbers",
                Numbers {
                    next: 0,
                    n,
                    shared: shared.clone(),
                },
            )
            .unary("reject", Reject(shared.clone()));
        let opts = PartSinkOptions::new(PartFormat::Ndjson)
            .max_rows(500)
            .commit(PartCommit::OnCheckpoint)
            .resume(true);
        checked.dead_letters().sink(
            "dead_letters",
            DeadLetterSink::new(&dead_dir, opts).keep_file(false),
        );
        let kept = checked.sink(
            "kept",
            Kept {
                got: Vec::new(),
                shared: shared.clone(),
            },
        );
        *handle.lock().unwrap() = Some(kept);
        p
    })
    .expect("the run succeeds after one restart");
    let c = report.checkpoints.expect("checkpoints ran");
    assert_eq!(c.restarts, 1, "{c}");
    assert!(shared.lock().unwrap().failed);

    let kept = last.lock().unwrap().take().and_then(|h| h.take());
    let want_kept: Vec<u64> = (0..n).filter(|k| k % 5 != 0).collect();
    assert_eq!(kept, Some(want_kept));

    let mut got = letters(&dead_dir);
    got.sort_unstable();
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "a dead letter twice");
    let want: Vec<u64> = (0..n).filter(|k| k % 5 == 0).collect();
    assert_eq!(got, want);
}
