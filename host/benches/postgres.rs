//! CSV → orders-transform → orders-validator + checks → a Postgres table, with `host run`
//! (binary COPY), beside the seed's pandas `to_sql(method="multi")` and Polars and DuckDB
//! writing through the ADBC Postgres driver, all into the same throwaway server on loopback.
//! Recorded in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench postgres` (rows: `WEIR_BENCH_PG_ROWS`, default 1,000,000; the seed's pandas path runs at ~5,000 rows/s).

mod support;

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)] // shared with the tests, which use all of it
mod postgres;

use std::process::Command;
use std::time::Duration;

use support::*;
use weir::plugin::build::{BuildOptions, build_many};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rows: usize = std::env::var("WEIR_BENCH_PG_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = target_dir().join("bench/postgres");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let csv = dir.join("data/orders.csv");
    eprintln!("writing {rows} rows of CSV");
    write_csv(rows, &csv);

    let root = workspace_root();
    let built = build_many(
        &[
            root.join("plugins/orders-transform"),
            root.join("plugins/orders-validator"),
        ],
        &BuildOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .expect("build the plugins");
    let pg = postgres::PgServer::start();
    let pipeline = dir.join("orders.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name = "bench"
[source]
kind = "files"
path = "data/orders.csv"
[[steps]]
kind = "transform"
plugin = "{}"
[[steps]]
kind = "validate"
plugin = "{}"
[[checks]]
check = "range"
column = "total_usd"
min = 0
[[sinks]]
kind = "postgres"
name = "warehouse"
url = "{}"
table = "weir_orders"
[state]
path = "out/state"
"#,
            built[0].path.display(),
            built[1].path.display(),
            pg.url("postgres")
        ),
    )
    .unwrap();

    eprintln!("running Weir");
    let (weir, weir_rss) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["run", "--quiet"])
            .arg(&pipeline)
            .stdout(std::process::Stdio::null()),
    );
    let count = |table: &str| {
        pg.rows("postgres", &format!("SELECT count(*)::text FROM {table}"))[0][0]
            .clone()
            .unwrap()
    };
    let loaded = count("weir_orders");

    let python = python();
    let url = format!(
        "postgresql+psycopg2://postgres@127.0.0.1:{}/postgres",
        pg.port
    );
    let mut peers: Vec<(&str, &str, Duration, u64)> = Vec::new();
    for (engine, how) in [
        (
            "pandas",
            "`to_sql(method=\"multi\", chunksize=5000)`, SQLAlchemy + psycopg2 (the seed)",
        ),
        ("polars", "`write_database(engine=\"adbc\")`"),
        ("duckdb", "DuckDB transform, ADBC `adbc_ingest`"),
    ] {
        eprintln!("running the {engine} pipeline");
        let table = format!("{engine}_orders");
        let report = run_peer(
            &python,
            "postgres_orders.py",
            &[
                "--engine",
                engine,
                "--input",
                csv.to_str().unwrap(),
                "--url",
                &url,
                "--table",
                &table,
            ],
        );
        assert_eq!(
            count(&table),
            loaded,
            "{engine} loads the same rows as Weir"
        );
        let seconds = report["median_s"].as_f64().unwrap();
        peers.push((
            engine,
            how,
            Duration::from_secs_f64(seconds),
            report["peak_rss_mib"].as_f64().unwrap_or(0.0) as u64,
        ));
    }

    let mut table = format!(
        "## Pipeline into Postgres: CSV → transform → validate → a Postgres table\n\n\
         {rows} rows of CSV ({loaded} loaded), one run each into the same PostgreSQL server on loopback \
         (fsync off), wall time of the whole job. Weir: `host run` with the two plugins, a range check and a \
         Postgres sink (binary COPY in one transaction with its load marker). Machine: {}. Reproduce: \
         `cargo bench --bench postgres`.\n\n\
         | implementation | how it writes | time | rows/s | peak RSS | Weir's throughput is |\n\
         |---|---|---:|---:|---:|---:|\n",
        machine()
    );
    let mut line = |name: &str, how: &str, t: Duration, rss: u64| {
        let ratio = t.as_secs_f64() / weir.as_secs_f64();
        table += &format!(
            "| {name} | {how} | {:.2} s | {} | {rss} MiB | {ratio:.2}× |\n",
            t.as_secs_f64(),
            millions(rows_per_sec(rows, t))
        );
    };
    line(
        "**Weir** `host run`",
        "binary `COPY ... FROM STDIN`",
        weir,
        weir_rss,
    );
    for (engine, how, t, rss) in &peers {
        line(&format!("{engine} (Python)"), how, *t, *rss);
    }
    println!("{table}");
    record("postgres", &table);
}
