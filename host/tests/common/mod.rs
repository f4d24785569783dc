//! Shared by the integration tests: the plugins, built for real by the test run.

#![allow(dead_code)]

pub mod config;
pub mod fault_proxy;
pub mod hostile;
pub mod http_api;
pub mod pipeline;
pub mod postgres;
pub mod python;
pub mod reliability;
pub mod s3;
pub mod sinks;
pub mod xorshift;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use weir::plugin::build::{BuildOptions, build_many};
use weir::plugin::{Plugin, Runtime};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Built components, by crate directory name.
pub struct Components {
    pub orders_transform: PathBuf,
    pub orders_validator: PathBuf,
    pub hostile: PathBuf,
    pub hostile_validator: PathBuf,
}

/// Build every plugin crate once per test binary, in one cargo call (into cargo's own target
/// directory, shared with `host plugin build`).
pub fn components() -> &'static Components {
    static BUILT: OnceLock<Components> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        let dirs = [
            "plugins/orders-transform",
            "plugins/orders-validator",
            "tests/hostile",
            "tests/hostile-validator",
        ]
        .map(|d| root.join(d));
        let options = BuildOptions {
            quiet: true,
            ..Default::default()
        };
        let built = build_many(&dirs, &options).expect("building the plugins");
        let mut paths = built.into_iter().map(|b| b.path);
        Components {
            orders_transform: paths.next().unwrap(),
            orders_validator: paths.next().unwrap(),
            hostile: paths.next().unwrap(),
            hostile_validator: paths.next().unwrap(),
        }
    })
}

/// The `host` binary, run from the workspace root, with its component cache beside the
/// build (so the test runs share compiled plugins).
pub fn host() -> Command {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
    command
        .current_dir(workspace_root())
        .env("WEIR_CACHE_DIR", target.join("weir-cache"));
    command
}

/// `host run --quiet PIPELINE`.
pub fn run(pipeline: &Path) -> Output {
    host()
        .args(["run", "--quiet"])
        .arg(pipeline)
        .output()
        .unwrap()
}

/// What `host state show PIPELINE` prints.
pub fn state_show(pipeline: &Path) -> String {
    stdout(
        &host()
            .args(["state", "show"])
            .arg(pipeline)
            .output()
            .unwrap(),
    )
}

/// The pipeline's watermark as `host state show` prints it (`(none)` before the first load).
pub fn watermark(pipeline: &Path) -> String {
    state_show(pipeline)
        .lines()
        .find_map(|l| l.strip_prefix("watermark ").map(|w| w.trim().to_string()))
        .unwrap_or_default()
}

/// `host ARGS` run in `dir`: its stdout, or a panic showing both outputs.
pub fn host_ok(dir: &Path, args: &[&str]) -> String {
    let out = host().current_dir(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "host {args:?} failed:\n{}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// `host plugin new NAME --lang LANG` in `dir`, built, then tested through `host plugin test`
/// against the template's own expected output.
pub fn template_passes_its_own_test(dir: &Path, name: &str, lang: &str) {
    host_ok(dir, &["plugin", "new", name, "--lang", lang]);
    host_ok(dir, &["plugin", "build", name]);
    let (input, expected) = (
        format!("{name}/test/input.csv"),
        format!("{name}/test/expected.csv"),
    );
    let tested = host_ok(
        dir,
        &[
            "plugin", "test", name, "--input", &input, "--expect", &expected,
        ],
    );
    assert!(tested.contains("output matches"), "{tested}");
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run the pipelines (in one `host run`) held for a while at `pause` (`<point>@<n>`); once
/// every one is held, `fault` (given the process id of the run).
pub fn run_paused(pipelines: &[&Path], pause: &str, fault: impl FnOnce(u32)) -> (Output, Duration) {
    let started = Instant::now();
    // Each pipeline is held on its own: long enough, with several, for the last to get there
    // (on a busy machine one may start well after another) while the first still waits.
    let hold_ms = if pipelines.len() > 1 { 6000 } else { 1500 };
    let mut child = host()
        .args(["run", "--quiet"])
        .args(pipelines)
        .env("WEIR_FAULT_PAUSE", format!("{pause}:{hold_ms}"))
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut held = 0;
    while held < pipelines.len() {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "the run ended before it paused:\n{seen}"
        );
        seen.push_str(&line);
        if line.starts_with("weir: paused at") {
            held += 1;
        }
    }
    fault(child.id());
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
        rest
    });
    let mut out = child.wait_with_output().unwrap();
    out.stderr = format!("{seen}{}", rest.join().unwrap()).into_bytes();
    (out, started.elapsed())
}

/// A runtime with its compiled-component cache in a temporary directory.
pub fn runtime() -> (Runtime, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    (Runtime::with_cache_dir(Some(cache.path())).unwrap(), cache)
}

/// The component at `path`, compiled once per test binary (compiling is not what a test
/// measures).
pub fn load(path: &Path) -> Plugin {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    static LOADED: std::sync::Mutex<Vec<(PathBuf, Plugin)>> = std::sync::Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, plugin)) = loaded.iter().find(|(p, _)| p == path) {
        return plugin.clone();
    }
    let runtime = RUNTIME.get_or_init(|| Runtime::with_cache_dir(None).unwrap());
    let plugin = runtime.load(path).unwrap_or_else(|e| panic!("{e}"));
    loaded.push((path.to_path_buf(), plugin.clone()));
    plugin
}
