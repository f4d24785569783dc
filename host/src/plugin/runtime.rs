//! The plugin runtime: one wasmtime engine (component model, epoch interruption), a linker
//! with the deny-by-default WASI sandbox, and the component cache.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{self, TRANSFORM_EXPORT, VALIDATE_EXPORT};
use super::cache::ComponentCache;
use super::error::{Cause, PluginError};
use super::manifest::Manifest;
use super::sandbox::{Import, StoreState, TYPES_INTERFACE, classify};
use super::tenant::{Tenant, TenantLimits, Tenants};
use super::{Plugin, PluginKind};

/// The wasmtime engine could not be set up (an unsupported CPU or configuration).
#[derive(Debug, thiserror::Error)]
#[error("could not start the plugin runtime: {0}")]
pub struct RuntimeError(String);

impl RuntimeError {
    fn new(e: wasmtime::Error) -> RuntimeError {
        RuntimeError(format!("{e:#}"))
    }
}

/// How often the epoch advances; time budgets are enforced to within about this much.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The plugin runtime. Cheap to share: clone it.
#[derive(Clone)]
pub struct Runtime {
    pub(super) engine: TimedEngine,
    linker: Arc<Linker<StoreState>>,
    cache: Option<Arc<ComponentCache>>,
    tenants: Arc<Tenants>,
}

impl Runtime {
    /// A runtime that caches compiled components in the default cache directory.
    pub fn new() -> Result<Runtime, RuntimeError> {
        Runtime::with_cache_dir(ComponentCache::default_dir().as_deref())
    }

    /// A runtime caching compiled components under `cache_dir` (or not at all).
    pub fn with_cache_dir(cache_dir: Option<&Path>) -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(RuntimeError::new)?;
        let clock = Arc::new(EpochClock::new());
        spawn_epoch_ticker(&engine, clock.clone());

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RuntimeError::new)?;
        linker
            .instance(TYPES_INTERFACE)
            .map_err(RuntimeError::new)?;

        let cache = cache_dir.map(|dir| Arc::new(ComponentCache::new(dir.to_path_buf(), &engine)));
        Ok(Runtime {
            engine: TimedEngine { engine, clock },
            linker: Arc::new(linker),
            cache,
            tenants: Arc::default(),
        })
    }

    /// The tenant `name` of this process (see [`super::tenant`]); every pipeline run with
    /// this runtime shares its gate.
    pub fn tenant(&self, name: &str, limits: &TenantLimits) -> Tenant {
        self.tenants.get(name, limits)
    }

    /// Load a component file: hash it, compile it (or take it from the cache), check its
    /// imports against the sandbox and its embedded manifest, and find which world it
    /// implements. (Whether a step grants the capabilities is [`Plugin::check_grants`].)
    pub fn load(&self, path: &Path) -> Result<Plugin, PluginError> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |digest: &str, cause| PluginError {
            plugin: name.clone(),
            digest: digest.to_string(),
            batch: None,
            cause,
        };
        let wasm = std::fs::read(path).map_err(|e| {
            fail(
                "-",
                Cause::Load(format!("cannot read {}: {e}", path.display())),
            )
        })?;
        self.load_bytes(&name, &wasm).map_err(|e| PluginError {
            plugin: name.clone(),
            ..e
        })
    }

    /// As [`Runtime::load`], from bytes.
    pub fn load_bytes(&self, name: &str, wasm: &[u8]) -> Result<Plugin, PluginError> {
        let digest = hex::encode(Sha256::digest(wasm));
        let fail = |cause| PluginError {
            plugin: name.to_string(),
            digest: digest[..12].to_string(),
            batch: None,
            cause,
        };
        let load = |e: wasmtime::Error| fail(Cause::Load(format!("{e:#}")));

        let component = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine.engine, &digest, wasm),
            None => Component::new(&self.engine.engine, wasm),
        }
        .map_err(load)?;

        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&self.engine.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let manifest = Manifest::embedded(wasm).map_err(|e| fail(Cause::Load(e.to_string())))?;
        check_imports(&imports, manifest.as_ref()).map_err(fail)?;
        let exports: Vec<String> = ty
            .exports(&self.engine.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let kind = if exports
            .iter()
            .any(|e| bindings::exports(e, TRANSFORM_EXPORT))
        {
            PluginKind::Transformer
        } else if exports
            .iter()
            .any(|e| bindings::exports(e, VALIDATE_EXPORT))
        {
            PluginKind::Validator
        } else {
            return Err(fail(Cause::Load(format!(
                "it exports neither `{TRANSFORM_EXPORT}` nor `{VALIDATE_EXPORT}` (it exports: {})",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ))));
        };
        if let Some(manifest) = &manifest
            && manifest.world.kind() != kind
        {
            return Err(fail(Cause::ManifestWorld {
                manifest: manifest.world.kind().as_str(),
                found: kind.as_str(),
            }));
        }
        let pre = self.linker.instantiate_pre(&component).map_err(load)?;
        Plugin::new(
            name.to_string(),
            digest,
            kind,
            imports,
            manifest,
            pre,
            self.engine.clone(),
        )
    }
}

