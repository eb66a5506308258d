//! IP index: exact addresses and CIDR networks, IPv4 and IPv6.
//!
//! Networks are grouped by prefix length. For each prefix length present in
//! the indicators, a key table goes from the masked network address to the
//! first record of that network. A lookup costs one hash probe per distinct
//! prefix length (at most 33 for IPv4 and 129 for IPv6). For IPv4, a
//! 512 KiB summary of the lengths in each /16 block skips the lengths that
//! have no network in the address's block. It returns every containing network, the most
//! specific first.

use std::net::IpAddr;

use ipnet::IpNet;

use super::normalize::fold_mapped_ipv4;
use super::store::{decode_ip, Store};
use super::table::{KeyHasher, KeyTable};

/// One key table per prefix length, longest first, so a probe for a
/// prefix length with few networks stays in a small table that the cache
/// keeps.
#[derive(Debug, Default)]
pub(crate) struct IpIndex {
    v4: Vec<(u8, KeyTable)>,
    v4_blocks: V4Blocks,
    v6: Vec<(u8, KeyTable)>,
}

/// The IPv4 prefix lengths worth probing for an address, as bits: for each
/// /16 block, the lengths of the networks of /16 or longer inside it.
/// Networks shorter than /16 span whole blocks, so their lengths are
/// probed for every address.
#[derive(Debug, Default)]
pub(crate) struct V4Blocks {
    /// 65,536 entries, or none before the first network of /16 or longer.
    by_block: Box<[u64]>,
    always: u64,
}

impl V4Blocks {
    pub(crate) fn add(&mut self, len: u8, network: u32) {
        let bit = 1u64 << len.min(32);
        if len < 16 {
            self.always |= bit;
            return;
        }
        if self.by_block.is_empty() {
            self.by_block = vec![0; 1 << 16].into_boxed_slice();
        }
        if let Some(lengths) = self.by_block.get_mut((network >> 16) as usize) {
            *lengths |= bit;
        }
    }

    #[inline]
    fn lengths_for(&self, addr: u32) -> u64 {
        let in_block = self.by_block.get((addr >> 16) as usize).copied();
        self.always | in_block.unwrap_or(0)
    }
}

/// Hashes the key of a network.
pub(crate) fn hash_key(hasher: &KeyHasher, net: &IpNet) -> u64 {
    match net.trunc() {
        IpNet::V4(net) => hasher.v4(net.prefix_len(), u32::from(net.network())),
        IpNet::V6(net) => hasher.v6(net.prefix_len(), u128::from(net.network())),
    }
}

impl IpIndex {
    /// Builds the index from key tables indexed by prefix length, one
    /// list per address family. Empty tables are left out.
    pub(crate) fn new(v4: Vec<KeyTable>, v4_blocks: V4Blocks, v6: Vec<KeyTable>) -> IpIndex {
        let longest_first = |tables: Vec<KeyTable>| {
            let mut tables: Vec<(u8, KeyTable)> = tables
                .into_iter()
                .enumerate()
                .filter(|(_, table)| !table.is_empty())
                .map(|(len, table)| (len as u8, table))
                .collect();
            tables.reverse();
            tables
        };
        IpIndex {
            v4: longest_first(v4),
            v4_blocks,
            v6: longest_first(v6),
        }
    }

    /// Calls `visit` with the records of every network that contains
    /// `addr`, the longest prefix first. An IPv4-mapped IPv6 address is
    /// looked up as IPv4.
    #[inline]
    pub(crate) fn lookup(
        &self,
        store: &Store,
        hasher: &KeyHasher,
        addr: IpAddr,
        visit: impl FnMut(u32),
    ) {
        self.lookup_containing(store, hasher, addr, u8::MAX, visit);
    }

    /// Calls `visit` with the records of every network of `max_len` bits
    /// or fewer that contains `addr`, the longest prefix first. With
    /// `addr` the network address of a network of `max_len` bits, these
    /// are the networks that contain that whole network, itself included.
    #[inline]
    pub(crate) fn lookup_containing(
        &self,
        store: &Store,
        hasher: &KeyHasher,
        addr: IpAddr,
        max_len: u8,
        mut visit: impl FnMut(u32),
    ) {
        let longer_than_max = |(len, _): &&(u8, KeyTable)| *len > max_len;
        match fold_mapped_ipv4(addr) {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                // Blocks are /16: a network shorter than /16 has no
                // containing network of /16 or longer, so the block of its
                // network address gives the right lengths too.
                let present = self.v4_blocks.lengths_for(bits);
                for (len, table) in self.v4.iter().skip_while(longer_than_max) {
                    let len = *len;
                    if present & (1u64 << len) == 0 {
                        continue;
                    }
                    let network = bits & mask_v4(len);
                    let is_key = |record: u32| {
                        matches!(decode_ip(store.value_bytes(record)),
                            Some(IpNet::V4(net)) if net.prefix_len() == len
                                && u32::from(net.network()) == network)
                    };
                    if let Some(first) = table.find(hasher.v4(len, network), is_key) {
                        store.each_of_key(first, &mut visit);
                    }
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                for (len, table) in self.v6.iter().skip_while(longer_than_max) {
                    let len = *len;
                    let network = bits & mask_v6(len);
                    let is_key = |record: u32| {
                        matches!(decode_ip(store.value_bytes(record)),
                            Some(IpNet::V6(net)) if net.prefix_len() == len
                                && u128::from(net.network()) == network)
                    };
                    if let Some(first) = table.find(hasher.v6(len, network), is_key) {
                        store.each_of_key(first, &mut visit);
                    }
                }
            }
        }
    }

    /// Bytes held by the tables, for memory reports.
    pub(crate) fn heap_bytes(&self) -> usize {
        let tables: usize = self
            .v4
            .iter()
            .chain(&self.v6)
            .map(|(_, table)| table.heap_bytes())
            .sum();
        tables + std::mem::size_of_val(&*self.v4_blocks.by_block)
    }
}

fn mask_v4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask_v6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_edges() {
        assert_eq!(mask_v4(0), 0);
        assert_eq!(mask_v4(24), 0xffff_ff00);
        assert_eq!(mask_v4(32), u32::MAX);
        assert_eq!(mask_v6(0), 0);
        assert_eq!(mask_v6(128), u128::MAX);
    }
}
