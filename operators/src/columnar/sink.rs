//! Part-file sinks: Arrow batches (and dead letters) into rolling Parquet, CSV or NDJSON parts.
//!
//! # Protocol
//!
//! A [`PartSink`] owns a [`PartWriter`] and writes **one batch at a time on its own thread**:
//!
//! ```text
//! on_batch(b)   ── writer moves onto the lane: write(b) ──▶ Busy(task)
//! poll_ready    ── Busy: poll the task; the writer comes back ──▶ Idle   (Pending meanwhile)
//! poll_barrier  ── Busy: as poll_ready; Idle: on the lane, sync() ──▶ Busy(task), stepping
//!                  ──▶ Idle, Ready                                     (Pending meanwhile)
//! poll_pre_commit / poll_commit ── as poll_barrier, with pre_commit(id) / commit(id)
//! poll_close    ── Idle: on the lane, finish() ──▶ Closing ──▶ summary
//! finish        ── returns the summary
//! ```
//!
//! The lane is the sink's own thread, started by `open`: the writer's buffers (a Parquet writer
//! holds a whole row group) are allocated and reused by one thread for the sink's life.
//!
//! While a write is in flight the sink is not ready, so it takes nothing more from its edge:
//! a slow disk backpressures the pipeline like any slow sink, with at most one batch in the
//! writer besides the edge. Parts are committed on finish ([`PartCommit::OnFinish`]) unless the
//! options say otherwise: a failed or cancelled run drops the writer, which deletes its
//! in-progress and uncommitted parts, so it leaves no file that looks complete.
//!
//! A [barrier](weir_runtime::barrier) makes the rows before it durable and visible
//! ([`PartWriter::sync`]: the open part is completed, fsynced and renamed, then the directory is
//! fsynced) before the sink reports it, so the sink must commit each part
//! ([`PartSinkOptions::commit`] with [`PartCommit::EachPart`]); with the default commit on
//! finish, a barrier fails the run with an error saying so.
//!
//! With [`PartCommit::OnCheckpoint`] the sink commits by checkpoint instead (two-phase commit,
//! see [`PartWriter::pre_commit`]): [`PartSink::poll_pre_commit`] is what its snapshot runs,
//! between batches, and [`PartSink::poll_commit`] what runs when the checkpoint is complete;
//! both run on the lane like a write. In a checkpointed pipeline the sink's
//! [`Sink::poll_pre_commit`] and [`Sink::commit`] run them: the commit is queued and runs on the
//! lane before the next batch (or by the close, which commits every part). Its state in a
//! checkpoint is every part it pre-committed. A sink built with [`PartSinkOptions::resume`]
//! opens its writer only at [`Sink::restore`]: it recovers its own parts in the directory by
//! the checkpoint restored ([`PartWriter::recover`], limited to its prefix so that instances
//! sharing the directory never touch each other's files), resumes after them, and reports the
//! checkpoint's parts as written; with nothing to restore it recovers with no complete
//! checkpoint (discarding what is pending) before its first batch.
//!
//! Commits are per sink instance, though: when a run dies, instances that already finished have
//! committed their parts, and nothing marks an output as complete. A job whose outputs must
//! appear whole and together writes into a [`JobOutput`](crate::connector::JobOutput)'s staging
//! directories and publishes them once the run has ended (as the orders ETL job does).
//!
//! Several instances may write into one directory: instance `i` of `n > 1` names its parts
//! `<prefix>-<i>-NNNNN.<ext>`.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use weir_runtime::checkpoint::{SnapshotReader, SnapshotWriter};
use weir_runtime::{Barrier, InputPort, InstanceInfo, OperatorError, Sink, SinkHandle};

use super::ArrowStream;
use crate::connector::{
    dead_letter_schema, dead_letters_to_batch, DeadLetter, PartCommit, PartFile, PartFormat,
    PartWriter, PartWriterOptions, PreCommit, WriteError, WriteSummary,
};
use crate::lane::{Lane, LaneError, LaneTask};

/// Options of a [`PartSink`]: the writer's options, with commit-on-finish by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSinkOptions {
    /// The part writer's options (format, rolling limits, prefix, commit mode).
    pub writer: PartWriterOptions,
    /// Continue the parts in the directory ([`PartSinkOptions::resume`]). Default `false`.
    pub resume: bool,
}

