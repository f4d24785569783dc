//! The pipeline file: parsing, `${VAR}` interpolation, validation, and error messages that
//! name file, line and key. Each test writes a real file into a temp dir laid out like a
//! project (`pipelines/orders.toml` next to `plugins/`).

use std::collections::HashMap;
use std::env::VarError;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use weir::config::types::{Check, LoadMode, OnFail, Sink, Source, Step};
use weir::config::{ConfigError, LoadedPipeline, load, load_with_env, plugin_config_json};

const FULL: &str = r#"name = "orders"
on_fail = "quarantine"

[source]
kind = "files"
path = "data/orders/*.csv"
format = "csv"
batch_size = 65536
incremental = { cursor = "updated_at", initial = "2024-01-01T00:00:00Z" }
schema = { order_id = "int64", updated_at = "timestamp" }

[[steps]]
kind = "transform"
plugin = "../plugins/orders-transform"
config = { bad_dates = "null" }
limits = { memory_mib = 256, timeout_ms = 10000 }
grants = { clock = false, random = false }

[[steps]]
kind = "validate"
plugin = "../plugins/orders-validator"

[[checks]]
check = "not_null"
column = "order_date"
[[checks]]
check = "accepted_values"
column = "currency"
values = ["USD", "EUR", "GBP", "JPY"]
[[checks]]
check = "range"
column = "total_usd"
min = 0
[[checks]]
check = "row_count"
min = 1

[quarantine]
path = "warehouse/quarantine"

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse/orders.db"
table = "orders"
mode = "merge"
keys = ["order_id"]

[[sinks]]
kind = "parquet"
name = "lake"
path = "warehouse/lake/orders"
partition_by = "order_month"
mode = "append"

[retry]
attempts = 3
initial_delay_ms = 200

[state]
path = ".weir/state"
"#;

/// A project dir with two plugin crates; the pipeline file is `pipelines/orders.toml`.
struct Project {
    dir: TempDir,
    file: PathBuf,
}

impl Project {
    fn new(toml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        for plugin in ["orders-transform", "orders-validator"] {
            let crate_dir = dir.path().join("plugins").join(plugin);
            std::fs::create_dir_all(&crate_dir).unwrap();
            std::fs::write(crate_dir.join("Cargo.toml"), "[package]\n").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        let file = dir.path().join("pipelines/orders.toml");
        std::fs::write(&file, toml).unwrap();
        Project { dir, file }
    }

    fn load(&self, vars: &[(&str, &str)]) -> Result<LoadedPipeline, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(&self.file, |name| {
            vars.get(name).cloned().ok_or(VarError::NotPresent)
        })
    }

    /// The error's text, with the temp dir shown as `TMP` so messages can be compared whole.
    fn error(&self, vars: &[(&str, &str)]) -> String {
        let error = self.load(vars).expect_err("the pipeline should not load");
        self.masked(&error.to_string())
    }

    fn masked(&self, text: &str) -> String {
        text.replace(&self.dir.path().display().to_string(), "TMP")
    }
}

/// A sink to end files whose test is about something else (`sinks` is required).
const SINK: &str = "[[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"lake\"\n";

fn error_of(toml: &str) -> String {
    Project::new(toml).error(&[])
}

#[test]
fn the_full_example_loads_and_resolves_modes() {
    let project = Project::new(FULL);
    let loaded = project.load(&[]).unwrap();
    let p = &loaded.pipeline;

    assert_eq!(p.name.get_ref(), "orders");
    assert_eq!(loaded.path, project.file);
    assert_eq!(loaded.base_dir, project.dir.path().join("pipelines"));
    assert_eq!(
        loaded.resolve("data/x.csv"),
        project.dir.path().join("pipelines/data/x.csv")
    );
    assert_eq!(
        loaded.modes,
        vec![
            LoadMode::Merge {
                keys: vec!["order_id".into()]
            },
            LoadMode::Append
        ]
    );

    let Source::Files(files) = &p.source else {
        panic!("a file source")
    };
    assert_eq!(files.path.get_ref(), "data/orders/*.csv");
    assert_eq!(files.batch_size, 65536);
    assert_eq!(
        files.incremental.as_ref().unwrap().cursor.get_ref(),
        "updated_at"
    );
    assert_eq!(files.schema.len(), 2);

    let [Step::Transform(transform), Step::Validate(validator)] = p.steps.as_slice() else {
        panic!("steps: {:?}", p.steps)
    };
    assert_eq!(transform.plugin.get_ref(), "../plugins/orders-transform");
    assert_eq!(transform.limits.timeout_ms, Some(10_000));
    assert_eq!(plugin_config_json(transform), r#"{"bad_dates":"null"}"#);
    assert_eq!(plugin_config_json(validator), "{}");

    assert_eq!(p.checks.len(), 4);
    assert_eq!(
        p.checks[2].get_ref(),
        &Check::Range {
            column: "total_usd".into(),
            min: Some(0.0),
            max: None
        }
    );
    assert_eq!(p.on_fail, OnFail::Quarantine);
    assert_eq!(
        p.sinks.iter().map(Sink::name).collect::<Vec<_>>(),
        ["warehouse", "lake"]
    );
    let Sink::Parquet(lake) = &p.sinks[1] else {
        panic!("sinks[1]: {:?}", p.sinks[1])
    };
    assert_eq!(lake.partition_by.as_deref(), Some("order_month"));
    assert_eq!(p.retry.attempts, 3);
    assert_eq!(p.state.path, ".weir/state");
}

#[test]
fn defaults_apply_when_keys_are_left_out() {
    let loaded = Project::new(
        r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
"#,
    )
    .load(&[])
    .unwrap();
    assert_eq!(loaded.modes, [LoadMode::Append]);
    let Source::Files(files) = &loaded.pipeline.source else {
        panic!("a file source")
    };
    assert_eq!(files.batch_size, 65_536);
    assert_eq!(loaded.pipeline.on_fail, OnFail::Abort);
    assert_eq!(loaded.pipeline.retry.attempts, 3);
}

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
fn unknown_top_level_key_suggests_the_right_one() {
    let toml = r#"name = "orders"
on_fial = "quarantine"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:2: on_fial: unknown key `on_fial`, did you mean `on_fail`?"
    );
}

