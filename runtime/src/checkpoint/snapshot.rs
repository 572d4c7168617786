//! What one operator instance writes into a checkpoint and reads back: instance-wide state and
//! state split by key group, in one blob per instance.
//!
//! An operator (or a sink) snapshots into a [`SnapshotWriter`]: bytes for the instance as a
//! whole ([`put_instance`](SnapshotWriter::put_instance): a watermark, a counter) and bytes per
//! key group ([`put_group`](SnapshotWriter::put_group): the state of the keys that fall in that
//! group). The executor encodes both into the instance's state blob
//! ([`BlobName::state`](super::BlobName::state)).
//!
//! On restore, a [`SnapshotReader`] hands an instance what it owns at the *new* parallelism:
//! the key groups of its [`KeyGroupRange`], taken from **every** old instance that wrote them,
//! and the instance-wide bytes of the old instances whose range met it (see
//! [`restore_sources`](super::restore_sources)). Groups come from every old instance, not only
//! from their old owner, because a key split over several instances (partial key grouping, a
//! hot-key split) leaves partial state on instances that do not own its group: each partial
//! reaches the group's new owner, which merges them, at an unchanged parallelism as after a
//! change. Instance-wide bytes stay with the range: at an unchanged parallelism an instance
//! gets back exactly its own; after a change it merges those of its old neighbours (the
//! lowest watermark, say) as its semantics require.
//!
//! ```
//! use weir_runtime::checkpoint::{SnapshotReader, SnapshotWriter};
//!
//! let mut w = SnapshotWriter::new(128);
//! w.put_instance(b"watermark 42".to_vec());
//! w.put_group(3, b"keys of group 3".to_vec());
//! w.put_group(100, b"keys of group 100".to_vec());
//! let blob = w.into_blob()?;
//!
//! // Restored by instance 0 of 2: groups 0..64.
//! let r = SnapshotReader::from_blobs(128, 2, 0, 7, [blob.as_slice()])?;
//! assert_eq!(r.instance_states(), [b"watermark 42".to_vec()]);
//! let groups: Vec<u32> = r.groups().map(|(g, _)| g).collect();
//! assert_eq!(groups, [3]);
//! # Ok::<(), weir_runtime::checkpoint::CheckpointError>(())
//! ```

use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::error::CheckpointError;
use super::key_groups::KeyGroupRange;

/// The encoded form of one instance's state blob.
#[derive(Debug, Default, Serialize, Deserialize)]
struct InstanceSnapshot {
    instance: Option<Vec<u8>>,
    groups: Vec<(u32, Vec<u8>)>,
}

/// Where an operator or sink instance writes its state for a checkpoint: instance-wide bytes
/// and bytes per key group, encoded into the instance's state blob (see
/// [`checkpoint`](crate::checkpoint#state-and-key-groups)).
#[derive(Debug)]
pub struct SnapshotWriter {
    max_parallelism: u32,
    state: InstanceSnapshot,
    bytes: u64,
}

impl SnapshotWriter {
    /// An empty snapshot for a job of `max_parallelism` key groups.
    pub fn new(max_parallelism: u32) -> Self {
        Self {
            max_parallelism,
            state: InstanceSnapshot::default(),
            bytes: 0,
        }
    }

    /// The job's number of key groups: a keyed operator puts each key's state under the group
    /// its router computes with this count.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Sets the instance-wide state (replacing an earlier one).
    pub fn put_instance(&mut self, bytes: Vec<u8>) {
        self.bytes += bytes.len() as u64;
        self.state.instance = Some(bytes);
    }

    /// Adds the state of key group `group` (call once per group that holds state).
    pub fn put_group(&mut self, group: u32, bytes: Vec<u8>) {
        self.bytes += bytes.len() as u64;
        self.state.groups.push((group, bytes));
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.state.instance.is_none() && self.state.groups.is_empty()
    }

    /// Bytes written so far (before encoding).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The blob's bytes.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::State`] if the state cannot be encoded.
    pub fn into_blob(self) -> Result<Vec<u8>, CheckpointError> {
        encode(&self.state).map_err(|source| CheckpointError::State {
            path: std::path::PathBuf::new(),
            source,
        })
    }
}

/// What an operator or sink instance restores from: the key groups of its range at the new
/// parallelism, from every old instance that held them, and those old instances'
/// instance-wide bytes (see [`checkpoint`](crate::checkpoint#state-and-key-groups)).
#[derive(Debug, Default)]
pub struct SnapshotReader {
    checkpoint: u64,
    range: Option<KeyGroupRange>,
    instance: Vec<Vec<u8>>,
    groups: Vec<(u32, Vec<u8>)>,
}

