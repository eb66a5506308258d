//! Parses arbitrary text as a TAXII 1.1 Poll_Response or Status_Message.

#![no_main]

use chrono::{TimeZone, Utc};
use ioc_milter::feeds::stix1::ParseContext;
use ioc_milter::feeds::taxii11;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let context = ParseContext {
        source: "fuzz".to_string(),
        timestamp_label: None,
        now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    };
    let _ = taxii11::parse_response(text, "http://127.0.0.1/taxii-data", &context);
});
