#![no_main]
//! The bytes a plugin returns: Arrow IPC decoding and the schema check never crash the host.
//!
//! The host decodes plugin output under `catch_unwind` (arrow's decoder can panic on some
//! malformed buffers), turning a panic into the plugin's error. libFuzzer's panic hook would
//! abort even on a caught panic, so the default hook is put back: a panic that escapes the
//! host's guard still reaches libfuzzer-sys and is reported as a crash.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
    });
    weir::fuzz::plugin_output(data.to_vec());
});
