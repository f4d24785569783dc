//! Installed plugins: a content-addressed store, the lock that pins them, and signatures.
//!
//! - `host plugin install SOURCE` takes a plugin crate (built first), a `.wasm` file or an
//!   `http(s)://` URL, with its signature from `SOURCE.sig` (for a crate: beside the built
//!   component) if there is one. The component must carry a manifest (`host plugin build`
//!   embeds `weir-plugin.toml`), pass the sandbox's import checks, and be signed by a key in
//!   `weir.toml`'s `[plugins] trusted_keys` unless `--allow-unsigned`.
//! - Its bytes go to `<store>/sha256/<hex>.wasm` (store: `.weir/plugins` beside `weir.toml`,
//!   or `[plugins] store`), and [`lock`] pins name → version → digest in `weir.lock`.
//! - A pipeline step names it (`plugin = "orders-transform"` or `"orders-transform@0.1.0"`);
//!   every load re-hashes the stored bytes against the lock and checks the signature again
//!   against today's trusted keys, so a changed component or a revoked key stops the run.
//!   A step with `plugin` written as a path (it has a `/` or ends in `.wasm`) loads that
//!   crate or file directly, with no lock or signature: development mode.

mod fetch;
pub mod lock;
pub mod sign;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::project::{FILE_NAME as PROJECT_FILE, Project};
use crate::plugin::build::{BuildError, BuildOptions, build};
use crate::plugin::manifest::{FILE_NAME as MANIFEST_FILE, Manifest, is_plugin_name};
use crate::plugin::{Plugin, PluginError, Runtime, store_atomically};
pub use fetch::FetchError;
use lock::{Entry, Lock, LockError};
use sign::{PublicKey, SignError, Signature};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{PROJECT_FILE}: [plugins] trusted_keys: {0}")]
    TrustedKey(SignError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: {error}")]
    SignatureFile { what: String, error: SignError },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(
        "{0} has no embedded manifest, so it cannot be installed: give its crate a {MANIFEST_FILE} and build it with `host plugin build`"
    )]
    NoManifest(String),
    #[error("plugin `{name}` {version}: {error}")]
    Signature {
        name: String,
        version: String,
        error: SignError,
    },
    #[error("plugin `{name}` {version} is not signed: sign it with `host plugin sign` ({hint})")]
    Unsigned {
        name: String,
        version: String,
        hint: &'static str,
    },
    #[error(
        "plugin `{name}` is not installed in {lock} (installed: {installed}); install it with `host plugin install SOURCE`"
    )]
    NotInstalled {
        name: String,
        lock: PathBuf,
        installed: String,
    },
    #[error(
        "plugin `{name}` is installed in several versions ({versions}): name one, e.g. `{name}@{first}`"
    )]
    Ambiguous {
        name: String,
        versions: String,
        first: String,
    },
    #[error(
        "plugin `{name}` {version}: its component {path} is missing from the store; install it again with `host plugin install {from}`"
    )]
    Missing {
        name: String,
        version: String,
        path: PathBuf,
        from: String,
    },
    #[error(transparent)]
    DigestMismatch(Box<DigestMismatch>),
}

/// The stored bytes of an installed plugin no longer hash to the lock's digest.
#[derive(Debug, thiserror::Error)]
#[error(
    "plugin `{name}` {version}: the stored component {path} has sha256:{found}, but {lock} pins {expected}; it changed after it was installed. Install it again (`host plugin install {from}`) or check every plugin with `host plugin verify`"
)]
pub struct DigestMismatch {
    name: String,
    version: String,
    path: PathBuf,
    found: String,
    expected: String,
    lock: PathBuf,
    from: String,
}

/// What a pipeline step's `plugin` names: a path (development mode) or an installed plugin.
#[derive(Debug, PartialEq, Eq)]
pub enum PluginRef<'a> {
    Path(&'a str),
    Installed {
        name: &'a str,
        version: Option<&'a str>,
    },
}

impl<'a> PluginRef<'a> {
    /// A plugin name (lowercase letters, digits, `-`, `_`), optionally `@version`, is an
    /// installed plugin; anything else (with a `/`, or ending in `.wasm`) is a path.
    pub fn parse(written: &'a str) -> PluginRef<'a> {
        let (name, version) = match written.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (written, None),
        };
        let version_ok = version.is_none_or(|v| !v.is_empty() && !v.contains(['/', '\\', '@']));
        if is_plugin_name(name) && version_ok {
            PluginRef::Installed { name, version }
        } else {
            PluginRef::Path(written)
        }
    }
}

/// Where `host plugin install` takes a component from.
pub enum Source {
    Crate(PathBuf),
    File(PathBuf),
    Url(String),
}

impl Source {
    pub fn parse(text: &str) -> Source {
        if text.starts_with("http://") || text.starts_with("https://") {
            Source::Url(text.to_string())
        } else if Path::new(text).is_dir() {
            Source::Crate(PathBuf::from(text))
        } else {
            Source::File(PathBuf::from(text))
        }
    }

