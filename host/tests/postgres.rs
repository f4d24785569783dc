//! Postgres as a source and as a warehouse, against a real server started per test
//! (`common::postgres`): incremental reads, every load mode, replays, crashes, the type
//! mapping both ways, schema drift and secrets.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::postgres::PgServer;
use common::{stderr, stdout};

/// Source orders `first..=last`, generated in SQL: every 11th has no customer, every 7th a
/// negative amount; updated one minute apart from `base`.
fn insert_orders(pg: &PgServer, first: i64, last: i64, base: &str) {
    pg.execute(
        "shop",
        &format!(
            "INSERT INTO orders SELECT i, CASE WHEN i % 11 = 0 THEN NULL ELSE i % 97 END, \
             CASE WHEN i % 7 = 0 THEN -5 ELSE 10 + i % 50 END, 'USD', (ARRAY[1.0, 1.1, 0.9])[i % 3 + 1], \
             timestamptz '2024-01-01' + (i % 80) * interval '1 day', \
             timestamptz '{base}' + (i - {first}) * interval '1 minute' \
             FROM generate_series({first}, {last}) AS i"
        ),
    );
}

fn shop(pg: &PgServer) {
    pg.execute("postgres", "CREATE DATABASE shop");
    pg.execute("postgres", "CREATE DATABASE dw");
    pg.execute(
        "shop",
        "CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id bigint, \
         amount double precision, currency text, exchange_rate double precision, \
         order_date timestamptz, updated_at timestamptz)",
    );
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Postgres `orders` (incremental on `updated_at`) → orders-transform → the given sinks.
    fn pipeline(&self, pg: &PgServer, extra_source: &str, sinks: &str) -> PathBuf {
        let c = common::components();
        let text = format!(
            r#"name = "pg_orders"

[source]
kind = "postgres"
url = "{url}"
table = "orders"
batch_size = 64
incremental = {{ cursor = "updated_at" }}
{extra_source}

[[steps]]
kind = "transform"
plugin = "{transform}"

[[checks]]
check = "not_null"
column = "customer_id"

{sinks}
"#,
            url = pg.url("shop"),
            transform = c.orders_transform.display(),
        );
        let path = self.dir.path().join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, pipeline: &PathBuf, fault: Option<&str>) -> Output {
        let mut host = common::host();
        host.args(["run", "--quiet"]).arg(pipeline);
        if let Some(fault) = fault {
            host.env("WEIR_FAULT", fault);
        }
        host.output().unwrap()
    }
}

fn warehouse(pg: &PgServer, mode: &str) -> String {
    format!(
        r#"
[[sinks]]
kind = "postgres"
name = "dw"
url = "{}"
table = "analytics.orders"
{mode}
"#,
        pg.url("dw")
    )
}

/// What the warehouse must hold, computed from the source in SQL: one row per kept order,
/// with its total and month.
fn expected(pg: &PgServer) -> Vec<Vec<Option<String>>> {
    pg.rows(
        "shop",
        "SELECT order_id::text, round((amount * exchange_rate)::numeric, 6)::text, \
         to_char(order_date, 'YYYY-MM') FROM orders \
         WHERE customer_id IS NOT NULL AND amount * exchange_rate > 0 ORDER BY order_id",
    )
}

fn loaded(pg: &PgServer) -> Vec<Vec<Option<String>>> {
    pg.rows(
        "dw",
        "SELECT order_id::text, round(total_usd::numeric, 6)::text, order_month \
         FROM analytics.orders ORDER BY order_id, total_usd",
    )
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}\n{}", stdout(out), stderr(out));
}

#[test]
fn incremental_postgres_to_postgres_merge_loads_new_and_changed_rows_once() {
    let pg = PgServer::start();
    shop(&pg);
    pg.execute("dw", "CREATE SCHEMA analytics");
    insert_orders(&pg, 1, 300, "2024-06-01");
    let project = Project::new();
    let pipeline = project.pipeline(
        &pg,
        "",
        &warehouse(&pg, "mode = \"merge\"\nkeys = [\"order_id\"]"),
    );

    let out = project.run(&pipeline, None);
    ok(&out);
    assert_eq!(loaded(&pg), expected(&pg));
    assert!(expected(&pg).len() > 200, "the test data keeps most rows");

    let out = project.run(&pipeline, None);
    ok(&out);
    assert!(
        stdout(&out).contains("nothing new to load"),
        "{}",
        stdout(&out)
    );

    // New rows, and a changed row (its cursor moves past the watermark).
    insert_orders(&pg, 301, 350, "2024-07-01");
    pg.execute(
        "shop",
        "UPDATE orders SET amount = 999, updated_at = timestamptz '2024-08-01' WHERE order_id = 5",
    );
    let out = project.run(&pipeline, None);
    ok(&out);
    let read = stdout(&out)
        .lines()
        .find(|l| l.starts_with("rows read"))
        .map(|l| l.split_whitespace().last().unwrap().to_string());
    assert_eq!(
        read.as_deref(),
        Some("51"),
        "only the new or changed rows: {}",
        stdout(&out)
    );
    assert_eq!(loaded(&pg), expected(&pg));
    let watermark = common::host()
        .args(["state", "show"])
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(
        stdout(&watermark).contains("2024-08-01"),
        "{}",
        stdout(&watermark)
    );
}

