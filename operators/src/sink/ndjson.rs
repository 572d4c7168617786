//! Typed rows into rolling NDJSON part files, made durable at every barrier.
//!
//! [`NdjsonSink`] writes each row as one line of JSON (`serde_json`; a string's line breaks
//! are escaped, so a row is always exactly one line) into part files in a directory, created
//! if missing. A row that cannot be encoded (a map with non-string keys, a `Serialize` impl
//! that fails) goes to the sink's dead letters with the reason; the other rows of its batch
//! are written.
//!
//! # File protocol
//!
//! Instance `i` of a sink names its parts `part-<run>-<i>-<NNNNN>.ndjson`, `NNNNN` counting
//! from `00000`. `<run>` is made when the sink is built, from the Unix time in milliseconds,
//! the process id and a count of the sinks this process built before (so a restarted process,
//! or a second run in the same process, writing into the same directory never reuses a name;
//! instances cloned from one sink share it). Every part:
//!
//! 1. is written under the hidden name `.part-<run>-<i>-<NNNNN>.ndjson.inprogress`;
//! 2. is *completed* when it reaches [`max_rows`](NdjsonSink::max_rows) rows or
//!    [`max_bytes`](NdjsonSink::max_bytes) bytes (checked after every row, so a part exceeds
//!    the byte limit by less than one line), when a [barrier](weir_runtime::barrier) arrives,
//!    and when the input ends: fsynced, then renamed to its final name. A rename within a
//!    directory is atomic, so a reader listing the directory (skipping hidden names) sees
//!    complete parts only;
//! 3. at a barrier, and at the end, the directory is fsynced as well, so the renames survive
//!    a power loss, and only then is the barrier reported as handled by this sink.
//!
//! So when a barrier completes (every sink the source reaches has handled it), every row
//! before it is in a visible, fsynced part. What a crash (`kill -9`, a power loss) leaves:
//!
//! * visible parts, each complete, holding every row before the last barrier the sink
//!   handled, and perhaps rows after it in parts completed by size since;
//! * at most one hidden `.inprogress` file per instance, holding only rows after that
//!   barrier, perhaps with a torn last line. No completed barrier covers its rows.
//!
//! A source that replays what it has not seen acknowledged (a write-ahead log's uncommitted
//! records) writes the rows no completed barrier covers again, into the next run's parts:
//! delivery is *at least once*. No row is lost, but rows of visible parts that no completed
//! barrier covered yet (parts completed by size after the last barrier, or synced for a
//! barrier that another sink had not yet handled) may appear twice. Leftover `.inprogress`
//! files can be deleted once no writer runs.
//!
//! A run that fails or is cancelled deletes its in-progress files (the same rows are not
//! acknowledged either); its completed parts stay.
//!
//! Every barrier completes a part, so it costs a file and two fsyncs per instance: a source
//! should emit barriers at an interval (a few hundred milliseconds, a few thousand rows), not
//! after every row.
//!
//! # Commit by checkpoint
//!
//! With [`commit`](NdjsonSink::commit)`(`[`PartCommit::OnCheckpoint`]`)` the sink commits its
//! parts in two phases by checkpoint, with the part writer's protocol and names (see
//! [`crate::connector::PartWriter`]'s docs, *Commit by checkpoint*), so that each
//! row is in the visible parts exactly once:
//!
//! 1. a part completed by size is fsynced and keeps its hidden `.inprogress` name;
//! 2. [`poll_pre_commit`](NdjsonSink::poll_pre_commit)`(id)`, run when the sink snapshots its
//!    state for checkpoint `id`, completes the open part, fsyncs it, renames it and every part
//!    completed since the last pre-commit to `.<name>.pending-<id>` and fsyncs the directory;
//! 3. [`poll_commit`](NdjsonSink::poll_commit)`(id)`, once checkpoint `id` is complete,
//!    renames every pending part of a checkpoint `≤ id` to its final name and fsyncs the
//!    directory (idempotent);
//! 4. at restore, [`NdjsonSink::recover`]`(dir, last_complete)` runs before the sink opens:
//!    pending parts of completed checkpoints become visible, later ones and every `.inprogress`
//!    file are deleted. A restored sink gets a new run id, so its names never meet the old
//!    ones;
//! 5. the end of the input commits every part, pending or not, and fsyncs the directory.
//!
//! The sink keeps the list of every part it pre-committed ([`checkpointed`](NdjsonSink::checkpointed)),
//! for the checkpoint to store with its state. A restored sink is seeded with that list
//! ([`restored`](NdjsonSink::restored)), and a [`JobOutput`](crate::connector::JobOutput)
//! records it before what the restored sink writes: so `_SUCCESS` counts each committed row
//! once, whether it was written before the crash or after the restore.
//!
//! In this mode a barrier is not a commit point: [`poll_barrier`](Sink::poll_barrier) fails
//! the run with a user error, as the part sink's does, since rows are durable only through
//! the checkpoint's pre-commit.
//!
//! # Blocking work
//!
//! Encoding runs in `on_batch`; writes, fsyncs and renames run on the sink's own thread (one
//! batch at a time, in order). While a write is in flight the sink is not ready, so a slow disk
//! backpressures the pipeline with at most one encoded batch in the sink; a barrier or the end
//! waits (`Pending`) until its fsyncs are done.
//!
//! # Examples
//!
//! ```
//! use weir_operators::prelude::*;
//!
//! #[derive(serde::Serialize, Clone, HeapSize)]
//! struct Order { id: u64, cents: u64 }
//!
//! let dir = tempfile::tempdir()?;
//! let mut p = Pipeline::new("orders");
//! let summary = p
//!     .source("orders", Generator::new(250, |i| Order { id: i, cents: i * 100 }))
//!     .sink("files", NdjsonSink::new(dir.path()).max_rows(100));
//! p.run()?;
//! let summary = summary.take().expect("one instance");
//! assert_eq!(summary.rows, 250);
//! let rows: Vec<u64> = summary.files.iter().map(|f| f.rows).collect();
//! assert_eq!(rows, [100, 100, 50]);
//! let first = std::fs::read_to_string(&summary.files[0].path)?;
//! assert_eq!(first.lines().next(), Some(r#"{"id":0,"cents":0}"#));
//! // Nothing hidden is left.
//! assert_eq!(std::fs::read_dir(dir.path())?.count(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use serde::Serialize;
use weir_runtime::{Barrier, Data, DeadLetter, InputPort, InstanceInfo, OperatorError, Sink};