#[test]
fn unknown_nested_key_suggests_the_right_one() {
    let toml = r#"name = "orders"

[source]
kind = "files"
path = "data/*.csv"
incremntal = { cursor = "updated_at" }
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:6: source.incremntal: unknown key `incremntal`, did you mean `incremental`?"
    );
}

#[test]
fn unknown_key_without_a_close_match_lists_the_keys() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
colour = "blue"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:9: sinks[0].colour: unknown key `colour`, expected one of \
         `name`, `path`, `zone`, `partition_by`, `mode`, `keys`"
    );
}

#[test]
fn wrong_type_names_the_expected_one() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
batch_size = "large"
"#;
    assert_eq!(
        error_of(toml),
        r#"TMP/pipelines/orders.toml:5: source.batch_size: expected a non-negative integer, found string "large""#
    );
}

#[test]
fn unknown_variant_lists_the_choices() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse/orders.db"
table = "orders"

[[sinks]]
kind = "parquet"
name = "lake"
path = "warehouse/lake/orders"
mode = "upsert"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:16: sinks[1].mode: unknown variant `upsert`, expected one of \
         `append`, `replace_partition`, `merge`"
    );
}

#[test]
fn unknown_kind_is_reported_at_the_kind_line() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
[[sinks]]
kind = "sqlit"
name = "warehouse"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:6: sinks[0].kind: unknown variant `sqlit`, expected one of \
         `sqlite`, `postgres`, `parquet`; did you mean `sqlite`?"
    );
}

#[test]
fn missing_required_keys() {
    let no_path = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"

[[sinks]]
kind = "parquet"
name = "lake"
"#;
    assert_eq!(
        error_of(no_path),
        "TMP/pipelines/orders.toml:6: sinks[0].path: missing required key"
    );

    let no_kind = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
[[sinks]]
name = "lake"
"#;
    assert_eq!(
        error_of(no_kind),
        "TMP/pipelines/orders.toml:5: sinks[0].kind: missing required key, expected one of `sqlite`, `postgres`, `parquet`"
    );

    let no_sinks = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
"#;
    assert_eq!(
        error_of(no_sinks),
        "TMP/pipelines/orders.toml:1: sinks: missing required key"
    );
}

#[test]
fn toml_syntax_errors_give_the_line_and_keep_tomls_text() {
    let project = Project::new(
        r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv
"#,
    );
    let error = project.load(&[]).unwrap_err();
    assert!(
        matches!(error, ConfigError::Syntax { line: 4, .. }),
        "{error:?}"
    );
    let text = project.masked(&error.to_string());
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("TMP/pipelines/orders.toml:4: source.path: invalid TOML: "),
        "{text}"
    );
    // toml's own report follows, quoting the line.
    assert!(text.contains("4 | path = \"data/*.csv"), "{text}");
    assert!(
        error
            .raw_toml()
            .unwrap()
            .contains("TOML parse error at line 4")
    );

    let twice = error_of("name = \"orders\"\n[source]\nkind = \"files\"\nkind = \"files\"\n");
    let first = twice.lines().next().unwrap();
    assert_eq!(
        first,
        "TMP/pipelines/orders.toml:4: source.kind: invalid TOML: duplicate key"
    );
}

