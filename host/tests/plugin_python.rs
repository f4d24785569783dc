//! Python plugins, built for real with componentize-py and run in wasmtime: the Python
//! orders transform against the Rust one, the Python template through the `host` CLI, and
//! a Python plugin's exceptions as plugin errors.
//!
//! Needs `python3` with venv and pip, and PyPI on first use (the toolchain is cached under
//! `$WEIR_TOOLCHAINS` or `~/.cache/weir/toolchains`).

mod common;

use common::xorshift::Gen;
#[path = "../benches/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use weir::plugin::build::{BuildOptions, build};
use weir::plugin::{Cause, StepPolicy};

/// Fail (never skip) when Python is missing, saying what to install.
fn require_python() {
    let ok = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "these tests build Python plugins: install Python 3 with venv and pip (Debian: `apt-get install python3 python3-venv python3-pip`)"
    );
}

fn build_python(dir: &Path) -> PathBuf {
    require_python();
    let options = BuildOptions {
        quiet: true,
        ..Default::default()
    };
    build(dir, &options)
        .unwrap_or_else(|e| panic!("building {}: {e}", dir.display()))
        .path
}

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
fn the_sdk_codec_passes_its_cpython_unit_tests() {
    require_python();
    let out = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "sdk/python/tests"])
        .current_dir(common::workspace_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
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

/// A small Python plugin: it echoes its input, or raises as its settings say.
fn probe() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &BUILT
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("probe");
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(
                dir.join("pyproject.toml"),
                "[project]\nname = \"probe\"\nversion = \"0.1.0\"\n",
            )
            .unwrap();
            std::fs::write(dir.join("app.py"), PROBE).unwrap();
            let path = build_python(&dir);
            (tmp, path)
        })
        .1
}

const PROBE: &str = r#"from weir_sdk import InvalidConfig, Table, Transform, export


@export
class Probe(Transform):
    def init(self, config):
        if "bad" in config:
            raise InvalidConfig("`bad` is not a setting")
        self.fail = config.get("raise", False)

    def transform(self, table: Table) -> Table:
        print("rows:", table.num_rows)  # goes nowhere, but must not trap
        if self.fail:
            raise ValueError("no good " + str(table.num_rows))
        return Table(table.schema, table.columns)
"#;

#[test]
fn every_supported_type_crosses_python_and_back_unchanged() {
    use arrow::array::{
        BooleanArray, Date32Array, Float32Array, Int8Array, Int16Array, Int32Array,
        TimestampMillisecondArray, TimestampSecondArray, UInt8Array, UInt64Array,
    };
    let n = 300;
    let some = |i: usize| i % 7 != 3; // nulls here and there
    let text = |i: usize| ["", "a", "Ünïcödé ✓", "plain ascii", "日本"][i % 5].to_string();
    let columns: Vec<(&str, ArrayRef, bool)> = vec![
        (
            "i64",
            Arc::new(Int64Array::from_iter(
                (0..n).map(|i| some(i).then_some(i as i64 * -7_919_000_000)),
            )),
            true,
        ),
        (
            "i64_not_null",
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i as i64 - 100))),
            false,
        ),
        (
            "i32",
            Arc::new(Int32Array::from_iter(
                (0..n).map(|i| some(i).then_some(i as i32 * -65_537)),
            )),
            true,
        ),
        (
            "i16",
            Arc::new(Int16Array::from_iter(
                (0..n).map(|i| some(i).then_some(i as i16 - 150)),
            )),
            true,
        ),
        (
            "i8",
            Arc::new(Int8Array::from_iter(
                (0..n).map(|i| some(i).then_some((i % 256) as u8 as i8)),
            )),
            true,
        ),
        (
            "u8",
            Arc::new(UInt8Array::from_iter(
                (0..n).map(|i| some(i).then_some((i % 256) as u8)),
            )),
            true,
        ),
        (
            "u64",
            Arc::new(UInt64Array::from_iter(
                (0..n).map(|i| some(i).then_some(u64::MAX - i as u64)),
            )),
            true,
        ),
        (
            "f64",
            Arc::new(Float64Array::from_iter(
                (0..n).map(|i| some(i).then_some(i as f64 / 3.0 - 50.0)),
            )),
            true,
        ),
        (
            "f32",
            Arc::new(Float32Array::from_iter(
                (0..n).map(|i| some(i).then_some(i as f32 * 0.1)),
            )),
            true,
        ),
        (
            "utf8",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| some(i).then(|| text(i))),
            )),
            true,
        ),
        (
            "ascii",
            Arc::new(StringArray::from_iter(
                (0..n).map(|i| (i % 5 != 0).then(|| format!("row {i}"))),
            )),
            true,
        ),
        (
            "bool",
            Arc::new(BooleanArray::from_iter(
                (0..n).map(|i| some(i).then_some(i % 3 == 0)),
            )),
            true,
        ),
        (
            "date32",
            Arc::new(Date32Array::from_iter(
                (0..n).map(|i| some(i).then_some(i as i32 * 97 - 20_000)),
            )),
            true,
        ),
        (
            "ts_ns_utc",
            Arc::new(
                TimestampNanosecondArray::from_iter(
                    (0..n).map(|i| some(i).then_some(i as i64 * 1_000_000_007)),
                )
                .with_timezone("UTC"),
            ),
            true,
        ),
        (
            "ts_ms",
            Arc::new(TimestampMillisecondArray::from_iter(
                (0..n).map(|i| some(i).then_some(i as i64 * 86_400_123)),
            )),
            true,
        ),
        (
            "ts_s_zone",
            Arc::new(
                TimestampSecondArray::from_iter((0..n).map(|i| some(i).then_some(i as i64)))
                    .with_timezone("+05:30"),
            ),
            true,
        ),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, array, _)| array).collect(),
    )
    .unwrap();
    let plugin = common::load(probe());
    let mut session = plugin
        .transform_session("{}", StepPolicy::default())
        .unwrap();
    // Whole, sliced at odd offsets (bitmaps and offsets not starting at 0), one row, none.
    for (offset, length) in [(0, n), (13, 201), (299, 1), (5, 0)] {
        let input = batch.slice(offset, length);
        let output = session.transform(&input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(output, input, "slice {offset}+{length}");
    }
}

