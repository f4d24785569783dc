//! JavaScript plugins: an npm-style project (`package.json`, entry `main` or
//! `src/index.js`) whose entry does `export default transform({...})` from `weir-sdk`.
//!
//! The build needs no `npm install` in the project: the toolchain (componentize-js, esbuild,
//! apache-arrow, at the exact versions below) is installed once into a cache shared by every
//! project, and the SDK and the WIT file this host carries are written beside it. Then:
//! a small generated entry binds the plugin's default export to the WIT exports, esbuild
//! bundles it into one ES module, and componentize-js turns that into a component with
//! every WASI feature disabled, so it imports nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{BuildError, BuildOptions, Built};
use crate::plugin::manifest::{Manifest, World};

pub const COMPONENTIZE_JS: &str = "0.23.0";
pub const ESBUILD: &str = "0.28.2";
pub const APACHE_ARROW: &str = "21.2.0";

const SDK_PACKAGE: &str = include_str!("../../../../sdk/js/package.json");
const SDK_INDEX: &str = include_str!("../../../../sdk/js/index.js");
const WIT: &str = include_str!("../../../../wit/plugin.wit");

/// Every WASI feature componentize-js knows: disabled, the component imports nothing (the
/// default imports wasi:http, which the host does not provide).
const DISABLED_FEATURES: &[&str] = &["stdio", "random", "clocks", "http", "fetch-event"];

/// The installed toolchain: a directory with `node_modules/` (componentize-js, esbuild,
/// apache-arrow, weir-sdk) and `wit/plugin.wit`.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub dir: PathBuf,
}

impl Toolchain {
    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("node_modules/.bin").join(name)
    }
    fn node_modules(&self) -> PathBuf {
        self.dir.join("node_modules")
    }
    fn wit(&self) -> PathBuf {
        self.dir.join("wit/plugin.wit")
    }
}

/// Where toolchains live: `$WEIR_TOOLCHAINS`, else `toolchains/` in the user's cache
/// directory (`~/.cache/weir/toolchains` on Linux).
fn toolchains_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEIR_TOOLCHAINS") {
        return PathBuf::from(dir);
    }
    directories::ProjectDirs::from("", "", "weir")
        .map(|d| d.cache_dir().join("toolchains"))
        .unwrap_or_else(|| std::env::temp_dir().join("weir-toolchains"))
}

/// A name no other build (thread or process) uses at the same time.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        ".{prefix}.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The JavaScript toolchain, installed with npm (saying so) if it is not there yet.
///
/// Idempotent and safe for concurrent builds: npm installs into a fresh directory that is
/// renamed into place in one step; a build that loses the race uses the winner's copy.
pub fn ensure_toolchain(quiet: bool) -> Result<Toolchain, BuildError> {
    let root = toolchains_root();
    let dir = root.join(format!(
        "js-componentize-js{COMPONENTIZE_JS}-esbuild{ESBUILD}-arrow{APACHE_ARROW}"
    ));
    let toolchain = Toolchain { dir };
    if !toolchain.bin("componentize-js").is_file() {
        install(&root, &toolchain.dir, quiet)?;
    }
    // Written on every build (when changed): the SDK and WIT are this host's, whichever
    // host version installed the npm packages.
    for (path, text) in [
        (
            toolchain.node_modules().join("weir-sdk/package.json"),
            SDK_PACKAGE,
        ),
        (
            toolchain.node_modules().join("weir-sdk/index.js"),
            SDK_INDEX,
        ),
        (toolchain.wit(), WIT),
    ] {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
            write_atomically(&path, text).map_err(|source| BuildError::Write { path, source })?;
        }
    }
    Ok(toolchain)
}

/// Write `path` through a uniquely named file and a rename: concurrent builds (threads of
/// one process too) may write the same file at once.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().expect("a file path has a parent");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(unique("write"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn install(root: &Path, dir: &Path, quiet: bool) -> Result<(), BuildError> {
    if !quiet {
        eprintln!(
            "weir: installing the JavaScript toolchain (componentize-js {COMPONENTIZE_JS}, esbuild {ESBUILD}, apache-arrow {APACHE_ARROW}) into {}",
            dir.display()
        );
    }
    let tmp = root.join(unique("js-install"));
    let write_error = |source| BuildError::Write {
        path: tmp.clone(),
        source,
    };
    std::fs::create_dir_all(&tmp).map_err(write_error)?;
    let package = serde_json::json!({
        "name": "weir-js-toolchain",
        "private": true,
        "dependencies": {
            "@bytecodealliance/componentize-js": COMPONENTIZE_JS,
            "esbuild": ESBUILD,
            "apache-arrow": APACHE_ARROW,
        }
    });
    std::fs::write(tmp.join("package.json"), package.to_string()).map_err(write_error)?;
    let mut npm = Command::new("npm");
    npm.args(["install", "--no-audit", "--no-fund", "--save-exact"])
        .current_dir(&tmp)
        .stdin(Stdio::null());
    let output = run(&mut npm, "npm install", quiet).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    let installed =
        output.status.success() && tmp.join("node_modules/.bin/componentize-js").is_file();
    if !installed {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(BuildError::ToolchainInstall {
            dir: dir.to_path_buf(),
            output: tail(&output),
        });
    }
    match std::fs::rename(&tmp, dir) {
        Ok(()) => Ok(()),
        // Another build installed it first: use that one.
        Err(_) if dir.join("node_modules/.bin/componentize-js").is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(source) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(BuildError::Write {
                path: dir.to_path_buf(),
                source,
            })
        }
    }
}

