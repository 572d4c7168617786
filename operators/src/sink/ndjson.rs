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
use crate::connector::{PartFile, WriteError, WriteSummary};
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
    state: State,
    /// The task in flight is the sync a barrier asked for.
    syncing: bool,
    dead: Vec<DeadLetter>,
    /// The thread doing the file work, started by `open`. Declared after `state`, so a writer
    /// still in flight when the sink is dropped is finished (and its in-progress file removed)
    /// before the thread is joined.
    lane: Option<Lane>,
    _rows: PhantomData<fn(T)>,
}

enum State {
    /// Before `open`.
    Unopened,
    Idle(Box<Parts>),
    /// A write or a sync on the lane.
    Busy(LaneTask<(Box<Parts>, Result<(), WriteError>)>),
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
            state: State::Unopened,
            syncing: false,
            dead: Vec::new(),
            lane: None,
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
    OperatorError::external("cannot write NDJSON parts", e)
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
            state: State::Unopened,
            syncing: false,
            dead: Vec::new(),
            lane: None,
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
            if let Err(e) = result {
                // The failed writer removes its in-progress file on the lane.
                if let Some(lane) = &self.lane {
                    drop(lane.run(move || drop(parts)));
                }
                return Poll::Ready(Err(write_error(e)));
            }
            self.state = State::Idle(parts);
        }
        Poll::Ready(Ok(()))
    }

    /// Runs `f` on the lane with the idle writer; the sink is busy until it is done.
    fn submit(
        &mut self,
        f: impl FnOnce(&mut Parts) -> Result<(), WriteError> + Send + 'static,
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
        std::fs::create_dir_all(&self.dir).map_err(|source| {
            write_error(WriteError::Io {
                path: self.dir.clone(),
                source,
            })
        })?;
        self.lane = Some(Lane::start("weir-ndjson-write").map_err(lane_error)?);
        self.state = State::Idle(Box::new(Parts {
            dir: self.dir.clone(),
            stem: format!("part-{}-{}", self.run, info.instance),
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            next: 0,
            open: None,
            files: Vec::new(),
            unsynced_rename: false,
            lines: Lines::default(),
        }));
        Ok(())
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), OperatorError>> {
        self.poll_idle(cx)
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
        self.submit(Parts::write_lines)
    }

    fn take_dead_letters(&mut self, out: &mut Vec<DeadLetter>) {
        out.append(&mut self.dead);
    }

    /// Waits for the write in flight, then, on the sink's thread, completes the open part and
    /// fsyncs the directory; `Ready` once every row taken so far is in a renamed, fsynced part.
    fn poll_barrier(
        &mut self,
        cx: &mut Context<'_>,
        _: Barrier,
    ) -> Poll<Result<(), OperatorError>> {
        loop {
            if let Err(e) = std::task::ready!(self.poll_idle(cx)) {
                self.syncing = false;
                return Poll::Ready(Err(e));
            }
            if std::mem::take(&mut self.syncing) {
                return Poll::Ready(Ok(()));
            }
            if let Err(e) = self.submit(Parts::sync) {
                return Poll::Ready(Err(e));
            }
            self.syncing = true;
        }
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
                        parts.sync()?;
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
    /// The number of the next part.
    next: u64,
    open: Option<OpenPart>,
    files: Vec<PartFile>,
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

    /// Completes the open part, if any: fsync, rename to its final name.
    fn complete(&mut self) -> Result<(), WriteError> {
        let Some(part) = self.open.take() else {
            return Ok(());
        };
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

    /// Removes the in-progress file, if any.
    fn discard_open(&mut self) {
        if let Some(part) = self.open.take() {
            drop(part.file);
            // Best effort: a leftover is hidden and marked `.inprogress` anyway.
            let _ = std::fs::remove_file(&part.tmp);
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
            next: 0,
            open: None,
            files: Vec::new(),
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
