//! The HTTP API source when things go wrong, against a real server on loopback: 429 and 503
//! are retried (after `Retry-After`, or a doubling backoff) and the run succeeds; a 401 and
//! a body that is not JSON fail at once, saying what to check; timeouts are retried, then
//! fail clearly; the rate limit spaces requests; and a run killed at each commit point is
//! completed by the next one with every record once — even when new records arrive between
//! the crash and the replay.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::http_api::*;
use common::pipeline::*;
use common::{stderr, stdout};

fn expected(orders: &[Order]) -> BTreeMap<i64, usize> {
    once(orders.iter().filter(|o| o.loads()).map(|o| o.id))
}

fn setup(style: Style, count: i64, tuning: &str) -> (Api, Project, std::path::PathBuf, Vec<Order>) {
    let orders = orders(1, count, 0);
    let api = Api::start(style, 50, &orders);
    let project = Project::new();
    let pipeline = api_pipeline(&project, &api, style, tuning);
    (api, project, pipeline, orders)
}

fn gaps(requests: &[Request]) -> Vec<Duration> {
    requests.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[test]
fn too_many_requests_waits_for_retry_after_then_succeeds() {
    let (api, project, pipeline, orders) = setup(Style::Page, 120, TUNING);
    // The first request is refused twice: once with a delay in seconds, then with a date.
    let date = (chrono::Utc::now() + chrono::Duration::seconds(5))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    api.fail_next([
        Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        Fault::Status {
            code: 429,
            retry_after: Some(date),
        },
    ]);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("429 Too Many Requests; retrying in"),
        "{}",
        stderr(&out)
    );
    let requests = api.requests();
    assert_eq!(requests.len(), 3 + 2, "two refused, then three pages");
    let gaps = gaps(&requests);
    assert!(gaps[0] >= Duration::from_millis(950), "{gaps:?}");
    // About 3 s are left of the date's 5 s by then (the host starts, waits 1 s; the date
    // drops the fraction of a second): far more than the 200 ms backoff.
    assert!(gaps[1] >= Duration::from_secs(1), "{gaps:?}");
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&orders));
}

#[test]
fn service_unavailable_is_retried_with_a_doubling_backoff() {
    let (api, project, pipeline, orders) = setup(Style::Offset, 80, TUNING);
    let unavailable = || Fault::Status {
        code: 503,
        retry_after: None,
    };
    api.fail_next([unavailable(), unavailable()]);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let gaps = gaps(&api.requests());
    // `backoff_ms = 100`: 100 ms, then 200 ms.
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(200), "{gaps:?}");
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&orders));
    assert_eq!(parquet_ids(&project.path("lake")), expected(&orders));
}

#[test]
fn retries_that_run_out_fail_naming_the_status_and_what_to_do() {
    let (api, project, pipeline, _) = setup(Style::Page, 10, TUNING);
    let unavailable = || Fault::Status {
        code: 503,
        retry_after: None,
    };
    api.fail_next(std::iter::repeat_with(unavailable).take(4));
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("HTTP 503 Service Unavailable after 4 tries"),
        "{message}"
    );
    assert!(message.contains("raise `max_retries`"), "{message}");
    assert_eq!(
        api.requests().len(),
        4,
        "the run itself is not retried on top"
    );
    assert!(sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty());
}

#[test]
fn unauthorized_fails_at_once_with_a_clear_message() {
    let (api, project, pipeline, _) = setup(Style::Page, 10, TUNING);
    let mut host = common::host();
    host.args(["run", "--quiet"])
        .arg(&pipeline)
        .env("API_TOKEN", "wrong");
    let out = host.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains(&format!(
            "{}/orders?status=paid&page=1&per_page=50",
            api.url
        )),
        "{message}"
    );
    assert!(message.contains("HTTP 401 Unauthorized (not retried: check the credentials in `source.headers` or `source.params`)"), "{message}");
    assert!(
        message.contains(r#"the response starts: `{"error":"invalid token"}`"#),
        "{message}"
    );
    assert!(!message.contains("wrong"), "{message}");
    assert_eq!(api.requests().len(), 1);
    assert!(sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty());
}

#[test]
fn a_body_that_is_not_json_fails_quoting_it() {
    let (api, _project, pipeline, _) = setup(Style::Page, 10, TUNING);
    api.fail_next([Fault::NotJson]);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(message.contains("the response is not JSON"), "{message}");
    assert!(
        message.contains("it starts: `<html>maintenance</html>`"),
        "{message}"
    );
    // The page's own URL names which page was malformed.
    let page = format!("{}/orders?status=paid&page=1&per_page=", api.url);
    assert!(message.contains(&page), "{message}");
}

