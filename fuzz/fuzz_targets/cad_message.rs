//! Fuzz target: [`linkbus_tests::hostile::cad_message`] (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linkbus_tests::hostile::cad_message(data));