#[test]
fn missing_plugin_says_which_and_where() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"

[[steps]]
kind = "transform"
plugin = "../plugins/orders-transform"

[[steps]]
kind = "validate"
plugin = "../plugins/no-such-validator"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:12: steps[1].plugin: plugin `../plugins/no-such-validator` does not exist \
         (looked at TMP/pipelines/../plugins/no-such-validator); expected a plugin crate directory (with \
         Cargo.toml) or a .wasm component"
    );
}

#[test]
fn plugin_directory_without_a_crate_is_refused() {
    let project = Project::new(
        r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"
[[steps]]
kind = "transform"
plugin = "../plugins"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
"#,
    );
    assert_eq!(
        project.error(&[]),
        "TMP/pipelines/orders.toml:7: steps[0].plugin: plugin `../plugins` is a directory without Cargo.toml \
         (looked at TMP/pipelines/../plugins); expected a plugin crate directory (with Cargo.toml) or a .wasm \
         component"
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

#[test]
fn replace_partition_needs_partition_by() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse/orders.db"
table = "orders"
mode = "replace_partition"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:11: sinks[0].mode: mode `replace_partition` needs `partition_by` (the \
         column whose partitions are replaced)"
    );
}

#[test]
fn duplicate_sink_names_are_refused() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse/orders.db"
table = "orders"

[[sinks]]
kind = "parquet"
name = "warehouse"
path = "warehouse/lake"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:14: sinks[1].name: duplicate sink name `warehouse` (also the name of sinks[0])"
    );
}

#[test]
fn bad_regex_is_refused() {
    let toml = r#"name = "orders"
[source]
kind = "files"
path = "data/*.csv"

[[checks]]
check = "regex"
column = "currency"
pattern = "^[A-Z{3}$"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
"#;
    assert_eq!(
        error_of(toml),
        "TMP/pipelines/orders.toml:9: checks[0].pattern: invalid regex: unclosed character class"
    );
}

/// The remaining validation rules, one small file each: (body after the source, message).
#[test]
fn validation_rules_point_at_the_key() {
    let cases = [
        (
            "[[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\nkeys = [\"id\"]\n",
            "9: sinks[0].keys: `keys` only applies to mode `merge` (this sink's mode is `append`)",
        ),
        (
            "[[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\nmode = \"merge\"\n",
            "9: sinks[0].mode: mode `merge` needs `keys` (the key columns to upsert on)",
        ),
        (
            "[[sinks]]\nkind = \"parquet\"\nname = \" \"\npath = \"a\"\n",
            "7: sinks[0].name: must not be empty",
        ),
        (
            "[[checks]]\ncheck = \"not_null\"\ncolumn = \"\"\n",
            "7: checks[0].column: must not be empty",
        ),
        (
            "[[checks]]\ncheck = \"range\"\ncolumn = \"total\"\n",
            "5: checks[0]: a `range` check needs `min`, `max` or both",
        ),
        (
            "[[checks]]\ncheck = \"range\"\ncolumn = \"total\"\nmin = 5\nmax = 1\n",
            "8: checks[0].min: is greater than `max`",
        ),
        (
            "[quarantine]\npath = \"\"\n",
            "6: quarantine.path: must not be empty",
        ),
        (
            "[retry]\nattempts = 0\n",
            "6: retry.attempts: must be at least 1 (it counts the first try)",
        ),
    ];
    for (body, expected) in cases {
        // A sink last, unless the case is about sinks; it does not move the lines above it.
        let sink = if body.contains("[[sinks]]") { "" } else { SINK };
        let toml = format!(
            "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n{body}{sink}"
        );
        assert_eq!(
            error_of(&toml),
            format!("TMP/pipelines/orders.toml:{expected}"),
            "for:\n{body}"
        );
    }

    let source_rules = [
        (
            "batch_size = 0\n",
            "5: source.batch_size: must be greater than 0",
        ),
        (
            "incremental = { cursor = \"\" }\n",
            "5: source.incremental.cursor: must not be empty",
        ),
    ];
    for (line, expected) in source_rules {
        let toml = format!(
            "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n{line}{SINK}"
        );
        assert_eq!(
            error_of(&toml),
            format!("TMP/pipelines/orders.toml:{expected}")
        );
    }

    let no_sinks = "name = \"orders\"\nsinks = []\n[source]\nkind = \"files\"\npath = \"x\"\n";
    assert_eq!(
        error_of(no_sinks),
        "TMP/pipelines/orders.toml:2: sinks: at least one sink is needed"
    );

    let quarantine_missing = "name = \"orders\"\non_fail = \"quarantine\"\n[source]\nkind = \"files\"\npath = \"x\"\n\
                              [[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\n";
    assert_eq!(
        error_of(quarantine_missing),
        "TMP/pipelines/orders.toml:2: on_fail: `quarantine` needs a [quarantine] table with the dataset's `path`"
    );
}

