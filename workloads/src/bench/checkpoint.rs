//! `weir bench checkpoint`: checkpoint duration and in-flight capture with the sink throttled,
//! at a sink instance with two input edges.
//!
//! The job: two instances of one source (`keys`) into one instance of a sink (`sink`), so the
//! sink has two input edges, and the stream between them has a codec
//! ([`StreamCore::with_spill_codec`](weir_runtime::StreamCore::with_spill_codec)), so an
//! unaligned checkpoint can capture the batches queued on them. Rows are `u64` keys,
//! `(i · 7919 + instance) mod` [`KEYS`]; the sink counts them and sums the keys, and that tally
//! is its checkpoint state, so a restored run that ends with [`expected`]'s tally counted every
//! row exactly once.
//!
//! In a paced run ([`run_throttled`]) the sink takes at most a given number of rows per second
//! (a timer, not work), source instance 0 is unpaced and source instance 1 is paced at a
//! twentieth of the sink's rate with a twentieth of the rows. So instance 0's edge is full and
//! instance 1's nearly empty: a checkpoint barrier reaches the sink at once on one edge and
//! behind a full edge on the other — the alignment an unaligned checkpoint is for.
//! [`unpaced_rate`] measures the job with nothing paced (the rows split in halves): the source
//! rate the sink's rate is a fraction of.
//!
//! Snapshots are full (the sources' positions and the sink's tally, a few bytes each); what a
//! checkpoint costs here is its barriers' wait behind queued rows, and what unaligned ones
//! capture.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use weir_runtime::checkpoint::{
    decode, encode, BlobKind, CheckpointError, CheckpointStore, SnapshotReader, SnapshotWriter,
};
use weir_runtime::{
    CheckpointConfig, CheckpointReport, CodecError, InputPort, OperatorError, Output, Pipeline,
    PipelineConfig, RunError, Sink, SinkHandle, Source, SourceStatus, SpillCodec,
};

/// Distinct keys.
pub const KEYS: u64 = 100_000;

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointBenchError {
    /// The pipeline failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The checkpoint store could not be read.
    #[error(transparent)]
    Store(#[from] CheckpointError),
    /// A run's sink ended without a tally, or a run counted the wrong rows.
    #[error("{0}")]
    Wrong(String),
}

/// Waits until `taken` rows are due at `rate` rows per second since `start`.
fn poll_paced(
    cx: &mut Context<'_>,
    rate: f64,
    start: &mut Option<Instant>,
    taken: u64,
    sleep: &mut Option<Pin<Box<tokio::time::Sleep>>>,
) -> Poll<()> {
    let start = *start.get_or_insert_with(Instant::now);
    let due = start + Duration::from_secs_f64(taken as f64 / rate);
    if Instant::now() >= due {
        *sleep = None;
        return Poll::Ready(());
    }
    let timer = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due.into())));
    match timer.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *sleep = None;
            Poll::Ready(())
        }
        Poll::Pending => Poll::Pending,
    }
}

