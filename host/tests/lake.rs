//! Lake zones from the project file: a raw copy of each extracted load, a curated dataset,
//! exactly once through a crash, and `host lake gc` retention.

mod common;

use arrow::array::AsArray;
use common::pipeline::*;
use common::{stderr, stdout};

const CURATED: &str = r#"
[[sinks]]
kind = "parquet"
name = "lake"
zone = "curated"
path = "orders"
partition_by = "order_month"
"#;

/// A project with a `weir.toml` and a pipeline that keeps raw copies.
fn lake_project() -> (Project, std::path::PathBuf) {
    let project = Project::new();
    std::fs::write(
        project.path("weir.toml"),
        "[lake]\nraw = \"lake/raw\"\ncurated = \"lake/curated\"\n",
    )
    .unwrap();
    let pipeline = project.pipeline("quarantine", CURATED);
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replacen("on_fail", "keep_raw = true\non_fail", 1),
    )
    .unwrap();
    (project, pipeline)
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn raw_ids(project: &Project) -> std::collections::BTreeMap<i64, usize> {
    parquet_ids(&project.path("lake/raw/orders"))
}

#[test]
fn raw_copies_hold_every_extracted_row_before_the_steps() {
    let (project, pipeline) = lake_project();
    let generated = orders(1, 300, 0);
    project.write_data("a.csv", &generated);
    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // Every row read, dropped and quarantined ones included, as extracted (text dates).
    assert_eq!(raw_ids(&project), once(generated.iter().map(|o| o.id)));
    let raw = parquet_rows(&project.path("lake/raw/orders"));
    assert!(
        raw.iter()
            .all(|(partition, _)| *partition == format!("load_date={}", today()))
    );
    let dates: Vec<String> = raw
        .iter()
        .flat_map(|(_, b)| {
            let dates = b.column_by_name("order_date").unwrap().as_string::<i32>();
            dates
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        dates.iter().any(|d| d == "yesterday"),
        "raw keeps unparsed values"
    );
    // The curated dataset lives in its zone.
    let loaded = generated.iter().filter(|o| o.loads()).map(|o| o.id);
    assert_eq!(
        parquet_ids(&project.path("lake/curated/orders")),
        once(loaded)
    );

    // Nothing new: no new raw copy.
    let out = project.run(&pipeline, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(raw_ids(&project).len(), 300);
    // A new file: only its rows are kept raw.
    project.write_data("b.csv", &orders(301, 20, 400));
    project.run(&pipeline, None);
    assert_eq!(raw_ids(&project), once(1..=320));
}

#[test]
fn a_crash_after_the_first_commit_keeps_each_raw_row_once() {
    let (project, pipeline) = lake_project();
    project.write_data("a.csv", &orders(1, 200, 0));
    for fault in ["after_first_sink_commit", "after_sink_commit"] {
        let out = project.run(&pipeline, Some(fault));
        assert!(!out.status.success(), "{fault} stops the run");
    }
    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(raw_ids(&project), once(1..=200));
}

#[test]
fn lake_gc_deletes_old_partitions_and_their_markers_after_a_dry_run() {
    let (project, pipeline) = lake_project();
    project.write_data("a.csv", &orders(1, 50, 0));
    project.run(&pipeline, None);
    // An old load: a copy of today's file under an old date, with its marker.
    let raw = project.path("lake/raw/orders");
    let today_dir = raw.join(format!("load_date={}", today()));
    let file = std::fs::read_dir(&today_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let old_dir = raw.join("load_date=2020-01-01");
    std::fs::create_dir_all(&old_dir).unwrap();
    std::fs::copy(&file, old_dir.join("part-old-0.parquet")).unwrap();
    std::fs::write(
        raw.join("_weir_loads/old.json"),
        r#"{"load_id": "old", "objects": [{"path": "load_date=2020-01-01/part-old-0.parquet", "rows": 50}]}"#,
    )
    .unwrap();
    let gc = |dry: bool| {
        let mut host = common::host();
        host.args([
            "lake",
            "gc",
            "--zone",
            "raw",
            "--older-than",
            "90d",
            "--project",
        ])
        .arg(project.path(""));
        if dry {
            host.arg("--dry-run");
        }
        host.output().unwrap()
    };

    let out = gc(true);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected = [
        "would delete raw/orders/load_date=2020-01-01/part-old-0.parquet (load_date 2020-01-01)",
        "would delete raw/orders/_weir_loads/old.json (its files are deleted)",
    ];
    for line in expected {
        assert!(stdout(&out).contains(line), "{}", stdout(&out));
    }
    assert!(
        stdout(&out).contains("would delete 2 objects"),
        "{}",
        stdout(&out)
    );
    assert!(
        old_dir.join("part-old-0.parquet").exists(),
        "a dry run deletes nothing"
    );

    let out = gc(false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("deleted 2 objects"),
        "{}",
        stdout(&out)
    );
    assert!(!old_dir.join("part-old-0.parquet").exists());
    assert!(!raw.join("_weir_loads/old.json").exists());
    // Today's load and its marker stay.
    assert_eq!(raw_ids(&project), once(1..=50));
    let markers = std::fs::read_dir(raw.join("_weir_loads")).unwrap().count();
    assert_eq!(markers, 1);
}

#[test]
fn keep_raw_without_a_raw_zone_is_a_config_error() {
    let project = Project::new();
    let pipeline = project.pipeline("abort", SQLITE_APPEND);
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(
        &pipeline,
        text.replacen("on_fail", "keep_raw = true\non_fail", 1),
    )
    .unwrap();
    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(1));
    let error = stderr(&out);
    assert!(
        error.contains("pipeline.toml:2: keep_raw: the `raw` zone needs a project file"),
        "{error}"
    );
}
