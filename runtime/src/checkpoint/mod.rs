//! Checkpoints: the state encoding of snapshots, and the key groups that let keyed state move
//! to another parallelism.
//!
//! [`encode`] / [`decode`] turn a serde value into a snapshot's bytes and back (a versioned
//! header and postcard's compact encoding). [`KeyGroupRange`] and [`restore_sources`] say which
//! key groups an instance owns and, after a change of parallelism, which old instances'
//! snapshots hold them.

mod codec;
mod key_groups;

pub use codec::{decode, encode, encode_into, StateCodecError, STATE_FORMAT_VERSION};
pub use key_groups::{
    restore_sources, KeyGroupError, KeyGroupRange, RestoreSource, MAX_KEY_GROUPS,
};
