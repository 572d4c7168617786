//! Sources: where data enters a pipeline. Each is polled only when downstream has granted credit.

mod generator;
mod iter;
mod rewind;
mod stream;

pub use generator::Generator;
pub use iter::IterSource;
pub use rewind::{decode_position, encode_position, Rewind};
pub use stream::AsyncSource;
