//! The `kind = "http"` source's settings: defaults, and the mistakes validation catches,
//! each named by file, line and key, without quoting secrets.

use std::env::VarError;

use weir::config::types::{Pagination, Source};
use weir::config::{LoadedPipeline, load_with_env};

mod common;

use common::config::SINK;

fn load(source: &str) -> (tempfile::TempDir, Result<LoadedPipeline, String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.toml");
    let text = format!("name = \"api\"\n[source]\nkind = \"http\"\n{source}\n{SINK}");
    std::fs::write(&file, text).unwrap();
    let env = |name: &str| match name {
        "API_TOKEN" => Ok("tok-123/+secret".to_string()),
        _ => Err(VarError::NotPresent),
    };
    let loaded = load_with_env(&file, env).map_err(|e| {
        e.to_string()
            .replace(&dir.path().display().to_string(), "TMP")
    });
    (dir, loaded)
}

fn error_of(source: &str) -> String {
    load(source).1.expect_err("the pipeline should not load")
}

#[test]
fn an_http_source_loads_with_its_defaults() {
    let (_dir, loaded) = load(
        "url = \"https://api.test/v1/orders\"\nparams = { status = \"paid\", per = 100 }\n\
         headers = { Authorization = \"Bearer ${API_TOKEN}\" }\nrecords = \"data.items\"\n\
         pagination = { kind = \"page\", size_param = \"per_page\", size = 100 }\n\
         incremental = { cursor = \"updated_at\", param = \"updated_since\" }",
    );
    let loaded = loaded.unwrap();
    let Source::Http(http) = &loaded.pipeline.source else {
        panic!("not an http source");
    };
    assert_eq!(http.timeout_ms, 30_000);
    assert_eq!(http.max_retries, 5);
    assert_eq!(http.backoff_ms, 1_000);
    assert_eq!(http.rate_limit, None);
    assert_eq!(
        http.pagination,
        Pagination::Page {
            param: "page".into(),
            start: 1,
            size_param: Some("per_page".into()),
            size: Some(100),
        }
    );
    assert!(!format!("{loaded:?}").contains("tok-123"));
}

#[test]
fn http_settings_are_checked_at_their_key() {
    let cases = [
        (
            "url = \"ftp://api.test/x\"",
            "TMP/api.toml:4: source.url: expected an http:// or https:// URL like `https://api.example.com/v1/orders`",
        ),
        (
            "url = \"http://api.test/x\"\nrecords = \"data..items\"",
            "TMP/api.toml:5: source.records: expected a dotted path to the records array, like `data.items`",
        ),
        (
            "url = \"http://api.test/x\"\npagination = { kind = \"page\", size = 10 }",
            "TMP/api.toml:5: source.pagination.size: needs `size_param`, the query parameter it is sent as (`per_page`)",
        ),
        (
            "url = \"http://api.test/x\"\npagination = { kind = \"offset\", limit = 0 }",
            "TMP/api.toml:5: source.pagination.limit: must be greater than 0",
        ),
        (
            "url = \"http://api.test/x\"\nrate_limit = 0.0",
            "TMP/api.toml:5: source.rate_limit: must be a positive number of requests per second",
        ),
        (
            "url = \"http://api.test/x\"\nparams = { ids = [1, 2] }",
            "TMP/api.toml:5: source.params.ids: expected a string, number or boolean, found array",
        ),
        (
            "url = \"http://api.test/x\"\nheaders = { \"X Bad\" = \"1\" }",
            "TMP/api.toml:5: source.headers.\"X Bad\": not a valid HTTP header name",
        ),
        (
            "url = \"http://api.test/x\"\nincremental = { cursor = \"u\", param = \"\" }",
            "TMP/api.toml:5: source.incremental.param: must not be empty",
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(error_of(source), expected, "for:\n{source}");
    }
    let unknown = error_of("url = \"http://api.test/x\"\npagination = { kind = \"pages\" }");
    assert!(
        unknown.starts_with("TMP/api.toml:5: source.pagination"),
        "{unknown}"
    );
    assert!(unknown.contains("`page`, `offset`, `cursor`"), "{unknown}");
}

#[test]
fn a_bad_url_with_a_secret_is_not_quoted() {
    let error = error_of("url = \"${API_TOKEN}\"");
    assert!(!error.contains("tok-123"), "{error}");
    assert!(error.contains("source.url"), "{error}");
}

#[test]
fn the_watermark_param_is_only_for_http_sources() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("files.toml");
    let text = format!(
        "name = \"f\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n\
         incremental = {{ cursor = \"u\", param = \"since\" }}\n{SINK}"
    );
    std::fs::write(&file, text).unwrap();
    let error = load_with_env(&file, |_| Err(VarError::NotPresent))
        .unwrap_err()
        .to_string();
    assert!(
        error.ends_with(
            "files.toml:5: source.incremental.param: only an http source sends the watermark as a query parameter; remove `param`"
        ),
        "{error}"
    );
}

#[test]
fn the_example_api_pipeline_loads() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api_orders.toml");
    let loaded = load_with_env(&file, |name| match name {
        "API_TOKEN" => Ok("example".into()),
        _ => Err(VarError::NotPresent),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(loaded.pipeline.source, Source::Http(_)));
}
