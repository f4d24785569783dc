//! Memory stays bounded by the batch size, not the input: a generated 2 GB CSV runs through
//! the orders pipeline (transform, checks, SQLite + partitioned Parquet) with a peak RSS under
//! 300 MiB. Ignored by default (it takes a minute or two); `.ci/run` runs it:
//! `cargo test --release --test memory_bound -- --ignored --nocapture`.
//! `WEIR_MEMORY_TEST_BYTES` sets another input size.

mod common;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

const LIMIT_MIB: u64 = 300;

/// The peak resident set of a process so far, from /proc (kB → MiB).
fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb / 1024)
}

#[test]
#[ignore = "generates a 2 GB file; run by .ci/run"]
fn a_2_gb_csv_runs_in_bounded_memory() {
    let bytes: u64 = std::env::var("WEIR_MEMORY_TEST_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let started = Instant::now();
    let mut out = BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dir.path().join("data/orders.csv")).unwrap(),
    );
    writeln!(
        out,
        "order_id,customer_id,amount,currency,exchange_rate,order_date,updated_at"
    )
    .unwrap();
    let (mut written, mut rows) = (0u64, 0u64);
    while written < bytes {
        let line = format!(
            "{rows},{},{}.{:02},USD,1.0,2024-{:02}-{:02}T10:{:02}:00Z,2024-06-01T00:00:00Z\n",
            rows % 9973,
            rows % 1000,
            rows % 100,
            1 + rows % 12,
            1 + rows % 28,
            rows % 60
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        rows += 1;
    }
    out.flush().unwrap();
    drop(out);
    eprintln!(
        "generated {rows} rows, {} MiB, in {:.1} s",
        written >> 20,
        started.elapsed().as_secs_f64()
    );

    let c = common::components();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name = "big"
[source]
kind = "files"
path = "data/*.csv"
[[steps]]
kind = "transform"
plugin = "{}"
[[checks]]
check = "not_null"
column = "order_date"
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
partition_by = "order_month"
"#,
            c.orders_transform.display()
        ),
    )
    .unwrap();

    let started = Instant::now();
    let mut child = common::host()
        .args(["run", "--quiet"])
        .arg(&pipeline)
        .spawn()
        .unwrap();
    let mut peak = 0;
    let status = loop {
        if let Some(mib) = peak_rss_mib(child.id()) {
            peak = peak.max(mib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed().as_secs_f64();
    assert!(status.success(), "the run failed: {status}");
    println!(
        "memory bound: {rows} rows ({} MiB of CSV) loaded in {took:.1} s ({:.2} M rows/s); peak RSS {peak} MiB (limit {LIMIT_MIB} MiB)",
        written >> 20,
        rows as f64 / took / 1e6
    );
    assert!(peak > 0, "the peak RSS was read");
    assert!(peak < LIMIT_MIB, "peak RSS {peak} MiB over {LIMIT_MIB} MiB");
}
