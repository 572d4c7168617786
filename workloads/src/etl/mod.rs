//! The orders ETL job's domain pieces: generator, rules, vectorised steps, and a reference.
//!
//! The job reads orders CSV, dead-letters malformed records, drops cancelled orders, converts
//! amounts to USD and aggregates revenue by (country, UTC day) and by (country, event-time
//! hour); see [`orders`] for the exact
//! specification and how the work is split between the CSV reader and the vectorised steps.
//! Everything here is synchronous and runtime-independent; a pipeline calls
//! [`orders::process_batch`] per batch and merges the revenue partials.
//!
//! ```
//! use weir_operators::connector::CsvReader;
//! use weir_workloads::etl::{generate_orders_csv, orders_csv_options, process_batch, RevenuePartial};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("orders.csv");
//! let summary = generate_orders_csv(&path, 500, 42)?;
//! let mut revenue = RevenuePartial::new();
//! let (mut clean, mut dead) = (0, 0);
//! for batch in CsvReader::from_path(&path, orders_csv_options())? {
//!     let out = process_batch(&batch?)?;
//!     clean += out.clean.num_rows();
//!     dead += out.dead_letters.len();
//!     revenue.merge(&out.revenue);
//! }
//! assert_eq!(dead, summary.malformed.len());
//! assert_eq!(clean as u64, summary.valid - summary.cancelled);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod generate;
pub mod job;
pub mod orders;
pub mod reference;

use arrow::datatypes::DataType;
use arrow::error::ArrowError;

pub use generate::{
    generate_orders_csv, generate_orders_csv_disordered, generate_orders_csv_with, Disorder,
    GenSummary, GenerateError, MalformedKind, MalformedRow,
};
pub use orders::{
    clean_schema, orders_csv_options, orders_csv_schema, process_batch, revenue_schema, to_clean,
    validate, OrdersBatch, RevenueAcc, RevenuePartial, RuleViolation,
};
pub use weir_operators::columnar::ExactSum;

/// Errors of the vectorised orders steps.
#[derive(Debug, thiserror::Error)]
pub enum EtlError {
    /// The batch lacks a column the step needs.
    #[error("column `{column}` is missing; read orders with orders_csv_options() and feed each step the previous one's output")]
    MissingColumn {
        /// The column.
        column: &'static str,
    },
    /// A column has another type than the step needs.
    #[error("column `{column}` has type {found}, expected {expected}")]
    WrongType {
        /// The column.
        column: &'static str,
        /// The type needed.
        expected: DataType,
        /// The type found.
        found: DataType,
    },
    /// A currency without a rate reached `to_clean`.
    #[error("currency {currency:?} has no USD rate; run validate() before to_clean()")]
    UnknownCurrency {
        /// The currency.
        currency: String,
    },
    /// A row that is not placed/shipped/refunded reached the revenue aggregation.
    #[error("status {status:?} cannot be aggregated; aggregate the output of to_clean()")]
    UnexpectedStatus {
        /// The status (`None` for null).
        status: Option<String>,
    },
    /// A null country, timestamp or amount reached the revenue aggregation.
    #[error("null country, ts or amount_usd in a clean batch; aggregate the output of to_clean()")]
    NullValue,
    /// An Arrow kernel failed.
    #[error("Arrow kernel failed: {0}")]
    Arrow(#[from] ArrowError),
}

#[cfg(test)]
mod tests;
