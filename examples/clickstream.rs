//! Clickstream: page views per user and dwell time per page over Zipf-skewed clicks.
//!
//! A few users and pages get most of the clicks, so plain hash partitioning would pile them on
//! one instance. Views per user use partial key grouping (each user on the less loaded of two
//! instances, merged exactly afterwards); dwell per page combines locally, then splits the hot
//! pages over more instances. The run report names the bottleneck and the keyed state held.
//!
//! ```text
//! cargo run --release --example clickstream [-- --records CLICKS]
//! ```
//!
//! Ctrl-C or SIGTERM stops the source; the pipeline drains, prints its report, and the exit
//! code (130 / 143) says it was stopped.

use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;
use weir::operators::keyed::aggregate::{Count, Project, Sum};
use weir::operators::keyed::route::{SplitConfig, Strategy};
use weir::prelude::*;
use weir_workloads::zipf::ZipfKeys;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

/// One page view.
#[derive(Clone, Copy, Debug, HeapSize)]
struct Click {
    user: u32,
    page: u32,
    dwell_ms: u32,
}

const USERS: u64 = 50_000;
const PAGES: u64 = 2_000;

fn top<K: Copy + Ord, V: Copy + Ord>(rows: &[(K, V)], n: usize) -> Vec<(K, V)> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(n);
    rows
}

#[derive(Parser)]
#[command(about = "Page views per user and dwell time per page over Zipf-skewed clicks")]
struct Args {
    /// Clicks to generate.
    #[arg(long, visible_alias = "rows", default_value_t = 5_000_000)]
    records: u64,
}

fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let clicks = Args::parse().records;
    let interrupts = weir::interrupt::install()?;
    let mut users = ZipfKeys::new(USERS, 1.1, 1)?;
    let mut pages = ZipfKeys::new(PAGES, 1.3, 2)?;

    let mut p = Pipeline::new("clickstream");
    let stream = p.source(
        "clicks",
        Generator::new(clicks, move |i| Click {
            user: users.next().unwrap_or(0) as u32,
            page: pages.next().unwrap_or(0) as u32,
            dwell_ms: (i % 997) as u32 + 100,
        }),
    );

    let views_per_user = stream
        .clone()
        .key_by(|c: &Click| c.user)
        .strategy(Strategy::Pkg)
        .parallelism(4)
        .aggregate("views-per-user", Count::new())
        .collect("users");

    let dwell_per_page = stream
        .key_by(|c: &Click| c.page)
        .strategy(Strategy::HotKeySplit(SplitConfig::default()))
        .combine(512)
        .parallelism(4)
        .aggregate(
            "dwell-per-page",
            Project::new(|c: &Click| c.dwell_ms, Sum::<u32>::new()),
        )
        .collect("pages");

    let (report, stopped_by) = interrupts.run(p)?;
    println!("{report}\n");

    let users = views_per_user.take().unwrap_or_default();
    let pages = dwell_per_page.take().unwrap_or_default();
    let views: u64 = users.iter().map(|(_, v)| v).sum();
    // A stopped run counts the clicks read before the stop, each exactly once.
    let read = report
        .operators
        .iter()
        .find(|o| o.name == "clicks")
        .map_or(0, |o| o.rows_out);
    if stopped_by.is_none() {
        assert_eq!(read, clicks, "every click is read");
    }
    assert_eq!(views, read, "every click is counted exactly once");
    println!(
        "{} users, {} pages, {views} views",
        users.len(),
        pages.len()
    );
    println!("top users by views:  {:?}", top(&users, 5));
    println!("top pages by dwell:  {:?}", top(&pages, 5));

    // Where the keyed rows went: rows per instance of each keyed stage.
    let per_instance: HashMap<&str, Vec<u64>> = report
        .operators
        .iter()
        .filter(|o| o.name.ends_with(".partial"))
        .map(|o| {
            (
                o.name.as_str(),
                o.instances.iter().map(|i| i.rows_in).collect(),
            )
        })
        .collect();
    for (name, rows) in per_instance {
        println!("rows per instance of `{name}`: {rows:?}");
    }
    if let Some(signal) = stopped_by {
        println!("stopped by {signal} after {read} of {clicks} clicks");
    }
    Ok(weir::interrupt::exit_code(stopped_by))
}
