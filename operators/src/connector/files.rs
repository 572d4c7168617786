//! Reading many files in order as one stream of batches.
//!
//! A [`FileSet`] is a list of regular files from a directory or a glob pattern, sorted by name.
//! Symbolic links are followed (a dangling one is an error naming it, never a silent skip).
//! Hidden files (name starting with `.` or `_`, as Spark and `pyarrow.dataset` have it) are left
//! out, which also hides the in-progress parts of a [`PartWriter`](super::PartWriter) writing
//! into the same directory and the `_SUCCESS` marker of a published
//! [`JobOutput`](super::JobOutput). A [`FileSetReader`] opens
//! the first file when it is created (to know the schema) and each following file only once the
//! previous one is exhausted; every batch carries its file's label.
//!
//! A [`FileSetReader`] [rewinds](crate::source::Rewind): its position is a
//! [`FileSetPosition`], the index of the file being read in the set's order and the position of
//! that file's reader ([`InFile`]: byte offset and line for CSV and NDJSON, row group and row
//! for Parquet) after the last batch returned. [`FileSetReader::new_at`] starts there over the
//! same set: files before it are not read again, and the batches that follow are those an
//! uninterrupted read returns after that point. Without a declared schema the set's schema is
//! still the first file's (read again to know it), so later files are checked as before.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;

use super::{
    with_extra_columns, BatchReader, CsvOptions, CsvReader, FilePosition, FileSetPosition, InFile,
    NdjsonOptions, NdjsonReader, ParquetOptions, ParquetPosition, ParquetReader, ReadBatch,
    ReadError,
};

/// An ordered list of files to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSet {
    location: String,
    files: Vec<PathBuf>,
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(['.', '_']))
}

impl FileSet {
    /// The visible regular files directly in `dir` (links followed), sorted by name.
    ///
    /// # Errors
    /// [`ReadError::Io`] if the directory cannot be listed or a link cannot be followed.
    pub fn dir(dir: impl AsRef<Path>) -> Result<Self, ReadError> {
        Self::dir_filtered(dir.as_ref(), |_| true)
    }

    /// The visible regular files directly in `dir` whose extension is `extension` (ASCII case
    /// ignored; e.g. `"csv"`), links followed, sorted by name: a `README.txt` beside the data
    /// is not read.
    ///
    /// # Errors
    /// As [`dir`](Self::dir).
    pub fn dir_with_extension(dir: impl AsRef<Path>, extension: &str) -> Result<Self, ReadError> {
        Self::dir_filtered(dir.as_ref(), |path| {
            path.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case(extension))
        })
    }

    fn dir_filtered(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Self, ReadError> {
        let io = |file: &Path| {
            let file = file.display().to_string();
            move |source| ReadError::Io { file, source }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            if is_hidden(&path) || !keep(&path) {
                continue;
            }
            let mut is_file = entry.file_type().map_err(io(&path))?.is_file();
            if !is_file && entry.file_type().map_err(io(&path))?.is_symlink() {
                // Follow the link: a linked file is data like any other; a broken link is an
                // error rather than a file silently left out.
                is_file = std::fs::metadata(&path).map_err(io(&path))?.is_file();
            }
            if is_file {
                files.push(path);
            }
        }
        files.sort();
        Ok(FileSet {
            location: dir.display().to_string(),
            files,
        })
    }

    /// The visible regular files matching a glob `pattern` (e.g. `data/*.csv`), links followed,
    /// sorted by path.
    ///
    /// # Errors
    /// [`ReadError::Pattern`] for a malformed pattern; [`ReadError::Io`] for an unreadable entry
    /// or a broken link.
    pub fn glob(pattern: &str) -> Result<Self, ReadError> {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        let paths = glob::glob_with(pattern, options).map_err(|source| ReadError::Pattern {
            pattern: pattern.to_owned(),
            source,
        })?;
        let mut files = Vec::new();
        for path in paths {
            let path = path.map_err(|e| ReadError::Io {
                file: e.path().display().to_string(),
                source: e.into(),
            })?;
            // Follows links; a broken link is an error, not a file silently left out.
            let meta = std::fs::metadata(&path).map_err(|source| ReadError::Io {
                file: path.display().to_string(),
                source,
            })?;
            if meta.is_file() {
                files.push(path);
            }
        }
        files.sort();
        Ok(FileSet {
            location: pattern.to_owned(),
            files,
        })
    }

    /// An explicit list, read in the given order.
    pub fn from_paths(location: &str, files: Vec<PathBuf>) -> Self {
        FileSet {
            location: location.to_owned(),
            files,
        }
    }

    /// The files, in read order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads the files in order with `format`.
    ///
    /// # Errors
    /// The first file's open errors; [`ReadError::NoFiles`] for an empty set.
    pub fn read(self, format: FileFormat) -> Result<FileSetReader, ReadError> {
        FileSetReader::new(self, format)
    }
}

