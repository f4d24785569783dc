//! JavaScript plugins, built for real (npm toolchain, esbuild, componentize-js) and run in
//! wasmtime: the JS orders transform against the Rust one, the `--lang js` template through
//! the CLI, and a JS plugin that throws.
//!
//! Needs Node.js and npm on PATH (the build says how to install them if they are missing);
//! the toolchain is installed once into the user's cache (or `$WEIR_TOOLCHAINS`).

mod common;

use common::xorshift::Gen;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use weir::plugin::build::{BuildOptions, build};
use weir::plugin::{Cause, StepPolicy};

fn quiet() -> BuildOptions {
    BuildOptions {
        quiet: true,
        ..Default::default()
    }
}

/// The JS orders plugin, built once per test binary.
fn orders_js() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = common::workspace_root().join("plugins/orders-transform-js");
        build(&dir, &quiet()).unwrap_or_else(|e| panic!("{e}")).path
    })
}

/// An `order_date` text: mostly the shapes order exports use, and many that are almost
/// dates (the JS parser must agree with arrow-rs's on every one of them).
fn date_text(g: &mut Gen) -> Option<String> {
    let years = [
        "2023", "2024", "2025", "1970", "1969", "0000", "1677", "1678", "2261", "2262", "9999",
    ];
    let (y, m, d) = (g.pick(&years), 1 + g.below(13), 1 + g.below(31));
    let (hh, mm, ss) = (g.below(25), g.below(61), g.below(62));
    let fraction = g.pick(&[
        "",
        "",
        ".5",
        ".123",
        ".123456",
        ".1234567",
        ".123456789",
        ".1234567891234",
        ".",
    ]);
    let zone = g.pick(&[
        "", "", "Z", "z", "+05:30", "-08:00", "+0530", "-08", "+24:00", "+05:99", " +01:00", "UTC",
        " Z", "x",
    ]);
    let sep = g.pick(&["T", "T", " ", "t", "_"]);
    Some(match g.below(14) {
        0 => return None,
        1 => "not a date".into(),
        2 => format!("{y}-13-{d:02}"),
        3 => "2023-02-29".into(),
        4 => "2024-02-29T23:59:60.5-23:59".into(),
        5 => format!("{y}-{m:02}-{d:02}"),
        6 => format!("{y}-{m:02}-{d:02}{sep}{hh:02}{mm:02}{ss:02}{zone}"),
        7 => format!("{y}-{m:02}-01T00:30:00+02:00"), // the previous month in UTC
        _ => format!("{y}-{m:02}-{d:02}{sep}{hh:02}:{mm:02}:{ss:02}{fraction}{zone}"),
    })
}

/// A batch of generated orders with nulls, negatives, zero rates and bad dates, plus
/// columns the transform passes through (text, booleans, 32-bit integers).
fn orders(rows: usize, seed: u64) -> RecordBatch {
    let mut g = Gen(seed);
    let mut columns: (Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>, Vec<_>) = Default::default();
    for i in 0..rows {
        columns.0.push(i as i64);
        columns
            .1
            .push((g.below(9) != 0).then(|| g.below(5000) as i64));
        columns.2.push(match g.below(15) {
            0 => None,
            1 => Some(0.0),
            2..=3 => Some(-(g.below(100_000) as f64) / 100.0),
            _ => Some(g.below(100_000) as f64 / 100.0),
        });
        columns
            .3
            .push([1.0, 0.5, 1.25, 0.0, 108.3][g.below(5) as usize]);
        columns.4.push(date_text(&mut g));
        columns
            .5
            .push((g.below(4) != 0).then(|| format!("note {}", g.below(100))));
        columns.6.push((g.below(3) != 0).then(|| g.below(2) == 0));
    }
    let qty: Int32Array = (0..rows as i32)
        .map(|i| (i % 7 != 0).then_some(i))
        .collect();
    let schema = Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("exchange_rate", DataType::Float64, false),
        Field::new("order_date", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("gift", DataType::Boolean, true),
        Field::new("qty", DataType::Int32, true),
    ]);
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(columns.0)),
        Arc::new(Int64Array::from(columns.1)),
        Arc::new(Float64Array::from(columns.2)),
        Arc::new(Float64Array::from(columns.3)),
        Arc::new(StringArray::from(columns.4)),
        Arc::new(StringArray::from(columns.5)),
        Arc::new(BooleanArray::from(columns.6)),
        Arc::new(qty),
    ];
    RecordBatch::try_new(Arc::new(schema), arrays).unwrap()
}

