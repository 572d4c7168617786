//! HTTP ingest → transform → a sink limited to R rows/s, with live rates.
//!
//! ```text
//! cargo run --release --example http_ingest -- --listen 127.0.0.1:8080 --sink-rate 1000 --policy reject
//! # elsewhere: send NDJSON, one JSON object per line
//! curl -i -X POST --data-binary $'{"id":1}\n{"id":2}\n' http://127.0.0.1:8080/ingest
//! ```
//!
//! With `--ack durable` a `202` is sent only once the records are fsynced to a write-ahead log
//! (`--log-dir`), and after a crash the next start delivers every acknowledged record the sink
//! had not confirmed (at least once); `--out DIR` writes the rows as NDJSON parts, completed and
//! fsynced at every confirmation, so delivery can be checked after a `kill -9`:
//!
//! ```text
//! cargo run --release --example http_ingest -- --sink-rate 1000 --policy reject --ack durable \
//!     --log-dir /tmp/ingest-log --out /tmp/ingest-out --load 3000
//! ```
//!
//! Every second it prints what the source took and refused, the sink's rate, the backlog, the
//! measured drain rate, the last `Retry-After` it computed and the process's resident memory.
//! Offered more than R rows/s (try `--load 3000`, which posts that many rows per second to
//! itself), the pipeline settles at R: with `--policy reject` clients get `429` with a
//! `Retry-After` of backlog / drain rate, with `block` they wait (then `503`), with
//! `drop-newest` the excess is dropped and answered `503`, with `spill` it goes to a bounded
//! disk FIFO — and memory stays flat in every case. Ctrl-C or SIGTERM (or `--duration`) stops
//! the source, drains what was acknowledged, and prints the run report; after a signal the exit
//! code is 130 (SIGINT) or 143 (SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use mimalloc::MiMalloc;
use serde_json::Value;
use weir::operators::connector::http::{
    Ack, BearerToken, HttpClient, HttpClientConfig, HttpSource, HttpSourceConfig, IngestConfig,
};
use weir::prelude::*;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Policy {
    Block,
    Reject,
    DropNewest,
    Spill,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AckMode {
    /// `202` once records are in the hand-off: a crash loses what is in memory.
    Accepted,
    /// `202` once records are fsynced to a write-ahead log; replayed after a crash.
    Durable,
}

#[derive(Parser, Debug)]
#[command(about = "HTTP ingest into a pipeline whose sink takes R rows per second")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Rows per second the sink takes.
    #[arg(long)]
    sink_rate: f64,
    /// What the source does when the pipeline has no room.
    #[arg(long, value_enum, default_value = "block")]
    policy: Policy,
    /// Require `Authorization: Bearer <token>` on /ingest.
    #[arg(long)]
    token: Option<String>,
    /// Records the source's hand-off holds.
    #[arg(long, default_value_t = 4096)]
    capacity: usize,
    /// Directory of the spill (with `--policy spill`).
    #[arg(long, default_value = "http-ingest-spill")]
    spill_dir: PathBuf,
    /// Bytes the spill may use.
    #[arg(long, default_value_t = 64 << 20)]
    spill_bytes: u64,
    /// When a `202` is sent (see the HttpSource docs for what each promises on a crash).
    #[arg(long, value_enum, default_value = "accepted")]
    ack: AckMode,
    /// Directory of the write-ahead log (with `--ack durable`).
    #[arg(long, default_value = "http-ingest-log")]
    log_dir: PathBuf,
    /// Bytes the write-ahead log may use.
    #[arg(long, default_value_t = 256 << 20)]
    log_bytes: u64,
    /// How often, at most, the sinks confirm what they handled (with `--ack durable`), in ms.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Write the rows as NDJSON parts here (fsynced at every barrier under `--ack durable`)
    /// instead of only counting them.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Post this many rows per second to ourselves (bodies of 100 rows), to see the policy act.
    #[arg(long)]
    load: Option<f64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    let interrupts = weir::interrupt::install()?;
    if !(args.sink_rate > 0.0 && args.sink_rate.is_finite()) {
        return Err("--sink-rate must be a positive number of rows per second".into());
    }
    let policy = match args.policy {
        Policy::Block => Overflow::Block,
        Policy::Reject => Overflow::Reject,
        Policy::DropNewest => Overflow::DropNewest,
        Policy::Spill => Overflow::Spill {
            dir: args.spill_dir.clone(),
            max_bytes: args.spill_bytes,
        },
    };
    let source = HttpSource::bind(HttpSourceConfig {
        ingest: IngestConfig {
            addr: args.listen,
            auth: args.token.clone().map(BearerToken::new),
            ..IngestConfig::default()
        },
        policy: policy.clone(),
        capacity: args.capacity,
        ack: match args.ack {
            AckMode::Accepted => Ack::Accepted,
            AckMode::Durable => Ack::Durable {
                dir: args.log_dir.clone(),
                max_bytes: args.log_bytes,
            },
        },
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
        ..HttpSourceConfig::default()
    })?;
    let ingest = source.handle();
    println!(
        "POST NDJSON to http://{}/ingest (policy {policy}, ack {:?}, sink {} rows/s); Ctrl-C or SIGTERM stops",
        ingest.local_addr(),
        args.ack,
        args.sink_rate
    );

    let mut p = Pipeline::with_config(
        "http-ingest",
        PipelineConfig {
            batch_rows: 64,
            linger: Duration::from_millis(5),
            ..PipelineConfig::default()
        },
    );
    let stamped = p.source("http", source).map("stamp", |mut record: Value| {
        if let Value::Object(fields) = &mut record {
            fields.insert("seen".into(), Value::Bool(true));
        }
        record
    });
    let through = match &args.out {
        None => {
            let count = stamped.sink("sink", Throttle::new(Count::new(), args.sink_rate));
            Box::new(move || count.take().unwrap_or(0)) as Box<dyn Fn() -> u64>
        }
        Some(dir) => {
            let parts = stamped.sink(
                "sink",
                Throttle::new(NdjsonSink::new(dir.clone()), args.sink_rate),
            );
            Box::new(move || parts.take().map_or(0, |s| s.rows))
        }
    };
    let run = p.spawn()?;
    // A signal stops the source: it refuses new records and drains what it acknowledged.
    interrupts.watch(&run);
    let stop = run.stop_signal();
    let stopping = Arc::new(AtomicBool::new(false));
    let load = args.load.map(|rps| {
        LoadGen::start(
            ingest.local_addr(),
            rps,
            args.token.clone(),
            Arc::clone(&stopping),
        )
    });

    let started = Instant::now();
    let mut last = (Instant::now(), 0u64, 0u64);
    println!(
        "{:>6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11} {:>8} {:>9}",
        "t s",
        "in rows/s",
        "out rows/s",
        "accepted",
        "rejected",
        "dropped",
        "spilled",
        "backlog",
        "drain r/s",
        "retry s",
        "rss MiB"
    );
    while !run.is_finished() {
        std::thread::sleep(Duration::from_secs(1)); // the print interval
        if interrupts.received().is_some() {
            stopping.store(true, Relaxed); // the load generator stops posting
        }
        let report = run.snapshot();
        let (src, sink) = (report.operators[0].rows_out, report.operators[2].rows_in);
        let dt = last.0.elapsed().as_secs_f64();
        let s = ingest.stats();
        println!(
            "{:>6.0} {:>10.0} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11.0} {:>8.1} {:>9.1}",
            started.elapsed().as_secs_f64(),
            (src - last.1) as f64 / dt,
            (sink - last.2) as f64 / dt,
            s.accepted,
            s.rejected,
            s.dropped,
            s.spilled,
            s.backlog,
            s.drain_rows_per_s.unwrap_or(0.0),
            s.last_retry_after_ms as f64 / 1e3,
            rss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64,
        );
        last = (Instant::now(), src, sink);
        if args
            .duration
            .is_some_and(|d| started.elapsed().as_secs_f64() >= d)
            && !stopping.swap(true, Relaxed)
        {
            stop.stop();
        }
    }
    if let Some(load) = load {
        let (ok, refused) = load.finish();
        println!("load generator: {ok} rows acknowledged, {refused} refused (429/503)");
    }
    let report = run.join()?;
    println!("{report}");
    println!("rows through the sink: {}", through());
    if let Some(signal) = interrupts.received() {
        println!("stopped by {signal}");
    }
    Ok(weir::interrupt::exit_code(interrupts.received()))
}

