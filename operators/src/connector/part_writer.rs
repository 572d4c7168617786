//! Rolling part-file writer: Parquet, CSV or NDJSON into `part-00000.<ext>`, `part-00001.<ext>`, …
//!
//! # Protocol
//!
//! A part is written under a hidden temporary name `.part-NNNNN.<ext>.inprogress` in the target
//! directory. When it is full (it reached `max_rows` rows or `max_bytes` bytes) or on
//! [`PartWriter::finish`], it is completed, flushed and synced to disk, and renamed to
//! `part-NNNNN.<ext>` — at once ([`PartCommit::EachPart`]) or, with [`PartCommit::OnFinish`],
//! together with every other part when `finish` succeeds. A rename within a directory is atomic,
//! so a reader listing the directory sees either nothing or a complete part. Dropping the writer
//! without `finish` (or after an error) deletes the in-progress file, and with `OnFinish` the
//! completed but uncommitted parts too; a crash leaves only hidden `.inprogress` files.
//!
//! With `EachPart`, [`PartWriter::sync`] makes every row written so far durable and visible at
//! once: it completes the open part (flush, fsync, rename) and fsyncs the directory, so the
//! renames survive a power loss. After a crash, the rows written before the last successful
//! `sync` are all in visible parts; only the hidden `.inprogress` file holds rows written
//! since. A sink calls it when a [barrier](weir_runtime::barrier) asks for its rows to be made
//! durable.
//!
//! # Commit by checkpoint
//!
//! With [`PartCommit::OnCheckpoint`] parts are committed in two phases by checkpoint, as
//! Flink's file sink does.
//!
//! A part goes through three names, all in the writer's directory:
//!
//! ```text
//! .part-00003.parquet.inprogress   being written, or complete and not yet pre-committed
//!        │ pre_commit(7): close the open part (flush, fsync), rename, fsync the directory
//!        ▼
//! .part-00003.parquet.pending-7    durable, hidden, owned by checkpoint 7
//!        │ commit(7) once checkpoint 7 is complete: rename, fsync the directory
//!        ▼
//! part-00003.parquet               visible
//! ```
//!
//! 1. Rows go into `.inprogress` parts as with the other modes; a part closed by the rolling
//!    limits is flushed and fsynced, and keeps its hidden name.
//! 2. [`PartWriter::pre_commit`]`(id)` is called when the sink takes its snapshot for
//!    checkpoint `id`, between batches: it closes the open part (bulk formats such as Parquet
//!    roll here, since a part cannot be appended to once its footer is written), fsyncs it, and
//!    renames it and every part closed since the last pre-commit to `.<name>.pending-<id>`, then
//!    fsyncs the directory. The fsyncs of the parts make their bytes durable before the names
//!    say they are owned by a checkpoint; the fsync of the directory makes the renames durable
//!    before the checkpoint can complete. It returns what it made pending ([`PreCommit`],
//!    serializable) for the checkpoint's state blob.
//! 3. [`PartWriter::commit`]`(id)` is called once checkpoint `id` is complete (its manifest
//!    written): every pending part of a checkpoint `≤ id` is renamed to its final name, then the
//!    directory is fsynced. It is idempotent: committing again, or committing a part a recovery
//!    already finished, does nothing.
//! 4. At restore, [`PartWriter::recover`]`(dir, last_complete)` runs once on the directory
//!    before any writer opens it: a pending part of a checkpoint `≤ last_complete` is renamed
//!    to its final name (its checkpoint completed, but the crash may have come before the
//!    commit), a pending part of a later checkpoint and every `.inprogress` file are deleted
//!    (no completed checkpoint covers their rows; the sources rewind to before them and write
//!    them again), and the directory is fsynced. Then [`PartWriter::resume`] opens a writer
//!    whose numbering continues after the highest part in the directory, so no name is reused.
//! 5. [`PartWriter::finish`] at the end of a bounded input makes every part visible: pending
//!    ones and those written since the last pre-commit, then fsyncs the directory.
//!
//! So the visible parts hold exactly the rows of the checkpoints that completed (and of the
//! `finish` of a run that ended), each once: the rows of a checkpoint that did not complete are
//! deleted by recovery and emitted again by the rewound sources.
//!
//! Dropping the writer (an error, a cancelled run) deletes its `.inprogress` files but keeps
//! the pending ones: they belong to checkpoints that may have completed, and only `recover`,
//! knowing the last complete checkpoint, decides their fate.
//!
//! ## With a job's staged output
//!
//! A bounded job writes into the staging directories of a
//! [`JobOutput`](crate::connector::JobOutput), and its one publish stays the only moment output
//! becomes visible to a user: committed parts are "visible" inside the hidden staging folder
//! only. A restored run reopens the same staging folder with
//! [`JobOutput::resume`](crate::connector::JobOutput::resume) (the run id is kept with the
//! checkpoints), which recovers an interrupted publish and deletes other runs' staging folders
//! but keeps this run's; then `recover` runs on each staged output with the last complete
//! checkpoint, the writers resume, and the job publishes once its input ends. A crash after
//! the publish's journal is written is rolled forward by `resume` like any other recovery, and
//! the run is then published: there is nothing to resume.
//!
//! # Rolling
//!
//! `max_rows` is exact: batches are sliced so no part has more rows. `max_bytes` closes a part
//! as soon as its size reaches the limit: text parts are checked after every row (a part exceeds
//! the limit by less than one row), Parquet parts after every written slice, using the encoded
//! size plus the writer's estimate for the open row group (a part can exceed the limit by one
//! slice, at most `row_group_rows` rows).
//!
//! Empty batches open nothing; a writer that saw no rows finishes with no files
//! ([`PartWriter::finish_with_empty_part`] writes one empty part instead).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::encode::ColumnView;
pub use super::part_format::{
    ParquetCompression, PartCommit, PartFile, PartFormat, PartWriterOptions, WriteError,
    WriteSummary,
};

