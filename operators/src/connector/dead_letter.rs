//! Dead letters: records that could not be processed, kept with where they came from and why.
//!
//! A [`DeadLetter`] serialises to one NDJSON object `{"file":…,"line":…,"reason":…,"raw":…}`,
//! with `file` (and `line`) omitted when unknown. [`dead_letters_to_batch`] turns a slice of them into a
//! [`RecordBatch`] of [`dead_letter_schema`]; the NDJSON [`PartWriter`](super::PartWriter) omits
//! null fields, so both paths write the same bytes.

use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// A record that could not be processed: the runtime's dead letter, so connector and pipeline
/// share one type (a reader's dead letters go straight to an operator's dead-letter port).
pub use weir_runtime::DeadLetter;

/// Schema of [`dead_letters_to_batch`]: `file: Utf8?, line: UInt64?, reason: Utf8, raw: Utf8`.
pub fn dead_letter_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("file", DataType::Utf8, true),
                Field::new("line", DataType::UInt64, true),
                Field::new("reason", DataType::Utf8, false),
                Field::new("raw", DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// The dead letters as one batch of [`dead_letter_schema`], in the given order.
///
/// # Errors
/// Never in practice: the columns are built to match the schema.
///
/// ```
/// use weir_operators::connector::{dead_letters_to_batch, DeadLetter};
///
/// let dl = DeadLetter::new("bad", "x,y").at_line(3);
/// assert_eq!(serde_json::to_string(&dl).unwrap(), r#"{"line":3,"reason":"bad","raw":"x,y"}"#);
/// let batch = dead_letters_to_batch(&[dl]).unwrap();
/// assert_eq!(batch.num_rows(), 1);
/// ```
pub fn dead_letters_to_batch(letters: &[DeadLetter]) -> Result<RecordBatch, ArrowError> {
    let file: StringArray = letters.iter().map(|d| d.file.as_deref()).collect();
    let line: UInt64Array = letters.iter().map(|d| d.line).collect();
    let reason: StringArray = letters.iter().map(|d| Some(d.reason.as_str())).collect();
    let raw: StringArray = letters.iter().map(|d| Some(d.raw.as_str())).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(file),
        Arc::new(line),
        Arc::new(reason),
        Arc::new(raw),
    ];
    RecordBatch::try_new(dead_letter_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_file_only_when_present() {
        let with = DeadLetter {
            file: Some("a.csv".into()),
            line: Some(7),
            reason: "expected 7 fields, found 6".into(),
            raw: "1,\"x,y\"".into(),
        };
        let json = serde_json::to_string(&with).expect("plain struct");
        assert_eq!(
            json,
            r#"{"file":"a.csv","line":7,"reason":"expected 7 fields, found 6","raw":"1,\"x,y\""}"#
        );
        let back: DeadLetter = serde_json::from_str(&json).expect("just written");
        assert_eq!(back, with);
        let without: DeadLetter =
            serde_json::from_str(r#"{"line":1,"reason":"r","raw":""}"#).expect("valid");
        assert_eq!(without.file, None);
    }

    #[test]
    fn batch_has_one_row_per_letter_in_order() {
        let letters: Vec<DeadLetter> = (1..=3)
            .map(|i| DeadLetter {
                file: (i != 2).then(|| format!("f{i}")),
                line: Some(i),
                reason: format!("r{i}"),
                raw: format!("raw{i}"),
            })
            .collect();
        let batch = dead_letters_to_batch(&letters).expect("matching columns");
        assert_eq!(batch.num_rows(), 3);
        let lines = batch
            .column(1)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .expect("line is UInt64");
        assert_eq!(lines.values().to_vec(), vec![1, 2, 3]);
        assert_eq!(batch.column(0).null_count(), 1);
    }
}
