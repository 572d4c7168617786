//! Splitting an NDJSON body into records and malformed lines.
//!
//! Lines end at `\n` (a `\r` before it is dropped); line numbers are 1-based and count every
//! line, blank ones included, so they match what an editor shows. Blank lines (only ASCII
//! whitespace) are skipped. Every other line must be one JSON object.
//!
//! Two rules keep a record's meaning exact, each rejecting the line with its own reason:
//!
//! * **Duplicate keys** in an object (at any depth) are refused ([`LineError::DuplicateKey`]):
//!   JSON leaves their meaning open, and keeping either value would silently drop the other.
//! * **Integers are kept exact**: every integer that fits in `i64` or `u64` is held as one (so
//!   2⁵³ + 1 stays 2⁵³ + 1). An integer literal beyond both ranges would become an `f64` and
//!   lose digits, so it is refused ([`LineError::IntegerOutOfRange`]); send it as a string.
//!   Numbers written with a fraction or an exponent are floats by the sender's choice and are
//!   kept as `f64`.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Why one line of an NDJSON body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is not valid JSON (or not UTF-8).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// The line is valid JSON but not an object; each record must be a JSON object.
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    /// An object has the same key twice; which value is meant is not knowable.
    #[error("duplicate key `{0}` in an object")]
    DuplicateKey(String),
    /// An integer is beyond both `i64` and `u64` and would lose digits as a float; send it as
    /// a string.
    #[error("integer {0} is out of the exact range (i64 / u64); send it as a string")]
    IntegerOutOfRange(String),
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
        match parse_line(content) {
            Err(error) => parsed.malformed.push(Malformed { line, error, raw }),
            Ok(value @ Value::Object(_)) => {
                parsed.records.push(value);
                parsed.lines.push(line);
            }
            Ok(other) => parsed.malformed.push(Malformed {
                line,
                error: LineError::NotAnObject(kind(&other)),
                raw,
            }),
        }
    }
    parsed
}

/// Parses one line into a `Value`, refusing duplicate keys and integers that would be rounded.
fn parse_line(content: &[u8]) -> Result<Value, LineError> {
    let found = RefCell::new(Found::default());
    let mut de = serde_json::Deserializer::from_slice(content);
    let value = Strict(&found)
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    let found = found.into_inner();
    match value {
        Err(_) if found.duplicate.is_some() => {
            Err(LineError::DuplicateKey(found.duplicate.unwrap_or_default()))
        }
        Err(e) => Err(LineError::InvalidJson(e.to_string())),
        Ok(value) => match found.float.then(|| inexact_integer(content)).flatten() {
            Some(literal) => Err(LineError::IntegerOutOfRange(literal)),
            None => Ok(value),
        },
    }
}

/// What the strict visitor noticed while building a value.
#[derive(Default)]
struct Found {
    /// The first duplicate key.
    duplicate: Option<String>,
    /// Whether any number became an `f64` (an integer out of range would be one).
    float: bool,
}

/// Builds a `Value` as serde_json does, but refuses duplicate keys and notes floats.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a RefCell<Found>);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        self.0.borrow_mut().float = true;
        // JSON has no NaN or infinity; serde_json never hands one over.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Occupied(entry) => {
                    let key = entry.key().clone();
                    self.0.borrow_mut().duplicate = Some(key.clone());
                    return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
                }
                Entry::Vacant(entry) => {
                    entry.insert(access.next_value_seed(self)?);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

/// The first integer literal (no fraction, no exponent) of a valid JSON text that fits in
/// neither `i64` nor `u64`, shortened for a message.
fn inexact_integer(json: &[u8]) -> Option<String> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &json[start..i];
                let integer = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                if integer {
                    let text = String::from_utf8_lossy(token);
                    if text.parse::<i64>().is_err() && text.parse::<u64>().is_err() {
                        let mut shown: String = text.chars().take(40).collect();
                        if text.len() > 40 {
                            shown.push('…');
                        }
                        return Some(shown);
                    }
                }
            }
            _ => i += 1,
        }
    }
    None
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

    #[test]
    fn integers_beyond_2_pow_53_stay_exact() {
        let body =
            b"{\"a\":9007199254740993,\"b\":-9223372036854775808,\"c\":18446744073709551615}";
        let parsed = parse(body);
        assert!(parsed.malformed.is_empty());
        let record = &parsed.records[0];
        assert_eq!(record["a"].as_u64(), Some(9_007_199_254_740_993));
        assert_eq!(record["b"].as_i64(), Some(i64::MIN));
        assert_eq!(record["c"].as_u64(), Some(u64::MAX));
        // Serialised again (the spill does so), the digits are unchanged.
        assert_eq!(
            serde_json::to_vec(record).expect("serialises"),
            body.to_vec()
        );
    }

    /// The refused lines, with their reasons.
    fn line_errors(parsed: &Parsed) -> Vec<(usize, LineError)> {
        parsed
            .malformed
            .iter()
            .map(|m| (m.line, m.error.clone()))
            .collect()
    }

    #[test]
    fn integers_beyond_u64_and_i64_are_rejected_not_rounded() {
        let body = b"{\"n\":18446744073709551616}\n{\"s\":\"18446744073709551616\",\"x\":[1.5,-92233720368547758090]}\n{\"f\":1e300,\"g\":2.5}";
        let parsed = parse(body);
        let errors = line_errors(&parsed);
        assert_eq!(
            errors,
            vec![
                (
                    1,
                    LineError::IntegerOutOfRange("18446744073709551616".into())
                ),
                (
                    2,
                    LineError::IntegerOutOfRange("-92233720368547758090".into())
                ),
            ]
        );
        // Floats written as floats are kept (the digits inside a string are not a number).
        assert_eq!(parsed.lines, vec![3]);
        assert_eq!(parsed.records[0]["f"].as_f64(), Some(1e300));
    }

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        let body = b"{\"a\":1,\"a\":2}\n{\"o\":{\"k\":1,\"k\":1}}\n{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}]}";
        let parsed = parse(body);
        let errors = line_errors(&parsed);
        assert_eq!(
            errors,
            vec![
                (1, LineError::DuplicateKey("a".into())),
                (2, LineError::DuplicateKey("k".into())),
            ]
        );
        // The same key in different objects is no duplicate.
        assert_eq!(parsed.lines, vec![3]);
        assert_eq!(
            parsed.records[0],
            json!({"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]})
        );
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
