//! On-disk cache of compiled components, keyed by the component's sha256, the wasmtime
//! version and the engine's compatibility hash, so that a plugin is compiled once per machine.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    pub fn new(dir: PathBuf, engine: &Engine) -> ComponentCache {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!(
            "wasmtime-{}-{:016x}",
            env!("WEIR_WASMTIME_VERSION"),
            hasher.finish()
        );
        ComponentCache { dir, engine_key }
    }

    /// The default location: `$WEIR_CACHE_DIR`, else the user's cache directory.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        directories::ProjectDirs::from("", "", "weir").map(|d| d.cache_dir().to_path_buf())
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("components")
            .join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The compiled component, from the cache or compiled now (and then stored).
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        let path = self.path(digest);
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of this same wasmtime
            // and engine configuration (both are in the key) into the user's own cache dir.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "recompiling: cached component unusable: {e}")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = store_atomically(&path, &component.serialize()?) {
            tracing::warn!(path = %path.display(), "could not cache compiled component: {e}");
        }
        Ok(component)
    }
}

/// Write through a temporary file and rename, so that a reader sees all or nothing.
pub(crate) fn store_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("a file path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}",
        std::process::id(),
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