    /// The component's bytes and, if there is one, its signature file's text.
    pub fn fetch(&self, quiet: bool) -> Result<(Vec<u8>, Option<String>), StoreError> {
        let component = match self {
            Source::Url(url) => return Ok(fetch::component(url)?),
            Source::Crate(dir) => {
                let options = BuildOptions {
                    quiet,
                    ..Default::default()
                };
                build(dir, &options)?.path
            }
            Source::File(path) => path.clone(),
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| StoreError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let wasm = read(&component)?;
        let sig_path = sig_path(&component);
        let signature = match std::fs::read_to_string(&sig_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(StoreError::Read {
                    path: sig_path,
                    source,
                });
            }
        };
        Ok((wasm, signature))
    }

    /// How the lock records it: a path relative to the project when it is inside it.
    fn describe(&self, project_dir: &Path) -> String {
        match self {
            Source::Url(url) => url.clone(),
            Source::Crate(path) | Source::File(path) => {
                let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                let relative = path.strip_prefix(project_dir).unwrap_or(&path);
                relative.display().to_string()
            }
        }
    }
}

/// Where a component's signature is looked for: `x.wasm.sig` beside `x.wasm`.
pub fn sig_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// The project's installed plugins.
pub struct Store {
    dir: PathBuf,
    project_dir: PathBuf,
    pub lock: Lock,
    trusted: Vec<PublicKey>,
}

/// What verifying one installed plugin found.
pub enum Verified {
    Signed(PublicKey),
    Unsigned,
}

impl Store {
    pub fn open(project: &Project) -> Result<Store, StoreError> {
        let trusted = project
            .settings
            .plugins
            .trusted_keys
            .iter()
            .map(|k| PublicKey::parse(k))
            .collect::<Result<_, _>>()
            .map_err(StoreError::TrustedKey)?;
        Ok(Store {
            dir: project.plugin_store(),
            project_dir: project.dir().to_path_buf(),
            lock: Lock::read(project.dir())?,
            trusted,
        })
    }

    /// Where the component with this sha256 (hex) is kept.
    pub fn component_path(&self, hex: &str) -> PathBuf {
        self.dir.join("sha256").join(format!("{hex}.wasm"))
    }

    /// Check a component and its signature, keep it in the store and pin it in the lock
    /// (replacing the same name and version).
    pub fn install(
        &mut self,
        runtime: &Runtime,
        source: &Source,
        wasm: &[u8],
        signature: Option<&str>,
        allow_unsigned: bool,
    ) -> Result<Entry, StoreError> {
        let described = source.describe(&self.project_dir);
        let manifest = Manifest::embedded(wasm)
            .map_err(|e| StoreError::NoManifest(format!("{described} ({e})")))?
            .ok_or_else(|| StoreError::NoManifest(described.clone()))?;
        let plugin = runtime.load_bytes(&manifest.name, wasm)?;
        let signature = signature
            .map(Signature::parse_file)
            .transpose()
            .map_err(|error| StoreError::SignatureFile {
                what: format!("the signature of {described}"),
                error,
            })?;
        let signed_by = self.check_signature(
            &manifest.name,
            &manifest.version,
            plugin.digest(),
            signature.as_ref(),
            allow_unsigned,
            "or install it with --allow-unsigned",
        )?;
        let path = self.component_path(plugin.digest());
        if !path.exists() {
            store_atomically(&path, wasm).map_err(|source| StoreError::Write {
                path: path.clone(),
                source,
            })?;
        }
        let entry = Entry {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            world: manifest.world,
            digest: format!("sha256:{}", plugin.digest()),
            source: described,
            capabilities: manifest.capabilities.clone(),
            signed_by: signed_by.as_ref().map(ToString::to_string),
            signature: signature.map(|s| s.to_base64()),
        };
        self.lock
            .entries
            .retain(|e| !(e.name == entry.name && e.version == entry.version));
        self.lock.entries.push(entry.clone());
        self.lock.write()?;
        self.prune();
        Ok(entry)
    }

    /// Load an installed plugin for a pipeline step: its stored bytes must still hash to the
    /// lock's digest and be signed by a trusted key (unless the step allows unsigned).
    pub fn load(
        &self,
        runtime: &Runtime,
        name: &str,
        version: Option<&str>,
        allow_unsigned: bool,
    ) -> Result<Plugin, StoreError> {
        let entry = self.entry(name, version)?;
        let wasm = self.read_checked(entry)?;
        self.check_entry_signature(entry, allow_unsigned)?;
        Ok(runtime.load_bytes(&entry.name, &wasm)?)
    }

    /// Re-hash an installed plugin's component and check its signature against today's
    /// trusted keys (an unsigned one passes: it was allowed at install).
    pub fn verify(&self, entry: &Entry) -> Result<Verified, StoreError> {
        self.read_checked(entry)?;
        Ok(match self.check_entry_signature(entry, true)? {
            Some(key) => Verified::Signed(key),
            None => Verified::Unsigned,
        })
    }

