//! Installed plugins through the `host` binary: install from a crate, a .wasm file and a
//! loopback HTTP server; weir.lock; list, remove, verify; tampering; signatures; and the
//! capability checks of manifests and grants.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::pipeline::{csv, orders};
use common::{components, stderr, stdout};
use weir::plugin::Manifest;

/// A project directory: weir.toml (trusting `trusted`), sample data, pipelines by name.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(trusted: &[&str]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = trusted.iter().map(|k| format!("\"{k}\"")).collect();
        std::fs::write(
            dir.path().join("weir.toml"),
            format!("[plugins]\ntrusted_keys = [{}]\n", keys.join(", ")),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data/a.csv"), csv(&orders(1, 50, 0))).unwrap();
        Project { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `host plugin ARGS --project DIR`.
    fn plugin(&self, args: &[&str]) -> Output {
        common::host()
            .arg("plugin")
            .args(args)
            .arg("--project")
            .arg(self.dir.path())
            .output()
            .unwrap()
    }

    fn install(&self, source: &str, allow_unsigned: bool) -> Output {
        let mut args = vec!["install", source];
        if allow_unsigned {
            args.push("--allow-unsigned");
        }
        self.plugin(&args)
    }

    /// A pipeline whose one transform step is `step` (TOML lines), loading into SQLite.
    fn pipeline(&self, step: &str) -> PathBuf {
        let text = format!(
            "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n\
             [[steps]]\nkind = \"transform\"\n{step}\n\
             [[sinks]]\nkind = \"sqlite\"\nname = \"w\"\npath = \"w.db\"\ntable = \"orders\"\n"
        );
        let path = self.path("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `host run --quiet PIPELINE` or `host validate PIPELINE`.
    fn host(&self, command: &str, pipeline: &Path) -> Output {
        let mut host = common::host();
        host.arg(command);
        if command == "run" {
            host.arg("--quiet");
        }
        host.arg(pipeline).output().unwrap()
    }

    fn lock(&self) -> String {
        std::fs::read_to_string(self.path("weir.lock")).unwrap_or_default()
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn fails(out: &Output, expected: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        stdout(out),
        stderr(out)
    );
    let text = format!("{}{}", stdout(out), stderr(out));
    for part in expected {
        assert!(text.contains(part), "expected `{part}` in:\n{text}");
    }
}

/// A copy of a component in `dir` (so that its `.sig` lands there too).
fn copy(component: &Path, dir: &Path, name: &str) -> String {
    let to = dir.join(name);
    std::fs::copy(component, &to).unwrap();
    to.to_str().unwrap().to_string()
}

/// A new signing key in `dir`: its file and its public key.
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(name);
    let out = common::host()
        .args(["plugin", "keygen", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    let public = ok(&out).trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    (file.to_str().unwrap().to_string(), public)
}

fn sign(component: &str, key: &str) {
    let out = common::host()
        .args(["plugin", "sign", component, "--key", key])
        .output()
        .unwrap();
    ok(&out);
}

#[test]
fn installed_plugins_run_by_name_and_tampering_is_refused() {
    let project = Project::new(&[]);
    let crate_dir = common::workspace_root().join("plugins/orders-transform");
    let crate_dir = crate_dir.to_str().unwrap();

    fails(
        &project.install(crate_dir, false),
        &[
            "plugin `orders-transform` 0.1.0 is not signed",
            "--allow-unsigned",
        ],
    );
    let out = ok(&project.install(crate_dir, true));
    assert!(
        out.contains("installed orders-transform 0.1.0 (transformer) sha256:"),
        "{out}"
    );
    let lock = project.lock();
    let digest = lock
        .split("digest = \"sha256:")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(lock.contains("name = \"orders-transform\""), "{lock}");
    let stored = project.path(&format!(".weir/plugins/sha256/{digest}.wasm"));
    assert!(stored.is_file(), "{}", stored.display());

    let validator = components().orders_validator.to_str().unwrap().to_string();
    ok(&project.install(&validator, true));
    let list = ok(&project.plugin(&["list"]));
    assert!(
        list.contains("orders-transform\t0.1.0\ttransformer"),
        "{list}"
    );
    assert!(
        list.contains("orders-validator\t0.1.0\tvalidator"),
        "{list}"
    );
    assert!(ok(&project.plugin(&["verify"])).contains("2 installed plugins verified"));

    // An unsigned plugin runs only where the step allows it.
    let pipeline = project.pipeline("plugin = \"orders-transform\"");
    fails(
        &project.host("run", &pipeline),
        &[
            "steps[0] (orders-transform)",
            "is not signed",
            "allow_unsigned = true",
        ],
    );
    let pipeline = project.pipeline("plugin = \"orders-transform@0.1.0\"\nallow_unsigned = true");
    let out = project.host("run", &pipeline);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // Changed bytes in the store: run and verify refuse, naming both digests.
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes.push(0);
    std::fs::write(&stored, bytes).unwrap();
    fails(
        &project.host("run", &pipeline),
        &[
            "plugin `orders-transform` 0.1.0: the stored component",
            &format!(
                "but {} pins sha256:{digest}",
                project.path("weir.lock").display()
            ),
            "host plugin install",
            "host plugin verify",
        ],
    );
    fails(
        &project.plugin(&["verify"]),
        &[
            "FAIL  orders-transform 0.1.0",
            "1 of 2 installed plugins failed",
        ],
    );

    let out = ok(&project.plugin(&["remove", "orders-transform"]));
    assert!(out.contains("removed orders-transform 0.1.0"), "{out}");
    assert!(!stored.exists(), "an unpinned component leaves the store");
    assert!(!project.lock().contains("orders-transform"));
    fails(
        &project.host("run", &pipeline),
        &[
            "plugin `orders-transform@0.1.0` is not installed",
            "orders-validator@0.1.0",
        ],
    );
}

#[test]
fn only_plugins_signed_by_a_trusted_key_are_installed_and_run() {
    let keys = tempfile::tempdir().unwrap();
    let (trusted_key, trusted) = keygen(keys.path(), "trusted.key");
    let (other_key, other) = keygen(keys.path(), "other.key");
    let project = Project::new(&[&trusted]);
    let wasm = copy(&components().orders_transform, keys.path(), "t.wasm");

    fails(
        &project.install(&wasm, false),
        &["is not signed", "--allow-unsigned"],
    );

    sign(&wasm, &other_key);
    fails(
        &project.install(&wasm, false),
        &[
            &format!("it is signed by {other}, which is not a trusted key"),
            "trusted_keys",
        ],
    );

    // A signature of other bytes (here: the validator's) does not fit this component.
    let validator = copy(&components().orders_validator, keys.path(), "v.wasm");
    sign(&validator, &trusted_key);
    std::fs::copy(format!("{validator}.sig"), format!("{wasm}.sig")).unwrap();
    fails(
        &project.install(&wasm, false),
        &[&format!(
            "its signature by {trusted} does not match its bytes"
        )],
    );
    std::fs::write(
        format!("{wasm}.sig"),
        "key = \"ed25519:AAAA\"\nsignature = \"x\"\n",
    )
    .unwrap();
    fails(
        &project.install(&wasm, false),
        &["not a Weir signature file"],
    );

    sign(&wasm, &trusted_key);
    let out = ok(&project.install(&wasm, false));
    assert!(out.contains(&format!("signed by {trusted}")), "{out}");
    assert!(
        project
            .lock()
            .contains(&format!("signed_by = \"{trusted}\""))
    );
    let pipeline = project.pipeline("plugin = \"orders-transform\"");
    let out = project.host("run", &pipeline);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );

    // A key no longer trusted stops the run, naming it.
    std::fs::write(project.path("weir.toml"), "[plugins]\ntrusted_keys = []\n").unwrap();
    fails(
        &project.host("validate", &pipeline),
        &[&format!(
            "it is signed by {trusted}, which is not a trusted key"
        )],
    );
}

/// Serve `files` (name → bytes) on loopback, 404 for anything else; returns the base URL.
fn serve(files: Vec<(String, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut request = String::new();
            let mut reader = BufReader::new(&stream);
            reader.read_line(&mut request).unwrap();
            while reader.read_line(&mut String::new()).unwrap() > 2 {}
            let path = request
                .split(' ')
                .nth(1)
                .unwrap_or("")
                .trim_start_matches('/');
            let response = match files.iter().find(|(name, _)| name == path) {
                Some((_, body)) => [
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes(),
                    body.clone(),
                ]
                .concat(),
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    url
}

#[test]
fn a_plugin_is_installed_from_a_url_with_its_signature() {
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keygen(keys.path(), "k.key");
    let wasm = copy(&components().orders_validator, keys.path(), "v.wasm");
    sign(&wasm, &key);
    let url = serve(vec![
        ("v.wasm".into(), std::fs::read(&wasm).unwrap()),
        (
            "v.wasm.sig".into(),
            std::fs::read(format!("{wasm}.sig")).unwrap(),
        ),
        ("unsigned.wasm".into(), std::fs::read(&wasm).unwrap()),
    ]);
    let project = Project::new(&[&public]);

    let out = ok(&project.install(&format!("{url}/v.wasm"), false));
    assert!(
        out.contains("installed orders-validator 0.1.0 (validator)"),
        "{out}"
    );
    assert!(out.contains(&format!("signed by {public}")), "{out}");
    assert!(
        project
            .lock()
            .contains(&format!("source = \"{url}/v.wasm\""))
    );
    assert!(ok(&project.plugin(&["verify"])).contains(&format!("signed by {public}")));

    fails(
        &project.install(&format!("{url}/unsigned.wasm"), false),
        &["is not signed"],
    );
    fails(
        &project.install(&format!("{url}/missing.wasm"), false),
        &[&format!(
            "could not download {url}/missing.wasm: the server answered 404"
        )],
    );
}

#[test]
fn capabilities_must_be_declared_by_the_manifest_and_granted_by_the_step() {
    // The hostile plugin reads the clock and declares it; without the declaration it is
    // refused at install and at load, naming the import.
    let hostile = std::fs::read(&components().hostile).unwrap();
    let mut manifest = Manifest::embedded(&hostile).unwrap().unwrap();
    assert_eq!(manifest.capabilities, [weir::plugin::Capability::Clock]);
    manifest.capabilities.clear();
    let project = Project::new(&[]);
    let undeclared = project.path("undeclared.wasm");
    std::fs::write(&undeclared, manifest.embed(&hostile).unwrap()).unwrap();
    let undeclared_text = undeclared.to_str().unwrap();
    let refusal = [
        "it imports `wasi:clocks/",
        "which needs the `clock` capability, but its manifest does not declare it",
        "capabilities = [\"clock\"]",
    ];
    fails(&project.install(undeclared_text, true), &refusal);
    let pipeline = project.pipeline(&format!(
        "plugin = \"{undeclared_text}\"\ngrants = {{ clock = true }}"
    ));
    fails(&project.host("validate", &pipeline), &refusal);

    // Declared, but the step must grant it too.
    let declared = components().hostile.to_str().unwrap();
    let pipeline = project.pipeline(&format!("plugin = \"{declared}\""));
    fails(
        &project.host("validate", &pipeline),
        &[
            "it imports `wasi:clocks/",
            "the `clock` capability its manifest asks for), which this step does not grant",
            "grants = { clock = true }",
        ],
    );
    let pipeline = project.pipeline(&format!(
        "plugin = \"{declared}\"\ngrants = {{ clock = true }}"
    ));
    let out = project.host("validate", &pipeline);
    assert!(!stderr(&out).contains("does not grant"), "{}", stderr(&out));
}
