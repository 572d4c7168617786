//! Tests of the columnar operators, sources and sinks.
