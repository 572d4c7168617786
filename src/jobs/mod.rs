//! Ready-made pipelines, run by the `weir` command line (`weir run`, `weir graph`).

mod demo;

pub use demo::{demo, DemoResults};

/// The jobs `weir run` and `weir graph` know, by name.
pub const JOBS: &[&str] = &["demo"];
