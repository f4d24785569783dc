//! Postgres, both ways, into and out of one throwaway server on loopback (fsync off):
//!
//! - load N generated orders rows: Weir's Postgres sink (binary COPY, in one transaction with
//!   its load marker) vs `psql \copy` of the same rows as CSV vs the seed's pandas
//!   `to_sql(method="multi", chunksize=5000)` vs Polars and DuckDB through ADBC;
//! - extract the N-row table to Arrow: Weir's Postgres source vs ConnectorX vs pandas
//!   `read_sql` vs Polars through ADBC.
//!
//! pandas' `to_sql` runs at a few thousand rows/s, so it loads the first `WEIR_BENCH_PANDAS_ROWS`
//! rows (default 200,000) and its rate is compared. Recorded in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench postgres` (rows: `WEIR_BENCH_PG_ROWS`, default 5,000,000).

mod support;

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)] // shared with the tests, which use all of it
mod postgres;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use support::*;
use weir::extract::postgres::PostgresSource;
use weir::extract::{CursorRange, Source};
use weir::extract::{QuerySpec, Relation};
use weir::load::postgres::SchemaPolicy;
use weir::load::{LoadMode, LoadSpec, PostgresSink, Sink};

const BATCH: usize = 65_536;

fn env_rows(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One measured implementation: rows and seconds.
struct Row {
    name: String,
    how: String,
    rows: usize,
    time: Duration,
}

impl Row {
    fn rate(&self) -> f64 {
        rows_per_sec(self.rows, self.time)
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rows = env_rows("WEIR_BENCH_PG_ROWS", 5_000_000);
    let pandas_rows = env_rows("WEIR_BENCH_PANDAS_ROWS", 200_000).min(rows);
    let dir = target_dir().join("bench/postgres");
    let _ = std::fs::remove_dir_all(&dir);
    let (csv, pandas_csv) = (dir.join("orders.csv"), dir.join("orders-head.csv"));
    eprintln!("writing {rows} rows of CSV");
    write_csv(rows, &csv);
    write_csv(pandas_rows, &pandas_csv);
    let batches = orders(rows, BATCH);

    let pg = postgres::PgServer::start();
    let url = pg.url("postgres");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let count = |table: &str| -> usize {
        pg.rows("postgres", &format!("SELECT count(*)::text FROM {table}"))[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };

    // ---------------------------------------------------------------- load
    eprintln!("loading with Weir's sink");
    let weir_load = runtime.block_on(async {
        let started = Instant::now();
        let sink = PostgresSink::connect(
            "bench",
            &url,
            "weir_orders",
            LoadMode::Append,
            SchemaPolicy::Strict,
        )
        .await
        .unwrap();
        let spec = LoadSpec {
            pipeline: "bench".into(),
            load_id: "load-1".into(),
            schema: batches[0].schema(),
        };
        let mut load = sink.begin(&spec).await.unwrap().unwrap();
        for batch in &batches {
            load.write(batch).await.unwrap();
        }
        load.commit().await.unwrap();
        started.elapsed()
    });
    assert_eq!(count("weir_orders"), rows);
    let mut loads = vec![Row {
        name: "**Weir** Postgres sink".into(),
        how: "binary `COPY ... FROM STDIN`, Arrow batches in memory".into(),
        rows,
        time: weir_load,
    }];

    eprintln!("loading with psql \\copy");
    pg.execute(
        "postgres",
        "CREATE TABLE copy_orders (order_id bigint, customer_id bigint, \
         amount double precision, exchange_rate double precision, order_date text)",
    );
    let started = Instant::now();
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .args(["-p", &pg.port.to_string(), "-d", "postgres", "-c"])
        .arg(format!(
            "\\copy copy_orders FROM '{}' WITH (FORMAT csv, HEADER true)",
            csv.display()
        ))
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    loads.push(Row {
        name: "`psql \\copy`".into(),
        how: "CSV file, text COPY".into(),
        rows,
        time: started.elapsed(),
    });
    assert_eq!(count("copy_orders"), rows);

    let python = python();
    // SQLAlchemy, ConnectorX and ADBC know the `postgresql://` spelling only.
    let peer_url = url.replacen("postgres://", "postgresql://", 1);
    for (engine, how, input, n) in [
        (
            "pandas",
            "`to_sql(method=\"multi\", chunksize=5000)`, SQLAlchemy + psycopg2 (the seed)",
            &pandas_csv,
            pandas_rows,
        ),
        ("polars", "`write_database(engine=\"adbc\")`", &csv, rows),
        ("duckdb", "DuckDB table → ADBC `adbc_ingest`", &csv, rows),
    ] {
        eprintln!("loading with {engine}");
        let table = format!("{engine}_orders");
        let report = run_peer(
            &python,
            "postgres_orders.py",
            &[
                "load",
                "--engine",
                engine,
                "--input",
                input.to_str().unwrap(),
                "--url",
                &peer_url,
                "--table",
                &table,
            ],
        );
        assert_eq!(count(&table), n, "{engine} loads every row");
        loads.push(Row {
            name: format!("{engine} (Python)"),
            how: how.into(),
            rows: n,
            time: Duration::from_secs_f64(report["median_s"].as_f64().unwrap()),
        });
    }

    // ---------------------------------------------------------------- extract
    eprintln!("extracting with Weir's source");
    let weir_extract = runtime.block_on(async {
        let started = Instant::now();
        let source = PostgresSource::new(
            &url,
            QuerySpec {
                relation: Relation::Table("copy_orders".into()),
                batch_size: BATCH,
                cursor: None,
            },
        )
        .unwrap();
        let part = source.list().await.unwrap().remove(0);
        let stream = source.read(&part, &CursorRange::default()).await.unwrap();
        let read: usize = stream
            .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
            .await
            .unwrap();
        assert_eq!(read, rows);
        started.elapsed()
    });
    let mut extracts = vec![Row {
        name: "**Weir** Postgres source".into(),
        how: "binary rows streamed into 65,536-row Arrow batches".into(),
        rows,
        time: weir_extract,
    }];
    for (engine, how) in [
        ("connectorx", "`read_sql(return_type=\"arrow\")`"),
        ("pandas", "`read_sql`, SQLAlchemy + psycopg2"),
        ("polars", "`read_database_uri(engine=\"adbc\")`"),
    ] {
        eprintln!("extracting with {engine}");
        let report = run_peer(
            &python,
            "postgres_orders.py",
            &[
                "extract",
                "--engine",
                engine,
                "--url",
                &peer_url,
                "--table",
                "copy_orders",
            ],
        );
        assert_eq!(
            report["rows"].as_u64(),
            Some(rows as u64),
            "{engine} reads every row"
        );
        extracts.push(Row {
            name: format!("{engine} (Python)"),
            how: how.into(),
            rows,
            time: Duration::from_secs_f64(report["median_s"].as_f64().unwrap()),
        });
    }

    let table = |title: &str, measured: &[Row]| {
        let weir = measured[0].rate();
        let mut text = format!(
            "### {title}\n\n| implementation | how | rows | time | rows/s | Weir's rate is |\n\
             |---|---|---:|---:|---:|---:|\n"
        );
        for row in measured {
            text += &format!(
                "| {} | {} | {} | {:.2} s | {} | {:.2}× |\n",
                row.name,
                row.how,
                row.rows,
                row.time.as_secs_f64(),
                millions(row.rate()),
                weir / row.rate()
            );
        }
        text
    };
    let ratio = |measured: &[Row], name: &str| {
        let peer = measured.iter().find(|r| r.name.starts_with(name)).unwrap();
        measured[0].rate() / peer.rate()
    };
    let markdown = format!(
        "## Postgres: loading and extracting orders\n\n\
         {rows} generated orders rows (5 columns: two bigint, two double, one text), one run each against \
         one PostgreSQL server on loopback (fsync off), machine: {}. Reproduce: `cargo bench --bench postgres`.\n\n\
         {}\nWeir's sink vs `psql \\copy`: **{:.2}×** (target ≥ 0.8×); vs pandas `to_sql`: **{:.0}×** (target ≥ 30×).\n\n\
         {}\nWeir's source vs ConnectorX: **{:.2}×** (target ≥ 1.0×); vs pandas `read_sql`: **{:.1}×**.\n",
        machine(),
        table("Load", &loads),
        ratio(&loads, "`psql"),
        ratio(&loads, "pandas"),
        table("Extract to Arrow", &extracts),
        ratio(&extracts, "connectorx"),
        ratio(&extracts, "pandas"),
    );
    println!("{markdown}");
    record("postgres", &markdown);
}