/// `batch` with `order_date` replaced by `dates`.
fn with_dates(batch: &RecordBatch, dates: ArrayRef) -> RecordBatch {
    let at = batch.schema().index_of("order_date").unwrap();
    let mut fields = batch.schema().fields().to_vec();
    fields[at] = Arc::new(Field::new("order_date", dates.data_type().clone(), true));
    let mut columns = batch.columns().to_vec();
    columns[at] = dates;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[test]
fn js_orders_transform_gives_exactly_the_rust_plugins_batches() {
    let rust = common::load(&common::components().orders_transform);
    let js = common::load(orders_js());
    let mut rust = rust.transform_session("{}", StepPolicy::default()).unwrap();
    let mut js = js.transform_session("{}", StepPolicy::default()).unwrap();

    let mut batches: Vec<RecordBatch> = (0..6).map(|s| orders(8192, 0x5eed + s)).collect();
    batches.push(orders(0, 1)); // empty
    // Dates that arrive as timestamps or dates rather than text.
    let n = 2000;
    let base = orders(n, 77);
    let millis: TimestampMillisecondArray = (0..n as i64)
        .map(|i| (i % 11 != 0).then_some(1_700_000_000_000 + i * 37_000_123 - 3_000_000_000_000))
        .collect();
    batches.push(with_dates(&base, Arc::new(millis)));
    let days: Date32Array = (0..n as i32)
        .map(|i| (i % 13 != 0).then_some(i * 17 - 20_000))
        .collect();
    batches.push(with_dates(&base, Arc::new(days)));

    let mut kept = 0;
    let mut null_dates = 0;
    for batch in &batches {
        let want = rust.transform(batch).unwrap();
        let got = js.transform(batch).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got.schema(), want.schema());
        for (i, (g, w)) in got.columns().iter().zip(want.columns()).enumerate() {
            assert_eq!(g, w, "column {}", want.schema().field(i).name());
        }
        kept += want.num_rows();
        null_dates += want.column_by_name("order_date").unwrap().null_count();
    }
    // The data exercised every path.
    assert!(
        kept > 10_000 && null_dates > 1000,
        "{kept} rows, {null_dates} null dates"
    );
}

#[test]
fn js_bad_dates_fail_like_rust_and_bad_settings_are_refused() {
    let batch = orders(500, 7);
    let rust = common::load(&common::components().orders_transform);
    let js = common::load(orders_js());
    let config = r#"{"bad_dates": "fail"}"#;
    let want = rust
        .transform_session(config, StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    let got = js
        .transform_session(config, StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    assert_eq!(got.plugin, "orders-transform-js");
    assert!(
        matches!(&got.cause, Cause::Returned { kind, .. } if kind == "invalid-input"),
        "{got}"
    );
    assert_eq!(got.cause.to_string(), want.cause.to_string());

    let error = js
        .transform_session(r#"{"bad_dates": "maybe"}"#, StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, message } if kind == "invalid-config" && message.contains("maybe")),
        "{error}"
    );
}

#[test]
fn template_builds_and_passes_its_own_test_through_the_cli() {
    let temp = tempfile::tempdir().unwrap();
    common::template_passes_its_own_test(temp.path(), "x", "js");
    assert!(temp.path().join("x/package.json").is_file());
}

/// A JS plugin project in a temporary directory.
fn js_project(name: &str, source: &str) -> tempfile::TempDir {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/index.js"), source).unwrap();
    std::fs::write(dir.join("package.json"), r#"{"type": "module"}"#).unwrap();
    std::fs::write(
        dir.join("weir-plugin.toml"),
        format!("name = \"{name}\"\nversion = \"0.1.0\"\nworld = \"transformer\"\n"),
    )
    .unwrap();
    temp
}

#[test]
fn a_js_plugin_that_throws_gives_a_plugin_error_naming_it() {
    let project = js_project(
        "thrower",
        r#"
import { transform, invalidInput } from "weir-sdk";
let mode;
export default transform({
  init(config) { mode = config.mode; if (mode === "string") throw "no settings today"; },
  outputSchema(schema) { return schema; },
  transform(table) {
    if (mode === "input") throw invalidInput("column `x` is missing");
    if (table.numRows > 0) table.nothing.here(); // a TypeError
    return table;
  },
});
"#,
    );
    let built = build(project.path(), &quiet()).unwrap_or_else(|e| panic!("{e}"));
    let plugin = common::load(&built.path);
    let batch = orders(10, 3);

    let error = plugin
        .transform_session("{}", StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    assert_eq!(error.plugin, "thrower");
    assert_eq!(error.batch, Some(0));
    assert!(
        matches!(&error.cause, Cause::Returned { kind, message } if kind == "internal" && message.starts_with("TypeError")),
        "{error}"
    );
    assert!(error.to_string().contains("plugin `thrower`"), "{error}");

    let error = plugin
        .transform_session(r#"{"mode": "input"}"#, StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, message } if kind == "invalid-input" && message == "column `x` is missing"),
        "{error}"
    );

    // A string thrown from init: an error too, not a trap.
    let error = plugin
        .transform_session(r#"{"mode": "string"}"#, StepPolicy::default())
        .unwrap()
        .transform(&batch)
        .unwrap_err();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, message } if kind == "internal" && message == "no settings today"),
        "{error}"
    );
}

#[test]
fn a_js_entry_without_a_plugin_export_fails_the_build_saying_why() {
    let project = js_project("bare", "export default 42;\n");
    let error = build(project.path(), &quiet()).unwrap_err().to_string();
    assert!(error.contains("export default transform"), "{error}");
}
