//! The immutable index snapshot.
//!
//! Indicators are stored once, in the compact [`Store`]. A value seen by
//! several sources is one key in a key table and a chain of records. URLs, hashes and email addresses match their key exactly. The
//! host of a URL indicator is not added to the domain index, so a URL
//! indicator never matches other URLs on its host. MD5, SHA-1 and SHA-256
//! digests differ in length, so they never compare equal across
//! algorithms.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde::Serialize;

use super::allowlist::{Allowlist, Suppression};
use super::build;
use super::domain::{find_text, DomainIndex};
use super::indicator::{Indicator, IndicatorRef, IndicatorType};
use super::ip::IpIndex;
use super::normalize::fold_mapped_network;
use super::store::{decode_ip, Store};
use super::table::{KeyHasher, KeyTable};
use crate::extract::{Observable, ObservableValue};

/// One observable that matched one indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub observable: Observable,
    pub indicator: Indicator,
}

/// The IP indicators that match some address of a network, see
/// [`Snapshot::lookup_network`].
#[derive(Debug, Default)]
pub struct NetworkLookup<'a> {
    /// Networks that contain the whole network, the network itself
    /// included, the longest prefix first. They match every address of it.
    pub containing: Vec<IndicatorRef<'a>>,
    /// Addresses and longer-prefix networks inside the network, by address
    /// and then prefix length, at most the requested limit. They match some
    /// addresses of it.
    pub inside: Vec<IndicatorRef<'a>>,
    /// The count of indicators inside the network, including those past
    /// the limit.
    pub inside_total: usize,
}

/// Options for building a snapshot: what is left out and how domains match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Indicators this list covers are left out (see [`Allowlist`]).
    pub allowlist: Allowlist,
    /// Leaves out domain indicators that are public suffixes (`co.uk`,
    /// `github.io`).
    pub suppress_public_suffixes: bool,
    /// Names of sources whose domain indicators match the exact host only,
    /// not its subdomains.
    pub exact_host_sources: BTreeSet<String>,
}

impl Default for BuildOptions {
    /// Returns the bundled allowlist, public suffixes left out, and
    /// subdomain matching for every source.
    fn default() -> BuildOptions {
        BuildOptions {
            allowlist: Allowlist::bundled(),
            suppress_public_suffixes: true,
            exact_host_sources: BTreeSet::new(),
        }
    }
}

impl BuildOptions {
    /// Options that keep every indicator: no allowlist, public suffixes
    /// kept.
    pub fn keep_all() -> BuildOptions {
        BuildOptions {
            allowlist: Allowlist::empty(),
            suppress_public_suffixes: false,
            exact_host_sources: BTreeSet::new(),
        }
    }
}

/// Counts of the indicators a build left out, per source name and reason.
/// Exact repeats are counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildReport {
    pub suppressed: BTreeMap<String, BTreeMap<Suppression, usize>>,
}

impl BuildReport {
    /// Counts the suppressed indicators of one source, every reason
    /// together.
    pub fn suppressed_for(&self, source: &str) -> usize {
        self.suppressed
            .get(source)
            .map_or(0, |reasons| reasons.values().sum())
    }

    /// Counts the suppressed indicators of every source.
    pub fn suppressed_total(&self) -> usize {
        self.suppressed
            .values()
            .flat_map(|reasons| reasons.values())
            .sum()
    }
}

