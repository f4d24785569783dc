//! Shared by the benchmarks: data generation, timing, the Python peers and BENCHMARKS.md.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub fn orders_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("exchange_rate", DataType::Float64, false),
        Field::new("order_date", DataType::Utf8, true),
    ]))
}

/// `rows` generated orders in batches: ~10% null customer, ~10% negative amounts, ~3% bad dates.
pub fn orders(rows: usize, batch_size: usize) -> Vec<RecordBatch> {
    order_batches(rows, batch_size).collect()
}

/// As [`orders`], one batch at a time.
pub fn order_batches(rows: usize, batch_size: usize) -> impl Iterator<Item = RecordBatch> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..rows).step_by(batch_size).map(move |start| {
        let n = batch_size.min(rows - start);
        let mut ids = Vec::with_capacity(n);
        let mut customers = Vec::with_capacity(n);
        let mut amounts = Vec::with_capacity(n);
        let mut rates = Vec::with_capacity(n);
        let mut dates = Vec::with_capacity(n);
        for i in start..start + n {
            let r = next();
            ids.push(i as i64);
            customers.push((r % 10 != 0).then_some((r >> 8) as i64 % 100_000));
            let cents = ((r >> 20) % 100_000) as f64 / 100.0;
            amounts.push(match (r >> 40) % 50 {
                0 => None,
                1..=5 => Some(-cents),
                _ => Some(cents),
            });
            rates.push([1.0, 0.92, 1.27, 0.0064][(r >> 48) as usize % 4]);
            let (month, day, hour) = ((r >> 52) % 12 + 1, (r >> 56) % 28 + 1, (r >> 36) % 24);
            dates.push(match (r >> 30) % 33 {
                0 => "not a date".to_string(),
                1..=4 => format!("2024-{month:02}-{day:02}"),
                _ => format!("2024-{month:02}-{day:02}T{hour:02}:15:30Z"),
            });
        }
        RecordBatch::try_new(
            orders_schema(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Int64Array::from(customers)),
                Arc::new(Float64Array::from(amounts)),
                Arc::new(Float64Array::from(rates)),
                Arc::new(StringArray::from(dates)),
            ],
        )
        .unwrap()
    })
}

/// Write generated orders as CSV, batch by batch.
pub fn write_csv(rows: usize, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut writer = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(file);
    for batch in order_batches(rows, 65_536) {
        writer.write(&batch).unwrap();
    }
}

/// Write every dirty page back to disk first, so that a timed run does not share the disk
/// with the write-back of what the run before it (or the input's generation) wrote.
pub fn settle() {
    let status = Command::new("sync").status().expect("run sync");
    assert!(status.success(), "sync failed");
}

/// Run a command to its end, polling its peak RSS; (seconds, peak RSS MiB).
pub fn run_measured(command: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn");
    let mut peak = 0;
    let status = loop {
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            });
        peak = peak.max(hwm.unwrap_or(0) / 1024);
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.success() || status.code() == Some(3),
        "{command:?} failed: {status}"
    );
    (started.elapsed(), peak)
}

pub fn write_parquet(batches: &[RecordBatch], path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batches[0].schema(), None).unwrap();
    for batch in batches {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
}

/// Median of `runs` timings of `f`.
pub fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    median((0..runs).map(|_| time(&mut f)).collect())
}

/// How long one call of `f` takes.
pub fn time(f: impl FnOnce()) -> Duration {
    let started = Instant::now();
    f();
    started.elapsed()
}

pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The Python peers' venv (made by `bench/setup-venv.sh`); its python interpreter.
pub fn python() -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace_root().join("bench/setup-venv.sh"))
        .output()
        .expect("run bench/setup-venv.sh");
    assert!(
        out.status.success(),
        "bench/setup-venv.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the venv's python").trim())
}

/// Run a peer script; its last stdout line is a JSON report.
pub fn run_peer(python: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg(workspace_root().join("bench/peers").join(script))
        .args(args)
        .output()
        .expect("run a Python peer");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("a JSON report")
}

/// Replace (or append) the section of BENCHMARKS.md between `<!-- name -->` markers.
pub fn record(name: &str, markdown: &str) {
    let path = workspace_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# Benchmarks\n\nProduced by `cargo bench` (or `just bench`); do not edit sections by hand.\n".into());
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let section = format!("{start}\n{}\n{end}", markdown.trim_end());
    let updated = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(&path, updated).unwrap();
    println!("recorded `{name}` in {}", path.display());
}

/// What machine the figures come from.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

pub fn rows_per_sec(rows: usize, time: Duration) -> f64 {
    rows as f64 / time.as_secs_f64()
}

/// `12.3 M` style.
pub fn millions(v: f64) -> String {
    format!("{:.2} M", v / 1e6)
}
