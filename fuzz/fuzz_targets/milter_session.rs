//! Fuzz target `milter_session`; the body is [`ioc_milter_fuzz::harness::milter_session`].

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ioc_milter_fuzz::harness::milter_session(data);
});
