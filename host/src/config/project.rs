//! The project file, `weir.toml`: settings shared by the pipelines beside it or below it.
//! The lake's zone roots, and the installed plugins' store and trusted signing keys (see
//! [`crate::registry`]). It is found by looking in the pipeline file's directory, then in each
//! parent directory; `weir.lock` sits beside it.
//!
//! ```toml
//! [lake]
//! raw = "../warehouse/lake/raw"          # relative to weir.toml, or s3://bucket/prefix
//! staging = "../warehouse/lake/staging"
//! curated = "../warehouse/lake/curated"
//!
//! [plugins]
//! store = ".weir/plugins"                # the default; relative to weir.toml
//! trusted_keys = ["ed25519:<base64 public key>"]
//!
//! [paths]                              # what the pipelines' local paths may point at
//! root = ".."                            # (default: this file's directory; see config::root)
//! allow = ["/srv/exports"]
//!
//! [tenants.acme]                         # steps with `tenant = "acme"` (see plugin::tenant)
//! memory_mib = 128                       # ceilings over the steps' own limits
//! timeout_ms = 2000
//! max_instances = 1                      # acme's plugin calls running at once
//! cpu_ms_per_run = 60000                 # acme's plugin CPU time per pipeline run
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeTable;

use super::ConfigError;
use super::document::Index;
use super::error::{Locator, syntax};
use crate::plugin::TenantLimits;
use crate::store::S3_SCHEME;

pub const FILE_NAME: &str = "weir.toml";

#[derive(Debug, Clone)]
pub struct Project {
    /// The `weir.toml` file.
    pub file: PathBuf,
    pub settings: ProjectFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    #[serde(default)]
    pub lake: Lake,
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantLimits>,
    #[serde(default)]
    pub paths: Paths,
}

/// Where the pipelines' local paths may point (see [`super::root`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// The directory local paths must stay under, relative to `weir.toml` (default: its
    /// directory).
    pub root: Option<String>,
    /// Further directories they may use.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// Installed plugins: where their components are kept, and whose signatures are trusted.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugins {
    /// The content-addressed store's directory (default `.weir/plugins`).
    pub store: Option<String>,
    /// Public keys (`ed25519:<base64>`, as `host plugin keygen` prints them) whose
    /// signatures `host plugin install` and `host run` accept.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// Zone roots: directories relative to `weir.toml` or absolute, or `s3://bucket/prefix`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lake {
    pub raw: Option<String>,
    pub staging: Option<String>,
    pub curated: Option<String>,
}

/// A lake zone: `raw` holds immutable copies of extracted loads, `staging` and `curated`
/// the outputs of pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Raw,
    Staging,
    Curated,
}

impl Zone {
    pub fn name(self) -> &'static str {
        match self {
            Zone::Raw => "raw",
            Zone::Staging => "staging",
            Zone::Curated => "curated",
        }
    }
}

impl Project {
    /// The `weir.toml` in `dir` or its nearest parent that has one.
    pub fn find(dir: &Path) -> Result<Option<Project>, ConfigError> {
        for dir in dir.ancestors() {
            let file = dir.join(FILE_NAME);
            if file.is_file() {
                return Project::load(&file).map(Some);
            }
        }
        Ok(None)
    }

    pub fn load(file: &Path) -> Result<Project, ConfigError> {
        let src = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.to_path_buf(),
            source,
        })?;
        let (root, errors) = DeTable::parse_recoverable(&src);
        let index = Index::new(&root);
        if let Some(first) = errors.into_iter().next() {
            return Err(syntax(file, &src, &index, first));
        }
        let at = Locator::new(file, &src, index);
        let settings = ProjectFile::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| at.serde(e))?;
        Ok(Project {
            file: file.to_path_buf(),
            settings,
        })
    }

    /// The directory holding `weir.toml` (and `weir.lock`).
    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// The installed plugins' store directory.
    pub fn plugin_store(&self) -> PathBuf {
        let store = self.settings.plugins.store.as_deref();
        self.dir().join(store.unwrap_or(".weir/plugins"))
    }

    /// The zone's root as a location (`s3://…`, or a directory made absolute), if the
    /// project configures it.
    pub fn zone_root(&self, zone: Zone) -> Option<String> {
        let lake = &self.settings.lake;
        let root = match zone {
            Zone::Raw => &lake.raw,
            Zone::Staging => &lake.staging,
            Zone::Curated => &lake.curated,
        };
        root.as_ref().map(|r| match r.starts_with(S3_SCHEME) {
            true => r.trim_end_matches('/').to_string(),
            false => self.dir().join(r).display().to_string(),
        })
    }
}
