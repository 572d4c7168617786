//! Sources: where data enters a pipeline. Each is polled only when downstream has granted credit.

mod generator;
mod iter;
mod stream;

pub use generator::Generator;
pub use iter::IterSource;
pub use stream::AsyncSource;
