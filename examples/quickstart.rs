//! The quickstart: generated orders, filtered and mapped, fanned out into a sum and a count.
//!
//! ```text
//! cargo run --release --example quickstart [-- --records N]
//! ```
//!
//! Ctrl-C or SIGTERM stops the source; the pipeline drains, prints its report, and the exit
//! code (130 / 143) says it was stopped.

use std::process::ExitCode;

use clap::Parser;
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

#[derive(Parser)]
#[command(about = "Generated orders, filtered and mapped, fanned out into a sum and a count")]
struct Args {
    /// Orders to generate.
    #[arg(long, visible_alias = "rows", default_value_t = 10_000_000)]
    records: u64,
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    let interrupts = weir::interrupt::install()?;
    let mut p = Pipeline::new("orders");
    let orders = p.source(
        "gen",
        Generator::new(args.records, |i| Order {
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

    // Blocks until the run ends (`p.run()` without the signal handler; `run_async().await`
    // inside tokio).
    let (report, stopped_by) = interrupts.run(p)?;
    println!("{report}");
    println!(
        "big orders: {}, total cents: {}",
        count.take().unwrap_or_default(),
        sum.take().unwrap_or_default()
    );
    if let Some(signal) = stopped_by {
        println!("stopped by {signal}: the totals cover the orders read until then");
    }
    Ok(weir::interrupt::exit_code(stopped_by))
}
