//! File hash index: one map keyed by the binary [`HashValue`], so MD5,
//! SHA-1 and SHA-256 digests never compare equal across algorithms.

use super::indicator::HashValue;
use super::snapshot::{group_postings, Postings};

#[derive(Debug, Default)]
pub(crate) struct HashIndex {
    digests: Postings<HashValue>,
}

impl HashIndex {
    /// Builds the index from `(digest, indicator id)` pairs.
    pub(crate) fn build(entries: impl IntoIterator<Item = (HashValue, u32)>) -> HashIndex {
        HashIndex {
            digests: group_postings(entries.into_iter().collect()),
        }
    }

    /// Appends the ids of indicators with digest `value`.
    pub(crate) fn lookup(&self, value: &HashValue, out: &mut Vec<u32>) {
        out.extend_from_slice(self.digests.get(value));
    }
}
