#![no_main]
// `logs.json` through its parser and the diagnosis.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ipd_fuzz::one_file("logs.json", data));
