//! The sandbox around one plugin instance: its store state, memory limiter, the WASI context
//! it sees (nothing, unless granted) and the import policy checked at load: which imports
//! every component may have, which need a capability, which are refused.

use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView,
};

use super::limits::{Grants, Limits};
use super::manifest::Capability;

/// How much of a plugin's stderr is kept (for panic messages in errors); the rest is dropped.
const STDERR_CAPACITY: usize = 16 * 1024;

/// What the sandbox makes of an interface a component imports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Import {
    /// Every component may import it. A Rust std guest imports these even when it never
    /// calls them; they give nothing away: empty environment and arguments, closed stdin,
    /// captured stdout/stderr, no preopened directories, and a fixed seed for std's hash
    /// maps unless `random` is granted.
    Baseline,
    /// Only with the capability declared in the manifest and granted by the step. Without
    /// the grant the stubs would still deny (a clock at the epoch, seeded random numbers),
    /// but a plugin that asks for it and is not given it is refused instead of silently
    /// computing with fake values.
    Capability(Capability),
    /// Never provided: networking (`wasi:sockets`, `wasi:http`) and any other interface.
    Refused,
}

/// Imports every component may have (see [`Import::Baseline`]).
const BASELINE: &[&str] = &[
    "wasi:io/",
    "wasi:cli/",
    "wasi:filesystem/",
    "wasi:random/insecure-seed@",
    "weir:plugin/types@0.1.",
];

const CAPABILITIES: &[(&str, Capability)] = &[
    ("wasi:clocks/", Capability::Clock),
    ("wasi:random/random@", Capability::Random),
    ("wasi:random/insecure@", Capability::Random),
];

/// The plugin interface's types (defined in the linker; it serves imports of any 0.1.x).
pub const TYPES_INTERFACE: &str = "weir:plugin/types@0.1.2";

pub fn classify(import: &str) -> Import {
    if BASELINE.iter().any(|p| import.starts_with(p)) {
        Import::Baseline
    } else if let Some((_, capability)) = CAPABILITIES.iter().find(|(p, _)| import.starts_with(p)) {
        Import::Capability(*capability)
    } else {
        Import::Refused
    }
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
    use super::{Capability, Import, classify};

    #[test]
    fn imports_are_baseline_capabilities_or_refused() {
        for std_guest in [
            "wasi:io/streams@0.2.6",
            "wasi:cli/environment@0.2.6",
            "wasi:filesystem/preopens@0.2.6",
            "wasi:random/insecure-seed@0.2.6",
            "weir:plugin/types@0.1.0",
            "weir:plugin/types@0.1.1",
            "weir:plugin/types@0.1.2",
        ] {
            assert_eq!(classify(std_guest), Import::Baseline, "{std_guest}");
        }
        assert_eq!(
            classify("wasi:clocks/wall-clock@0.2.0"),
            Import::Capability(Capability::Clock)
        );
        assert_eq!(
            classify("wasi:random/random@0.2.6"),
            Import::Capability(Capability::Random)
        );
        for refused in [
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
            "acme:net/socket",
        ] {
            assert_eq!(classify(refused), Import::Refused, "{refused}");
        }
    }
}
