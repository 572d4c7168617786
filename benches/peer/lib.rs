//! Nothing to export: the package exists for its bench, `timely.rs`.
