//! Ready-made pipelines, run by the `weir` command line (`weir run`, `weir graph`).

mod demo;

pub use demo::{demo, DemoResults};
/// The orders ETL job (CSV → clean Parquet, revenue by country and day, dead letters).
pub use weir_operators::etl::job as etl;

/// The jobs `weir run` and `weir graph` know, by name.
pub const JOBS: &[&str] = &["demo", "etl"];
