//! Rust plugins: a cargo crate (`crate-type = ["cdylib"]`) over `weir-sdk`, compiled for
//! wasm32-wasip2. A crate without a `weir-plugin.toml` builds a component without a
//! manifest: it runs from its path (asking for no capabilities) but cannot be installed.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{BuildError, BuildOptions, Built};
use crate::plugin::manifest::Manifest;

pub const WASM_TARGET: &str = "wasm32-wasip2";
/// The cargo profile plugins are built with (defined in the workspace `Cargo.toml`; a
/// plugin outside this workspace falls back to `release`).
pub const PLUGIN_PROFILE: &str = "plugin";

/// Make sure rustup has the wasm32-wasip2 target; install it (saying so) if not.
/// These machines set `RUSTUP_AUTO_INSTALL=0`, so nothing else will.
pub fn ensure_wasm_target(quiet: bool) -> Result<(), BuildError> {
    let installed = run_capture(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    if !quiet {
        eprintln!(
            "weir: the {WASM_TARGET} target is missing; installing it with `rustup target add {WASM_TARGET}`"
        );
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|source| BuildError::Spawn {
            command: "rustup target add".into(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::TargetInstall)
    }
}

/// Build one plugin crate (`dir` holds its Cargo.toml).
pub(super) fn build(dir: &Path, options: &BuildOptions) -> Result<Built, BuildError> {
    let built = build_many(&[dir.to_path_buf()], options)?;
    Ok(built.into_iter().next().expect("one crate, one component"))
}

/// Build several plugin crates of one workspace in one cargo invocation (cargo builds them
/// in parallel and shares what they have in common); results in the order given.
pub fn build_many(dirs: &[PathBuf], options: &BuildOptions) -> Result<Vec<Built>, BuildError> {
    ensure_wasm_target(options.quiet)?;
    let Some(first) = dirs.first() else {
        return Ok(Vec::new());
    };
    // Read every plugin manifest first: a mistake in one fails before a long compile.
    let plugin_manifests = dirs
        .iter()
        .map(|dir| Manifest::in_dir(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let mut manifests = Vec::new();
    for dir in dirs {
        let manifest = dir
            .join("Cargo.toml")
            .canonicalize()
            .map_err(|_| BuildError::NotACrate(dir.clone()))?;
        manifests.push(manifest);
    }
    let profile = if in_weir_workspace(first) {
        PLUGIN_PROFILE
    } else {
        "release"
    };
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "build",
            "--lib",
            "--target",
            WASM_TARGET,
            "--profile",
            profile,
            "--message-format=json-render-diagnostics",
        ])
        .arg("--manifest-path")
        .arg(&manifests[0])
        .stdout(Stdio::piped());
    for manifest in &manifests {
        cargo.arg("--package").arg(package_name(manifest)?);
    }
    if options.quiet {
        cargo.arg("--quiet");
    }
    if let Some(target_dir) = &options.target_dir {
        cargo.arg("--target-dir").arg(target_dir);
    }
    // Settings meant for the host build must not leak into the guest build. Guests get
    // Wasm SIMD (wasmtime runs it as native vector code): arrow's kernels vectorize with it
    // (the orders transform ran ~3-7% faster in its bench).
    cargo
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-C target-feature=+simd128",
        );
    let spawn_error = |source| BuildError::Spawn {
        command: "cargo build".into(),
        source,
    };
    let mut child = cargo.spawn().map_err(spawn_error)?;

    let mut wasm: Vec<Option<PathBuf>> = vec![None; dirs.len()];
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    for line in stdout.lines().map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(index) = manifests
            .iter()
            .position(|m| message["manifest_path"].as_str() == m.to_str())
        else {
            continue;
        };
        let files = message["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str());
        if let Some(file) = files.into_iter().find(|f| f.ends_with(".wasm")) {
            wasm[index] = Some(PathBuf::from(file));
        }
    }
    if !child.wait().map_err(spawn_error)?.success() {
        return Err(BuildError::Compile(first.clone()));
    }
    dirs.iter()
        .zip(wasm)
        .zip(plugin_manifests)
        .map(|((dir, path), manifest)| {
            let path = path.ok_or_else(|| BuildError::NoArtifact(dir.clone()))?;
            super::finish(path, manifest.as_ref())
        })
        .collect()
}

fn package_name(manifest: &Path) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(manifest).map_err(|source| BuildError::Read {
        path: manifest.to_path_buf(),
        source,
    })?;
    let value: toml::Table = text
        .parse()
        .map_err(|_| BuildError::NotACrate(manifest.to_path_buf()))?;
    value
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| BuildError::NotACrate(manifest.to_path_buf()))
}

/// Whether the workspace `dir` belongs to (the nearest `[workspace]` above it, which may be
/// the crate itself) defines the `plugin` profile.
fn in_weir_workspace(dir: &Path) -> bool {
    dir.canonicalize().ok().is_some_and(|dir| {
        dir.ancestors()
            .filter_map(|a| std::fs::read_to_string(a.join("Cargo.toml")).ok())
            .find(|t| t.contains("[workspace]"))
            .is_some_and(|t| t.contains(&format!("[profile.{PLUGIN_PROFILE}]")))
    })
}

fn run_capture(command: &mut Command) -> Result<String, BuildError> {
    let output = command.output().map_err(|source| BuildError::Spawn {
        command: format!("{command:?}"),
        source,
    })?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
