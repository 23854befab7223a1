//! Fleetgate's wire format: the snapshot an agent pushes, its versioned zstd encoding with a
//! capped decoder, and the Prometheus text exposition format (0.0.4) both ways.
//!
//! This crate owns the bytes that cross the network and nothing else: no async runtime, no HTTP,
//! no collector library.

mod codec;
mod error;
mod model;
pub mod names;
pub mod text;
mod values;

pub use codec::{
    decode, decompress_capped, encode, encode_with_level, ContentEncoding, CONTENT_TYPE, MAGIC,
    VERSION,
};
pub use error::WireError;
pub use model::{
    Bucket, Family, Histogram, Label, MetricType, Quantile, Series, Snapshot, Summary, Value,
};
pub use values::{
    decode_values, encode_values, layout_hash, sample_count, sample_values, values_checksum,
    ValuesHeader, ValuesPush, VALUES_CONTENT_TYPE, VALUES_MAGIC, VALUES_VERSION,
};
