//! Dead letters: records an operator could not process, kept with the reason and the raw input.
//!
//! Every operator (sources, transforms and sinks alike) has a dead-letter port besides its main
//! output. What an operator rejects goes there, in order, through a bounded edge like any other;
//! connect it with [`StreamCore::dead_letters`](crate::StreamCore::dead_letters) and sink it
//! anywhere. A port left unconnected still counts every dead letter in the run report, so nothing
//! is dropped silently.

use serde::{Deserialize, Serialize};

/// A record that could not be processed.
///
/// # Examples
///
/// ```
/// use weir_runtime::DeadLetter;
///
/// let dl = DeadLetter::new("unknown currency `XYZ`", "7,2024-01-01T00:00:00Z,...").at_line(8);
/// assert_eq!(
///     serde_json::to_string(&dl).unwrap(),
///     r#"{"line":8,"reason":"unknown currency `XYZ`","raw":"7,2024-01-01T00:00:00Z,..."}"#
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The file the record came from, when there is one worth naming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based line (or record number) it came from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Why it was rejected.
    pub reason: String,
    /// The record as it arrived.
    pub raw: String,
}

impl DeadLetter {
    /// A dead letter with a reason and the raw record.
    pub fn new(reason: impl Into<String>, raw: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            reason: reason.into(),
            raw: raw.into(),
        }
    }

    /// Sets the line.
    pub fn at_line(mut self, line: u64) -> Self {
        self.line = Some(line);
        self
    }

    /// Sets the file.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}
