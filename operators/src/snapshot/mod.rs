//! Operator state for checkpoints, split by key group.
//!
//! A stateful operator instance writes its state into a [`Snapshot`]: one blob per key group
//! that holds state, and one blob of *instance* state that belongs to no key (the watermark it
//! last saw, a counter of rows since its last periodic update). A restoring instance reads
//! back the groups it owns, from every old snapshot that holds them, and the instance state of
//! those snapshots ([`KeyedSnapshot`], [`restore`]). Blobs are encoded with the runtime's
//! versioned postcard encoding ([`weir_runtime::checkpoint::encode`]).
//!
//! # Key groups
//!
//! The group a key's state is filed under is the one its rows are routed by: the same
//! [`KeyHasher`] and [`KeyGroups`] as the keyed edge in front of the operator
//! ([`KeyGrouping`]), so that an instance restored at another parallelism holds exactly the
//! keys the router will send it. Instance `i` of `p` owns [`KeyGroups::range`]`(i, p)`, the
//! same range as the runtime's
//! [`KeyGroupRange::of_instance`](weir_runtime::checkpoint::KeyGroupRange::of_instance).
//!
//! # Split keys and partial state
//!
//! With a splitting strategy (partial key grouping, hot-key split) a key's rows reach several
//! instances of a *partial* stage, and each holds a partial accumulator of it — including
//! instances that do not own the key's group. Partials merge (that is what makes splitting
//! exact), so restoring group `g` must take `g` from **every** old snapshot that holds it, not
//! only from its old owner: [`restore`] does, and a partial stage merges what it reads into the
//! accumulator it already holds for the key (window stages merge `(key, window)` accumulators,
//! sessions by overlap). After the restore each partial sits on the owner of its group, where a
//! later partial of the same key merges downstream as before. Operators whose state does not
//! merge (keyed process functions, whose keys are always hash-routed) refuse a key met twice
//! with [`SnapshotError::DuplicateKey`].
//!
//! # Full snapshots
//!
//! Every snapshot holds the whole state of the instance, not what changed since the last one:
//! its cost grows with the state held (see `BENCHMARKS.md`, "Checkpoints: operator state").
//!
//! # Instance state
//!
//! Several old instances' instance state may reach one new instance. Each operator says how it
//! combines them; for a watermark it keeps the highest: at an aligned barrier every instance of
//! an operator has seen the same watermarks, and state that one of them freed behind a higher
//! one cannot come back.
//!
//! # Example
//!
//! A keyed count snapshotted at two instances and restored at three:
//!
//! ```
//! use std::num::NonZeroUsize;
//! use weir_operators::keyed::aggregate::Count;
//! use weir_operators::keyed::route::{KeyGroups, KeyHasher};
//! use weir_operators::keyed::stage::{KeyedStage, Role};
//! use weir_operators::snapshot::{restore, KeyGrouping, KeyedSnapshot, SnapshotOut};
//! use weir_runtime::{Message, Operator, Output};
//!
//! let grouping = KeyGrouping::new(KeyHasher::default(), KeyGroups::default());
//! let stage = || {
//!     KeyedStage::new(
//!         Count::<u32>::new(),
//!         |k: u32| (k, ()),
//!         |_, acc: &mut u64, ()| *acc += 1,
//!         |_, k, n| (k, n),
//!         Role::Final { updates: None },
//!         1000,
//!     )
//! };
//! let (two, three) = (NonZeroUsize::new(2).unwrap(), NonZeroUsize::new(3).unwrap());
//! let mut old = [stage(), stage()];
//! let mut out = Output::new(64);
//! for key in 0..100u32 {
//!     let i = grouping.groups().instance(grouping.group(&key), two);
//!     old[i].on_batch(0, vec![key, key], &mut out)?;
//! }
//! let snapshots = old
//!     .iter()
//!     .map(|op| {
//!         let mut snap = SnapshotOut::new(grouping);
//!         op.snapshot(&mut snap)?;
//!         Ok(snap.finish())
//!     })
//!     .collect::<Result<Vec<_>, weir_operators::snapshot::SnapshotError>>()?;
//! let mut counts = Vec::new();
//! let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! for i in 0..3 {
//!     let mut new = stage();
//!     restore(&mut new, &snapshots, grouping.groups().range(i, three))?;
//!     new.on_end(&mut out)?;
//!     while new.poll_flush(&mut cx, &mut out).is_pending() {}
//!     out.flush();
//!     for msg in out.drain() {
//!         if let Message::Data(batch) = msg {
//!             counts.extend(batch);
//!         }
//!     }
//! }
//! counts.sort();
//! assert_eq!(counts, (0..100).map(|k| (k, 2)).collect::<Vec<_>>());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::hash::Hash;
use std::ops::Range;

