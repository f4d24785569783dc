//! The disk under the sled state read-only (a read-only bind mount over the state directory):
//! the run must fail clearly, naming the directory, with nothing of the load in the warehouse
//! and the watermark unchanged; once the disk is writable again, a rerun ends with every row
//! exactly once. Writes its row of RELIABILITY.md's Faults table.
//!
//! A state write failing later, between the sink commit and the state commit, leaves what a
//! kill there leaves; `chaos.rs` kills runs at that point (`after_sink_commit`).
//!
//! Mounting needs root (CAP_SYS_ADMIN), as the CI machines have; without it the test fails
//! saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{reliability, stderr};

const HEADER: &str = "order_id,amount,updated_at\n";

/// A mount, undone when dropped (lazily, so a file still open cannot keep it).
struct Mount(PathBuf);

impl Mount {
    /// `dir` itself, read-only.
    fn read_only(dir: &Path) -> Mount {
        mount(&["--bind", path(dir), path(dir)]);
        let mount = Mount(dir.to_path_buf());
        self::mount(&["-o", "remount,ro,bind", path(dir)]);
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str]) {
    let out = Command::new("mount").args(args).output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "mount {}: {:?}; this test mounts file systems and needs root (CAP_SYS_ADMIN)",
        args.join(" "),
        out.map(|o| common::stderr(&o))
    );
}

fn path(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// A plugin-free pipeline (files in, SQLite out) with its state in `state/`.
struct Project {
    dir: tempfile::TempDir,
    pipeline: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        std::fs::write(
            &pipeline,
            r#"name = "disk"

[source]
kind = "files"
path = "data/*.csv"
incremental = { cursor = "updated_at" }
schema = { order_id = "int64", updated_at = "timestamp" }

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"

[state]
path = "state"
"#,
        )
        .unwrap();
        Project { dir, pipeline }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A file of orders `ids`, updated a second apart from `ids.start`.
    fn write(&self, name: &str, ids: std::ops::Range<i64>) {
        let rows: String = ids
            .map(|i| {
                format!(
                    "{i},{i}.5,2024-03-01T00:{:02}:{:02}Z\n",
                    i / 60 % 60,
                    i % 60
                )
            })
            .collect();
        std::fs::write(
            self.dir.path().join("data").join(name),
            HEADER.to_string() + &rows,
        )
        .unwrap();
    }

    fn run(&self) -> Output {
        common::run(&self.pipeline)
    }

    fn watermark(&self) -> String {
        common::watermark(&self.pipeline)
    }

    /// Order ids in the warehouse, each as often as it is there.
    fn ids(&self) -> Vec<i64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let db = self.dir.path().join("warehouse.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let rows: Vec<(i64,)> = sqlx::query_as("SELECT order_id FROM orders ORDER BY 1")
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.into_iter().map(|(id,)| id).collect()
        })
    }

    /// The last line of stderr, the temp dir shown as `TMP`.
    fn error(&self, out: &Output) -> String {
        let text = stderr(out);
        let last = text.lines().last().unwrap_or_default();
        last.replace(&self.dir.path().display().to_string(), "TMP")
    }
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
}

#[test]
fn a_read_only_state_disk_fails_the_run_before_anything_loads() {
    let project = Project::new();
    project.write("a.csv", 1..101);
    ok(&project.run());
    let before = project.watermark();
    project.write("b.csv", 101..201);

    let read_only = Mount::read_only(&project.state_dir());
    let started = Instant::now();
    let out = project.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        project.error(&out),
        "error: cannot write the state directory TMP/state: Read-only file system (os error 30); make it writable by this user, or set \
         `state.path` in the pipeline file to a writable directory"
    );
    assert_eq!(project.ids(), (1..101).collect::<Vec<_>>());
    drop(read_only);
    assert_eq!(project.watermark(), before);

    ok(&project.run());
    assert_eq!(project.ids(), (1..201).collect::<Vec<_>>());
    report(
        "state-read-only",
        "sled state directory on a read-only mount",
        "the run fails at once (not retried), naming the directory; nothing loaded; rerun \
         once writable",
        took,
    );
}

fn report(name: &str, what: &str, outcome: &str, took: Duration) {
    reliability::write_section(
        &format!("faults:{name}"),
        &[format!(
            "| {what} | {outcome} | 1 | 0 | 0 | failed run: {:.2} s |",
            took.as_secs_f64()
        )],
    );
}
