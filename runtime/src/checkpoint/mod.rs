//! The checkpoint store: snapshots of operator state, source positions and in-flight data,
//! committed atomically into a directory, verified on restore, retained up to a count; the
//! state encoding; and the key groups that let keyed state move to another parallelism.
//!
//! This module stores and finds checkpoints. It knows nothing of barriers or of the executor:
//! whoever takes a checkpoint hands it named byte blobs and, once every instance has written
//! its own, commits it.
//!
//! # Layout
//!
//! ```text
//! DIR/
//!   _lock                         advisory lock: one store per directory
//!   chk-6/                        an older complete checkpoint (kept by retention)
//!     00000-state-0-count         one blob per (kind, operator, instance[, input])
//!     00001-state-1-count
//!     00002-source-0-orders       a source's position is just another blob
//!     00003-inflight-0-0-sink     batches an unaligned barrier overtook
//!     _manifest                   written last: the checkpoint exists once this does
//!   chk-7/                        the newest complete checkpoint
//!     ...
//!   chk-8/                        being written, or abandoned by a crash: no _manifest
//!     00000-state-0-count
//! ```
//!
//! A blob's file name starts with its index in the checkpoint, so it is unique however the
//! operator is named; the rest (kind, instance, the operator name reduced to `[A-Za-z0-9_-]`
//! and cut to 48 bytes) is for people. The manifest maps each [`BlobName`] to its file.
//!
//! The manifest is one line of JSON and a checksum line:
//!
//! ```text
//! {"format":1,"checkpoint":7,"fingerprint":…,"max_parallelism":128,"created_unix_ms":…,
//!  "operators":{"count":2,…},"blobs":[{"name":…,"file":"00000-state-0-count","len":…,"crc32":…},…]}
//! crc32 1a2b3c4d
//! ```
//!
//! It names the checkpoint id (checked against the directory's name), the job's graph
//! fingerprint, each operator's parallelism, the maximum parallelism (the number of key
//! groups), and every blob with its length and CRC-32; the last line is the CRC-32 (IEEE, as in
//! [`spill`](crate::spill)) of everything before it.
//!
//! # Commit protocol
//!
//! 1. [`CheckpointStore::begin`] creates `chk-<id>/`. Ids only increase: an id at or below the
//!    highest found in the directory (complete or not) is refused, so a checkpoint id is never
//!    reused, even after a crash — a sink that tags pending files with checkpoint ids can trust
//!    them.
//! 2. Each blob is written through a [`BlobWriter`] (or [`PendingCheckpoint::put`]), which sums
//!    its length and checksum as the bytes pass and, on [`finish`](BlobWriter::finish),
//!    **fsyncs the file**: the manifest will vouch for these bytes, so they must be on disk
//!    before it is.
//! 3. [`PendingCheckpoint::commit`] **fsyncs `chk-<id>/`** (the blobs' directory entries
//!    survive a crash, not only their contents) and **fsyncs `DIR/`** (the entry of `chk-<id>/`
//!    itself), then writes `_manifest.tmp`, **fsyncs it**, renames it to `_manifest` and
//!    **fsyncs `chk-<id>/` again**: without that last one the rename may be lost in a crash,
//!    and a checkpoint the coordinator was told is complete would vanish. A rename within one
//!    directory is atomic, so a reader sees either no manifest or a whole one.
//! 4. Retention then deletes what is no longer needed (below). Its failures are logged, not
//!    returned: the checkpoint is already complete.
//!
//! A crash anywhere before step 3's rename leaves a directory without a manifest: a *partial*
//! checkpoint, never mistaken for a complete one.
//!
//! # Restore
//!
//! [`CheckpointStore::latest`] walks the checkpoints from the highest id down and returns the
//! first that verifies: its manifest is present and its checksum, format and id are right, and
//! every blob it lists exists with the listed length and checksum (every byte is read). Each
//! newer one it passes over is reported in [`Latest::skipped`] with the reason ([`SkipReason`])
//! and logged. A missing or short file is a reason to skip; any other I/O error (permission
//! denied, say) is returned, so a job never silently restarts from an older state — or from
//! none — because a disk was briefly unreadable. [`CompletedCheckpoint::read`] checks a blob's
//! length and checksum again as it reads it.
//!
//! # Retention
//!
//! After each commit the store keeps the newest `retain` checkpoints that have a valid manifest
//! and deletes the other checkpoint directories older than the one just committed — older
//! complete ones and abandoned partial ones — except those being written
//! ([`PendingCheckpoint`]) or read ([`CompletedCheckpoint`]) through this store. Blobs are not
//! re-read for this, so keep `retain` at 2 or more if a corrupt newest checkpoint must have a
//! fallback. Partial directories *newer* than every complete checkpoint are left alone until a
//! later commit passes them, so the highest id in the directory never goes down. A deletion
//! removes `_manifest` first: a crash half-way through leaves a partial directory, which the
//! next retention removes.
//!
//! # State and key groups
//!
//! [`encode`] / [`decode`] turn a serde value into a blob's bytes and back (a versioned header
//! and postcard's compact encoding). [`KeyGroupRange`] and [`restore_sources`] say which key
//! groups an instance owns and, after a change of parallelism, which old instances' blobs hold
//! them.
//!
//! An operator instance snapshots into a [`SnapshotWriter`]: instance-wide bytes (a watermark,
//! a counter) and bytes per key group (the state of the keys in that group), which the
//! executor encodes into the instance's one state blob. On restore a [`SnapshotReader`] hands
//! an instance the key groups it owns at the new parallelism, from every old instance whose
//! range met it, and those old instances' instance-wide bytes: at an unchanged parallelism,
//! exactly its own snapshot; after a change, keyed state moves with its groups and the
//! operator merges the instance-wide parts as its semantics require.
//!
//! # Example
//!
//! ```
//! use std::collections::BTreeMap;
//! use weir_runtime::checkpoint::{BlobName, CheckpointMeta, CheckpointStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = CheckpointStore::open(dir.path(), 2)?;
//!
//! let id = store.next_id();
//! let pending = store.begin(id)?;
//! let counts: BTreeMap<String, u64> = [("a".to_string(), 3), ("b".to_string(), 5)].into();
//! pending.put_state(&BlobName::state("count", 0), &counts)?;
//! pending.put(&BlobName::source_position("numbers", 0), &42u64.to_le_bytes())?;
//! let meta = CheckpointMeta::new(0xfeed, 128)
//!     .operator("numbers", 1)
//!     .operator("count", 1);
//! pending.commit(meta)?;
//!
//! let latest = store.latest()?;
//! assert!(latest.skipped.is_empty());
//! let restored = latest.checkpoint.expect("one complete checkpoint");
//! assert_eq!(restored.id(), id);
//! let back: BTreeMap<String, u64> = restored.read_state(&BlobName::state("count", 0))?;
//! assert_eq!(back, counts);
//! # Ok(())
//! # }
//! ```

mod codec;
mod completed;
mod error;
mod key_groups;
mod manifest;
mod pending;
mod shared;
mod snapshot;
mod store;
#[cfg(test)]
mod tests;

pub use codec::{decode, encode, encode_into, StateCodecError, STATE_FORMAT_VERSION};
pub use completed::{CompletedCheckpoint, Latest, SkipReason, SkippedCheckpoint};
pub use error::CheckpointError;
pub use key_groups::{
    restore_sources, KeyGroupError, KeyGroupRange, RestoreSource, MAX_KEY_GROUPS,
};
pub use manifest::{BlobKind, BlobName, CheckpointMeta, MANIFEST_FORMAT_VERSION};
pub use pending::{BlobWriter, PendingCheckpoint};
pub use snapshot::{SnapshotReader, SnapshotWriter};
pub use store::CheckpointStore;
