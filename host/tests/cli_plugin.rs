//! `host plugin build` and `host plugin test`, through the binary.

mod common;

use std::path::Path;
use std::process::Output;

use common::{stderr, stdout};

fn host(args: &[&str]) -> Output {
    common::host().args(args).output().unwrap()
}

#[test]
fn plugin_build_prints_the_component_and_its_sha256() {
    let out = host(&["plugin", "build", "plugins/orders-validator"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let path = lines.next().unwrap();
    assert!(
        path.ends_with("wasm32-wasip2/plugin/orders_validator.wasm"),
        "{text}"
    );
    let digest = lines.next().unwrap().strip_prefix("sha256 ").unwrap();
    let bytes = std::fs::read(path).unwrap();
    use sha2::Digest;
    assert_eq!(digest, hex::encode(sha2::Sha256::digest(&bytes)));
}

#[test]
fn plugin_build_of_a_directory_without_a_plugin_project_says_so() {
    let out = host(&["plugin", "build", "pipelines"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("pipelines is not a plugin project: it has no Cargo.toml (Rust), package.json (JavaScript) or pyproject.toml (Python)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugin_test_runs_a_transform_over_a_csv_and_writes_parquet() {
    let component = common::components()
        .orders_transform
        .to_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.parquet");
    let out = host(&[
        "plugin",
        "test",
        &component,
        "--input",
        "pipelines/data/orders/2024-01.csv",
        "--output",
        output.to_str().unwrap(),
        "--batch-size",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // 10 rows: null customer, negative, zero amount dropped -> 7 (bad date kept as null).
    assert!(text.contains("10 rows in, 7 rows out, 3 batches"), "{text}");
    assert!(text.contains("| 2024-01 "), "{text}");

    let file = std::fs::File::open(&output).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 7);
}

#[test]
fn plugin_test_of_a_crate_directory_builds_it_first() {
    let out = host(&[
        "plugin",
        "test",
        "plugins/orders-transform",
        "--input",
        "pipelines/data/orders/2024-02.csv",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("5 rows in, 5 rows out"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn plugin_test_of_a_validator_reports_checks_and_exits_2_on_failure() {
    let transformed = tempfile::tempdir().unwrap();
    let output = transformed.path().join("t.parquet");
    let component = common::components()
        .orders_transform
        .to_str()
        .unwrap()
        .to_string();
    let out = host(&[
        "plugin",
        "test",
        &component,
        "--input",
        "pipelines/data/orders/2024-01.csv",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let validator = common::components()
        .orders_validator
        .to_str()
        .unwrap()
        .to_string();
    let out = host(&[
        "plugin",
        "test",
        &validator,
        "--input",
        output.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("order_id_unique"))
        .unwrap_or_else(|| panic!("{text}"));
    // Order 1005 appears twice; after the transform the repeat is the 6th row.
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &fields[..4],
        ["order_id_unique", "FAIL", "1", "6"],
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("customer_id_not_null") && l.contains("pass")),
        "{text}"
    );

    // The validator needs the transform's `total_usd`: without it, a clear error.
    let out = host(&[
        "plugin",
        "test",
        &validator,
        "--input",
        "pipelines/data/orders/2024-02.csv",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no total_usd column: an error, not a validation failure"
    );
    assert!(
        stderr(&out).contains("input has no `total_usd` column"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugin_test_reports_a_plugin_failure_with_exit_code_1() {
    let component = common::components().hostile.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("attack.csv");
    std::fs::write(&input, "id,attack\n1,loop\n").unwrap();
    let out = host(&[
        "plugin",
        "test",
        &component,
        "--input",
        input.to_str().unwrap(),
        "--timeout-ms",
        "200",
        // It declares the clock (it reads it in another attack): it must be granted.
        "--grant-clock",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("plugin `hostile` (sha256 ")
            && err.contains("failed on batch 0: it ran past its time budget of 200ms"),
        "{err}"
    );
    assert!(Path::new(&component).exists());
}
