//! weir's built-in operators: sources, transforms, sinks and connectors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connector;
pub mod etl;
