//! `parallel_batches`: a run puts that many batches through its plugin steps at once, each
//! batch on its own instances of the steps, and loads them in the order it read them.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::pipeline::{self, Project, SQLITE_APPEND, orders};
use common::{components, stderr, stdout};

/// `host run` of `pipeline` with `parallel_batches = n` set in it.
fn run_with(project: &Project, pipeline: &Path, n: usize) -> Output {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let (name, rest) = text.split_once('\n').unwrap();
    std::fs::write(pipeline, format!("{name}\nparallel_batches = {n}\n{rest}")).unwrap();
    project.run(pipeline, None)
}

/// `SELECT columns FROM table` as text, in the order the rows were inserted.
fn rows_in_order(db: &Path, table: &str, columns: &str) -> Vec<String> {
    let sql = format!("SELECT CAST({columns} AS TEXT) FROM {table} ORDER BY rowid");
    pipeline::query_column(db, &sql).unwrap()
}

#[test]
fn the_orders_pipeline_loads_the_same_rows_in_the_same_order_with_three_lanes() {
    let data = orders(1, 1000, 0); // 10 batches of 100
    let mut loaded = Vec::new();
    for n in [1, 3] {
        let project = Project::new();
        project.write_data("a.csv", &data);
        let file = project.pipeline("quarantine", SQLITE_APPEND);
        let out = run_with(&project, &file, n);
        assert_eq!(
            out.status.code(),
            Some(3),
            "rows quarantined\n{}",
            stderr(&out)
        );
        let rows = rows_in_order(
            &project.path("warehouse.db"),
            "orders",
            "order_id || ',' || total_usd || ',' || order_month",
        );
        let quarantined: usize = pipeline::parquet_rows(&project.path("quarantine"))
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum();
        loaded.push((rows, quarantined, stdout(&out)));
    }
    let (serial, parallel) = (&loaded[0], &loaded[1]);
    let expected = data.iter().filter(|o| o.loads()).count();
    assert_eq!(serial.0.len(), expected);
    assert_eq!(parallel.0, serial.0, "the same rows, in the order read");
    assert_eq!(parallel.1, serial.1);
    assert_eq!(parallel.1, data.iter().filter(|o| o.quarantined()).count());
    assert!(
        parallel.2.contains("rows read              1000"),
        "{}",
        parallel.2
    );
}

/// A pipeline of the hostile plugin over `attacks` (one batch of `rows` rows each, the
/// attack in every row), loading into SQLite table `t`.
fn hostile_pipeline(project: &Project, attacks: &[&str], rows: usize) -> PathBuf {
    let mut csv = "id,attack\n".to_string();
    for (batch, attack) in attacks.iter().enumerate() {
        for row in 0..rows {
            writeln!(csv, "{},{attack}", batch * rows + row).unwrap();
        }
    }
    std::fs::write(project.path("data/in.csv"), csv).unwrap();
    let file = project.path("pipeline.toml");
    let text = format!(
        r#"name = "lanes"

[source]
kind = "files"
path = "data/*.csv"
batch_size = {rows}

[[steps]]
kind = "transform"
plugin = "{hostile}"
grants = {{ clock = true, random = true }}  # what its `snoop` asks for

[[sinks]]
kind = "sqlite"
name = "db"
path = "out.db"
table = "t"
"#,
        hostile = components().hostile.display(),
    );
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn each_lane_has_its_own_instances() {
    let project = Project::new();
    let file = hostile_pipeline(&project, &["count"; 9], 4);
    let out = run_with(&project, &file, 3);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = project.host(&["plan", file.to_str().unwrap()]);
    assert!(
        stdout(&plan).contains("lanes    3: the steps take that many batches at once"),
        "{}",
        stdout(&plan)
    );
    let served = rows_in_order(&project.path("out.db"), "t", "id || ' ' || attack");
    assert_eq!(served.len(), 36, "{served:?}");
    // Each batch's rows say how many batches its instance has served, this one included.
    // The lanes take batches as they come free, so which lane takes which varies; but each
    // instance counts its own 1, 2, 3, ...: as many batches say 1 as instances served any
    // (one instance for all would count 1 to 9), and no more say k + 1 than k.
    let mut served_as = [0; 10];
    for (batch, rows) in served.chunks(4).enumerate() {
        let counts: Vec<&str> = rows.iter().map(|r| r.split_once(' ').unwrap().1).collect();
        assert!(counts.iter().all(|c| *c == counts[0]), "{rows:?}");
        let (ids, count) = (rows.iter().map(|r| r.split_once(' ').unwrap().0), counts[0]);
        assert!(
            ids.eq((batch * 4..batch * 4 + 4).map(|i| i.to_string())),
            "{rows:?}"
        );
        let n: usize = count.strip_prefix("count:").unwrap().parse().unwrap();
        served_as[n] += 1;
    }
    assert!((2..=3).contains(&served_as[1]), "{served_as:?}: {served:?}");
    assert!(
        served_as[1..].windows(2).all(|w| w[1] <= w[0]),
        "{served_as:?}"
    );
}

#[test]
fn a_failing_batch_is_named_by_its_number_in_the_run_and_nothing_is_loaded() {
    let project = Project::new();
    let mut attacks = ["none"; 8];
    attacks[5] = "trap";
    let file = hostile_pipeline(&project, &attacks, 4);
    let out = run_with(&project, &file, 3);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("failed on batch 5: it trapped"),
        "batch 5 of the run, not of its lane: {err}"
    );
    // No database, no table (the query fails), or an empty one.
    let db = project.path("out.db");
    let loaded = db.exists()
        && pipeline::query_column::<i64>(&db, "SELECT id FROM t").is_ok_and(|ids| !ids.is_empty());
    assert!(!loaded, "a failed run loads nothing");
}

#[test]
fn parallel_batches_out_of_range_names_the_key() {
    for n in [0, 65] {
        let project = Project::new();
        let file = hostile_pipeline(&project, &["none"], 1);
        let out = run_with(&project, &file, n);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("pipeline.toml:2: parallel_batches: must be from 1 to 64"),
            "{err}"
        );
    }
}