/// Keys `(i · 7919 + salt) mod keys` for `i` in `next..n`, at most `rate` rows per second if
/// set; its position is `next`.
struct Rows {
    next: u64,
    n: u64,
    salt: u64,
    rate: Option<f64>,
    start: Option<Instant>,
    emitted: u64,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

fn key(i: u64, salt: u64) -> u64 {
    (i.wrapping_mul(7919) + salt) % KEYS
}

impl Source for Rows {
    type Output = Vec<u64>;
    fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Output<Vec<u64>>,
    ) -> Poll<Result<SourceStatus, OperatorError>> {
        if let Some(rate) = self.rate {
            if poll_paced(cx, rate, &mut self.start, self.emitted, &mut self.sleep).is_pending() {
                return Poll::Pending;
            }
        }
        let rows = out.batch_rows() as u64;
        let end = (self.next + rows).min(self.n);
        let mut batch = out.batch_with_capacity(rows as usize);
        batch.extend((self.next..end).map(|i| key(i, self.salt)));
        out.emit(batch);
        self.emitted += end - self.next;
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
            .map_err(|_| OperatorError::user("a position is 8 bytes"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

/// Batches of `u64` as little-endian bytes: how an unaligned checkpoint captures them.
struct U64Codec;

impl SpillCodec<Vec<u64>> for U64Codec {
    fn encode(&self, batch: &Vec<u64>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.reserve(batch.len() * 8);
        for v in batch {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u64>, CodecError> {
        if !bytes.len().is_multiple_of(8) {
            return Err("not a whole number of u64".into());
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect())
    }
}

/// Counts rows and sums their keys, taking rows no faster than `rate` per second if set; the
/// tally is its checkpoint state.
struct Tally {
    rows: u64,
    sum: u64,
    rate: Option<f64>,
    start: Option<Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    taken: u64,
}

impl Sink for Tally {
    type Input = Vec<u64>;
    type Output = (u64, u64);
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        match self.rate {
            Some(rate) => {
                poll_paced(cx, rate, &mut self.start, self.taken, &mut self.sleep).map(Ok)
            }
            None => Poll::Ready(Ok(())),
        }
    }
    fn on_batch(&mut self, _: InputPort, batch: Vec<u64>) -> Result<(), OperatorError> {
        self.taken += batch.len() as u64;
        self.rows += batch.len() as u64;
        self.sum = batch.iter().fold(self.sum, |s, &k| s.wrapping_add(k));
        Ok(())
    }
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        let bytes =
            encode(&(self.rows, self.sum)).map_err(|e| OperatorError::internal(e.to_string()))?;
        state.put_instance(bytes);
        Ok(())
    }
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        for bytes in state.instance_states() {
            let (rows, sum): (u64, u64) =
                decode(bytes).map_err(|e| OperatorError::internal(e.to_string()))?;
            self.rows += rows;
            self.sum = self.sum.wrapping_add(sum);
        }
        Ok(())
    }
    fn finish(&mut self) -> Result<(u64, u64), OperatorError> {
        Ok((self.rows, self.sum))
    }
}

/// The rows of source instances 0 and 1: paced runs give instance 1 a twentieth.
fn shares(rows: u64, paced: bool) -> [u64; 2] {
    let slow = if paced { rows / 20 } else { rows / 2 };
    [rows - slow, slow]
}

/// The tally (rows, wrapping sum of keys) a run of `rows` rows must end with; `paced` as in
/// [`run_throttled`] (instance 1 emits a twentieth), else halves.
///
/// ```
/// use weir_workloads::bench::checkpoint::{expected, KEYS};
///
/// let (rows, sum) = expected(40, true);
/// assert_eq!(rows, 40);
/// assert!(sum < 40 * KEYS);
/// ```
pub fn expected(rows: u64, paced: bool) -> (u64, u64) {
    let mut sum = 0u64;
    for (salt, n) in (0u64..).zip(shares(rows, paced)) {
        sum = (0..n).fold(sum, |s, i| s.wrapping_add(key(i, salt)));
    }
    (rows, sum)
}

/// The job, its sink taking at most `sink_rate` rows per second (`None`: unpaced).
fn two_into_one(
    rows: u64,
    checkpoint: Option<CheckpointConfig>,
    sink_rate: Option<f64>,
    paced: bool,
) -> (Pipeline, SinkHandle<(u64, u64)>) {
    let mut cfg = PipelineConfig {
        workers: Some(2),
        ..PipelineConfig::default()
    };
    cfg.checkpoint = checkpoint;
    let mut p = Pipeline::with_config("two into one", cfg);
    let n = shares(rows, paced);
    let sink = p
        .source_with("keys", move |info| {
            let rate = sink_rate.filter(|_| info.instance == 1).map(|r| r / 20.0);
            Rows {
                next: 0,
                n: n[info.instance.min(1)],
                salt: info.instance as u64,
                rate,
                start: None,
                emitted: 0,
                sleep: None,
            }
        })
        .parallelism(2)
        .with_spill_codec(U64Codec)
        .sink(
            "sink",
            Tally {
                rows: 0,
                sum: 0,
                rate: sink_rate,
                start: None,
                sleep: None,
                taken: 0,
            },
        );
    (p, sink)
}

/// Rows per second of the job with nothing paced (the rows split in halves), its tally checked.
///
/// # Errors
///
/// A failed run, or a wrong tally.
pub fn unpaced_rate(rows: u64) -> Result<f64, CheckpointBenchError> {
    let (p, sink) = two_into_one(rows, None, None, false);
    let start = Instant::now();
    p.run()?;
    let secs = start.elapsed().as_secs_f64();
    let got = sink.take();
    if got != Some(expected(rows, false)) {
        return Err(CheckpointBenchError::Wrong(format!(
            "the unpaced run's tally {got:?} is not {:?}",
            expected(rows, false)
        )));
    }
    Ok(rows as f64 / secs)
}

/// What one paced run came to.
#[derive(Clone, Debug)]
pub struct Throttled {
    /// Wall time of the run.
    pub secs: f64,
    /// Its checkpoint figures.
    pub report: CheckpointReport,
    /// The in-flight bytes captured between one completed checkpoint and the next, in order
    /// (from live reports read every 2 ms, so a capture is counted with the checkpoint that
    /// completes after it).
    pub captured: Vec<u64>,
    /// The sink's tally: rows, and the wrapping sum of their keys.
    pub tally: (u64, u64),
}

/// Runs the job with checkpoints `ck`, its sink taking `sink_rate` rows per second, source
/// instance 1 paced at a twentieth of that. With `stop_after_capture`, the sources are
/// stopped as soon as a checkpoint that captured batches has completed (no checkpoint is
/// taken after a source ended, so that one stays the latest).
///
/// # Errors
///
/// A failed run, or a sink without a tally.
pub fn run_throttled(
    rows: u64,
    ck: CheckpointConfig,
    sink_rate: f64,
    stop_after_capture: bool,
) -> Result<Throttled, CheckpointBenchError> {
    let (p, sink) = two_into_one(rows, Some(ck), Some(sink_rate), true);
    let start = Instant::now();
    let handle = p.spawn()?;
    let (mut completed, mut in_flight) = (0, 0);
    let mut captured = Vec::new();
    while !handle.is_finished() {
        std::thread::sleep(Duration::from_millis(2));
        let Some(c) = handle.snapshot().checkpoints else {
            continue;
        };
        if c.completed > completed {
            captured.push(c.in_flight_bytes - in_flight);
            if stop_after_capture && c.in_flight_bytes > in_flight {
                handle.stop();
            }
            (completed, in_flight) = (c.completed, c.in_flight_bytes);
        }
    }
    let report = handle.join()?;
    let secs = start.elapsed().as_secs_f64();
    let tally = sink
        .take()
        .ok_or_else(|| CheckpointBenchError::Wrong("the sink left no tally".into()))?;
    Ok(Throttled {
        secs,
        report: report.checkpoints.unwrap_or_default(),
        captured,
        tally,
    })
}

/// A stopped run and the run restored from its latest checkpoint.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The checkpoint restored from.
    pub checkpoint: u64,
    /// Its in-flight blobs, and their bytes.
    pub in_flight_blobs: usize,
    /// Bytes of those blobs.
    pub in_flight_bytes: u64,
    /// Rows the stopped run's sink had counted.
    pub stopped_rows: u64,
    /// The checkpoint the restored run reported it restored from.
    pub restored_from: Option<u64>,
    /// Wall time of the restored run (unpaced, to the end of the input).
    pub secs: f64,
    /// The restored run's tally.
    pub tally: (u64, u64),
    /// The tally an uninterrupted run ends with.
    pub expected: (u64, u64),
}

/// Stops a paced run with an alignment timeout of 0 right after a checkpoint that captured
/// batches, then runs the job restored from the latest checkpoint in `dir` to the end of its
/// input, unpaced. `None` if the stopped run's latest checkpoint held no in-flight data (a
/// later checkpoint completed before the stop).
///
/// # Errors
///
/// A failed run or an unreadable store.
pub fn restore_check(
    dir: &Path,
    rows: u64,
    sink_rate: f64,
) -> Result<Option<Restored>, CheckpointBenchError> {
    let ck = CheckpointConfig::new(dir)
        .interval(Duration::from_secs(1))
        .alignment_timeout(Duration::ZERO);
    let stopped = run_throttled(rows, ck.clone(), sink_rate, true)?;
    let store = CheckpointStore::open(dir, ck.retain)?;
    let Some(latest) = store.latest()?.checkpoint else {
        return Ok(None);
    };
    let blobs: Vec<_> = latest
        .blobs()
        .filter(|b| matches!(b.kind(), BlobKind::InFlight { .. }))
        .cloned()
        .collect();
    let mut in_flight_bytes = 0;
    for b in &blobs {
        in_flight_bytes += latest.read(b)?.len() as u64;
    }
    let checkpoint = latest.id();
    // The restored run opens the directory's store itself: one store per directory at a time.
    drop(latest);
    drop(store);
    if blobs.is_empty() {
        return Ok(None);
    }
    let (p, sink) = two_into_one(rows, Some(ck.restore(true)), None, true);
    let start = Instant::now();
    let report = p.run()?;
    let secs = start.elapsed().as_secs_f64();
    let tally = sink
        .take()
        .ok_or_else(|| CheckpointBenchError::Wrong("the sink left no tally".into()))?;
    Ok(Some(Restored {
        checkpoint,
        in_flight_blobs: blobs.len(),
        in_flight_bytes,
        stopped_rows: stopped.tally.0,
        restored_from: report.checkpoints.and_then(|c| c.restored_from),
        secs,
        tally,
        expected: expected(rows, true),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_run_with_unaligned_checkpoints_counts_every_row_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ck = CheckpointConfig::new(dir.path())
            .interval(Duration::from_millis(5))
            .alignment_timeout(Duration::ZERO);
        let t = run_throttled(200_000, ck, 1_000_000.0, false).expect("the run");
        assert_eq!(t.tally, expected(200_000, true));
        assert_eq!(t.report.failed, 0);
        assert_eq!(t.report.stayed_aligned, 0, "the edges have a codec");
    }

    #[test]
    fn the_codec_round_trips_a_batch() {
        let batch = vec![0, 1, u64::MAX, 7919];
        let mut bytes = Vec::new();
        U64Codec.encode(&batch, &mut bytes).expect("encodes");
        assert_eq!(bytes.len(), 32);
        assert_eq!(U64Codec.decode(&bytes).expect("decodes"), batch);
        assert!(U64Codec.decode(&bytes[..5]).is_err());
    }
}