impl PartSinkOptions {
    /// Parts of `format`, committed when the sink finishes.
    pub fn new(format: PartFormat) -> Self {
        Self {
            writer: PartWriterOptions {
                commit: PartCommit::OnFinish,
                ..PartWriterOptions::new(format)
            },
            resume: false,
        }
    }

    /// Rolls to a new part after `rows` rows.
    pub fn max_rows(mut self, rows: u64) -> Self {
        self.writer.max_rows = Some(rows);
        self
    }

    /// Rolls to a new part once a part reaches `bytes` bytes.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.writer.max_bytes = Some(bytes);
        self
    }

    /// When parts get their final names: [`PartCommit::EachPart`] for a sink that must make
    /// rows durable at [barriers](weir_runtime::barrier), [`PartCommit::OnCheckpoint`] for a
    /// sink committing by checkpoint.
    pub fn commit(mut self, commit: PartCommit) -> Self {
        self.writer.commit = commit;
        self
    }

    /// Opens the writer with [`PartWriter::resume`] (a restored run's, continuing the parts in
    /// the directory) instead of [`PartWriter::create`] (an empty directory).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }
}

/// What a step on the lane produced.
enum Done {
    Wrote,
    PreCommitted(PreCommit),
    Committed(Vec<PartFile>),
}

enum State {
    /// Before `open`.
    Unopened,
    Idle(Box<PartWriter>),
    Busy(LaneTask<(Box<PartWriter>, Result<Done, WriteError>)>),
    Closing(LaneTask<Result<WriteSummary, WriteError>>),
    Closed(WriteSummary),
    /// After an error or `finish`.
    Gone,
}

/// Writes a stream of Arrow batches into part files; see the module docs.
pub struct PartSink {
    dir: PathBuf,
    schema: SchemaRef,
    opts: PartSinkOptions,
    state: State,
    /// The task in flight is a step a barrier or a checkpoint asked for (see
    /// [`PartSink::poll_step`]).
    stepping: bool,
    /// What the last task produced.
    outcome: Option<Done>,
    /// The thread writing, started by `open`. Dropping it waits for a write in flight, whose
    /// writer (if abandoned) is dropped on that thread and removes its temporary files.
    lane: Option<Lane>,
    /// A resuming sink committing by checkpoint opens its writer at restore (or, when there is
    /// nothing to restore, before its first batch): its options, with the instance's prefix.
    deferred: Option<PartWriterOptions>,
    /// Every part pre-committed so far (a restored sink's included): the sink's state in a
    /// checkpoint.
    checkpointed: WriteSummary,
    /// The parts a restore took back from its checkpoint, reported by `finish` before the
    /// writer's own.
    restored: WriteSummary,
    /// The completed checkpoint to commit before the next batch.
    to_commit: Option<u64>,
}

impl std::fmt::Debug for PartSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartSink")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn write_error(e: WriteError) -> OperatorError {
    match e {
        // The sink was configured so: the user's to fix.
        WriteError::DurableOnlyOnFinish | WriteError::CommitsByCheckpoint => {
            OperatorError::user(format!("cannot make rows durable at a barrier: {e}"))
        }
        WriteError::NotTransactional | WriteError::NotRecovered { .. } => {
            OperatorError::user(e.to_string())
        }
        e => OperatorError::external("cannot write output", e),
    }
}

fn join_error(e: LaneError) -> OperatorError {
    OperatorError::internal(format!("the blocking write failed: {e}"))
}

