//! Fuzz target: [`linkbus_tests::hostile::commerce_webhook`] (what it checks is documented there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| linkbus_tests::hostile::commerce_webhook(data));
