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

/// User + system CPU time of this process so far (Linux: `/proc/self/stat`, in the kernel's
/// 10 ms clock ticks), if known.
pub fn process_cpu_time() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is parenthesised and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set size of this process so far, in bytes (Linux: `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
