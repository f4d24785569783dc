//! `weir.lock`: beside `weir.toml`, written by `host plugin install` and `remove`. It pins
//! each installed plugin's name and version to the sha256 of its component, and records
//! where it came from and who signed it. Commit it with the pipelines.
//!
//! ```toml
//! version = 1
//!
//! [[plugin]]
//! name = "orders-transform"
//! version = "0.1.0"
//! world = "transformer"
//! digest = "sha256:9f2c…"
//! source = "plugins/orders-transform"
//! capabilities = []
//! signed_by = "ed25519:…"     # absent: installed with --allow-unsigned
//! signature = "…"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plugin::Capability;
use crate::plugin::manifest::World;

pub const FILE_NAME: &str = "weir.lock";
const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid lock file ({message}); restore it from version control, or delete it and install the plugins again"
    )]
    Invalid { path: PathBuf, message: String },
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub version: String,
    pub world: World,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The path (relative to the project) or URL it was installed from.
    pub source: String,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Entry {
    /// The digest's hex digits.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    #[serde(default, rename = "plugin")]
    plugins: Vec<Entry>,
}

#[derive(Debug)]
pub struct Lock {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl Lock {
    /// The lock in `dir`, or an empty one if there is none yet.
    pub fn read(dir: &Path) -> Result<Lock, LockError> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Lock {
                    path,
                    entries: Vec::new(),
                });
            }
            Err(source) => return Err(LockError::Read { path, source }),
        };
        let invalid = |message: String| LockError::Invalid {
            path: path.clone(),
            message,
        };
        let file: LockFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.version != FORMAT {
            return Err(invalid(format!(
                "format version {}, this Weir reads {FORMAT}",
                file.version
            )));
        }
        Ok(Lock {
            path,
            entries: file.plugins,
        })
    }

    /// Write the lock (sorted by name and version), atomically.
    pub fn write(&mut self) -> Result<(), LockError> {
        self.entries
            .sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        let file = LockFile {
            version: FORMAT,
            plugins: self.entries.clone(),
        };
        let text = format!(
            "# Written by `host plugin install` and `host plugin remove`; do not edit.\n{}",
            toml::to_string(&file).expect("a lock serializes")
        );
        crate::plugin::store_atomically(&self.path, text.as_bytes()).map_err(|source| {
            LockError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The entries for `name`, at `version` if given.
    pub fn find(&self, name: &str, version: Option<&str>) -> Vec<&Entry> {
        self.entries
            .iter()
            .filter(|e| e.name == name && version.is_none_or(|v| e.version == v))
            .collect()
    }
}