#[test]
fn every_load_mode_replayed_twice_leaves_the_warehouse_unchanged() {
    let pg = PgServer::start();
    shop(&pg);
    pg.execute("dw", "CREATE SCHEMA analytics");
    insert_orders(&pg, 1, 200, "2024-06-01");
    for mode in [
        "mode = \"append\"",
        "mode = \"replace_partition\"\npartition_by = \"order_month\"",
        "mode = \"merge\"\nkeys = [\"order_id\"]",
    ] {
        // The same pipeline and rows give the same load id: forget the earlier mode's loads.
        pg.execute(
            "dw",
            "DROP TABLE IF EXISTS analytics.orders; DROP TABLE IF EXISTS analytics._weir_loads",
        );
        let project = Project::new();
        let pipeline = project.pipeline(&pg, "", &warehouse(&pg, mode));
        ok(&project.run(&pipeline, None));
        assert_eq!(loaded(&pg), expected(&pg), "{mode}");
        // Forget the state twice: each replay finds every sink holding the load.
        for _ in 0..2 {
            let reset = common::host()
                .args(["state", "reset"])
                .arg(&pipeline)
                .output()
                .unwrap();
            ok(&reset);
            let out = project.run(&pipeline, None);
            ok(&out);
            assert!(
                stdout(&out).contains("(already loaded: replay skipped)"),
                "{mode}: {}",
                stdout(&out)
            );
            assert_eq!(loaded(&pg), expected(&pg), "{mode}");
        }
    }
}

#[test]
fn replace_partition_replaces_only_the_months_a_load_holds() {
    let pg = PgServer::start();
    shop(&pg);
    pg.execute("dw", "CREATE SCHEMA analytics");
    insert_orders(&pg, 1, 100, "2024-06-01");
    let project = Project::new();
    let mode = "mode = \"replace_partition\"\npartition_by = \"order_month\"";
    let pipeline = project.pipeline(&pg, "", &warehouse(&pg, mode));
    ok(&project.run(&pipeline, None));
    // Rewrite January in the source (new cursor values): the next load holds January only,
    // and replaces it whole; the other months stay.
    pg.execute(
        "shop",
        "UPDATE orders SET amount = amount + 1, updated_at = updated_at + interval '30 days' \
         WHERE order_date < '2024-02-01'",
    );
    ok(&project.run(&pipeline, None));
    assert_eq!(loaded(&pg), expected(&pg));
}

#[test]
fn a_crash_at_each_commit_point_then_a_rerun_loads_every_row_once() {
    for fault in [
        "before_sink_commit",
        "after_first_sink_commit",
        "after_sink_commit",
    ] {
        let pg = PgServer::start();
        shop(&pg);
        pg.execute("dw", "CREATE SCHEMA analytics");
        insert_orders(&pg, 1, 200, "2024-06-01");
        let project = Project::new();
        // Append: a replayed load would show as duplicates.
        let pipeline = project.pipeline(&pg, "", &warehouse(&pg, "mode = \"append\""));
        let out = project.run(&pipeline, Some(fault));
        assert!(!out.status.success(), "{fault}: the fault stops the run");
        // New rows arrive before the rerun: the replay must not take them in.
        insert_orders(&pg, 201, 230, "2024-07-01");
        let out = project.run(&pipeline, None);
        ok(&out);
        let out = project.run(&pipeline, None);
        ok(&out);
        assert_eq!(loaded(&pg), expected(&pg), "{fault}");
    }
}

#[test]
fn the_watermark_is_bound_as_a_parameter_never_formatted_into_sql() {
    let pg = PgServer::start();
    shop(&pg);
    insert_orders(&pg, 1, 20, "2024-06-01");
    let project = Project::new();
    let pipeline = project.pipeline(
        &pg,
        "",
        &warehouse(&pg, "mode = \"append\"").replace("analytics.orders", "orders"),
    );
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        "cursor = \"updated_at\" }",
        "cursor = \"updated_at\", initial = \"2024-01-01' OR '1'='1\" }",
    );
    std::fs::write(&pipeline, text).unwrap();
    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid input syntax for type timestamp with time zone"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn null_cursors_fail_the_run_naming_the_column() {
    let pg = PgServer::start();
    shop(&pg);
    insert_orders(&pg, 1, 20, "2024-06-01");
    pg.execute(
        "shop",
        "UPDATE orders SET updated_at = NULL WHERE order_id IN (3, 4)",
    );
    let project = Project::new();
    let pipeline = project.pipeline(&pg, "", &warehouse(&pg, "").replace("analytics.", ""));
    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("2 rows have a NULL cursor `updated_at`"),
        "{}",
        stderr(&out)
    );
}

