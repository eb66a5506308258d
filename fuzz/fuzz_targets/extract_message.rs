//! Fuzz target `extract_message`; the body is [`ioc_milter_fuzz::harness::extract_message`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ioc_milter_fuzz::harness::extract_message(data);
});
