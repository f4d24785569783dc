//! The Python SDK itself: its CPython codec tests, every supported Arrow type through a
//! plugin and back, exceptions as plugin errors naming the line, and validators. (The
//! orders plugin, the template and builds are in `plugin_python.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::{Field, Schema};
use weir::plugin::{Cause, StepPolicy};

use common::python::{build_python, require_python};

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
