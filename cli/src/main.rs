//! The `weir` command line: run a job, print its graph, or run a benchmark.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mimalloc::MiMalloc;

mod bench;
mod graph;
mod nexmark;
mod run;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A dataflow runtime where no stage accepts more work than it can finish"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job and print its report. SIGINT (Ctrl-C) or SIGTERM stops the sources; the
    /// pipeline drains, the report is printed, and the exit code is 130 or 143.
    Run {
        #[command(subcommand)]
        job: run::Job,
    },
    /// Print a job's graph in Graphviz DOT.
    Graph {
        /// The job (`demo`, `etl`).
        job: String,
    },
    /// Run a Nexmark query on generated or file events and print its figures; `nexmark gen`
    /// writes generated events to a file.
    Nexmark(nexmark::Nexmark),
    /// Run a benchmark beside its baseline.
    Bench {
        #[command(subcommand)]
        bench: bench::Bench,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let result = real_main(Cli::parse());
    // A run a signal stopped drained and printed what it had; the exit code says it was stopped
    // (an error it caused, such as a benchmark's short count, is a consequence, not the cause).
    if let Some(signal) = weir::interrupt::received() {
        if let Err(e) = result {
            eprintln!("after {signal}: {e}");
        }
        eprintln!("stopped by {signal}");
        return weir::interrupt::exit_code(Some(signal));
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn real_main(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Run { job } => run::run(job),
        Command::Graph { job } => graph::run(&job),
        Command::Nexmark(args) => nexmark::run(args),
        Command::Bench { bench } => {
            weir::interrupt::install()?;
            bench::run(bench)
        }
    }
}

/// `--edge-target-ms`: how much time each edge buffers at its consumer's rate
/// (`PipelineConfig::edge_target_time`; 0 sizes edges by rows and bytes only), or `None` for
/// the pipeline's default.
fn edge_target(ms: Option<u64>) -> Option<std::time::Duration> {
    ms.map(std::time::Duration::from_millis)
}

/// `path` created for JSON lines, if given.
fn open_json(path: &Option<PathBuf>) -> Result<Option<std::fs::File>, Error> {
    Ok(match path {
        Some(p) => Some(std::fs::File::create(p)?),
        None => None,
    })
}
