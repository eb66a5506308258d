//! The indicator index: an immutable snapshot built from every source's
//! indicator set and swapped in atomically.

mod domain;
mod hash;
pub mod indicator;
mod ip;
pub mod normalize;
pub mod snapshot;
mod url;

pub use indicator::{HashValue, Indicator, IndicatorType, IndicatorValue};
pub use snapshot::{Match, Snapshot};
