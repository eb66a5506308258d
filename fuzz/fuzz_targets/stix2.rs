//! Fuzz target `stix2`; the body is [`ioc_milter_fuzz::harness::stix2`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ioc_milter_fuzz::harness::stix2(data);
});
