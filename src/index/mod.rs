//! The indicator index: an immutable snapshot built from every source's
//! indicator set and swapped in atomically.

pub mod allowlist;
mod domain;
mod hash;
pub mod indicator;
mod ip;
pub mod normalize;
pub mod snapshot;
mod url;

pub use allowlist::{Allowlist, Suppression};
pub use indicator::{HashValue, Indicator, IndicatorType, IndicatorValue};
pub use snapshot::{BuildOptions, BuildReport, Match, Snapshot};