use serde::Serialize;
use weir_runtime::checkpoint::{decode, encode, SnapshotReader, SnapshotWriter, StateCodecError};
use weir_runtime::OperatorError;

use crate::keyed::route::{KeyGroups, KeyHasher};

#[cfg(test)]
pub(crate) mod testing;

/// How keys are filed: the hash and the key groups of the keyed edge in front of an operator.
/// `group(key) = KeyGroups::group(KeyHasher::hash_key(key))`, as the router computes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyGrouping {
    hasher: KeyHasher,
    groups: KeyGroups,
}

impl KeyGrouping {
    /// Keys hashed by `hasher` into `groups`.
    pub fn new(hasher: KeyHasher, groups: KeyGroups) -> Self {
        Self { hasher, groups }
    }

    /// The key group of `key`.
    #[inline]
    pub fn group<K: Hash + 'static>(&self, key: &K) -> u32 {
        self.groups.group(self.hasher.hash_key(key))
    }

    /// The key group of a key given as bytes (the columnar operators' row-encoded keys).
    #[inline]
    pub fn group_of_bytes(&self, bytes: &[u8]) -> u32 {
        self.groups.group(self.hasher.hash_bytes(bytes))
    }

    /// The key groups.
    pub fn groups(&self) -> KeyGroups {
        self.groups
    }

    /// The key hash.
    pub fn hasher(&self) -> KeyHasher {
        self.hasher
    }
}

/// Why state could not be written or read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A key group's state could not be encoded or decoded.
    #[error("state of key group {group}: {source}")]
    Group {
        /// The key group.
        group: u32,
        /// The encoding's error.
        #[source]
        source: StateCodecError,
    },
    /// The instance state could not be encoded or decoded.
    #[error("instance state: {0}")]
    Instance(#[source] StateCodecError),
    /// An operator wrote a key group twice.
    #[error("key group {0} was written twice in one snapshot (one blob per group)")]
    GroupTwice(u32),
    /// A restore would hold more than the instance's bound.
    #[error(
        "restoring needs {needed} entries but the instance holds at most {max}; raise the bound \
         (`max_keys`, `max_windows`) or restore at a higher parallelism"
    )]
    Bound {
        /// Entries the restored state needs.
        needed: usize,
        /// The instance's bound.
        max: usize,
    },
    /// A key whose state does not merge was met twice while restoring.
    #[error(
        "key group {group} holds a key already restored; this operator's state does not merge, \
         so each group must be restored from one snapshot only"
    )]
    DuplicateKey {
        /// The key group.
        group: u32,
    },
    /// A key group's entries have another shape than this operator's: the job's aggregates
    /// changed since the checkpoint.
    #[error(
        "key group {group} holds {found} accumulators per key but this operator computes \
         {expected}: the aggregates changed since the checkpoint was taken"
    )]
    Shape {
        /// The key group.
        group: u32,
        /// Accumulators per key this operator computes.
        expected: usize,
        /// Accumulators per key the snapshot holds.
        found: usize,
    },
    /// The operator has reached the end of its input and is handing on its results: there is
    /// no state left to snapshot (barriers never follow the end of input).
    #[error("the operator has ended its input; its state is being handed on, not snapshotted")]
    Ended,
}

