//! The indicator index: an immutable snapshot built from every source's
//! indicator set and swapped in atomically.

pub mod allowlist;
mod build;
mod domain;
pub mod indicator;
mod ip;
pub mod normalize;
pub mod snapshot;
mod store;
mod table;

pub use allowlist::{Allowlist, Suppression};
pub use indicator::{HashValue, Indicator, IndicatorRef, IndicatorType, IndicatorValue, ValueRef};
pub use snapshot::{BuildOptions, BuildReport, Match, NetworkLookup, Snapshot};
