//! Python plugins, built for real with componentize-py and run in wasmtime: the Python
//! orders transform against the Rust one, the Python template through the `host` CLI, and
//! builds that fail. (The SDK's own behaviour is in `plugin_python_sdk.rs`.)
//!
//! Needs `python3` with venv and pip, and PyPI on first use (the toolchain is cached under
//! `$WEIR_TOOLCHAINS` or `~/.cache/weir/toolchains`).

mod common;

use common::python::{build_python, require_python};

use common::xorshift::Gen;
#[path = "../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use weir::plugin::build::{BuildOptions, build};
use weir::plugin::{Cause, StepPolicy};

fn python_orders() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| build_python(&common::workspace_root().join("plugins/orders-transform-py")))
}

/// Dates in the shapes order exports have, and bad ones; plus, one row in four, a shape
/// from the edges of Arrow's parser (fractions, offsets, compact times, leap seconds,
/// white space, overflow), mangled now and then.
fn order_date(g: &mut Gen) -> Option<String> {
    let (y, m, d) = (2023 + g.below(3), 1 + g.below(12), 1 + g.below(28));
    let (hh, mm, ss) = (g.below(24), g.below(60), g.below(60));
    Some(match g.below(16) {
        0 => return None,
        1 => "not a date".to_string(),
        2 => format!("{y}-13-{d:02}"),
        3 => "2023-02-29".to_string(),
        4 => format!("{y}-{m:02}-{d:02}"),
        5 => format!("{y}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}"),
        6 => format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}+05:30"),
        7 => format!("{y}-{m:02}-01T00:30:00+02:00"),
        8..=11 => {
            const YEARS: &[&str] = &["0000", "1677", "1678", "1969", "2024", "2262", "9999"];
            const SEPARATORS: &[&str] = &["T", "t", " ", "_", ""];
            const TIMES: &[&str] = &[
                "10:30:00", "23:59:60", "24:00:00", "10:60:00", "103000", "1030", "10:30",
            ];
            const FRACTIONS: &[&str] = &[
                "",
                ".",
                ".5",
                ".123456",
                ".1234567",
                ".123456789",
                ".1234567891",
                ".123456789012345",
                ",5",
            ];
            const SUFFIXES: &[&str] = &[
                "",
                "Z",
                "z",
                "+05:30",
                "-0800",
                "+05",
                "-23:59",
                "+24:00",
                "+05:99",
                " +05:00",
                "\u{a0}-01:00",
                " Z",
                "ZZ",
                "UTC",
                "+5:30",
                "é",
                " ",
            ];
            let mut s = format!(
                "{}-{:02}-{:02}{}{}{}{}",
                g.pick(YEARS),
                1 + g.below(12),
                g.below(32),
                g.pick(SEPARATORS),
                g.pick(TIMES),
                g.pick(FRACTIONS),
                g.pick(SUFFIXES),
            );
            if g.below(4) == 0 {
                let at = g.below(s.len() as u64) as usize;
                if s.is_char_boundary(at) && s.is_char_boundary(at + 1) {
                    s.replace_range(at..at + 1, g.pick(&["0", "9", ":", "-", "T", " "]));
                }
            }
            s
        }
        _ => format!("{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    })
}

/// A batch of orders with nulls, zeros, negatives and bad dates.
fn orders(rows: usize, seed: u64) -> RecordBatch {
    let mut g = Gen(seed);
    let (mut ids, mut customers, mut amounts, mut rates, mut dates) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..rows {
        ids.push(i as i64);
        customers.push((g.below(9) != 0).then(|| g.below(5000) as i64));
        amounts.push(match g.below(15) {
            0 => None,
            1 => Some(0.0),
            2..=3 => Some(-(g.below(100_000) as f64) / 100.0),
            _ => Some(g.below(100_000) as f64 / 100.0),
        });
        rates.push([1.0, 0.5, 1.25, 0.0, 108.3, 0.1][g.below(6) as usize]);
        dates.push(order_date(&mut g));
    }
    let schema = Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("exchange_rate", DataType::Float64, false),
        Field::new("order_date", DataType::Utf8, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(Int64Array::from(customers)),
        Arc::new(Float64Array::from(amounts)),
        Arc::new(Float64Array::from(rates)),
        Arc::new(StringArray::from(dates)),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

#[test]
fn python_orders_transform_gives_exactly_the_rust_plugins_batches() {
    let python = common::load(python_orders());
    let rust = common::load(&common::components().orders_transform);
    let input = orders(40_000, 0x5eed);
    let mut py_session = python
        .transform_session("{}", StepPolicy::default())
        .unwrap();
    let mut rust_session = rust.transform_session("{}", StepPolicy::default()).unwrap();

    let (mut rows, mut null_dates) = (0, 0);
    for (offset, length) in [(0, 8192), (8192, 1), (8193, 0), (8193, 31_807)] {
        let batch = input.slice(offset, length);
        assert_eq!(
            py_session.output_schema(batch.schema_ref()).unwrap(),
            rust_session.output_schema(batch.schema_ref()).unwrap()
        );
        let from_python = py_session
            .transform(&batch)
            .unwrap_or_else(|e| panic!("{e}"));
        let from_rust = rust_session.transform(&batch).unwrap();
        assert_eq!(from_python.schema(), from_rust.schema());
        for (i, field) in from_rust.schema().fields().iter().enumerate() {
            assert_eq!(
                from_python.column(i).to_data(),
                from_rust.column(i).to_data(),
                "column {}",
                field.name()
            );
        }
        assert_eq!(from_python, from_rust);
        rows += from_rust.num_rows();
        null_dates += from_rust.column_by_name("order_date").unwrap().null_count();
    }
    // The input exercised every path.
    assert!(rows > 10_000 && rows < 35_000, "{rows} rows kept");
    assert!(null_dates > 1000, "{null_dates} bad dates kept as null");
}

#[test]
fn python_orders_transform_fails_on_the_same_bad_date_as_rust_when_asked() {
    let python = common::load(python_orders());
    let rust = common::load(&common::components().orders_transform);
    let input = orders(200, 7);
    let config = r#"{"bad_dates": "fail"}"#;
    let py = python
        .transform_session(config, StepPolicy::default())
        .unwrap()
        .transform(&input)
        .unwrap_err();
    let rs = rust
        .transform_session(config, StepPolicy::default())
        .unwrap()
        .transform(&input)
        .unwrap_err();
    let returned = |e: &weir::plugin::PluginError| match &e.cause {
        Cause::Returned { kind, message } => (kind.clone(), message.clone()),
        other => panic!("{other}"),
    };
    assert_eq!(returned(&py), returned(&rs));
    assert!(py.to_string().contains("orders-transform-py"), "{py}");

    // Timestamp input (nanoseconds, no zone) is converted, not parsed.
    let ns: TimestampNanosecondArray =
        vec![Some(1_700_000_000_123_456_789), None, Some(-1_999)].into();
    let batch = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
        ("amount", Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]))),
        ("exchange_rate", Arc::new(Float64Array::from(vec![1.0; 3]))),
        ("order_date", Arc::new(ns)),
    ])
    .unwrap();
    let from_python = python
        .transform_session("{}", StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap();
    let from_rust = rust
        .transform_session("{}", StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap();
    assert_eq!(from_python, from_rust);
}

#[test]
fn python_template_builds_and_passes_its_own_test_through_the_cli() {
    require_python();
    let tmp = tempfile::tempdir().unwrap();
    common::template_passes_its_own_test(tmp.path(), "x", "python");
    for file in ["x/pyproject.toml", "x/app.py", "x/target/x.wasm"] {
        assert!(tmp.path().join(file).is_file(), "{file}");
    }
}

#[test]
fn a_broken_python_project_fails_to_build_saying_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        "[project]\nname = \"broken\"\n[tool.weir]\nmodule = \"main\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("app.py"), "").unwrap();
    let options = BuildOptions {
        quiet: true,
        ..Default::default()
    };
    let error = build(&dir, &options).unwrap_err().to_string();
    assert!(
        error.contains("has no `main.py` nor `main/__init__.py`")
            && error.contains("[tool.weir] module"),
        "{error}"
    );

    // A module that exports nothing fails at build time, not when run.
    std::fs::write(dir.join("main.py"), "x = 1\n").unwrap();
    let error = build(&dir, &options).unwrap_err().to_string();
    assert!(error.contains("componentize-py could not build"), "{error}");
}

