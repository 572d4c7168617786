//! The simple sinks: fold, count, for-each, collect, discard.
//!
//! Each hands the batches it emptied back to their producer ([`Sink::take_spare`]), so a
//! pipeline ending in one of them allocates no batch per batch once it runs steadily.

use weir_runtime::{Batch, Data, InputPort, OperatorError, Sink};

/// Folds every row into an accumulator, yielded at the end of the run.
///
/// # Examples
///
/// ```
/// use weir_operators::prelude::*;
///
/// let mut p = Pipeline::new("fold");
/// let max = p.source("n", Generator::new(100, |i| i)).sink("max", Fold::new(0u64, |m: u64, x| m.max(x)));
/// p.run()?;
/// assert_eq!(max.take(), Some(99));
/// # Ok::<(), weir_runtime::RunError>(())
/// ```
pub struct Fold<T, A, F> {
    acc: Option<A>,
    f: F,
    spare: Option<Vec<T>>,
    _rows: std::marker::PhantomData<fn(T)>,
}

impl<T, A, F> std::fmt::Debug for Fold<T, A, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fold").finish_non_exhaustive()
    }
}

impl<T, A, F> Fold<T, A, F> {
    /// Starts from `init`.
    pub fn new(init: A, f: F) -> Self {
        Self {
            acc: Some(init),
            f,
            spare: None,
            _rows: std::marker::PhantomData,
        }
    }
}

impl<T, A, F> Sink for Fold<T, A, F>
where
    T: Data,
    A: Send + 'static,
    F: FnMut(A, T) -> A + Send + 'static,
{
    type Input = Vec<T>;
    type Output = A;

    fn on_batch(&mut self, _: InputPort, mut batch: Vec<T>) -> Result<(), OperatorError> {
        let acc = self
            .acc
            .take()
            .ok_or_else(|| OperatorError::internal("fold used after finish"))?;
        self.acc = Some(batch.drain(..).fold(acc, &mut self.f));
        self.spare = Some(batch);
        Ok(())
    }

    fn take_spare(&mut self) -> Option<Vec<T>> {
        self.spare.take()
    }

    fn finish(&mut self) -> Result<A, OperatorError> {
        self.acc
            .take()
            .ok_or_else(|| OperatorError::internal("fold finished twice"))
    }
}

/// Counts rows of any batch type.
#[derive(Debug, Default)]
pub struct Count<B = ()> {
    rows: u64,
    spare: Option<B>,
    _b: std::marker::PhantomData<fn() -> B>,
}

impl<B> Count<B> {
    /// A counter at zero.
    pub fn new() -> Self {
        Self {
            rows: 0,
            spare: None,
            _b: std::marker::PhantomData,
        }
    }
}

impl<B: Batch> Sink for Count<B> {
    type Input = B;
    type Output = u64;

    fn on_batch(&mut self, _: InputPort, batch: B) -> Result<(), OperatorError> {
        self.rows += batch.rows() as u64;
        self.spare = Some(batch);
        Ok(())
    }

    fn take_spare(&mut self) -> Option<B> {
        self.spare.take()
    }

    fn finish(&mut self) -> Result<u64, OperatorError> {
        Ok(self.rows)
    }
}

/// Drops every batch, counting rows (for benchmarks, and to consume a stream on purpose).
pub type Discard<B = ()> = Count<B>;

/// Calls a function on every row.
pub struct ForEach<T, F> {
    f: F,
    spare: Option<Vec<T>>,
    _rows: std::marker::PhantomData<fn(T)>,
}

impl<T, F> std::fmt::Debug for ForEach<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForEach").finish_non_exhaustive()
    }
}

impl<T, F> ForEach<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            spare: None,
            _rows: std::marker::PhantomData,
        }
    }
}

impl<T, F> Sink for ForEach<T, F>
where
    T: Data,
    F: FnMut(T) + Send + 'static,
{
    type Input = Vec<T>;
    type Output = ();

    fn on_batch(&mut self, _: InputPort, mut batch: Vec<T>) -> Result<(), OperatorError> {
        batch.drain(..).for_each(&mut self.f);
        self.spare = Some(batch);
        Ok(())
    }

    fn take_spare(&mut self) -> Option<Vec<T>> {
        self.spare.take()
    }

    fn finish(&mut self) -> Result<(), OperatorError> {
        Ok(())
    }
}

/// Collects rows into a `Vec`, up to a limit: past it the run fails with an error naming the
/// sink, rather than let memory grow without bound.
#[derive(Debug)]
pub struct Collect<T> {
    rows: Vec<T>,
    limit: usize,
    spare: Option<Vec<T>>,
}

impl<T> Default for Collect<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Collect<T> {
    /// The limit used by [`Collect::new`]: 16 Mi rows.
    pub const DEFAULT_LIMIT: usize = 16 << 20;

    /// A collector with the default limit.
    pub fn new() -> Self {
        Self::with_limit(Self::DEFAULT_LIMIT)
    }

    /// A collector of at most `limit` rows.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            rows: Vec::new(),
            limit,
            spare: None,
        }
    }
}

impl<T: Data> Sink for Collect<T> {
    type Input = Vec<T>;
    type Output = Vec<T>;

    fn on_batch(&mut self, _: InputPort, batch: Vec<T>) -> Result<(), OperatorError> {
        if self.rows.len() + batch.len() > self.limit {
            return Err(OperatorError::user(format!(
                "collect limit of {} rows exceeded; raise it with `Collect::with_limit` or use a \
                 streaming sink",
                self.limit
            )));
        }
        if self.rows.is_empty() {
            self.rows = batch;
        } else {
            let mut batch = batch;
            self.rows.append(&mut batch);
            self.spare = Some(batch);
        }
        Ok(())
    }

    fn take_spare(&mut self) -> Option<Vec<T>> {
        self.spare.take()
    }

    fn finish(&mut self) -> Result<Vec<T>, OperatorError> {
        Ok(std::mem::take(&mut self.rows))
    }
}
