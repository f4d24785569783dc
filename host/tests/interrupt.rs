//! `host run` stopped by SIGINT (Ctrl-C) or SIGTERM in the middle of a load: it stops with
//! exit code 130, no sink holds any of the load, the history records the run as
//! interrupted, and the next run loads every row exactly once.

mod common;

use common::pipeline::*;
use common::{stderr, stdout};

fn stopped_mid_load_by(signal: libc::c_int, name: &str) {
    let project = Project::new();
    let orders = orders(1, 1000, 0);
    project.write_data("a.csv", &orders);
    let pipeline = project.pipeline("quarantine", &format!("{SQLITE_APPEND}{PARQUET_BY_MONTH}"));
    // Held as the third batch goes to the sinks: two are written, uncommitted.
    let (out, _) = common::run_paused(&pipeline, "sink_write@3", |pid| {
        // SAFETY: a plain kill(2) of the child this test started.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    });
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("interrupted by {name}")),
        "{}",
        stderr(&out)
    );
    assert!(sqlite_ids_or_empty(&project.path("warehouse.db")).is_empty());
    assert!(parquet_ids(&project.path("lake")).is_empty());
    let runs = project.host(&["runs", pipeline.to_str().unwrap()]);
    assert!(stdout(&runs).contains("Interrupted"), "{}", stdout(&runs));

    let out = project.run(&pipeline, None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let expected = once(orders.iter().filter(|o| o.loads()).map(|o| o.id));
    assert_eq!(sqlite_ids(&project.path("warehouse.db")), expected);
    assert_eq!(parquet_ids(&project.path("lake")), expected);
}

#[test]
fn ctrl_c_mid_load_stops_the_run_with_nothing_half_loaded() {
    stopped_mid_load_by(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_mid_load_stops_the_run_with_nothing_half_loaded() {
    stopped_mid_load_by(libc::SIGTERM, "SIGTERM");
}
