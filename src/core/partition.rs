//! Key partitioning, the Kinesis way.
//!
//! Kinesis maps a partition key to a shard with the MD5 hash of the key, read as a 128-bit
//! unsigned integer, and gives each shard a contiguous range of that hash space. osprey does
//! the same: the hash picks one of a fixed number of *key groups* (contiguous slices of the
//! hash space), and each worker partition owns a contiguous run of key groups. State is stored
//! per key group, so a later version can hand a range of key groups (and its state) to another
//! worker together with the Kinesis shards that cover the same hash range.

use md5::{Digest, Md5};

/// The 128-bit hash Kinesis computes for a partition key.
pub fn hash_key(key: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(key).into())
}

/// The key group of a hash: the hash space cut into `key_groups` equal contiguous slices.
///
/// Uses the top 64 bits of the hash, which keeps the slices contiguous for any group count.
pub fn key_group_of_hash(hash: u128, key_groups: u16) -> u16 {
    let top = (hash >> 64) as u64;
    ((u128::from(top) * u128::from(key_groups)) >> 64) as u16
}

/// The key group of a key.
pub fn key_group(key: &[u8], key_groups: u16) -> u16 {
    key_group_of_hash(hash_key(key), key_groups)
}

/// The partition that owns a key group: partitions own contiguous, near-equal runs.
pub fn partition_of(key_group: u16, key_groups: u16, partitions: usize) -> usize {
    (usize::from(key_group) * partitions) / usize::from(key_groups)
}

/// The inclusive range of 128-bit hash keys covered by a key group (as Kinesis prints them).
pub fn hash_range(key_group: u16, key_groups: u16) -> (u128, u128) {
    // Smallest top-64 value t with floor(t * groups / 2^64) >= g is ceil(g * 2^64 / groups).
    let start = |g: u128| -> u128 {
        let num = g << 64;
        let groups = u128::from(key_groups);
        num.div_ceil(groups)
    };
    let lo = start(u128::from(key_group)) << 64;
    let hi = if key_group + 1 == key_groups {
        u128::MAX
    } else {
        (start(u128::from(key_group) + 1) << 64) - 1
    };
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn md5_matches_kinesis_hash() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e.
        assert_eq!(hash_key(b""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn groups_spread_keys() {
        let mut counts = [0u32; 256];
        for i in 0..100_000 {
            counts[key_group(format!("key-{i}").as_bytes(), 256) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (250..550).contains(&c)),
            "{counts:?}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn group_matches_its_hash_range(hash: u128, groups in 1u16..=1024) {
            let g = key_group_of_hash(hash, groups);
            prop_assert!(g < groups);
            let (lo, hi) = hash_range(g, groups);
            prop_assert!(lo <= hash && hash <= hi, "{lo:x} <= {hash:x} <= {hi:x}");
        }

        #[test]
        fn partitions_are_contiguous(groups in 1u16..=1024, parts in 1usize..=64) {
            let mut last = 0;
            for g in 0..groups {
                let p = partition_of(g, groups, parts);
                prop_assert!(p < parts && p >= last);
                last = p;
            }
        }
    }
}