#[test]
fn a_slow_response_is_retried_then_fails_clearly() {
    let tuning = "timeout_ms = 300\nmax_retries = 1\nbackoff_ms = 50";
    let (api, _project, pipeline, _) = setup(Style::Page, 10, tuning);
    api.fail_next([
        Fault::Slow(Duration::from_secs(2)),
        Fault::Slow(Duration::from_secs(2)),
    ]);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    let message = stderr(&out);
    assert!(
        message.contains("no complete response within 300 ms (`timeout_ms`) after 2 tries"),
        "{message}"
    );
    assert_eq!(api.requests().len(), 2);
}

#[test]
fn a_slow_response_then_a_fast_one_succeeds() {
    let tuning = "timeout_ms = 300\nmax_retries = 2\nbackoff_ms = 50";
    let (api, project, pipeline, orders) = setup(Style::Cursor, 60, tuning);
    api.fail_next([Fault::Slow(Duration::from_secs(2))]);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&orders));
}

#[test]
fn the_rate_limit_spaces_requests() {
    let tuning = "rate_limit = 5.0";
    let (api, project, pipeline, orders) = setup(Style::Link, 200, tuning);
    let out = run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let gaps = gaps(&api.requests());
    assert_eq!(gaps.len(), 3);
    // 5 per second: 200 ms apart (less a little for the clocks of two processes).
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(180)),
        "{gaps:?}"
    );
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected(&orders));
}

/// Kill the run at `fault`; new records arrive; run again (the replay), and once more (the
/// new records): every record once in every sink.
fn exactly_once_after_crash(fault: &str) {
    let (api, project, pipeline, first) = setup(Style::Page, 150, TUNING);
    let crashed = run(&pipeline, Some(fault));
    assert_eq!(crashed.status.code(), None, "killed\n{}", stderr(&crashed));
    assert!(stderr(&crashed).contains(&format!("injected fault at {fault}")));

    // Records the interrupted load never saw. A replay that read them would hand them to
    // the sinks without the marker only; the sinks that committed would never get them.
    let second = orders(151, 40, 150);
    api.add_orders(&second);
    let replay = run(&pipeline, None);
    assert_eq!(
        replay.status.code(),
        Some(3),
        "{}\n{}",
        stdout(&replay),
        stderr(&replay)
    );
    assert_eq!(
        sqlite_ids(&project.path("warehouse.db")),
        expected(&first),
        "after {fault}"
    );
    assert_eq!(
        parquet_ids(&project.path("lake")),
        expected(&first),
        "after {fault}"
    );

    let next = run(&pipeline, None);
    assert!(
        matches!(next.status.code(), Some(0 | 3)),
        "{}",
        stderr(&next)
    );
    let all: Vec<Order> = first.into_iter().chain(second).collect();
    assert_eq!(
        sqlite_ids(&project.path("warehouse.db")),
        expected(&all),
        "after {fault}"
    );
    assert_eq!(
        parquet_ids(&project.path("lake")),
        expected(&all),
        "after {fault}"
    );
    let quarantined: usize = parquet_rows(&project.path("quarantine"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(quarantined, all.iter().filter(|o| o.quarantined()).count());
}

#[test]
fn a_crash_before_the_sink_commits_loses_nothing() {
    exactly_once_after_crash("before_sink_commit");
}

#[test]
fn a_crash_between_two_sink_commits_duplicates_and_loses_nothing() {
    exactly_once_after_crash("after_first_sink_commit");
}

#[test]
fn a_crash_after_the_sink_commits_duplicates_nothing() {
    exactly_once_after_crash("after_sink_commit");
}

#[test]
fn a_crashed_load_without_records_is_replayed_without_reading() {
    let (api, project, pipeline, _) = setup(Style::Page, 0, TUNING);
    let crashed = run(&pipeline, Some("after_first_sink_commit"));
    assert_eq!(crashed.status.code(), None, "killed\n{}", stderr(&crashed));
    // Records arrive; the replay of the empty load must not hand them to the lake only.
    let arrived = orders(1, 70, 0);
    api.add_orders(&arrived);
    api.clear_requests();
    let replay = run(&pipeline, None);
    assert_eq!(replay.status.code(), Some(0), "{}", stderr(&replay));
    assert!(api.requests().is_empty(), "{:?}", api.requests());
    assert!(sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty());
    let next = run(&pipeline, None);
    assert_eq!(next.status.code(), Some(3), "{}", stderr(&next));
    assert_eq!(
        sqlite_ids(&project.path("warehouse.db")),
        expected(&arrived)
    );
    assert_eq!(parquet_ids(&project.path("lake")), expected(&arrived));
}
