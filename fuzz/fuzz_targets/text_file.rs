#![no_main]
//! A source file's bytes, as CSV (first byte even) or NDJSON (odd): schema inference and
//! decoding never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((&first, rest)) = data.split_first() {
        weir::fuzz::text_file(rest, first % 2 == 0);
    }
});
