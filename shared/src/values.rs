//! The values push: only the sample values of a snapshot whose layout the hub already holds,
//! written relative to the values of the last push the hub accepted (the base).
//!
//! Layout: `VALUES_MAGIC` (4 bytes) · `VALUES_VERSION` (1 byte) · one zstd frame holding
//! `seq, interval_ms, timestamp_ms (zigzag), base_seq` as varints, the layout hash and the
//! checksum of the new values as 8 bytes each, the sample count, then three columns: one tag
//! byte per sample, the varint deltas, the raw float bits. An unchanged sample costs a zero tag
//! (next to nothing once compressed), a counter that moved a varint of its increase.
//!
//! "Samples in layout order" are the exposition lines of the families in snapshot order, series
//! in order: a scalar is one sample; a histogram is each bucket count, the `+Inf` bucket (the
//! count), the sum and the count; a summary is each quantile, the sum and the count.

use crate::codec::{frame, unframe};
use crate::{Family, Value, WireError};

/// First bytes of every encoded values push.
pub const VALUES_MAGIC: [u8; 4] = *b"FGSV";
/// Encoding version written by [`encode_values`] and the only one [`decode_values`] accepts.
pub const VALUES_VERSION: u8 = 1;
/// HTTP `Content-Type` of an encoded values push.
pub const VALUES_CONTENT_TYPE: &str = "application/vnd.fleetgate.values";

/// zstd level of [`encode_values`]: the payload is small and mostly zero tags.
const LEVEL: i32 = 3;

/// Tag of a sample whose bits equal the base's.
const SAME: u8 = 0;
/// Tags `SCALED..=SCALED + MAX_DECIMALS`: the sample is `(round(base·10^k) + delta) / 10^k` with
/// `k = tag - SCALED`; the delta is a zigzag varint. `k = 0` covers integral counters.
const SCALED: u8 = 1;
/// Decimal places tried for a scaled delta (CPU seconds have 2, most gauges 0).
const MAX_DECIMALS: u8 = 6;
/// Tag of a sample sent as its raw 8 float bytes.
const RAW: u8 = 15;
/// Largest magnitude at which every integer is exactly representable in an f64.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// What a values push says besides the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValuesHeader {
    /// Sequence number of this push, as [`crate::Snapshot::seq`].
    pub seq: u64,
    /// The agent's push interval, as [`crate::Snapshot::interval_ms`].
    pub interval_ms: u64,
    /// Collection time, as [`crate::Snapshot::timestamp_ms`].
    pub timestamp_ms: i64,
    /// Sequence number of the accepted push whose values the deltas are relative to.
    pub base_seq: u64,
    /// [`layout_hash`] of the snapshot the values belong to.
    pub layout: u64,
}

/// A decoded values push, ready to be applied to the base values.
#[derive(Debug, Clone, PartialEq)]
pub struct ValuesPush {
    /// Sequence numbers, interval and layout.
    pub header: ValuesHeader,
    /// Number of samples (must equal the base's).
    pub samples: usize,
    /// [`values_checksum`] of the values the sender meant.
    checksum: u64,
    /// The decompressed payload.
    payload: Vec<u8>,
    /// Where the tag, delta and raw columns start in `payload`.
    columns: [usize; 3],
}

/// A stable 64-bit hash of everything in `families` except the values: names, HELP, types,
/// label pairs, bucket bounds and quantiles. Agent and hub compute it the same way on every
/// platform and in every process (no per-process seed). The hub computes it on every native
/// push, so it takes eight bytes per step (FNV-style multiply, a rotation to mix high bits
/// down) rather than FNV-1a's one.
pub fn layout_hash(families: &[Family]) -> u64 {
    let mut h = Fnv::new();
    h.write(b"fleetgate-layout-1");
    h.len(families.len());
    for f in families {
        h.str(&f.name);
        h.str(&f.help);
        h.write(f.kind.as_str().as_bytes());
        h.len(f.series.len());
        for s in &f.series {
            h.len(s.labels.len());
            for l in &s.labels {
                h.str(&l.name);
                h.str(&l.value);
            }
            match &s.value {
                Value::Scalar(_) => h.write(b"s"),
                Value::Histogram(x) => {
                    h.write(b"h");
                    h.len(x.buckets.len());
                    for b in &x.buckets {
                        h.write(&b.le.to_bits().to_le_bytes());
                    }
                }
                Value::Summary(x) => {
                    h.write(b"q");
                    h.len(x.quantiles.len());
                    for q in &x.quantiles {
                        h.write(&q.quantile.to_bits().to_le_bytes());
                    }
                }
            }
        }
    }
    h.0
}

