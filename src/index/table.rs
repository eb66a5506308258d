//! Key tables of the index: open-addressing hash tables from a key's 64-bit
//! hash to the first record of its group in the [`super::store::Store`],
//! and the keyed hashers that feed them.
//!
//! A table stores no keys. Every candidate slot is checked by comparing the
//! query with the record's stored value, so two keys with the same hash
//! only cost an extra comparison.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Slot value of an empty slot. Record numbers stay below `u32::MAX`
/// because a snapshot stores at most `MAX_RECORDS` (2^29 - 1) records.
const EMPTY: u64 = u64::MAX;

/// Bytes of text hashed per `write` call. Build and lookup use the same
/// chunking, so the stored text and a case-folded query hash alike.
const TEXT_CHUNK: usize = 32;

/// An open-addressing table with linear probing. Each slot packs the upper
/// 32 bits of the key hash (the tag) and a record number. The capacity is a
/// power of two at least 1.5 times the key count, so the load stays at or
/// below two thirds and a probe meets an empty slot within a few slots.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    slots: Box<[u64]>,
}

impl KeyTable {
    pub(crate) fn with_keys(keys: usize) -> KeyTable {
        if keys == 0 {
            return KeyTable::default();
        }
        let capacity = (keys + keys / 2 + 1).next_power_of_two();
        KeyTable {
            slots: vec![EMPTY; capacity].into_boxed_slice(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Inserts `record` under `hash`. Each key is inserted once, so equal
    /// hashes only come from different keys.
    pub(crate) fn insert(&mut self, hash: u64, record: u32) {
        let mask = self.slots.len() - 1;
        let mut position = hash as usize & mask;
        // The table always has an empty slot (capacity > keys), so the
        // loop ends.
        while self.slots[position] != EMPTY {
            position = (position + 1) & mask;
        }
        self.slots[position] = (hash & 0xffff_ffff_0000_0000) | u64::from(record);
    }

    /// Returns the first record under `hash` for which `is_key` holds.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let tag = hash & 0xffff_ffff_0000_0000;
        let mut position = hash as usize & mask;
        loop {
            let slot = self.slots[position];
            if slot == EMPTY {
                return None;
            }
            if slot & 0xffff_ffff_0000_0000 == tag && is_key(slot as u32) {
                return Some(slot as u32);
            }
            position = (position + 1) & mask;
        }
    }

    /// Bytes held by the table, for memory reports.
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }
}

/// The keyed hashers of one snapshot, random per snapshot.
///
/// Text (domains, URLs, email addresses) is hashed with std's SipHash, a
/// keyed PRF, because observables come from mail an attacker writes. Fixed
/// binary keys (networks, digests) use [`Mix`], because an IPv4 lookup
/// hashes one key per prefix length in the index and SipHash was most of
/// its time.
#[derive(Debug, Clone)]
pub(crate) struct KeyHasher {
    text: RandomState,
    mix: u64,
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher {
            text: RandomState::new(),
            mix: RandomState::new().hash_one(0x1f0c_5eed_u64),
        }
    }
}

impl KeyHasher {
    /// Hashes `text`, folding ASCII letters to lowercase when `fold_case`
    /// is set, without allocating.
    #[inline]
    pub(crate) fn text(&self, text: &[u8], fold_case: bool) -> u64 {
        let mut hasher = self.text.build_hasher();
        let mut buffer = [0u8; TEXT_CHUNK];
        for chunk in text.chunks(TEXT_CHUNK) {
            if fold_case {
                let folded = &mut buffer[..chunk.len()];
                folded.copy_from_slice(chunk);
                folded.make_ascii_lowercase();
                hasher.write(folded);
            } else {
                hasher.write(chunk);
            }
        }
        hasher.finish()
    }

    /// Hashes an IPv4 network given as prefix length and masked address.
    #[inline]
    pub(crate) fn v4(&self, len: u8, network: u32) -> u64 {
        let mut hasher = Mix(self.mix);
        hasher.write_u64((u64::from(len) << 32) | u64::from(network));
        hasher.finish()
    }

    /// Hashes an IPv6 network given as prefix length and masked address.
    #[inline]
    pub(crate) fn v6(&self, len: u8, network: u128) -> u64 {
        let mut hasher = Mix(self.mix);
        hasher.write_u8(len);
        hasher.write_u128(network);
        hasher.finish()
    }

    /// Hashes a file digest.
    #[inline]
    pub(crate) fn digest(&self, bytes: &[u8]) -> u64 {
        let mut hasher = Mix(self.mix);
        hasher.write(bytes);
        hasher.finish()
    }
}

/// A multiply-rotate mix of 64-bit words from a random key, finished with
/// the SplitMix64 finalizer.
///
/// The random key keeps feed values from choosing collisions without
/// knowing it.
/// NOTE: unlike SipHash, this mix is not a keyed PRF, so an attacker who
/// could observe lookup timing might still learn enough to build slow keys.
pub(crate) struct Mix(u64);

impl Hasher for Mix {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            if let Some(head) = word.get_mut(..chunk.len()) {
                head.copy_from_slice(chunk);
            }
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }

    fn write_u128(&mut self, value: u128) {
        self.write_u64(value as u64);
        self.write_u64((value >> 64) as u64);
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_finds_inserted() {
        let mut table = KeyTable::with_keys(3);
        table.insert(0x1234_0000_0000_0001, 7);
        table.insert(0x5678_0000_0000_0001, 9);
        assert_eq!(table.find(0x1234_0000_0000_0001, |_| true), Some(7));
        assert_eq!(table.find(0x5678_0000_0000_0001, |_| true), Some(9));
        assert_eq!(table.find(0x9999_0000_0000_0001, |_| true), None);
    }

    #[test]
    fn table_equal_hashes_probe_on() {
        let mut table = KeyTable::with_keys(2);
        table.insert(42, 1);
        table.insert(42, 2);
        assert_eq!(table.find(42, |record| record == 2), Some(2));
        assert_eq!(table.find(42, |_| false), None);
    }

    #[test]
    fn empty_table_finds_nothing() {
        assert_eq!(KeyTable::with_keys(0).find(42, |_| true), None);
    }

    #[test]
    fn text_hash_folds_case() {
        let hasher = KeyHasher::default();
        let long = "Login.Example.NET/".repeat(5);
        assert_eq!(
            hasher.text(long.as_bytes(), true),
            hasher.text(long.to_ascii_lowercase().as_bytes(), false)
        );
        assert_ne!(
            hasher.text(long.as_bytes(), false),
            hasher.text(long.to_ascii_lowercase().as_bytes(), false)
        );
    }

    #[test]
    fn mix_hash_keyed() {
        let a = KeyHasher {
            mix: 1,
            ..KeyHasher::default()
        };
        let b = KeyHasher {
            mix: 2,
            ..KeyHasher::default()
        };
        assert_eq!(a.v4(24, 0xc633_6400), a.clone().v4(24, 0xc633_6400));
        assert_ne!(a.v4(24, 0xc633_6400), b.v4(24, 0xc633_6400));
        assert_ne!(a.v4(24, 0xc633_6400), a.v4(25, 0xc633_6400));
    }
}
