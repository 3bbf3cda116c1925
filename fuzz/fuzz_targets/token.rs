#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ipd_fuzz::token(data));
