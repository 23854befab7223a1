//! Scrape shards: `GET /metrics?shard=I&of=N` serves only the nodes whose name hashes into
//! shard `I` of `N`, so several scrapers (or one Prometheus with several targets) can split
//! one hub's fleet. The hash is stable across processes, versions and platforms, so a node
//! stays in its shard for as long as `N` stays the same.

/// The largest `of` accepted.
pub const MAX_SHARDS: u32 = 1024;

/// One shard of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, `0 ≤ index < of`.
    pub index: u32,
    /// How many shards the fleet is split into, `1 ≤ of ≤ MAX_SHARDS`.
    pub of: u32,
}

impl Shard {
    /// The shard a `/metrics` query string asks for: `None` for the whole exposition (no
    /// query), or an error naming the offending parameter.
    pub fn from_query(query: Option<&str>) -> Result<Option<Shard>, String> {
        let (mut shard, mut of) = (None, None);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "shard" => &mut shard,
                "of" => &mut of,
                _ => {
                    return Err(format!(
                        "unknown query parameter {key:?} (/metrics takes shard and of)"
                    ))
                }
            };
            if slot.is_some() {
                return Err(format!("query parameter {key} is given twice"));
            }
            let parsed = value.parse::<u32>().map_err(|_| {
                format!("query parameter {key} must be a whole number, got {value:?}")
            })?;
            *slot = Some(parsed);
        }
        match (shard, of) {
            (None, None) => Ok(None),
            (Some(_), None) => Err("query parameter of is missing (shard needs of)".into()),
            (None, Some(_)) => Err("query parameter shard is missing (of needs shard)".into()),
            (Some(_), Some(of)) if of == 0 || of > MAX_SHARDS => Err(format!(
                "query parameter of must be between 1 and {MAX_SHARDS}, got {of}"
            )),
            (Some(index), Some(of)) if index >= of => Err(format!(
                "query parameter shard must be below of ({of}), got {index}"
            )),
            (Some(index), Some(of)) => Ok(Some(Shard { index, of })),
        }
    }

    /// Whether `node`'s series belong to this shard.
    pub fn contains(&self, node: &str) -> bool {
        shard_of(node, self.of) == self.index
    }

    /// Whether this shard carries the hub's own `fleetgate_hub_*` metrics (shard 0 does).
    pub fn carries_hub_metrics(&self) -> bool {
        self.index == 0
    }
}

/// The shard of `of` that `node` belongs to: FNV-1a (64 bit) of the name's bytes, mixed by
/// splitmix64's finalizer so that names differing only in their last characters spread
/// evenly, modulo `of`.
pub fn shard_of(node: &str, of: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % u64::from(of.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_and_bad_ones_named() {
        assert_eq!(Shard::from_query(None), Ok(None));
        assert_eq!(Shard::from_query(Some("")), Ok(None));
        assert_eq!(
            Shard::from_query(Some("shard=3&of=8")),
            Ok(Some(Shard { index: 3, of: 8 }))
        );
        assert_eq!(
            Shard::from_query(Some("of=1024&shard=1023")),
            Ok(Some(Shard {
                index: 1023,
                of: 1024
            }))
        );
        let err = |q: &str| Shard::from_query(Some(q)).unwrap_err();
        assert!(err("shard=8&of=8").contains("shard must be below of (8), got 8"));
        assert!(err("shard=0&of=0").contains("of must be between 1 and 1024, got 0"));
        assert!(err("shard=0&of=1025").contains("of must be between 1 and 1024"));
        assert!(err("shard=-1&of=4").contains("shard must be a whole number, got \"-1\""));
        assert!(err("shard=1&of=x").contains("of must be a whole number, got \"x\""));
        assert!(err("shard=1").contains("of is missing"));
        assert!(err("of=2").contains("shard is missing"));
        assert!(err("shard=1&of=2&shard=0").contains("shard is given twice"));
        assert!(err("shrad=1&of=2").contains("unknown query parameter \"shrad\""));
    }

    #[test]
    fn the_hash_is_stable_and_spreads_a_fleet_evenly() {
        // Fixed values: a node must stay in its shard across hub versions and machines.
        assert_eq!(shard_of("gpu-node-0001", 8), shard_of("gpu-node-0001", 8));
        let pinned: Vec<u32> = ["a", "gpu-01", "lt-00000", "lt-00001"]
            .iter()
            .map(|n| shard_of(n, 1024))
            .collect();
        assert_eq!(pinned, PINNED);
        for of in [2u32, 8, 64] {
            let mut counts = vec![0usize; of as usize];
            for i in 0..10_000 {
                counts[shard_of(&format!("lt-{i:05}"), of) as usize] += 1;
            }
            let mean = 10_000 / of as usize;
            for c in counts {
                assert!(
                    c > mean * 7 / 10 && c < mean * 13 / 10,
                    "{of}: {c} vs {mean}"
                );
            }
        }
        assert_eq!(shard_of("anything", 1), 0);
    }

    // Also what a few lines of Python with the same constants give (docs/SCALING.md).
    const PINNED: [u32; 4] = [248, 1010, 837, 955];
}