/// The samples of `families` in layout order, every NaN made the one NaN the text format can
/// carry (the hub recovers base values from its rendered text).
pub fn sample_values(families: &[Family]) -> Vec<f64> {
    let mut out = Vec::with_capacity(sample_count(families));
    for f in families {
        for s in &f.series {
            match &s.value {
                Value::Scalar(v) => out.push(*v),
                Value::Histogram(h) => {
                    out.extend(h.buckets.iter().map(|b| b.count));
                    out.extend([h.count, h.sum, h.count]);
                }
                Value::Summary(q) => {
                    out.extend(q.quantiles.iter().map(|q| q.value));
                    out.extend([q.sum, q.count]);
                }
            }
        }
    }
    for v in &mut out {
        *v = canonical(*v);
    }
    out
}

/// Number of samples of `families` in layout order.
pub fn sample_count(families: &[Family]) -> usize {
    families
        .iter()
        .flat_map(|f| &f.series)
        .map(|s| s.value.sample_count())
        .sum()
}

/// FNV-1a over the bits of `values`, NaN made canonical: lets the receiver check that the
/// base it applied the deltas to is the one the sender meant.
pub fn values_checksum(values: &[f64]) -> u64 {
    let mut h = Fnv::new();
    for v in values {
        h.write(&canonical(*v).to_bits().to_le_bytes());
    }
    h.0
}