/// How to read each file of a [`FileSet`].
#[derive(Debug, Clone)]
pub enum FileFormat {
    /// CSV files.
    Csv(CsvOptions),
    /// NDJSON files.
    Ndjson(NdjsonOptions),
    /// Parquet files.
    Parquet(ParquetOptions),
}

/// The reader of one file of a set.
enum Opened {
    Csv(CsvReader<File>),
    Ndjson(NdjsonReader<File>),
    Parquet(ParquetReader),
}

impl Opened {
    fn reader(&mut self) -> &mut dyn BatchReader {
        match self {
            Opened::Csv(r) => r,
            Opened::Ndjson(r) => r,
            Opened::Parquet(r) => r,
        }
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Opened::Csv(r) => r.schema(),
            Opened::Ndjson(r) => r.schema(),
            Opened::Parquet(r) => r.schema(),
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Opened::Csv(r) => r.bytes_read(),
            Opened::Ndjson(r) => r.bytes_read(),
            Opened::Parquet(r) => r.bytes_read(),
        }
    }

    fn position(&self) -> InFile {
        match self {
            Opened::Csv(r) => InFile::Text(r.position()),
            Opened::Ndjson(r) => InFile::Text(r.position()),
            Opened::Parquet(r) => InFile::Parquet(r.position()),
        }
    }
}

impl FileFormat {
    /// Opens `path` at `at` (its start if `None`).
    fn open(&self, path: &Path, at: Option<InFile>) -> Result<Opened, ReadError> {
        let mismatch = |at: &InFile| {
            ReadError::InvalidOptions(format!(
                "{}: the position {at:?} is not one of a {} file",
                path.display(),
                self.name()
            ))
        };
        Ok(match (self, at) {
            (FileFormat::Csv(o), None) => Opened::Csv(CsvReader::from_path(path, o.clone())?),
            (FileFormat::Csv(o), Some(InFile::Text(at))) => {
                Opened::Csv(CsvReader::from_path_at(path, o.clone(), at)?)
            }
            (FileFormat::Ndjson(o), None) => {
                Opened::Ndjson(NdjsonReader::from_path(path, o.clone())?)
            }
            (FileFormat::Ndjson(o), Some(InFile::Text(at))) => {
                Opened::Ndjson(NdjsonReader::from_path_at(path, o.clone(), at)?)
            }
            (FileFormat::Parquet(o), None) => {
                Opened::Parquet(ParquetReader::open(path, o.clone())?)
            }
            (FileFormat::Parquet(o), Some(InFile::Parquet(at))) => {
                Opened::Parquet(ParquetReader::open_at(path, o.clone(), at)?)
            }
            (_, Some(at)) => return Err(mismatch(&at)),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            FileFormat::Csv(_) => "CSV",
            FileFormat::Ndjson(_) => "NDJSON",
            FileFormat::Parquet(_) => "Parquet",
        }
    }

    /// The start of a file of this format.
    fn start(&self) -> InFile {
        match self {
            FileFormat::Parquet(_) => InFile::Parquet(ParquetPosition::default()),
            FileFormat::Csv(_) | FileFormat::Ndjson(_) => InFile::Text(FilePosition::START),
        }
    }

    /// The schema of every batch, when it is known without opening a file.
    fn declared_schema(&self) -> Option<SchemaRef> {
        match self {
            FileFormat::Csv(o) => o
                .schema
                .as_ref()
                .map(|s| with_extra_columns(s, o.line_column, o.raw_column)),
            FileFormat::Ndjson(o) => {
                Some(with_extra_columns(&o.schema, o.line_column, o.raw_column))
            }
            FileFormat::Parquet(_) => None,
        }
    }
}

/// Reads a [`FileSet`] file after file; see the module docs.
pub struct FileSetReader {
    format: FileFormat,
    pending: std::vec::IntoIter<PathBuf>,
    current: Option<Opened>,
    /// Index in the set of the file `current` reads (of the next to open when it is `None`).
    index: usize,
    /// The position after the last batch returned.
    emitted: FileSetPosition,
    schema: SchemaRef,
    /// Bytes read by files already finished.
    finished_bytes: u64,
    done: bool,
}

impl FileSetReader {
    /// Opens the first file of `set`.
    ///
    /// An empty set yields no batches if the format declares a schema.
    ///
    /// # Errors
    /// The first file's open errors; [`ReadError::NoFiles`] for an empty set whose schema is
    /// unknown (inferred CSV, Parquet).
    pub fn new(set: FileSet, format: FileFormat) -> Result<Self, ReadError> {
        let start = FileSetPosition {
            file: 0,
            at: format.start(),
        };
        Self::new_at(set, format, start)
    }

