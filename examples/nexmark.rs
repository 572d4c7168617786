//! Nexmark q5 (hot items) on generated events, built by hand: the generator as a parallel
//! source, event time from each event's `dateTime` with watermarks a bounded delay behind, the
//! query from the workloads crate, and its rows collected.
//!
//! ```text
//! cargo run --release --example nexmark [-- --events N --parallelism P --hot-auction-ratio R]
//! ```
//!
//! Every other query is built the same way (`queries::qN::build(events, &opts)`); `weir nexmark
//! --query N` runs any of them with the late filter, an NDJSON output and the figures.

use std::time::Duration;

use clap::Parser;
use mimalloc::MiMalloc;
use weir::prelude::*;
use weir::runtime::WatermarkStrategy;
use weir_workloads::nexmark::io::GeneratorSource;
use weir_workloads::nexmark::queries::{event_time, q5, QueryOptions};
use weir_workloads::nexmark::GeneratorConfig;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// Hot items over generated Nexmark events.
#[derive(Parser, Debug)]
struct Args {
    /// Events to generate.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Events per second of event time (low enough that many 10 s windows close).
    #[arg(long, default_value_t = 100_000)]
    event_rate: u64,
    /// Instances of the generator and of each stage.
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// One bid in `1 − 1/R` goes to the hot auction of the moment.
    #[arg(long, default_value_t = 2)]
    hot_auction_ratio: u64,
}

fn main() -> Result<(), RunError> {
    let args = Args::parse();
    let generator = GeneratorConfig {
        events: args.events,
        event_rate: args.event_rate,
        hot_auction_ratio: args.hot_auction_ratio,
        ..GeneratorConfig::default()
    };
    let opts = QueryOptions {
        parallelism: args.parallelism,
        max_delay_ms: 4_000,
    };
    let mut p = Pipeline::with_config(
        "nexmark-q5",
        PipelineConfig {
            workers: Some(args.parallelism),
            ..PipelineConfig::default()
        },
    );
    // Each instance generates its share of the events (numbers i, i + P, …).
    let events = p
        .source_with("events", move |_| GeneratorSource::new(generator.clone()))
        .parallelism(args.parallelism)
        .with_watermarks(
            // The generator delays events by at most 3 s: with a 4 s bound none is late.
            WatermarkStrategy::bounded(Duration::from_millis(opts.max_delay_ms as u64))
                .timestamps(event_time),
        );
    let hot = q5::build(events, &opts).collect("hot-items");
    let report = p.run()?;
    println!("{report}");
    let mut rows = hot.take().unwrap_or_default();
    rows.sort_by_key(|r| (r.window_start, r.auction));
    println!("{} (window, auction) rows; the first windows:", rows.len());
    for r in rows.iter().take(8) {
        println!(
            "  [{}, {}) auction {} with {} bids",
            r.window_start, r.window_end, r.auction, r.num
        );
    }
    Ok(())
}
