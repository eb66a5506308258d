//! Domain index: an indicator matches its own name and every subdomain,
//! unless its source is set to exact-host matching, where it matches its
//! own name only.
//!
//! A lookup walks the observable's parent names (`a.b.example.net`,
//! `b.example.net`, `example.net`, `net`) and probes the name table once
//! per label, so `notevil.example.net` never matches `evil.example.net`.

use super::store::Store;
use super::table::{KeyHasher, KeyTable};

#[derive(Debug, Default)]
pub(crate) struct DomainIndex {
    pub(crate) names: KeyTable,
}

impl DomainIndex {
    /// Calls `visit` with the records for `name` or any of its parents, the
    /// most specific first. `name` must be in normal form (lowercase IDNA),
    /// except that ASCII capitals are folded when `fold_case` is set.
    #[inline]
    pub(crate) fn lookup(
        &self,
        store: &Store,
        hasher: &KeyHasher,
        name: &str,
        fold_case: bool,
        mut visit: impl FnMut(u32),
    ) {
        let name = name.strip_suffix('.').unwrap_or(name);
        let mut suffix = name;
        loop {
            let is_parent = suffix.len() != name.len();
            if let Some(first) = find_text(&self.names, store, hasher, suffix, fold_case) {
                store.each_of_key(first, |record| {
                    if !(is_parent && store.exact_only(record)) {
                        visit(record);
                    }
                });
            }
            match suffix.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => suffix = parent,
                _ => break,
            }
        }
    }
}

/// Returns the first record whose stored text equals `text`, with ASCII
/// capitals of `text` folded when `fold_case` is set.
#[inline]
pub(crate) fn find_text(
    table: &KeyTable,
    store: &Store,
    hasher: &KeyHasher,
    text: &str,
    fold_case: bool,
) -> Option<u32> {
    let text = text.as_bytes();
    table.find(hasher.text(text, fold_case), |record| {
        let stored = store.value_bytes(record);
        if fold_case {
            stored.len() == text.len()
                && stored
                    .iter()
                    .zip(text)
                    .all(|(s, t)| *s == t.to_ascii_lowercase())
        } else {
            stored == text
        }
    })
}
