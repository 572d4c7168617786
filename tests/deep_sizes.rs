//! Bounds count the heap rows own: rows of 600 KB each, behind a slow consumer, stay within the
//! configured byte bounds, in the report and in the process's resident memory.
//!
//! Each row owns a 600 KB buffer but is 32 bytes inline. Were edges to count only the inline
//! size (as they once did), 64 slots of 4-row batches would hold 150 MB per edge and the run
//! would reach hundreds of MB; counted deeply, each edge holds at most its 8 MiB byte bound.
//! Peak RSS (`VmHWM`, reset before each run where the kernel allows it) may grow by at most
//! the sum of the configured byte bounds plus 64 MiB (the rows being generated, processed and
//! read, allocator slack). The tests in this file run one at a time, since RSS is per process.

mod common;

use std::sync::Mutex;

use weir::prelude::*;

/// Bytes each row owns on the heap.
const PAYLOAD: usize = 600_000;
const ROWS: u64 = 300;
const BATCH: usize = 4;
const EDGE_BYTES: usize = 8 << 20;
/// Slots per edge: 64 batches of 2.4 MB would be 150 MB if bytes were not counted deeply.
const SLOTS: usize = 64;
const SLACK: u64 = 64 << 20;
/// The byte bound of the `into_iter` hand-off (the default edge's).
const HANDOFF_BYTES: u64 = 4 << 20;

/// Serialises the tests of this file: peak RSS is a property of the whole process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Clone, HeapSize)]
struct Big {
    id: u64,
    payload: Vec<u8>,
}

/// Row `i`: every byte of its payload is `fill(i)`, written (so its pages are resident).
fn big(i: u64) -> Big {
    Big {
        id: i,
        payload: vec![fill(i); PAYLOAD],
    }
}

fn fill(i: u64) -> u8 {
    (i % 251) as u8 + 1
}

/// Whether row `i` arrived whole: its id and every byte of its payload.
fn intact(row: &Big, i: u64) -> bool {
    let expected = [fill(i); 4096];
    row.id == i
        && row.payload.len() == PAYLOAD
        && row.payload.chunks(4096).all(|c| c == &expected[..c.len()])
}

/// The sum of a row's payload read as 64-bit words: a reader's work on every byte.
fn checksum(row: &Big) -> u64 {
    row.payload
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]))
        .fold(0, u64::wrapping_add)
}

fn expected_checksum() -> u64 {
    (0..ROWS)
        .map(|i| (u64::from(fill(i)) * 0x0101_0101_0101_0101).wrapping_mul((PAYLOAD / 8) as u64))
        .fold(0, u64::wrapping_add)
}

fn config() -> PipelineConfig {
    PipelineConfig {
        edge: EdgeConfig::default()
            .with_capacity(SLOTS)
            .with_max_bytes(EDGE_BYTES),
        ..common::config(BATCH)
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable line `{line}`"))
}

/// Resets the peak RSS to the current RSS where the kernel allows it (Linux 4.0+), and returns
/// the baseline to measure growth from: the peak after the reset.
fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmHWM:") * 1024
}

fn peak_rss() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Bytes of one full batch as the edges count it: its allocation plus its rows' payloads.
fn batch_bytes() -> u64 {
    (BATCH * (std::mem::size_of::<Big>() + PAYLOAD)) as u64
}

/// Checks the report's figures against the configured bounds; returns the sum of the edges'
/// bounds.
fn check_report(report: &RunReport) -> u64 {
    let batch = batch_bytes();
    let mut bound = 0;
    for e in &report.edges {
        let edge_bound = (e.max_bytes as u64).max(batch);
        assert!(
            e.peak_bytes as u64 <= edge_bound,
            "edge {}->{} peaked at {} B > its bound {edge_bound} B:\n{report}",
            e.from,
            e.to,
            e.peak_bytes
        );
        bound += edge_bound;
    }
    assert!(!report.edges.is_empty(), "{report}");
    let held: u64 = report
        .operators
        .iter()
        .flat_map(|o| &o.instances)
        .map(|i| i.peak_held_bytes)
        .sum();
    assert!(
        report.peak_in_flight_bytes <= bound + held,
        "peak in flight {} B > edges' bounds {bound} B + held {held} B:\n{report}",
        report.peak_in_flight_bytes
    );
    let gen = common::inst(report, "gen");
    assert_eq!(gen.rows_out, ROWS);
    assert!(
        gen.bytes_out >= ROWS * PAYLOAD as u64,
        "the source's output counts the rows' heap: {} B",
        gen.bytes_out
    );
    bound
}

#[test]
fn heap_rows_behind_a_slow_sink_stay_within_the_byte_bounds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = reset_peak_rss();

    let mut p = Pipeline::with_config("deep", config());
    let intact_rows = p
        .source("gen", Generator::new(ROWS, big))
        .filter("intact", |row: &Big| intact(row, row.id))
        .sink("slow", Throttle::new(Count::new(), 2_000.0));
    let report = common::run_guarded(p).unwrap();

    let growth = peak_rss().saturating_sub(base);
    assert_eq!(intact_rows.take(), Some(ROWS));
    let bound = check_report(&report);
    assert!(
        growth <= bound + SLACK,
        "peak RSS grew by {} MiB > edges' bounds {} MiB + 64 MiB:\n{report}",
        growth >> 20,
        bound >> 20
    );
}

#[test]
fn heap_rows_read_slowly_through_into_iter_stay_within_the_byte_bounds() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let base = reset_peak_rss();

    let mut p = Pipeline::with_config("deep-iter", config());
    let rows = p
        .source("gen", Generator::new(ROWS, big))
        .into_iter("out", SLOTS);
    let handle = p.spawn().unwrap();
    // The reader is the slow consumer: it reads every byte of every row.
    let (n, sum) = common::guarded("read", move || {
        let mut n = 0;
        let mut sum = 0u64;
        for row in rows {
            assert_eq!(row.id, n, "rows arrive in order");
            sum = sum.wrapping_add(checksum(&row));
            n += 1;
        }
        (n, sum)
    });
    let report = common::guarded("join", move || handle.join()).unwrap();

    let growth = peak_rss().saturating_sub(base);
    assert_eq!((n, sum), (ROWS, expected_checksum()));
    let bound = check_report(&report) + HANDOFF_BYTES.max(batch_bytes());
    assert!(
        growth <= bound + SLACK,
        "peak RSS grew by {} MiB > edges' and hand-off's bounds {} MiB + 64 MiB:\n{report}",
        growth >> 20,
        bound >> 20
    );
}
