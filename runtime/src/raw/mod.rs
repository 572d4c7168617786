//! The only module in weir that contains `unsafe` code.
//!
//! Two primitives live here, each small enough to be model-checked exhaustively with loom:
//!
//! - [`ring`]: a single-producer / single-consumer ring of slots whose free space is handed to the
//!   producer as *credit* by the consumer (the Reactive-Streams `request(n)` of an edge);
//! - [`waker`]: an atomic waker cell, so each side of an edge can park and be woken without a lock.
//!
//! Everything above this module (bytes accounting, close flags, the demand protocol's wake-up
//! rules) is safe code in [`crate::channel`].
#![allow(unsafe_code)]

pub(crate) mod ring;
pub(crate) mod waker;
