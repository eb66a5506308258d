//! The indicator index: an immutable snapshot built from every source's
//! indicator set and swapped in atomically.

pub mod indicator;
pub mod normalize;
pub mod snapshot;

pub use indicator::{HashValue, Indicator, IndicatorType, IndicatorValue};
pub use snapshot::{Match, Snapshot};
