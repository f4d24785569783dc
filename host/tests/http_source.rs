//! The HTTP API source end to end through the `host` binary, against a real HTTP server on
//! loopback: every pagination style loads every record once, the watermark goes to the API
//! as a query parameter and only new records load, and the token stays out of everything
//! the run writes or prints.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::http_api::*;
use common::pipeline::*;
use common::{stderr, stdout};

fn expected(orders: &[Order]) -> BTreeMap<i64, usize> {
    once(orders.iter().filter(|o| o.loads()).map(|o| o.id))
}

/// 230 orders in pages of 50 load once into both sinks; returns what the API was asked.
fn loads_every_record_once(style: Style) -> Vec<Request> {
    let orders = orders(1, 230, 0);
    let api = Api::start(style, 50, &orders);
    let project = Project::new();
    let pipeline = api_pipeline(&project, &api, style, TUNING);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&orders));
    assert_eq!(parquet_ids(&project.path("lake")), expected(&orders));
    let requests = api.requests();
    for request in &requests {
        assert_eq!(
            request.headers.get("authorization").map(String::as_str),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(
            request.params.get("status").map(String::as_str),
            Some("paid")
        );
        assert!(!request.params.contains_key("updated_since"), "{request:?}");
    }
    requests
}

fn param(requests: &[Request], name: &str) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.params.get(name).cloned().unwrap_or_default())
        .collect()
}

#[test]
fn page_numbers_load_every_record_once() {
    let requests = loads_every_record_once(Style::Page);
    // The fifth page is short (30 records): the last.
    assert_eq!(param(&requests, "page"), ["1", "2", "3", "4", "5"]);
    assert!(param(&requests, "per_page").iter().all(|p| p == "50"));
}

#[test]
fn offsets_load_every_record_once() {
    let requests = loads_every_record_once(Style::Offset);
    assert_eq!(param(&requests, "offset"), ["0", "50", "100", "150", "200"]);
}

#[test]
fn cursor_tokens_load_every_record_once() {
    let requests = loads_every_record_once(Style::Cursor);
    assert_eq!(
        param(&requests, "cursor"),
        ["", "c50", "c100", "c150", "c200"]
    );
}

#[test]
fn link_headers_load_every_record_once() {
    let requests = loads_every_record_once(Style::Link);
    assert_eq!(param(&requests, "page"), ["", "2", "3", "4", "5"]);
}

#[test]
fn the_watermark_is_sent_as_the_param_and_only_new_records_load() {
    let first = orders(1, 120, 0);
    let api = Api::start(Style::Page, 50, &first);
    let project = Project::new();
    let pipeline = api_pipeline(&project, &api, Style::Page, TUNING);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // New orders, updated after the first run's last one; the API's `updated_since` is
    // inclusive, so the last order of the first run comes back and must not load again.
    let second = orders(121, 60, 120);
    api.add_orders(&second);
    api.clear_requests();
    let out = run(&pipeline, None);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    let requests = api.requests();
    // The watermark as the engine keeps a timestamp: RFC 3339, UTC.
    let since = param(&requests, "updated_since");
    assert_eq!(since, vec![first.last().unwrap().updated.clone(); 2]);
    let all: Vec<Order> = first.into_iter().chain(second).collect();
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&all));
    assert_eq!(parquet_ids(&project.path("lake")), expected(&all));

    // Nothing new: the boundary record comes back and is filtered; nothing loads.
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&all));
    assert_eq!(parquet_ids(&project.path("lake")), expected(&all));
}

/// Every file under `dir`, as bytes, must not hold `needle`.
fn assert_not_in_files(dir: &Path, needle: &str) {
    for entry in glob::glob(&format!("{}/**/*", dir.display())).unwrap() {
        let path = entry.unwrap();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds the secret",
                path.display()
            );
        }
    }
}

#[test]
fn the_token_never_appears_in_output_state_or_sinks() {
    let orders = orders(1, 60, 0);
    let api = Api::start(Style::Cursor, 50, &orders);
    let project = Project::new();
    // The token also as a query parameter: it must be masked in `_weir_source` and messages.
    let pipeline = api_pipeline(&project, &api, Style::Cursor, TUNING);
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace(
            r#"status = "paid""#,
            r#"status = "paid", key = "${API_TOKEN}""#,
        )
        .replace(r#"on_fail = "quarantine""#, r#"on_fail = "abort""#);
    std::fs::write(&pipeline, text).unwrap();
    let mut outputs = vec![run(&pipeline, None)];
    let failed = stderr(&outputs[0]);
    assert_eq!(outputs[0].status.code(), Some(2), "{failed}");
    // Failing rows are named by their page (`_weir_source`) without the secret, and their
    // place in it; the second batch spans the first two pages.
    let page = format!("{}/orders?key=${{API_TOKEN}}&status=paid", api.url);
    assert!(
        failed.contains(&format!("{page} row 17: failed")),
        "{failed}"
    );
    assert!(
        failed.contains(&format!("{page}&cursor=c50 row 1: failed")),
        "{failed}"
    );
    // A failure quotes the URL and the response: both without the token.
    api.fail_next([Fault::Status {
        code: 400,
        retry_after: None,
    }]);
    api.add_orders(&common::pipeline::orders(61, 5, 60));
    outputs.push(run(&pipeline, None));
    let failed = stderr(&outputs[1]);
    assert_eq!(outputs[1].status.code(), Some(1), "{failed}");
    assert!(failed.contains("key=${API_TOKEN}"), "{failed}");
    outputs.push(
        common::host()
            .args(["runs", pipeline.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    for out in &outputs {
        assert!(!stdout(out).contains(TOKEN), "{}", stdout(out));
        assert!(!stderr(out).contains(TOKEN), "{}", stderr(out));
    }
    assert_not_in_files(project.dir.path(), TOKEN);
}

#[test]
fn a_wrong_records_path_names_the_keys_that_are_there() {
    let api = Api::start(Style::Page, 50, &orders(1, 10, 0));
    let project = Project::new();
    let pipeline = api_pipeline(&project, &api, Style::Page, TUNING);
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace(r#"records = "data.items""#, r#"records = "data.rows""#);
    std::fs::write(&pipeline, text).unwrap();
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("no `data.rows` in the response: `data` has no `rows` (its keys: `count`, `items`); check `source.records`"),
        "{message}"
    );
}

#[test]
fn validate_and_plan_show_the_api_schema() {
    let api = Api::start(Style::Link, 50, &orders(1, 10, 0));
    let project = Project::new();
    let pipeline = api_pipeline(&project, &api, Style::Link, TUNING);
    let path = pipeline.to_str().unwrap();
    let out = common::host()
        .args(["plan", path])
        .env("API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(plan.contains("order_id"), "{plan}");
    assert!(plan.contains("updated_at: Timestamp"), "{plan}");
    assert!(
        plan.contains(&format!("would read {}/orders?status=paid", api.url)),
        "{plan}"
    );
    let out = common::host()
        .args(["validate", path])
        .env("API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
}
