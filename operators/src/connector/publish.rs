//! A job's output as a unit: staged, then published all at once, or not at all.
//!
//! A job writes several output directories under one root (`OUT/orders_clean/`,
//! `OUT/dead_letters/`, …). [`JobOutput`] makes them one unit: every sink writes into a staging
//! folder, and only a finished run is swapped into place. A reader opening an output directory
//! at any moment finds one complete run, marked by its `_SUCCESS` file; a failed, stopped or
//! killed run leaves the previous output as it was.
//!
//! # Layout
//!
//! ```text
//! OUT/
//!   orders_clean/             a published output: part files and `_SUCCESS`
//!   dead_letters/
//!   .weir-staging-<run_id>/   this run's outputs while it writes them
//!     orders_clean/
//!     dead_letters/
//!   .weir-publish.json        the journal, present only while a publish is under way
//!   .weir-lock                held (flock) by the run that owns OUT
//! ```
//!
//! Names starting with `.` or `_` are hidden from readers ([`FileSet`](super::FileSet),
//! Spark, `pyarrow.dataset`), so none of this shows up as data.
//!
//! # Protocol
//!
//! 1. [`JobOutput::begin`] takes the lock (a second job on the same `OUT` fails with
//!    [`PublishError::Busy`]), [recovers](JobOutput::recover) what an interrupted run left, and
//!    creates the staging folder. Nothing published is touched.
//! 2. The job's sinks write into [`JobOutput::staging_dir`]`(name)`.
//! 3. [`JobOutput::publish`] writes `_SUCCESS` (the run id, and the rows and files the job
//!    recorded) into each staged output and syncs it; writes the journal (temporary name,
//!    fsync, rename, fsync of `OUT`) naming the run and its outputs — from here on the run
//!    *will* be published; then swaps each staged directory with the live one. On Linux this is
//!    one `renameat2(RENAME_EXCHANGE)` per output, so the live name never disappears; elsewhere
//!    (or on a file system without it) the old directory is first renamed aside, leaving a short
//!    window in which that output is missing. Finally the journal is removed and the staging
//!    folder, now holding the previous outputs, deleted.
//! 4. [`JobOutput::abort`] (or dropping the `JobOutput`) deletes the staging folder.
//!
//! Each swap is idempotent: an output whose live `_SUCCESS` already names the run is done. So
//! [`JobOutput::recover`], finding a journal, completes the publish (roll forward); finding
//! staging folders without a journal, it deletes them (roll back). Either way all outputs then
//! hold one run.
//!
//! Between two swaps, different outputs hold different runs, each complete; a reader who needs
//! all outputs from one run compares their `_SUCCESS` run ids.
//!
//! # Checkpointed runs
//!
//! A checkpointed run keeps its staging folder across a crash: its sinks commit parts by
//! checkpoint ([`PartCommit::OnCheckpoint`](super::PartCommit::OnCheckpoint)) *inside* the
//! staging folder, so a committed part is durable but still hidden from users, and the publish
//! at the end stays the one moment output becomes visible. The run id is kept with the
//! checkpoints; a restored run calls [`JobOutput::resume`] with it instead of `begin`, which
//! recovers as `begin` does except that this run's staging folder is kept, then runs
//! [`PartWriter::recover`](super::PartWriter::recover) with the last complete checkpoint on
//! each staged output (finishing or deleting pending parts) before its writers
//! [resume](super::PartWriter::resume). Should the crash have come after the publish's journal
//! was written, `resume` completes that publish and answers [`PublishError::Published`]: the
//! run's output is out, and there is nothing left to run. What a resumed run
//! [records](JobOutput::record) for `_SUCCESS` adds to nothing: the restore records the parts
//! its checkpoint lists ([`PreCommit`](super::PreCommit)) before the rest.
//!
//! ```
//! use weir_operators::connector::JobOutput;
//!
//! let out = tempfile::tempdir()?;
//! let job = JobOutput::begin(out.path(), &["counts"])?;
//! std::fs::write(job.staging_dir("counts").join("part-00000.csv"), "n\n3\n")?;
//! let run_id = job.run_id().to_owned();
//! job.publish()?;
//! assert_eq!(JobOutput::published_run(&out.path().join("counts"))?, Some(run_id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::WriteSummary;

