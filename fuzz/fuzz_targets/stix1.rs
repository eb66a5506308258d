//! Fuzz target `stix1`; the body is [`ioc_milter_fuzz::harness::stix1`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ioc_milter_fuzz::harness::stix1(data);
});
