//! Building a snapshot: leave out exact repeats and suppressed indicators,
//! write the rest to the compact store in input order, and add each record
//! to the key table of its type.
//!
//! The first record of a key goes into the key table, and later records of
//! the same key are chained to it. Reading the input in order keeps the build's
//! memory access sequential except for one table probe per record.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use ipnet::IpNet;

use super::allowlist::{is_public_suffix, Suppression};
use super::domain::DomainIndex;
use super::indicator::{Indicator, IndicatorValue};
use super::ip::{self, IpIndex, V4Blocks};
use super::snapshot::{BuildOptions, BuildReport, Snapshot};
use super::store::{decode_ip, Store, StoreBuilder, MAX_RECORDS};
use super::table::{KeyHasher, KeyTable};

/// Key tables, one per group: IPv4 networks per prefix length (0 to 32),
/// IPv6 networks per prefix length (33 to 161), then the other types.
const V6_FIRST: usize = 33;
const HASH: usize = 162;
const DOMAIN: usize = 163;
const URL: usize = 164;
const EMAIL: usize = 165;
const GROUPS: usize = 166;

pub(super) fn build<'a>(
    indicators: impl IntoIterator<Item = &'a Indicator>,
    options: &BuildOptions,
) -> Snapshot {
    let (kept, report) = select(indicators, options);
    let hasher = KeyHasher::default();

    let value_bytes = kept.iter().map(|i| encoded_len(&i.value)).sum();
    let id_bytes = kept.iter().map(|i| i.id.len()).sum();
    let mut builder = StoreBuilder::new(kept.len(), value_bytes, id_bytes);

    // Sized for one key per record, the most a group can have.
    let mut per_group = vec![0usize; GROUPS];
    for indicator in &kept {
        per_group[group_of(&indicator.value)] += 1;
    }
    let mut tables: Vec<KeyTable> = per_group.into_iter().map(KeyTable::with_keys).collect();
    let mut v4_blocks = V4Blocks::default();

    for indicator in kept {
        let exact_only = options
            .exact_host_sources
            .contains(indicator.source.as_str());
        let meta = builder.intern_meta(indicator, exact_only);
        let Some(record) = builder.push(indicator, meta) else {
            tracing::warn!(
                stored = builder.store().len(),
                "indicator values or ids pass 4 GiB, the rest are not indexed; split the sources"
            );
            break;
        };
        let hash = key_hash(&hasher, &indicator.value);
        let table = &mut tables[group_of(&indicator.value)];
        let store = builder.store();
        match table.find(hash, |first| has_key(store, first, &indicator.value)) {
            Some(first) => builder.append_to_key(first, record),
            None => {
                table.insert(hash, record);
                if let IndicatorValue::Ip(IpNet::V4(net)) = &indicator.value {
                    let net = net.trunc();
                    v4_blocks.add(net.prefix_len(), u32::from(net.network()));
                }
            }
        }
    }

    let mut tables = tables.into_iter();
    let mut take = |count: usize| tables.by_ref().take(count).collect::<Vec<_>>();
    let v4 = take(V6_FIRST);
    let v6 = take(HASH - V6_FIRST);
    let mut others = take(GROUPS - HASH).into_iter();
    let mut next = || others.next().unwrap_or_default();
    Snapshot {
        report,
        ips: IpIndex::new(v4, v4_blocks, v6),
        hashes: next(),
        domains: DomainIndex { names: next() },
        urls: next(),
        emails: next(),
        store: builder.finish(),
        hasher,
    }
}

/// Checks whether `record` has the index key of `value`.
fn has_key(store: &Store, record: u32, value: &IndicatorValue) -> bool {
    let stored = store.value_bytes(record);
    match value {
        IndicatorValue::Ip(net) => decode_ip(stored).is_some_and(|s| s.trunc() == net.trunc()),
        IndicatorValue::Hash(digest) => stored == digest.as_bytes(),
        IndicatorValue::Domain(text) | IndicatorValue::Url(text) | IndicatorValue::Email(text) => {
            stored == text.as_bytes()
        }
    }
}

/// Returns the indicators to store, in input order: exact repeats and
/// suppressed indicators are left out and counted in the report.
fn select<'a>(
    indicators: impl IntoIterator<Item = &'a Indicator>,
    options: &BuildOptions,
) -> (Vec<&'a Indicator>, BuildReport) {
    let mut candidates: Vec<&'a Indicator> = indicators.into_iter().collect();
    if candidates.len() > MAX_RECORDS {
        tracing::warn!(
            count = candidates.len(),
            max = MAX_RECORDS,
            "more indicators than the index holds, the rest are not indexed; split the sources"
        );
        candidates.truncate(MAX_RECORDS);
    }
    let keep = first_occurrences(&candidates);
    let mut report = BuildReport::default();
    let mut kept: Vec<&'a Indicator> = Vec::with_capacity(candidates.len());
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
            None => kept.push(indicator),
        }
    }
    if report.suppressed_total() > 0 {
        tracing::debug!(
            suppressed = report.suppressed_total(),
            "left allowlisted and public-suffix indicators out of the index"
        );
    }
    (kept, report)
}

fn group_of(value: &IndicatorValue) -> usize {
    match value {
        IndicatorValue::Ip(IpNet::V4(net)) => usize::from(net.prefix_len().min(32)),
        IndicatorValue::Ip(IpNet::V6(net)) => V6_FIRST + usize::from(net.prefix_len().min(128)),
        IndicatorValue::Hash(_) => HASH,
        IndicatorValue::Domain(_) => DOMAIN,
        IndicatorValue::Url(_) => URL,
        IndicatorValue::Email(_) => EMAIL,
    }
}

/// Hashes the index key of `value` as a lookup of the same key does.
fn key_hash(hasher: &KeyHasher, value: &IndicatorValue) -> u64 {
    match value {
        IndicatorValue::Ip(net) => ip::hash_key(hasher, net),
        IndicatorValue::Hash(digest) => hasher.digest(digest.as_bytes()),
        IndicatorValue::Domain(text) | IndicatorValue::Url(text) | IndicatorValue::Email(text) => {
            hasher.text(text.as_bytes(), false)
        }
    }
}

fn encoded_len(value: &IndicatorValue) -> usize {
    match value {
        IndicatorValue::Ip(IpNet::V4(_)) => 5,
        IndicatorValue::Ip(IpNet::V6(_)) => 17,
        IndicatorValue::Hash(digest) => digest.as_bytes().len(),
        IndicatorValue::Domain(text) | IndicatorValue::Url(text) | IndicatorValue::Email(text) => {
            text.len()
        }
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
