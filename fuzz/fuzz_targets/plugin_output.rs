#![no_main]
//! The bytes a plugin returns: Arrow IPC decoding and the schema check never panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir::fuzz::plugin_output(data.to_vec());
});
