//! Domain index: an indicator matches its own name and every subdomain.
//!
//! A lookup walks the observable's parent names (`a.b.example.net`,
//! `b.example.net`, `example.net`, `net`) and probes the exact-name map once
//! per label, so `notevil.example.net` never matches `evil.example.net`.

use super::indicator::{Indicator, IndicatorValue};
use super::snapshot::TextKeys;

#[derive(Debug, Default)]
pub(crate) struct DomainIndex {
    names: TextKeys,
}

impl DomainIndex {
    /// Builds the index from `(normalized domain, indicator id)` pairs.
    pub(crate) fn build<'a>(entries: impl IntoIterator<Item = (&'a str, u32)>) -> DomainIndex {
        DomainIndex {
            names: TextKeys::build(entries),
        }
    }

    /// Appends the ids of indicators for `name` or any of its parents, the
    /// most specific first. `name` must be in normal form (lowercase IDNA).
    pub(crate) fn lookup(&self, indicators: &[Indicator], name: &str, out: &mut Vec<u32>) {
        let mut suffix = name.strip_suffix('.').unwrap_or(name);
        loop {
            self.names.lookup(suffix, out, |id| {
                matches!(
                    indicators.get(id as usize).map(|i| &i.value),
                    Some(IndicatorValue::Domain(d)) if d == suffix
                )
            });
            match suffix.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => suffix = parent,
                _ => break,
            }
        }
    }
}
