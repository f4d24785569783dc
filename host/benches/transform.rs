//! `orders-transform` as a Wasm plugin (answering by columns, the host filtering the input's
//! columns it keeps) vs the same code natively (Arrow kernels, the same filter) vs the
//! seed's pandas `transform_orders` and its Polars and DuckDB equivalents, over 5 M rows in
//! batches of the engine's default size; plus plugin instantiation. Weir and native each run one batch at a
//! time, then two at once (Weir through the engine's lanes, `parallel_batches = 2`; native on
//! two threads). Recorded in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench transform` (rows: `WEIR_BENCH_ROWS`, default 5,000,000).

mod support;

use std::time::Duration;

use support::*;
use weir::engine::lanes::{Lane, Lanes};
use weir::plugin::build::{BuildOptions, build};
use weir::plugin::{Runtime, StepPolicy};

/// Rows per batch: what a run uses when its source does not say.
const BATCH: usize = weir::config::types::DEFAULT_BATCH_SIZE;
/// Timed runs of each Python peer (~1 s each for pandas).
const RUNS: usize = 5;
/// Timed runs of each Weir and native side (~0.1 s each): more, as this shared machine's
/// noise moves a run of 0.1 s by more than one of 1 s.
const WEIR_RUNS: usize = 15;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only smoke-test.
    let rows: usize = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000);
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }

    let built = build(
        &workspace_root().join("plugins/orders-transform"),
        &BuildOptions {
            quiet: true,
            ..Default::default()
        },
    )
    .expect("build orders-transform");
    let runtime = Runtime::with_cache_dir(None).unwrap();
    let plugin = runtime.load(&built.path).unwrap();

    eprintln!("generating {rows} rows");
    let batches = orders(rows, BATCH);
    let parquet = target_dir().join("bench/orders.parquet");
    write_parquet(&batches, &parquet);

    // Wasm: one session (instance) for the whole stream, IPC in and out of every batch.
    let wasm_run = || {
        let mut session = plugin
            .transform_session("{}", StepPolicy::default())
            .unwrap();
        batches
            .iter()
            .map(|b| session.transform(b).unwrap().num_rows())
            .sum::<usize>()
    };
    let native_run = || {
        batches
            .iter()
            .map(|b| {
                orders_transform::transform_orders(b, Default::default())
                    .and_then(|output| output.into_batch())
                    .unwrap()
                    .num_rows()
            })
            .sum::<usize>()
    };
    // Two batches at once: the engine's lanes, each with its own instance, as a run with
    // `parallel_batches = 2` has them.
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let lanes_run = || {
        tokio.block_on(async {
            let lanes = (0..2).map(|_| {
                let session = plugin.transform_session("{}", StepPolicy::default());
                Lane::new(vec![session.unwrap()], Vec::new())
            });
            let mut lanes = Lanes::new(lanes.collect());
            let mut rows = 0;
            for batch in &batches {
                if let Some(stepped) = lanes.submit(batch.clone()).await.unwrap() {
                    rows += stepped.batch.num_rows();
                }
            }
            while let Some(stepped) = lanes.next().await {
                rows += stepped.unwrap().batch.num_rows();
            }
            rows
        })
    };
    // Natively, the same split: one thread takes the even batches, the other the odd ones.
    let native_threads_run = || {
        std::thread::scope(|scope| {
            let halves: Vec<_> = (0..2)
                .map(|half| {
                    let batches = &batches;
                    scope.spawn(move || {
                        let mine = batches.iter().skip(half).step_by(2);
                        mine.map(|b| {
                            orders_transform::transform_orders(b, Default::default())
                                .and_then(|output| output.into_batch())
                                .unwrap()
                                .num_rows()
                        })
                        .sum::<usize>()
                    })
                })
                .collect();
            halves.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
        })
    };
    let rows_out = wasm_run();
    assert_eq!(native_run(), rows_out, "native and Wasm disagree");
    assert_eq!(lanes_run(), rows_out, "two lanes and one disagree");
    // Runs alternate, so that a shared machine's drift weighs on every side alike.
    let mut runs: [Vec<Duration>; 4] = Default::default();
    for _ in 0..WEIR_RUNS {
        runs[0].push(time(|| assert_eq!(wasm_run(), rows_out)));
        runs[1].push(time(|| assert_eq!(native_run(), rows_out)));
        runs[2].push(time(|| assert_eq!(lanes_run(), rows_out)));
        runs[3].push(time(|| assert_eq!(native_threads_run(), rows_out)));
    }
    let [wasm, native, wasm2, native2] = runs.map(median);

    // Instantiation from InstancePre into a fresh store.
    let policy = StepPolicy::default();
    plugin.instantiate_once(&policy).unwrap();
    let instantiate = median_time(2000, || {
        plugin.instantiate_once(&policy).unwrap();
    });

    let python = python();
    let runs = RUNS.to_string();
    let peers: Vec<(String, Duration, u64)> = ["pandas", "polars", "duckdb"]
        .iter()
        .map(|engine| {
            eprintln!("running the {engine} peer");
            let report = run_peer(
                &python,
                "transform_orders.py",
                &[
                    "--engine",
                    engine,
                    "--input",
                    parquet.to_str().unwrap(),
                    "--runs",
                    &runs,
                ],
            );
            assert_eq!(
                report["rows_out"].as_u64(),
                Some(rows_out as u64),
                "{engine} disagrees on the row count: {report}"
            );
            (
                engine.to_string(),
                Duration::from_secs_f64(report["median_s"].as_f64().unwrap()),
                report["peak_rss_mib"].as_u64().unwrap_or(0),
            )
        })
        .collect();

    let rate = |t: Duration| rows_per_sec(rows, t);
    let mut table = format!(
        "## Transform: `orders-transform` (seed's `transform_orders`)\n\n\
         {rows} rows in {BATCH}-row batches, median of {WEIR_RUNS} runs (Weir and native alternating; the Python peers {RUNS}), input in memory (read not timed); \
         {rows_out} rows out. Machine: {}. Reproduce: `cargo bench --bench transform`.\n\n\
         | implementation | cores | median time | rows/s | Weir's throughput (1 core) vs this | Weir's throughput (2 cores) vs this |\n|---|---:|---:|---:|---:|---:|\n",
        machine()
    );
    let mut line = |name: &str, cores: &str, t: Duration| {
        let ratio = |weir: Duration| t.as_secs_f64() / weir.as_secs_f64();
        table += &format!(
            "| {name} | {cores} | {:.3} s | {} | {:.2}× | {:.2}× |\n",
            t.as_secs_f64(),
            millions(rate(t)),
            ratio(wasm),
            ratio(wasm2),
        );
    };
    line(
        "**Weir: Wasm plugin** (sandboxed; the batch in as Arrow IPC, the kept rows and computed columns out, the host filtering the rest), one batch at a time",
        "1",
        wasm,
    );
    line(
        "**Weir: Wasm plugin**, two batches at once (`parallel_batches = 2`: the engine's lanes, an instance each)",
        "2",
        wasm2,
    );
    line(
        "same Rust code natively (Arrow kernels, no sandbox)",
        "1",
        native,
    );
    line(
        "same Rust code natively, two threads (even and odd batches)",
        "2",
        native2,
    );
    for (engine, t, _) in &peers {
        let cores = if engine == "pandas" { "1" } else { "2" };
        line(&format!("{engine} (Python peer)"), cores, *t);
    }
    let pandas = peers[0].1.as_secs_f64();
    table += &format!(
        "\nWasm vs native: **{:.2}×** the throughput on one core, **{:.2}×** on two (target ≥ 0.5×). \
         Wasm vs pandas, which uses one core: **{:.1}×** one batch at a time, **{:.1}×** two at once (target ≥ 20×).\n\n\
         Plugin instantiation from `InstancePre` into a fresh store: median **{:.1} µs** over 2,000 (target ≤ 100 µs).\n",
        native.as_secs_f64() / wasm.as_secs_f64(),
        native2.as_secs_f64() / wasm2.as_secs_f64(),
        pandas / wasm.as_secs_f64(),
        pandas / wasm2.as_secs_f64(),
        instantiate.as_secs_f64() * 1e6,
    );
    println!("{table}");
    record("transform", &table);
}
