//! Domain index: an indicator matches its own name and every subdomain,
//! unless its source is set to exact-host matching, where it matches its
//! own name only.
//!
//! A lookup walks the observable's parent names (`a.b.example.net`,
//! `b.example.net`, `example.net`, `net`) and probes the exact-name map once
//! per label, so `notevil.example.net` never matches `evil.example.net`.

use super::indicator::{Indicator, IndicatorValue};
use super::snapshot::TextKeys;

#[derive(Debug, Default)]
pub(crate) struct DomainIndex {
    names: TextKeys,
    /// Per indicator id: matches its own name only. Empty when no source
    /// uses exact-host matching.
    exact_only: Vec<bool>,
}

impl DomainIndex {
    /// Builds the index from `(normalized domain, indicator id, exact host
    /// only)` entries.
    pub(crate) fn build<'a>(
        entries: impl IntoIterator<Item = (&'a str, u32, bool)>,
    ) -> DomainIndex {
        let mut exact_only = Vec::new();
        let mut names = Vec::new();
        for (name, id, exact) in entries {
            if exact {
                let position = id as usize;
                if exact_only.len() <= position {
                    exact_only.resize(position + 1, false);
                }
                exact_only[position] = true;
            }
            names.push((name, id));
        }
        DomainIndex {
            names: TextKeys::build(names),
            exact_only,
        }
    }

    /// Appends the ids of indicators for `name` or any of its parents, the
    /// most specific first. `name` must be in normal form (lowercase IDNA).
    pub(crate) fn lookup(&self, indicators: &[Indicator], name: &str, out: &mut Vec<u32>) {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut suffix = name;
        loop {
            let is_parent = suffix.len() != name.len();
            self.names.lookup(suffix, out, |id| {
                let exact_only = self.exact_only.get(id as usize).copied().unwrap_or(false);
                if is_parent && exact_only {
                    return false;
                }
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
