//! What a plugin's language costs: the orders transform written in each language Weir
//! builds (Rust `plugins/orders-transform`, JavaScript `plugins/orders-transform-js`, and
//! any other `plugins/orders-transform-*` listed below once it exists): component size,
//! first load (Cranelift compile, no cache), instantiation, and rows/s through one session.
//! Recorded in BENCHMARKS.md; the README's language table quotes it.
//!
//! Run: `cargo bench --bench languages` (rows: `WEIR_BENCH_ROWS`, default 1,000,000).

mod support;

use std::time::{Duration, Instant};

use support::*;
use weir::plugin::build::{BuildOptions, build};
use weir::plugin::{Runtime, StepPolicy};

const BATCH: usize = 65_536;
const RUNS: usize = 3;

/// (language, plugin directory): the same transform in each.
const PLUGINS: &[(&str, &str)] = &[
    ("Rust", "plugins/orders-transform"),
    ("JavaScript", "plugins/orders-transform-js"),
    ("Python", "plugins/orders-transform-py"),
];

/// CPU time this thread has run (Linux).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    Duration::from_nanos(stat.split_whitespace().next().unwrap().parse().unwrap())
}

fn main() {
    let rows: usize = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let batches = orders(rows, BATCH);
    let mut table = format!(
        "## Plugin languages: the orders transform in each\n\n\
         {rows} rows in {BATCH}-row batches through one session (Arrow IPC in; out, Rust answers by columns, JavaScript and Python with whole batches), median thread CPU time of {RUNS} runs; \
         first load = wall time to compile the component with Cranelift (no cache, parallel); instantiation = median of 200 \
         from `InstancePre`. Machine: {}. Reproduce: `cargo bench --bench languages`.\n\n\
         | language | component | first load | instantiate | rows/s | vs Rust |\n|---|---:|---:|---:|---:|---:|\n",
        machine()
    );
    let mut rust_time = None;
    let mut rust_rows = None;
    for (language, dir) in PLUGINS {
        let dir = workspace_root().join(dir);
        if !dir.is_dir() {
            eprintln!("{language}: no {} (yet)", dir.display());
            continue;
        }
        let built = build(
            &dir,
            &BuildOptions {
                quiet: true,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("building {}: {e}", dir.display()));

        let cache = tempfile::tempdir().unwrap();
        let runtime = Runtime::with_cache_dir(Some(cache.path())).unwrap();
        let started = Instant::now();
        let plugin = runtime.load(&built.path).unwrap();
        let first_load = started.elapsed();

        let policy = StepPolicy::default();
        plugin.instantiate_once(&policy).unwrap();
        let instantiate = median_time(200, || {
            plugin.instantiate_once(&policy).unwrap();
        });

        // Thread CPU time, not wall time: the guest runs on this thread, and other jobs on
        // the shared cores must not count.
        let mut rows_out = 0;
        let mut times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let started = thread_cpu();
                let mut session = plugin.transform_session("{}", policy).unwrap();
                rows_out = batches
                    .iter()
                    .map(|b| session.transform(b).unwrap().num_rows())
                    .sum::<usize>();
                thread_cpu() - started
            })
            .collect();
        times.sort();
        let time = times[RUNS / 2];
        assert_eq!(
            *rust_rows.get_or_insert(rows_out),
            rows_out,
            "{language} disagrees with Rust on the row count"
        );
        let rust = *rust_time.get_or_insert(time);
        let versus = if *language == "Rust" {
            "—".to_string()
        } else {
            format!("{:.0}× slower", time.as_secs_f64() / rust.as_secs_f64())
        };
        table += &format!(
            "| {language} | {:.1} MB | {:.2} s | {:.0} µs | {} | {versus} |\n",
            built.bytes as f64 / 1e6,
            first_load.as_secs_f64(),
            instantiate.as_secs_f64() * 1e6,
            millions(rows_per_sec(rows, time)),
        );
    }
    println!("{table}");
    record("languages", &table);
}
