//! The immutable index snapshot.
//!
//! Every indicator is stored once in `indicators`. The per-type indexes hold
//! `u32` positions into that vector, grouped in one shared id vector per
//! index, so a value seen by several sources costs one key and a few ids.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};

use serde::Serialize;

use super::allowlist::{is_public_suffix, Allowlist, Suppression};
use super::domain::DomainIndex;
use super::hash::HashIndex;
use super::indicator::{Indicator, IndicatorType, IndicatorValue};
use super::ip::IpIndex;
use super::url::UrlIndex;
use crate::extract::{Observable, ObservableValue};

/// One observable that matched one indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub observable: Observable,
    pub indicator: Indicator,
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
    indicators: Vec<Indicator>,
    report: BuildReport,
    ips: IpIndex,
    domains: DomainIndex,
    urls: UrlIndex,
    hashes: HashIndex,
    emails: TextKeys,
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
        let mut candidates: Vec<&'a Indicator> = indicators.into_iter().collect();
        if u32::try_from(candidates.len()).is_err() {
            tracing::warn!(
                count = candidates.len(),
                "more indicators than u32::MAX, the rest are not indexed; split the sources"
            );
            candidates.truncate(u32::MAX as usize);
        }
        let keep = first_occurrences(&candidates);
        let mut report = BuildReport::default();
        let mut stored: Vec<Indicator> = Vec::with_capacity(candidates.len());
        for (indicator, keep) in candidates.iter().zip(keep) {
            if !keep {
                continue;
            }
            match suppression(&indicator.value, options) {
                Some(reason) => {
                    let per_reason = match report.suppressed.get_mut(indicator.source.as_str()) {
                        Some(per_reason) => per_reason,
                        None => report
                            .suppressed
                            .entry(indicator.source.clone())
                            .or_default(),
                    };
                    *per_reason.entry(reason).or_insert(0) += 1;
                }
                None => stored.push((*indicator).clone()),
            }
        }
        drop(candidates);
        if report.suppressed_total() > 0 {
            tracing::debug!(
                suppressed = report.suppressed_total(),
                "left allowlisted and public-suffix indicators out of the index"
            );
        }

        // The ids fit in u32 because of the check above.
        let numbered = || stored.iter().enumerate().map(|(id, i)| (id as u32, i));
        let ips = IpIndex::build(numbered().filter_map(|(id, i)| match &i.value {
            IndicatorValue::Ip(net) => Some((*net, id)),
            _ => None,
        }));
        let exact_sources = &options.exact_host_sources;
        let domains = DomainIndex::build(numbered().filter_map(|(id, i)| match &i.value {
            IndicatorValue::Domain(d) => Some((d.as_str(), id, exact_sources.contains(&i.source))),
            _ => None,
        }));
        let urls = UrlIndex::build(numbered().filter_map(|(id, i)| match &i.value {
            IndicatorValue::Url(u) => Some((u.as_str(), id)),
            _ => None,
        }));
        let hashes = HashIndex::build(numbered().filter_map(|(id, i)| match &i.value {
            IndicatorValue::Hash(h) => Some((*h, id)),
            _ => None,
        }));
        let emails = TextKeys::build(numbered().filter_map(|(id, i)| match &i.value {
            IndicatorValue::Email(e) => Some((e.as_str(), id)),
            _ => None,
        }));
        Snapshot {
            indicators: stored,
            report,
            ips,
            domains,
            urls,
            hashes,
            emails,
        }
    }

    pub fn len(&self) -> usize {
        self.indicators.len()
    }

    /// Returns the counts of indicators the build left out, per source.
    pub fn report(&self) -> &BuildReport {
        &self.report
    }

    pub fn is_empty(&self) -> bool {
        self.indicators.is_empty()
    }

    pub fn counts_by_type(&self) -> BTreeMap<IndicatorType, usize> {
        let mut counts = BTreeMap::new();
        for indicator in &self.indicators {
            *counts.entry(indicator.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// Counts the stored indicators per source name and type.
    pub fn counts_by_source(&self) -> BTreeMap<String, BTreeMap<IndicatorType, usize>> {
        let mut counts: BTreeMap<String, BTreeMap<IndicatorType, usize>> = BTreeMap::new();
        for indicator in &self.indicators {
            let per_type = match counts.get_mut(indicator.source.as_str()) {
                Some(per_type) => per_type,
                None => counts.entry(indicator.source.clone()).or_default(),
            };
            *per_type.entry(indicator.kind()).or_insert(0) += 1;
        }
        counts
    }

    /// Returns every indicator that `value` matches. An IP matches every
    /// network that contains it, the longest prefix first. A domain matches
    /// the indicators of the name and of its parents, the most specific
    /// first. URLs, hashes and email addresses match exactly. Domains and
    /// email addresses are compared in lowercase.
    pub fn lookup(&self, value: &ObservableValue) -> Vec<&Indicator> {
        let mut ids = Vec::new();
        match value {
            ObservableValue::Ip(addr) => self.ips.lookup(*addr, &mut ids),
            ObservableValue::Domain(name) => {
                let name = name.to_ascii_lowercase();
                self.domains.lookup(&self.indicators, &name, &mut ids);
            }
            ObservableValue::Url(url) => self.urls.lookup(&self.indicators, url, &mut ids),
            ObservableValue::Hash(digest) => self.hashes.lookup(digest, &mut ids),
            ObservableValue::Email(address) => {
                let address = address.to_lowercase();
                self.emails.lookup(&address, &mut ids, |id| {
                    matches!(
                        self.indicators.get(id as usize).map(|i| &i.value),
                        Some(IndicatorValue::Email(e)) if *e == address
                    )
                });
            }
        }
        ids.iter()
            .filter_map(|&id| self.indicators.get(id as usize))
            .collect()
    }

    /// Looks up every observable; one [`Match`] per observable and matching
    /// indicator.
    pub fn matches(&self, observables: &[Observable]) -> Vec<Match> {
        let mut found = Vec::new();
        for observable in observables {
            for indicator in self.lookup(&observable.value) {
                found.push(Match {
                    observable: observable.clone(),
                    indicator: indicator.clone(),
                });
            }
        }
        found
    }
}

/// Returns why `value` is left out of a snapshot built with `options`, if
/// it is.
fn suppression(value: &IndicatorValue, options: &BuildOptions) -> Option<Suppression> {
    if options.allowlist.contains(value) {
        return Some(Suppression::Allowlist);
    }
    match value {
        IndicatorValue::Domain(name)
            if options.suppress_public_suffixes && is_public_suffix(name) =>
        {
            Some(Suppression::PublicSuffix)
        }
        _ => None,
    }
}

/// Marks the first occurrence of each indicator identity (value, source, id
/// and package id) in `indicators`. Sorting identity hashes keeps memory
/// access sequential, which is faster than a hash set for millions of
/// indicators.
fn first_occurrences(indicators: &[&Indicator]) -> Vec<bool> {
    let hasher = RandomState::new();
    let identity = |i: &Indicator| hasher.hash_one((&i.value, &i.source, &i.id, &i.package_id));
    let mut keyed: Vec<(u64, u32)> = indicators
        .iter()
        .enumerate()
        .map(|(position, i)| (identity(i), position as u32))
        .collect();
    // Within one hash, positions sort ascending, so the first occurrence is
    // met first.
    keyed.sort_unstable();

    let same = |a: &Indicator, b: &Indicator| {
        a.value == b.value && a.source == b.source && a.id == b.id && a.package_id == b.package_id
    };
    let mut keep = vec![true; indicators.len()];
    let mut run_start = 0;
    while run_start < keyed.len() {
        let hash = keyed[run_start].0;
        let run_end = keyed[run_start..]
            .iter()
            .position(|(h, _)| *h != hash)
            .map_or(keyed.len(), |offset| run_start + offset);
        let run = &keyed[run_start..run_end];
        for (index, &(_, position)) in run.iter().enumerate() {
            let current = indicators[position as usize];
            let repeated = run[..index].iter().any(|&(_, earlier)| {
                keep[earlier as usize] && same(indicators[earlier as usize], current)
            });
            if repeated {
                keep[position as usize] = false;
            }
        }
        run_start = run_end;
    }
    keep
}

/// A map from a key to a list of indicator ids. Each key stores a
/// `(start, length)` range into one shared id vector, in place of a separate
/// allocation per key.
#[derive(Debug)]
pub(crate) struct Postings<K> {
    ranges: HashMap<K, (u32, u32)>,
    ids: Vec<u32>,
}

impl<K> Default for Postings<K> {
    fn default() -> Self {
        Postings {
            ranges: HashMap::new(),
            ids: Vec::new(),
        }
    }
}

impl<K: Hash + Eq> Postings<K> {
    /// Returns the ids stored for `key`, in build order.
    pub(crate) fn get(&self, key: &K) -> &[u32] {
        match self.ranges.get(key) {
            Some(&(start, len)) => self
                .ids
                .get(start as usize..start as usize + len as usize)
                .unwrap_or(&[]),
            None => &[],
        }
    }
}

/// Groups `(key, id)` pairs into [`Postings`]. Within a key, ids keep their
/// order.
pub(crate) fn group_postings<K: Hash + Eq + Ord + Copy>(mut pairs: Vec<(K, u32)>) -> Postings<K> {
    pairs.sort_unstable();
    let mut ranges: HashMap<K, (u32, u32)> = HashMap::new();
    let mut ids = Vec::with_capacity(pairs.len());
    for (key, id) in pairs {
        // Positions fit in u32 because ids are u32 and each id appears once.
        let position = ids.len() as u32;
        ids.push(id);
        ranges
            .entry(key)
            .and_modify(|range: &mut (u32, u32)| range.1 += 1)
            .or_insert((position, 1));
    }
    ranges.shrink_to_fit();
    Postings { ranges, ids }
}

/// Text keys indexed by their 64-bit hash, so the text itself is stored only
/// once, in the indicator. Different texts with the same hash share a list,
/// and every lookup filters the candidates by comparing the stored value.
/// The hasher has random keys per snapshot, so feed values cannot be chosen
/// to collide.
#[derive(Debug, Default)]
pub(crate) struct TextKeys {
    hasher: RandomState,
    postings: Postings<u64>,
}

impl TextKeys {
    pub(crate) fn build<'a>(entries: impl IntoIterator<Item = (&'a str, u32)>) -> TextKeys {
        let hasher = RandomState::new();
        let pairs = entries
            .into_iter()
            .map(|(text, id)| (hasher.hash_one(text), id))
            .collect();
        TextKeys {
            postings: group_postings(pairs),
            hasher,
        }
    }

    /// Appends the ids stored under `text` for which `is_equal` holds.
    pub(crate) fn lookup(&self, text: &str, out: &mut Vec<u32>, is_equal: impl Fn(u32) -> bool) {
        let key = self.hasher.hash_one(text);
        out.extend(
            self.postings
                .get(&key)
                .iter()
                .copied()
                .filter(|&id| is_equal(id)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::HashValue;

    fn indicator(kind: IndicatorType, text: &str, source: &str, id: &str) -> Indicator {
        Indicator::new(IndicatorValue::parse(kind, text).unwrap(), source, id)
    }

    fn ids(found: Vec<&Indicator>) -> Vec<String> {
        found
            .iter()
            .map(|i| format!("{}/{}", i.source, i.id))
            .collect()
    }

    #[test]
    fn postings_group_by_key() {
        let postings = group_postings(vec![(7u8, 2), (3, 0), (7, 1)]);
        assert_eq!(postings.get(&7), &[1, 2]);
        assert_eq!(postings.get(&3), &[0]);
        assert_eq!(postings.get(&9), &[] as &[u32]);
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