#[test]
fn a_python_exception_is_a_plugin_error_naming_the_plugin_and_the_line() {
    let plugin = common::load(probe());
    let batch =
        RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)])
            .unwrap();

    // `output_schema` runs `transform` on an empty table, so it raises first.
    let mut session = plugin
        .transform_session(r#"{"raise": true}"#, StepPolicy::default())
        .unwrap();
    let error = session.transform(&batch).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, .. } if kind == "internal"),
        "{text}"
    );
    assert!(text.contains("plugin `probe`"), "{text}");
    assert!(
        text.contains("ValueError: no good 0 (app.py:14, in transform); it printed: rows: 0"),
        "{text}"
    );
    // The step can go on: the next call runs (and raises) again.
    let again = session.transform(&batch).unwrap_err();
    assert!(again.to_string().contains("ValueError"), "{again}");

    let error = plugin
        .transform_session(r#"{"bad": 1}"#, StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, message }
            if kind == "invalid-config" && message == "`bad` is not a setting"),
        "{error}"
    );
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

#[test]
fn a_python_validator_reports_its_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nulls");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("pyproject.toml"), "[project]\nname = \"nulls\"\n").unwrap();
    std::fs::write(
        dir.join("weir-plugin.toml"),
        "name = \"nulls\"\nversion = \"0.1.0\"\nworld = \"validator\"\ncapabilities = []\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("app.py"),
        r#"from weir_sdk import Check, Table, Validator, export


@export
class NotNull(Validator):
    def validate(self, table: Table):
        return [
            Check.rows(f"{name}_not_null", [i for i, v in enumerate(values) if v is None], f"have a null {name}")
            for name, values in zip(table.names, table.columns)
        ]
"#,
    )
    .unwrap();
    let plugin = common::load(&build_python(&dir));
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
        (
            "name",
            Arc::new(StringArray::from(vec![Some("a"), None, None])),
        ),
    ])
    .unwrap();
    let checks = plugin
        .validate_session("{}", StepPolicy::default())
        .unwrap()
        .validate(&batch)
        .unwrap();
    assert_eq!(checks.len(), 2);
    assert!(checks[0].passed && checks[0].failing_rows.is_empty());
    assert_eq!(checks[1].name, "name_not_null");
    assert!(!checks[1].passed);
    assert_eq!(checks[1].failing_rows, vec![1, 2]);
    assert_eq!(checks[1].message, "2 rows have a null name");
}
