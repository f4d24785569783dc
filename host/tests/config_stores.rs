//! Settings of the real stores in the pipeline file: Postgres sources and sinks, S3 paths and
//! the `[s3]` table, each mistake named by file, line and key, secrets never quoted.

mod common;

use common::config::{Project, SINK, error_of};

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
            "[s3]\ntimeout = \"5 parsecs\"\n",
            "6: s3.timeout: `5 parsecs` is not a timeout: write a number and a unit, e.g. \"30s\", \"500ms\" or \"2m\"",
        ),
        (
            "[s3]\ntimeout = \"0s\"\n",
            "6: s3.timeout: `0s` is not a timeout: write a number and a unit, e.g. \"30s\", \"500ms\" or \"2m\"",
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
        "[s3]\nregion = \"eu-west-1\"\nallow_http = true\ntimeout = \"5s\"\naccess_key_id = \"${KEY}\"\nsecret_access_key = \"${SECRET}\"\n",
    );
    let loaded = Project::new(&ok)
        .load(&[("KEY", "AKID"), ("SECRET", "s3cr3t-value")])
        .unwrap();
    assert_eq!(
        loaded.pipeline.s3.secret_access_key.as_deref(),
        Some("s3cr3t-value")
    );
    assert_eq!(loaded.pipeline.s3.allow_http, Some(true));
    assert_eq!(loaded.pipeline.s3.timeout.as_deref(), Some("5s"));
    let debug = format!("{loaded:?}");
    assert!(
        !debug.contains("s3cr3t-value") && debug.contains("${SECRET}"),
        "{debug}"
    );
}