enum Sink {
    /// Boxed: the Parquet writer is much larger than the text sinks.
    Parquet(Box<ArrowWriter<File>>),
    Csv {
        out: BufWriter<File>,
        delimiter: u8,
        bytes: u64,
    },
    Ndjson {
        out: BufWriter<File>,
        bytes: u64,
    },
}

struct OpenPart {
    tmp: PathBuf,
    path: PathBuf,
    rows: u64,
    sink: Sink,
}

impl OpenPart {
    fn bytes(&self) -> u64 {
        match &self.sink {
            Sink::Parquet(w) => (w.bytes_written() + w.in_progress_size()) as u64,
            Sink::Csv { bytes, .. } | Sink::Ndjson { bytes, .. } => *bytes,
        }
    }
}

/// Writes batches into rolling part files; see the module docs.
pub struct PartWriter {
    dir: PathBuf,
    schema: SchemaRef,
    opts: PartWriterOptions,
    current: Option<OpenPart>,
    next_index: usize,
    done: Vec<PartFile>,
    /// Completed parts waiting for `finish` (`PartCommit::OnFinish`) or the next pre-commit
    /// (`PartCommit::OnCheckpoint`): (temporary path, part).
    staged: Vec<(PathBuf, PartFile)>,
    /// Pre-committed parts waiting for their checkpoint's commit, in order.
    pending: Vec<checkpoint::Pending>,
    /// The id of the last pre-commit.
    last_pre_commit: Option<u64>,
    /// A part was renamed since the directory was last synced.
    unsynced_rename: bool,
    failed: bool,
    // Reused per-row buffers for the text formats.
    text: String,
    line: Vec<u8>,
}

#[path = "part_commit.rs"]
mod checkpoint;
pub(crate) use checkpoint::parse_part_name;
pub use checkpoint::{PartRecovery, PreCommit};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