impl PartSink {
    /// A sink writing batches of `schema` into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>, schema: SchemaRef, opts: PartSinkOptions) -> Self {
        Self {
            dir: dir.into(),
            schema,
            opts,
            state: State::Unopened,
            stepping: false,
            outcome: None,
            lane: None,
            deferred: None,
            checkpointed: WriteSummary::default(),
            restored: WriteSummary::default(),
            to_commit: None,
        }
    }

    fn by_checkpoint(&self) -> bool {
        self.opts.writer.commit == PartCommit::OnCheckpoint
    }

    /// Opens a deferred writer: recovers this instance's parts in the directory by
    /// `last_complete` ([`PartWriter::recover`]), then resumes after them.
    fn open_deferred(&mut self, last_complete: Option<u64>) -> Result<(), OperatorError> {
        let Some(opts) = self.deferred.take() else {
            return Ok(());
        };
        PartWriter::recover_own(&self.dir, last_complete, &opts).map_err(write_error)?;
        if last_complete.is_some() {
            PartWriter::discard_unlisted(&self.dir, &opts, &self.restored.files)
                .map_err(write_error)?;
        }
        let writer =
            PartWriter::resume(&self.dir, self.schema.clone(), opts).map_err(write_error)?;
        self.state = State::Idle(Box::new(writer));
        Ok(())
    }

    /// Opens a deferred writer with nothing restored, and commits a completed checkpoint
    /// waiting to be; `Ready` once the writer is idle.
    fn poll_settled(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Err(e) = self.open_deferred(None) {
            return Poll::Ready(Err(e));
        }
        if let Some(id) = self.to_commit {
            std::task::ready!(PartSink::poll_commit(self, cx, id))?;
            self.to_commit = None;
        }
        self.poll_idle(cx)
    }

    /// Waits for the write in flight, if any.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let State::Busy(handle) = &mut self.state {
            let (writer, result) = match Pin::new(handle).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(joined) => {
                    self.state = State::Gone;
                    joined.map_err(join_error)?
                }
            };
            self.outcome = Some(result.map_err(write_error)?);
            self.state = State::Idle(writer);
        }
        Poll::Ready(Ok(()))
    }

    /// Waits for the write in flight, then runs `step` on the writer on the lane; `Ready` with
    /// its outcome once it is done.
    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        step: impl FnOnce(&mut PartWriter) -> Result<Done, WriteError> + Send + 'static,
    ) -> Poll<Result<Done, OperatorError>> {
        let mut step = Some(step);
        loop {
            if let Err(e) = std::task::ready!(self.poll_idle(cx)) {
                self.stepping = false;
                return Poll::Ready(Err(e));
            }
            if std::mem::take(&mut self.stepping) {
                return Poll::Ready(self.outcome.take().ok_or_else(|| {
                    OperatorError::internal("the part sink's step left no outcome")
                }));
            }
            let (State::Idle(mut writer), Some(lane), Some(step)) = (
                std::mem::replace(&mut self.state, State::Gone),
                &self.lane,
                step.take(),
            ) else {
                return Poll::Ready(Err(OperatorError::internal(
                    "the part sink was asked to commit while it had no writer",
                )));
            };
            self.state = State::Busy(lane.run(move || {
                let result = step(&mut writer);
                (writer, result)
            }));
            self.stepping = true;
        }
    }

    /// Phase one of checkpoint `checkpoint_id`: waits for the write in flight, then runs
    /// [`PartWriter::pre_commit`] on the lane; `Ready` with what it made pending (for the
    /// checkpoint's state). Call it between batches, when the sink snapshots its state.
    ///
    /// # Errors
    /// The write's or the pre-commit's error (a user error if the sink does not commit by
    /// checkpoint).
    pub fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint_id: u64,
    ) -> Poll<Result<PreCommit, OperatorError>> {
        let done = std::task::ready!(self.poll_step(cx, move |w| w
            .pre_commit(checkpoint_id)
            .map(Done::PreCommitted)));
        Poll::Ready(match done? {
            Done::PreCommitted(p) => Ok(p),
            _ => Err(OperatorError::internal(
                "a pre-commit ended as another step",
            )),
        })
    }

    /// Phase two, once checkpoint `checkpoint_id` is complete: runs [`PartWriter::commit`] on
    /// the lane; `Ready` with the parts it made visible.
    ///
    /// # Errors
    /// As [`poll_pre_commit`](Self::poll_pre_commit).
    pub fn poll_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint_id: u64,
    ) -> Poll<Result<Vec<PartFile>, OperatorError>> {
        let done = std::task::ready!(
            self.poll_step(cx, move |w| w.commit(checkpoint_id).map(Done::Committed))
        );
        Poll::Ready(match done? {
            Done::Committed(parts) => Ok(parts),
            _ => Err(OperatorError::internal("a commit ended as another step")),
        })
    }
}

