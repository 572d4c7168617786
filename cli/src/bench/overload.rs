//! `weir bench overload`: a service overloaded at twice its capacity, a naive retrying client
//! beside weir's HTTP sink.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::Error;

/// A service overloaded at 2× its capacity: a naive retrying client beside weir's HTTP sink.
#[derive(Args)]
pub struct OverloadArgs {
    /// The service's capacity, requests per second.
    #[arg(long, default_value_t = 500.0)]
    pub capacity: f64,
    /// The offered load during the overload phase, requests per second (default 2 × capacity).
    #[arg(long)]
    pub offered_rps: Option<f64>,
    /// Seconds of overload, followed by `--recovery` seconds at half the capacity.
    #[arg(long, default_value_t = 6.0)]
    pub duration: f64,
    /// Seconds at half the capacity after the overload.
    #[arg(long, default_value_t = 3.0)]
    pub recovery: f64,
    /// The service answers 429 with Retry-After instead of 503.
    #[arg(long)]
    pub answer_429: bool,
    /// Milliseconds of service time a rejection costs (it loads the service meanwhile);
    /// 0 makes rejections free.
    #[arg(long, default_value_t = 5.0)]
    pub reject_cost_ms: f64,
    /// Write one JSON object per client, per line, here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw goodput and attempts over time, for both clients, as SVG here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Runs both clients against the service and prints their figures (and JSON lines, a chart).
pub fn run(args: OverloadArgs) -> Result<(), Error> {
    let OverloadArgs {
        capacity,
        offered_rps,
        duration,
        recovery,
        answer_429,
        reject_cost_ms,
        json,
        plot,
    } = args;
    run_overload(
        capacity,
        offered_rps,
        (duration, recovery, reject_cost_ms),
        answer_429,
        json,
        plot,
    )
}

fn run_overload(
    capacity: f64,
    offered_rps: Option<f64>,
    (duration, recovery, reject_cost_ms): (f64, f64, f64),
    answer_429: bool,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
) -> Result<(), Error> {
    use std::time::Duration;
    use weir_workloads::bench::overload::{self, OverloadConfig};

    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} must be a number of seconds"))
    };
    let offered = offered_rps.unwrap_or(2.0 * capacity);
    let mut config = OverloadConfig::new(capacity, offered, secs(duration, "duration")?);
    config.recovery = secs(recovery, "recovery")?;
    config.answer_429 = answer_429;
    config.rejection_cost = secs(reject_cost_ms / 1e3, "reject-cost-ms")?;
    println!(
        "service: capacity {capacity:.0}/s ({} at once, {:?} base latency, rejections cost {:?}); offered {offered:.0}/s for {duration} s, then {:.0}/s for {recovery} s",
        config.service_concurrency(),
        config.base_latency,
        config.rejection_cost,
        config.low_rps
    );
    let rows = overload::run(&config)?;
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>7} {:>7} {:>14} {:>9} {:>9} {:>9} {:>10}",
        "client",
        "arrivals",
        "attempts",
        "success",
        "failed",
        "shed",
        "amplification",
        "goodput",
        "p50 ms",
        "p99 ms",
        "recovery s"
    );
    for r in &rows {
        println!(
            "{:>6} {:>9} {:>9} {:>9} {:>7} {:>7} {:>14.3} {:>7.0}/s {:>9.1} {:>9.1} {:>10}",
            r.client,
            r.arrivals,
            r.attempts,
            r.successes,
            r.failed,
            r.shed,
            r.amplification,
            r.goodput_rps,
            r.p50_ms,
            r.p99_ms,
            r.recovery_s
                .map_or("never".to_string(), |s| format!("{s:.0}")),
        );
    }
    if let Some(weir) = rows.iter().find(|r| r.client == "weir") {
        println!(
            "weir targets at X = {:.1} × C: amplification {:.3} (≤ 1.1: {}), goodput {:.1} % of C (≥ 90 %: {})",
            offered / capacity,
            weir.amplification,
            if weir.amplification <= 1.1 { "met" } else { "missed" },
            weir.goodput_ratio * 100.0,
            if weir.goodput_ratio >= 0.9 { "met" } else { "missed" },
        );
    }
    if let Some(path) = &json {
        let mut f = std::fs::File::create(path)?;
        for r in &rows {
            let mut v = serde_json::to_value(r)?;
            v["bench"] = serde_json::json!("overload");
            writeln!(f, "{}", serde_json::to_string(&v)?)?;
        }
    }
    if let Some(path) = &plot {
        weir_workloads::bench::overload_plot::write_overload_svg(path, &rows)?;
    }
    Ok(())
}