#[test]
fn an_unreadable_file_names_the_path() {
    let missing = Path::new("/nonexistent/weir/orders.toml");
    let error = load(missing).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/weir/orders.toml: cannot read the pipeline file: ")
    );
}

#[test]
fn postgres_source_and_sink_settings_are_checked() {
    let source = |body: &str| {
        format!(
            "name = \"orders\"\n[source]\nkind = \"postgres\"\nurl = \"postgres://u@h/db\"\n{body}\n{SINK}"
        )
    };
    assert_eq!(
        error_of(&source("table = \"orders\"\nquery = \"SELECT 1\"")),
        "TMP/pipelines/orders.toml:6: source.query: give `table` or `query`, not both"
    );
    assert_eq!(
        error_of(&source("")),
        "TMP/pipelines/orders.toml:2: source: a database source needs `table` (a table name) or \
         `query` (a SELECT)"
    );
    let bad_url = source("table = \"orders\"").replace("postgres://u@h/db", "mysql://u@h/db");
    assert_eq!(
        error_of(&bad_url),
        "TMP/pipelines/orders.toml:4: source.url: expected a URL like \
         `postgres://user:${PGPASSWORD}@host:5432/database`"
    );
    let sink = "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n\n\
                [[sinks]]\nkind = \"postgres\"\nname = \"dw\"\nurl = \"postgres://u@h/db\"\n\
                table = \"orders\"\nschema = \"loose\"\n";
    let error = error_of(sink);
    assert!(
        error.starts_with("TMP/pipelines/orders.toml:11: sinks[0].schema:"),
        "{error}"
    );
    assert!(error.contains("expected `strict` or `evolve`"), "{error}");
}

#[test]
fn s3_paths_and_settings_are_checked_where_they_are_written() {
    let with = |body: &str| {
        format!(
            "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"s3://in-bucket/orders/*.csv\"\n{body}{SINK}"
        )
    };
    let cases = [
        (
            "[quarantine]\npath = \"s3://X/q\"\n",
            "6: quarantine.path: `s3://X/q` is not a valid S3 location: the bucket name must be 3 to 63 lowercase letters, digits, `-` or `.` (expected s3://BUCKET/PREFIX)",
        ),
        (
            "[state]\npath = \"s3://state-bucket/state\"\n",
            "6: state.path: the state is a local sled database: an s3:// path cannot hold it",
        ),
        (
            "[s3]\nendpoint = \"localhost:9000\"\n",
            "6: s3.endpoint: must be a URL starting with https:// (or http:// with allow_http = true)",
        ),
        (
            "[s3]\naccess_key_id = \"${KEY}\"\n",
            "6: s3.access_key_id: `access_key_id` and `secret_access_key` go together: set both or neither (neither: taken from AWS_* variables)",
        ),
        (
            "[s3]\naccess_key_id = \"${KEY}\"\nsecret_access_key = \"hunter2\"\n",
            "7: s3.secret_access_key: write it as `${VARIABLE}` so that the secret stays out of the pipeline file (e.g. \"${AWS_SECRET_ACCESS_KEY}\")",
        ),
    ];
    for (body, expected) in cases {
        let project = Project::new(&with(body));
        assert_eq!(
            project.error(&[("KEY", "AKID")]),
            format!("TMP/pipelines/orders.toml:{expected}"),
            "for:\n{body}"
        );
    }
    let sqlite_on_s3 = "name = \"orders\"\n[source]\nkind = \"files\"\npath = \"x\"\n\
                        [[sinks]]\nkind = \"sqlite\"\nname = \"db\"\npath = \"s3://b-ucket/db\"\ntable = \"t\"\n";
    assert_eq!(
        error_of(sqlite_on_s3),
        "TMP/pipelines/orders.toml:8: sinks[0].path: a SQLite database is a local file: an s3:// path cannot hold it"
    );

    // Credentials from the environment load, and never show in Debug output.
    let ok = with(
        "[s3]\nregion = \"eu-west-1\"\nallow_http = true\naccess_key_id = \"${KEY}\"\nsecret_access_key = \"${SECRET}\"\n",
    );
    let loaded = Project::new(&ok)
        .load(&[("KEY", "AKID"), ("SECRET", "s3cr3t-value")])
        .unwrap();
    assert_eq!(
        loaded.pipeline.s3.secret_access_key.as_deref(),
        Some("s3cr3t-value")
    );
    assert_eq!(loaded.pipeline.s3.allow_http, Some(true));
    let debug = format!("{loaded:?}");
    assert!(
        !debug.contains("s3cr3t-value") && debug.contains("${SECRET}"),
        "{debug}"
    );
}
