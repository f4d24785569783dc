//! Faults under a Postgres-to-Postgres run, at a known moment (the run is held at a phase
//! with `WEIR_FAULT_PAUSE` while the test breaks the server): the server restarting in the
//! middle of the extraction, the sink's connection cut in the middle of its COPY. Each is
//! retried within the policy of the step that failed (the pipeline's own `[retry]` allows
//! one try) and ends with every row once; past that policy it fails clearly with nothing in
//! the warehouse and no watermark.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::postgres::PgServer;
use common::stderr;

const ROWS: i64 = 3_000;

fn server() -> PgServer {
    let pg = PgServer::start();
    pg.execute("postgres", "CREATE DATABASE shop");
    pg.execute("postgres", "CREATE DATABASE dw");
    pg.execute(
        "shop",
        &format!(
            "CREATE TABLE orders AS SELECT i::bigint AS order_id, (i % 97)::bigint AS customer_id, \
             (10 + i % 50)::double precision AS amount, 1.0::double precision AS exchange_rate, \
             timestamptz '2024-01-01' + (i % 80) * interval '1 day' AS order_date, \
             timestamptz '2024-06-01' + i * interval '1 second' AS updated_at \
             FROM generate_series(1, {ROWS}) AS i"
        ),
    );
    pg
}

/// The source and the sink each with their own retry policy; the pipeline's allows one try.
fn pipeline(dir: &Path, pg: &PgServer, source_attempts: u32, sink_attempts: u32) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "faults"
[source]
kind = "postgres"
url = "{shop}"
table = "orders"
batch_size = 100
incremental = {{ cursor = "updated_at" }}
retry = {{ attempts = {source_attempts}, initial_delay_ms = 200, max_delay_ms = 1000 }}

[[steps]]
kind = "transform"
plugin = "{transform}"

[[sinks]]
kind = "postgres"
name = "dw"
url = "{dw}"
table = "orders"
retry = {{ attempts = {sink_attempts}, initial_delay_ms = 200, max_delay_ms = 1000 }}

[retry]
attempts = 1
"#,
            shop = pg.url("shop"),
            dw = pg.url("dw"),
            transform = common::components().orders_transform.display()
        ),
    )
    .unwrap();
    path
}

/// Order ids in the warehouse and how many times each is there (none without a table).
fn warehouse_counts(pg: &PgServer) -> Vec<(i64, i64)> {
    let exists = pg.rows("dw", "SELECT (to_regclass('orders') IS NOT NULL)::text");
    if exists[0][0].as_deref() != Some("true") {
        return Vec::new();
    }
    pg.rows(
        "dw",
        "SELECT order_id::text, count(*)::text FROM orders GROUP BY order_id ORDER BY order_id",
    )
    .into_iter()
    .map(|r| {
        (
            r[0].as_ref().unwrap().parse().unwrap(),
            r[1].as_ref().unwrap().parse().unwrap(),
        )
    })
    .collect()
}

/// Rows missing from and repeated in the warehouse, for a readable failure.
fn assert_every_row_once(pg: &PgServer) {
    let ids: std::collections::BTreeMap<i64, i64> = warehouse_counts(pg).into_iter().collect();
    let missing = (1..=ROWS).filter(|id| !ids.contains_key(id)).count();
    let repeated = ids.values().filter(|&&n| n > 1).count();
    assert!(
        missing == 0 && repeated == 0 && ids.len() == ROWS as usize,
        "{missing} rows missing, {repeated} repeated, {} in all",
        ids.len()
    );
}

#[test]
fn the_source_restarting_mid_extract_is_retried_and_every_row_lands_once() {
    let pg = server();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &pg, 5, 5);
    let (out, took) = common::run_paused(&[&pipeline], "extract@5", |_| pg.restart());
    assert!(out.status.success(), "{}", stderr(&out));
    // The restart reaches whichever of the two is talking to the server first.
    let error = stderr(&out);
    assert!(
        error.contains("pipeline `faults`: the source failed (attempt 1 of 5), retrying")
            || error.contains("pipeline `faults`: sink `dw` failed (attempt 1 of 5), retrying"),
        "{error}"
    );
    assert_every_row_once(&pg);
    assert_eq!(common::watermark(&pipeline), "2024-06-01 00:50:00+00");
    report(
        "restart",
        "source (and sink) server restarted (`-m immediate`) after the 5th batch read",
        took,
    );
}

/// This fault's row of RELIABILITY.md: rows lost and duplicated are 0, or the test failed.
fn report(name: &str, what: &str, took: Duration) {
    common::reliability::write_section(
        &format!("faults:postgres-{name}"),
        &[format!(
            "| Postgres: {what} | retried within the failing step's own policy (5 attempts; the pipeline's allows 1) | 1 | 0 | 0 | run incl. 1.5 s pause: {:.1} s |",
            took.as_secs_f64()
        )],
    );
}

#[test]
fn the_sink_connection_cut_mid_copy_is_retried_and_every_row_lands_once() {
    let pg = server();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &pg, 1, 5);
    let (out, took) = common::run_paused(&[&pipeline], "sink_write@10", |_| {
        pg.execute(
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 'dw' AND pid <> pg_backend_pid()",
        )
    });
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("pipeline `faults`: sink `dw` failed (attempt 1 of 5), retrying"),
        "{}",
        stderr(&out)
    );
    assert_every_row_once(&pg);
    report(
        "cut",
        "the sink's connection cut in the middle of its COPY (10th batch)",
        took,
    );
}

#[test]
fn a_cut_past_the_retry_policy_fails_clearly_with_nothing_partial() {
    let pg = server();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), &pg, 5, 1);
    let (out, _) = common::run_paused(&[&pipeline], "sink_write@10", |_| {
        pg.execute(
            "postgres",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 'dw' AND pid <> pg_backend_pid()",
        )
    });
    // The sink's own policy allows one try, whatever the source's allows.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = stderr(&out);
    assert!(!error.contains("), retrying in"), "{error}");
    assert!(error.contains("error: pipeline"), "{error}");
    assert!(error.contains("dw"), "the error names the sink: {error}");
    // Nine batches had gone into the COPY: none of them is in the warehouse.
    assert_eq!(warehouse_counts(&pg), Vec::new());
    assert_eq!(common::watermark(&pipeline), "(none)");

    // The next run, with the server healthy, loads everything once.
    let out = common::host()
        .args(["run", "--quiet"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_every_row_once(&pg);
}
