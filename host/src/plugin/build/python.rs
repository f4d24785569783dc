//! Python plugins: a directory with a `pyproject.toml` and a module (`[tool.weir] module`,
//! default `app`) whose `@weir_sdk.export` class is the plugin. componentize-py compiles it
//! with CPython into a component; `--stub-wasi` leaves the component without imports.
//!
//! What the build needs is kept in a toolchain cache, `$WEIR_TOOLCHAINS` or else
//! `~/.cache/weir/toolchains` (`$XDG_CACHE_HOME/weir/toolchains` when that is set):
//! - `python-componentize-py-<version>/`: a venv with the pinned componentize-py, installed
//!   from PyPI on first use;
//! - `weir-sdk-python-<hash>/` and `wit-<hash>/`: the Python SDK and `plugin.wit`, embedded
//!   in this binary, so a plugin project outside the Weir checkout builds the same.
//!
//! Every cache entry is made in a temporary directory and renamed into place: concurrent
//! builds either win the rename or use the winner's copy, and an interrupted install leaves
//! no half-made entry behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::{BuildError, BuildOptions, Built};
use crate::plugin::manifest::{Manifest, World};

/// The componentize-py release plugins are built with: pinned, so a build is reproducible.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

const WIT: &str = include_str!("../../../../wit/plugin.wit");

/// The `weir_sdk` package, as written into the cache.
const SDK: &[(&str, &str)] = &[
    (
        "weir_sdk/__init__.py",
        include_str!("../../../../sdk/python/weir_sdk/__init__.py"),
    ),
    (
        "weir_sdk/table.py",
        include_str!("../../../../sdk/python/weir_sdk/table.py"),
    ),
    (
        "weir_sdk/ipc.py",
        include_str!("../../../../sdk/python/weir_sdk/ipc.py"),
    ),
    (
        "weir_sdk/_guest.py",
        include_str!("../../../../sdk/python/weir_sdk/_guest.py"),
    ),
];

/// The module componentize-py starts from; written by the build, never by the author.
const ENTRY_MODULE: &str = "weir_plugin_main";

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error(
        "could not run `{python}` ({source}): building a Python plugin needs Python 3.9 or later with venv and pip (Debian: `apt-get install python3 python3-venv python3-pip`)"
    )]
    NoPython {
        python: String,
        source: std::io::Error,
    },
    #[error(
        "`{python} -m venv` failed (its messages are above): install Python's venv module (Debian: `apt-get install python3-venv`)"
    )]
    Venv { python: String },
    #[error(
        "pip could not install componentize-py {COMPONENTIZE_PY_VERSION} (its messages are above): the first Python build needs PyPI; or set WEIR_TOOLCHAINS to a directory that has `python-componentize-py-{COMPONENTIZE_PY_VERSION}` already"
    )]
    Install,
    #[error("could not {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no toolchain directory: set WEIR_TOOLCHAINS or HOME")]
    NoCacheDir,
    #[error("{path}: {message}")]
    Pyproject { path: PathBuf, message: String },
    #[error(
        "{dir} has no `{module}.py` nor `{module}/__init__.py`: the plugin's module is `[tool.weir] module` in pyproject.toml (default `app`)"
    )]
    NoModule { dir: PathBuf, module: String },
    #[error("componentize-py could not build {0} (its messages are above)")]
    Componentize(PathBuf),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PythonError {
    let path = path.to_path_buf();
    move |source| PythonError::Io { what, path, source }
}

