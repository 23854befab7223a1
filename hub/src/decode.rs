//! The first step of a push: its body, decompressed under the configured cap, turned into
//! families (a native snapshot or Prometheus text) or into a values push. Nothing is checked
//! against the limits here; that is [`crate::validate`].

use fleetgate_shared::{Family, ValuesPush};

/// The two body formats `/push` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/vnd.fleetgate.snapshot`: the shared crate's encoding.
    Snapshot,
    /// `text/plain`: Prometheus text format 0.0.4.
    Text,
    /// `application/vnd.fleetgate.values`: new values for the stored snapshot's layout
    /// ([`decode_values_body`]).
    Values,
}

/// A push body turned into families.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The families as sent.
    pub families: Vec<Family>,
    /// The sender's sequence number (snapshots only).
    pub seq: Option<u64>,
    /// The sender's push interval (snapshots only; zero means not given).
    pub interval: Option<std::time::Duration>,
    /// [`fleetgate_shared::layout_hash`] of the families (snapshots only).
    pub layout: Option<u64>,
}

/// Decompresses (capped at `max_decompressed` bytes) and decodes a push body.
pub fn decode_body(
    format: BodyFormat,
    encoding: fleetgate_shared::ContentEncoding,
    body: &[u8],
    max_decompressed: usize,
) -> Result<Decoded, fleetgate_shared::WireError> {
    use fleetgate_shared::ContentEncoding;
    let plain;
    let body = if encoding == ContentEncoding::Identity && format == BodyFormat::Snapshot {
        body
    } else {
        plain = fleetgate_shared::decompress_capped(encoding, body, max_decompressed)?;
        plain.as_slice()
    };
    match format {
        BodyFormat::Snapshot => {
            let s = fleetgate_shared::decode(body, max_decompressed)?;
            Ok(Decoded {
                layout: Some(fleetgate_shared::layout_hash(&s.families)),
                families: s.families,
                seq: Some(s.seq),
                interval: (s.interval_ms > 0)
                    .then(|| std::time::Duration::from_millis(s.interval_ms)),
            })
        }
        BodyFormat::Text => Ok(Decoded {
            families: fleetgate_shared::text::parse_bytes(body)?,
            seq: None,
            interval: None,
            layout: None,
        }),
        BodyFormat::Values => Err(fleetgate_shared::WireError::Payload(
            "a values push carries no families".into(),
        )),
    }
}

/// Decompresses (capped at `max_decompressed` bytes) and decodes a values push body.
pub fn decode_values_body(
    encoding: fleetgate_shared::ContentEncoding,
    body: &[u8],
    max_decompressed: usize,
) -> Result<ValuesPush, fleetgate_shared::WireError> {
    if encoding == fleetgate_shared::ContentEncoding::Identity {
        return fleetgate_shared::decode_values(body, max_decompressed);
    }
    let plain = fleetgate_shared::decompress_capped(encoding, body, max_decompressed)?;
    fleetgate_shared::decode_values(&plain, max_decompressed)
}