/// Run `command`; its output is captured when `quiet` (and for errors), else shown.
fn run(command: &mut Command, name: &str, quiet: bool) -> Result<Output, BuildError> {
    if !quiet {
        command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
    }
    command.output().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            let program = Path::new(command.get_program());
            let program = program.file_name().unwrap_or(program.as_os_str());
            BuildError::NodeMissing(program.to_string_lossy().into_owned())
        } else {
            BuildError::Spawn {
                command: name.to_string(),
                source,
            }
        }
    })
}

/// The last lines a failed tool wrote (empty when they were shown already).
fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.trim().lines().collect();
    let start = lines.len().saturating_sub(30);
    lines[start..].iter().map(|l| format!("\n  {l}")).collect()
}

/// The entry module: package.json's `main`, else `src/index.js`.
fn entry(dir: &Path) -> Result<PathBuf, BuildError> {
    let path = dir.join("package.json");
    let text = std::fs::read_to_string(&path).map_err(|source| BuildError::Read {
        path: path.clone(),
        source,
    })?;
    let package: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| BuildError::PackageJson {
            path: path.clone(),
            message: e.to_string(),
        })?;
    let main = package["main"].as_str().unwrap_or("src/index.js");
    let entry = dir.join(main);
    if !entry.is_file() {
        return Err(BuildError::NoEntry(entry));
    }
    Ok(entry)
}

/// The plugin's name: its manifest's, else package.json's, else the directory's.
fn plugin_name(dir: &Path, manifest: Option<&Manifest>) -> String {
    if let Some(manifest) = manifest {
        return manifest.name.clone();
    }
    std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|p| {
            p["name"]
                .as_str()
                .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
        })
        .or_else(|| {
            std::path::absolute(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "plugin".into())
}

/// Build the JavaScript plugin project in `dir` into `DIR/target/NAME.wasm`.
pub(super) fn build(dir: &Path, options: &BuildOptions) -> Result<Built, BuildError> {
    let manifest = Manifest::in_dir(dir)?;
    let entry = entry(dir)?;
    let toolchain = ensure_toolchain(options.quiet)?;
    let name = plugin_name(dir, manifest.as_ref());
    let world = match manifest.as_ref().map(|m| m.world) {
        Some(World::Validator) => "validator",
        _ => "transformer",
    };
    let export = match world {
        "validator" => "validate",
        _ => "transform",
    };

    let target = dir.join("target");
    std::fs::create_dir_all(&target).map_err(|source| BuildError::Write {
        path: target.clone(),
        source,
    })?;
    // Unique names: concurrent builds of one project must not read each other's files.
    let glue = target.join(format!("{}.entry.js", unique(&name)));
    let bundle = target.join(format!("{}.bundle.js", unique(&name)));
    let built = target.join(format!("{}.wasm", unique(&name)));
    let result = (|| {
        let entry = std::path::absolute(&entry).unwrap_or(entry);
        let source = format!(
            "import plugin from {};\nimport {{ exportsOf }} from \"weir-sdk\";\nexport const {export} = exportsOf(plugin, \"{world}\");\n",
            serde_json::Value::from(entry.to_string_lossy().into_owned())
        );
        std::fs::write(&glue, source).map_err(|source| BuildError::Write {
            path: glue.clone(),
            source,
        })?;

        // The project's own node_modules first (its dependencies), then the toolchain's
        // (apache-arrow, weir-sdk).
        let mut esbuild = Command::new(toolchain.bin("esbuild"));
        esbuild
            .arg(&glue)
            .args(["--bundle", "--format=esm", "--log-level=warning"])
            .arg(format!("--outfile={}", bundle.display()))
            .env("NODE_PATH", toolchain.node_modules())
            .stdin(Stdio::null());
        let output = run(&mut esbuild, "esbuild", true)?;
        if !output.status.success() {
            return Err(BuildError::Bundle {
                entry: entry.clone(),
                output: tail(&output),
            });
        }

        let mut componentize = Command::new(toolchain.bin("componentize-js"));
        componentize
            .arg(&bundle)
            .arg("--wit")
            .arg(toolchain.wit())
            .args(["--world-name", world, "--disable"])
            .args(DISABLED_FEATURES)
            .arg("--out")
            .arg(&built)
            .stdin(Stdio::null());
        let output = run(&mut componentize, "componentize-js", true)?;
        if !output.status.success() || !built.is_file() {
            return Err(BuildError::Componentize {
                entry: entry.clone(),
                output: tail(&output),
            });
        }
        let path = target.join(format!("{name}.wasm"));
        std::fs::rename(&built, &path).map_err(|source| BuildError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    })();
    for file in [&glue, &bundle, &built] {
        let _ = std::fs::remove_file(file);
    }
    super::finish(result?, manifest.as_ref())
}