/// Resident memory now (Linux `VmRSS`).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Posts `rps` rows per second to the source, in bodies of 100 rows, honouring nothing: it is
/// the overload.
struct LoadGen {
    thread: std::thread::JoinHandle<()>,
    ok: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl LoadGen {
    fn start(addr: SocketAddr, rps: f64, token: Option<String>, stop: Arc<AtomicBool>) -> Self {
        let (ok, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (ok2, refused2) = (Arc::clone(&ok), Arc::clone(&refused));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the load generator");
            runtime.block_on(async move {
                let client = HttpClient::new(HttpClientConfig {
                    bearer: token.map(BearerToken::new),
                    ..HttpClientConfig::default()
                });
                let url = format!("http://{addr}/ingest");
                let per_body = 100u64;
                let every = Duration::from_secs_f64(per_body as f64 / rps.max(1.0));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    tick.tick().await;
                    let body: String = (n..n + per_body)
                        .map(|i| format!("{{\"id\":{i}}}\n"))
                        .collect();
                    n += per_body;
                    let answer = client
                        .post(
                            &url,
                            "application/x-ndjson",
                            body.into(),
                            Duration::from_secs(10),
                        )
                        .await;
                    match answer {
                        Ok(r) => {
                            ok2.fetch_add(
                                r.json::<Value>()
                                    .ok()
                                    .and_then(|v| v["accepted"].as_u64())
                                    .unwrap_or(0),
                                Relaxed,
                            );
                        }
                        Err(e) => {
                            let accepted = e
                                .response()
                                .and_then(|r| r.json::<Value>().ok())
                                .and_then(|v| v["accepted"].as_u64())
                                .unwrap_or(0);
                            ok2.fetch_add(accepted, Relaxed);
                            refused2.fetch_add(per_body - accepted, Relaxed);
                        }
                    }
                }
            });
        });
        Self {
            thread,
            ok,
            refused,
        }
    }

    fn finish(self) -> (u64, u64) {
        let _ = self.thread.join();
        (self.ok.load(Relaxed), self.refused.load(Relaxed))
    }
}
