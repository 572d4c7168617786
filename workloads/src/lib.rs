//! weir's workloads: the applications and measurements built *on* weir, kept out of its
//! libraries so that a user of `weir`, `weir-runtime` or `weir-operators` compiles none of them.
//!
//! - [`etl`] — the orders job: its generator (with malformed rows), its rules and vectorised
//!   steps, its pipeline ([`etl::job::build`]) and a sequential reference implementation that
//!   the tests compare it with;
//! - [`jobs`] — the jobs `weir run` and `weir graph` know, by name;
//! - [`nexmark`] — the Nexmark benchmark's events, generator, queries and reference answers;
//! - [`zipf`] — seeded Zipf key streams, and [`routing`] — replaying them against a routing
//!   strategy to measure its balance;
//! - [`http_service`] — the overloadable loopback service and the naive-retry client the
//!   overload benchmark measures weir's HTTP sink against;
//! - [`bench`](mod@bench) — the harnesses behind `weir bench` and the criterion benches, each beside its
//!   baseline.
//!
//! The examples, the benches, the `weir` command line and the tests use this crate; the
//! libraries never do.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod etl;
pub mod http_service;
pub mod jobs;
pub mod nexmark;
pub mod routing;
pub mod zipf;

/// Peak resident set size of this process so far, in bytes (Linux: `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
