//! CSV: a sequential record reader, a parser for chunks of whole records, and the parallel
//! split reader built from them.
//!
//! | piece | what it is |
//! |---|---|
//! | [`CsvReader`] ([`CsvOptions`], [`HeaderCheck`]) | lazy reader: one [`ReadBatch`](super::ReadBatch) per `next()`, schema declared or inferred |
//! | `chunk` (`ChunkParser`) | parses one chunk of whole records held in memory, with the reader's rows, dead letters and errors |
//! | [`csv_split`], [`csv_split_with`] ([`SplitOptions`]) | one demand-driven [`CsvChunker`] cuts files into [`CsvChunk`]s, [`CsvParse`] instances parse them in parallel |
//!
//! The reader and the chunk parser know nothing about the runtime; the split reader is a
//! pipeline source and operator built on them.

pub(crate) mod chunk;
mod cut;
mod parse;
mod pool;
mod reader;
mod split;
mod split_source;

pub use cut::CsvChunk;
pub use parse::{ChunkStep, CsvParse};
pub(crate) use reader::{check_header, line_breaks, parse_record, trim_terminators, BOM};
pub use reader::{CsvOptions, CsvReader, HeaderCheck};
pub use split::{csv_split, csv_split_with, SplitOptions};
pub use split_source::CsvChunker;
