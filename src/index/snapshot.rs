//! The immutable index snapshot.

use std::collections::BTreeMap;

use serde::Serialize;

use super::indicator::{Indicator, IndicatorType};
use crate::extract::{Observable, ObservableValue};

/// One observable that matched one indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub observable: Observable,
    pub indicator: Indicator,
}

/// An immutable index over the indicators of every source.
#[derive(Debug, Default)]
pub struct Snapshot {
    indicators: Vec<Indicator>,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot::default()
    }

    /// Builds an index from indicators. The same value from several sources
    /// or feeds keeps every provenance.
    pub fn build<'a>(indicators: impl IntoIterator<Item = &'a Indicator>) -> Snapshot {
        Snapshot {
            indicators: indicators.into_iter().cloned().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.indicators.len()
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

    /// Returns every indicator that `value` matches.
    pub fn lookup(&self, value: &ObservableValue) -> Vec<&Indicator> {
        let _ = value;
        todo!("Snapshot::lookup")
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
