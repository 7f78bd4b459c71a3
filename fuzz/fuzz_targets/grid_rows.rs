//! Fuzz target: [`linkbus_tests::hostile::grid_rows`] (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linkbus_tests::hostile::grid_rows(data));
