#![no_main]
//! A pipeline file's text: parsing, `${VAR}` interpolation and validation never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        weir::fuzz::pipeline_file(text);
    }
});
