//! The user-facing builder: a [`Pipeline`] of named operators connected by typed streams.
//!
//! - `builder`: [`Pipeline`], where sources are added and runs start;
//! - `stream`: [`StreamCore`], the typed stream handle and the generic wiring on it;
//! - `handle`: [`RunHandle`] and [`SinkHandle`], what a run gives back;
//! - `draft`: the graph under construction that a pipeline and its streams share.
//!
//! The top rung of the runtime's ladder: it hands the logical graph and each node's runner to
//! the executor.

mod builder;
mod draft;
mod handle;
mod stream;

pub use builder::Pipeline;
pub use handle::{RunHandle, SinkHandle};
pub use stream::{Stream, StreamCore};
