//! The demo job: generated orders, filtered and mapped, fanned out into a sum and a count, with
//! an optional rate-limited sink to show backpressure.

use weir_operators::prelude::*;
use weir_runtime::SinkHandle;

/// A generated order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, HeapSize)]
pub struct Order {
    /// Order number.
    pub id: u64,
    /// Amount in cents.
    pub cents: u64,
}

/// Handles to the demo job's results.
#[derive(Debug)]
pub struct DemoResults {
    /// Sum of the cents of big orders.
    pub sum: SinkHandle<u64>,
    /// Number of big orders.
    pub count: SinkHandle<u64>,
}

/// Builds the demo pipeline over `records` generated orders. With `sink_rate`, the count sink
/// takes at most that many rows per second, and the whole pipeline follows it.
pub fn demo(records: u64, sink_rate: Option<f64>) -> (Pipeline, DemoResults) {
    let mut p = Pipeline::new("demo");
    let orders = p.source(
        "gen",
        Generator::new(records, |i| Order {
            id: i,
            cents: i % 9_973,
        }),
    );
    let big = orders.filter("big", |o| o.cents > 5_000);
    let cents = big.map("cents", |o| o.cents);
    let sum = cents.clone().fold("sum", 0u64, |acc, c| acc + c);
    let count = match sink_rate {
        Some(rate) => cents.sink("count", Throttle::new(Count::new(), rate)),
        None => cents.count("count"),
    };
    (p, DemoResults { sum, count })
}