/// The Python orders plugin against the Rust one on the benchmark's data (host/benches):
/// component size, first compile, instantiation and rows/s, printed. Figures are in
/// sdk/python/README.md. Run:
/// `cargo test --release --test plugin_python -- --ignored --nocapture measure`
/// (rows: `WEIR_BENCH_ROWS`, default 1,000,000).
#[test]
#[ignore]
fn measure_python_against_rust() {
    use std::time::{Duration, Instant};
    let rows: usize = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let batches = support::orders(rows, 65_536);
    let policy = StepPolicy::default();
    for (name, path) in [
        ("Rust", common::components().orders_transform.clone()),
        ("Python", python_orders().to_path_buf()),
    ] {
        let size = std::fs::metadata(&path).unwrap().len();
        // A runtime without a disk cache: loading compiles the component with Cranelift.
        let runtime = weir::plugin::Runtime::with_cache_dir(None).unwrap();
        let started = Instant::now();
        let plugin = runtime.load(&path).unwrap();
        let compile = started.elapsed();
        plugin.instantiate_once(&policy).unwrap();
        let instantiate = support::median_time(200, || {
            plugin.instantiate_once(&policy).unwrap();
        });
        let mut best = Duration::MAX;
        let mut out = 0;
        for _ in 0..3 {
            let mut session = plugin.transform_session("{}", policy).unwrap();
            let started = Instant::now();
            out = batches
                .iter()
                .map(|b| session.transform(b).unwrap().num_rows())
                .sum::<usize>();
            best = best.min(started.elapsed());
        }
        println!(
            "{name}: component {:.1} MB, compile {:.2} s, instantiate {:.3} ms (median of 200), \
             {rows} rows ({out} out) in {:.3} s = {:.2} M rows/s (best of 3)",
            size as f64 / 1e6,
            compile.as_secs_f64(),
            instantiate.as_secs_f64() * 1e3,
            best.as_secs_f64(),
            rows as f64 / best.as_secs_f64() / 1e6,
        );
        // The largest batch that fits the default 256 MiB cap, by doubling.
        let mut fits = 0;
        for size in [65_536, 131_072, 262_144, 524_288, 1_048_576] {
            let batch = &support::orders(size, size)[0];
            let mut session = plugin.transform_session("{}", policy).unwrap();
            match session.transform(batch) {
                Ok(_) => fits = size,
                Err(e) => {
                    println!("{name}: a {size}-row batch fails: {e}");
                    break;
                }
            }
        }
        println!("{name}: batches of {fits} rows fit the default memory cap");
    }
}