impl Sink for PartSink {
    type Input = RecordBatch;
    type Output = WriteSummary;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        let mut opts = self.opts.writer.clone();
        if info.parallelism > 1 {
            opts.prefix = format!("{}-{}", opts.prefix, info.instance);
        }
        self.lane = Some(Lane::start("weir-part-write").map_err(join_error)?);
        if self.opts.resume && self.by_checkpoint() {
            // Its parts are recovered by the checkpoint restored, known at `restore`.
            self.deferred = Some(opts);
            return Ok(());
        }
        let writer = if self.opts.resume {
            PartWriter::resume(&self.dir, self.schema.clone(), opts)
        } else {
            PartWriter::create(&self.dir, self.schema.clone(), opts)
        }
        .map_err(write_error)?;
        self.state = State::Idle(Box::new(writer));
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.poll_settled(cx)
    }

    /// Committing by checkpoint: the first phase, [`PartSink::poll_pre_commit`]. Otherwise as
    /// at a barrier: parts committed each make the rows durable (at least once across a
    /// restore), and a sink committing on finish fails the run, saying so.
    fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint: u64,
    ) -> Poll<Result<(), OperatorError>> {
        std::task::ready!(self.poll_settled(cx))?;
        if !self.by_checkpoint() {
            return self
                .poll_step(cx, |w| w.sync().map(|()| Done::Wrote))
                .map_ok(|_| ());
        }
        let made = std::task::ready!(PartSink::poll_pre_commit(self, cx, checkpoint))?;
        for part in made.parts {
            self.checkpointed.rows += part.rows;
            self.checkpointed.bytes += part.bytes;
            self.checkpointed.files.push(part);
        }
        Poll::Ready(Ok(()))
    }

    /// The second phase, run on the sink's thread before the next batch (or by `finish`, which
    /// commits every part).
    fn commit(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        if self.by_checkpoint() {
            self.to_commit = Some(checkpoint);
        }
        Ok(())
    }

    /// Every part pre-committed so far: a restore reports them as written.
    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        if self.by_checkpoint() {
            let bytes = weir_runtime::checkpoint::encode(&self.checkpointed)
                .map_err(|e| OperatorError::internal(format!("encoding the parts: {e}")))?;
            state.put_instance(bytes);
        }
        Ok(())
    }

    /// Finishes the parts of the checkpoint restored (and of earlier ones) and discards the
    /// later ones, then opens the writer after them. Needs [`PartSinkOptions::resume`].
    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        if !self.by_checkpoint() {
            return Ok(());
        }
        if self.deferred.is_none() {
            return Err(OperatorError::user(format!(
                "part sink into {} restores a checkpoint but was not opened to resume: set \
                 `PartSinkOptions::resume(true)`",
                self.dir.display()
            )));
        }
        if let Some(bytes) = state.instance_states().first() {
            self.checkpointed = weir_runtime::checkpoint::decode(bytes).map_err(|e| {
                OperatorError::user(format!("the checkpoint's parts do not decode: {e}"))
            })?;
            self.restored = self.checkpointed.clone();
        }
        self.open_deferred(Some(state.checkpoint()))
    }

    fn on_batch(&mut self, _: InputPort, batch: RecordBatch) -> Result<(), OperatorError> {
        self.open_deferred(None)?;
        let (State::Idle(mut writer), Some(lane)) =
            (std::mem::replace(&mut self.state, State::Gone), &self.lane)
        else {
            return Err(OperatorError::internal(
                "a batch reached the part sink while it was not ready",
            ));
        };
        self.state = State::Busy(lane.run(move || {
            let result = writer.write(&batch).map(|()| Done::Wrote);
            (writer, result)
        }));
        Ok(())
    }

    /// Waits for the write in flight, then syncs the writer on the lane
    /// ([`PartWriter::sync`]); `Ready` once the rows taken so far are in renamed, fsynced parts.
    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        _: Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        self.poll_step(cx, |w| w.sync().map(|()| Done::Wrote))
            .map_ok(|_| ())
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Err(e) = self.open_deferred(None) {
            return Poll::Ready(Err(e));
        }
        loop {
            match &mut self.state {
                State::Busy(_) => {
                    if let Poll::Ready(Err(e)) = self.poll_idle(cx) {
                        return Poll::Ready(Err(e));
                    }
                    if matches!(self.state, State::Busy(_)) {
                        return Poll::Pending;
                    }
                }
                State::Idle(_) => {
                    let State::Idle(writer) = std::mem::replace(&mut self.state, State::Gone)
                    else {
                        unreachable!("matched Idle above");
                    };
                    let Some(lane) = &self.lane else {
                        return Poll::Ready(Err(OperatorError::internal(
                            "the part sink closed without being opened",
                        )));
                    };
                    self.state = State::Closing(lane.run(move || writer.finish()));
                }
                State::Closing(handle) => {
                    let joined = match Pin::new(handle).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(joined) => joined,
                    };
                    self.state = State::Gone;
                    let summary = joined.map_err(join_error)?.map_err(write_error)?;
                    self.state = State::Closed(summary);
                }
                State::Unopened | State::Closed(_) | State::Gone => return Poll::Ready(Ok(())),
            }
        }
    }

    /// The parts written: a restored sink's checkpointed parts first, then its writer's.
    fn finish(&mut self) -> Result<WriteSummary, OperatorError> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Closed(summary) => {
                let mut all = std::mem::take(&mut self.restored);
                all.rows += summary.rows;
                all.bytes += summary.bytes;
                all.files.extend(summary.files);
                Ok(all)
            }
            _ => Err(OperatorError::internal(
                "the part sink finished without closing its writer",
            )),
        }
    }
}

