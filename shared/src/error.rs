//! The one error type of the wire format.

/// Everything that can go wrong turning bytes into a [`crate::Snapshot`] or families.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    /// The body does not start with the snapshot magic bytes.
    #[error("not a fleetgate snapshot (bad magic bytes)")]
    BadMagic,
    /// The message was written by an encoder version this decoder does not know (a newer
    /// agent): the hub answers 415, and the agent falls back to a format the hub reads.
    #[error("unsupported {kind} version {found} (this decoder reads version {supported})")]
    UnsupportedVersion {
        /// `snapshot` or `values push`.
        kind: &'static str,
        /// The version byte of the message.
        found: u8,
        /// The one version this decoder reads.
        supported: u8,
    },
    /// Decompression would produce more than the configured cap.
    #[error("decompressed body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The cap that was exceeded, in bytes.
        limit: usize,
    },
    /// The compressed stream is corrupt.
    #[error("{encoding} decompression failed: {detail}")]
    Decompress {
        /// `zstd` or `gzip`.
        encoding: &'static str,
        /// What the decompressor reported.
        detail: String,
    },
    /// The decompressed payload is not a valid snapshot.
    #[error("snapshot payload is malformed: {0}")]
    Payload(String),
    /// Prometheus text format that does not parse.
    #[error("text format line {line}: {msg}")]
    Text {
        /// 1-based line number of the offending line.
        line: usize,
        /// What is wrong with it.
        msg: String,
    },
    /// A values push that does not fit the base it is applied to.
    #[error("values push does not fit its base: {0}")]
    BaseMismatch(String),
    /// A text body that is not valid UTF-8.
    #[error("text format body is not valid UTF-8")]
    NotUtf8,
}