impl PartWriter {
    /// A writer of `schema` batches into `dir` (created if missing).
    ///
    /// # Errors
    /// [`WriteError::PartsExist`] if `dir` already has `part-*.<ext>` files;
    /// [`WriteError::InvalidOptions`] for zero limits; [`WriteError::Io`].
    pub fn create(
        dir: impl AsRef<Path>,
        schema: SchemaRef,
        opts: PartWriterOptions,
    ) -> Result<Self, WriteError> {
        let dir = dir.as_ref().to_owned();
        check_options(&dir, &opts)?;
        let suffix = format!(".{}", opts.format.extension());
        let stem = format!("{}-", opts.prefix);
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = entry.map_err(io_err(&dir))?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&stem) && name.ends_with(&suffix) {
                return Err(WriteError::PartsExist {
                    dir,
                    example: name.into_owned(),
                });
            }
        }
        Ok(Self::with_next_index(dir, schema, opts, 0))
    }

    /// A writer continuing the parts already in `dir` (a restored run's, after
    /// [`recover`](Self::recover)): its parts are numbered after the highest part of its prefix
    /// and format in `dir`, so no name is reused. An empty or missing `dir` starts at 0.
    ///
    /// # Errors
    /// [`WriteError::NotRecovered`] if `dir` still has in-progress or pending parts of this
    /// prefix and format; [`WriteError::InvalidOptions`] for zero limits; [`WriteError::Io`].
    pub fn resume(
        dir: impl AsRef<Path>,
        schema: SchemaRef,
        opts: PartWriterOptions,
    ) -> Result<Self, WriteError> {
        let dir = dir.as_ref().to_owned();
        check_options(&dir, &opts)?;
        let mut next_index = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let name = entry.map_err(io_err(&dir))?.file_name();
            let name = name.to_string_lossy();
            let Some(named) = checkpoint::classify(&name) else {
                continue;
            };
            let (checkpoint::Named::Final(part)
            | checkpoint::Named::InProgress(part)
            | checkpoint::Named::Pending(part, _)) = named;
            let Some((prefix, index, ext)) = checkpoint::parse_part_name(part) else {
                continue;
            };
            if prefix != opts.prefix || ext != opts.format.extension() {
                continue;
            }
            if !matches!(named, checkpoint::Named::Final(_)) {
                return Err(WriteError::NotRecovered {
                    dir,
                    example: name.into_owned(),
                });
            }
            next_index = next_index.max(index + 1);
        }
        Ok(Self::with_next_index(dir, schema, opts, next_index))
    }

    fn with_next_index(
        dir: PathBuf,
        schema: SchemaRef,
        opts: PartWriterOptions,
        next_index: usize,
    ) -> Self {
        PartWriter {
            dir,
            schema,
            opts,
            current: None,
            next_index,
            done: Vec::new(),
            staged: Vec::new(),
            pending: Vec::new(),
            last_pre_commit: None,
            unsynced_rename: false,
            failed: false,
            text: String::new(),
            line: Vec::new(),
        }
    }

    /// Appends `batch`, closing and starting parts as the limits require.
    ///
    /// # Errors
    /// [`WriteError::SchemaMismatch`]; I/O and encoding errors, after which the in-progress part
    /// is discarded and every later call returns [`WriteError::Failed`].
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        if !super::same_fields(&batch.schema(), &self.schema) {
            return Err(WriteError::SchemaMismatch {
                expected: self.schema.clone(),
                found: batch.schema(),
            });
        }
        let result = self.write_rows(batch);
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn write_rows(&mut self, batch: &RecordBatch) -> Result<(), WriteError> {
        let views = match self.opts.format {
            PartFormat::Parquet { .. } => Vec::new(),
            _ => batch
                .columns()
                .iter()
                .map(ColumnView::new)
                .collect::<Result<Vec<_>, _>>()?,
        };
        let schema = self.schema.clone();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let max_rows = self.opts.max_rows.unwrap_or(u64::MAX);
        let max_bytes = self.opts.max_bytes.unwrap_or(u64::MAX);
        let mut offset = 0usize;
        while offset < batch.num_rows() {
            if self.current.is_none() {
                self.current = Some(self.open_part()?);
            }
            let Some(part) = self.current.as_mut() else {
                unreachable!("a part was just opened")
            };
            let room = usize::try_from(max_rows - part.rows).unwrap_or(usize::MAX);
            match &mut part.sink {
                Sink::Parquet(w) => {
                    let n = room.min(batch.num_rows() - offset);
                    w.write(&batch.slice(offset, n))
                        .map_err(|source| WriteError::Parquet {
                            path: part.tmp.clone(),
                            source,
                        })?;
                    part.rows += n as u64;
                    offset += n;
                }
                Sink::Csv {
                    out,
                    delimiter,
                    bytes,
                } => {
                    let end = offset + room.min(batch.num_rows() - offset);
                    // At least one row per part, so a header alone cannot fill it.
                    while offset < end {
                        self.line.clear();
                        for (i, view) in views.iter().enumerate() {
                            if i > 0 {
                                self.line.push(*delimiter);
                            }
                            self.text.clear();
                            view.text(offset, &mut self.text);
                            push_csv_field(&mut self.line, &self.text, *delimiter, views.len());
                        }
                        self.line.push(b'\n');
                        out.write_all(&self.line).map_err(io_err(&part.tmp))?;
                        *bytes += self.line.len() as u64;
                        part.rows += 1;
                        offset += 1;
                        if *bytes >= max_bytes {
                            break;
                        }
                    }
                }
                Sink::Ndjson { out, bytes } => {
                    let end = offset + room.min(batch.num_rows() - offset);
                    while offset < end {
                        self.line.clear();
                        self.line.push(b'{');
                        let mut first = true;
                        for (view, name) in views.iter().zip(&names) {
                            if view.is_null(offset) {
                                continue;
                            }
                            if !first {
                                self.line.push(b',');
                            }
                            first = false;
                            // Serialising a &str into a Vec cannot fail.
                            let _ = serde_json::to_writer(&mut self.line, name);
                            self.line.push(b':');
                            view.json(offset, &mut self.line, &mut self.text);
                        }
                        self.line.extend_from_slice(b"}\n");
                        out.write_all(&self.line).map_err(io_err(&part.tmp))?;
                        *bytes += self.line.len() as u64;
                        part.rows += 1;
                        offset += 1;
                        if *bytes >= max_bytes {
                            break;
                        }
                    }
                }
            }
            if part.rows >= max_rows || part.bytes() >= max_bytes {
                self.close_part()?;
            }
        }
        Ok(())
    }

    fn open_part(&mut self) -> Result<OpenPart, WriteError> {
        let ext = self.opts.format.extension();
        let name = format!("{}-{:05}.{ext}", self.opts.prefix, self.next_index);
        let tmp = self.dir.join(format!(".{name}.inprogress"));
        let path = self.dir.join(name);
        self.next_index += 1;
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let sink = match &self.opts.format {
            PartFormat::Parquet {
                compression,
                row_group_rows,
            } => {
                let compression = match compression {
                    ParquetCompression::None => Compression::UNCOMPRESSED,
                    ParquetCompression::Snappy => Compression::SNAPPY,
                    ParquetCompression::Zstd { level } => {
                        Compression::ZSTD(ZstdLevel::try_new(*level).map_err(|source| {
                            WriteError::Parquet {
                                path: tmp.clone(),
                                source,
                            }
                        })?)
                    }
                };
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(*row_group_rows))
                    .build();
                let writer = ArrowWriter::try_new(file, self.schema.clone(), Some(props)).map_err(
                    |source| WriteError::Parquet {
                        path: tmp.clone(),
                        source,
                    },
                )?;
                Sink::Parquet(Box::new(writer))
            }
            PartFormat::Csv { header, delimiter } => {
                let mut out = BufWriter::new(file);
                let mut bytes = 0;
                if *header {
                    let mut line = Vec::new();
                    let n = self.schema.fields().len();
                    for (i, f) in self.schema.fields().iter().enumerate() {
                        if i > 0 {
                            line.push(*delimiter);
                        }
                        push_csv_field(&mut line, f.name(), *delimiter, n);
                    }
                    line.push(b'\n');
                    out.write_all(&line).map_err(io_err(&tmp))?;
                    bytes = line.len() as u64;
                }
                Sink::Csv {
                    out,
                    delimiter: *delimiter,
                    bytes,
                }
            }
            PartFormat::Ndjson => Sink::Ndjson {
                out: BufWriter::new(file),
                bytes: 0,
            },
        };
        Ok(OpenPart {
            tmp,
            path,
            rows: 0,
            sink,
        })
    }

    /// Completes the open part: flush, sync, rename.
    fn close_part(&mut self) -> Result<(), WriteError> {
        let Some(part) = self.current.take() else {
            return Ok(());
        };
        let tmp = part.tmp.clone();
        let file = match part.sink {
            Sink::Parquet(w) => (*w).into_inner().map_err(|source| WriteError::Parquet {
                path: tmp.clone(),
                source,
            }),
            Sink::Csv { out, .. } | Sink::Ndjson { out, .. } => {
                out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))
            }
        };
        let commit_now = self.opts.commit == PartCommit::EachPart;
        let result = file.and_then(|file| {
            file.sync_all().map_err(io_err(&tmp))?;
            let bytes = file.metadata().map_err(io_err(&tmp))?.len();
            drop(file);
            if commit_now {
                std::fs::rename(&tmp, &part.path).map_err(io_err(&part.path))?;
            }
            Ok(bytes)
        });
        match result {
            Ok(bytes) => {
                let done = PartFile {
                    path: part.path,
                    rows: part.rows,
                    bytes,
                };
                if commit_now {
                    self.unsynced_rename = true;
                    self.done.push(done);
                } else {
                    self.staged.push((tmp, done));
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Discards the in-progress part (and completed parts not yet committed or pre-committed;
    /// pending parts stay, for [`recover`](Self::recover)) and refuses further writes.
    fn abandon(&mut self) {
        self.failed = true;
        if let Some(part) = self.current.take() {
            let tmp = part.tmp;
            drop(part.sink);
            // Best effort: a leftover is hidden and marked `.inprogress` anyway.
            let _ = std::fs::remove_file(tmp);
        }
        for (tmp, _) in self.staged.drain(..) {
            let _ = std::fs::remove_file(tmp);
        }
    }

    /// Renames the staged parts to their final names, in order.
    fn commit_staged(&mut self) -> Result<(), WriteError> {
        while !self.staged.is_empty() {
            let (tmp, part) = self.staged.remove(0);
            if let Err(e) = std::fs::rename(&tmp, &part.path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err(&part.path)(e));
            }
            self.done.push(part);
        }
        Ok(())
    }

    /// Makes every row written so far durable and visible (see the module docs): completes the
    /// open part, if any (flush, fsync, rename to its final name), then fsyncs the directory if
    /// a part was renamed since the last sync. A writer with nothing new does nothing. The next
    /// row opens a new part.
    ///
    /// # Errors
    /// [`WriteError::DurableOnlyOnFinish`] with [`PartCommit::OnFinish`], whose parts stay
    /// hidden until `finish`, and [`WriteError::CommitsByCheckpoint`] with
    /// [`PartCommit::OnCheckpoint`], whose parts are made durable by
    /// [`pre_commit`](Self::pre_commit) (the writer is still usable either way); I/O or encoding errors completing the
    /// part or syncing the directory, after which the in-progress part is discarded and every
    /// later call returns [`WriteError::Failed`]; [`WriteError::Failed`] after an earlier error.
    pub fn sync(&mut self) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        match self.opts.commit {
            PartCommit::EachPart => {}
            PartCommit::OnFinish => return Err(WriteError::DurableOnlyOnFinish),
            PartCommit::OnCheckpoint => return Err(WriteError::CommitsByCheckpoint),
        }
        let result = self.close_part().and_then(|()| {
            if self.unsynced_rename {
                sync_dir(&self.dir).map_err(io_err(&self.dir))?;
                self.unsynced_rename = false;
            }
            Ok(())
        });
        if result.is_err() {
            self.abandon();
        }
        result
    }

    /// Completes the last part and reports every part written. With
    /// [`PartCommit::OnCheckpoint`] it commits every part, pending or not (the end of a bounded
    /// input), and fsyncs the directory.
    ///
    /// # Errors
    /// I/O or encoding errors completing the last part; [`WriteError::Failed`] after an earlier
    /// error.
    pub fn finish(mut self) -> Result<WriteSummary, WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        let transactional = self.opts.commit == PartCommit::OnCheckpoint;
        let result = self.close_part().and_then(|()| {
            self.commit_pending(u64::MAX)?;
            let renamed = !self.staged.is_empty();
            self.commit_staged()?;
            if transactional && renamed {
                sync_dir(&self.dir).map_err(io_err(&self.dir))?;
            }
            Ok(())
        });
        if let Err(e) = result {
            self.abandon();
            return Err(e);
        }
        let files = std::mem::take(&mut self.done);
        Ok(WriteSummary {
            rows: files.iter().map(|f| f.rows).sum(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
        })
    }

    /// [`finish`](Self::finish), except that a writer that saw no rows writes one empty part
    /// (Parquet: the schema and no row group; CSV: the header), so a reader of the directory
    /// still finds the schema.
    ///
    /// # Errors
    /// As [`finish`](Self::finish); I/O or encoding errors creating the empty part.
    pub fn finish_with_empty_part(mut self) -> Result<WriteSummary, WriteError> {
        if !self.failed
            && self.current.is_none()
            && self.done.is_empty()
            && self.staged.is_empty()
            && self.pending.is_empty()
        {
            let part = self.open_part()?;
            self.current = Some(part);
        }
        self.finish()
    }

    /// Parts completed and visible so far (with [`PartCommit::OnFinish`], none before `finish`;
    /// with [`PartCommit::OnCheckpoint`], the committed ones).
    pub fn completed(&self) -> &[PartFile] {
        &self.done
    }

    /// The directory written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Checks `opts` and creates `dir`.
fn check_options(dir: &Path, opts: &PartWriterOptions) -> Result<(), WriteError> {
    if opts.max_rows == Some(0) || opts.max_bytes == Some(0) {
        return Err(WriteError::InvalidOptions(
            "max_rows and max_bytes must be at least 1",
        ));
    }
    if let PartFormat::Parquet {
        row_group_rows: 0, ..
    } = opts.format
    {
        return Err(WriteError::InvalidOptions(
            "row_group_rows must be at least 1",
        ));
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    if opts.prefix.is_empty() || opts.prefix.contains(['/', '\\']) || opts.prefix.starts_with('.') {
        return Err(WriteError::InvalidOptions(
            "the part prefix must be a non-empty file name not starting with `.`",
        ));
    }
    Ok(())
}

/// Fsyncs the directory `dir`, so the renames and creations in it survive a power loss.
///
/// On Unix the directory is opened and synced; elsewhere there is no portable way to sync a
/// directory, and this does nothing.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Appends one CSV field, quoting it (RFC 4180) when it holds the delimiter, a quote or a line
/// break, or when it is the empty only field of a record (which would otherwise be a blank line).
fn push_csv_field(out: &mut Vec<u8>, field: &str, delimiter: u8, fields: usize) {
    let needs_quotes = field
        .bytes()
        .any(|b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r')
        || (field.is_empty() && fields == 1);
    if !needs_quotes {
        out.extend_from_slice(field.as_bytes());
        return;
    }
    out.push(b'"');
    for b in field.bytes() {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl std::fmt::Debug for PartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartWriter")
            .field("dir", &self.dir)
            .field("format", &self.opts.format)
            .field("completed", &self.done.len())
            .field("open", &self.current.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "part_writer_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "part_commit_tests.rs"]
mod commit_tests;