    /// Starts `set` at `at`, a [`position`](FileSetReader::position) saved by a reader of the
    /// same set with the same format (see the [module docs](self)).
    ///
    /// # Errors
    /// As [`new`](Self::new); the errors of reopening the file at `at`;
    /// [`ReadError::InvalidOptions`] for a position of another format or past the set;
    /// [`ReadError::SchemaMismatch`] if that file's schema is not the set's.
    pub fn new_at(
        set: FileSet,
        format: FileFormat,
        at: FileSetPosition,
    ) -> Result<Self, ReadError> {
        let count = set.files.len();
        if at.file > count {
            return Err(ReadError::InvalidOptions(format!(
                "{}: the position is in file {} of a set of {count}",
                set.location, at.file
            )));
        }
        let files = set.files;
        let done = FileSetPosition {
            file: count,
            at: format.start(),
        };
        if at.file == count {
            let schema = match (format.declared_schema(), files.first()) {
                (Some(schema), _) => schema,
                (None, Some(first)) => format.open(first, None)?.schema(),
                (None, None) => {
                    return Err(ReadError::NoFiles {
                        location: set.location,
                    })
                }
            };
            return Ok(FileSetReader {
                format,
                pending: Vec::new().into_iter(),
                current: None,
                index: count,
                emitted: done,
                schema,
                finished_bytes: 0,
                done: true,
            });
        }
        let first = files[0].clone();
        let path = files[at.file].clone();
        let mut pending = files.into_iter();
        // Files before `at.file`, and that file itself (opened below), are not opened again.
        pending.nth(at.file);
        let current = format.open(&path, Some(at.at))?;
        let schema = if at.file == 0 {
            current.schema()
        } else {
            let schema = match format.declared_schema() {
                Some(schema) => schema,
                None => format.open(&first, None)?.schema(),
            };
            let found = current.schema();
            if !super::same_fields(&found, &schema) {
                return Err(ReadError::SchemaMismatch {
                    file: path.display().to_string(),
                    expected: schema,
                    found,
                });
            }
            schema
        };
        Ok(FileSetReader {
            format,
            pending,
            schema,
            current: Some(current),
            index: at.file,
            emitted: at,
            finished_bytes: 0,
            done: false,
        })
    }

    /// The position after the last batch returned (see the [module docs](self)); the start
    /// before the first, the set's end once every file is read.
    pub fn position(&self) -> FileSetPosition {
        self.emitted
    }

    fn advance(&mut self) -> Option<Result<ReadBatch, ReadError>> {
        loop {
            let current = self.current.as_mut()?;
            if let Some(item) = current.reader().next() {
                if item.is_ok() {
                    self.emitted = FileSetPosition {
                        file: self.index,
                        at: current.position(),
                    };
                }
                return Some(item);
            }
            self.finished_bytes += current.bytes_read();
            self.current = None;
            self.index += 1;
            let Some(path) = self.pending.next() else {
                self.emitted = FileSetPosition {
                    file: self.index,
                    at: self.format.start(),
                };
                return None;
            };
            let reader = match self.format.open(&path, None) {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let found = reader.schema();
            if !super::same_fields(&found, &self.schema) {
                return Some(Err(ReadError::SchemaMismatch {
                    file: path.display().to_string(),
                    expected: self.schema.clone(),
                    found,
                }));
            }
            self.current = Some(reader);
        }
    }
}

impl Iterator for FileSetReader {
    type Item = Result<ReadBatch, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.advance();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl crate::source::Rewind for FileSetReader {
    type Position = FileSetPosition;

    fn position(&self) -> FileSetPosition {
        self.emitted
    }
}

impl BatchReader for FileSetReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn bytes_read(&self) -> u64 {
        self.finished_bytes + self.current.as_ref().map_or(0, |c| c.bytes_read())
    }
}

impl std::fmt::Debug for FileSetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSetReader")
            .field("format", &self.format)
            .field("remaining", &self.pending.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
