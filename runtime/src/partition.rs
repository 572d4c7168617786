//! Custom partitioning: how a producer instance spreads a batch over the consumer's instances.
//!
//! The built-in [`Partitioning`](crate::Partitioning) schemes (forward, rebalance, broadcast)
//! need no code; anything keyed — hashing, partial key grouping, hot-key splitting — implements
//! [`Partitioner`] and is attached to a stream with
//! [`StreamCore::partition_with`](crate::StreamCore::partition_with).
//!
//! A partitioned edge waits only for the targets that received data: the pieces of a batch are
//! sent to their targets as credit allows, and the producer holds the rest (at most one batch's
//! worth) until those targets grant credit.

use crate::batch::Batch;

/// The load of one consumer instance as its producer sees it, read just before a batch is split.
///
/// `credit` is the edge's outstanding credit in messages (more credit: less loaded);
/// `buffered_bytes` what the edge holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetLoad {
    /// Messages the producer may still send before the consumer grants more.
    pub credit: usize,
    /// Data bytes waiting in the edge.
    pub buffered_bytes: usize,
    /// Whether the consumer has gone away.
    pub closed: bool,
}

/// Splits batches over the instances of the consuming operator.
///
/// One partitioner is built per producer instance (so it may keep local state, such as rows sent
/// per target, without synchronisation).
///
/// # Examples
///
/// ```
/// use weir_runtime::partition::{Partitioner, TargetLoad};
///
/// /// Even numbers to target 0, odd to target 1.
/// struct Parity;
/// impl Partitioner<Vec<u64>> for Parity {
///     fn partition(&mut self, batch: Vec<u64>, loads: &[TargetLoad], out: &mut Vec<(usize, Vec<u64>)>) {
///         let (even, odd): (Vec<u64>, Vec<u64>) = batch.into_iter().partition(|x| x % 2 == 0);
///         out.push((0, even));
///         out.push((1 % loads.len(), odd));
///     }
/// }
/// let mut p = Parity;
/// let mut out = Vec::new();
/// p.partition(vec![1, 2, 3], &[TargetLoad::default(); 2], &mut out);
/// assert_eq!(out, vec![(0, vec![2]), (1, vec![1, 3])]);
/// ```
pub trait Partitioner<B: Batch>: Send + 'static {
    /// Splits `batch` into pieces `(target, piece)` with `target < loads.len()`. Every row must
    /// land in exactly one piece; empty pieces are skipped by the executor.
    fn partition(&mut self, batch: B, loads: &[TargetLoad], out: &mut Vec<(usize, B)>);
}

/// Builds the partitioner of one producer instance: `(producer_instance, targets)`.
pub type PartitionerFactory<B> =
    std::sync::Arc<dyn Fn(usize, usize) -> Box<dyn Partitioner<B>> + Send + Sync>;