/// An immutable index over the indicators of every source.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub(super) store: Store,
    pub(super) report: BuildReport,
    pub(super) hasher: KeyHasher,
    pub(super) ips: IpIndex,
    pub(super) domains: DomainIndex,
    pub(super) urls: KeyTable,
    pub(super) hashes: KeyTable,
    pub(super) emails: KeyTable,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot::default()
    }

    /// Builds an index from indicators with the default [`BuildOptions`]:
    /// the bundled allowlist and public suffixes are left out. The same
    /// value from several sources or feeds keeps every provenance. An exact
    /// repeat (same value, source, id and package id) is stored once.
    pub fn build<'a>(indicators: impl IntoIterator<Item = &'a Indicator>) -> Snapshot {
        Snapshot::build_with(indicators, &BuildOptions::default())
    }

    /// Builds an index from indicators with `options`. What was left out is
    /// in [`Snapshot::report`].
    pub fn build_with<'a>(
        indicators: impl IntoIterator<Item = &'a Indicator>,
        options: &BuildOptions,
    ) -> Snapshot {
        build::build(indicators, options)
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Returns the counts of indicators the build left out, per source.
    pub fn report(&self) -> &BuildReport {
        &self.report
    }

    pub fn is_empty(&self) -> bool {
        self.store.len() == 0
    }

    /// Estimates the heap bytes of the snapshot: records, arenas and key
    /// tables, without allocator overhead.
    pub fn heap_bytes(&self) -> usize {
        self.store.heap_bytes()
            + self.ips.heap_bytes()
            + self.domains.names.heap_bytes()
            + self.urls.heap_bytes()
            + self.hashes.heap_bytes()
            + self.emails.heap_bytes()
    }

    pub fn counts_by_type(&self) -> BTreeMap<IndicatorType, usize> {
        let mut counts = BTreeMap::new();
        for (_, kind, count) in self.store.counts() {
            *counts.entry(kind).or_insert(0) += count;
        }
        counts
    }

    /// Counts the stored indicators per source name and type.
    pub fn counts_by_source(&self) -> BTreeMap<String, BTreeMap<IndicatorType, usize>> {
        let mut counts: BTreeMap<String, BTreeMap<IndicatorType, usize>> = BTreeMap::new();
        for (source, kind, count) in self.store.counts() {
            let per_type = match counts.get_mut(source) {
                Some(per_type) => per_type,
                None => counts.entry(source.to_string()).or_default(),
            };
            *per_type.entry(kind).or_insert(0) += count;
        }
        counts
    }

    /// Returns every indicator that `value` matches. An IP matches every
    /// network that contains it, the longest prefix first. A domain matches
    /// the indicators of the name and of its parents, the most specific
    /// first. URLs, hashes and email addresses match exactly. Domains and
    /// email addresses are compared in lowercase. Indicators of one value
    /// keep their input order.
    pub fn lookup(&self, value: &ObservableValue) -> Vec<IndicatorRef<'_>> {
        let mut found = Vec::new();
        self.visit(value, |record| found.push(self.store.get(record)));
        found
    }

    /// Returns the IP indicators that match some address of `network`:
    /// those that contain it, found by one hash probe per prefix length as
    /// in [`Snapshot::lookup`], and the first `limit` of those inside it.
    /// The key tables keep no address order, so finding the indicators
    /// inside reads every IP record once (linear in the IP indicators).
    pub fn lookup_network(&self, network: IpNet, limit: usize) -> NetworkLookup<'_> {
        let network = fold_mapped_network(network);
        let mut containing = Vec::new();
        self.ips.lookup_containing(
            &self.store,
            &self.hasher,
            network.network(),
            network.prefix_len(),
            |record| containing.push(self.store.get(record)),
        );

        let mut inside: Vec<(IpNet, u32)> = Vec::new();
        self.store.each_of_kind(IndicatorType::Ip, |record| {
            // Stored networks may keep host bits (`192.0.2.5/24`).
            let Some(stored) = decode_ip(self.store.value_bytes(record)).map(|n| n.trunc()) else {
                return;
            };
            if stored.prefix_len() > network.prefix_len() && network.contains(&stored) {
                inside.push((stored, record));
            }
        });
        inside.sort_unstable();
        let inside_total = inside.len();
        let inside = inside
            .into_iter()
            .take(limit)
            .map(|(_, record)| self.store.get(record))
            .collect();

        NetworkLookup {
            containing,
            inside,
            inside_total,
        }
    }

    /// Looks up every observable; one [`Match`] per observable and matching
    /// indicator.
    pub fn matches(&self, observables: &[Observable]) -> Vec<Match> {
        let mut found = Vec::new();
        for observable in observables {
            self.visit(&observable.value, |record| {
                found.push(Match {
                    observable: observable.clone(),
                    indicator: self.store.get(record).to_indicator(),
                });
            });
        }
        found
    }

    /// Calls `visit` with the record of every indicator `value` matches, in
    /// the order [`Snapshot::lookup`] returns them.
    fn visit(&self, value: &ObservableValue, mut visit: impl FnMut(u32)) {
        let store = &self.store;
        let hasher = &self.hasher;
        let first = match value {
            ObservableValue::Ip(addr) => {
                self.ips.lookup(store, hasher, *addr, visit);
                return;
            }
            ObservableValue::Domain(name) => {
                let fold_case = has_ascii_capitals(name);
                self.domains.lookup(store, hasher, name, fold_case, visit);
                return;
            }
            ObservableValue::Url(url) => find_text(&self.urls, store, hasher, url, false),
            ObservableValue::Hash(digest) => {
                let bytes = digest.as_bytes();
                self.hashes.find(hasher.digest(bytes), |record| {
                    store.value_bytes(record) == bytes
                })
            }
            ObservableValue::Email(address) if address.is_ascii() => {
                let fold_case = has_ascii_capitals(address);
                find_text(&self.emails, store, hasher, address, fold_case)
            }
            ObservableValue::Email(address) => {
                // Full Unicode lowercase, as normalization does. Only
                // non-ASCII addresses pay for the copy.
                let address = address.to_lowercase();
                find_text(&self.emails, store, hasher, &address, false)
            }
        };
        if let Some(first) = first {
            store.each_of_key(first, &mut visit);
        }
    }
}

