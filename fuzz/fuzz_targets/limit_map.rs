#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| corral_fuzz::limit_map(data));
