//! The pipeline file: parsing, validation, and error messages that name file, line and key
//! (`${VAR}` is in config_env.rs, the real stores' settings in config_stores.rs). Each test writes a real file into a temp dir laid out like a
//! project (`pipelines/orders.toml` next to `plugins/`).

use std::path::Path;

mod common;

use common::config::{Project, SINK, error_of};
use weir::config::types::{Check, LoadMode, OnFail, Sink, Source, Step};
use weir::config::{ConfigError, load, plugin_config_json};

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
    assert_eq!(files.batch_size, weir::config::types::DEFAULT_BATCH_SIZE);
    assert_eq!(loaded.pipeline.on_fail, OnFail::Abort);
    assert_eq!(loaded.pipeline.retry.attempts, 3);
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
         `name`, `path`, `zone`, `partition_by`, `mode`, `keys`, `rows_per_file`, `retry`"
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
         (looked at TMP/pipelines/../plugins/no-such-validator); expected a plugin project directory \
         (Rust, JavaScript or Python) or a .wasm component"
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
        "TMP/pipelines/orders.toml:7: steps[0].plugin: plugin `../plugins` is a directory without Cargo.toml, \
         package.json or pyproject.toml (looked at TMP/pipelines/../plugins); expected a plugin project \
         directory (Rust, JavaScript or Python) or a .wasm component"
    );
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
        (
            "retry = { attempts = 0 }\n",
            "5: source.retry.attempts: must be at least 1 (it counts the first try)",
        ),
        (
            "[[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\nretry = { attempts = 0 }\n",
            "9: sinks[0].retry.attempts: must be at least 1 (it counts the first try)",
        ),
        (
            "[[sinks]]\nkind = \"parquet\"\nname = \"a\"\npath = \"a\"\nrows_per_file = 0\n",
            "9: sinks[0].rows_per_file: must be greater than 0",
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
