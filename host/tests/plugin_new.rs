//! A new user's path, through the `host` binary as the README gives it: `host plugin new`,
//! build, test against the template's expected output, sign, install (pinned in weir.lock),
//! and use the installed plugin by name in a pipeline. (The JS and Python templates' own
//! test is also in `plugin_js.rs` and `plugin_python.rs`.)

mod common;

use common::host_ok as host;

#[test]
fn the_rust_template_builds_and_passes_its_own_test() {
    let temp = tempfile::tempdir().unwrap();
    common::template_passes_its_own_test(temp.path(), "upper-rs", "rust");
}

#[test]
fn a_new_js_plugin_is_built_signed_installed_pinned_and_run_in_a_pipeline() {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path();
    host(root, &["plugin", "new", "upper", "--lang", "js"]);
    let built = host(root, &["plugin", "build", "upper"]);
    let wasm = built.lines().next().unwrap().to_string();
    assert!(wasm.ends_with("upper/target/upper.wasm"), "{built}");

    // The publisher signs; the project trusts the key.
    let keygen = host(root, &["plugin", "keygen", "--out", "publisher.key"]);
    let public = keygen
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .unwrap_or_else(|| panic!("no public key in {keygen}"));
    host(root, &["plugin", "sign", &wasm, "--key", "publisher.key"]);
    std::fs::write(
        root.join("weir.toml"),
        format!("[plugins]\ntrusted_keys = [\"{public}\"]\n"),
    )
    .unwrap();
    let installed = host(root, &["plugin", "install", &wasm, "--project", "."]);
    assert!(installed.contains("installed upper 0.1.0"), "{installed}");
    let lock = std::fs::read_to_string(root.join("weir.lock")).unwrap();
    assert!(lock.contains("upper") && lock.contains("sha256:"), "{lock}");

    // A pipeline names it; the run upper-cases the strings.
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::copy(
        root.join("upper/test/input.csv"),
        root.join("data/people.csv"),
    )
    .unwrap();
    std::fs::write(
        root.join("people.toml"),
        r#"name = "people"
[source]
kind = "files"
path = "data/*.csv"

[[steps]]
kind = "transform"
plugin = "upper"

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "people"
"#,
    )
    .unwrap();
    host(root, &["run", "--quiet", "people.toml"]);
    let names = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let url = format!("sqlite://{}", root.join("warehouse.db").display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let rows: Vec<(Option<String>,)> =
                sqlx::query_as("SELECT name FROM people ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            rows.into_iter().map(|(n,)| n).collect::<Vec<_>>()
        });
    assert_eq!(
        names,
        vec![Some("ADA".to_string()), Some("GRACE".to_string()), None]
    );
}
