//! The bookkeeping every text reader repeats per batch: rows counted with their `_line` and
//! `_raw` cells, bad records handled by the [`BadRecordPolicy`], and the typed columns plus those
//! cells assembled into one [`ReadBatch`].
//!
//! A reader parses each record into its [`Columns`](super::columns::Columns) and commits the
//! row itself (each format knows where its cell texts are); then it tells an [`Assembly`] that a
//! row was added ([`row`](Assembly::row)) or that a record was bad ([`bad`](Assembly::bad)), and
//! finally hands it the finished columns ([`finish`](Assembly::finish)). What a reader does when
//! a bad record fails the read (stop now, or deliver the rows before it first) stays the
//! reader's.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder, UInt64Builder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::{BadRecordPolicy, DeadLetter, ReadBatch, ReadError, RecordError};

/// One batch being read: its `_line` / `_raw` cells, dead letters and counts.
#[derive(Debug)]
pub(crate) struct Assembly {
    lines: Option<UInt64Builder>,
    raws: Option<StringBuilder>,
    /// Good records (rows) so far.
    rows: usize,
    /// Records met so far, good and bad.
    handled: usize,
    dead_letters: Vec<DeadLetter>,
    skipped: u64,
}

impl Assembly {
    /// An empty batch, with a `_line` builder for `rows` rows if `line_column`, and a `_raw`
    /// builder if `raw_column`: for `rows` rows of `raw_bytes` bytes in all if that is given,
    /// of Arrow's default size otherwise.
    pub(crate) fn new(
        line_column: bool,
        raw_column: bool,
        rows: usize,
        raw_bytes: Option<usize>,
    ) -> Self {
        Self {
            lines: line_column.then(|| UInt64Builder::with_capacity(rows)),
            raws: raw_column.then(|| match raw_bytes {
                Some(bytes) => StringBuilder::with_capacity(rows, bytes),
                None => StringBuilder::new(),
            }),
            rows: 0,
            handled: 0,
            dead_letters: Vec::new(),
            skipped: 0,
        }
    }

    /// Records met so far, good and bad.
    pub(crate) fn handled(&self) -> usize {
        self.handled
    }

    /// Rows (good records) so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// A good record on `line` whose row the reader committed; `raw` (its text) is asked for
    /// only when the batch has a `_raw` column.
    pub(crate) fn row<S: AsRef<str>>(&mut self, line: u64, raw: impl FnOnce() -> S) {
        self.handled += 1;
        self.rows += 1;
        if let Some(b) = self.lines.as_mut() {
            b.append_value(line);
        }
        if let Some(b) = self.raws.as_mut() {
            b.append_value(raw());
        }
    }

    /// A bad record of `file` on `line`, handled by `policy`: dead-lettered with `raw` (asked
    /// for only then), or counted as skipped. Under [`BadRecordPolicy::Fail`] it returns the
    /// error for the reader to raise.
    pub(crate) fn bad(
        &mut self,
        policy: BadRecordPolicy,
        file: &str,
        line: u64,
        cause: RecordError,
        raw: impl FnOnce() -> String,
    ) -> Option<ReadError> {
        self.handled += 1;
        match policy {
            BadRecordPolicy::Fail => {
                return Some(ReadError::BadRecord {
                    file: file.to_owned(),
                    line,
                    cause,
                })
            }
            BadRecordPolicy::DeadLetter => self.dead_letters.push(DeadLetter {
                file: Some(file.to_owned()),
                line: Some(line),
                reason: cause.to_string(),
                raw: raw(),
            }),
            BadRecordPolicy::SkipCounted => self.skipped += 1,
        }
        None
    }

    /// The batch of `file`: the finished data `columns`, then `_line` and `_raw` as asked, under
    /// `schema`.
    ///
    /// # Errors
    /// [`ReadError::Arrow`] if the arrays do not fit `schema` (a bug in the reader).
    pub(crate) fn finish(
        self,
        mut columns: Vec<ArrayRef>,
        schema: SchemaRef,
        file: &Arc<str>,
    ) -> Result<ReadBatch, ReadError> {
        if let Some(mut b) = self.lines {
            columns.push(Arc::new(b.finish()));
        }
        if let Some(mut b) = self.raws {
            columns.push(Arc::new(b.finish()));
        }
        let batch = RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|source| ReadError::Arrow {
            file: file.to_string(),
            source,
        })?;
        Ok(ReadBatch {
            file: file.clone(),
            batch,
            dead_letters: self.dead_letters,
            skipped: self.skipped,
        })
    }
}
