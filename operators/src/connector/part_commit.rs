//! Two-phase commit of parts by checkpoint ([`PartCommit::OnCheckpoint`]).
//!
//! The protocol, and what is fsynced when and why, is written in the
//! [`part_writer`](super) module docs, under *Commit by checkpoint*.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, sync_dir, PartCommit, PartFile, PartWriter, WriteError};

/// What [`PartWriter::pre_commit`] made pending: the checkpoint and its parts (with their
/// final paths), for the checkpoint's state blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreCommit {
    /// The checkpoint the parts belong to.
    pub checkpoint_id: u64,
    /// The parts made pending, in order (none if no row came since the last pre-commit).
    pub parts: Vec<PartFile>,
}

/// What [`PartWriter::recover`] did to a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartRecovery {
    /// Pending parts of completed checkpoints, renamed to these final paths.
    pub committed: Vec<PathBuf>,
    /// Pending parts of later checkpoints and in-progress files, deleted.
    pub discarded: Vec<PathBuf>,
}

/// A pending part: its checkpoint, its hidden path and the part it becomes.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    checkpoint_id: u64,
    tmp: PathBuf,
    part: PartFile,
}

const INPROGRESS: &str = ".inprogress";
const PENDING: &str = ".pending-";

/// `.<name>.pending-<id>` for the final `path`.
fn pending_path(path: &Path, id: u64) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}{PENDING}{id}"))
}

/// A part name `<prefix>-<digits>.<ext>`: its prefix, index and extension.
pub(crate) fn parse_part_name(name: &str) -> Option<(&str, usize, &str)> {
    let (stem, ext) = name.rsplit_once('.')?;
    let (prefix, digits) = stem.rsplit_once('-')?;
    if prefix.is_empty() || prefix.starts_with('.') || ext.is_empty() {
        return None;
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix, digits.parse().ok()?, ext))
}