/// Name of the file marking a complete output.
pub const SUCCESS_FILE: &str = "_SUCCESS";
const JOURNAL: &str = ".weir-publish.json";
const JOURNAL_TMP: &str = ".weir-publish.json.tmp";
const LOCK: &str = ".weir-lock";
const STAGING_PREFIX: &str = ".weir-staging-";
/// Where the fallback swap moves the previous output, inside the staging folder.
const PREVIOUS_SUFFIX: &str = ".previous";

/// Errors of staging and publishing a job's output.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file-system operation failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another run holds the output directory.
    #[error("{root} is in use by another run (lock {LOCK} held); wait for it or use another output directory")]
    Busy {
        /// The output root.
        root: PathBuf,
    },
    /// An output name is not a plain directory name.
    #[error("output name {0:?} must be a non-empty file name not starting with `.` or `_`")]
    BadName(String),
    /// The journal cannot be read: the output root was changed by hand during a publish.
    #[error("{path}: unreadable publish journal ({reason}); inspect the outputs, then delete it")]
    BadJournal {
        /// The journal.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A `_SUCCESS` file that is not a marker written by [`JobOutput`].
    #[error("{path}: not a weir success marker ({reason})")]
    BadMarker {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Recovery found neither the live nor the staged output holding the journal's run.
    #[error("{output}: neither the output nor its staged copy holds run {run_id}; inspect {root}")]
    Lost {
        /// The output.
        output: String,
        /// The run the journal names.
        run_id: String,
        /// The output root.
        root: PathBuf,
    },
    /// [`JobOutput::resume`] found the run already published (its publish was completed).
    #[error("run {run_id} is already published; there is nothing to resume")]
    Published {
        /// The run.
        run_id: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PublishError + 'a {
    move |source| PublishError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What `_SUCCESS` holds (one JSON object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessMarker {
    /// The run that wrote the output.
    pub run_id: String,
    /// The output's name.
    pub output: String,
    /// Rows written, when the job recorded them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Part files written (names relative to the output), when the job recorded them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    run_id: String,
    outputs: Vec<String>,
}

/// What [`JobOutput::recover`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovery {
    /// The run whose interrupted publish was completed.
    pub completed: Option<String>,
    /// Staging folders of unpublished runs that were deleted.
    pub rolled_back: Vec<PathBuf>,
}

/// A job's output while it is being written; see the module docs.
#[derive(Debug)]
pub struct JobOutput {
    root: PathBuf,
    run_id: String,
    staging: PathBuf,
    outputs: Vec<String>,
    recorded: BTreeMap<String, (u64, Vec<String>)>,
    /// Held for the run's life: an exclusive `flock` on `.weir-lock`.
    _lock: File,
    done: bool,
}

/// A fresh run id: UTC time to the microsecond, the process id, and a count of the ids this
/// process made before (so two ids from one process never collide).
pub fn new_run_id() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only uniqueness matters, which fetch_add gives in any ordering.
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let time = chrono::DateTime::from_timestamp(secs, now.subsec_nanos())
        .map(|t| t.format("%Y%m%dT%H%M%S%.6fZ").to_string())
        .unwrap_or_else(|| now.as_nanos().to_string());
    format!("{time}-{}-{n}", std::process::id())
}

/// The staging folder of `run_id` under `root`.
pub fn staging_root(root: &Path, run_id: &str) -> PathBuf {
    root.join(format!("{STAGING_PREFIX}{run_id}"))
}

fn check_name(name: &str) -> Result<(), PublishError> {
    if name.is_empty() || name.starts_with(['.', '_']) || name.contains(['/', '\\']) || name == ".."
    {
        return Err(PublishError::BadName(name.to_owned()));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

/// Writes `bytes` to `path` through a temporary name: write, fsync, rename, fsync the directory.
fn write_durably(dir: &Path, tmp: &str, name: &str, bytes: &[u8]) -> Result<(), PublishError> {
    let tmp = dir.join(tmp);
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
    sync_dir(dir)
}

fn lock(root: &Path) -> Result<File, PublishError> {
    let path = root.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open the lock", &path))?;
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(PublishError::Busy {
                    root: root.to_owned(),
                })
            }
            Err(e) => return Err(io("lock", &path)(e.into())),
        }
    }
    Ok(file)
}

fn remove_dir_all_if_exists(dir: &Path) -> Result<(), PublishError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", dir)(e)),
    }
}

fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Exchanges `a` and `b` atomically where the platform can; `Ok(false)` when it cannot.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn exchange(a: &Path, b: &Path) -> Result<bool, PublishError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        // Not supported by this kernel or file system: fall back to two renames.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS | rustix::io::Errno::OPNOTSUPP) => {
            Ok(false)
        }
        Err(e) => Err(io("exchange with the staged output", b)(e.into())),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn exchange(_: &Path, _: &Path) -> Result<bool, PublishError> {
    Ok(false)
}

/// Puts the staged `name` of `run_id` in place. Idempotent: done if the live output holds the run.
fn swap_in(root: &Path, staging: &Path, name: &str, run_id: &str) -> Result<(), PublishError> {
    let live = root.join(name);
    let staged = staging.join(name);
    // A live `_SUCCESS` of another kind (an older layout, another tool) is simply not this run.
    if JobOutput::published_run(&live).ok().flatten().as_deref() == Some(run_id) {
        return Ok(());
    }
    if JobOutput::published_run(&staged)?.as_deref() != Some(run_id) {
        return Err(PublishError::Lost {
            output: name.to_owned(),
            run_id: run_id.to_owned(),
            root: root.to_owned(),
        });
    }
    if exists(&live) {
        if exchange(&staged, &live)? {
            return Ok(());
        }
        let aside = staging.join(format!("{name}{PREVIOUS_SUFFIX}"));
        remove_dir_all_if_exists(&aside)?;
        std::fs::rename(&live, &aside).map_err(io("move the previous output aside", &live))?;
    }
    std::fs::rename(&staged, &live).map_err(io("move the staged output into place", &live))
}

impl JobOutput {
    /// Starts a run writing `outputs` under `root` (created if missing): takes the lock,
    /// recovers an interrupted run, creates the staging folder.
    ///
    /// # Errors
    /// [`PublishError::Busy`] if another run holds `root`; [`PublishError::BadName`]; I/O and
    /// recovery errors, naming their path.
    pub fn begin(root: impl AsRef<Path>, outputs: &[&str]) -> Result<Self, PublishError> {
        Self::begin_with_id(root, outputs, new_run_id())
    }

    /// [`begin`](Self::begin) with a given run id (unique per run; a plain file name).
    ///
    /// # Errors
    /// As [`begin`](Self::begin).
    pub fn begin_with_id(
        root: impl AsRef<Path>,
        outputs: &[&str],
        run_id: String,
    ) -> Result<Self, PublishError> {
        let root = root.as_ref().to_owned();
        check_name(&run_id)?;
        for name in outputs {
            check_name(name)?;
        }
        std::fs::create_dir_all(&root).map_err(io("create the output directory", &root))?;
        let lock = lock(&root)?;
        Self::recover_locked(&root, None)?;
        Self::staged(root, outputs, run_id, lock)
    }

