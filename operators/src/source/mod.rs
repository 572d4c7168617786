//! Sources: where data enters a pipeline. Each is polled only when downstream has granted credit.

mod generator;
mod iter;
mod stream;

pub use generator::Generator;
pub use iter::IterSource;
pub use stream::AsyncSource;

/// Rows a source allocates room for before it fills a batch: the batch size, but never more
/// than 1 MiB of rows up front (a batch size far beyond its data must not allocate for it; a
/// batch that does fill grows as it goes).
pub(crate) fn preallocate<T>(batch_rows: usize) -> usize {
    const MAX_BYTES: usize = 1 << 20;
    batch_rows.min(MAX_BYTES / size_of::<T>().max(1))
}
