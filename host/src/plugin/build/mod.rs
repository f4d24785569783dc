//! `host plugin build DIR`: turn a plugin project into a component, with the project's
//! `weir-plugin.toml` embedded (see [`crate::plugin::manifest`]).
//!
//! The language is read off the project's files ([`Language::detect`]); each language's
//! build is one file here.

mod js;
mod python;
mod rust;

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{Manifest, ManifestError};
use super::store_atomically;
pub use js::{APACHE_ARROW, COMPONENTIZE_JS, ESBUILD, Toolchain, ensure_toolchain};
pub use python::{COMPONENTIZE_PY_VERSION, PythonError};
pub use rust::{PLUGIN_PROFILE, WASM_TARGET, build_many, ensure_wasm_target};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{0} is not a plugin project: it has no Cargo.toml (Rust), package.json (JavaScript) or pyproject.toml (Python); `host plugin new NAME --lang rust|js|python` makes one"
    )]
    UnknownLanguage(PathBuf),
    #[error("{0} has no Cargo.toml: a plugin is a cargo crate with crate-type = [\"cdylib\"]")]
    NotACrate(PathBuf),
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`rustup target add {WASM_TARGET}` failed; install the target by hand and retry")]
    TargetInstall,
    #[error("building {0} failed (the compiler's messages are above)")]
    Compile(PathBuf),
    #[error("cargo built no .wasm file for {0}: is its crate-type \"cdylib\"?")]
    NoArtifact(PathBuf),
    #[error(
        "`{0}` was not found: building JavaScript plugins needs Node.js 18 or later with npm on PATH (e.g. `apt-get install nodejs npm`, or from nodejs.org)"
    )]
    NodeMissing(String),
    #[error(
        "installing the JavaScript toolchain into {dir} failed; check that the npm registry is reachable and retry{output}"
    )]
    ToolchainInstall { dir: PathBuf, output: String },
    #[error("{path} is not valid JSON: {message}")]
    PackageJson { path: PathBuf, message: String },
    #[error(
        "the plugin's entry {0} does not exist: set `main` in package.json or write src/index.js"
    )]
    NoEntry(PathBuf),
    #[error("bundling {entry} with esbuild failed:{output}")]
    Bundle { entry: PathBuf, output: String },
    #[error("componentize-js could not make a component of {entry}:{output}")]
    Componentize { entry: PathBuf, output: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Python(#[from] PythonError),
    #[error("could not write the built component {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not read the built component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A built component.
#[derive(Debug, Clone)]
pub struct Built {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// Options of a plugin build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Cargo's target directory (default: cargo's own choice for the crate).
    pub target_dir: Option<PathBuf>,
    /// Say nothing on stderr except compiler errors.
    pub quiet: bool,
}

/// The languages a plugin can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Js,
    Python,
}

impl Language {
    /// The language of the plugin project in `dir`, from the file that defines its build.
    pub fn detect(dir: &Path) -> Result<Language, BuildError> {
        if dir.join("Cargo.toml").is_file() {
            Ok(Language::Rust)
        } else if dir.join("package.json").is_file() {
            Ok(Language::Js)
        } else if dir.join("pyproject.toml").is_file() {
            Ok(Language::Python)
        } else {
            Err(BuildError::UnknownLanguage(dir.to_path_buf()))
        }
    }
}

/// Build the plugin project in `dir`, whatever its language.
pub fn build(dir: &Path, options: &BuildOptions) -> Result<Built, BuildError> {
    match Language::detect(dir)? {
        Language::Rust => rust::build(dir, options),
        Language::Js => js::build(dir, options),
        Language::Python => python::build(dir, options),
    }
}

/// The last step of every build: embed the manifest (if the project has one) into the
/// component at `path`, in place, and hash the result.
fn finish(path: PathBuf, manifest: Option<&Manifest>) -> Result<Built, BuildError> {
    let mut bytes = std::fs::read(&path).map_err(|source| BuildError::Read {
        path: path.clone(),
        source,
    })?;
    if let Some(manifest) = manifest {
        // Atomically: concurrent builds of one project (parallel test binaries) write the
        // same bytes, and a reader never sees half a file.
        bytes = manifest.embed(&bytes)?;
        store_atomically(&path, &bytes).map_err(|source| BuildError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(Built {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
        path,
    })
}
