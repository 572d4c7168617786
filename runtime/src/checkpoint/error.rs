//! The checkpoint store's error type.

use std::io;
use std::path::{Path, PathBuf};

use super::codec::StateCodecError;
use super::key_groups::KeyGroupError;
use super::manifest::BlobName;

/// What went wrong in a [`CheckpointStore`](super::CheckpointStore) operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file system operation failed.
    #[error("checkpoint store could not {action} {}: {source}", path.display())]
    Io {
        /// What the store was doing.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Another store, in this process or another, has the directory open.
    #[error(
        "checkpoint directory {} is in use by another checkpoint store (in this or another \
         process); give each job its own directory",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// `retain` must keep at least one checkpoint.
    #[error("a checkpoint store must retain at least 1 checkpoint (2 or more to survive a corrupt newest one)")]
    RetainZero,
    /// Checkpoint ids only increase, across restarts too.
    #[error(
        "checkpoint id {id} is not above {highest}, the highest id already in the directory; \
         start from `next_id()`"
    )]
    IdNotIncreasing {
        /// The id asked for.
        id: u64,
        /// The highest id the store has seen.
        highest: u64,
    },
    /// A checkpoint holds at most one blob of each name.
    #[error("checkpoint {checkpoint} already has a blob for {name}")]
    DuplicateBlob {
        /// The checkpoint.
        checkpoint: u64,
        /// The name written twice.
        name: BlobName,
    },
    /// A blob names an operator the commit's metadata does not list, or an instance beyond
    /// its parallelism.
    #[error(
        "checkpoint {checkpoint} has a blob for {name}, but the metadata {}; list every \
         operator with its parallelism in the CheckpointMeta",
        match parallelism {
            Some(p) => format!("gives that operator parallelism {p}"),
            None => "does not list that operator".to_string(),
        }
    )]
    UnknownInstance {
        /// The checkpoint.
        checkpoint: u64,
        /// The blob.
        name: BlobName,
        /// The operator's parallelism in the metadata, if it is listed.
        parallelism: Option<u32>,
    },
    /// A commit was attempted while blob writers of the checkpoint were still open, or after
    /// some were dropped without being finished (their blobs are incomplete).
    #[error(
        "checkpoint {checkpoint} cannot commit: {open} blob writer(s) were not finished \
         (call `finish` on each; a writer dropped unfinished leaves its blob incomplete)"
    )]
    BlobsOpen {
        /// The checkpoint.
        checkpoint: u64,
        /// Writers created and not finished.
        open: usize,
    },
    /// The metadata of a commit is invalid; the message says which field.
    #[error("invalid checkpoint metadata: {0}")]
    InvalidMeta(&'static str),
    /// The checkpoint records no parallelism for this operator.
    #[error("checkpoint {checkpoint} records no operator named {operator:?}")]
    UnknownOperator {
        /// The checkpoint.
        checkpoint: u64,
        /// The name asked for.
        operator: String,
    },
    /// The checkpoint has no blob of this name.
    #[error("checkpoint {checkpoint} has no blob for {name}")]
    NoSuchBlob {
        /// The checkpoint.
        checkpoint: u64,
        /// The name asked for.
        name: BlobName,
    },
    /// A blob no longer matches its manifest (it changed after the checkpoint was verified).
    #[error("checkpoint blob {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The blob's file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A blob's bytes are not a valid encoding of the requested state.
    #[error("checkpoint blob {} holds no valid state: {source}", path.display())]
    State {
        /// The blob's file.
        path: PathBuf,
        /// The decoding or encoding failure.
        #[source]
        source: StateCodecError,
    },
    /// A key-group computation failed (for example a parallelism beyond the key groups).
    #[error(transparent)]
    KeyGroups(#[from] KeyGroupError),
}

/// Attaches the action and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, CheckpointError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, CheckpointError> {
        self.map_err(|source| CheckpointError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