use crate::connector::part_writer::sync_dir;
use crate::connector::{
    PartCommit, PartFile, PartRecovery, PartWriter, PreCommit, WriteError, WriteSummary,
};
use crate::lane::{Lane, LaneError, LaneTask};

/// Writes typed rows as NDJSON into rolling part files; see the [module docs](self).
///
/// Its result is a [`WriteSummary`]: the parts this instance completed, in order, with their
/// rows and bytes, and the totals. Rows that could not be encoded are not in it; they are the
/// sink's dead letters.
pub struct NdjsonSink<T> {
    dir: PathBuf,
    run: String,
    max_rows: u64,
    max_bytes: u64,
    commit: PartCommit,
    state: State,
    /// The task in flight is a step (a sync, a pre-commit, a commit) a caller waits for.
    syncing: bool,
    /// What the last step produced, taken by the caller that waited for it.
    stepped: Option<Step>,
    /// Every part pre-committed so far (a restored sink's included).
    checkpointed: WriteSummary,
    dead: Vec<DeadLetter>,
    /// The thread doing the file work, started by `open`. Declared after `state`, so a writer
    /// still in flight when the sink is dropped is finished (and its in-progress file removed)
    /// before the thread is joined.
    lane: Option<Lane>,
    /// This instance's index, from `open`.
    instance: usize,
    /// The completed checkpoint to commit before the next batch.
    to_commit: Option<u64>,
    _rows: PhantomData<fn(T)>,
}

/// What a task on the lane produced.
enum Step {
    Wrote,
    PreCommitted(PreCommit),
    Committed(Vec<PartFile>),
}

enum State {
    /// Before `open`.
    Unopened,
    Idle(Box<Parts>),
    /// A write or a step on the lane.
    Busy(LaneTask<(Box<Parts>, Result<Step, WriteError>)>),
    Closing(LaneTask<Result<WriteSummary, WriteError>>),
    Closed(WriteSummary),
    /// After an error or `finish`.
    Gone,
}

impl<T> std::fmt::Debug for NdjsonSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonSink")
            .field("dir", &self.dir)
            .field("run", &self.run)
            .field("max_rows", &self.max_rows)
            .field("max_bytes", &self.max_bytes)
            .field("commit", &self.commit)
            .finish_non_exhaustive()
    }
}

/// A clone has the same directory, limits and run id, and nothing written: build one sink and
/// clone it for each parallel instance of one sink node (instance numbers keep their names
/// apart). Two sink nodes writing into one directory need run ids of their own: build each
/// with [`new`](NdjsonSink::new). (A name taken anyway fails the run; no file is replaced.)
impl<T> Clone for NdjsonSink<T> {
    fn clone(&self) -> Self {
        Self {
            dir: self.dir.clone(),
            run: self.run.clone(),
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            commit: self.commit,
            state: State::Unopened,
            syncing: false,
            stepped: None,
            checkpointed: WriteSummary::default(),
            dead: Vec::new(),
            lane: None,
            instance: 0,
            to_commit: None,
            _rows: PhantomData,
        }
    }
}

