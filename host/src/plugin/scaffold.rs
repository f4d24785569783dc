//! `host plugin new NAME --lang LANG`: a plugin project that builds and passes its own test
//! out of the box. Every template is the same small transform (upper-case every string
//! column) with the same sample input and expected output under `test/`, so `host plugin
//! test DIR --input test/input.csv --expect test/expected.csv` checks it in any language.

use std::path::{Path, PathBuf};

use super::build::Language;
use super::manifest::is_plugin_name;

/// Files every template has, whatever the language.
const COMMON: &[(&str, &str)] = &[
    (
        "weir-plugin.toml",
        include_str!("../../templates/common/weir-plugin.toml"),
    ),
    (
        "test/input.csv",
        include_str!("../../templates/common/test/input.csv"),
    ),
    (
        "test/expected.csv",
        include_str!("../../templates/common/test/expected.csv"),
    ),
];

const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
    (".gitignore", "target/\n"),
];

const JS: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    (
        "src/index.js",
        include_str!("../../templates/js/src/index.js"),
    ),
    (".gitignore", "target/\nnode_modules/\n"),
];

const PYTHON: &[(&str, &str)] = &[
    (
        "pyproject.toml",
        include_str!("../../templates/python/pyproject.toml"),
    ),
    ("app.py", include_str!("../../templates/python/app.py")),
    (".gitignore", "target/\n__pycache__/\n"),
];

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "`{0}` is not a plugin name: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
    )]
    Name(String),
    #[error("{0} already exists and is not empty; choose another name or directory")]
    Exists(PathBuf),
    #[error("could not write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn files(language: Language) -> &'static [(&'static str, &'static str)] {
    match language {
        Language::Rust => RUST,
        Language::Js => JS,
        Language::Python => PYTHON,
    }
}

/// Write a new plugin project `name` in the directory `dir`; returns the files written.
pub fn new_project(
    dir: &Path,
    name: &str,
    language: Language,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !is_plugin_name(name) {
        return Err(ScaffoldError::Name(name.to_string()));
    }
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let mut written = Vec::new();
    for (file, text) in COMMON.iter().chain(files(language)) {
        let path = dir.join(file);
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{rust_sdk}}", &rust_sdk_path(dir));
        let write = |path: &Path| -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)
        };
        write(&path).map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Where a new Rust plugin finds `weir-sdk`: this checkout's `sdk/` (the SDK is not on
/// crates.io yet), relative when the plugin sits inside the checkout.
fn rust_sdk_path(dir: &Path) -> String {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match pathdiff(&sdk, &dir) {
        Some(relative) => relative.display().to_string(),
        None => sdk.display().to_string(),
    }
}

/// `target` relative to `base`, when they share the checkout (both absolute).
fn pathdiff(target: &Path, base: &Path) -> Option<PathBuf> {
    let root = target.parent()?; // the checkout
    let inside = base.strip_prefix(root).ok()?;
    let ups = inside.components().count();
    let mut relative: PathBuf = std::iter::repeat_n("..", ups).collect();
    relative.push(target.file_name()?);
    Some(relative)
}
