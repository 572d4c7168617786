/// Benchmark result types and reports.
pub mod bench {
    pub mod skew_plot;
}
