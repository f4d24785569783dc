//! `${VAR}` in pipeline files: values taken from the environment, unset and malformed
//! references named at their key, and secrets kept out of every error and `Debug` output.

mod common;

use common::config::{Project, error_of};
use weir::config::load;
use weir::config::plugin_config_json;
use weir::config::types::{Sink, Source, Step};

#[test]
fn the_real_environment_is_used_by_load() {
    // cargo sets CARGO_MANIFEST_DIR for the test process; nothing here needs `set_var`.
    let project = Project::new(
        r#"name = "orders"
[source]
kind = "files"
path = "${CARGO_MANIFEST_DIR}/data/*.csv"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
"#,
    );
    project.allow(&[env!("CARGO_MANIFEST_DIR")]);
    let loaded = load(&project.file).unwrap();
    let Source::Files(files) = &loaded.pipeline.source else {
        panic!("a file source")
    };
    assert_eq!(
        files.path.get_ref(),
        &format!("{}/data/*.csv", env!("CARGO_MANIFEST_DIR"))
    );
}

#[test]
fn env_vars_are_substituted_and_unset_ones_are_named() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "${DATA_DIR}/orders/*.csv"
[[steps]]
kind = "transform"
plugin = "${PLUGINS}/orders-transform"
config = { greeting = "cost: $${not_a_var} and $5", nested = { dir = "${DATA_DIR}" } }
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "${WAREHOUSE_DIR}/orders.db"
table = "orders"
"#;
    let project = Project::new(toml);
    project.allow(&["/srv"]);
    let vars = [
        ("DATA_DIR", "/srv/data"),
        ("PLUGINS", "../plugins"),
        ("WAREHOUSE_DIR", "/srv/wh"),
    ];
    let loaded = project.load(&vars).unwrap();
    let Source::Files(files) = &loaded.pipeline.source else {
        panic!("a file source")
    };
    assert_eq!(files.path.get_ref(), "/srv/data/orders/*.csv");
    let Step::Transform(step) = &loaded.pipeline.steps[0] else {
        panic!()
    };
    assert_eq!(step.plugin.get_ref(), "../plugins/orders-transform");
    assert_eq!(
        plugin_config_json(step),
        r#"{"greeting":"cost: ${not_a_var} and $5","nested":{"dir":"/srv/data"}}"#
    );
    let Sink::Sqlite(sink) = &loaded.pipeline.sinks[0] else {
        panic!()
    };
    assert_eq!(sink.path.get_ref(), "/srv/wh/orders.db");

    // Without WAREHOUSE_DIR: the variable, the line and the key are named.
    assert_eq!(
        project.error(&vars[..2]),
        "TMP/pipelines/orders.toml:12: sinks[0].path: environment variable `WAREHOUSE_DIR` is not set"
    );
}

#[test]
fn malformed_references_are_errors() {
    let with_path =
        |path: &str| format!("name = \"orders\"\n[source]\nkind = \"files\"\npath = \"{path}\"\n");
    assert_eq!(
        error_of(&with_path("${DATA")),
        "TMP/pipelines/orders.toml:4: source.path: unterminated `${` (write `$${` for a literal `${`)"
    );
    assert_eq!(
        error_of(&with_path("${DATA-DIR}")),
        "TMP/pipelines/orders.toml:4: source.path: `${DATA-DIR}` is not a valid variable name (letters, \
         digits and `_`; write `$${` for a literal `${`)"
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    const SECRET: &str = "sk_live_9fQ2hunter2XyZ";
    let vars = [("API_TOKEN", SECRET)];
    let shows_no_secret = |text: &str| assert!(!text.contains(SECRET), "secret leaked: {text}");

    // Loaded: the plugin gets the value; Debug shows the variable instead.
    let ok = Project::new(
        r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
[[steps]]
kind = "transform"
plugin = "../plugins/orders-transform"
config = { token = "${API_TOKEN}" }
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "db-${API_TOKEN}.db"
table = "orders"
"#,
    );
    let loaded = ok.load(&vars).unwrap();
    let Step::Transform(step) = &loaded.pipeline.steps[0] else {
        panic!()
    };
    assert_eq!(
        plugin_config_json(step),
        format!(r#"{{"token":"{SECRET}"}}"#)
    );
    let debug = format!("{loaded:?}");
    shows_no_secret(&debug);
    assert!(debug.contains("db-${API_TOKEN}.db"), "{debug}");
    shows_no_secret(&format!("{loaded:#?}"));
    assert_eq!(
        loaded.redact(&format!("token {SECRET}")),
        "token ${API_TOKEN}"
    );

    // Errors that would quote the value: a wrong variant, a wrong type, a missing plugin,
    // a duplicate name, a bad regex.
    let cases = [
        (
            "format = \"${API_TOKEN}\"",
            "source.format: unknown variant `${API_TOKEN}`, expected one of",
        ),
        (
            "batch_size = \"${API_TOKEN}\"",
            "found string \"${API_TOKEN}\"",
        ),
    ];
    for (line, expected) in cases {
        let project = Project::new(&format!(
            "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n{line}\n"
        ));
        let error = project.load(&vars).unwrap_err();
        shows_no_secret(&error.to_string());
        shows_no_secret(&format!("{error:?}"));
        assert!(error.to_string().contains(expected), "{error}");
    }
    let validation = [
        "[[steps]]\nkind = \"transform\"\nplugin = \"../${API_TOKEN}\"\n[[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\n",
        "[[checks]]\ncheck = \"regex\"\ncolumn = \"c\"\npattern = \"(${API_TOKEN}\"\n[[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\n",
        "[[sinks]]\nkind = \"parquet\"\nname = \"${API_TOKEN}\"\npath = \"a\"\n\
         [[sinks]]\nkind = \"parquet\"\nname = \"${API_TOKEN}\"\npath = \"b\"\n",
    ];
    for tail in validation {
        let project = Project::new(&format!(
            "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n{tail}"
        ));
        let error = project.load(&vars).unwrap_err();
        shows_no_secret(&error.to_string());
        shows_no_secret(&format!("{error:?}"));
        assert!(
            error.to_string().contains("${API_TOKEN}") || error.to_string().contains("regex"),
            "{error}"
        );
    }
}
