//! The versioned binary encoding of a [`Snapshot`] and capped decompression of request bodies.
//!
//! Layout: `MAGIC` (4 bytes) · `VERSION` (1 byte) · one zstd frame holding the postcard
//! serialization of the snapshot. Decoding never allocates more than the caller's cap, however
//! the compressed bytes claim to expand.

use std::cell::RefCell;
use std::io::Read;
use std::sync::Mutex;

use crate::{Snapshot, WireError};

/// First bytes of every encoded snapshot.
pub const MAGIC: [u8; 4] = *b"FGSN";
/// Encoding version written by [`encode`] and the only one [`decode`] accepts.
pub const VERSION: u8 = 1;
/// HTTP `Content-Type` of an encoded snapshot.
pub const CONTENT_TYPE: &str = "application/vnd.fleetgate.snapshot";

/// zstd level used by [`encode`]: level 3 is zstd's default, fast and within a few percent of
/// the ratio of much slower levels for metric text.
const DEFAULT_LEVEL: i32 = 3;

/// Encodes a snapshot: header plus zstd-compressed postcard payload.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    encode_with_level(snapshot, DEFAULT_LEVEL)
}

/// Encodes a snapshot with an explicit zstd level.
pub fn encode_with_level(snapshot: &Snapshot, level: i32) -> Vec<u8> {
    // Serializing plain owned data into a Vec cannot fail: postcard errors only on
    // unsupported serde features (none are used) or a full fixed buffer (none here).
    let payload = postcard::to_stdvec(snapshot).unwrap_or_default();
    frame(MAGIC, VERSION, &payload, level)
}

thread_local! {
    /// This thread's compression context and the level it is set to, kept between messages:
    /// a streaming encoder makes a context per message and sizes its tables for an input of
    /// unknown length, which costs more than compressing a values push of 1,000 series
    /// (docs/PERFORMANCE.md `### The rig's own CPU`). Compressing in one call also tells zstd
    /// the input's length, so a small message uses small tables.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
}

/// `magic` · `version` · one zstd frame of `payload`: the framing of every message kind.
pub(crate) fn frame(magic: [u8; 4], version: u8, payload: &[u8], level: i32) -> Vec<u8> {
    let level = level.clamp(1, 19);
    // zstd only fails here on an invalid level (clamped to its range above) or a context it
    // cannot allocate; the message is then empty, as before.
    let compressed = COMPRESSOR.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return zstd::bulk::compress(payload, level);
        };
        let compressor = match kept.as_mut() {
            Some((at, compressor)) => {
                if *at != level {
                    compressor.set_compression_level(level)?;
                    *at = level;
                }
                compressor
            }
            None => &mut kept.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress(payload)
    });
    match compressed {
        // The message is built after compressing, so it holds exactly its bytes rather than
        // the payload's compress bound.
        Ok(z) => {
            let mut out = Vec::with_capacity(magic.len() + 1 + z.len());
            out.extend_from_slice(&magic);
            out.push(version);
            out.extend_from_slice(&z);
            out
        }
        Err(_) => Vec::new(),
    }
}

/// Checks the `magic` and `version` of a [`frame`] and decompresses its payload, refusing to
/// go past `max_decompressed` bytes.
pub(crate) fn unframe(
    body: &[u8],
    (kind, magic, version): (&'static str, [u8; 4], u8),
    max_decompressed: usize,
) -> Result<Vec<u8>, WireError> {
    if body.len() < magic.len() + 1 || body[..magic.len()] != magic {
        return Err(WireError::BadMagic);
    }
    let found = body[magic.len()];
    if found != version {
        return Err(WireError::UnsupportedVersion {
            kind,
            found,
            supported: version,
        });
    }
    decompress_capped(
        ContentEncoding::Zstd,
        &body[magic.len() + 1..],
        max_decompressed,
    )
}

/// Decodes an encoded snapshot, refusing to decompress past `max_decompressed` bytes.
pub fn decode(body: &[u8], max_decompressed: usize) -> Result<Snapshot, WireError> {
    let payload = unframe(body, ("snapshot", MAGIC, VERSION), max_decompressed)?;
    postcard::from_bytes(&payload).map_err(|e| WireError::Payload(e.to_string()))
}

/// A `Content-Encoding` the hub accepts on request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// No compression.
    Identity,
    /// zstd frame(s).
    Zstd,
    /// gzip member(s).
    Gzip,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value; `None` for an encoding not supported.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(ContentEncoding::Identity),
            "zstd" => Some(ContentEncoding::Zstd),
            "gzip" | "x-gzip" => Some(ContentEncoding::Gzip),
            _ => None,
        }
    }
}

