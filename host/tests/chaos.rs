//! The crash harness: a real pipeline runs as a child `host` process and is killed — at an
//! injected fault point (`WEIR_FAULT=<point>@<n>`: spread over every phase by construction)
//! or by SIGKILL after a random delay — then rerun to completion, and the sink is compared
//! with what the source files say it must hold. Every sink (SQLite and local Parquet,
//! Postgres, Parquet on S3) in every load mode it supports.
//!
//! `WEIR_CHAOS_KILLS` sets the kills per sink (default 50; `just chaos` runs 500). Each sink's
//! figures are written into RELIABILITY.md, between its markers, by the run itself.

mod common;

use common::xorshift::Gen as Rng;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::postgres::PgServer;
use common::s3::Moto;

/// Where an injected fault may stop a run, in the order a run reaches them.
const POINTS: &[&str] = &[
    "extract",
    "plugin",
    "sink_write",
    "before_sink_commit",
    "after_first_sink_commit",
    "after_sink_commit",
];

const ROWS_PER_FILE: i64 = 240;

fn kills_per_sink() -> usize {
    std::env::var("WEIR_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// Round `round`'s file: fresh order ids, every row valid, all in the round's own month (so
/// `replace_partition` loads never overlap and every row must survive), cursors (one second
/// apart) after the previous round's.
fn round_file(round: i64) -> String {
    let mut csv = "order_id,customer_id,amount,exchange_rate,order_date,updated_at\n".to_string();
    let (year, month) = (2000 + round / 12, round % 12 + 1);
    for i in 0..ROWS_PER_FILE {
        let id = round * ROWS_PER_FILE + i;
        let _ = writeln!(
            csv,
            "{id},{},{}.5,1.0,{year}-{month:02}-{:02}T10:00:00Z,2024-01-{:02}T{:02}:{:02}:{:02}Z",
            id % 97,
            10 + id % 40,
            1 + i % 28,
            1 + id / 86_400,
            id / 3600 % 24,
            id / 60 % 60,
            id % 60
        );
    }
    csv
}

/// How one sink is read back, for the comparison.
enum Target<'a> {
    Sqlite(PathBuf),
    Parquet(PathBuf),
    Postgres { server: &'a PgServer, table: String },
    S3 { moto: &'a Moto, root: String },
}

impl Target<'_> {
    /// How many times each order id is in the sink.
    fn ids(&self) -> BTreeMap<i64, usize> {
        match self {
            Target::Sqlite(db) => {
                if common::pipeline::sqlite_ids_or_empty(db).is_empty() {
                    BTreeMap::new()
                } else {
                    common::pipeline::sqlite_ids(db)
                }
            }
            Target::Parquet(root) => {
                if root.exists() {
                    common::pipeline::parquet_ids(root)
                } else {
                    BTreeMap::new()
                }
            }
            Target::Postgres { server, table } => {
                let exists = server.rows(
                    "postgres",
                    &format!("SELECT (to_regclass('{table}') IS NOT NULL)::text"),
                );
                if exists[0][0].as_deref() != Some("true") {
                    return BTreeMap::new();
                }
                server
                    .rows(
                        "postgres",
                        &format!("SELECT order_id::text, count(*)::text FROM {table} GROUP BY 1"),
                    )
                    .into_iter()
                    .map(|r| {
                        (
                            r[0].as_ref().unwrap().parse().unwrap(),
                            r[1].as_ref().unwrap().parse().unwrap(),
                        )
                    })
                    .collect()
            }
            Target::S3 { moto, root } => {
                let mut ids = BTreeMap::new();
                for (_, batch) in moto.bucket("chaos").parquet_rows(root) {
                    let column = batch.column_by_name("order_id").unwrap();
                    let column =
                        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(column);
                    for id in column.values() {
                        *ids.entry(*id).or_insert(0) += 1;
                    }
                }
                ids
            }
        }
    }
}

/// One pipeline under test: its file, its sinks read back, the environment its runs get.
struct Case<'a> {
    name: String,
    dir: tempfile::TempDir,
    pipeline: PathBuf,
    targets: Vec<(String, Target<'a>)>,
    env: Vec<(&'static str, String)>,
}

impl<'a> Case<'a> {
    fn new(
        name: &str,
        sinks: &str,
        targets: Vec<(String, Target<'a>)>,
        dir: tempfile::TempDir,
    ) -> Case<'a> {
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        std::fs::write(
            &pipeline,
            format!(
                r#"name = "{name}"
[source]
kind = "files"
path = "data/*.csv"
batch_size = 60
incremental = {{ cursor = "updated_at" }}
schema = {{ updated_at = "timestamp" }}

[[steps]]
kind = "transform"
plugin = "{plugin}"

{sinks}
"#,
                plugin = common::components().orders_transform.display()
            ),
        )
        .unwrap();
        Case {
            name: name.to_string(),
            dir,
            pipeline,
            targets,
            env: Vec::new(),
        }
    }

    fn host(&self) -> Command {
        let mut host = common::host();
        host.args(["run", "--quiet"])
            .arg(&self.pipeline)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("WEIR_FAULT_TRACE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        host
    }

    fn watermark(&self) -> Option<String> {
        let out = common::host()
            .args(["state", "show"])
            .arg(&self.pipeline)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        common::stdout(&out)
            .lines()
            .find_map(|l| l.strip_prefix("watermark "))
            .filter(|w| *w != "(none)")
            .map(str::to_string)
    }
}

/// What the kills of one sink came to.
#[derive(Default)]
struct Tally {
    kills: usize,
    recovered: usize,
    lost: usize,
    duplicated: usize,
    regressions: usize,
    /// Kills by the phase the run was in (the last `weir: phase` line before it died).
    phases: BTreeMap<String, usize>,
    /// Random kills that came after the run had finished.
    finished_first: usize,
    worst_recovery: Duration,
}

/// The phase a killed run was in, from its trace (a line the kill cut short does not count).
fn last_phase(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("weir: phase "))
        .find(|p| POINTS.contains(p) || *p == "state_committed")
        .unwrap_or("startup")
        .to_string()
}

/// Kill runs of `case` until `kills` runs have died (a random kill may come after the run
/// has finished), recovering after each; every row must end up once.
fn torture(case: &Case, kills: usize, seed: u64, tally: &mut Tally) {
    let mut rng = Rng(seed | 1);
    let mut expected: BTreeMap<i64, usize> = BTreeMap::new();
    let mut previous_watermark: Option<String> = None;
    // How long a run takes, learned from the runs that finished on their own.
    let mut typical = Duration::from_millis(150);
    let goal = tally.kills + kills;
    for round in 0.. {
        if tally.kills >= goal {
            break;
        }
        assert!(
            round < 4 * kills as i64,
            "{}: only {} kills in {round} rounds",
            case.name,
            kills - (goal - tally.kills)
        );
        std::fs::write(
            case.dir.path().join(format!("data/{round:05}.csv")),
            round_file(round),
        )
        .unwrap();
        for i in 0..ROWS_PER_FILE {
            expected.insert(round * ROWS_PER_FILE + i, 1);
        }

        // Half the kills at a fault point, spread over the points and the batches; half
        // at a random moment of a typical run.
        let mut host = case.host();
        let by_point = round % 2 == 0;
        if by_point {
            let point = POINTS[(round as usize / 2) % POINTS.len()];
            let n = 1 + rng.below(if point.contains("commit") { 1 } else { 4 });
            host.env("WEIR_FAULT", format!("{point}@{n}"));
        }
        let child = host.spawn().unwrap();
        let killed_at = if by_point {
            None
        } else {
            Some(Duration::from_micros(
                rng.below(typical.as_micros() as u64 * 12 / 10),
            ))
        };
        let started = Instant::now();
        let out = match killed_at {
            None => child.wait_with_output().unwrap(),
            Some(delay) => {
                let mut child = child;
                while started.elapsed() < delay {
                    if child.try_wait().unwrap().is_some() {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(500));
                }
                let _ = child.kill(); // SIGKILL
                child.wait_with_output().unwrap()
            }
        };
        let trace = common::stderr(&out);
        if out.status.success() {
            tally.finished_first += 1;
            typical = (typical + started.elapsed()) / 2;
        } else {
            assert!(
                out.status.code().is_none(),
                "{}: round {round}: the run failed instead of dying:\n{trace}",
                case.name
            );
            tally.kills += 1;
            *tally.phases.entry(last_phase(&trace)).or_default() += 1;
        }

        let started = Instant::now();
        let recovery = case.host().output().unwrap();
        let took = started.elapsed();
        assert!(
            recovery.status.success(),
            "{}: round {round}: the rerun failed:\n{}",
            case.name,
            common::stderr(&recovery)
        );
        tally.recovered += 1;
        tally.worst_recovery = tally.worst_recovery.max(took);

        for (sink, target) in &case.targets {
            let got = target.ids();
            let lost = expected.keys().filter(|id| !got.contains_key(id)).count();
            let duplicated: usize = got.values().map(|n| n.saturating_sub(1)).sum();
            tally.lost += lost;
            tally.duplicated += duplicated;
            assert!(
                lost == 0 && duplicated == 0,
                "{} sink {sink}: round {round} (seed {seed}): {lost} rows lost, {duplicated} duplicated",
                case.name
            );
        }
        let watermark = case.watermark();
        if watermark < previous_watermark {
            tally.regressions += 1;
        }
        assert!(
            watermark >= previous_watermark,
            "{}: the watermark went back",
            case.name
        );
        previous_watermark = watermark;
    }
}

/// Run every case of one sink, sharing the kills among them, and report.
fn run_sink(sink: &str, cases: Vec<Case>) {
    let kills = kills_per_sink();
    let started = Instant::now();
    let mut tally = Tally::default();
    let per_case = kills.div_ceil(cases.len());
    for (i, case) in cases.iter().enumerate() {
        torture(
            case,
            per_case,
            0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1),
            &mut tally,
        );
    }
    let modes = cases
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    report(sink, &modes, &tally, started.elapsed());
}

/// Rewrite this sink's section of RELIABILITY.md with the figures of this run.
fn report(sink: &str, modes: &str, tally: &Tally, took: Duration) {
    let phases = tally
        .phases
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = format!(
        "| kill -9 · {sink} ({modes}) | {} runs, killed by phase: {phases}; {} random kills came after the run had finished | {} | {} | {} | {} watermark regressions; worst recovery run {:.2} s; {:.0} s in all |",
        tally.kills + tally.finished_first,
        tally.finished_first,
        tally.kills,
        tally.lost,
        tally.duplicated,
        tally.regressions,
        tally.worst_recovery.as_secs_f64(),
        took.as_secs_f64(),
    );
    common::reliability::write_section(&format!("chaos:{sink}"), &[row]);
}

#[test]
fn kill_9_sqlite_and_local_parquet() {
    let sqlite_parquet = |mode: &str, sinks: &str| {
        let dir = tempfile::tempdir().unwrap();
        let targets = vec![
            (
                "sqlite".to_string(),
                Target::Sqlite(dir.path().join("warehouse.db")),
            ),
            (
                "parquet".to_string(),
                Target::Parquet(dir.path().join("lake")),
            ),
        ];
        Case::new(mode, sinks, targets, dir)
    };
    let cases = vec![
        sqlite_parquet(
            "append",
            "[[sinks]]\nkind = \"sqlite\"\nname = \"warehouse\"\npath = \"warehouse.db\"\ntable = \"orders\"\n\n\
             [[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"lake\"\npartition_by = \"order_month\"\n",
        ),
        sqlite_parquet(
            "replace_partition",
            "[[sinks]]\nkind = \"sqlite\"\nname = \"warehouse\"\npath = \"warehouse.db\"\ntable = \"orders\"\n\
             mode = \"replace_partition\"\npartition_by = \"order_month\"\n\n\
             [[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"lake\"\npartition_by = \"order_month\"\n\
             mode = \"replace_partition\"\n",
        ),
        {
            let dir = tempfile::tempdir().unwrap();
            let targets = vec![(
                "sqlite".to_string(),
                Target::Sqlite(dir.path().join("warehouse.db")),
            )];
            Case::new(
                "merge",
                "[[sinks]]\nkind = \"sqlite\"\nname = \"warehouse\"\npath = \"warehouse.db\"\ntable = \"orders\"\n\
                 mode = \"merge\"\nkeys = [\"order_id\"]\n",
                targets,
                dir,
            )
        },
    ];
    run_sink("sqlite", cases);
}

#[test]
fn kill_9_postgres() {
    // The test's own server, stopped when it ends (a server in a static is never dropped).
    let server = &PgServer::start();
    let case = |mode: &str, extra: &str| {
        let table = format!("chaos_{mode}");
        let dir = tempfile::tempdir().unwrap();
        let sinks = format!(
            "[[sinks]]\nkind = \"postgres\"\nname = \"warehouse\"\nurl = \"{}\"\ntable = \"{table}\"\nmode = \"{mode}\"\n{extra}\n",
            server.url("postgres")
        );
        let targets = vec![("postgres".to_string(), Target::Postgres { server, table })];
        Case::new(mode, &sinks, targets, dir)
    };
    run_sink(
        "postgres",
        vec![
            case("append", ""),
            case("replace_partition", "partition_by = \"order_month\""),
            case("merge", "keys = [\"order_id\"]"),
        ],
    );
}

#[test]
fn kill_9_parquet_on_s3() {
    let moto = &Moto::start();
    moto.create_bucket("chaos");
    let case = |mode: &str| {
        let root = format!("lake/{mode}");
        let dir = tempfile::tempdir().unwrap();
        let sinks = format!(
            "[[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"s3://chaos/{root}\"\n\
             partition_by = \"order_month\"\nmode = \"{mode}\"\n"
        );
        let targets = vec![("s3".to_string(), Target::S3 { moto, root })];
        let mut case = Case::new(mode, &sinks, targets, dir);
        case.env = moto.env();
        case
    };
    run_sink(
        "s3-parquet",
        vec![case("append"), case("replace_partition")],
    );
}
