//! The row-wise operators behind [`StreamExt`](super::StreamExt).

use std::marker::PhantomData;

use weir_runtime::{Data, InputPort, Operator, OperatorError, Output};

macro_rules! fn_debug {
    ($name:ident) => {
        impl<T, F> std::fmt::Debug for $name<T, F> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

/// Applies a function to every row.
pub struct Map<T, F> {
    f: F,
    _rows: PhantomData<fn(T)>,
}
fn_debug!(Map);

impl<T, F> Map<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _rows: PhantomData,
        }
    }
}

impl<T, U, F> Operator for Map<T, F>
where
    T: Data,
    U: Data,
    F: FnMut(T) -> U + Send + 'static,
{
    type Input = Vec<T>;
    type Output = Vec<U>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        // Collecting a mapped `vec::IntoIter` reuses the allocation when the layouts allow.
        out.emit(batch.into_iter().map(&mut self.f).collect());
        Ok(())
    }
}

/// Keeps the rows a predicate accepts, in place.
pub struct Filter<T, F> {
    f: F,
    _rows: PhantomData<fn(T)>,
}
fn_debug!(Filter);

impl<T, F> Filter<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _rows: PhantomData,
        }
    }
}

impl<T, F> Operator for Filter<T, F>
where
    T: Data,
    F: FnMut(&T) -> bool + Send + 'static,
{
    type Input = Vec<T>;
    type Output = Vec<T>;

    fn on_batch(
        &mut self,
        _: InputPort,
        mut batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        batch.retain(&mut self.f);
        out.emit(batch);
        Ok(())
    }
}

/// Maps and filters in one pass.
pub struct FilterMap<T, F> {
    f: F,
    _rows: PhantomData<fn(T)>,
}
fn_debug!(FilterMap);

impl<T, F> FilterMap<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _rows: PhantomData,
        }
    }
}

impl<T, U, F> Operator for FilterMap<T, F>
where
    T: Data,
    U: Data,
    F: FnMut(T) -> Option<U> + Send + 'static,
{
    type Input = Vec<T>;
    type Output = Vec<U>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        out.emit(batch.into_iter().filter_map(&mut self.f).collect());
        Ok(())
    }
}

/// Replaces each row by zero or more rows, re-batched to the pipeline's batch size.
pub struct FlatMap<T, F> {
    f: F,
    _rows: PhantomData<fn(T)>,
}
fn_debug!(FlatMap);

impl<T, F> FlatMap<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _rows: PhantomData,
        }
    }
}

impl<T, U, I, F> Operator for FlatMap<T, F>
where
    T: Data,
    U: Data,
    I: IntoIterator<Item = U>,
    F: FnMut(T) -> I + Send + 'static,
{
    type Input = Vec<T>;
    type Output = Vec<U>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<U>>,
    ) -> Result<(), OperatorError> {
        for row in batch {
            out.extend((self.f)(row));
        }
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output<Vec<U>>) -> Result<(), OperatorError> {
        out.flush();
        Ok(())
    }
}

/// Observes every row without changing it.
pub struct Inspect<T, F> {
    f: F,
    _rows: PhantomData<fn(T)>,
}
fn_debug!(Inspect);

impl<T, F> Inspect<T, F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self {
            f,
            _rows: PhantomData,
        }
    }
}

impl<T, F> Operator for Inspect<T, F>
where
    T: Data,
    F: FnMut(&T) + Send + 'static,
{
    type Input = Vec<T>;
    type Output = Vec<T>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        batch.iter().for_each(&mut self.f);
        out.emit(batch);
        Ok(())
    }
}

/// Passes batches from any number of inputs through, in the order they are taken.
pub struct Union<T> {
    _rows: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Union<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Union")
    }
}

impl<T> Default for Union<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Union<T> {
    /// A union operator.
    pub fn new() -> Self {
        Self { _rows: PhantomData }
    }
}

impl<T: Data> Operator for Union<T> {
    type Input = Vec<T>;
    type Output = Vec<T>;

    fn on_batch(
        &mut self,
        _: InputPort,
        batch: Vec<T>,
        out: &mut Output<Vec<T>>,
    ) -> Result<(), OperatorError> {
        out.emit(batch);
        Ok(())
    }
}
