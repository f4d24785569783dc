//! Exactly once, end to end through the `host` binary: a load replayed is a no-op in every
//! load mode, and a run killed at each commit point (an injected `abort`) is completed by the
//! next run with every row once in every sink.

mod common;

use std::collections::BTreeMap;

use common::pipeline::*;
use common::{stderr, stdout};

/// Run, forget the state, run again: the same load id, which every sink already holds.
fn assert_replay_is_a_no_op(sinks: &str, check: impl Fn(&Project)) {
    let project = Project::new();
    project.write_data("a.csv", &orders(1, 300, 0));
    let pipeline = project.pipeline("quarantine", sinks);
    let out = project.run(&pipeline, None);
    assert!(out.status.code() == Some(3), "{}", stderr(&out));
    check(&project);
    let reset = project.host(&["state", "reset", pipeline.to_str().unwrap()]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let out = project.run(&pipeline, None);
    assert!(out.status.code() == Some(3), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(already loaded: replay skipped)"),
        "{}",
        stdout(&out)
    );
    check(&project);
}

fn expected_once() -> BTreeMap<i64, usize> {
    once(orders(1, 300, 0).iter().filter(|o| o.loads()).map(|o| o.id))
}

#[test]
fn append_replayed_leaves_the_sinks_unchanged() {
    assert_replay_is_a_no_op(&format!("{SQLITE_APPEND}{PARQUET_BY_MONTH}"), |p| {
        assert_eq!(sqlite_ids(&p.path("warehouse.db")), expected_once());
        assert_eq!(parquet_ids(&p.path("lake")), expected_once());
    });
}

#[test]
fn replace_partition_replayed_leaves_the_sinks_unchanged() {
    let sinks = r#"
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"
mode = "replace_partition"
partition_by = "order_month"

[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
partition_by = "order_month"
mode = "replace_partition"
"#;
    assert_replay_is_a_no_op(sinks, |p| {
        assert_eq!(sqlite_ids(&p.path("warehouse.db")), expected_once());
        assert_eq!(parquet_ids(&p.path("lake")), expected_once());
    });
}

#[test]
fn merge_replayed_leaves_the_sink_unchanged() {
    let sinks = r#"
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"
mode = "merge"
keys = ["order_id"]
"#;
    assert_replay_is_a_no_op(sinks, |p| {
        assert_eq!(sqlite_ids(&p.path("warehouse.db")), expected_once())
    });
}

/// Kill the run at `fault`, then run again: every row exactly once in every sink.
fn assert_exactly_once_after_crash(fault: &str) {
    let project = Project::new();
    let data = orders(1, 300, 0);
    project.write_data("a.csv", &data);
    let pipeline = project.pipeline("quarantine", &format!("{SQLITE_APPEND}{PARQUET_BY_MONTH}"));

    let crashed = project.run(&pipeline, Some(fault));
    assert_eq!(
        crashed.status.code(),
        None,
        "killed by the injected fault\n{}",
        stderr(&crashed)
    );
    assert!(
        stderr(&crashed).contains(&format!("injected fault at {fault}")),
        "{}",
        stderr(&crashed)
    );

    let out = project.run(&pipeline, None);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let expected = once(data.iter().filter(|o| o.loads()).map(|o| o.id));
    assert_eq!(
        sqlite_ids(&project.path("warehouse.db")),
        expected,
        "after {fault}"
    );
    assert_eq!(
        parquet_ids(&project.path("lake")),
        expected,
        "after {fault}"
    );
    let quarantined: usize = parquet_rows(&project.path("quarantine"))
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(quarantined, data.iter().filter(|o| o.quarantined()).count());

    let again = project.run(&pipeline, None);
    assert!(
        stdout(&again).contains("nothing new to load"),
        "the watermark moved on: {}",
        stdout(&again)
    );
}

#[test]
fn a_crash_before_the_sink_commits_loses_nothing() {
    assert_exactly_once_after_crash("before_sink_commit");
}

#[test]
fn a_crash_between_two_sink_commits_duplicates_nothing() {
    assert_exactly_once_after_crash("after_first_sink_commit");
}

#[test]
fn a_crash_after_the_sink_commits_before_the_state_duplicates_nothing() {
    assert_exactly_once_after_crash("after_sink_commit");
}

/// A load's Parquet files are finished (last row group and footer written) before any sink
/// commits, beside the other sinks' writing: killed at `before_sink_commit`, the staging
/// area already holds every row of the load in readable files.
#[test]
fn parquet_files_are_finished_before_any_sink_commits() {
    let project = Project::new();
    let data = orders(1, 300, 0);
    project.write_data("a.csv", &data);
    let pipeline = project.pipeline("quarantine", &format!("{SQLITE_APPEND}{PARQUET_BY_MONTH}"));
    let crashed = project.run(&pipeline, Some("before_sink_commit"));
    assert_eq!(crashed.status.code(), None, "{}", stderr(&crashed));
    let expected = once(data.iter().filter(|o| o.loads()).map(|o| o.id));
    assert_eq!(parquet_ids(&project.path("lake/_weir_staging")), expected);
    assert!(
        parquet_ids(&project.path("lake")).is_empty(),
        "nothing committed yet"
    );
}
