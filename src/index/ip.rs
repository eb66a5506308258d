//! IP index: exact addresses and CIDR networks, IPv4 and IPv6.
//!
//! Networks are grouped by prefix length. For each prefix length present in
//! the indicators, a hash map goes from the masked network address to the
//! indicator ids. A lookup costs one hash probe per distinct prefix length
//! (at most 33 for IPv4 and 129 for IPv6). It returns every containing
//! network, the most specific first.

use std::net::IpAddr;

use ipnet::IpNet;

use super::normalize::fold_mapped_ipv4;
use super::snapshot::{group_postings, Postings};

#[derive(Debug, Default)]
pub(crate) struct IpIndex {
    /// Prefix lengths present among IPv4 networks, longest first.
    v4_prefixes: Vec<u8>,
    /// Prefix lengths present among IPv6 networks, longest first.
    v6_prefixes: Vec<u8>,
    v4: Postings<(u8, u32)>,
    v6: Postings<(u8, u128)>,
}

impl IpIndex {
    /// Builds the index from `(network, indicator id)` pairs.
    pub(crate) fn build(entries: impl IntoIterator<Item = (IpNet, u32)>) -> IpIndex {
        let mut v4_pairs = Vec::new();
        let mut v6_pairs = Vec::new();
        for (net, id) in entries {
            match net.trunc() {
                IpNet::V4(net) => {
                    v4_pairs.push(((net.prefix_len(), u32::from(net.network())), id));
                }
                IpNet::V6(net) => {
                    v6_pairs.push(((net.prefix_len(), u128::from(net.network())), id));
                }
            }
        }
        let v4_prefixes = distinct_prefixes(v4_pairs.iter().map(|((len, _), _)| *len));
        let v6_prefixes = distinct_prefixes(v6_pairs.iter().map(|((len, _), _)| *len));
        IpIndex {
            v4_prefixes,
            v6_prefixes,
            v4: group_postings(v4_pairs),
            v6: group_postings(v6_pairs),
        }
    }

    /// Appends the ids of every network that contains `addr`, the longest
    /// prefix first. An IPv4-mapped IPv6 address is looked up as IPv4.
    pub(crate) fn lookup(&self, addr: IpAddr, out: &mut Vec<u32>) {
        match fold_mapped_ipv4(addr) {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                for &len in &self.v4_prefixes {
                    let key = (len, bits & mask_v4(len));
                    out.extend_from_slice(self.v4.get(&key));
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                for &len in &self.v6_prefixes {
                    let key = (len, bits & mask_v6(len));
                    out.extend_from_slice(self.v6.get(&key));
                }
            }
        }
    }
}

fn distinct_prefixes(lengths: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut prefixes: Vec<u8> = lengths.collect();
    prefixes.sort_unstable_by(|a, b| b.cmp(a));
    prefixes.dedup();
    prefixes
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

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn found(index: &IpIndex, addr: &str) -> Vec<u32> {
        let mut out = Vec::new();
        index.lookup(ip(addr), &mut out);
        out
    }

    #[test]
    fn masks_edges() {
        assert_eq!(mask_v4(0), 0);
        assert_eq!(mask_v4(24), 0xffff_ff00);
        assert_eq!(mask_v4(32), u32::MAX);
        assert_eq!(mask_v6(0), 0);
        assert_eq!(mask_v6(128), u128::MAX);
    }

    #[test]
    fn nested_networks_longest_first() {
        let index = IpIndex::build([
            (net("198.51.100.0/24"), 0),
            (net("198.51.100.7/32"), 1),
            (net("0.0.0.0/0"), 2),
            (net("2001:db8::/32"), 3),
        ]);
        assert_eq!(found(&index, "198.51.100.7"), vec![1, 0, 2]);
        assert_eq!(found(&index, "198.51.100.8"), vec![0, 2]);
        assert_eq!(found(&index, "203.0.113.1"), vec![2]);
        assert_eq!(found(&index, "2001:db8:1::5"), vec![3]);
        assert_eq!(found(&index, "2001:db9::5"), Vec::<u32>::new());
    }

    #[test]
    fn mapped_address_folds() {
        let index = IpIndex::build([(net("192.0.2.0/28"), 0)]);
        assert_eq!(found(&index, "::ffff:192.0.2.9"), vec![0]);
    }
}
