//! The quickstart: generated orders, filtered and mapped, fanned out into a sum and a count.
//!
//! ```text
//! cargo run --release --example quickstart
//! ```

use mimalloc::MiMalloc;
use weir::prelude::*;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Clone, Copy, Debug, HeapSize)]
struct Order {
    #[allow(dead_code)]
    id: u64,
    cents: u64,
}

fn main() -> Result<(), RunError> {
    let mut p = Pipeline::new("orders");
    let orders = p.source(
        "gen",
        Generator::new(10_000_000, |i| Order {
            id: i,
            cents: i % 9_973,
        }),
    );
    let big = orders.filter("big", |o| o.cents > 5_000);
    let totals = big.map("cents", |o| o.cents);
    // Fan-out: both sinks see every row; the slower branch governs the pace.
    let sum = totals
        .clone()
        .sink("sum", Fold::new(0u64, |acc, c| acc + c));
    let count = totals.sink("count", Count::new());

    let report = p.run()?; // blocks; use `run_async().await` inside tokio
    println!("{report}");
    println!(
        "big orders: {}, total cents: {}",
        count.take().unwrap_or_default(),
        sum.take().unwrap_or_default()
    );
    Ok(())
}
