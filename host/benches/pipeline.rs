//! End to end: CSV → orders-transform → orders-validator + checks → SQLite + Parquet, with
//! `host run`, beside the seed's own pandas pipeline (`read_csv` → `transform_orders` →
//! `validate` → `to_sql` + `to_parquet`) and its Polars and DuckDB equivalents, on the same
//! 10 M-row CSV. Recorded in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench pipeline` (rows: `WEIR_BENCH_ROWS`, default 10,000,000).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;
use weir::plugin::build::{BuildOptions, build_many};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rows: usize = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = target_dir().join("bench/pipeline");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let csv = dir.join("data/orders.csv");
    eprintln!("writing {rows} rows of CSV");
    write_csv(rows, &csv);
    let csv_mib = std::fs::metadata(&csv).unwrap().len() >> 20;

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
    let pipeline = dir.join("orders.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name = "bench"
on_fail = "quarantine"
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
[quarantine]
path = "out/quarantine"
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "out/weir.db"
table = "orders"
[[sinks]]
kind = "parquet"
name = "lake"
path = "out/lake"
[state]
path = "out/state"
"#,
            built[0].path.display(),
            built[1].path.display()
        ),
    )
    .unwrap();

    eprintln!("running Weir");
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let (weir, weir_rss) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["run", "--quiet"])
            .arg(&pipeline)
            .stdout(std::process::Stdio::null()),
    );

    let python = python();
    let mut peers: Vec<(String, Duration, u64)> = Vec::new();
    for engine in ["pandas", "polars", "duckdb"] {
        eprintln!("running the {engine} pipeline");
        let db = dir.join(format!("{engine}.db"));
        let parquet = dir.join(format!("{engine}.parquet"));
        let report = run_peer(
            &python,
            "transform_orders.py",
            &[
                "--engine",
                engine,
                "--pipeline",
                "--input",
                csv.to_str().unwrap(),
                "--sqlite",
                db.to_str().unwrap(),
                "--parquet",
                parquet.to_str().unwrap(),
            ],
        );
        let seconds = report["median_s"].as_f64().unwrap();
        peers.push((
            engine.to_string(),
            Duration::from_secs_f64(seconds),
            report["peak_rss_mib"].as_f64().unwrap_or(0.0) as u64,
        ));
    }

    let mut table = format!(
        "## Pipeline: CSV → transform → validate → SQLite + Parquet\n\n\
         {rows} rows ({csv_mib} MiB of CSV), one run each, wall time of the whole job including reading the CSV \
         and writing both outputs. Weir: `host run` with the `orders-transform` and `orders-validator` plugins, a \
         built-in range check, an append SQLite sink and a Parquet sink (load markers and state included). \
         Peers: the seed's pipeline in pandas, and the same in Polars and DuckDB (bench/peers/transform_orders.py). \
         Machine: {}. Reproduce: `cargo bench --bench pipeline`.\n\n\
         | implementation | time | rows/s | peak RSS | Weir's throughput is |\n|---|---:|---:|---:|---:|\n",
        machine()
    );
    let mut line = |name: &str, t: Duration, rss: u64| {
        let ratio = t.as_secs_f64() / weir.as_secs_f64();
        table += &format!(
            "| {name} | {:.2} s | {} | {rss} MiB | {ratio:.2}× |\n",
            t.as_secs_f64(),
            millions(rows_per_sec(rows, t))
        );
    };
    line("**Weir** `host run`", weir, weir_rss);
    for (engine, t, rss) in &peers {
        line(&format!("{engine} (Python)"), *t, *rss);
    }
    table += &format!(
        "\nWeir vs the seed's pandas pipeline: **{:.1}×** the throughput (target ≥ 10×) at {:.0}% of its peak memory.\n",
        peers[0].1.as_secs_f64() / weir.as_secs_f64(),
        100.0 * weir_rss as f64 / peers[0].2.max(1) as f64
    );
    println!("{table}");
    record("pipeline", &table);
}
