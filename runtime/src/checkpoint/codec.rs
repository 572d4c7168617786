//! The encoding of state snapshots: a 12-byte versioned header, then the value in postcard's
//! wire format.
//!
//! ```text
//! state = magic "weirstat" | version: u32 LE (= 1) | postcard(value)
//! ```
//!
//! postcard writes integers as varints, sequences and maps with a varint length before their
//! elements, strings as length and bytes, and enums as a varint variant index; no field names,
//! so a snapshot is about as small as the values. Its wire format is specified and stable
//! across its 1.x releases. Like every non-self-describing format, it restores a value only
//! into the type that wrote it (or one whose serde shape is identical): an operator that changes
//! its state type must bump its own version inside the value or under a new blob name.
//!
//! The header lets a later encoding coexist with this one: [`decode`] refuses another version
//! with [`StateCodecError::UnsupportedVersion`] instead of misreading it.

use std::io::{self, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// First bytes of every encoded state.
const MAGIC: [u8; 8] = *b"weirstat";
/// The version of the state encoding this release writes and reads.
pub const STATE_FORMAT_VERSION: u32 = 1;
/// Bytes in the header.
const HEADER: usize = 12;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateCodecError {
    /// The bytes do not start with the state header: they are not an encoded state.
    #[error("not an encoded state: the \"weirstat\" header is missing")]
    BadHeader,
    /// The state was written in an encoding version this release does not read.
    #[error(
        "state encoding version {0} is not readable by this release, which reads version \
         {STATE_FORMAT_VERSION}"
    )]
    UnsupportedVersion(u32),
    /// The bytes after the value's end: the blob holds more than one value, or a different type.
    #[error("{0} bytes follow the encoded value: the state was written as another type")]
    TrailingBytes(usize),
    /// serde or postcard refused the value or the bytes (a type mismatch, a truncated value, a
    /// type serde cannot express in this format).
    #[error("state {}: {source}", if *.encoding { "cannot be encoded" } else { "cannot be decoded" })]
    Format {
        /// Whether encoding (not decoding) failed.
        encoding: bool,
        /// postcard's error.
        #[source]
        source: postcard::Error,
    },
    /// Writing the encoded value failed.
    #[error("writing the encoded state failed: {0}")]
    Io(#[source] io::Error),
}

/// The header every encoded state starts with.
fn header() -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
    h
}

/// Encodes `value` into a new buffer.
///
/// ```
/// use std::collections::HashMap;
/// use weir_runtime::checkpoint::{decode, encode};
///
/// let state: HashMap<u64, Vec<String>> = [(7, vec!["a".into(), "bc".into()])].into();
/// let bytes = encode(&state)?;
/// assert_eq!(decode::<HashMap<u64, Vec<String>>>(&bytes)?, state);
/// # Ok::<(), weir_runtime::checkpoint::StateCodecError>(())
/// ```
///
/// # Errors
///
/// [`StateCodecError::Format`] if serde refuses the value (a map of unknown length, say, or a
/// `Serialize` implementation that fails).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateCodecError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&header());
    postcard::to_extend(value, out).map_err(|source| StateCodecError::Format {
        encoding: true,
        source,
    })
}

/// Encodes `value` into `writer`, without building the whole encoding in memory. The encoder
/// writes a byte at a time, so give it a buffered writer (a [`BlobWriter`](super::BlobWriter)
/// is one).
///
/// # Errors
///
/// [`StateCodecError::Io`] if the writer failed; [`StateCodecError::Format`] as for [`encode`].
pub fn encode_into<T, W>(value: &T, writer: W) -> Result<(), StateCodecError>
where
    T: Serialize + ?Sized,
    W: Write,
{
    let mut writer = KeepError {
        inner: writer,
        error: None,
    };
    writer.write_all(&header()).map_err(StateCodecError::Io)?;
    match postcard::to_io(value, &mut writer) {
        Ok(_) => Ok(()),
        // postcard reports a failed write as a full buffer; the writer's own error says more.
        Err(source) => Err(match writer.error.take() {
            Some(e) => StateCodecError::Io(e),
            None => StateCodecError::Format {
                encoding: true,
                source,
            },
        }),
    }
}

