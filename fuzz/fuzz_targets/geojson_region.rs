//! Fuzz target: [`linkbus_tests::hostile::geojson_region`] (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linkbus_tests::hostile::geojson_region(data));
