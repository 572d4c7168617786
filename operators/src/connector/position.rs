//! Positions in files, for sources that rewind (see [`Rewind`](crate::source::Rewind)).
//!
//! A file position is the byte offset of the first byte not yet emitted **and** the 1-based
//! physical line that byte starts. Keeping the line beside the offset lets a source reopened in
//! the middle of a file number its lines (in `_line` columns and dead letters) exactly as an
//! uninterrupted read would, without counting the line breaks before the offset again.
//! Positions fall on record boundaries: a reader saves one only between batches, and a batch
//! always ends after a whole record and its line terminator (after the `\n` of a `\r\n`; only
//! the [`CsvReader`](super::CsvReader)'s may fall between the two, which it detects when it
//! reopens there).
//!
//! | source | position | reopened with |
//! |---|---|---|
//! | [`CsvReader`](super::CsvReader), [`NdjsonReader`](super::NdjsonReader) | [`FilePosition`] | `from_path_at` |
//! | [`ParquetReader`](super::ParquetReader) | [`ParquetPosition`] (row group, row) | `open_at` |
//! | [`FileSetReader`](super::FileSetReader) | [`FileSetPosition`] (file, [`InFile`]) | `new_at` |
//! | [`CsvChunker`](super::csv::CsvChunker) (the split reader) | [`SetPosition`] | [`SplitOptions::start`](super::csv::SplitOptions::start) |

use serde::{Deserialize, Serialize};

use super::ParquetPosition;

/// A position in one file; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FilePosition {
    /// Byte offset of the first byte not yet emitted.
    pub offset: u64,
    /// The 1-based physical line starting at `offset`.
    pub line: u64,
}

impl FilePosition {
    /// The start of a file: byte 0, line 1.
    pub const START: FilePosition = FilePosition { offset: 0, line: 1 };
}

impl Default for FilePosition {
    fn default() -> Self {
        Self::START
    }
}

/// A position in an ordered set of files: the index of the file being read (in the set's
/// order; the set's length once every file is done) and the position in it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct SetPosition {
    /// Index of the file in the set.
    pub file: usize,
    /// Position in that file.
    pub at: FilePosition,
}

impl SetPosition {
    /// The start of the set's first file.
    pub const START: SetPosition = SetPosition {
        file: 0,
        at: FilePosition::START,
    };
}

/// Where a reader of one file stands, in the terms of the file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InFile {
    /// A text file (CSV, NDJSON): byte offset and line.
    Text(FilePosition),
    /// A Parquet file: row group and rows of it returned.
    Parquet(ParquetPosition),
}

/// A position in an ordered set of files of any format: the index of the file being read (the
/// set's length once every file is done) and the position in it. The position a
/// [`FileSetReader`](super::FileSetReader) reports and starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileSetPosition {
    /// Index of the file in the set.
    pub file: usize,
    /// Position in that file.
    pub at: InFile,
}