/// Decodes a value [`encode`] or [`encode_into`] wrote. All of `bytes` must be the one value.
///
/// # Errors
///
/// [`StateCodecError::BadHeader`] or [`StateCodecError::UnsupportedVersion`] for bytes of
/// another format; [`StateCodecError::Format`] if they do not decode as a `T`;
/// [`StateCodecError::TrailingBytes`] if bytes are left after it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateCodecError> {
    let (h, body) = bytes
        .split_at_checked(HEADER)
        .ok_or(StateCodecError::BadHeader)?;
    if h[..8] != MAGIC {
        return Err(StateCodecError::BadHeader);
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != STATE_FORMAT_VERSION {
        return Err(StateCodecError::UnsupportedVersion(version));
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|source| StateCodecError::Format {
            encoding: false,
            source,
        })?;
    if !rest.is_empty() {
        return Err(StateCodecError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// A writer that keeps the first I/O error, which postcard would otherwise replace with its own.
struct KeepError<W> {
    inner: W,
    error: Option<io::Error>,
}

impl<W: Write> Write for KeepError<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        result.map_err(|e| self.keep(e))
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let result = self.inner.write_all(buf);
        result.map_err(|e| self.keep(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        result.map_err(|e| self.keep(e))
    }
}

impl<W> KeepError<W> {
    /// Keeps the first error and hands the encoder one of the same kind.
    fn keep(&mut self, e: io::Error) -> io::Error {
        let kind = e.kind();
        self.error.get_or_insert(e);
        io::Error::from(kind)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Timer {
        EventTime(i64),
        ProcessingTime { at: u64, key: String },
        Cancelled,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Keyed {
        counts: HashMap<String, u64>,
        windows: BTreeMap<(u64, i64), Vec<f64>>,
        timers: Vec<Timer>,
        nested: Vec<Option<(u8, Vec<String>)>>,
        bytes: Vec<u8>,
        position: Option<u64>,
    }

    fn timer() -> impl Strategy<Value = Timer> {
        prop_oneof![
            any::<i64>().prop_map(Timer::EventTime),
            (any::<u64>(), ".{0,8}").prop_map(|(at, key)| Timer::ProcessingTime { at, key }),
            Just(Timer::Cancelled),
        ]
    }

    fn keyed() -> impl Strategy<Value = Keyed> {
        (
            prop::collection::hash_map(".{0,12}", any::<u64>(), 0..20),
            prop::collection::btree_map(
                (any::<u64>(), any::<i64>()),
                // Finite floats: NaN is not equal to itself.
                prop::collection::vec(-1e12f64..1e12, 0..4),
                0..10,
            ),
            prop::collection::vec(timer(), 0..10),
            prop::collection::vec(
                prop::option::of((any::<u8>(), prop::collection::vec(".{0,6}", 0..4))),
                0..6,
            ),
            prop::collection::vec(any::<u8>(), 0..64),
            any::<Option<u64>>(),
        )
            .prop_map(|(counts, windows, timers, nested, bytes, position)| Keyed {
                counts,
                windows,
                timers,
                nested,
                bytes,
                position,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn state_round_trips_through_both_encoders(state in keyed()) {
            let bytes = encode(&state).expect("encodes");
            let mut streamed = Vec::new();
            encode_into(&state, &mut streamed).expect("encodes into a writer");
            prop_assert_eq!(&bytes, &streamed);
            prop_assert_eq!(decode::<Keyed>(&bytes).expect("decodes"), state);
        }

        #[test]
        fn a_truncated_state_is_an_error_not_a_wrong_value(state in keyed(), cut in any::<prop::sample::Index>()) {
            let bytes = encode(&state).expect("encodes");
            let cut = cut.index(bytes.len());
            prop_assert!(decode::<Keyed>(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn the_header_is_checked() {
        let mut bytes = encode(&5u32).expect("encodes");
        assert_eq!(&bytes[..12], b"weirstat\x01\0\0\0");
        assert_eq!(decode::<u32>(&bytes).expect("decodes"), 5);

        bytes.push(0);
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(StateCodecError::TrailingBytes(1))
        ));
        bytes.pop();

        bytes[8] = 2;
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(StateCodecError::UnsupportedVersion(2))
        ));
        bytes[0] = b'x';
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(StateCodecError::BadHeader)
        ));
        assert!(matches!(
            decode::<u32>(b"weir"),
            Err(StateCodecError::BadHeader)
        ));
    }

    #[test]
    fn a_failing_writer_reports_its_own_error() {
        struct Refuse;
        impl Write for Refuse {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = encode_into(&vec![1u64, 2, 3], Refuse).expect_err("the writer refuses");
        match err {
            StateCodecError::Io(e) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
            other => panic!("expected the writer's error, got {other}"),
        }
    }
}
