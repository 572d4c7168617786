//! `weir nexmark`: run a Nexmark query on generated or file events and print the run report and
//! the figures; `weir nexmark gen` writes generated events to a file.
//!
//! The last line printed is one JSON object: `query`, `events`, `events_per_s`,
//! `events_per_cpu_s` (user + system CPU time of the process, generator included),
//! `peak_rss_bytes`, the result rows' latency from the creation of their inputs
//! (`latency_p50_ms`, `latency_p99_ms`, `latency_max_ms`: `null` unless `--pace-rate` is given)
//! and the latency markers' (`marker_p50_ms`, `marker_p99_ms`). `--query gen` runs no query:
//! the events alone into a count, the baseline beside which the queries' figures are read.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use weir_workloads::nexmark::queries::{QueryOptions, ResultSink};
use weir_workloads::nexmark::run::{self, EventInput, RunConfig, Workload};
use weir_workloads::nexmark::GeneratorConfig;

use crate::Error;

/// `weir nexmark`'s arguments.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Nexmark {
    #[command(subcommand)]
    command: Option<NexmarkCommand>,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(Subcommand)]
enum NexmarkCommand {
    /// Write generated events to an NDJSON file, one event per line.
    Gen {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        generator: GeneratorArgs,
    },
}

#[derive(Args)]
struct QueryArgs {
    /// The query: 0-5, 7, 8 or 11; or `gen` for the events alone into a count.
    #[arg(long, value_parser = parse_workload)]
    query: Option<Workload>,
    /// Read events from this NDJSON file (one instance) instead of generating them.
    #[arg(long, conflicts_with = "events")]
    input: Option<PathBuf>,
    /// Write the results to this NDJSON file (default: count them).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write the dead letters (malformed lines with their line numbers, late events) to this
    /// NDJSON file (default: count them).
    #[arg(long)]
    dead_letters: Option<PathBuf>,
    /// How far the watermark trails the largest event time seen, in ms; an event further
    /// behind an earlier one is late, counted and left out.
    #[arg(long, default_value_t = 10_000)]
    max_delay_ms: u64,
    /// Instances of the generator and the query's operators (and worker threads).
    #[arg(long, default_value_t = 1)]
    parallelism: usize,
    /// Release the generated events at this many per wall-clock second (event n due at
    /// start + n / R), with event time on the wall clock at the same rate (replacing
    /// --event-rate), and measure each result's latency from its input's creation.
    #[arg(long, conflicts_with = "input", value_parser = clap::value_parser!(u64).range(1..))]
    pace_rate: Option<u64>,
    /// Time each edge buffers at its consumer's rate, ms (0: rows and bytes only; default:
    /// the pipeline's, `PipelineConfig::edge_target_time`).
    #[arg(long)]
    edge_target_ms: Option<u64>,
    #[command(flatten)]
    generator: GeneratorArgs,
}

#[derive(Args)]
struct GeneratorArgs {
    /// Events to generate.
    #[arg(long)]
    events: Option<u64>,
    /// Events per second of event time.
    #[arg(long, default_value_t = GeneratorConfig::default().event_rate)]
    event_rate: u64,
    /// A bid is on the hot auction with probability (r - 1) / r.
    #[arg(long, default_value_t = GeneratorConfig::default().hot_auction_ratio)]
    hot_auction_ratio: u64,
    /// An auction is by the hot seller with probability (r - 1) / r.
    #[arg(long, default_value_t = GeneratorConfig::default().hot_seller_ratio)]
    hot_seller_ratio: u64,
    /// A bid is by the hot bidder with probability (r - 1) / r.
    #[arg(long, default_value_t = GeneratorConfig::default().hot_bidder_ratio)]
    hot_bidder_ratio: u64,
    /// The most a generated event's time is moved back (one event in ten is), ms.
    #[arg(long, default_value_t = GeneratorConfig::default().max_delay_ms)]
    generator_delay_ms: i64,
    /// The generator's seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl GeneratorArgs {
    fn config(&self, events: u64) -> GeneratorConfig {
        GeneratorConfig {
            events,
            event_rate: self.event_rate,
            hot_auction_ratio: self.hot_auction_ratio,
            hot_seller_ratio: self.hot_seller_ratio,
            hot_bidder_ratio: self.hot_bidder_ratio,
            max_delay_ms: self.generator_delay_ms,
            seed: self.seed,
            ..GeneratorConfig::default()
        }
    }
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    if s == "gen" {
        return Ok(Workload::Events);
    }
    let n = s.strip_prefix('q').unwrap_or(s);
    n.parse()
        .map(Workload::Query)
        .map_err(|_| format!("`{s}` is no query: give 0-5, 7, 8, 11 or `gen`"))
}

/// Runs `weir nexmark`.
pub fn run(args: Nexmark) -> Result<(), Error> {
    match args.command {
        Some(NexmarkCommand::Gen { out, generator }) => {
            let events = generator
                .events
                .ok_or("`weir nexmark gen` needs --events")?;
            let written =
                weir_workloads::nexmark::io::write_generated(&generator.config(events), &out)?;
            eprintln!("wrote {written} events to {}", out.display());
            Ok(())
        }
        None => run_query(args.query),
    }
}

fn run_query(args: QueryArgs) -> Result<(), Error> {
    let workload = args
        .query
        .ok_or("give --query N (or `gen`), or the `gen` command")?;
    let input = match (&args.input, args.generator.events) {
        (Some(path), _) => EventInput::File(path.clone()),
        (None, Some(events)) => match args.pace_rate {
            Some(rate) => EventInput::Paced {
                generator: args.generator.config(events),
                rate,
            },
            None => EventInput::Generate(args.generator.config(events)),
        },
        (None, None) => return Err("give --events M to generate events, or --input FILE".into()),
    };
    if args.parallelism == 0 {
        return Err("--parallelism must be at least 1".into());
    }
    let cfg = RunConfig {
        input,
        workload,
        options: QueryOptions {
            parallelism: args.parallelism,
            max_delay_ms: i64::try_from(args.max_delay_ms)
                .map_err(|_| "--max-delay-ms is too large")?,
        },
        output: args.output.map_or(ResultSink::Count, ResultSink::Ndjson),
        dead_letters: args.dead_letters,
        edge_target_time: crate::edge_target(args.edge_target_ms),
    };
    let interrupts = weir::interrupt::install()?;
    let outcome = run::run_with(&cfg, |pipeline| -> Result<_, Error> {
        let handle = pipeline.spawn()?;
        interrupts.watch(&handle);
        Ok(handle.join()?)
    })?;
    println!("{}", outcome.report);
    println!(
        "{workload}: {} events, {} late (left out), {} malformed lines, {} result rows",
        outcome.events, outcome.late, outcome.malformed, outcome.results
    );
    if let Some(l) = outcome.latency {
        println!(
            "latency from creation to result ({} rows): p50 {} ms, p99 {} ms, max {} ms",
            l.rows, l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    if let Some(signal) = interrupts.received() {
        println!("stopped by {signal}: the figures cover the events read before the stop");
    }
    println!("{}", serde_json::to_string(&outcome.summary(workload))?);
    Ok(())
}