/// Build the Python plugin project in `dir` into `dir/target/<name>.wasm`.
pub(super) fn build(dir: &Path, options: &BuildOptions) -> Result<Built, BuildError> {
    let manifest = Manifest::in_dir(dir)?;
    let project = Project::read(dir)?;
    let name = manifest
        .as_ref()
        .map(|m| m.name.clone())
        .or_else(|| project.name.clone())
        .unwrap_or_else(|| {
            let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            dir.file_name()
                .map_or("plugin".into(), |n| n.to_string_lossy().into_owned())
        });
    let world = manifest.as_ref().map_or(World::Transformer, |m| m.world);

    let root = toolchains_dir()?;
    let python = python_command();
    let toolchain = ensure_componentize_py(&root, &python, options.quiet)?;
    let sdk = ensure_files(&root, "weir-sdk-python", SDK)?;
    let wit = ensure_files(&root, "wit", &[("plugin.wit", WIT)])?;

    // The plugin's modules and the entry module, staged apart from the project: the
    // project may hold a venv or build output that must not end up in the component.
    let target = dir.join("target");
    let stage = unique_sibling(&target.join("python-build"));
    let staged = stage_sources(dir, &project.module, world, &stage);
    let output = PathBuf::from(format!("{}.wasm", stage.display()));
    let result = staged.and_then(|()| {
        let mut command = Command::new(toolchain.join("bin/python"));
        command
            .args(["-c", "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())"]);
        if options.quiet {
            command.arg("--quiet"); // an option of componentize-py, not of the subcommand
        }
        command
            .arg("-d")
            .arg(&wit)
            .args(["-w", world_name(world), "componentize", ENTRY_MODULE, "--stub-wasi"])
            .arg("-p")
            .arg(&stage)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(&output)
            // Otherwise componentize-py adds that venv's site-packages to the plugin.
            .env_remove("VIRTUAL_ENV")
            .env_remove("PYTHONPATH")
            // componentize-py's own (Rust) backtrace would bury the Python error above it.
            .env("RUST_LIB_BACKTRACE", "0");
        let status = command.status().map_err(|source| PythonError::NoPython {
            python: toolchain.join("bin/python").display().to_string(),
            source,
        })?;
        if !status.success() {
            return Err(PythonError::Componentize(dir.to_path_buf()));
        }
        let path = target.join(format!("{name}.wasm"));
        // Renamed into place: concurrent builds of one project never mix their output.
        std::fs::rename(&output, &path).map_err(io("write", &path))?;
        Ok(path)
    });
    let _ = std::fs::remove_dir_all(&stage);
    let _ = std::fs::remove_file(&output);
    super::finish(result?, manifest.as_ref())
}

fn world_name(world: World) -> &'static str {
    match world {
        World::Transformer => "transformer",
        World::Validator => "validator",
    }
}

/// What the build reads from `pyproject.toml`.
struct Project {
    name: Option<String>,
    module: String,
}

impl Project {
    fn read(dir: &Path) -> Result<Project, PythonError> {
        let path = dir.join("pyproject.toml");
        let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
        let bad = |message: String| PythonError::Pyproject {
            path: path.clone(),
            message,
        };
        let value: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
        let name = value
            .get("project")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string);
        let module = match value
            .get("tool")
            .and_then(|t| t.get("weir"))
            .and_then(|w| w.get("module"))
        {
            None => "app".to_string(),
            Some(toml::Value::String(m)) if is_module_name(m) => m.clone(),
            Some(other) => {
                return Err(bad(format!(
                    "[tool.weir] module = {other} is not a top-level Python module name (e.g. \"app\")"
                )));
            }
        };
        Ok(Project { name, module })
    }
}

fn is_module_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s != ENTRY_MODULE
}

/// Copy the project's top-level modules and packages into `stage` and write the entry
/// module, which imports the plugin's module and binds the SDK's exports to its class.
fn stage_sources(dir: &Path, module: &str, world: World, stage: &Path) -> Result<(), PythonError> {
    if !dir.join(format!("{module}.py")).is_file()
        && !dir.join(module).join("__init__.py").is_file()
    {
        return Err(PythonError::NoModule {
            dir: dir.to_path_buf(),
            module: module.to_string(),
        });
    }
    std::fs::create_dir_all(stage).map_err(io("create", stage))?;
    for entry in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || matches!(name.as_str(), "target" | "__pycache__") {
            continue;
        }
        if path.is_file() && name.ends_with(".py") {
            std::fs::copy(&path, stage.join(&name)).map_err(io("copy", &path))?;
        } else if path.join("__init__.py").is_file() {
            copy_package(&path, &stage.join(&name))?;
        }
    }
    let export = match world {
        World::Transformer => "Transform",
        World::Validator => "Validate",
    };
    let entry = format!(
        "# Written by `host plugin build`: the module componentize-py starts from.\n\
         import {module} as _plugin_module\n\
         from weir_sdk._guest import bind as _bind\n\n\
         {export} = _bind(_plugin_module, \"{world}\")\n",
        world = world_name(world),
    );
    let path = stage.join(format!("{ENTRY_MODULE}.py"));
    std::fs::write(&path, entry).map_err(io("write", &path))
}

