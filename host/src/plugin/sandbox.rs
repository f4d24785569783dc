//! The sandbox around one plugin instance: its store state, memory limiter, the WASI context
//! it sees (nothing, unless granted) and the import policy checked at load.

use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::limits::{Grants, Limits};

/// How much of a plugin's stderr is kept (for panic messages in errors); the rest is dropped.
const STDERR_CAPACITY: usize = 16 * 1024;

/// Interfaces a plugin may import. Those not granted are given stubs that deny: no preopened
/// directories, no environment or arguments, closed stdin, sockets refused, a clock fixed at
/// the epoch and random numbers from a fixed seed. Anything else is refused at load.
/// (`weir:plugin/types` holds only types: components built from the WIT import it.)
const PROVIDED_PACKAGES: &[&str] = &[
    "wasi:io/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    TYPES_INTERFACE,
];

pub const TYPES_INTERFACE: &str = "weir:plugin/types@0.1.0";

/// The first import of a component that the sandbox does not provide, if any.
pub fn forbidden_import<'a>(imports: impl IntoIterator<Item = &'a str>) -> Option<String> {
    imports
        .into_iter()
        .find(|name| !PROVIDED_PACKAGES.iter().any(|p| name.starts_with(p)))
        .map(str::to_string)
}

/// Per-store state: WASI (empty), a resource table, the limiter and captured stderr.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) stderr: MemoryOutputPipe,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl StoreState {
    pub fn new(limits: &Limits, grants: &Grants) -> StoreState {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut wasi = WasiCtx::builder();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !grants.clock {
            wasi.wall_clock(EpochClock).monotonic_clock(EpochClock);
        }
        if !grants.random {
            let fixed = || Deterministic::new((0..=255).collect());
            wasi.secure_random(fixed())
                .insecure_random(fixed())
                .insecure_random_seed(0);
        }
        StoreState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: limits.memory_bytes(),
                used: 0,
                refused: None,
            },
            stderr,
        }
    }

    /// The last lines the plugin wrote to stderr (a panic message, usually), trimmed.
    pub fn stderr_tail(&self) -> String {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].replace('\n', "\n  ")
    }
}

/// Caps the total linear memory of all the instance's memories together.
pub struct MemoryLimiter {
    cap: usize,
    used: usize,
    /// The size a refused growth asked for, so the error can say what happened.
    pub(super) refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used - current.min(self.used) + desired;
        if total > self.cap {
            self.refused = Some(total);
            // An error (rather than `Ok(false)`) traps at once instead of letting the guest's
            // allocator try to recover.
            wasmtime::bail!("memory cap of {} bytes reached", self.cap);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    // A component is several core instances (the Python guest needs more than 32).
    fn instances(&self) -> usize {
        1000
    }
    fn tables(&self) -> usize {
        1000
    }
    fn memories(&self) -> usize {
        100
    }
}

/// A clock stopped at the Unix epoch: what a plugin without the clock grant sees.
struct EpochClock;

impl HostWallClock for EpochClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for EpochClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::forbidden_import;

    #[test]
    fn only_the_sandboxed_interfaces_may_be_imported() {
        let std_guest = [
            "wasi:io/streams@0.2.6",
            "wasi:cli/environment@0.2.6",
            "wasi:random/insecure-seed@0.2.6",
        ];
        assert_eq!(forbidden_import(std_guest), None);
        assert_eq!(
            forbidden_import(["weir:plugin/types@0.1.0", "wasi:clocks/wall-clock@0.2.0"]),
            None
        );
        assert_eq!(
            forbidden_import(["wasi:io/streams@0.2.6", "wasi:http/outgoing-handler@0.2.6"])
                .as_deref(),
            Some("wasi:http/outgoing-handler@0.2.6")
        );
        assert_eq!(
            forbidden_import(["acme:net/socket"]).as_deref(),
            Some("acme:net/socket")
        );
    }
}
