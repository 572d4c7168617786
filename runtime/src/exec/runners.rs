//! The typed side of type erasure: one runner per operator position knows its batch types and
//! turns erased wiring back into typed inlets and outlets.

use std::sync::{Arc, Mutex};

use crate::batch::Batch;
use crate::channel::{Inlet, Outlet};
use crate::dead_letter::DeadLetter;
use crate::error::OperatorError;
use crate::event_time::WatermarkStrategy;
use crate::exec::chain::{Chained, Downstream};
use crate::exec::checkpoint::Checkpoints;
use crate::exec::driver::{self, DriverCtx};
use crate::exec::inputs::Inputs;
use crate::exec::lossy::LossyEdge;
use crate::exec::outputs::{DeadPort, OutEdge, Outputs, Ports};
use crate::exec::source_time::{NoClock, SourceTime};
use crate::exec::{InstanceFuture, Runner};
use crate::metrics::InstanceMetrics;
use crate::operator::InstanceInfo as Info;
use crate::operator::{InstanceInfo, Operator, Sink, Source};
use crate::overflow::SpillCodec;
use crate::partition::PartitionerFactory;
use crate::plan::{make_edge_of, AnyBox, EdgeMaker, OutWiring, Wiring};

/// Builds one operator value per instance.
pub(crate) type Factory<T> = Box<dyn FnMut(&InstanceInfo) -> Result<T, OperatorError> + Send>;

/// A factory for an operator given as one value: it can build exactly one instance.
pub(crate) fn single<T: Send + 'static>(name: &str, value: T) -> Factory<T> {
    let mut value = Some(value);
    let name = name.to_string();
    Box::new(move |_info| {
        value.take().ok_or_else(|| {
            OperatorError::user(format!(
                "`{name}` was given as a single value, so it can run only one instance; \
                 build it from a factory (the `_with` constructors) to run it in parallel"
            ))
        })
    })
}