/// Writes dead letters into NDJSON (or other) part files: `{"file":…,"line":…,"reason":…,
/// "raw":…}` per line, `file` and `line` omitted when unknown.
pub struct DeadLetterSink {
    inner: PartSink,
    keep_file: bool,
}

impl std::fmt::Debug for DeadLetterSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterSink")
            .field("inner", &self.inner)
            .field("keep_file", &self.keep_file)
            .finish()
    }
}

impl DeadLetterSink {
    /// NDJSON parts in `dir`, committed on finish.
    pub fn ndjson(dir: impl Into<PathBuf>) -> Self {
        Self::new(dir, PartSinkOptions::new(PartFormat::Ndjson))
    }

    /// Parts of any format in `dir`.
    pub fn new(dir: impl Into<PathBuf>, opts: PartSinkOptions) -> Self {
        Self {
            inner: PartSink::new(dir, dead_letter_schema(), opts),
            keep_file: true,
        }
    }

    /// Whether to write each letter's `file` (default true; false when there is one input).
    pub fn keep_file(mut self, keep: bool) -> Self {
        self.keep_file = keep;
        self
    }
    /// [`PartSink::poll_pre_commit`] of the letters' parts.
    ///
    /// # Errors
    /// As [`PartSink::poll_pre_commit`].
    pub fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint_id: u64,
    ) -> Poll<Result<PreCommit, OperatorError>> {
        self.inner.poll_pre_commit(cx, checkpoint_id)
    }

    /// [`PartSink::poll_commit`] of the letters' parts.
    ///
    /// # Errors
    /// As [`PartSink::poll_pre_commit`].
    pub fn poll_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint_id: u64,
    ) -> Poll<Result<Vec<PartFile>, OperatorError>> {
        self.inner.poll_commit(cx, checkpoint_id)
    }
}

impl Sink for DeadLetterSink {
    type Input = Vec<DeadLetter>;
    type Output = WriteSummary;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        self.inner.open(info)
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.inner.poll_ready(cx)
    }

    fn on_batch(
        &mut self,
        port: InputPort,
        mut batch: Vec<DeadLetter>,
    ) -> Result<(), OperatorError> {
        if !self.keep_file {
            for d in &mut batch {
                d.file = None;
            }
        }
        let batch = dead_letters_to_batch(&batch)
            .map_err(|e| OperatorError::internal(format!("dead letters to Arrow: {e}")))?;
        self.inner.on_batch(port, batch)
    }

    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        barrier: Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        self.inner.poll_barrier(cx, barrier)
    }

    fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint: u64,
    ) -> Poll<Result<(), OperatorError>> {
        Sink::poll_pre_commit(&mut self.inner, cx, checkpoint)
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        Sink::commit(&mut self.inner, checkpoint)
    }

    fn snapshot(&mut self, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        Sink::snapshot(&mut self.inner, state)
    }

    fn restore(&mut self, state: &SnapshotReader) -> Result<(), OperatorError> {
        Sink::restore(&mut self.inner, state)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.inner.poll_close(cx)
    }

    fn finish(&mut self) -> Result<WriteSummary, OperatorError> {
        self.inner.finish()
    }
}

impl ArrowStream {
    /// Ends the stream in part files under `dir`, written by `parallelism` [`PartSink`]
    /// instances (batches spread round-robin over them). The handle yields each instance's
    /// summary.
    pub fn write_parts(
        self,
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        opts: PartSinkOptions,
        parallelism: usize,
    ) -> SinkHandle<WriteSummary> {
        let dir = dir.into();
        let schema = self.schema.clone();
        let stream = if parallelism > 1 {
            self.stream.rebalance()
        } else {
            self.stream
        };
        stream.sink_with_parallelism(name, parallelism, move |_| {
            PartSink::new(dir.clone(), schema.clone(), opts.clone())
        })
    }
}

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
