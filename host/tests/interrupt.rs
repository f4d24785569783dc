//! `host run` stopped by SIGINT (Ctrl-C) or SIGTERM in the middle of a load: it stops with
//! exit code 130, no sink holds any of the load (nor its staged files), the history records
//! the run as interrupted, and the next run loads every row exactly once. With several pipelines in
//! one `host run`, the signal stops them all.

mod common;

use std::path::PathBuf;

use common::pipeline::*;
use common::{stderr, stdout};

/// Rows per Parquet file: small, so that finished files are staged from the first batch on.
const ROWS_PER_FILE: usize = 20;

/// A project of 1,000 orders (10 batches) into SQLite and Parquet, and its pipeline file.
fn project() -> (Project, PathBuf) {
    let project = Project::new();
    project.write_data("a.csv", &orders(1, 1000, 0));
    let parquet = format!("{PARQUET_BY_MONTH}rows_per_file = {ROWS_PER_FILE}\n");
    let pipeline = project.pipeline("quarantine", &format!("{SQLITE_APPEND}{parquet}"));
    (project, pipeline)
}

/// Run the pipelines in one `host run`, held as a third batch goes to the sinks (two are
/// written, uncommitted), and send `signal` then; the run must stop with exit code 130.
fn interrupt(pipelines: &[&std::path::Path], signal: libc::c_int, name: &str) {
    let (out, _) = common::run_paused(pipelines, "sink_write@3", |pid| {
        // SAFETY: a plain kill(2) of the child this test started.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    });
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let reported = stderr(&out)
        .matches(&format!("interrupted by {name}"))
        .count();
    assert_eq!(reported, pipelines.len(), "{}", stderr(&out));
}

/// Nothing of the interrupted load landed, the history says so, and a rerun loads it all once.
fn assert_stopped_cleanly_then_completed(project: &Project, pipeline: &std::path::Path) {
    assert!(sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty());
    assert!(parquet_ids(&project.path("lake")).is_empty());
    // The run stopped itself and aborted its loads: the staged Parquet files are gone too.
    let staged = glob::glob(&format!(
        "{}/_weir_staging/**/*",
        project.path("lake").display()
    ));
    assert_eq!(staged.unwrap().count(), 0);
    let runs = stdout(&project.host(&["runs", pipeline.to_str().unwrap()]));
    // Columns: run, status, read. The run read some rows before it stopped.
    let interrupted = runs.lines().find(|l| l.contains("Interrupted"));
    let read = interrupted.and_then(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok());
    assert!(read.is_some_and(|r| r > 0), "{runs}");

    let out = project.run(pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let expected = once(
        orders(1, 1000, 0)
            .iter()
            .filter(|o| o.loads())
            .map(|o| o.id),
    );
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected);
    assert_eq!(parquet_ids(&project.path("lake")), expected);
    // `rows_per_file` capped every file (each one read back as one batch).
    let files = parquet_rows(&project.path("lake"));
    assert!(files.len() >= expected.len() / ROWS_PER_FILE);
    assert!(
        files
            .iter()
            .all(|(_, rows)| rows.num_rows() <= ROWS_PER_FILE)
    );
}

#[test]
fn ctrl_c_mid_load_stops_the_run_with_nothing_half_loaded() {
    let (project, pipeline) = project();
    interrupt(&[&pipeline], libc::SIGINT, "SIGINT");
    assert_stopped_cleanly_then_completed(&project, &pipeline);
}

#[test]
fn sigterm_mid_load_stops_the_run_with_nothing_half_loaded() {
    let (project, pipeline) = project();
    interrupt(&[&pipeline], libc::SIGTERM, "SIGTERM");
    assert_stopped_cleanly_then_completed(&project, &pipeline);
}

#[test]
fn ctrl_c_stops_every_pipeline_of_a_run() {
    let (first, first_pipeline) = project();
    let (second, second_pipeline) = project();
    interrupt(&[&first_pipeline, &second_pipeline], libc::SIGINT, "SIGINT");
    assert_stopped_cleanly_then_completed(&first, &first_pipeline);
    assert_stopped_cleanly_then_completed(&second, &second_pipeline);
}
