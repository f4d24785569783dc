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

/// Rounds (each runs Weir and every peer once).
const RUNS: usize = 5;

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

    // A run compiles a plugin the first time it meets it, and caches it on disk; `host
    // validate` loads both here, so the timed runs measure the pipeline, not that compile.
    let status = Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("validate")
        .arg(&pipeline)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run host validate");
    assert!(
        status.success(),
        "host validate {} failed",
        pipeline.display()
    );

    // Rounds alternate Weir and the peers, so that a shared machine's drift weighs on all
    // alike; each figure is the median of its rounds, peak RSS the highest.
    let python = python();
    let engines = ["pandas", "polars", "duckdb"];
    let mut weir_runs = Vec::new();
    let mut peer_runs: Vec<Vec<(Duration, u64)>> = vec![Vec::new(); engines.len()];
    for round in 1..=RUNS {
        let _ = std::fs::remove_dir_all(dir.join("out"));
        settle();
        let weir_run = run_measured(
            Command::new(env!("CARGO_BIN_EXE_host"))
                .args(["run", "--quiet"])
                .arg(&pipeline)
                .stdout(std::process::Stdio::null()),
        );
        eprintln!(
            "round {round} of {RUNS}: Weir {:.2} s",
            weir_run.0.as_secs_f64()
        );
        weir_runs.push(weir_run);
        for (engine, runs) in engines.iter().zip(&mut peer_runs) {
            let db = dir.join(format!("{engine}.db"));
            let parquet = dir.join(format!("{engine}.parquet"));
            // The seed appends to the table: each round starts from no database.
            let _ = std::fs::remove_file(&db);
            settle();
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
            let took = Duration::from_secs_f64(report["median_s"].as_f64().unwrap());
            eprintln!(
                "round {round} of {RUNS}: {engine} {:.2} s",
                took.as_secs_f64()
            );
            runs.push((took, report["peak_rss_mib"].as_f64().unwrap_or(0.0) as u64));
        }
    }
    let summarise = |runs: Vec<(Duration, u64)>| {
        let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
        (median(runs.into_iter().map(|r| r.0).collect()), peak)
    };
    // Each round's pandas ÷ Weir: on a shared machine the rounds' spread says how far the
    // median can be trusted.
    let round_ratios: Vec<String> = weir_runs
        .iter()
        .zip(&peer_runs[0])
        .map(|(w, p)| format!("{:.1}×", p.0.as_secs_f64() / w.0.as_secs_f64()))
        .collect();
    let (weir, weir_rss) = summarise(weir_runs);
    let peers: Vec<(&str, Duration, u64)> = engines
        .iter()
        .zip(peer_runs)
        .map(|(engine, runs)| {
            let (t, rss) = summarise(runs);
            (*engine, t, rss)
        })
        .collect();

    let mut table = format!(
        "## Pipeline: CSV → transform → validate → SQLite + Parquet\n\n\
         {rows} rows ({csv_mib} MiB of CSV), median of {RUNS} alternating rounds, wall time of the whole job including reading the CSV \
         and writing both outputs. Weir: `host run` with the `orders-transform` and `orders-validator` plugins, a \
         built-in range check, an append SQLite sink and a Parquet sink (load markers and state included), \
         its plugins compiled and cached beforehand by `host validate` (as after a run's first use). \
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
    table += &format!(
        "Round by round (pandas ÷ Weir, in the order run): {}.\n",
        round_ratios.join(", ")
    );
    println!("{table}");
    record("pipeline", &table);
}
