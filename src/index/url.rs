//! URL index: exact match of the canonical form (see
//! [`super::normalize::url`]). The host of a URL indicator is not added to
//! the domain index, so a URL indicator never matches other URLs on its host.

use super::indicator::{Indicator, IndicatorValue};
use super::snapshot::TextKeys;

#[derive(Debug, Default)]
pub(crate) struct UrlIndex {
    urls: TextKeys,
}

impl UrlIndex {
    /// Builds the index from `(canonical URL, indicator id)` pairs.
    pub(crate) fn build<'a>(entries: impl IntoIterator<Item = (&'a str, u32)>) -> UrlIndex {
        UrlIndex {
            urls: TextKeys::build(entries),
        }
    }

    /// Appends the ids of indicators whose canonical URL equals `canonical`.
    pub(crate) fn lookup(&self, indicators: &[Indicator], canonical: &str, out: &mut Vec<u32>) {
        self.urls.lookup(canonical, out, |id| {
            matches!(
                indicators.get(id as usize).map(|i| &i.value),
                Some(IndicatorValue::Url(u)) if u == canonical
            )
        });
    }
}