/// The state of one operator instance: its instance blob and one blob per key group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    instance: Option<Vec<u8>>,
    groups: BTreeMap<u32, Vec<u8>>,
}

impl Snapshot {
    /// The instance state, if the operator wrote one.
    pub fn instance(&self) -> Option<&[u8]> {
        self.instance.as_deref()
    }

    /// The state of key group `group`, if the instance held any.
    pub fn group(&self, group: u32) -> Option<&[u8]> {
        self.groups.get(&group).map(Vec::as_slice)
    }

    /// Every key group's state, in group order.
    pub fn groups(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.groups.iter().map(|(g, b)| (*g, b.as_slice()))
    }

    /// Whether any group of `range` is held.
    pub fn holds_any(&self, range: Range<u32>) -> bool {
        self.groups.range(range).next().is_some()
    }

    /// Encoded bytes, all blobs together.
    pub fn bytes(&self) -> usize {
        self.instance.as_ref().map_or(0, Vec::len)
            + self.groups.values().map(Vec::len).sum::<usize>()
    }
}

/// Where an operator writes its [`Snapshot`], with the [`KeyGrouping`] to file keys by.
#[derive(Debug)]
pub struct SnapshotOut {
    grouping: KeyGrouping,
    snapshot: Snapshot,
}

impl SnapshotOut {
    /// An empty snapshot filing keys by `grouping`.
    pub fn new(grouping: KeyGrouping) -> Self {
        Self {
            grouping,
            snapshot: Snapshot::default(),
        }
    }

    /// The grouping keys are filed by.
    pub fn grouping(&self) -> KeyGrouping {
        self.grouping
    }

    /// Writes the instance state (replacing one written before).
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Instance`] if serde refuses the value.
    pub fn instance<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SnapshotError> {
        self.snapshot.instance = Some(encode(value).map_err(SnapshotError::Instance)?);
        Ok(())
    }

    /// Writes the state of key group `group`.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::GroupTwice`] if the group was written already; [`SnapshotError::Group`]
    /// if serde refuses the value.
    pub fn group<T: Serialize + ?Sized>(
        &mut self,
        group: u32,
        value: &T,
    ) -> Result<(), SnapshotError> {
        if self.snapshot.groups.contains_key(&group) {
            return Err(SnapshotError::GroupTwice(group));
        }
        let bytes = encode(value).map_err(|source| SnapshotError::Group { group, source })?;
        self.snapshot.groups.insert(group, bytes);
        Ok(())
    }

    /// Writes `entries` as one list per key group: each entry with the group of its key, as
    /// `(group, entry)`. A group's list restores as a `Vec` of the entry's owned form (an entry
    /// of references `(&K, &V)` reads back as `(K, V)`).
    ///
    /// # Errors
    ///
    /// As [`group`](Self::group).
    pub fn keyed<E: Serialize>(
        &mut self,
        entries: impl IntoIterator<Item = (u32, E)>,
    ) -> Result<(), SnapshotError> {
        let mut by_group: BTreeMap<u32, Vec<E>> = BTreeMap::new();
        for (group, entry) in entries {
            by_group.entry(group).or_default().push(entry);
        }
        for (group, entries) in by_group {
            self.group(group, &entries)?;
        }
        Ok(())
    }

    /// The snapshot written.
    pub fn finish(self) -> Snapshot {
        self.snapshot
    }
}

/// Decodes a key group's blob (as written by [`SnapshotOut::group`] or
/// [`SnapshotOut::keyed`]).
///
/// # Errors
///
/// [`SnapshotError::Group`] if the bytes are not a `T`.
pub fn decode_group<T: serde::de::DeserializeOwned>(
    group: u32,
    bytes: &[u8],
) -> Result<T, SnapshotError> {
    decode(bytes).map_err(|source| SnapshotError::Group { group, source })
}