    /// Reopens the staging folder of run `run_id` under `root` for a restored run (see
    /// [Checkpointed runs](self#checkpointed-runs)): takes the lock, recovers as
    /// [`begin`](Self::begin) does but keeps this run's staging folder and what it holds, and
    /// creates the outputs missing from it.
    ///
    /// # Errors
    /// [`PublishError::Published`] if recovery completed this run's publish; otherwise as
    /// [`begin`](Self::begin).
    pub fn resume(
        root: impl AsRef<Path>,
        outputs: &[&str],
        run_id: &str,
    ) -> Result<Self, PublishError> {
        let root = root.as_ref().to_owned();
        check_name(run_id)?;
        for name in outputs {
            check_name(name)?;
        }
        std::fs::create_dir_all(&root).map_err(io("create the output directory", &root))?;
        let lock = lock(&root)?;
        let recovery = Self::recover_locked(&root, Some(run_id))?;
        if recovery.completed.as_deref() == Some(run_id) {
            return Err(PublishError::Published {
                run_id: run_id.to_owned(),
            });
        }
        Self::staged(root, outputs, run_id.to_owned(), lock)
    }

    /// The run `run_id` under `root`, holding `lock`, its staging outputs created.
    fn staged(
        root: PathBuf,
        outputs: &[&str],
        run_id: String,
        lock: File,
    ) -> Result<Self, PublishError> {
        let staging = staging_root(&root, &run_id);
        for name in outputs {
            let dir = staging.join(name);
            std::fs::create_dir_all(&dir).map_err(io("create the staging directory", &dir))?;
        }
        Ok(JobOutput {
            root,
            run_id,
            staging,
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            recorded: BTreeMap::new(),
            _lock: lock,
            done: false,
        })
    }

    /// This run's id, written into every `_SUCCESS`.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The output root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where this run writes output `name` until it is published.
    pub fn staging_dir(&self, name: &str) -> PathBuf {
        self.staging.join(name)
    }

    /// Records what a sink wrote into `name`, for its `_SUCCESS` (rows and file names add up
    /// over calls).
    pub fn record(&mut self, name: &str, written: &[WriteSummary]) {
        let entry = self.recorded.entry(name.to_owned()).or_default();
        for summary in written {
            entry.0 += summary.rows;
            entry.1.extend(
                summary
                    .files
                    .iter()
                    .filter_map(|f| f.path.file_name())
                    .map(|n| n.to_string_lossy().into_owned()),
            );
        }
        entry.1.sort();
    }

    /// Publishes every output at once; see the module docs. On success the previous outputs
    /// are gone and each output's `_SUCCESS` names this run.
    ///
    /// # Errors
    /// I/O errors, naming their path. An error before the journal is written leaves the
    /// previous outputs in place; after it, the next [`begin`](Self::begin) or
    /// [`recover`](Self::recover) completes the publish.
    pub fn publish(self) -> Result<String, PublishError> {
        self.publish_until(usize::MAX)
    }

    /// [`publish`](Self::publish), stopping after `swaps` outputs are swapped in (as a crash
    /// would; `usize::MAX` for all).
    fn publish_until(mut self, swaps: usize) -> Result<String, PublishError> {
        for name in &self.outputs {
            let dir = self.staging.join(name);
            let (rows, files) = match self.recorded.get(name) {
                Some((rows, files)) => (Some(*rows), files.clone()),
                None => (None, Vec::new()),
            };
            let marker = SuccessMarker {
                run_id: self.run_id.clone(),
                output: name.clone(),
                rows,
                files,
            };
            let mut bytes = serde_json::to_vec(&marker).unwrap_or_default();
            bytes.push(b'\n');
            write_durably(&dir, "._SUCCESS.tmp", SUCCESS_FILE, &bytes)?;
        }
        sync_dir(&self.staging)?;
        sync_dir(&self.root)?;
        let journal = Journal {
            run_id: self.run_id.clone(),
            outputs: self.outputs.clone(),
        };
        let bytes = serde_json::to_vec(&journal).unwrap_or_default();
        write_durably(&self.root, JOURNAL_TMP, JOURNAL, &bytes)?;
        // From here the run is committed: whatever happens, recovery rolls forward.
        self.done = true;
        Self::finish_publish(&self.root, &journal, swaps)?;
        Ok(self.run_id.clone())
    }