fn copy_package(from: &Path, to: &Path) -> Result<(), PythonError> {
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    for entry in std::fs::read_dir(from).map_err(io("read", from))? {
        let entry = entry.map_err(io("read", from))?;
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            copy_package(&path, &to.join(&name))?;
        } else {
            std::fs::copy(&path, to.join(&name)).map_err(io("copy", &path))?;
        }
    }
    Ok(())
}

/// `$WEIR_TOOLCHAINS`, else `$XDG_CACHE_HOME/weir/toolchains`, else
/// `~/.cache/weir/toolchains`.
pub fn toolchains_dir() -> Result<PathBuf, PythonError> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("WEIR_TOOLCHAINS") {
        return Ok(PathBuf::from(dir));
    }
    let cache = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or(PythonError::NoCacheDir)?;
    Ok(cache.join("weir").join("toolchains"))
}

fn python_command() -> String {
    std::env::var("WEIR_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The venv holding the pinned componentize-py, installed (saying so) if missing.
fn ensure_componentize_py(root: &Path, python: &str, quiet: bool) -> Result<PathBuf, PythonError> {
    let dir = root.join(format!("python-componentize-py-{COMPONENTIZE_PY_VERSION}"));
    if dir.join("bin/python").exists() {
        return Ok(dir);
    }
    if !quiet {
        eprintln!(
            "weir: installing the Python toolchain (componentize-py {COMPONENTIZE_PY_VERSION}) into {}",
            dir.display()
        );
    }
    install_dir(&dir, |tmp| {
        let status = Command::new(python)
            .args(["-m", "venv"])
            .arg(tmp)
            .status()
            .map_err(|source| PythonError::NoPython {
                python: python.to_string(),
                source,
            })?;
        if !status.success() {
            return Err(PythonError::Venv {
                python: python.to_string(),
            });
        }
        // The venv's own python, run by path: the venv still works once renamed (unlike
        // the scripts pip writes, which name the temporary directory).
        let mut pip = Command::new(tmp.join("bin/python"));
        pip.args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(format!("componentize-py=={COMPONENTIZE_PY_VERSION}"))
            .env_remove("PIP_REQUIRE_VIRTUALENV");
        if quiet {
            pip.arg("--quiet");
        }
        let status = pip.status().map_err(|source| PythonError::NoPython {
            python: tmp.join("bin/python").display().to_string(),
            source,
        })?;
        if !status.success() {
            return Err(PythonError::Install);
        }
        Ok(())
    })?;
    Ok(dir)
}

/// `files` written under `root/<prefix>-<hash of files>/`, unless already there.
fn ensure_files(root: &Path, prefix: &str, files: &[(&str, &str)]) -> Result<PathBuf, PythonError> {
    let mut hash = Sha256::new();
    for (name, text) in files {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    let digest = hex::encode(hash.finalize());
    let dir = root.join(format!("{prefix}-{}", &digest[..16]));
    if dir.is_dir() {
        return Ok(dir);
    }
    install_dir(&dir, |tmp| {
        for (name, text) in files {
            let path = tmp.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("create", parent))?;
            }
            std::fs::write(&path, text).map_err(io("write", &path))?;
        }
        Ok(())
    })?;
    Ok(dir)
}

/// Make `dir` by filling a temporary sibling and renaming it into place. If another build
/// got there first, its copy is kept and ours discarded.
fn install_dir(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), PythonError>,
) -> Result<(), PythonError> {
    let tmp = unique_sibling(dir);
    let parent = dir.parent().expect("a cache entry has a parent");
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    let result = fill(&tmp).and_then(|()| match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()), // another build won the race
        Err(source) => Err(PythonError::Io {
            what: "create",
            path: dir.to_path_buf(),
            source,
        }),
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// `.<name>.<pid>.<n>` beside `path`: unique within and across processes.
fn unique_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or("tmp".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}.{}.{n}", std::process::id()))
}
