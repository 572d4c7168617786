//! weir's built-in operators: sources, transforms, keyed operators, sinks and connectors.
#![forbid(unsafe_code)]

pub mod keyed;
