//! Fuzz target `taxii11_response`; the body is [`ioc_milter_fuzz::harness::taxii11_response`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ioc_milter_fuzz::harness::taxii11_response(data);
});