/// Encodes `values` relative to `base` (the values of the push numbered `header.base_seq`).
/// Samples past the end of `base` are written as if their base were 0.
pub fn encode_values(header: &ValuesHeader, base: &[f64], values: &[f64]) -> Vec<u8> {
    let mut tags = Vec::with_capacity(values.len());
    let mut deltas = Vec::new();
    let mut raw = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let v = canonical(v);
        let b = canonical(base.get(i).copied().unwrap_or(0.0));
        if v.to_bits() == b.to_bits() {
            tags.push(SAME);
            continue;
        }
        match (0..=MAX_DECIMALS).find_map(|k| scaled_delta(b, v, k).map(|d| (k, d))) {
            Some((k, d)) => {
                tags.push(SCALED + k);
                put_varint(&mut deltas, zigzag(d));
            }
            None => {
                tags.push(RAW);
                raw.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }
    let mut payload = Vec::with_capacity(48 + tags.len() + deltas.len() + raw.len());
    put_varint(&mut payload, header.seq);
    put_varint(&mut payload, header.interval_ms);
    put_varint(&mut payload, zigzag(header.timestamp_ms));
    put_varint(&mut payload, header.base_seq);
    payload.extend_from_slice(&header.layout.to_le_bytes());
    payload.extend_from_slice(&values_checksum(values).to_le_bytes());
    put_varint(&mut payload, values.len() as u64);
    payload.extend_from_slice(&tags);
    put_varint(&mut payload, deltas.len() as u64);
    payload.extend_from_slice(&deltas);
    payload.extend_from_slice(&raw);

    frame(VALUES_MAGIC, VALUES_VERSION, &payload, LEVEL)
}

/// Decodes a values push, refusing to decompress past `max_decompressed` bytes. The values
/// themselves come from [`ValuesPush::apply`] once the receiver has found the base.
pub fn decode_values(body: &[u8], max_decompressed: usize) -> Result<ValuesPush, WireError> {
    let payload = unframe(
        body,
        ("values push", VALUES_MAGIC, VALUES_VERSION),
        max_decompressed,
    )?;
    let mut r = Reader {
        bytes: &payload,
        at: 0,
    };
    let header = ValuesHeader {
        seq: r.varint()?,
        interval_ms: r.varint()?,
        timestamp_ms: unzigzag(r.varint()?),
        base_seq: r.varint()?,
        layout: r.u64()?,
    };
    let checksum = r.u64()?;
    let samples = usize::try_from(r.varint()?).map_err(|_| malformed("sample count"))?;
    let tags_at = r.at;
    let tags = r.take(samples)?;
    let raw_needed = 8 * tags.iter().filter(|&&t| t == RAW).count();
    if let Some(&bad) = tags
        .iter()
        .find(|&&t| t != RAW && t > SCALED + MAX_DECIMALS)
    {
        return Err(malformed(&format!("unknown sample tag {bad}")));
    }
    let deltas_len = usize::try_from(r.varint()?).map_err(|_| malformed("delta length"))?;
    let deltas_at = r.at;
    r.take(deltas_len)?;
    let raw_at = r.at;
    if payload.len() - raw_at != raw_needed {
        return Err(malformed("raw value column has the wrong length"));
    }
    Ok(ValuesPush {
        header,
        samples,
        checksum,
        columns: [tags_at, deltas_at, raw_at],
        payload,
    })
}

impl ValuesPush {
    /// The new values: the deltas applied to `base`, which must be the values of the push
    /// `header.base_seq` in layout order. Refused when `base` has another sample count or the
    /// result is not what the sender meant (its checksum differs).
    pub fn apply(&self, base: &[f64]) -> Result<Vec<f64>, WireError> {
        if base.len() != self.samples {
            return Err(WireError::BaseMismatch(format!(
                "the push has {} samples, the base {}",
                self.samples,
                base.len()
            )));
        }
        let [tags_at, deltas_at, raw_at] = self.columns;
        let tags = &self.payload[tags_at..tags_at + self.samples];
        let mut deltas = Reader {
            bytes: &self.payload[..raw_at],
            at: deltas_at,
        };
        let mut raw = self.payload[raw_at..].chunks_exact(8);
        let mut out = Vec::with_capacity(self.samples);
        for (&tag, &b) in tags.iter().zip(base) {
            let b = canonical(b);
            let v = match tag {
                SAME => b,
                RAW => raw
                    .next()
                    .and_then(|c| <[u8; 8]>::try_from(c).ok())
                    .map(|c| f64::from_bits(u64::from_le_bytes(c)))
                    .ok_or_else(|| malformed("raw value column too short"))?,
                _ => {
                    let d = unzigzag(deltas.varint()?);
                    scaled(b, tag - SCALED, d).ok_or_else(|| {
                        WireError::BaseMismatch("a delta does not fit its base value".into())
                    })?
                }
            };
            out.push(v);
        }
        if deltas.at != raw_at {
            return Err(malformed("delta column has bytes left over"));
        }
        if values_checksum(&out) != self.checksum {
            return Err(WireError::BaseMismatch(
                "the values differ from the sender's (checksum)".into(),
            ));
        }
        Ok(out)
    }
}

/// The one NaN the text format can carry.
fn canonical(v: f64) -> f64 {
    if v.is_nan() {
        f64::NAN
    } else {
        v
    }
}

/// `round(base·10^k) + d` over `10^k`, when every step is exact.
fn scaled(base: f64, k: u8, d: i64) -> Option<f64> {
    let scale = 10f64.powi(i32::from(k));
    let b = (base * scale).round();
    if !b.is_finite() || b.abs() > EXACT {
        return None;
    }
    let v = (b as i64).checked_add(d)?;
    if v.unsigned_abs() > EXACT as u64 {
        return None;
    }
    Some(v as f64 / scale)
}

/// The delta that makes [`scaled`] yield exactly `v` from `base` with `k` decimals.
fn scaled_delta(base: f64, v: f64, k: u8) -> Option<i64> {
    let scale = 10f64.powi(i32::from(k));
    let (b, n) = ((base * scale).round(), (v * scale).round());
    if !(b.is_finite() && n.is_finite()) || b.abs() > EXACT || n.abs() > EXACT {
        return None;
    }
    let d = (n as i64).checked_sub(b as i64)?;
    scaled(base, k, d)
        .filter(|got| got.to_bits() == v.to_bits())
        .map(|_| d)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn malformed(what: &str) -> WireError {
    WireError::Payload(format!("values push: {what}"))
}

/// Bounds-checked reading of the payload.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| malformed("truncated"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }
}

/// A stable 64-bit hash: FNV's offset and prime over little-endian 8-byte words (the last one
/// zero-padded), with length prefixes so that adjacent strings cannot run together.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.word(u64::from_le_bytes(a));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut a = [0u8; 8];
            a[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(a));
        }
    }

    fn len(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.write(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bucket, Histogram, Label, MetricType, Quantile, Series, Summary};
    use proptest::prelude::*;

    fn header() -> ValuesHeader {
        ValuesHeader {
            seq: 42,
            interval_ms: 15_000,
            timestamp_ms: -5,
            base_seq: 41,
            layout: 0xdead_beef_0123_4567,
        }
    }

    fn round_trip(base: &[f64], values: &[f64]) -> Vec<f64> {
        let bytes = encode_values(&header(), base, values);
        assert_eq!(&bytes[..5], b"FGSV\x01");
        let push = decode_values(&bytes, 1 << 20).unwrap();
        assert_eq!(push.header, header());
        assert_eq!(push.samples, values.len());
        push.apply(base).unwrap()
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| canonical(*x).to_bits()).collect()
    }

    #[test]
    fn special_values_round_trip_bit_for_bit() {
        let base = [0.0, 1.0, f64::NAN, 5.0, 1e300, 2.5, -0.0, 9e15, 1.0, 0.1];
        let values = [
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e300 * 3.0,
            2.75,
            0.0,
            9_007_199_254_740_993.0,
            1.8e19,
            0.30000000000000004,
        ];
        assert_eq!(bits(&round_trip(&base, &values)), bits(&values));
    }

    #[test]
    fn unchanged_and_counter_samples_cost_little() {
        let base: Vec<f64> = (0..1000).map(|i| (i * 1_000_003) as f64).collect();
        let same = encode_values(&header(), &base, &base);
        let moved: Vec<f64> = base.iter().map(|v| v + 7.0).collect();
        let counters = encode_values(&header(), &base, &moved);
        assert!(same.len() < 64, "unchanged: {} bytes", same.len());
        assert!(counters.len() < 200, "counters: {} bytes", counters.len());
        let cpu: Vec<f64> = (0..1000).map(|i| (i * 317) as f64 / 100.0).collect();
        let cpu_next: Vec<f64> = (0..1000).map(|i| (i * 317 + 23) as f64 / 100.0).collect();
        let bytes = encode_values(&header(), &cpu, &cpu_next);
        let push = decode_values(&bytes, 1 << 20).unwrap();
        assert_eq!(bits(&push.apply(&cpu).unwrap()), bits(&cpu_next));
        let tags = &push.payload[push.columns[0]..push.columns[1]];
        assert!(tags.iter().filter(|&&t| t == RAW).count() < 10);
    }

    #[test]
    fn a_different_base_is_refused() {
        let base = [1.0, 2.0, 3.0];
        let bytes = encode_values(&header(), &base, &[1.0, 5.0, 3.5]);
        let push = decode_values(&bytes, 1 << 20).unwrap();
        assert!(matches!(
            push.apply(&[1.0, 2.0]),
            Err(WireError::BaseMismatch(_))
        ));
        assert!(matches!(
            push.apply(&[1.0, 2.5, 3.0]),
            Err(WireError::BaseMismatch(_))
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(decode_values(b"FGSN\x01", 1024), Err(WireError::BadMagic));
        assert_eq!(
            decode_values(b"FGSV\x07abc", 1024),
            Err(WireError::UnsupportedVersion {
                kind: "values push",
                found: 7,
                supported: VALUES_VERSION
            })
        );
        let mut framed = b"FGSV\x01".to_vec();
        framed.extend(zstd::stream::encode_all(&[1u8, 2, 3][..], 3).unwrap());
        assert!(matches!(
            decode_values(&framed, 1024),
            Err(WireError::Payload(_))
        ));
        let big: Vec<f64> = (0..100_000).map(f64::from).collect();
        let bytes = encode_values(&header(), &[], &big);
        assert!(matches!(
            decode_values(&bytes, 1000),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn layout_hash_is_pinned_for_strings_of_every_tail_length() {
        // Names and label values of 0 to 17 bytes: every length of a last, zero-padded word,
        // and more than one word. Agents and hubs of different builds must agree on it.
        let text = "abcdefghijklmnopq";
        let families: Vec<Family> = (0..=text.len())
            .map(|n| Family {
                name: text[..n].to_string(),
                help: text[n..].to_string(),
                kind: MetricType::Gauge,
                series: vec![Series {
                    labels: vec![Label::new(&text[..n / 2], &text[n / 2..])],
                    value: Value::Scalar(n as f64),
                }],
            })
            .collect();
        let h = layout_hash(&families);
        assert_eq!(h, 0x5beb_a3c4_9f05_88da, "{h:#x}");
    }

    #[test]
    fn layout_hash_ignores_values_only() {
        let fam = |v: f64, help: &str, le: f64| Family {
            name: "m".into(),
            help: help.into(),
            kind: MetricType::Histogram,
            series: vec![Series {
                labels: vec![Label::new("a", "b")],
                value: Value::Histogram(Histogram {
                    buckets: vec![Bucket { le, count: v }],
                    sum: v,
                    count: v,
                }),
            }],
        };
        let a = layout_hash(&[fam(1.0, "h", 0.5)]);
        assert_eq!(a, layout_hash(&[fam(2.0, "h", 0.5)]));
        assert_ne!(a, layout_hash(&[fam(1.0, "h2", 0.5)]));
        assert_ne!(a, layout_hash(&[fam(1.0, "h", 0.25)]));
        // Pinned: the hash must not change between builds, or agents and hubs of different
        // versions would never agree.
        assert_eq!(
            layout_hash(&[]),
            0xb36e_639c_f830_0f50,
            "{:#x}",
            layout_hash(&[])
        );
    }

    #[test]
    fn sample_order_matches_the_exposition_lines() {
        let fams = vec![
            Family {
                name: "h".into(),
                help: String::new(),
                kind: MetricType::Histogram,
                series: vec![Series {
                    labels: vec![],
                    value: Value::Histogram(Histogram {
                        buckets: vec![Bucket {
                            le: 1.0,
                            count: 1.0,
                        }],
                        sum: 2.0,
                        count: 3.0,
                    }),
                }],
            },
            Family {
                name: "s".into(),
                help: String::new(),
                kind: MetricType::Summary,
                series: vec![Series {
                    labels: vec![],
                    value: Value::Summary(Summary {
                        quantiles: vec![Quantile {
                            quantile: 0.5,
                            value: 4.0,
                        }],
                        sum: 5.0,
                        count: 6.0,
                    }),
                }],
            },
        ];
        let text = crate::text::render(&fams);
        let from_text: Vec<f64> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(sample_values(&fams), from_text);
        assert_eq!(sample_count(&fams), 7);
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64),
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            Just(-0.0),
            Just(1.8e19),
        ]
    }

    proptest! {
        #[test]
        fn prop_values_round_trip(
            pairs in prop::collection::vec((arb_f64(), arb_f64(), any::<bool>()), 0..200)
        ) {
            let base: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let values: Vec<f64> = pairs.iter().map(|p| if p.2 { p.0 } else { p.1 }).collect();
            prop_assert_eq!(bits(&round_trip(&base, &values)), bits(&values));
        }

        #[test]
        fn prop_decode_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            base in prop::collection::vec(arb_f64(), 0..8),
        ) {
            let _ = decode_values(&bytes, 4096);
            let mut framed = VALUES_MAGIC.to_vec();
            framed.push(VALUES_VERSION);
            framed.extend(zstd::stream::encode_all(bytes.as_slice(), 1).unwrap());
            if let Ok(push) = decode_values(&framed, 4096) {
                let _ = push.apply(&base);
                let zeros = vec![0.0; push.samples];
                let _ = push.apply(&zeros);
            }
        }
    }
}
