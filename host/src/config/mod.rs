//! The pipeline file: read, parse, `${VAR}` interpolation, validation.
//!
//! [`load`] turns a pipeline TOML file into a [`LoadedPipeline`] or a [`ConfigError`] that
//! names the file, the line and the key path (`pipelines/orders.toml:12: sinks[1].mode: ...`).
//! Values taken from the environment are treated as secrets: errors and `Debug` output show
//! them as `${NAME}`.

mod document;
mod env;
mod error;
pub mod project;
mod root;
pub mod types;
mod validate;

use std::env::VarError;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::DeTable;

pub use error::ConfigError;
use types::{LoadMode, Pipeline, PluginStep};
pub use validate::SQLITE_SCHEME;

/// A valid pipeline file.
pub struct LoadedPipeline {
    /// The file, as given to [`load`].
    pub path: PathBuf,
    /// The file's directory (absolute); paths in the file are relative to it.
    pub base_dir: PathBuf,
    /// With `${VAR}` already substituted.
    pub pipeline: Pipeline,
    /// One resolved load mode per sink, in the order of `pipeline.sinks`.
    pub modes: Vec<LoadMode>,
    /// The `weir.toml` beside the file or above it, if any.
    pub project: Option<project::Project>,
    secrets: env::Secrets,
}

impl LoadedPipeline {
    /// A path from the file, relative to the file's directory (absolute paths stay as they are).
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }

    /// Where a dataset's `path` points: inside its lake zone when it names one (validation
    /// has checked that the project configures that zone), else as written (relative to the
    /// file, or an `s3://` URL).
    pub fn dataset_location(&self, path: &str, zone: Option<project::Zone>) -> String {
        match zone.and_then(|z| self.project.as_ref()?.zone_root(z)) {
            Some(root) => format!("{root}/{path}"),
            None => path.to_string(),
        }
    }

    /// `text` with every value substituted from the environment shown as `${NAME}`: for
    /// messages elsewhere that quote a path or setting from the pipeline.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.redact(text)
    }

    /// [`redact`](Self::redact) for a source that quotes URLs and responses while it runs,
    /// after the pipeline is gone.
    pub fn redactor(&self) -> Redactor {
        Redactor(self.secrets.clone())
    }
}

/// Masks the values substituted from the environment (`${NAME}` in their place).
#[derive(Clone, Debug, Default)]
pub struct Redactor(env::Secrets);

impl Redactor {
    pub fn redact(&self, text: &str) -> String {
        self.0.redact(text)
    }
}

/// Masks the substituted environment values, which the pipeline holds in clear.
impl fmt::Debug for LoadedPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        #[derive(Debug)]
        #[allow(dead_code)] // read by the derived Debug only
        struct LoadedPipeline<'a> {
            path: &'a Path,
            base_dir: &'a Path,
            pipeline: &'a Pipeline,
            modes: &'a [LoadMode],
            project: &'a Option<project::Project>,
            secrets: &'a env::Secrets,
        }
        let view = LoadedPipeline {
            path: &self.path,
            base_dir: &self.base_dir,
            pipeline: &self.pipeline,
            modes: &self.modes,
            project: &self.project,
            secrets: &self.secrets,
        };
        let text = if f.alternate() {
            format!("{view:#?}")
        } else {
            format!("{view:?}")
        };
        f.write_str(&self.secrets.redact(&text))
    }
}

/// Loads the pipeline file at `path`, taking `${VAR}` values from the process environment.
pub fn load(path: &Path) -> Result<LoadedPipeline, ConfigError> {
    load_with_env(path, |name| std::env::var(name))
}

/// [`load`] with another source of `${VAR}` values (tests, or a CLI `--env` file).
pub fn load_with_env(
    path: &Path,
    env: impl Fn(&str) -> Result<String, VarError>,
) -> Result<LoadedPipeline, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(path, &src, env)
}

/// [`load_with_env`] of `src`, as if it were the file at `path` (which is not read).
pub fn load_str(
    path: &Path,
    src: &str,
    env: impl Fn(&str) -> Result<String, VarError>,
) -> Result<LoadedPipeline, ConfigError> {
    let base_dir = base_dir(path);
    let project = project::Project::find(&base_dir)?;
    let (pipeline, modes, secrets) = parse(path, src, &base_dir, project.as_ref(), &env)?;
    Ok(LoadedPipeline {
        path: path.to_path_buf(),
        base_dir,
        pipeline,
        modes,
        project,
        secrets,
    })
}

fn parse(
    file: &Path,
    src: &str,
    base_dir: &Path,
    project: Option<&project::Project>,
    env: env::Lookup<'_>,
) -> Result<(Pipeline, Vec<LoadMode>, env::Secrets), ConfigError> {
    // The recoverable parse still yields a partial tree, which gives syntax errors a key path.
    let (mut root, errors) = DeTable::parse_recoverable(src);
    let index = document::Index::new(&root);
    if let Some(first) = errors.into_iter().next() {
        return Err(error::syntax(file, src, &index, first));
    }
    let mut at = error::Locator::new(file, src, index);
    let mut secrets = env::Secrets::default();
    env::interpolate(root.get_mut(), env, &mut secrets).map_err(|p| at.problem(p))?;
    at.set_secrets(secrets);
    document::untag(root.get_mut()).map_err(|p| at.problem(p))?;
    let pipeline =
        Pipeline::deserialize(toml::de::Deserializer::from(root)).map_err(|e| at.serde(e))?;
    let modes = validate::validate(&pipeline, base_dir, project, &at)?;
    Ok((pipeline, modes, at.secrets().clone()))
}

fn base_dir(file: &Path) -> PathBuf {
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// A plugin step's `config` table as the JSON its `init` receives. TOML datetimes become
/// strings; a NaN or infinite float becomes `null` (JSON has neither).
pub fn plugin_config_json(step: &PluginStep) -> String {
    let object = step
        .config
        .iter()
        .map(|(k, v)| (k.clone(), to_json(v)))
        .collect();
    serde_json::Value::Object(object).to_string()
}

fn to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        toml::Value::Table(table) => {
            Json::Object(table.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}
