//! Configuration, counters and errors of the spill queue.

use std::io;
use std::path::{Path, PathBuf};

use super::format::{FILE_HEADER, FRAME_HEADER, VERSION};
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
    /// Bytes a segment holding one empty record takes: its 16-byte header and a 24-byte frame
    /// header. `max_bytes` must exceed it.
    pub const MIN_BYTES: u64 = FILE_HEADER + FRAME_HEADER;

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
            .saturating_sub(FILE_HEADER + FRAME_HEADER)
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
    /// Bytes cut from the end of the newest segment on open (interrupted writes: no valid
    /// frame followed them).
    pub torn_tail_trimmed_bytes: u64,
    /// Records lost to damage: sequence numbers skipped over, and frames whose payload checksum
    /// failed. Each is one record as pushed.
    pub damaged_records: u64,
    /// Bytes skipped because they were damaged or duplicated.
    pub damaged_bytes: u64,
    /// Frames skipped because their record had already been passed (never delivered twice).
    pub duplicate_records: u64,
    /// Damaged segment files renamed to `*.damaged` and kept out of the queue's writes.
    pub segments_quarantined: u64,
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
    /// The record can never fit: a segment holding only its frame exceeds `max_bytes`, or it
    /// exceeds the 4 GiB frame limit.
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
    /// Another [`SpillQueue`], in this process or another, has the directory open.
    #[error(
        "spill directory {} is in use by another spill queue (in this or another process); \
         give each queue its own directory",
        dir.display()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// A segment file is of a format version this release does not read. Nothing in the
    /// directory was changed.
    #[error(
        "spill segment {} is in format version {version}, this release reads version {VERSION}: \
         drain it with the release that wrote it, or move the directory away",
        path.display()
    )]
    UnsupportedVersion {
        /// The segment file.
        path: PathBuf,
        /// Its format version.
        version: u32,
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