/// A run id unique across processes and within one: Unix milliseconds, process id, and how
/// many ids this process made before.
fn new_run() -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    // Relaxed: only uniqueness matters, which `fetch_add` gives in any ordering.
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{ms}-{}-{n}", std::process::id())
}

fn write_error(e: WriteError) -> OperatorError {
    match e {
        // The sink was configured or driven so: the user's to fix.
        WriteError::CommitsByCheckpoint => {
            OperatorError::user(format!("cannot make NDJSON rows durable at a barrier: {e}"))
        }
        WriteError::CheckpointOrder { .. } => OperatorError::user(e.to_string()),
        e => OperatorError::external("cannot write NDJSON parts", e),
    }
}

fn lane_error(e: LaneError) -> OperatorError {
    OperatorError::internal(format!("the blocking NDJSON write failed: {e}"))
}

impl<T> NdjsonSink<T> {
    /// Parts of at most this many rows, unless [`max_rows`](Self::max_rows) says otherwise.
    pub const DEFAULT_MAX_ROWS: u64 = 1 << 20;
    /// Parts of about this many bytes (64 MiB), unless [`max_bytes`](Self::max_bytes) says
    /// otherwise.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;

    /// A sink writing into `dir` (created when the sink opens), with a fresh run id and the
    /// default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            run: new_run(),
            max_rows: Self::DEFAULT_MAX_ROWS,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            commit: PartCommit::EachPart,
            state: State::Unopened,
            syncing: false,
            stepped: None,
            checkpointed: WriteSummary::default(),
            dead: Vec::new(),
            lane: None,
            instance: 0,
            to_commit: None,
            _rows: PhantomData,
        }
    }

    /// Completes a part once it holds `rows` rows (at least 1; zero fails the run when it
    /// starts).
    pub fn max_rows(mut self, rows: u64) -> Self {
        self.max_rows = rows;
        self
    }

    /// Completes a part once it holds `bytes` bytes or more (at least 1; zero fails the run
    /// when it starts).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// When parts get their final names: [`PartCommit::EachPart`] (the default) as each part
    /// completes, durable at every barrier; [`PartCommit::OnCheckpoint`] in two phases by
    /// checkpoint (see the [module docs](self#commit-by-checkpoint)).
    /// [`PartCommit::OnFinish`] is not offered: the sink fails when it opens.
    pub fn commit(mut self, commit: PartCommit) -> Self {
        self.commit = commit;
        self
    }

    /// This instance, restored from a checkpoint whose state holds `checkpointed` (what
    /// [`checkpointed`](Self::checkpointed) returned when the checkpoint was taken): the parts
    /// it lists stay in the list the next checkpoints store. Set it on each instance, after
    /// cloning: a clone starts with an empty list.
    pub fn restored(mut self, checkpointed: WriteSummary) -> Self {
        self.checkpointed = checkpointed;
        self
    }

    /// Every part this instance pre-committed, committed or not yet, with their rows and
    /// bytes, in order (those of the checkpoint it was [restored](Self::restored) from first):
    /// what the checkpoint stores in the sink's state, for the restore's `_SUCCESS` counts.
    pub fn checkpointed(&self) -> &WriteSummary {
        &self.checkpointed
    }

    /// Restores `dir` after a crash, before a sink opens it: as
    /// [`PartWriter::recover`] (pending parts of checkpoints `≤ last_complete` made visible,
    /// later ones and in-progress files deleted, the directory fsynced).
    ///
    /// # Errors
    /// I/O errors listing, renaming, deleting or syncing.
    pub fn recover(
        dir: impl AsRef<Path>,
        last_complete: Option<u64>,
    ) -> Result<PartRecovery, WriteError> {
        PartWriter::recover(dir, last_complete)
    }

    /// The run id in this sink's part names (`part-<run>-<instance>-<NNNNN>.ndjson`).
    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// The directory written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for the write or sync in flight, if any.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let State::Busy(task) = &mut self.state {
            let joined = std::task::ready!(Pin::new(task).poll(cx));
            self.state = State::Gone;
            let (parts, result) = joined.map_err(lane_error)?;
            match result {
                Ok(step) => self.stepped = Some(step),
                Err(e) => {
                    // The failed writer removes its in-progress files on the lane.
                    if let Some(lane) = &self.lane {
                        drop(lane.run(move || drop(parts)));
                    }
                    return Poll::Ready(Err(write_error(e)));
                }
            }
            self.state = State::Idle(parts);
        }
        Poll::Ready(Ok(()))
    }

    /// Runs `f` on the lane with the idle writer; the sink is busy until it is done.
    fn submit(
        &mut self,
        f: impl FnOnce(&mut Parts) -> Result<Step, WriteError> + Send + 'static,
    ) -> Result<(), OperatorError> {
        let (State::Idle(mut parts), Some(lane)) =
            (std::mem::replace(&mut self.state, State::Gone), &self.lane)
        else {
            return Err(OperatorError::internal(
                "the NDJSON sink was given work while it was not ready",
            ));
        };
        self.state = State::Busy(lane.run(move || {
            let result = f(&mut parts);
            (parts, result)
        }));
        Ok(())
    }

    /// Waits for the write in flight, runs `f` on the lane, and waits for it; `Ready` with
    /// what it produced.
    fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Parts) -> Result<Step, WriteError> + Send + 'static,
    ) -> Poll<Result<Step, OperatorError>> {
        let mut f = Some(f);
        loop {
            if let Err(e) = std::task::ready!(self.poll_idle(cx)) {
                self.syncing = false;
                return Poll::Ready(Err(e));
            }
            if std::mem::take(&mut self.syncing) {
                return Poll::Ready(self.stepped.take().ok_or_else(|| {
                    OperatorError::internal("an NDJSON sink step ended without a result")
                }));
            }
            let Some(f) = f.take() else {
                return Poll::Ready(Err(OperatorError::internal(
                    "an NDJSON sink step was submitted twice",
                )));
            };
            if let Err(e) = self.submit(f) {
                return Poll::Ready(Err(e));
            }
            self.syncing = true;
        }
    }

    fn check_transactional(&self, what: &str) -> Result<(), OperatorError> {
        if self.commit != PartCommit::OnCheckpoint {
            return Err(OperatorError::user(format!(
                "the NDJSON sink writing into {} was asked to {what}, but it does not commit by \
                 checkpoint: build it with .commit(PartCommit::OnCheckpoint)",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Phase one of checkpoint `checkpoint_id` (see the [module docs](self#commit-by-checkpoint)):
    /// waits for the write in flight, then on the sink's thread completes the open part and
    /// makes it and every part completed since the last pre-commit durable and pending under
    /// `checkpoint_id`; `Ready` with what it made pending (for the checkpoint's state). Ids
    /// must increase from one call to the next. Call it between batches.
    ///
    /// # Errors
    /// A user error unless the sink commits by checkpoint; [`WriteError::CheckpointOrder`]
    /// for an id not above the last; the write's or the pre-commit's I/O errors.
    pub fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint_id: u64,
    ) -> Poll<Result<PreCommit, OperatorError>> {
        if let Err(e) = self.check_transactional("pre-commit") {
            return Poll::Ready(Err(e));
        }
        let step = std::task::ready!(self.poll_step(cx, move |p| p
            .pre_commit(checkpoint_id)
            .map(Step::PreCommitted)));
        Poll::Ready(match step? {
            Step::PreCommitted(made) => {
                for part in &made.parts {
                    self.checkpointed.rows += part.rows;
                    self.checkpointed.bytes += part.bytes;
                    self.checkpointed.files.push(part.clone());
                }
                Ok(made)
            }
            _ => Err(OperatorError::internal(
                "an NDJSON pre-commit ended as another step",
            )),
        })
    }

    /// Phase two, once checkpoint `checkpoint_id` is complete: renames every pending part of a
    /// checkpoint `≤ checkpoint_id` to its final name and fsyncs the directory, on the sink's
    /// thread; `Ready` with the parts it made visible. Idempotent.
    ///
    /// # Errors
    /// As [`poll_pre_commit`](Self::poll_pre_commit).
    pub fn poll_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint_id: u64,
    ) -> Poll<Result<Vec<PartFile>, OperatorError>> {
        if let Err(e) = self.check_transactional("commit") {
            return Poll::Ready(Err(e));
        }
        let step = std::task::ready!(
            self.poll_step(cx, move |p| p.commit(checkpoint_id).map(Step::Committed))
        );
        Poll::Ready(match step? {
            Step::Committed(parts) => Ok(parts),
            _ => Err(OperatorError::internal(
                "an NDJSON commit ended as another step",
            )),
        })
    }
}

impl<T: Serialize + Data> Sink for NdjsonSink<T> {
    type Input = Vec<T>;
    type Output = WriteSummary;

    fn open(&mut self, info: &InstanceInfo) -> Result<(), OperatorError> {
        if self.max_rows == 0 || self.max_bytes == 0 {
            return Err(OperatorError::user(format!(
                "NDJSON parts need room for a row: max_rows is {} and max_bytes is {}, both \
                 must be at least 1",
                self.max_rows, self.max_bytes
            )));
        }
        if self.commit == PartCommit::OnFinish {
            return Err(OperatorError::user(format!(
                "the NDJSON sink writing into {} cannot hold its parts until it finishes: \
                 commit each part (PartCommit::EachPart) or by checkpoint \
                 (PartCommit::OnCheckpoint)",
                self.dir.display()
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| {
            write_error(WriteError::Io {
                path: self.dir.clone(),
                source,
            })
        })?;
        self.instance = info.instance;
        self.lane = Some(Lane::start("weir-ndjson-write").map_err(lane_error)?);
        self.state = State::Idle(Box::new(Parts {
            dir: self.dir.clone(),
            stem: format!("part-{}-{}", self.run, info.instance),
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            by_checkpoint: self.commit == PartCommit::OnCheckpoint,
            next: 0,
            open: None,
            files: Vec::new(),
            staged: Vec::new(),
            pending: Vec::new(),
            last_pre_commit: None,
            unsynced_rename: false,
            lines: Lines::default(),
        }));
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        if let Some(id) = self.to_commit {
            std::task::ready!(NdjsonSink::poll_commit(self, cx, id))?;
            self.to_commit = None;
        }
        self.poll_idle(cx)
    }

    /// Committing by checkpoint: the first phase, [`NdjsonSink::poll_pre_commit`]. Committing
    /// each part: as at a barrier (the rows durable, at least once across a restore).
    fn poll_pre_commit(
        &mut self,
        cx: &mut Context<'_>,
        checkpoint: u64,
    ) -> Poll<Result<(), OperatorError>> {
        if self.commit != PartCommit::OnCheckpoint {
            return self
                .poll_step(cx, |p| p.sync().map(|()| Step::Wrote))
                .map_ok(|_| ());
        }
        NdjsonSink::poll_pre_commit(self, cx, checkpoint).map_ok(|_| ())
    }

    /// The second phase, run on the sink's thread before the next batch (or by the close,
    /// which commits every part).
    fn commit(&mut self, checkpoint: u64) -> Result<(), OperatorError> {
        if self.commit == PartCommit::OnCheckpoint {
            self.to_commit = Some(checkpoint);
        }
        Ok(())
    }

    /// Every part pre-committed so far ([`checkpointed`](NdjsonSink::checkpointed)).
    fn snapshot(
        &mut self,
        state: &mut weir_runtime::checkpoint::SnapshotWriter,
    ) -> Result<(), OperatorError> {
        if self.commit == PartCommit::OnCheckpoint {
            let bytes = weir_runtime::checkpoint::encode(&self.checkpointed)
                .map_err(|e| OperatorError::internal(format!("encoding the parts: {e}")))?;
            state.put_instance(bytes);
        }
        Ok(())
    }

    /// Takes back the parts the checkpoint lists, and finishes this instance's parts in the
    /// directory by it: pending parts of the checkpoint (or an earlier one) made visible, later
    /// ones and in-progress files deleted. Parts are found by instance index, so the sink
    /// restores at the parallelism it was checkpointed at.
    fn restore(
        &mut self,
        state: &weir_runtime::checkpoint::SnapshotReader,
    ) -> Result<(), OperatorError> {
        if self.commit != PartCommit::OnCheckpoint {
            return Ok(());
        }
        if let Some(bytes) = state.instance_states().first() {
            self.checkpointed = weir_runtime::checkpoint::decode(bytes).map_err(|e| {
                OperatorError::user(format!("the checkpoint's parts do not decode: {e}"))
            })?;
        }
        let mine = format!("-{}", self.instance);
        PartWriter::recover_where(&self.dir, Some(state.checkpoint()), |part| {
            crate::connector::part_writer::parse_part_name(part)
                .is_some_and(|(prefix, _, ext)| ext == "ndjson" && prefix.ends_with(&mine))
        })
        .map_err(write_error)?;
        Ok(())
    }

    fn on_batch(&mut self, _: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        let State::Idle(parts) = &mut self.state else {
            return Err(OperatorError::internal(
                "a batch reached the NDJSON sink while it was not ready",
            ));
        };
        let lines = &mut parts.lines;
        lines.clear();
        for row in &batch {
            let start = lines.buf.len();
            match serde_json::to_writer(&mut lines.buf, row) {
                Ok(()) => {
                    lines.buf.push(b'\n');
                    lines.ends.push(lines.buf.len());
                }
                Err(e) => {
                    // Drop what the failed row wrote before it failed.
                    lines.buf.truncate(start);
                    self.dead.push(DeadLetter::new(
                        format!("the row cannot be encoded as JSON: {e}"),
                        String::new(),
                    ));
                }
            }
        }
        if lines.ends.is_empty() {
            return Ok(());
        }
        self.submit(|p| p.write_lines().map(|()| Step::Wrote))
    }

    fn take_dead_letters(&mut self, out: &mut Vec<DeadLetter>) {
        out.append(&mut self.dead);
    }

    /// Waits for the write in flight, then, on the sink's thread, completes the open part and
    /// fsyncs the directory; `Ready` once every row taken so far is in a renamed, fsynced part.
    /// A sink committing by checkpoint fails here (see the
    /// [module docs](self#commit-by-checkpoint)).
    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        _: Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        if self.commit == PartCommit::OnCheckpoint {
            return Poll::Ready(Err(write_error(WriteError::CommitsByCheckpoint)));
        }
        self.poll_step(cx, |p| p.sync().map(|()| Step::Wrote))
            .map_ok(|_| ())
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        loop {
            match &mut self.state {
                State::Busy(_) => {
                    if let Err(e) = std::task::ready!(self.poll_idle(cx)) {
                        return Poll::Ready(Err(e));
                    }
                }
                State::Idle(_) => {
                    let (State::Idle(mut parts), Some(lane)) =
                        (std::mem::replace(&mut self.state, State::Gone), &self.lane)
                    else {
                        return Poll::Ready(Err(OperatorError::internal(
                            "the NDJSON sink closed without being opened",
                        )));
                    };
                    self.state = State::Closing(lane.run(move || {
                        parts.finish()?;
                        Ok(parts.summary())
                    }));
                }
                State::Closing(task) => {
                    let joined = std::task::ready!(Pin::new(task).poll(cx));
                    self.state = State::Gone;
                    let summary = joined.map_err(lane_error)?.map_err(write_error)?;
                    self.state = State::Closed(summary);
                }
                State::Unopened | State::Closed(_) | State::Gone => return Poll::Ready(Ok(())),
            }
        }
    }

    fn finish(&mut self) -> Result<WriteSummary, OperatorError> {
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Closed(summary) => Ok(summary),
            _ => Err(OperatorError::internal(
                "the NDJSON sink finished without closing its parts",
            )),
        }
    }
}

impl<T> Drop for NdjsonSink<T> {
    fn drop(&mut self) {
        // An abandoned writer removes its in-progress file: on the lane, not on the worker.
        if matches!(self.state, State::Idle(_)) {
            if let (State::Idle(parts), Some(lane)) =
                (std::mem::replace(&mut self.state, State::Gone), &self.lane)
            {
                drop(lane.run(move || drop(parts)));
            }
        }
    }
}

/// One encoded batch: the lines, each ending in `\n`, back to back, and where each ends.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    /// Empties the lines, keeping the allocations (within bounds: an outsized batch's buffer
    /// is not kept for the sink's whole life).
    fn clear(&mut self) {
        const KEEP_BYTES: usize = 4 << 20;
        if self.buf.capacity() > KEEP_BYTES {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.ends.clear();
    }
}

/// The part being written.
struct OpenPart {
    tmp: PathBuf,
    path: PathBuf,
    file: File,
    rows: u64,
    bytes: u64,
}

/// An instance's parts; it lives on the lane while a write or sync runs.
struct Parts {
    dir: PathBuf,
    /// `part-<run>-<instance>`.
    stem: String,
    max_rows: u64,
    max_bytes: u64,
    /// Parts are committed by checkpoint (see the module docs), not as each completes.
    by_checkpoint: bool,
    /// The number of the next part.
    next: u64,
    open: Option<OpenPart>,
    /// Visible parts, in order.
    files: Vec<PartFile>,
    /// By checkpoint: parts completed (fsynced) since the last pre-commit, still
    /// `.inprogress`: (hidden path, part).
    staged: Vec<(PathBuf, PartFile)>,
    /// By checkpoint: pre-committed parts, oldest first: (checkpoint id, hidden path, part).
    pending: Vec<(u64, PathBuf, PartFile)>,
    last_pre_commit: Option<u64>,
    /// A part was renamed since the directory was last fsynced.
    unsynced_rename: bool,
    /// The batch to write, encoded by `on_batch`.
    lines: Lines,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Parts {
    /// Writes `self.lines`, completing parts as they fill.
    fn write_lines(&mut self) -> Result<(), WriteError> {
        let lines = std::mem::take(&mut self.lines);
        let result = self.write_encoded(&lines);
        self.lines = lines;
        result
    }

    fn write_encoded(&mut self, lines: &Lines) -> Result<(), WriteError> {
        let mut i = 0;
        let mut from = 0;
        while i < lines.ends.len() {
            if self.open.is_none() {
                let part = self.open_part()?;
                self.open = Some(part);
            }
            let Some(part) = self.open.as_mut() else {
                unreachable!("a part was just opened")
            };
            // The lines that fit: at least one, as an open part has room for one more.
            while i < lines.ends.len() && part.rows < self.max_rows && part.bytes < self.max_bytes {
                let line_start = if i == 0 { 0 } else { lines.ends[i - 1] };
                part.bytes += (lines.ends[i] - line_start) as u64;
                part.rows += 1;
                i += 1;
            }
            let to = lines.ends[i - 1];
            let written = part.file.write_all(&lines.buf[from..to]);
            let full = part.rows >= self.max_rows || part.bytes >= self.max_bytes;
            if let Err(e) = written {
                let tmp = part.tmp.clone();
                self.discard_open();
                return Err(io_err(&tmp)(e));
            }
            from = to;
            if full {
                self.complete()?;
            }
        }
        Ok(())
    }

    fn open_part(&mut self) -> Result<OpenPart, WriteError> {
        let name = format!("{}-{:05}.ndjson", self.stem, self.next);
        let tmp = self.dir.join(format!(".{name}.inprogress"));
        let path = self.dir.join(name);
        // `create_new`: never write into a file someone else has.
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        self.next += 1;
        Ok(OpenPart {
            tmp,
            path,
            file,
            rows: 0,
            bytes: 0,
        })
    }

    /// Completes the open part, if any: fsync, rename to its final name (by checkpoint: fsync
    /// and stage it under its hidden name).
    fn complete(&mut self) -> Result<(), WriteError> {
        let Some(part) = self.open.take() else {
            return Ok(());
        };
        if self.by_checkpoint {
            if let Err(e) = part.file.sync_all() {
                let _ = std::fs::remove_file(&part.tmp);
                return Err(io_err(&part.tmp)(e));
            }
            self.staged.push((
                part.tmp,
                PartFile {
                    path: part.path,
                    rows: part.rows,
                    bytes: part.bytes,
                },
            ));
            return Ok(());
        }
        let result = part
            .file
            .sync_all()
            .map_err(io_err(&part.tmp))
            .and_then(|()| {
                if part.path.exists() {
                    return Err(io_err(&part.path)(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a part of this name exists already; it is left as it is",
                    )));
                }
                std::fs::rename(&part.tmp, &part.path).map_err(io_err(&part.path))
            });
        if let Err(e) = result {
            // Best effort: a leftover is hidden and marked `.inprogress` anyway.
            let _ = std::fs::remove_file(&part.tmp);
            return Err(e);
        }
        self.unsynced_rename = true;
        self.files.push(PartFile {
            path: part.path,
            rows: part.rows,
            bytes: part.bytes,
        });
        Ok(())
    }

    /// Makes every row written so far durable and visible: completes the open part, then
    /// fsyncs the directory if a part was renamed since it was last fsynced.
    fn sync(&mut self) -> Result<(), WriteError> {
        self.complete()?;
        if self.unsynced_rename {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
            self.unsynced_rename = false;
        }
        Ok(())
    }

    /// Phase one of checkpoint `id`: completes the open part, renames it and the parts staged
    /// since the last pre-commit to `.<name>.pending-<id>`, fsyncs the directory.
    fn pre_commit(&mut self, id: u64) -> Result<PreCommit, WriteError> {
        if let Some(last) = self.last_pre_commit {
            if id <= last {
                return Err(WriteError::CheckpointOrder { last, got: id });
            }
        }
        self.complete()?;
        self.last_pre_commit = Some(id);
        let mut made = PreCommit {
            checkpoint_id: id,
            parts: Vec::new(),
        };
        if self.staged.is_empty() {
            return Ok(made);
        }
        for (tmp, part) in std::mem::take(&mut self.staged) {
            let name = part
                .path
                .file_name()
                .map_or_else(Default::default, |n| n.to_string_lossy());
            let pending = self.dir.join(format!(".{name}.pending-{id}"));
            if let Err(e) = std::fs::rename(&tmp, &pending) {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err(&pending)(e));
            }
            made.parts.push(part.clone());
            self.pending.push((id, pending, part));
        }
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(made)
    }

    /// Phase two: renames the pending parts of checkpoints `≤ up_to` to their final names,
    /// fsyncs the directory if any was renamed; a part already renamed (by a recovery) counts
    /// as committed.
    fn commit(&mut self, up_to: u64) -> Result<Vec<PartFile>, WriteError> {
        let mut committed = Vec::new();
        while self.pending.first().is_some_and(|p| p.0 <= up_to) {
            let (id, tmp, part) = self.pending.remove(0);
            if let Err(e) = std::fs::rename(&tmp, &part.path) {
                let done_already = e.kind() == std::io::ErrorKind::NotFound && part.path.exists();
                if !done_already {
                    let path = part.path.clone();
                    self.pending.insert(0, (id, tmp, part));
                    return Err(io_err(&path)(e));
                }
            }
            committed.push(part.clone());
            self.files.push(part);
        }
        if !committed.is_empty() {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(committed)
    }

    /// The end of the input: every row visible and durable. By checkpoint, every part is
    /// committed, pending or not.
    fn finish(&mut self) -> Result<(), WriteError> {
        if !self.by_checkpoint {
            return self.sync();
        }
        self.complete()?;
        self.commit(u64::MAX)?;
        for (tmp, part) in std::mem::take(&mut self.staged) {
            std::fs::rename(&tmp, &part.path).map_err(io_err(&part.path))?;
            self.files.push(part);
            self.unsynced_rename = true;
        }
        if self.unsynced_rename {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
            self.unsynced_rename = false;
        }
        Ok(())
    }

    /// Removes the in-progress files, if any (the open part's and the staged ones); pending
    /// parts stay for a recovery.
    fn discard_open(&mut self) {
        if let Some(part) = self.open.take() {
            drop(part.file);
            // Best effort: a leftover is hidden and marked `.inprogress` anyway.
            let _ = std::fs::remove_file(&part.tmp);
        }
        for (tmp, _) in std::mem::take(&mut self.staged) {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    fn summary(&mut self) -> WriteSummary {
        let files = std::mem::take(&mut self.files);
        WriteSummary {
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
        }
    }
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.discard_open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(dir: &Path, max_rows: u64, max_bytes: u64) -> Parts {
        Parts {
            dir: dir.to_owned(),
            stem: "part-r-0".to_owned(),
            max_rows,
            max_bytes,
            by_checkpoint: false,
            next: 0,
            open: None,
            files: Vec::new(),
            staged: Vec::new(),
            pending: Vec::new(),
            last_pre_commit: None,
            unsynced_rename: false,
            lines: Lines::default(),
        }
    }

    fn encode(parts: &mut Parts, rows: impl IntoIterator<Item = u64>) {
        parts.lines.clear();
        for r in rows {
            serde_json::to_writer(&mut parts.lines.buf, &r).expect("a number");
            parts.lines.buf.push(b'\n');
            parts.lines.ends.push(parts.lines.buf.len());
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("listable")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn parts_roll_at_max_bytes_within_one_line_and_at_max_rows_exactly() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Lines "10\n" … "99\n": 3 bytes each; a part completes at 8 bytes, after 3 lines.
        let mut p = parts(dir.path(), 100, 8);
        encode(&mut p, 10..20);
        p.write_lines().expect("written");
        let rows: Vec<(u64, u64)> = p.files.iter().map(|f| (f.rows, f.bytes)).collect();
        assert_eq!(rows, vec![(3, 9), (3, 9), (3, 9)]);
        assert_eq!(p.open.as_ref().map(|o| o.rows), Some(1));
        p.sync().expect("synced");
        assert_eq!(p.files.len(), 4);

        let dir = tempfile::tempdir().expect("temp dir");
        let mut p = parts(dir.path(), 4, u64::MAX);
        encode(&mut p, 0..10);
        p.write_lines().expect("written");
        encode(&mut p, 10..13);
        p.write_lines().expect("written");
        p.sync().expect("synced");
        let rows: Vec<u64> = p.files.iter().map(|f| f.rows).collect();
        assert_eq!(rows, vec![4, 4, 4, 1]);
        let text: String = p
            .files
            .iter()
            .map(|f| std::fs::read_to_string(&f.path).expect("readable"))
            .collect();
        let want: String = (0..13).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, want);
    }

    #[test]
    fn a_dropped_writer_removes_its_in_progress_file_and_keeps_completed_parts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut p = parts(dir.path(), 2, u64::MAX);
        encode(&mut p, 0..3);
        p.write_lines().expect("written");
        assert_eq!(
            names(dir.path()),
            vec![".part-r-0-00001.ndjson.inprogress", "part-r-0-00000.ndjson"]
        );
        drop(p);
        assert_eq!(names(dir.path()), vec!["part-r-0-00000.ndjson"]);
    }

    #[test]
    fn a_part_never_replaces_a_file_of_the_same_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("part-r-0-00000.ndjson"), "theirs\n").expect("written");
        let mut p = parts(dir.path(), 10, u64::MAX);
        encode(&mut p, 0..3);
        p.write_lines().expect("written");
        let err = p.sync().expect_err("the name is taken");
        assert!(err.to_string().contains("exists already"), "{err}");
        assert_eq!(names(dir.path()), vec!["part-r-0-00000.ndjson"]);
        let kept = std::fs::read_to_string(dir.path().join("part-r-0-00000.ndjson"));
        assert_eq!(kept.expect("readable"), "theirs\n");
    }

    #[test]
    fn run_ids_made_in_one_process_differ() {
        let a = NdjsonSink::<u64>::new("x");
        let b = NdjsonSink::<u64>::new("x");
        assert_ne!(a.run_id(), b.run_id());
        assert_eq!(a.clone().run_id(), a.run_id(), "clones share it");
        let pid = format!("-{}-", std::process::id());
        assert!(a.run_id().contains(&pid), "{}", a.run_id());
    }
}

#[cfg(test)]
#[path = "ndjson_commit_tests.rs"]
mod commit_tests;
