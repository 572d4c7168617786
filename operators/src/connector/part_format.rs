//! Options, results and errors of [`PartWriter`](super::PartWriter).

use std::path::PathBuf;

use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::errors::ParquetError;

/// Compression of Parquet parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParquetCompression {
    /// No compression: fastest, largest.
    None,
    /// Snappy: fast, moderate ratio.
    #[default]
    Snappy,
    /// Zstandard at `level` (1–22): slower, better ratio.
    Zstd {
        /// Compression level.
        level: i32,
    },
}

/// File format of the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartFormat {
    /// Parquet (`.parquet`).
    Parquet {
        /// Page compression.
        compression: ParquetCompression,
        /// Rows per row group; a row group is buffered in memory until written. Default 65 536.
        row_group_rows: usize,
    },
    /// CSV (`.csv`), with `header` as its first line.
    Csv {
        /// Write the column names first.
        header: bool,
        /// Field delimiter.
        delimiter: u8,
    },
    /// NDJSON (`.ndjson`): one object per row, null fields omitted.
    Ndjson,
}

impl PartFormat {
    /// Parquet with the given compression and 65 536 rows per row group.
    pub fn parquet(compression: ParquetCompression) -> Self {
        PartFormat::Parquet {
            compression,
            row_group_rows: 65_536,
        }
    }

    /// CSV with a header and `,` as the delimiter.
    pub fn csv() -> Self {
        PartFormat::Csv {
            header: true,
            delimiter: b',',
        }
    }

    /// The file extension, without a dot.
    pub fn extension(&self) -> &'static str {
        match self {
            PartFormat::Parquet { .. } => "parquet",
            PartFormat::Csv { .. } => "csv",
            PartFormat::Ndjson => "ndjson",
        }
    }
}

/// When completed parts get their final names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartCommit {
    /// Each part is renamed as soon as it is complete: readers see parts while the writer runs,
    /// and a writer that fails later leaves its earlier parts.
    #[default]
    EachPart,
    /// Completed parts keep their hidden temporary names until
    /// [`finish`](super::PartWriter::finish) renames them all: a writer that fails or is dropped
    /// leaves no visible file at all (its parts are deleted), and a crash leaves only hidden
    /// `.inprogress` files.
    OnFinish,
    /// Two-phase commit by checkpoint, as Flink's file sink:
    /// [`pre_commit`](super::PartWriter::pre_commit) makes the parts since the last checkpoint
    /// durable under hidden `.pending-<id>` names, [`commit`](super::PartWriter::commit) renames
    /// them once the checkpoint is complete, [`recover`](super::PartWriter::recover) finishes
    /// or deletes what a crash left, and [`finish`](super::PartWriter::finish) commits the rest.
    /// The visible parts hold exactly the rows of completed checkpoints (and of a finished run).
    OnCheckpoint,
}

/// Options of [`PartWriter`](super::PartWriter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartWriterOptions {
    /// Format of every part.
    pub format: PartFormat,
    /// Most rows in one part; `None` for no limit.
    pub max_rows: Option<u64>,
    /// Size at which a part is closed; `None` for no limit.
    pub max_bytes: Option<u64>,
    /// Parts are named `<prefix>-NNNNN.<ext>`. Default `part`; writers sharing a directory need
    /// distinct prefixes (neither a prefix of the other's `<prefix>-`).
    pub prefix: String,
    /// When parts become visible. Default [`PartCommit::EachPart`].
    pub commit: PartCommit,
}

impl PartWriterOptions {
    /// One part per writer unless limits are set.
    pub fn new(format: PartFormat) -> Self {
        PartWriterOptions {
            format,
            max_rows: None,
            max_bytes: None,
            prefix: "part".to_owned(),
            commit: PartCommit::EachPart,
        }
    }
}

/// A completed part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartFile {
    /// Its final path.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Its size on disk.
    pub bytes: u64,
}

/// What [`PartWriter::finish`](super::PartWriter::finish) wrote (serializable, for a sink's
/// checkpoint state).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WriteSummary {
    /// The parts, in order.
    pub files: Vec<PartFile>,
    /// Rows over all parts.
    pub rows: u64,
    /// Bytes over all parts.
    pub bytes: u64,
}

/// Errors from [`PartWriter`](super::PartWriter).
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("{path}: I/O error: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet encoder failed.
    #[error("{path}: Parquet error: {source}")]
    Parquet {
        /// The part being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ParquetError,
    },
    /// A column could not be formatted.
    #[error("cannot encode a column: {0}")]
    Arrow(#[from] ArrowError),
    /// The directory already holds parts of this format.
    #[error("{dir} already has part files such as {example}; write into an empty directory or remove them")]
    PartsExist {
        /// The directory.
        dir: PathBuf,
        /// One existing part.
        example: String,
    },
    /// A batch's schema differs from the writer's.
    #[error("batch schema {found:?} differs from the writer's {expected:?}")]
    SchemaMismatch {
        /// The writer's schema.
        expected: SchemaRef,
        /// The batch's schema.
        found: SchemaRef,
    },
    /// An earlier call failed; the writer accepts nothing more.
    #[error("an earlier write failed; the in-progress part was discarded")]
    Failed,
    /// Limits of zero.
    #[error("invalid writer options: {0}")]
    InvalidOptions(&'static str),
    /// [`sync`](super::PartWriter::sync) was asked of a writer whose parts stay hidden until
    /// `finish` ([`PartCommit::OnFinish`]).
    #[error(
        "parts are committed only on finish (PartCommit::OnFinish), so rows cannot be made \
         durable before it; write with PartCommit::EachPart to make them durable at barriers"
    )]
    DurableOnlyOnFinish,
    /// [`sync`](super::PartWriter::sync) was asked of a writer committing by checkpoint
    /// ([`PartCommit::OnCheckpoint`]).
    #[error(
        "parts are committed by checkpoint (PartCommit::OnCheckpoint): make rows durable with \
         pre_commit and visible with commit, not with sync"
    )]
    CommitsByCheckpoint,
    /// [`pre_commit`](super::PartWriter::pre_commit) or [`commit`](super::PartWriter::commit)
    /// was asked of a writer that does not commit by checkpoint.
    #[error(
        "pre_commit and commit need PartCommit::OnCheckpoint; this writer commits each part or \
         on finish"
    )]
    NotTransactional,
    /// Checkpoint ids given to [`pre_commit`](super::PartWriter::pre_commit) must increase.
    #[error("pre-commit for checkpoint {got} after checkpoint {last}: ids must increase")]
    CheckpointOrder {
        /// The last id pre-committed.
        last: u64,
        /// The id given.
        got: u64,
    },
    /// [`resume`](super::PartWriter::resume) found in-progress or pending parts.
    #[error(
        "{dir} has in-progress or pending parts such as {example}; run PartWriter::recover on it \
         with the last complete checkpoint first"
    )]
    NotRecovered {
        /// The directory.
        dir: PathBuf,
        /// One such part.
        example: String,
    },
}
