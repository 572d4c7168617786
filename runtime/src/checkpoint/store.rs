//! [`CheckpointStore`]: the directory, its lock, the ids, finding the latest complete
//! checkpoint and retention.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use super::completed::{self, CompletedCheckpoint, Latest, SkippedCheckpoint};
use super::error::{CheckpointError, IoContext};
use super::pending::PendingCheckpoint;
use super::shared::{list_checkpoints, Shared};
use crate::spill::try_lock_file;

/// The lock file's name inside the store's directory.
const LOCK_FILE: &str = "_lock";

/// A directory of checkpoints: begins new ones, finds the latest complete one, and keeps the
/// newest `retain`. The protocol and the layout are in the [module header](super).
///
/// The store holds an advisory lock on the directory (`_lock`) as long as it or any
/// [`PendingCheckpoint`] or [`CompletedCheckpoint`] it gave out lives, so two jobs cannot
/// write one directory. Its methods take `&self`; it is `Send` and `Sync`, and checkpoints may
/// be written and read from several threads.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    shared: Arc<Shared>,
}

impl CheckpointStore {
    /// Opens (creating it if needed) the checkpoint directory `dir`, keeping the newest
    /// `retain` complete checkpoints. Ids continue after the highest checkpoint directory
    /// found, complete or not.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::RetainZero`] if `retain` is 0; [`CheckpointError::Locked`] if another
    /// store has the directory open; [`CheckpointError::Io`] if it cannot be created, locked
    /// or listed.
    pub fn open(dir: impl AsRef<Path>, retain: usize) -> Result<Self, CheckpointError> {
        if retain == 0 {
            return Err(CheckpointError::RetainZero);
        }
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).ctx("create the checkpoint directory", &dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = match try_lock_file(&lock_path) {
            Ok(Some(lock)) => lock,
            Ok(None) => return Err(CheckpointError::Locked { dir }),
            Err(e) => return Err(e).ctx("lock the checkpoint directory", &lock_path),
        };
        let highest = list_checkpoints(&dir)?.last().copied();
        Ok(Self {
            shared: Arc::new(Shared::new(dir, retain, lock, highest)),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The lowest id [`begin`](Self::begin) accepts now: one above the highest id in the
    /// directory or begun through this store (1 in an empty directory).
    pub fn next_id(&self) -> u64 {
        self.shared.next_id()
    }

    /// Starts checkpoint `id`: creates `chk-<id>/`, to be filled with blobs and committed.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::IdNotIncreasing`] unless `id >= next_id()`; [`CheckpointError::Io`]
    /// if the directory cannot be created.
    pub fn begin(&self, id: u64) -> Result<PendingCheckpoint, CheckpointError> {
        self.shared.claim(id)?;
        let path = self.shared.checkpoint_dir(id);
        if let Err(e) = fs::create_dir(&path).ctx("create the checkpoint directory", &path) {
            self.shared.done_writing(id);
            return Err(e);
        }
        Ok(PendingCheckpoint::new(Arc::clone(&self.shared), id, path))
    }

    /// The newest checkpoint that verifies completely (manifest and every blob's length and
    /// checksum), and every newer one passed over with the reason. `checkpoint` is `None` when
    /// none verifies; `skipped` then lists what was there, so a restore can tell "nothing to
    /// restore" from "everything was damaged".
    ///
    /// # Errors
    ///
    /// [`CheckpointError::Io`] for I/O failures other than missing or short files (those are
    /// damage, and skipped): the directory cannot be listed, a file cannot be read.
    pub fn latest(&self) -> Result<Latest, CheckpointError> {
        let ids = list_checkpoints(&self.shared.dir)?;
        let mut skipped = Vec::new();
        for &id in ids.iter().rev() {
            // Pinned first, so a concurrent commit's retention leaves it alone.
            self.shared.pin(id);
            let path = self.shared.checkpoint_dir(id);
            let verified = completed::verify(&path, id);
            match verified {
                Ok(Ok(manifest)) => {
                    let checkpoint =
                        CompletedCheckpoint::pinned(Arc::clone(&self.shared), id, path, manifest);
                    return Ok(Latest {
                        checkpoint: Some(checkpoint),
                        skipped,
                    });
                }
                Ok(Err(reason)) => {
                    self.shared.unpin(id);
                    tracing::warn!(
                        checkpoint = id,
                        path = %path.display(),
                        %reason,
                        "skipping a checkpoint that does not verify"
                    );
                    skipped.push(SkippedCheckpoint { id, path, reason });
                }
                Err(e) => {
                    self.shared.unpin(id);
                    return Err(e);
                }
            }
        }
        Ok(Latest {
            checkpoint: None,
            skipped,
        })
    }
}
