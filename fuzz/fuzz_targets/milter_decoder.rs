//! Fuzz target `milter_decoder`; the body is [`ioc_milter_fuzz::harness::milter_decoder`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ioc_milter_fuzz::harness::milter_decoder(data);
});
