//! Splitting an NDJSON body into records and malformed lines.
//!
//! Lines end at `\n` (a `\r` before it is dropped); line numbers are 1-based and count every
//! line, blank ones included, so they match what an editor shows. Blank lines (only ASCII
//! whitespace) are skipped. Every other line must be one JSON object.

use std::ops::Range;

use serde_json::Value;

/// Why one line of an NDJSON body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not valid JSON (or not UTF-8).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The line is valid JSON but not an object; each record must be a JSON object.
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
}

/// A line that could not become a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Malformed {
    /// 1-based line number.
    pub line: usize,
    /// Why it was rejected.
    pub error: LineError,
    /// Byte range of the line in the body (without its line ending).
    pub raw: Range<usize>,
}

/// The records of a body, in order, with their line numbers, and its malformed lines.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// Parsed records (all JSON objects), in body order.
    pub records: Vec<Value>,
    /// `lines[i]` is the 1-based line number of `records[i]`.
    pub lines: Vec<usize>,
    /// Lines that were neither blank nor a JSON object.
    pub malformed: Vec<Malformed>,
}

/// Parses an NDJSON body.
pub(crate) fn parse(body: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let mut start = 0;
    for (index, segment) in body.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let end = start + segment.len();
        let content = segment.strip_suffix(b"\r").unwrap_or(segment);
        let raw = start..start + content.len();
        start = end + 1;
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(content) {
            Ok(value @ Value::Object(_)) => {
                parsed.records.push(value);
                parsed.lines.push(line);
            }
            Ok(other) => parsed.malformed.push(Malformed {
                line,
                error: LineError::NotAnObject(kind(&other)),
                raw,
            }),
            Err(e) => parsed.malformed.push(Malformed {
                line,
                error: LineError::InvalidJson(e.to_string()),
                raw,
            }),
        }
    }
    parsed
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn numbers_lines_from_one_and_skips_blank_lines() {
        let body = b"{\"a\":1}\n\n  \r\n[1]\n{\"b\":2}\r\nnope\n";
        let parsed = parse(body);
        assert_eq!(parsed.records, vec![json!({"a": 1}), json!({"b": 2})]);
        assert_eq!(parsed.lines, vec![1, 5]);
        let bad: Vec<_> = parsed
            .malformed
            .iter()
            .map(|m| (m.line, &body[m.raw.clone()]))
            .collect();
        assert_eq!(bad, vec![(4, &b"[1]"[..]), (6, &b"nope"[..])]);
        assert_eq!(
            parsed.malformed[0].error,
            LineError::NotAnObject("an array")
        );
        assert!(matches!(
            parsed.malformed[1].error,
            LineError::InvalidJson(_)
        ));
    }

    #[test]
    fn invalid_utf8_is_an_invalid_json_line() {
        let parsed = parse(b"{\"a\":\"\xff\"}");
        assert!(parsed.records.is_empty());
        assert_eq!(parsed.malformed.len(), 1);
        assert!(matches!(
            parsed.malformed[0].error,
            LineError::InvalidJson(_)
        ));
    }

    #[derive(Debug, Clone)]
    enum Line {
        Object(u32),
        Scalar(u32),
        Garbage(String),
        Blank(String),
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            any::<u32>().prop_map(Line::Object),
            any::<u32>().prop_map(Line::Scalar),
            "[a-z{}\\[\\]:,\"]{1,8}"
                .prop_filter("must not be valid JSON", |s| serde_json::from_str::<Value>(
                    s
                )
                .is_err())
                .prop_map(Line::Garbage),
            "[ \t]{0,3}".prop_map(Line::Blank),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_line_by_line_model(lines in proptest::collection::vec(line(), 0..40), crlf in any::<bool>()) {
            let ending = if crlf { "\r\n" } else { "\n" };
            let texts: Vec<String> = lines.iter().map(|l| match l {
                Line::Object(n) => format!("{{\"n\":{n}}}"),
                Line::Scalar(n) => n.to_string(),
                Line::Garbage(s) | Line::Blank(s) => s.clone(),
            }).collect();
            let body = texts.join(ending);
            let parsed = parse(body.as_bytes());

            let mut want_records = Vec::new();
            let mut want_lines = Vec::new();
            let mut want_bad = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                match l {
                    Line::Object(n) => { want_records.push(json!({"n": n})); want_lines.push(i + 1); }
                    Line::Scalar(_) | Line::Garbage(_) => want_bad.push((i + 1, texts[i].clone())),
                    Line::Blank(_) => {}
                }
            }
            prop_assert_eq!(parsed.records, want_records);
            prop_assert_eq!(parsed.lines, want_lines);
            let got_bad: Vec<_> = parsed.malformed.iter()
                .map(|m| (m.line, String::from_utf8_lossy(&body.as_bytes()[m.raw.clone()]).into_owned()))
                .collect();
            prop_assert_eq!(got_bad, want_bad);
        }
    }
}
