//! What a [`CheckpointStore`](super::CheckpointStore) and the handles it gives out share: the
//! directory and its lock, the ids in use, retention, and the directory listing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::error::{CheckpointError, IoContext};
use super::manifest::{Manifest, MANIFEST_FILE};

/// Prefix of a checkpoint directory's name.
const CHECKPOINT_PREFIX: &str = "chk-";

/// What the store and every handle it gave out share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    retain: usize,
    registry: Mutex<Registry>,
    /// Holds the advisory lock on `_lock` while any handle lives.
    _lock: File,
}

/// Which checkpoints are in use through this store.
#[derive(Debug, Default)]
struct Registry {
    /// The highest id found in the directory or begun since.
    highest: Option<u64>,
    /// Checkpoints being written: `PendingCheckpoint`s not yet committed or dropped.
    writing: BTreeSet<u64>,
    /// Checkpoints being read, with their number of readers: live `CompletedCheckpoint`s,
    /// and those `CheckpointStore::latest` is verifying.
    reading: BTreeMap<u64, usize>,
}

impl Shared {
    /// The state of a store over `dir` holding the lock `lock`, whose highest checkpoint
    /// directory is `highest`.
    pub(crate) fn new(dir: PathBuf, retain: usize, lock: File, highest: Option<u64>) -> Self {
        Self {
            dir,
            retain,
            registry: Mutex::new(Registry {
                highest,
                ..Registry::default()
            }),
            _lock: lock,
        }
    }

    /// One above the highest id seen (1 if none).
    pub(crate) fn next_id(&self) -> u64 {
        self.registry().highest.map_or(1, |h| h + 1)
    }

    /// Takes `id` for a new checkpoint being written, if it is above every id seen.
    pub(crate) fn claim(&self, id: u64) -> Result<(), CheckpointError> {
        let mut registry = self.registry();
        if let Some(highest) = registry.highest.filter(|&h| id <= h) {
            return Err(CheckpointError::IdNotIncreasing { id, highest });
        }
        registry.highest = Some(id);
        registry.writing.insert(id);
        Ok(())
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Nothing panics while holding the lock, but a poisoned registry is still consistent:
        // every update is a single insert or remove.
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The directory of checkpoint `id`.
    pub(crate) fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{CHECKPOINT_PREFIX}{id}"))
    }

    /// Marks `id` as read by one more handle.
    pub(crate) fn pin(&self, id: u64) {
        *self.registry().reading.entry(id).or_default() += 1;
    }

    /// Undoes one [`pin`](Self::pin).
    pub(crate) fn unpin(&self, id: u64) {
        let mut registry = self.registry();
        if let Some(n) = registry.reading.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                registry.reading.remove(&id);
            }
        }
    }

    /// Marks `id` as no longer being written.
    pub(crate) fn done_writing(&self, id: u64) {
        self.registry().writing.remove(&id);
    }

    /// Deletes what retention no longer keeps, after `committed` was committed: checkpoint
    /// directories older than `committed` that are not among the newest `retain` with a valid
    /// manifest, and are neither written nor read through this store. Failures are logged.
    pub(crate) fn retain_after(&self, committed: u64) {
        let ids = match list_checkpoints(&self.dir) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint retention could not list the directory");
                return;
            }
        };
        // Held while deleting, so nothing pins a checkpoint this is removing.
        let registry = self.registry();
        let mut complete = 0;
        for &id in ids.iter().rev() {
            let path = self.checkpoint_dir(id);
            if has_valid_manifest(&path, id) {
                complete += 1;
                if complete <= self.retain {
                    continue;
                }
            }
            if id >= committed
                || registry.writing.contains(&id)
                || registry.reading.contains_key(&id)
            {
                continue;
            }
            if let Err(e) = delete_checkpoint(&path) {
                tracing::warn!(
                    checkpoint = id,
                    error = %e,
                    "checkpoint retention could not delete an old checkpoint"
                );
            }
        }
    }
}

/// Whether `path` holds a manifest of checkpoint `id` that passes its checksum (blobs are not
/// read). Unreadable counts as invalid.
fn has_valid_manifest(path: &Path, id: u64) -> bool {
    fs::read(path.join(MANIFEST_FILE))
        .ok()
        .and_then(|bytes| Manifest::from_bytes(&bytes).ok())
        .is_some_and(|m| m.checkpoint == id)
}

/// Deletes a checkpoint directory, its manifest first: a deletion cut short by a crash leaves
/// a partial checkpoint, not one that looks complete but lacks blobs.
fn delete_checkpoint(path: &Path) -> Result<(), CheckpointError> {
    match fs::remove_file(path.join(MANIFEST_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).ctx("delete the manifest of", path),
    }
    fs::remove_dir_all(path).ctx("delete the checkpoint directory", path)
}

/// The ids of the checkpoint directories in `dir`, ascending. Only canonical names
/// (`chk-` and the id's decimal digits, no leading zeros) of directories count.
pub(crate) fn list_checkpoints(dir: &Path) -> Result<Vec<u64>, CheckpointError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).ctx("list the checkpoint directory", dir)? {
        let entry = entry.ctx("list the checkpoint directory", dir)?;
        let Some(id) = entry.file_name().to_str().and_then(parse_checkpoint_name) else {
            continue;
        };
        let is_dir = entry.file_type().ctx("inspect", &entry.path())?.is_dir();
        if is_dir {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The id in a checkpoint directory's name, `chk-<id>`.
fn parse_checkpoint_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(CHECKPOINT_PREFIX)?;
    let id: u64 = digits.parse().ok()?;
    (id.to_string() == digits).then_some(id)
}

/// Makes a directory's entries (files created, renamed or deleted in it) durable.
#[cfg(unix)]
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync the directory", dir)
}

#[cfg(not(unix))]
pub(crate) fn sync_dir(_dir: &Path) -> Result<(), CheckpointError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_checkpoint_names_count() {
        assert_eq!(parse_checkpoint_name("chk-0"), Some(0));
        assert_eq!(parse_checkpoint_name("chk-17"), Some(17));
        assert_eq!(parse_checkpoint_name("chk-017"), None);
        assert_eq!(parse_checkpoint_name("chk-"), None);
        assert_eq!(parse_checkpoint_name("chk-+1"), None);
        assert_eq!(parse_checkpoint_name("chk-1.tmp"), None);
        assert_eq!(parse_checkpoint_name("_lock"), None);
    }
}
