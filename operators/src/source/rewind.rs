//! Sources that can be reopened where they stopped.
//!
//! A checkpoint records, for every source instance, where it stands: the position after the
//! last batch it emitted. A restored run builds each source at that position and the source
//! emits exactly the rows it had not emitted, so the rows before the position (already in the
//! checkpoint's state and output) and the rows after it (emitted again) add up to one
//! uninterrupted run, row for row.
//!
//! [`Rewind::position`] is read between batches (the executor asks for it when a barrier
//! passes the source, never while a batch is being built), and is exact there: it never
//! counts a row that was read ahead but not emitted. Positions are plain serde values, so they
//! go into a checkpoint's state blob as they are. Each source has its own way to be built at a
//! position (`with_start`, `from_path_at`, …): see the implementors.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A source whose position can be saved and reopened (see the [module docs](self)).
pub trait Rewind {
    /// Where the source stands: serializable, to be stored in a checkpoint.
    type Position: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + 'static;

    /// The position after the last batch this source emitted (its start position before the
    /// first). Exact between batches.
    fn position(&self) -> Self::Position;
}
