//! Connectors: the edges where a pipeline meets the outside world (files, HTTP, ...).

pub mod http;