/// The password must be in no log line (JSON logs at debug level), error, run report or byte
/// of the state database.
#[test]
fn a_password_in_the_url_never_appears_in_logs_errors_or_state() {
    let pg = PgServer::start();
    shop(&pg);
    let project = Project::new();
    let secret = "s3cr3t-Pa55word";
    // A port where nothing listens: the run fails connecting.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let pipeline = project.pipeline(&pg, "", &warehouse(&pg, "").replace("analytics.", ""));
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace(
            &pg.url("shop"),
            &format!("postgres://postgres:${{PG_SECRET}}@127.0.0.1:{port}/shop"),
        )
        .replace("[[steps]]", "[retry]\nattempts = 1\n\n[[steps]]");
    std::fs::write(&pipeline, text).unwrap();
    let out = common::host()
        .args(["--log-format", "json", "run", "--quiet"])
        .arg(&pipeline)
        .env("PG_SECRET", secret)
        .env("WEIR_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("\"level\":\"DEBUG\""),
        "debug logs: {}",
        stderr(&out)
    );
    let state = project.dir.path().join(".weir/state");
    assert!(state.is_dir(), "the failed run is recorded in the state");
    for file in glob::glob(&format!("{}/**/*", state.display())).unwrap() {
        let file = file.unwrap();
        if file.is_file() {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the password",
                file.display()
            );
        }
    }
    let runs = common::host()
        .args(["runs"])
        .arg(&pipeline)
        .env("PG_SECRET", secret)
        .output()
        .unwrap();
    for text in [stdout(&out), stderr(&out), stdout(&runs), stderr(&runs)] {
        assert!(!text.contains(secret), "the password leaked: {text}");
    }
    assert!(stderr(&out).contains("127.0.0.1"), "{}", stderr(&out));
}

#[test]
fn validate_and_plan_describe_a_postgres_source_without_loading() {
    let pg = PgServer::start();
    shop(&pg);
    pg.execute("dw", "CREATE SCHEMA analytics");
    insert_orders(&pg, 1, 10, "2024-06-01");
    let project = Project::new();
    let pipeline = project.pipeline(&pg, "", &warehouse(&pg, "mode = \"append\""));
    let validate = common::host()
        .arg("validate")
        .arg(&pipeline)
        .output()
        .unwrap();
    ok(&validate);
    assert!(
        stdout(&validate).contains("produces order_id: Int64, customer_id: Int64, amount: Float64"),
        "{}",
        stdout(&validate)
    );
    let plan = common::host().arg("plan").arg(&pipeline).output().unwrap();
    ok(&plan);
    let text = stdout(&plan);
    assert!(
        text.contains("source   postgres table orders → order_id: Int64"),
        "{text}"
    );
    assert!(
        text.contains("rows with `updated_at` past the watermark"),
        "{text}"
    );
    assert_eq!(
        pg.rows(
            "dw",
            "SELECT count(*)::text FROM pg_tables WHERE tablename = 'orders'"
        ),
        [[Some("0".to_string())]],
        "nothing was loaded"
    );
}

#[test]
fn hostile_table_and_column_names_are_quoted_identifiers() {
    let pg = PgServer::start();
    shop(&pg);
    pg.execute("dw", "CREATE TABLE victim (id int)");
    insert_orders(&pg, 1, 20, "2024-06-01");
    let project = Project::new();
    // A column alias and a sink table name that would end the statement if formatted in.
    let evil_column = r#"x"; DROP TABLE victim; --"#;
    let query = format!(
        "query = 'SELECT *, order_id AS \"{}\" FROM orders'",
        evil_column.replace('"', "\"\"")
    );
    let pipeline = project.pipeline(&pg, "", &warehouse(&pg, "mode = \"append\""));
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("table = \"orders\"", &query)
        .replace(
            "table = \"analytics.orders\"",
            r#"table = 'orders"; DROP TABLE victim; --'"#,
        );
    std::fs::write(&pipeline, text).unwrap();
    let out = project.run(&pipeline, None);
    ok(&out);
    assert_eq!(
        pg.rows("dw", "SELECT count(*)::text FROM victim"),
        [[Some("0".to_string())]],
        "the victim table is still there"
    );
    let evil_table = r#""orders""; DROP TABLE victim; --""#;
    let rows = pg.rows(
        "dw",
        &format!(
            "SELECT count(*)::text, count(\"{}\")::text FROM {evil_table}",
            evil_column.replace('"', "\"\"")
        ),
    );
    assert_eq!(
        rows[0][0], rows[0][1],
        "every row has the oddly named column"
    );
    assert_ne!(rows[0][0].as_deref(), Some("0"));
}