fn typed_inputs<B: Batch>(wiring: &mut Wiring) -> Result<Inputs<B>, OperatorError> {
    let codecs = std::mem::take(&mut wiring.codecs)
        .into_iter()
        .map(|(port, any)| {
            any.downcast_ref::<Arc<dyn SpillCodec<B>>>()
                .cloned()
                .map(|c| (port, c))
                .ok_or_else(|| OperatorError::internal("codec of the wrong type"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = std::mem::take(&mut wiring.inputs);
    let inlets = inputs
        .into_iter()
        .map(|(port, any, origins)| {
            any.downcast::<Inlet<B>>()
                .map(|inlet| (port, *inlet, origins))
                .map_err(|_| OperatorError::internal("input edge of the wrong type"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut inputs = Inputs::with_origins(inlets);
    inputs.carry_checkpoints(&std::mem::take(&mut wiring.dead_inputs));
    inputs.set_codecs(&codecs);
    Ok(inputs)
}

fn typed_outputs<B: Batch>(
    wiring_outputs: Vec<OutWiring>,
    instance: usize,
    clone_fn: Option<&AnyBox>,
    metrics: Arc<crate::metrics::InstanceMetrics>,
) -> Result<Outputs<B>, OperatorError> {
    let mut edges = Vec::with_capacity(wiring_outputs.len());
    for OutWiring {
        partitioning,
        outlets,
        partitioner,
        overflow,
    } in wiring_outputs
    {
        let targets = outlets.len();
        let partitioner = match partitioner {
            None => None,
            Some(any) => {
                let factory = any
                    .downcast_ref::<PartitionerFactory<B>>()
                    .ok_or_else(|| OperatorError::internal("partitioner of the wrong type"))?;
                Some(factory(instance, targets))
            }
        };
        let outlets = outlets
            .into_iter()
            .map(|any| {
                any.downcast::<Outlet<B>>()
                    .map(|o| *o)
                    .map_err(|_| OperatorError::internal("output edge of the wrong type"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut edge = OutEdge::new(partitioning, outlets, partitioner);
        if let Some(o) = overflow {
            let codec = match o.codec {
                None => None,
                Some(any) => Some(
                    any.downcast_ref::<Arc<dyn SpillCodec<B>>>()
                        .cloned()
                        .ok_or_else(|| OperatorError::internal("spill codec of the wrong type"))?,
                ),
            };
            let lossy = LossyEdge::new(&o.policy, edge.bounds(), codec, &o.spill_dirs)?;
            edge.set_lossy(lossy);
        }
        edges.push(edge);
    }
    let clone = clone_fn.and_then(|f| f.downcast_ref::<fn(&B) -> B>().copied());
    if edges.len() > 1 && clone.is_none() {
        return Err(OperatorError::internal(
            "a stream with several consumers was not registered as cloneable",
        ));
    }
    Ok(Outputs::new(edges, clone, metrics))
}

fn erased_down<B: Batch>(down: AnyBox) -> Result<Box<dyn Downstream<B>>, OperatorError> {
    down.downcast::<Box<dyn Downstream<B>>>()
        .map(|d| *d)
        .map_err(|_| OperatorError::internal("chained downstream of the wrong type"))
}

fn typed_ports<B: Batch>(
    wiring: &mut Wiring,
    clone_fn: Option<&AnyBox>,
) -> Result<Ports<B>, OperatorError> {
    let main = typed_outputs::<B>(
        std::mem::take(&mut wiring.outputs),
        wiring.info.instance,
        clone_fn,
        wiring.metrics.clone(),
    )?;
    Ok(Ports::new(main, dead_port(wiring)?))
}

fn dead_port(wiring: &mut Wiring) -> Result<DeadPort, OperatorError> {
    let dead = std::mem::take(&mut wiring.dead_outputs);
    let outs = if dead.is_empty() {
        None
    } else {
        let clone: AnyBox =
            Box::new(<Vec<DeadLetter> as Clone>::clone as fn(&Vec<DeadLetter>) -> Vec<DeadLetter>);
        Some(typed_outputs::<Vec<DeadLetter>>(
            dead,
            wiring.info.instance,
            Some(&clone),
            wiring.metrics.clone(),
        )?)
    };
    Ok(DeadPort::new(outs, wiring.metrics.clone()))
}

pub(crate) struct SourceRunner<S: Source> {
    pub(crate) factory: Factory<S>,
    pub(crate) watermarks: Option<WatermarkStrategy<S::Output>>,
}

impl<S: Source> SourceRunner<S> {
    fn event_time(&self, ctx: &DriverCtx) -> Option<SourceTime<S::Output>> {
        self.watermarks
            .as_ref()
            .map(|s| SourceTime::new(s, &ctx.align, ctx.metrics.clone()))
    }
}

impl<S: Source> Runner for SourceRunner<S> {
    fn edge_maker(&self) -> Option<EdgeMaker> {
        Some(make_edge_of::<S::Output>)
    }

    fn instantiate(
        &mut self,
        mut wiring: Wiring,
        ctx: DriverCtx,
        clone_fn: Option<&AnyBox>,
    ) -> Result<InstanceFuture, OperatorError> {
        let source = (self.factory)(&wiring.info)?;
        let outs = typed_ports::<S::Output>(&mut wiring, clone_fn)?;
        Ok(match self.event_time(&ctx) {
            Some(et) => Box::pin(driver::run_source(source, outs, ctx, et)),
            None => Box::pin(driver::run_source(source, outs, ctx, NoClock)),
        })
    }

    fn set_watermarks(&mut self, strategy: AnyBox) -> Result<(), AnyBox> {
        let strategy = strategy.downcast::<WatermarkStrategy<S::Output>>()?;
        self.watermarks = Some(*strategy);
        Ok(())
    }

    fn instantiate_head(
        &mut self,
        wiring: Wiring,
        ctx: DriverCtx,
        down: AnyBox,
    ) -> Result<InstanceFuture, OperatorError> {
        let source = (self.factory)(&wiring.info)?;
        let down = erased_down::<S::Output>(down)?;
        Ok(match self.event_time(&ctx) {
            Some(et) => Box::pin(driver::run_source(source, down, ctx, et)),
            None => Box::pin(driver::run_source(source, down, ctx, NoClock)),
        })
    }
}

pub(crate) struct OperatorRunner<O: Operator> {
    pub(crate) factory: Factory<O>,
}

impl<O: Operator> Runner for OperatorRunner<O> {
    fn edge_maker(&self) -> Option<EdgeMaker> {
        Some(make_edge_of::<O::Output>)
    }

    fn instantiate(
        &mut self,
        mut wiring: Wiring,
        ctx: DriverCtx,
        clone_fn: Option<&AnyBox>,
    ) -> Result<InstanceFuture, OperatorError> {
        let op = (self.factory)(&wiring.info)?;
        let inputs = typed_inputs::<O::Input>(&mut wiring)?;
        let outs = typed_ports::<O::Output>(&mut wiring, clone_fn)?;
        Ok(Box::pin(driver::run_operator(op, inputs, outs, ctx)))
    }

    fn ports(
        &mut self,
        wiring: &mut Wiring,
        clone_fn: Option<&AnyBox>,
    ) -> Result<AnyBox, OperatorError> {
        let ports = typed_ports::<O::Output>(wiring, clone_fn)?;
        let down: Box<dyn Downstream<O::Output>> = Box::new(ports);
        Ok(Box::new(down))
    }

    fn chain(
        &mut self,
        info: &Info,
        metrics: Arc<InstanceMetrics>,
        producer: Arc<InstanceMetrics>,
        down: AnyBox,
        checkpoints: Option<Arc<Checkpoints>>,
    ) -> Result<AnyBox, OperatorError> {
        let op = (self.factory)(info)?;
        let down = erased_down::<O::Output>(down)?;
        let chained: Box<dyn Downstream<O::Input>> = Box::new(Chained::new(
            op,
            info.clone(),
            down,
            metrics,
            producer,
            checkpoints,
        ));
        Ok(Box::new(chained))
    }

    fn instantiate_head(
        &mut self,
        mut wiring: Wiring,
        ctx: DriverCtx,
        down: AnyBox,
    ) -> Result<InstanceFuture, OperatorError> {
        let op = (self.factory)(&wiring.info)?;
        let inputs = typed_inputs::<O::Input>(&mut wiring)?;
        let down = erased_down::<O::Output>(down)?;
        Ok(Box::pin(driver::run_operator(op, inputs, down, ctx)))
    }
}

/// Where a sink's per-instance results go at the end of a run.
pub(crate) type ResultSlot<R> = Arc<Mutex<Vec<(usize, R)>>>;

pub(crate) struct SinkRunner<K: Sink> {
    pub(crate) factory: Factory<K>,
    pub(crate) results: ResultSlot<K::Output>,
}

impl<K: Sink> Runner for SinkRunner<K> {
    fn edge_maker(&self) -> Option<EdgeMaker> {
        None
    }

    fn instantiate(
        &mut self,
        mut wiring: Wiring,
        ctx: DriverCtx,
        _clone_fn: Option<&AnyBox>,
    ) -> Result<InstanceFuture, OperatorError> {
        let sink = (self.factory)(&wiring.info)?;
        let inputs = typed_inputs::<K::Input>(&mut wiring)?;
        let dead = dead_port(&mut wiring)?;
        let results = self.results.clone();
        let instance = wiring.info.instance;
        Ok(Box::pin(async move {
            let out = driver::run_sink(sink, inputs, dead, ctx).await?;
            results
                .lock()
                .map_err(|_| OperatorError::internal("sink result slot poisoned"))?
                .push((instance, out));
            Ok(())
        }))
    }
}