    /// Drop `name` (every version, or just `version`) from the lock, and components no
    /// longer pinned from the store. Returns what was removed.
    pub fn remove(&mut self, name: &str, version: Option<&str>) -> Result<Vec<Entry>, StoreError> {
        let removed: Vec<Entry> = self.lock.find(name, version).into_iter().cloned().collect();
        if removed.is_empty() {
            return Err(self.not_installed(name));
        }
        self.lock.entries.retain(|e| !removed.contains(e));
        self.lock.write()?;
        self.prune();
        Ok(removed)
    }

    fn entry(&self, name: &str, version: Option<&str>) -> Result<&Entry, StoreError> {
        let found = self.lock.find(name, version);
        match found.as_slice() {
            [entry] => Ok(entry),
            [] => Err(self.not_installed(&match version {
                Some(v) => format!("{name}@{v}"),
                None => name.to_string(),
            })),
            [first, ..] => Err(StoreError::Ambiguous {
                name: name.to_string(),
                versions: found
                    .iter()
                    .map(|e| e.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                first: first.version.clone(),
            }),
        }
    }

    fn not_installed(&self, name: &str) -> StoreError {
        let installed: Vec<String> = self
            .lock
            .entries
            .iter()
            .map(|e| format!("{}@{}", e.name, e.version))
            .collect();
        StoreError::NotInstalled {
            name: name.to_string(),
            lock: self.lock.path.clone(),
            installed: if installed.is_empty() {
                "none".into()
            } else {
                installed.join(", ")
            },
        }
    }

    /// The stored component's bytes, which must hash to the lock's digest.
    fn read_checked(&self, entry: &Entry) -> Result<Vec<u8>, StoreError> {
        let path = self.component_path(entry.hex());
        let wasm = std::fs::read(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StoreError::Missing {
                    name: entry.name.clone(),
                    version: entry.version.clone(),
                    path: path.clone(),
                    from: entry.source.clone(),
                }
            } else {
                StoreError::Read {
                    path: path.clone(),
                    source,
                }
            }
        })?;
        let found = hex::encode(Sha256::digest(&wasm));
        if found != entry.hex() {
            return Err(StoreError::DigestMismatch(Box::new(DigestMismatch {
                name: entry.name.clone(),
                version: entry.version.clone(),
                path,
                found,
                expected: entry.digest.clone(),
                lock: self.lock.path.clone(),
                from: entry.source.clone(),
            })));
        }
        Ok(wasm)
    }

    fn check_entry_signature(
        &self,
        entry: &Entry,
        allow_unsigned: bool,
    ) -> Result<Option<PublicKey>, StoreError> {
        let signature = match (&entry.signed_by, &entry.signature) {
            (Some(key), Some(signature)) => {
                Some(Signature::from_parts(key, signature).map_err(|error| {
                    StoreError::Signature {
                        name: entry.name.clone(),
                        version: entry.version.clone(),
                        error,
                    }
                })?)
            }
            _ => None,
        };
        self.check_signature(
            &entry.name,
            &entry.version,
            entry.hex(),
            signature.as_ref(),
            allow_unsigned,
            "or set `allow_unsigned = true` on the step",
        )
    }

    /// The key that validly signed `digest`; `None` for an unsigned component, which only
    /// passes when `allow_unsigned` is given.
    fn check_signature(
        &self,
        name: &str,
        version: &str,
        digest: &str,
        signature: Option<&Signature>,
        allow_unsigned: bool,
        unsigned_hint: &'static str,
    ) -> Result<Option<PublicKey>, StoreError> {
        match signature {
            Some(signature) => signature
                .check(digest, &self.trusted)
                .map(Some)
                .map_err(|error| StoreError::Signature {
                    name: name.to_string(),
                    version: version.to_string(),
                    error,
                }),
            None if allow_unsigned => Ok(None),
            None => Err(StoreError::Unsigned {
                name: name.to_string(),
                version: version.to_string(),
                hint: unsigned_hint,
            }),
        }
    }

    /// Delete stored components the lock no longer pins (best effort: a leftover file is
    /// only disk space).
    fn prune(&self) {
        let Ok(files) = std::fs::read_dir(self.dir.join("sha256")) else {
            return;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            let pinned = self
                .lock
                .entries
                .iter()
                .any(|e| name == format!("{}.wasm", e.hex()));
            if !pinned && name.ends_with(".wasm") {
                let _ = std::fs::remove_file(file.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PluginRef;

    #[test]
    fn names_are_installed_plugins_and_paths_are_paths() {
        let installed = |name, version| PluginRef::Installed { name, version };
        assert_eq!(
            PluginRef::parse("orders-transform"),
            installed("orders-transform", None)
        );
        assert_eq!(
            PluginRef::parse("a_b@0.1.0"),
            installed("a_b", Some("0.1.0"))
        );
        for path in ["../plugins/x", "x.wasm", "./x", "/abs/x", "X", "a@"] {
            assert_eq!(PluginRef::parse(path), PluginRef::Path(path), "{path}");
        }
    }
}