    fn finish_publish(root: &Path, journal: &Journal, swaps: usize) -> Result<(), PublishError> {
        let staging = staging_root(root, &journal.run_id);
        for (i, name) in journal.outputs.iter().enumerate() {
            if i == swaps {
                return Ok(());
            }
            check_name(name)?;
            swap_in(root, &staging, name, &journal.run_id)?;
        }
        if swaps != usize::MAX {
            return Ok(());
        }
        sync_dir(root)?;
        let path = root.join(JOURNAL);
        std::fs::remove_file(&path).map_err(io("remove the journal", &path))?;
        sync_dir(root)?;
        remove_dir_all_if_exists(&staging)
    }

    /// Deletes the staging folder: nothing is published, the previous outputs stay.
    ///
    /// # Errors
    /// I/O errors removing the staging folder.
    pub fn abort(mut self) -> Result<(), PublishError> {
        self.done = true;
        remove_dir_all_if_exists(&self.staging)
    }

    /// Completes or rolls back what an interrupted run left under `root` (a missing `root` has
    /// nothing to recover). Takes the lock for the time it works.
    ///
    /// # Errors
    /// [`PublishError::Busy`] if a run holds `root`; I/O errors; [`PublishError::BadJournal`] or
    /// [`PublishError::Lost`] if the root was changed by hand during a publish.
    pub fn recover(root: impl AsRef<Path>) -> Result<Recovery, PublishError> {
        let root = root.as_ref();
        if !root.is_dir() {
            return Ok(Recovery::default());
        }
        let _lock = lock(root)?;
        Self::recover_locked(root, None)
    }

    /// Recovers `root`, keeping the staging folder of run `keep`.
    fn recover_locked(root: &Path, keep: Option<&str>) -> Result<Recovery, PublishError> {
        let kept = keep.map(|id| staging_root(root, id));
        let mut recovery = Recovery::default();
        let path = root.join(JOURNAL);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let journal: Journal =
                    serde_json::from_slice(&bytes).map_err(|e| PublishError::BadJournal {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                check_name(&journal.run_id)?;
                Self::finish_publish(root, &journal, usize::MAX)?;
                recovery.completed = Some(journal.run_id);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("read the journal", &path)(e)),
        }
        let tmp = root.join(JOURNAL_TMP);
        if exists(&tmp) {
            std::fs::remove_file(&tmp).map_err(io("remove", &tmp))?;
        }
        for entry in std::fs::read_dir(root).map_err(io("list", root))? {
            let entry = entry.map_err(io("list", root))?;
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                let dir = entry.path();
                if kept.as_ref() == Some(&dir) {
                    continue;
                }
                remove_dir_all_if_exists(&dir)?;
                recovery.rolled_back.push(dir);
            }
        }
        Ok(recovery)
    }

    /// The run id in `dir/_SUCCESS`, or `None` if `dir` has no `_SUCCESS` (or does not exist).
    ///
    /// # Errors
    /// I/O errors other than a missing file; a `_SUCCESS` that is not a marker.
    pub fn published_run(dir: &Path) -> Result<Option<String>, PublishError> {
        Ok(Self::marker(dir)?.map(|m| m.run_id))
    }

    /// The marker in `dir/_SUCCESS`, or `None` if there is none.
    ///
    /// # Errors
    /// As [`published_run`](Self::published_run).
    pub fn marker(dir: &Path) -> Result<Option<SuccessMarker>, PublishError> {
        let path = dir.join(SUCCESS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| PublishError::BadMarker {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(io("read", &path)(e)),
        }
    }
}

impl Drop for JobOutput {
    fn drop(&mut self) {
        if !self.done {
            // Best effort: a leftover staging folder is hidden and rolled back by the next start.
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
