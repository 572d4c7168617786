//! Helpers shared by the integration tests: small pipeline configs and report lookups, and the
//! runtime's test kit (hang guards, a waker that counts its wake-ups) re-exported.
//!
//! Each test file compiles this module on its own, so helpers (and re-exports) one file does not
//! use are allowed.
#![allow(dead_code, unused_imports)]

use weir::prelude::*;
use weir::runtime::metrics::{EdgeReport, InstanceReport, OperatorReport};
pub use weir_runtime::test_support::{batch, guarded, run_guarded, CountingWaker, GUARD};

/// A small config: two workers, the given batch size, everything else default.
pub fn config(batch_rows: usize) -> PipelineConfig {
    PipelineConfig {
        workers: Some(2),
        batch_rows,
        ..PipelineConfig::default()
    }
}

/// A pipeline with [`config`]`(batch_rows)`.
pub fn pipeline(name: &str, batch_rows: usize) -> Pipeline {
    Pipeline::with_config(name, config(batch_rows))
}

/// The operator named `name` in `report`.
pub fn op<'a>(report: &'a RunReport, name: &str) -> &'a OperatorReport {
    report
        .operators
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no operator `{name}` in the report:\n{report}"))
}

/// The single instance of operator `name`.
pub fn inst<'a>(report: &'a RunReport, name: &str) -> &'a InstanceReport {
    let o = op(report, name);
    assert_eq!(o.instances.len(), 1, "`{name}` has several instances");
    &o.instances[0]
}

/// Every physical edge leaving operator `from`.
pub fn edges_from<'a>(report: &'a RunReport, from: &str) -> Vec<&'a EdgeReport> {
    report.edges.iter().filter(|e| e.from == from).collect()
}

/// The text between the first `start` after the beginning of `text` and the next `end`.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let a = text.find(start).map(|i| i + start.len());
    let a = a.unwrap_or_else(|| panic!("`{start}` is missing"));
    let b = text[a..]
        .find(end)
        .unwrap_or_else(|| panic!("`{end}` is missing"));
    &text[a..a + b]
}

/// The first Rust listing of the README section headed `heading` (up to the next `## `).
pub fn readme_listing<'a>(readme: &'a str, heading: &str) -> &'a str {
    let section = between(readme, heading, "\n## ");
    between(section, "```rust\n", "```\n")
}

/// The lines of a test body between `// README: begin` and `// README: end`, one indent level
/// out, as the README shows them.
pub fn marked_body(source: &str) -> String {
    between(source, "    // README: begin\n", "    // README: end")
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect()
}
