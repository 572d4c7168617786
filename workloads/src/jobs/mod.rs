//! Ready-made pipelines, run by the `weir` command line (`weir run`, `weir graph`).

mod demo;

/// The orders ETL job (CSV → clean Parquet, revenue by country and day, dead letters).
pub use crate::etl::job as etl;
pub use demo::{demo, DemoResults};

/// The jobs `weir run` and `weir graph` know, by name.
pub const JOBS: &[&str] = &["demo", "etl"];