/// Refuse an import the sandbox never provides, or one needing a capability the manifest
/// does not declare (a component without a manifest declares none).
fn check_imports(imports: &[String], manifest: Option<&Manifest>) -> Result<(), Cause> {
    for import in imports {
        match classify(import) {
            Import::Baseline => {}
            Import::Refused => return Err(Cause::ForbiddenImport(import.clone())),
            Import::Capability(capability) => {
                if !manifest.is_some_and(|m| m.capabilities.contains(&capability)) {
                    return Err(Cause::Undeclared {
                        import: import.clone(),
                        capability,
                        has_manifest: manifest.is_some(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Advance the engine's epoch once per tick of wall time, for as long as the engine lives.
fn spawn_epoch_ticker(engine: &Engine, clock: Arc<EpochClock>) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                clock.catch_up(|| engine.increment_epoch());
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch thread");
}

/// The engine and the clock its epoch follows.
#[derive(Clone)]
pub(super) struct TimedEngine {
    pub(super) engine: Engine,
    pub(super) clock: Arc<EpochClock>,
}

/// The engine's epoch follows the clock, not the number of wake-ups: a sleep overshoots,
/// and on a busy machine the ticker may wait several milliseconds for a core, so counting
/// wake-ups would stretch a 100 ms budget to 300 ms. Ticks missed while it waited are caught
/// up at once, and a deadline set meanwhile counts them in, so no budget is cut short either.
pub(super) struct EpochClock {
    started: Instant,
    /// Ticks the engine's epoch has been advanced by (written by the ticker alone).
    counted: AtomicU64,
}

impl EpochClock {
    pub(super) fn new() -> EpochClock {
        EpochClock {
            started: Instant::now(),
            counted: AtomicU64::new(0),
        }
    }

    /// Ticks of wall time since the clock started.
    fn due(&self) -> u64 {
        (self.started.elapsed().as_nanos() / EPOCH_TICK.as_nanos()) as u64
    }

    /// Call `tick` once for every tick of wall time not yet counted.
    fn catch_up(&self, mut tick: impl FnMut()) {
        let due = self.due();
        let mut counted = self.counted.load(Ordering::Relaxed);
        while counted < due {
            tick();
            counted += 1;
            self.counted.store(counted, Ordering::Release);
        }
    }

    /// The epoch deadline, relative to the engine's epoch now, that falls `budget` from now:
    /// the budget's ticks, one for the tick under way, and those the ticker has yet to count.
    pub(super) fn deadline(&self, budget: Duration) -> u64 {
        let behind = self
            .due()
            .saturating_sub(self.counted.load(Ordering::Acquire));
        (budget.as_nanos() / EPOCH_TICK.as_nanos()).max(1) as u64 + 1 + behind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_ticker_catches_up_with_the_clock() {
        let clock = EpochClock::new();
        let budget = Duration::from_millis(100);
        let mut ticks = 0u64;
        // 30 ticks of wall time without a wake-up: a deadline set now counts them in...
        std::thread::sleep(EPOCH_TICK * 30);
        assert!(
            clock.deadline(budget) >= 101 + 30,
            "{}",
            clock.deadline(budget)
        );
        // ...and the next wake-up advances the epoch by all 30 at once.
        clock.catch_up(|| ticks += 1);
        assert!(ticks >= 30, "{ticks} ticks");
        assert!(
            clock.deadline(budget) <= 101 + 1,
            "{}",
            clock.deadline(budget)
        );
        // Woken again at once: nothing is due, nothing is counted twice.
        let before = ticks;
        clock.catch_up(|| ticks += 1);
        assert!(ticks - before <= 1, "{} more ticks", ticks - before);
    }
}