impl SnapshotReader {
    /// A reader for instance `instance` of `parallelism`, of checkpoint `checkpoint`, over the
    /// state blobs of the old instances it restores from, taking the instance-wide bytes of
    /// each; key groups outside the instance's range are left out.
    ///
    /// # Errors
    ///
    /// [`CheckpointError::KeyGroups`] for a parallelism the key groups cannot serve;
    /// [`CheckpointError::State`] if a blob does not decode.
    pub fn from_blobs<'a>(
        max_parallelism: u32,
        parallelism: u32,
        instance: u32,
        checkpoint: u64,
        blobs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, CheckpointError> {
        Self::from_sources(
            max_parallelism,
            parallelism,
            instance,
            checkpoint,
            blobs.into_iter().map(|blob| (blob, true)),
        )
    }

    /// A reader for instance `instance` of `parallelism`, of checkpoint `checkpoint`, over
    /// `(blob, instance_wide)` pairs: the state blob of every old instance, in old-instance
    /// order, and whether its instance-wide bytes are this instance's to restore (its range met
    /// this instance's). The key groups of the instance's range are taken from every blob, so
    /// the partials of a split key that old instances held outside their own range reach the
    /// group's owner (see [`checkpoint`](crate::checkpoint#state-and-key-groups)).
    ///
    /// ```
    /// use weir_runtime::checkpoint::{SnapshotReader, SnapshotWriter};
    ///
    /// // At parallelism 2, instance 1 held a partial of group 3, which instance 0 owns.
    /// let mut w0 = SnapshotWriter::new(128);
    /// w0.put_instance(b"i0".to_vec());
    /// w0.put_group(3, b"partial from 0".to_vec());
    /// let mut w1 = SnapshotWriter::new(128);
    /// w1.put_instance(b"i1".to_vec());
    /// w1.put_group(3, b"partial from 1".to_vec());
    /// let (b0, b1) = (w0.into_blob()?, w1.into_blob()?);
    ///
    /// // Restored at parallelism 2, instance 0 gets both partials but only its own instance
    /// // bytes; instance 1 gets neither partial.
    /// let blobs = [(b0.as_slice(), true), (b1.as_slice(), false)];
    /// let r0 = SnapshotReader::from_sources(128, 2, 0, 7, blobs)?;
    /// assert_eq!(r0.instance_states(), [b"i0".to_vec()]);
    /// assert_eq!(r0.groups().count(), 2);
    /// let blobs = [(b0.as_slice(), false), (b1.as_slice(), true)];
    /// let r1 = SnapshotReader::from_sources(128, 2, 1, 7, blobs)?;
    /// assert_eq!(r1.instance_states(), [b"i1".to_vec()]);
    /// assert_eq!(r1.groups().count(), 0);
    /// # Ok::<(), weir_runtime::checkpoint::CheckpointError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`CheckpointError::KeyGroups`] for a parallelism the key groups cannot serve;
    /// [`CheckpointError::State`] if a blob does not decode.
    pub fn from_sources<'a>(
        max_parallelism: u32,
        parallelism: u32,
        instance: u32,
        checkpoint: u64,
        blobs: impl IntoIterator<Item = (&'a [u8], bool)>,
    ) -> Result<Self, CheckpointError> {
        let range = KeyGroupRange::of_instance(max_parallelism, parallelism, instance)?;
        let mut reader = Self {
            checkpoint,
            range: Some(range),
            ..Self::default()
        };
        for (blob, instance_wide) in blobs {
            let snap: InstanceSnapshot = decode(blob).map_err(|source| CheckpointError::State {
                path: std::path::PathBuf::new(),
                source,
            })?;
            if instance_wide {
                reader.instance.extend(snap.instance);
            }
            reader
                .groups
                .extend(snap.groups.into_iter().filter(|(g, _)| range.contains(*g)));
        }
        Ok(reader)
    }

    /// The checkpoint restored from.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The key groups this instance owns now, if known.
    pub fn key_groups(&self) -> Option<KeyGroupRange> {
        self.range
    }

    /// The instance-wide state of every old instance restored from (one at an unchanged
    /// parallelism), in old-instance order.
    pub fn instance_states(&self) -> &[Vec<u8>] {
        &self.instance
    }

    /// The state of every key group this instance owns, as `(group, bytes)`.
    pub fn groups(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.groups.iter().map(|(g, b)| (*g, b.as_slice()))
    }

    /// Whether there is nothing to restore.
    pub fn is_empty(&self) -> bool {
        self.instance.is_empty() && self.groups.is_empty()
    }
}
