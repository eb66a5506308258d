//! Extracts observables from arbitrary bytes as a mail message, with small
//! limits so that every limit is hit often.

#![no_main]

use ioc_milter::extract::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 64 * 1024,
        max_parts: 20,
        max_urls: 50,
        max_nesting: 3,
    };
    let _ = extract::from_message(data, &limits);
});