/// Decodes an instance blob (as written by [`SnapshotOut::instance`]).
///
/// # Errors
///
/// [`SnapshotError::Instance`] if the bytes are not a `T`.
pub fn decode_instance<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    decode(bytes).map_err(SnapshotError::Instance)
}

/// State an operator instance writes into a checkpoint and reads back, split by key group
/// (see the [module docs](self)).
///
/// A snapshot is taken between calls (at a barrier), never during one; a restore happens on a
/// fresh instance before its first input. [`restore`] calls the restore methods in the right
/// order for an instance that owns a range of key groups.
pub trait KeyedSnapshot {
    /// Writes the instance's state: [`SnapshotOut::group`] (or [`keyed`](SnapshotOut::keyed))
    /// for each key group that holds state, [`SnapshotOut::instance`] for state of no key.
    ///
    /// # Errors
    ///
    /// A [`SnapshotError`] if the state cannot be encoded or the operator cannot be
    /// snapshotted now ([`SnapshotError::Ended`]).
    fn snapshot(&self, out: &mut SnapshotOut) -> Result<(), SnapshotError>;

    /// Adds the state of key group `group`, as one old instance wrote it, to this instance.
    /// Called once per old snapshot that holds the group; mergeable state merges.
    ///
    /// # Errors
    ///
    /// A [`SnapshotError`] if the bytes do not decode, the state would pass the instance's
    /// bound, or a key that does not merge is met twice.
    fn restore_group(&mut self, group: u32, bytes: &[u8]) -> Result<(), SnapshotError>;

    /// Adds one old instance's instance state (its watermark, its timers' clock). Called once
    /// per old snapshot this instance reads, before its groups; the operator combines them as
    /// its docs say.
    ///
    /// # Errors
    ///
    /// A [`SnapshotError`] if the bytes do not decode.
    fn restore_instance(&mut self, bytes: &[u8]) -> Result<(), SnapshotError>;
}

/// Restores `op`, the new owner of key groups `groups`, from the snapshots of every old
/// instance: the instance state of each (so an instance that receives no group still learns
/// the watermark), then each group from **every** snapshot that holds it — so partials of a split key, held by instances that
/// did not own its group, merge into the new owner.
///
/// # Errors
///
/// The first [`SnapshotError`] of the operator's restore methods.
pub fn restore<O: KeyedSnapshot + ?Sized>(
    op: &mut O,
    old: &[Snapshot],
    groups: Range<u32>,
) -> Result<(), SnapshotError> {
    for snap in old {
        if let Some(bytes) = snap.instance() {
            op.restore_instance(bytes)?;
        }
    }
    for snap in old {
        for (group, bytes) in snap.groups.range(groups.clone()) {
            op.restore_group(*group, bytes)?;
        }
    }
    Ok(())
}

/// Writes `op`'s state into a checkpoint, for [`Operator::snapshot`](weir_runtime::Operator::snapshot):
/// its instance state as the instance-wide bytes, each key group's blob under its group, keys
/// filed by `grouping` (that of the keyed edge in front of the operator).
///
/// # Errors
///
/// A user error if `grouping` has another number of key groups than the checkpoint's maximum
/// parallelism (their groups would not be the runtime's), or the operator's
/// [`SnapshotError`].
pub fn write_checkpoint<O: KeyedSnapshot + ?Sized>(
    op: &O,
    grouping: KeyGrouping,
    state: &mut SnapshotWriter,
) -> Result<(), OperatorError> {
    let groups = grouping.groups().count();
    if groups != state.max_parallelism() as usize {
        return Err(OperatorError::user(format!(
            "keys are filed in {groups} key groups but checkpoints in {}: set the checkpoint \
             config's `max_parallelism` to the keyed stream's `key_groups`",
            state.max_parallelism()
        )));
    }
    let mut out = SnapshotOut::new(grouping);
    op.snapshot(&mut out)
        .map_err(|e| OperatorError::user(format!("snapshotting its state: {e}")))?;
    let snap = out.finish();
    if let Some(bytes) = snap.instance {
        state.put_instance(bytes);
    }
    for (group, bytes) in snap.groups {
        state.put_group(group, bytes);
    }
    Ok(())
}

