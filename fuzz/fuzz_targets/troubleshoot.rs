#![no_main]
// `troubleshoot.json` through its parser and the diagnosis.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ipd_fuzz::one_file("troubleshoot.json", data));
