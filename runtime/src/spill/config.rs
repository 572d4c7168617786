//! Configuration, counters and errors of the spill queue.

use std::io;
use std::path::{Path, PathBuf};

use super::format::FRAME_HEADER;
#[cfg(doc)]
use super::SpillQueue;

/// Configuration of a [`SpillQueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpillConfig {
    /// Upper bound on the bytes of segment files in the directory, frame headers included.
    pub max_bytes: u64,
    /// Size at which the writer starts a new segment. Smaller segments give disk back sooner
    /// as the reader advances; larger ones mean fewer files.
    pub segment_bytes: u64,
}

impl SpillConfig {
    /// A configuration bounded by `max_bytes`, with `segment_bytes` set to an eighth of it,
    /// clamped to 4 KiB ..= 64 MiB (and never above `max_bytes`).
    pub fn new(max_bytes: u64) -> Self {
        let segment_bytes = (max_bytes / 8)
            .clamp(4 * 1024, 64 * 1024 * 1024)
            .min(max_bytes);
        Self {
            max_bytes,
            segment_bytes,
        }
    }

    /// The largest record payload that can ever be pushed under this configuration.
    pub fn max_record_bytes(&self) -> u64 {
        self.max_bytes
            .saturating_sub(FRAME_HEADER)
            .min(u64::from(u32::MAX))
    }
}

/// Counters of one open [`SpillQueue`], counted from the moment it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SpillStats {
    /// Records appended by `push`.
    pub records_pushed: u64,
    /// Records returned by `pop`.
    pub records_popped: u64,
    /// Pushes refused with [`SpillError::Full`].
    pub rejected_full: u64,
    /// Bytes cut from the end of the newest segment on open (interrupted writes).
    pub torn_tail_trimmed_bytes: u64,
    /// Frames (or unparseable segment remainders) skipped because their checksum failed.
    pub corrupt_records: u64,
    /// Bytes skipped with those corrupt records.
    pub corrupt_bytes: u64,
    /// Segment files created.
    pub segments_created: u64,
    /// Fully consumed segment files deleted.
    pub segments_deleted: u64,
    /// Consumed segments whose deletion failed (their disk space is leaked until the next open).
    pub delete_failures: u64,
}

/// Errors of [`SpillQueue`] operations.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The record does not fit in the bytes left under `max_bytes`. Nothing was written; pop
    /// records (or raise `max_bytes`) and push again.
    #[error(
        "spill queue full: a {frame_bytes}-byte frame does not fit, {used_bytes} of \
         {max_bytes} bytes are in use; drain the queue or raise max_bytes"
    )]
    Full {
        /// Bytes the frame needs, header included.
        frame_bytes: u64,
        /// Bytes of segment files currently on disk.
        used_bytes: u64,
        /// The configured bound.
        max_bytes: u64,
    },
    /// The record can never fit: its frame exceeds `max_bytes` or the 4 GiB frame limit.
    #[error(
        "record of {record_bytes} bytes can never be spilled: the largest record is \
         {max_record_bytes} bytes under this max_bytes"
    )]
    RecordTooLarge {
        /// Size of the refused record.
        record_bytes: u64,
        /// Largest record this queue accepts.
        max_record_bytes: u64,
    },
    /// The configuration cannot work; the message says which field to change.
    #[error("invalid spill configuration: {0}")]
    InvalidConfig(&'static str),
    /// A file system operation failed.
    #[error("spill queue could not {action} {}: {source}", path.display())]
    Io {
        /// What the queue was doing.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Attaches context to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, SpillError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &'static str, path: &Path) -> Result<T, SpillError> {
        self.map_err(|source| SpillError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