/// Restores `op` from what the runtime hands it, for
/// [`Operator::restore`](weir_runtime::Operator::restore): the instance state of each old
/// instance whose range met its own, then every key group of its range from **every** old
/// instance that wrote it (so a split key's partials merge on the group's owner, see the
/// [module docs](self)).
///
/// # Errors
///
/// A user error carrying the operator's [`SnapshotError`].
pub fn read_checkpoint<O: KeyedSnapshot + ?Sized>(
    op: &mut O,
    state: &SnapshotReader,
) -> Result<(), OperatorError> {
    let fail = |e: SnapshotError| OperatorError::user(format!("restoring its state: {e}"));
    for bytes in state.instance_states() {
        op.restore_instance(bytes).map_err(fail)?;
    }
    for (group, bytes) in state.groups() {
        op.restore_group(group, bytes).map_err(fail)?;
    }
    Ok(())
}

/// How an operator whose state types may not be serializable writes and reads checkpoints:
/// set where the types are known to be (the stream builders, which require serde for the
/// state they build), absent otherwise. An operator holding `Some` answers
/// [`can_snapshot`](weir_runtime::Operator::can_snapshot) with `true` and snapshots through
/// its [`KeyedSnapshot`] impl, keys filed by the grouping of the keyed edge in front of it.
pub struct SnapshotHooks<O: ?Sized> {
    grouping: KeyGrouping,
    write: fn(&O, KeyGrouping, &mut SnapshotWriter) -> Result<(), OperatorError>,
    read: fn(&mut O, &SnapshotReader) -> Result<(), OperatorError>,
}

impl<O: ?Sized> Clone for SnapshotHooks<O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O: ?Sized> Copy for SnapshotHooks<O> {}

impl<O: ?Sized> std::fmt::Debug for SnapshotHooks<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotHooks")
            .field("grouping", &self.grouping)
            .finish_non_exhaustive()
    }
}

impl<O: KeyedSnapshot> SnapshotHooks<O> {
    /// Hooks filing keys by `grouping`.
    pub fn new(grouping: KeyGrouping) -> Self {
        Self {
            grouping,
            write: |op, grouping, state| write_checkpoint(op, grouping, state),
            read: |op, state| read_checkpoint(op, state),
        }
    }
}

impl<O: ?Sized> SnapshotHooks<O> {
    /// Writes `op`'s state ([`write_checkpoint`]).
    ///
    /// # Errors
    ///
    /// As [`write_checkpoint`].
    pub fn snapshot(self, op: &O, state: &mut SnapshotWriter) -> Result<(), OperatorError> {
        (self.write)(op, self.grouping, state)
    }

    /// Restores `op` ([`read_checkpoint`]).
    ///
    /// # Errors
    ///
    /// As [`read_checkpoint`].
    pub fn restore(self, op: &mut O, state: &SnapshotReader) -> Result<(), OperatorError> {
        (self.read)(op, state)
    }
}

/// The three checkpoint methods of an operator that keeps its [`SnapshotHooks`] in the field
/// `$field`, for its `Operator` impl.
macro_rules! snapshot_hooks {
    ($field:ident) => {
        fn can_snapshot(&self) -> bool {
            self.$field.is_some()
        }

        fn snapshot(
            &mut self,
            state: &mut weir_runtime::checkpoint::SnapshotWriter,
        ) -> Result<(), weir_runtime::OperatorError> {
            match self.$field {
                Some(hooks) => hooks.snapshot(self, state),
                None => Ok(()),
            }
        }

        fn restore(
            &mut self,
            state: &weir_runtime::checkpoint::SnapshotReader,
        ) -> Result<(), weir_runtime::OperatorError> {
            match self.$field {
                Some(hooks) => hooks.restore(self, state),
                None => Ok(()),
            }
        }
    };
}
pub(crate) use snapshot_hooks;
