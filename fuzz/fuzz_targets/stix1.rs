//! Parses arbitrary text as a STIX 1.x document.

#![no_main]

use chrono::{TimeZone, Utc};
use ioc_milter::feeds::stix1::{self, ParseContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let context = ParseContext {
        source: "fuzz".to_string(),
        timestamp_label: None,
        // A fixed time keeps runs reproducible.
        now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    };
    let _ = stix1::parse(text, &context);
});