/// Decompresses `body` but stops with [`WireError::TooLarge`] as soon as the output would pass
/// `cap` bytes: memory use is bounded by the cap, not by what the stream claims.
pub fn decompress_capped(
    encoding: ContentEncoding,
    body: &[u8],
    cap: usize,
) -> Result<Vec<u8>, WireError> {
    match encoding {
        ContentEncoding::Identity => {
            if body.len() > cap {
                Err(WireError::TooLarge { limit: cap })
            } else {
                Ok(body.to_vec())
            }
        }
        ContentEncoding::Zstd => {
            // Only when zstd cannot allocate one; a decompress error, as before the pool.
            let Some(mut context) = ZSTD_CONTEXTS.take() else {
                return Err(WireError::Decompress {
                    encoding: "zstd",
                    detail: "no memory for a decompression context".into(),
                });
            };
            // Starts a new session: nothing of a body decoded before carries over.
            let decoder = zstd::stream::read::Decoder::with_context(body, &mut context);
            let plain = read_capped(decoder, body.len(), cap, "zstd");
            ZSTD_CONTEXTS.give(context);
            plain
        }
        ContentEncoding::Gzip => read_capped(
            flate2::read::MultiGzDecoder::new(body),
            body.len(),
            cap,
            "gzip",
        ),
    }
}

/// zstd decompression contexts kept from one body to the next: creating one per body (its
/// tables set up, its buffers allocated and zeroed) cost a hub 2–3 % of its CPU at 10,000
/// nodes. At most [`ContextPool::KEPT`] are kept, whatever the number of threads that
/// decompress at once (a hub's pushes run on up to hundreds of blocking threads), and none
/// that a frame with a large window grew past [`ContextPool::LARGEST`], so neither a burst of
/// pushes nor one large body pins memory.
static ZSTD_CONTEXTS: ContextPool = ContextPool::new();

/// Decompression contexts for reuse.
struct ContextPool {
    kept: Mutex<Vec<zstd::zstd_safe::DCtx<'static>>>,
}

impl ContextPool {
    /// Contexts kept at most. Each holds 2.6 MB of buffers for the bodies agents send (they are
    /// compressed without a declared size, so with zstd's 2 MiB window), of which the bodies'
    /// output touches only as much as the largest of them.
    const KEPT: usize = 8;
    /// The largest context (tables and buffers, `ZSTD_sizeof_DCtx`) kept.
    const LARGEST: usize = 4 << 20;

