//! Sources that can be reopened where they stopped: [`Rewind`].

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

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
