//! Sources that can be reopened where they stopped: [`Rewind`].

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use weir_runtime::OperatorError;

/// A source whose position can be saved and reopened.
///
/// A checkpoint records, for every source instance, where it stands: the position after the
/// last batch it emitted. A restored run builds each source at that position and the source
/// emits exactly the rows it had not emitted, so the rows before the position and the rows
/// after it add up to one uninterrupted run, row for row. The position is read between batches
/// and is exact there; it is a plain serde value, stored in the checkpoint as it is. Each
/// source has its own way to be built at a position (`with_start`, `from_path_at`, …).
pub trait Rewind {
    /// Where the source stands: serializable, to be stored in a checkpoint.
    type Position: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static;

    /// The position after the last batch this source emitted (its start position before the
    /// first). Exact between batches.
    fn position(&self) -> Self::Position;
}

/// Encodes a rewindable source's [`position`](Rewind::position) for
/// [`Source::snapshot`](weir_runtime::Source::snapshot), in the checkpoints' versioned encoding.
///
/// # Errors
///
/// An internal error if the position does not encode.
pub fn encode_position<S: Rewind + ?Sized>(source: &S) -> Result<Vec<u8>, OperatorError> {
    weir_runtime::checkpoint::encode(&source.position())
        .map_err(|e| OperatorError::internal(format!("encoding the source's position: {e}")))
}

/// Decodes a position written by [`encode_position`], for
/// [`Source::restore`](weir_runtime::Source::restore).
///
/// # Errors
///
/// A user error if the bytes are not a position of this source (a checkpoint of another job).
pub fn decode_position<P: DeserializeOwned>(bytes: &[u8]) -> Result<P, OperatorError> {
    weir_runtime::checkpoint::decode(bytes).map_err(|e| {
        OperatorError::user(format!(
            "the checkpoint's position is not one of this source: {e}"
        ))
    })
}
