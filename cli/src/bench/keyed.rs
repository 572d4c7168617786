//! `weir bench keyed`: the hash exchange at parallelism 2 against the same pipeline with forward
//! edges, interleaved in one process.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use weir_workloads::bench::keyed::{self, Exchange};
use weir_workloads::bench::{median, rate};

use crate::{open_json, Error};

/// source → map → key_by(x).partitioned() → filter → sum against the same pipeline with
/// forward edges, at the same parallelism.
#[derive(Args)]
pub struct KeyedArgs {
    /// Rows per run.
    #[arg(long, visible_alias = "rows", default_value_t = 50_000_000)]
    pub records: u64,
    /// Instances of every operator but the sink (the chained reference runs at 1).
    #[arg(long, default_value_t = 2)]
    pub parallelism: usize,
    /// Rows per batch.
    #[arg(long, default_value_t = 1024)]
    pub batch_rows: usize,
    /// Runs per variant (interleaved); medians are reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Also run a partitioned edge that sends each batch whole to one instance (the hop's cost
    /// without hashing).
    #[arg(long)]
    pub local: bool,
    /// Only the keyed variant (for profilers: no other variant in the process).
    #[arg(long)]
    pub keyed_only: bool,
    /// Worker threads (default: cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write one JSON object per line here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the variants interleaved, prints medians and the keyed / forward ratio, and fails if a
/// sum differs from the fused loop's.
pub fn run(args: KeyedArgs) -> Result<(), Error> {
    let KeyedArgs {
        records,
        parallelism,
        batch_rows,
        runs,
        local,
        keyed_only,
        workers,
        json,
    } = args;
    let mut out = open_json(&json)?;
    let variants: Vec<Exchange> = if keyed_only {
        vec![Exchange::Keyed]
    } else {
        let mut v = vec![Exchange::Keyed, Exchange::Forward];
        if local {
            v.push(Exchange::Local);
        }
        v.push(Exchange::Chained);
        v
    };
    let want = keyed::expected(records);
    let mut times = vec![Vec::new(); variants.len()];
    for _ in 0..runs.max(1) {
        for (i, &exchange) in variants.iter().enumerate() {
            let (sum, t, _) = keyed::run(exchange, records, parallelism, batch_rows, workers)?;
            if weir::interrupt::received().is_some() {
                return Ok(());
            }
            if sum != want {
                return Err(format!(
                    "{}: sum {sum} differs from the fused loop's {want}",
                    exchange.name()
                )
                .into());
            }
            times[i].push(t);
        }
    }
    let rates: Vec<f64> = times
        .into_iter()
        .map(|t| rate(records, median(t)))
        .collect();
    let forward = variants
        .iter()
        .position(|&e| e == Exchange::Forward)
        .map(|i| rates[i]);
    println!(
        "{:>11} {:>12} {:>14} {:>12}",
        "exchange", "parallelism", "rows/s", "/ forward"
    );
    for (&exchange, &r) in variants.iter().zip(&rates) {
        let p = if exchange == Exchange::Chained {
            1
        } else {
            parallelism
        };
        let ratio = forward.map_or(f64::NAN, |f| r / f);
        println!(
            "{:>11} {:>12} {:>12.1} M {:>12.2}",
            exchange.name(),
            p,
            r / 1e6,
            ratio
        );
        if let Some(f) = out.as_mut() {
            writeln!(
                f,
                "{}",
                serde_json::json!({
                    "bench": "keyed", "exchange": exchange.name(), "parallelism": p,
                    "records": records, "batch_rows": batch_rows, "runs": runs,
                    "rows_per_s": r, "ratio_to_forward": ratio, "correct": true,
                })
            )?;
        }
    }
    Ok(())
}
