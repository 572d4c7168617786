//! `weir bench ingest`: HTTP ingest throughput and acknowledgement latency with `202` sent once
//! records are in the hand-off ([`Ack::Accepted`]) and once they are fsynced to the write-ahead
//! log ([`Ack::Durable`]), side by side in one process.
//!
//! Pipeline: `HttpSource` (policy `Block`, hand-off of 4096 records) → NDJSON parts on disk
//! (fsynced at every barrier under durable acks). `clients` tasks on loopback post bodies of
//! `records_per_body` records back to back for `duration`; each `202` is timed from the start
//! of its request to its answer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use weir_operators::connector::http::{
    Ack, HttpClient, HttpClientConfig, HttpSource, HttpSourceConfig, HttpSourceError, IngestConfig,
    IngestReply,
};
use weir_operators::overload::caller::LatencyHistogram;
use weir_operators::sink::NdjsonSink;
use weir_runtime::{Overflow, Pipeline, PipelineConfig};

/// What `weir bench ingest` runs.
#[derive(Debug, Clone)]
pub struct IngestBenchConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Records per request body.
    pub records_per_body: usize,
    /// Bytes of padding in each record.
    pub record_bytes: usize,
    /// How long the clients post.
    pub duration: Duration,
    /// `commit_interval` of the durable source.
    pub commit_interval: Duration,
    /// Where the log and the parts go (a directory per run is made under it).
    pub scratch: PathBuf,
}

/// One mode's result: one JSON object per line of `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestRow {
    /// `accepted` or `durable`.
    pub ack: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Records per request body.
    pub records_per_body: usize,
    /// Bytes of one record as posted (its JSON line).
    pub record_bytes: usize,
    /// Seconds the clients posted.
    pub seconds: f64,
    /// Requests answered `202`.
    pub requests: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Records acknowledged per second.
    pub records_per_s: f64,
    /// Median time from a request's start to its `202`, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same.
    pub p99_ms: f64,
    /// Requests refused (`429`/`503`).
    pub refused: u64,
    /// Records the sink wrote (all acknowledged ones, once the run drained).
    pub delivered: u64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum IngestBenchError {
    /// The source could not start.
    #[error("cannot start the HTTP source: {0}")]
    Source(#[from] HttpSourceError),
    /// A runtime or a directory could not be made.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The pipeline failed.
    #[error("the ingest pipeline failed: {0}")]
    Run(#[from] weir_runtime::RunError),
}

/// Runs one mode.
///
/// # Errors
///
/// The source cannot bind or open its log, or the pipeline fails.
pub fn run(config: &IngestBenchConfig, durable: bool) -> Result<IngestRow, IngestBenchError> {
    let name = if durable { "durable" } else { "accepted" };
    let dir = config
        .scratch
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = run_in(config, durable, name, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(
    config: &IngestBenchConfig,
    durable: bool,
    name: &str,
    dir: &Path,
) -> Result<IngestRow, IngestBenchError> {
    let source = HttpSource::bind(HttpSourceConfig {
        ingest: IngestConfig {
            addr: "127.0.0.1:0".parse().expect("a literal address"),
            ..IngestConfig::default()
        },
        policy: Overflow::Block,
        ack: if durable {
            Ack::Durable {
                dir: dir.join("log"),
                max_bytes: 1 << 30,
            }
        } else {
            Ack::Accepted
        },
        commit_interval: config.commit_interval,
        ..HttpSourceConfig::default()
    })?;
    let handle = source.handle();
    let addr = handle.local_addr();
    let mut p = Pipeline::with_config(
        "ingest-bench",
        PipelineConfig {
            batch_rows: 256,
            linger: Duration::from_millis(2),
            ..PipelineConfig::default()
        },
    );
    let parts = p
        .source("http", source)
        .sink("parts", NdjsonSink::new(dir.join("out")));
    let run = p.spawn()?;

    let latencies = Arc::new(LatencyHistogram::new());
    let (requests, records, refused) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let pad = "x".repeat(config.record_bytes.saturating_sub(30));
    let body: String = (0..config.records_per_body)
        .map(|i| format!("{{\"id\":{i},\"pad\":\"{pad}\"}}\n"))
        .collect();
    let record_bytes = body.len() / config.records_per_body.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..config.clients)
        .map(|_| {
            let (latencies, requests, records, refused, stop, body) = (
                latencies.clone(),
                requests.clone(),
                records.clone(),
                refused.clone(),
                stop.clone(),
                body.clone(),
            );
            let url = format!("http://{addr}/ingest");
            clients.spawn(async move {
                let client = HttpClient::new(HttpClientConfig::default());
                while !stop.load(Relaxed) {
                    let at = Instant::now();
                    let answer = client
                        .post(
                            &url,
                            "application/x-ndjson",
                            body.clone().into(),
                            Duration::from_secs(30),
                        )
                        .await;
                    match answer {
                        Ok(r) => {
                            latencies.record(at.elapsed());
                            requests.fetch_add(1, Relaxed);
                            let n = r.json::<IngestReply>().map_or(0, |r| r.accepted);
                            records.fetch_add(n as u64, Relaxed);
                        }
                        Err(e) => {
                            refused.fetch_add(1, Relaxed);
                            let n = e
                                .response()
                                .and_then(|r| r.json::<IngestReply>().ok())
                                .map_or(0, |r| r.accepted);
                            records.fetch_add(n as u64, Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(config.duration); // the measured period
    stop.store(true, Relaxed);
    clients.block_on(async {
        for t in tasks {
            let _ = t.await;
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    handle.close();
    run.join()?;
    let delivered = parts.take().map_or(0, |s| s.rows);
    let records = records.load(Relaxed);
    Ok(IngestRow {
        ack: name.to_string(),
        clients: config.clients,
        records_per_body: config.records_per_body,
        record_bytes,
        seconds,
        requests: requests.load(Relaxed),
        records,
        records_per_s: records as f64 / seconds,
        p50_ms: latencies.quantile(0.5).as_secs_f64() * 1e3,
        p99_ms: latencies.quantile(0.99).as_secs_f64() * 1e3,
        refused: refused.load(Relaxed),
        delivered,
    })
}