fn has_ascii_capitals(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{HashValue, IndicatorValue};

    fn indicator(kind: IndicatorType, text: &str, source: &str, id: &str) -> Indicator {
        Indicator::new(IndicatorValue::parse(kind, text).unwrap(), source, id)
    }

    fn ids(found: Vec<IndicatorRef>) -> Vec<String> {
        found
            .iter()
            .map(|i| format!("{}/{}", i.source, i.id))
            .collect()
    }

    fn ip(text: &str) -> ObservableValue {
        ObservableValue::Ip(text.parse().unwrap())
    }

    #[test]
    fn nested_networks_longest_first() {
        let a = indicator(IndicatorType::Ip, "198.51.100.0/24", "otx", "0");
        let b = indicator(IndicatorType::Ip, "198.51.100.7/32", "otx", "1");
        let c = indicator(IndicatorType::Ip, "0.0.0.0/0", "otx", "2");
        let d = indicator(IndicatorType::Ip, "2001:db8::/32", "otx", "3");
        let snapshot = Snapshot::build_with([&a, &b, &c, &d], &BuildOptions::keep_all());
        let found = |addr: &str| ids(snapshot.lookup(&ip(addr)));
        assert_eq!(found("198.51.100.7"), ["otx/1", "otx/0", "otx/2"]);
        assert_eq!(found("198.51.100.8"), ["otx/0", "otx/2"]);
        assert_eq!(found("203.0.113.1"), ["otx/2"]);
        assert_eq!(found("2001:db8:1::5"), ["otx/3"]);
        assert_eq!(found("2001:db9::5"), Vec::<String>::new());
    }

    #[test]
    fn network_lookup_containing_and_inside() {
        let values = [
            ("198.51.100.0/24", "0"),
            ("198.51.0.0/16", "1"),
            ("198.51.100.200", "2"),
            ("198.51.100.7", "3"),
            ("198.51.100.128/25", "4"),
            ("198.51.101.1", "5"),
            ("0.0.0.0/0", "6"),
            ("2001:db8::/32", "7"),
            ("2001:db8:0:1::9", "8"),
        ];
        let indicators: Vec<Indicator> = values
            .iter()
            .map(|(value, id)| indicator(IndicatorType::Ip, value, "otx", id))
            .collect();
        let snapshot = Snapshot::build_with(&indicators, &BuildOptions::keep_all());
        let network = |text: &str| text.parse::<IpNet>().unwrap();

        let found = snapshot.lookup_network(network("198.51.100.0/24"), 50);
        assert_eq!(ids(found.containing), ["otx/0", "otx/1", "otx/6"]);
        assert_eq!(ids(found.inside), ["otx/3", "otx/4", "otx/2"]);
        assert_eq!(found.inside_total, 3);

        let found = snapshot.lookup_network(network("198.51.100.0/24"), 2);
        assert_eq!(ids(found.inside), ["otx/3", "otx/4"]);
        assert_eq!(found.inside_total, 3);

        let found = snapshot.lookup_network(network("198.51.100.0/26"), 50);
        assert_eq!(ids(found.containing), ["otx/0", "otx/1", "otx/6"]);
        assert_eq!(ids(found.inside), ["otx/3"]);

        let found = snapshot.lookup_network(network("10.0.0.0/8"), 50);
        assert_eq!(ids(found.containing), ["otx/6"]);
        assert_eq!(found.inside_total, 0);

        let found = snapshot.lookup_network(network("2001:db8::/48"), 50);
        assert_eq!(ids(found.containing), ["otx/7"]);
        assert_eq!(ids(found.inside), ["otx/8"]);

        let found = snapshot.lookup_network(network("::ffff:198.51.100.0/120"), 50);
        assert_eq!(ids(found.containing), ["otx/0", "otx/1", "otx/6"]);
        assert_eq!(found.inside_total, 3);
    }

    #[test]
    fn network_lookup_truncates_host_bits() {
        let a = indicator(IndicatorType::Ip, "192.0.2.0/24", "otx", "1");
        let mut b = indicator(IndicatorType::Ip, "192.0.2.0/28", "otx", "2");
        // Built by hand, not parsed, so the host bits stay set.
        b.value = IndicatorValue::Ip("192.0.2.5/28".parse().unwrap());
        let snapshot = Snapshot::build_with([&a, &b], &BuildOptions::keep_all());
        let found = snapshot.lookup_network("192.0.2.77/24".parse().unwrap(), 50);
        assert_eq!(ids(found.containing), ["otx/1"]);
        assert_eq!(ids(found.inside), ["otx/2"]);
    }

    #[test]
    fn mapped_address_folds() {
        let a = indicator(IndicatorType::Ip, "192.0.2.0/28", "otx", "0");
        let snapshot = Snapshot::build_with([&a], &BuildOptions::keep_all());
        assert_eq!(ids(snapshot.lookup(&ip("::ffff:192.0.2.9"))), ["otx/0"]);
    }

    #[test]
    fn host_bits_share_network_key() {
        let mut a = indicator(IndicatorType::Ip, "192.0.2.0/24", "otx", "1");
        let b = indicator(IndicatorType::Ip, "192.0.2.0/24", "misp", "2");
        let c = indicator(IndicatorType::Ip, "192.0.2.0/24", "otx", "3");
        // Built by hand, not parsed, so the host bits stay set.
        a.value = IndicatorValue::Ip("192.0.2.5/24".parse().unwrap());
        let snapshot = Snapshot::build_with([&a, &b, &c], &BuildOptions::keep_all());
        let found = snapshot.lookup(&ip("192.0.2.200"));
        assert_eq!(ids(found.clone()), ["otx/1", "misp/2", "otx/3"]);
        assert_eq!(found[0].value.to_string(), "192.0.2.5/24");
    }

    #[test]
    fn domain_and_email_fold_case() {
        let a = indicator(IndicatorType::Domain, "evil.example.net", "otx", "1");
        let b = indicator(IndicatorType::Email, "bad@evil.example.net", "otx", "2");
        let snapshot = Snapshot::build([&a, &b]);
        let domain = ObservableValue::Domain("WWW.Evil.Example.NET.".into());
        assert_eq!(ids(snapshot.lookup(&domain)), ["otx/1"]);
        let email = ObservableValue::Email("Bad@EVIL.example.net".into());
        assert_eq!(ids(snapshot.lookup(&email)), ["otx/2"]);
    }

    #[test]
    fn lookup_keeps_provenance() {
        let mut a = indicator(IndicatorType::Url, "http://evil.example.net/x", "otx", "1");
        a.package_id = Some("package-1".into());
        a.title = Some("Phishing kit".into());
        a.first_seen = Some("2026-01-02T03:04:05.5Z".parse().unwrap());
        let snapshot = Snapshot::build([&a]);
        let value = ObservableValue::Url("http://evil.example.net/x".into());
        let found = snapshot.lookup(&value);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_indicator(), a);
        let observable = Observable {
            kind: IndicatorType::Url,
            value,
            location: crate::extract::Location::Helo,
        };
        assert_eq!(snapshot.matches(&[observable])[0].indicator, a);
    }

    #[test]
    fn build_drops_exact_repeats() {
        let a = indicator(IndicatorType::Domain, "evil.example.net", "otx", "1");
        let b = indicator(IndicatorType::Domain, "evil.example.net", "misp", "1");
        let snapshot = Snapshot::build([&a, &a, &b]);
        assert_eq!(snapshot.len(), 2);
    }

    #[test]
    fn domain_parent_walk() {
        let a = indicator(IndicatorType::Domain, "evil.example.net", "otx", "1");
        let b = indicator(IndicatorType::Domain, "b.evil.example.net", "otx", "2");
        let snapshot = Snapshot::build([&a, &b]);
        let found = snapshot.lookup(&ObservableValue::Domain("a.b.evil.example.net".into()));
        assert_eq!(ids(found), ["otx/2", "otx/1"]);
        let found = snapshot.lookup(&ObservableValue::Domain("notevil.example.net".into()));
        assert_eq!(ids(found), Vec::<String>::new());
        let found = snapshot.lookup(&ObservableValue::Domain("example.net".into()));
        assert_eq!(ids(found), Vec::<String>::new());
    }

    #[test]
    fn hash_binary_key() {
        let sha = "1bfbcbdbc9279d804d7c253ed16647bbf2742a64201d88303c4d99479096e02c";
        let a = indicator(IndicatorType::Hash, sha, "otx", "1");
        let snapshot = Snapshot::build([&a]);
        let value = ObservableValue::Hash(HashValue::from_hex(sha).unwrap());
        assert_eq!(ids(snapshot.lookup(&value)), ["otx/1"]);
    }

    #[test]
    fn counts_per_source() {
        let a = indicator(IndicatorType::Domain, "evil.example.net", "otx", "1");
        let b = indicator(IndicatorType::Ip, "192.0.2.0/24", "otx", "2");
        let c = indicator(IndicatorType::Ip, "192.0.2.1", "drop", "3");
        let snapshot = Snapshot::build([&a, &b, &c]);
        let counts = snapshot.counts_by_source();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts["otx"][&IndicatorType::Domain], 1);
        assert_eq!(counts["otx"][&IndicatorType::Ip], 1);
        assert_eq!(counts["drop"][&IndicatorType::Ip], 1);
    }
}