    const fn new() -> Self {
        ContextPool {
            kept: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<zstd::zstd_safe::DCtx<'static>>> {
        // A panic cannot leave the list half-changed (push and pop only).
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kept context, or a new one; `None` when zstd cannot allocate one.
    fn take(&self) -> Option<zstd::zstd_safe::DCtx<'static>> {
        let kept = self.lock().pop();
        kept.or_else(zstd::zstd_safe::DCtx::try_create)
    }

    /// Keeps `context` for a later body, unless enough are kept or it grew too large.
    fn give(&self, context: zstd::zstd_safe::DCtx<'static>) {
        if context.sizeof() > Self::LARGEST {
            return;
        }
        let mut kept = self.lock();
        if kept.len() < Self::KEPT {
            kept.push(context);
        }
    }

    /// The sizes of the contexts kept.
    #[cfg(test)]
    fn sizes(&self) -> Vec<usize> {
        self.lock().iter().map(|c| c.sizeof()).collect()
    }
}

fn read_capped(
    reader: impl Read,
    compressed_len: usize,
    cap: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, WireError> {
    // Start with a guess of the usual ratio, never more than the cap; the Vec grows as needed.
    let mut out = Vec::with_capacity(compressed_len.saturating_mul(8).min(cap));
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| WireError::Decompress {
            encoding,
            detail: e.to_string(),
        })?;
    if out.len() > cap {
        return Err(WireError::TooLarge { limit: cap });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bucket, Family, Histogram, Label, MetricType, Quantile, Series, Summary, Value};
    use proptest::prelude::*;

    fn sample() -> Snapshot {
        Snapshot {
            seq: 7,
            interval_ms: 15_000,
            timestamp_ms: 1_700_000_000_000,
            families: vec![
                Family {
                    name: "node_load1".into(),
                    help: "1m load average.".into(),
                    kind: MetricType::Gauge,
                    series: vec![Series {
                        labels: vec![],
                        value: Value::Scalar(0.42),
                    }],
                },
                Family {
                    name: "rpc_duration_seconds".into(),
                    help: "RPC latency.".into(),
                    kind: MetricType::Histogram,
                    series: vec![Series {
                        labels: vec![Label::new("method", "get")],
                        value: Value::Histogram(Histogram {
                            buckets: vec![
                                Bucket {
                                    le: 0.1,
                                    count: 3.0,
                                },
                                Bucket {
                                    le: 1.0,
                                    count: 5.0,
                                },
                            ],
                            sum: 2.5,
                            count: 6.0,
                        }),
                    }],
                },
                Family {
                    name: "gc_seconds".into(),
                    help: String::new(),
                    kind: MetricType::Summary,
                    series: vec![Series {
                        labels: vec![],
                        value: Value::Summary(Summary {
                            quantiles: vec![Quantile {
                                quantile: 0.5,
                                value: 0.001,
                            }],
                            sum: 1.0,
                            count: 100.0,
                        }),
                    }],
                },
            ],
        }
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let s = sample();
        let bytes = encode(&s);
        assert_eq!(&bytes[..4], b"FGSN");
        assert_eq!(decode(&bytes, 1 << 20).unwrap(), s);
    }

    #[test]
    fn wrong_magic_and_version_are_named() {
        assert_eq!(decode(b"nope!", 1024), Err(WireError::BadMagic));
        let mut bytes = encode(&sample());
        bytes[4] = 9;
        assert_eq!(
            decode(&bytes, 1 << 20),
            Err(WireError::UnsupportedVersion {
                kind: "snapshot",
                found: 9,
                supported: VERSION
            })
        );
    }

    #[test]
    fn zstd_bomb_is_rejected_at_the_cap() {
        // 256 MiB of zeros compresses to a few KB.
        let zeros = std::io::repeat(0).take(256 << 20);
        let mut bomb = Vec::new();
        zstd::stream::copy_encode(zeros, &mut bomb, 19).unwrap();
        assert!(bomb.len() < 64 * 1024, "bomb is {} bytes", bomb.len());
        let cap = 1 << 20;
        assert_eq!(
            decompress_capped(ContentEncoding::Zstd, &bomb, cap),
            Err(WireError::TooLarge { limit: cap })
        );
        let mut framed = MAGIC.to_vec();
        framed.push(VERSION);
        framed.extend_from_slice(&bomb);
        assert_eq!(
            decode(&framed, cap),
            Err(WireError::TooLarge { limit: cap })
        );
    }

    #[test]
    fn gzip_bomb_is_rejected_at_the_cap() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&chunk).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert_eq!(
            decompress_capped(ContentEncoding::Gzip, &bomb, 4096),
            Err(WireError::TooLarge { limit: 4096 })
        );
    }

    #[test]
    fn exactly_the_cap_is_accepted() {
        let data = vec![b'a'; 1000];
        let z = zstd::stream::encode_all(data.as_slice(), 3).unwrap();
        assert_eq!(
            decompress_capped(ContentEncoding::Zstd, &z, 1000).unwrap(),
            data
        );
        assert!(decompress_capped(ContentEncoding::Zstd, &z, 999).is_err());
        assert!(decompress_capped(ContentEncoding::Identity, &data, 999).is_err());
    }

    #[test]
    fn corrupt_streams_are_errors_not_panics() {
        assert!(matches!(
            decompress_capped(ContentEncoding::Zstd, b"\x28\xb5\x2f\xfdgarbage", 1024),
            Err(WireError::Decompress { .. })
        ));
        assert!(matches!(
            decompress_capped(ContentEncoding::Gzip, b"\x1f\x8bgarbage", 1024),
            Err(WireError::Decompress { .. })
        ));
        let mut framed = MAGIC.to_vec();
        framed.push(VERSION);
        framed.extend(zstd::stream::encode_all(&b"\xff\xff\xff\xff\xff"[..], 3).unwrap());
        assert!(matches!(decode(&framed, 1024), Err(WireError::Payload(_))));
    }

    #[test]
    fn a_context_left_mid_stream_decodes_the_next_body_from_its_start() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let z = zstd::stream::encode_all(data.as_slice(), 3).unwrap();
        let other = zstd::stream::encode_all(&b"another body"[..], 3).unwrap();
        for _ in 0..2 {
            // Stopped at the cap, then cut short, then corrupt: each gives a context back to
            // the pool in the middle of a frame, and the next body takes it again.
            assert!(decompress_capped(ContentEncoding::Zstd, &z, 1000).is_err());
            assert!(decompress_capped(ContentEncoding::Zstd, &z[..z.len() / 2], 1 << 30).is_err());
            assert!(decompress_capped(ContentEncoding::Zstd, b"\x28\xb5\x2f\xfdxx", 1024).is_err());
            assert_eq!(
                decompress_capped(ContentEncoding::Zstd, &z, 1 << 30).unwrap(),
                data
            );
            assert_eq!(
                decompress_capped(ContentEncoding::Zstd, &other, 1024).unwrap(),
                b"another body"
            );
        }
    }

    #[test]
    fn contexts_are_kept_up_to_a_count_and_a_size() {
        let pool = ContextPool::new();
        let small = zstd::stream::encode_all(&b"small"[..], 3).unwrap();
        let mut contexts: Vec<_> = (0..ContextPool::KEPT + 3)
            .map(|_| pool.take().unwrap())
            .collect();
        for context in &mut contexts {
            let decoder = zstd::stream::read::Decoder::with_context(&small[..], context);
            assert_eq!(
                read_capped(decoder, small.len(), 1024, "zstd").unwrap(),
                b"small"
            );
        }
        for context in contexts {
            pool.give(context);
        }
        let sizes = pool.sizes();
        assert_eq!(
            sizes.len(),
            ContextPool::KEPT,
            "a burst keeps no more than the bound"
        );
        assert!(
            sizes.iter().all(|&s| s <= ContextPool::LARGEST),
            "{sizes:?}"
        );
        // 32 MiB that do not repeat within 8 MiB, compressed with a 16 MiB window and no
        // content size in the frame: the decoder needs a window's worth of buffer.
        let mut big = Vec::new();
        let mut encoder = zstd::stream::write::Encoder::new(&mut big, 1).unwrap();
        encoder.include_contentsize(false).unwrap();
        encoder.window_log(24).unwrap();
        let block: Vec<u8> = (0..1u32 << 21)
            .flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes())
            .collect();
        for _ in 0..4 {
            std::io::Write::write_all(&mut encoder, &block).unwrap();
        }
        encoder.finish().unwrap();
        let mut context = pool.take().unwrap();
        let decoder = zstd::stream::read::Decoder::with_context(&big[..], &mut context);
        let plain = read_capped(decoder, big.len(), 64 << 20, "zstd").unwrap();
        assert_eq!(plain.len(), 32 << 20);
        assert!(
            context.sizeof() > ContextPool::LARGEST,
            "{}",
            context.sizeof()
        );
        pool.give(context);
        assert_eq!(
            pool.sizes().len(),
            ContextPool::KEPT - 1,
            "the grown context was dropped"
        );
        // The route every body takes, with a large body among small ones.
        assert_eq!(
            decompress_capped(ContentEncoding::Zstd, &big, 64 << 20)
                .unwrap()
                .len(),
            32 << 20
        );
        assert_eq!(
            decompress_capped(ContentEncoding::Zstd, &small, 1024).unwrap(),
            b"small"
        );
    }

    #[test]
    fn a_framed_message_holds_its_bytes_not_the_payload_bound() {
        // 1 MiB of a repeating pattern compresses to a few KB; the message kept until it is
        // sent must not carry capacity for the uncompressed size.
        let payload: Vec<u8> = (0..1u32 << 20).map(|i| (i % 7) as u8).collect();
        let message = frame(MAGIC, VERSION, &payload, 3);
        assert!(
            message.len() < 64 << 10,
            "compressed to {} bytes",
            message.len()
        );
        assert!(
            message.capacity() < 2 * message.len(),
            "message of {} bytes keeps {} bytes of capacity",
            message.len(),
            message.capacity()
        );
        let back = unframe(&message, ("snapshot", MAGIC, VERSION), 2 << 20).unwrap();
        assert_eq!(back, payload);
        // The kept context switches levels and still frames correctly.
        let other = frame(MAGIC, VERSION, &payload, 9);
        let back = unframe(&other, ("snapshot", MAGIC, VERSION), 2 << 20).unwrap();
        assert_eq!(back, payload);
    }

    #[test]
    fn integral_values_are_compact() {
        let mut s = sample();
        s.families[0].series[0].value = Value::Scalar(1.0);
        let int = postcard::to_stdvec(&s).unwrap().len();
        s.families[0].series[0].value = Value::Scalar(1.5);
        let float = postcard::to_stdvec(&s).unwrap().len();
        assert!(int + 7 <= float, "int {int} float {float}");
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>().prop_filter("NaN never compares equal", |f| !f.is_nan()),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(9_007_199_254_740_993.0),
        ]
    }

    fn arb_label() -> impl Strategy<Value = Label> {
        ("[a-z_][a-z0-9_]{0,8}", any::<String>()).prop_map(|(n, v)| Label::new(n, v))
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            arb_f64().prop_map(Value::Scalar),
            (
                prop::collection::vec((arb_f64(), arb_f64()), 0..4),
                arb_f64(),
                arb_f64()
            )
                .prop_map(|(b, sum, count)| Value::Histogram(Histogram {
                    buckets: b
                        .into_iter()
                        .map(|(le, count)| Bucket { le, count })
                        .collect(),
                    sum,
                    count,
                })),
            (
                prop::collection::vec((arb_f64(), arb_f64()), 0..4),
                arb_f64(),
                arb_f64()
            )
                .prop_map(|(q, sum, count)| Value::Summary(Summary {
                    quantiles: q
                        .into_iter()
                        .map(|(quantile, value)| Quantile { quantile, value })
                        .collect(),
                    sum,
                    count,
                })),
        ]
    }

    fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
        let series = (prop::collection::vec(arb_label(), 0..4), arb_value())
            .prop_map(|(labels, value)| Series { labels, value });
        let family = (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            any::<String>(),
            prop_oneof![
                Just(MetricType::Counter),
                Just(MetricType::Gauge),
                Just(MetricType::Untyped),
                Just(MetricType::Histogram),
                Just(MetricType::Summary),
            ],
            prop::collection::vec(series, 0..5),
        )
            .prop_map(|(name, help, kind, series)| Family {
                name,
                help,
                kind,
                series,
            });
        (
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
            prop::collection::vec(family, 0..6),
        )
            .prop_map(|(seq, interval_ms, timestamp_ms, families)| Snapshot {
                seq,
                interval_ms,
                timestamp_ms,
                families,
            })
    }

    proptest! {
        #[test]
        fn prop_round_trip(s in arb_snapshot()) {
            let bytes = encode(&s);
            let back = decode(&bytes, 16 << 20).unwrap();
            // Compare bit patterns so -0.0 and +0.0 are told apart.
            prop_assert_eq!(format!("{:?}", back), format!("{:?}", s));
        }

        #[test]
        fn prop_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, 4096);
            let mut framed = MAGIC.to_vec();
            framed.push(VERSION);
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed, 4096);
        }
    }
}