/// What a file name in a part directory is.
pub(super) enum Named<'a> {
    /// A visible part.
    Final(&'a str),
    /// `.<part>.inprogress`.
    InProgress(&'a str),
    /// `.<part>.pending-<id>`.
    Pending(&'a str, u64),
}

/// Classifies `name`: a part under one of its three names, or `None` for anything else.
pub(super) fn classify(name: &str) -> Option<Named<'_>> {
    let named = match name.strip_prefix('.') {
        None => Named::Final(name),
        Some(hidden) => {
            if let Some(part) = hidden.strip_suffix(INPROGRESS) {
                Named::InProgress(part)
            } else {
                let (part, id) = hidden.rsplit_once(PENDING)?;
                if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Named::Pending(part, id.parse().ok()?)
            }
        }
    };
    let part = match named {
        Named::Final(p) | Named::InProgress(p) | Named::Pending(p, _) => p,
    };
    parse_part_name(part).map(|_| named)
}

/// The names in `dir` (none if it does not exist), in name order, so that what recovery does
/// is the same on every file system.
fn sorted_names(dir: &Path) -> Result<Vec<std::ffi::OsString>, WriteError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        names.push(entry.map_err(io_err(dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

impl PartWriter {
    fn check_transactional(&self) -> Result<(), WriteError> {
        if self.failed {
            return Err(WriteError::Failed);
        }
        if self.opts.commit != PartCommit::OnCheckpoint {
            return Err(WriteError::NotTransactional);
        }
        Ok(())
    }

    /// Phase one for checkpoint `checkpoint_id` (see the [protocol](super#commit-by-checkpoint)): closes the open
    /// part, and makes it and every part closed since the last pre-commit durable and pending
    /// under `checkpoint_id`. Ids must increase from one call to the next. A writer with no new
    /// row makes nothing pending and does no I/O. The next row opens a new part.
    ///
    /// # Errors
    /// [`WriteError::NotTransactional`] unless the commit mode is
    /// [`PartCommit::OnCheckpoint`]; [`WriteError::CheckpointOrder`] for an id not above the
    /// last one; I/O or encoding errors, after which the in-progress parts are discarded (the
    /// pending ones stay) and every later call returns [`WriteError::Failed`].
    pub fn pre_commit(&mut self, checkpoint_id: u64) -> Result<PreCommit, WriteError> {
        self.check_transactional()?;
        if let Some(last) = self.last_pre_commit {
            if checkpoint_id <= last {
                return Err(WriteError::CheckpointOrder {
                    last,
                    got: checkpoint_id,
                });
            }
        }
        let result = self.pre_commit_parts(checkpoint_id);
        if result.is_err() {
            self.abandon();
        }
        result
    }

    fn pre_commit_parts(&mut self, checkpoint_id: u64) -> Result<PreCommit, WriteError> {
        self.close_part()?;
        self.last_pre_commit = Some(checkpoint_id);
        let mut made = PreCommit {
            checkpoint_id,
            parts: Vec::new(),
        };
        if self.staged.is_empty() {
            return Ok(made);
        }
        while !self.staged.is_empty() {
            let (tmp, part) = self.staged.remove(0);
            let pending = pending_path(&part.path, checkpoint_id);
            if let Err(e) = std::fs::rename(&tmp, &pending) {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err(&pending)(e));
            }
            made.parts.push(part.clone());
            self.pending.push(Pending {
                checkpoint_id,
                tmp: pending,
                part,
            });
        }
        sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        Ok(made)
    }

    /// Phase two, once checkpoint `checkpoint_id` is complete (see the [protocol](super#commit-by-checkpoint)):
    /// renames every pending part of a checkpoint `≤ checkpoint_id` to its final name, then
    /// fsyncs the directory; returns the parts it made visible. Idempotent: a part already
    /// renamed (by an earlier call or by [`recover`](Self::recover)) is taken as committed.
    ///
    /// # Errors
    /// [`WriteError::NotTransactional`] unless the commit mode is
    /// [`PartCommit::OnCheckpoint`]; I/O errors renaming or syncing (the parts not renamed stay
    /// pending, and a later call or `recover` finishes them).
    pub fn commit(&mut self, checkpoint_id: u64) -> Result<Vec<PartFile>, WriteError> {
        self.check_transactional()?;
        self.commit_pending(checkpoint_id)
    }

    /// Renames the pending parts of checkpoints `≤ up_to` to their final names and fsyncs the
    /// directory if any was renamed.
    pub(super) fn commit_pending(&mut self, up_to: u64) -> Result<Vec<PartFile>, WriteError> {
        let mut committed = Vec::new();
        while self
            .pending
            .first()
            .is_some_and(|p| p.checkpoint_id <= up_to)
        {
            let p = self.pending.remove(0);
            if let Err(e) = std::fs::rename(&p.tmp, &p.part.path) {
                let done_already = e.kind() == std::io::ErrorKind::NotFound && p.part.path.exists();
                if !done_already {
                    let path = p.part.path.clone();
                    self.pending.insert(0, p);
                    return Err(io_err(&path)(e));
                }
            }
            committed.push(p.part.clone());
            self.done.push(p.part);
        }
        if !committed.is_empty() {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(committed)
    }

    /// Parts pre-committed and not yet committed, with their checkpoints.
    pub fn pending(&self) -> impl Iterator<Item = (u64, &PartFile)> {
        self.pending.iter().map(|p| (p.checkpoint_id, &p.part))
    }

    /// Restores `dir` after a crash (see the [protocol](super#commit-by-checkpoint)), before any writer opens it:
    /// pending parts of checkpoints `≤ last_complete` become visible, later pending parts and
    /// every in-progress file are deleted, then the directory is fsynced. Files that are not
    /// parts are left alone. Idempotent; a missing `dir` has nothing to recover.
    ///
    /// # Errors
    /// I/O errors listing, renaming, deleting or syncing.
    pub fn recover(
        dir: impl AsRef<Path>,
        last_complete: Option<u64>,
    ) -> Result<PartRecovery, WriteError> {
        Self::recover_where(dir.as_ref(), last_complete, |_| true)
    }

    /// [`recover`](Self::recover) of the parts a writer of `opts` names (its prefix and
    /// format) only: what one instance of a sink that shares its directory with others runs
    /// at restore, so that it never touches the files another instance is writing.
    ///
    /// # Errors
    /// As [`recover`](Self::recover).
    pub(crate) fn recover_own(
        dir: &Path,
        last_complete: Option<u64>,
        opts: &super::PartWriterOptions,
    ) -> Result<PartRecovery, WriteError> {
        Self::recover_where(dir, last_complete, |part| {
            parse_part_name(part).is_some_and(|(prefix, _, ext)| {
                prefix == opts.prefix && ext == opts.format.extension()
            })
        })
    }

    /// [`recover`](Self::recover) of the parts whose name (`<prefix>-<NNNNN>.<ext>`, as
    /// `owns` reads it) a caller owns.
    pub(crate) fn recover_where(
        dir: &Path,
        last_complete: Option<u64>,
        owns: impl Fn(&str) -> bool,
    ) -> Result<PartRecovery, WriteError> {
        let mut recovery = PartRecovery::default();
        for name in sorted_names(dir)? {
            let name = name.to_string_lossy();
            let path = dir.join(name.as_ref());
            let named = classify(&name);
            if let Some(Named::Pending(part, _) | Named::InProgress(part)) = named {
                if !owns(part) {
                    continue;
                }
            }
            match named {
                Some(Named::Pending(part, id)) if last_complete.is_some_and(|l| id <= l) => {
                    let to = dir.join(part);
                    std::fs::rename(&path, &to).map_err(io_err(&to))?;
                    recovery.committed.push(to);
                }
                Some(Named::Pending(..) | Named::InProgress(_)) => {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                    recovery.discarded.push(path);
                }
                Some(Named::Final(_)) | None => {}
            }
        }
        if !recovery.committed.is_empty() || !recovery.discarded.is_empty() {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(recovery)
    }

    /// Deletes this writer's visible parts (`<prefix>-<NNNNN>.<ext>` of `opts`) that the
    /// checkpoint being restored does not list in `kept`; returns their paths.
    ///
    /// Parts become visible between checkpoints in one case: a run that reached the end of its
    /// input closes its sinks, which commit every part, and a crash can come before the job
    /// publishes. Its restore goes back to the last checkpoint and writes those rows again, so
    /// the parts that checkpoint does not cover must go, or their rows would be published
    /// twice. Run after [`recover_own`](Self::recover_own) (which makes the checkpoint's pending
    /// parts visible) and before [`resume`](Self::resume).
    pub(crate) fn discard_unlisted(
        dir: &Path,
        opts: &super::PartWriterOptions,
        kept: &[super::PartFile],
    ) -> Result<Vec<PathBuf>, WriteError> {
        let mut discarded = Vec::new();
        for name in sorted_names(dir)? {
            let name = name.to_string_lossy();
            let Some(Named::Final(part)) = classify(&name) else {
                continue;
            };
            let own = parse_part_name(part).is_some_and(|(prefix, _, ext)| {
                prefix == opts.prefix && ext == opts.format.extension()
            });
            let listed = kept.iter().any(|f| {
                f.path
                    .file_name()
                    .is_some_and(|n| n == std::ffi::OsStr::new(part))
            });
            if own && !listed {
                let path = dir.join(part);
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                discarded.push(path);
            }
        }
        if !discarded.is_empty() {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        Ok(discarded)
    }
}
