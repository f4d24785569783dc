//! S3 failing under a real pipeline (files in, the orders transform, a Parquet sink on
//! `s3://`): the `host` binary talks to moto through a faulting proxy on loopback
//! (`common::fault_proxy`) that answers 500s, stalls requests or goes down altogether; and
//! a run killed in the middle of a multipart upload. Each ends with every source row in the
//! lake exactly once (compared id by id); an outage past the retry policy fails the run with
//! the sink named, nothing of the load visible and the watermark unchanged.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;

use common::fault_proxy::{Action, FaultProxy};
use common::pipeline::{Project, orders};
use common::s3::Moto;
use common::stderr;

const BUCKET: &str = "faults";
const ROWS: i64 = 1_000;

/// A pipeline file in `dir` reading `data/*.csv` through the orders transform into a
/// Parquet dataset at `s3://faults/<root>`, with `more` (sink settings, tables) after it.
fn pipeline(dir: &Path, batch_size: usize, root: &str, more: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    let text = format!(
        "name = \"{root}\"\n[source]\nkind = \"files\"\npath = \"data/*.csv\"\n\
         batch_size = {batch_size}\nincremental = {{ cursor = \"updated_at\" }}\n\
         schema = {{ updated_at = \"timestamp\" }}\n\n\
         [[steps]]\nkind = \"transform\"\nplugin = \"{}\"\n\n\
         [[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"s3://{BUCKET}/{root}\"\n{more}",
        common::components().orders_transform.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A project whose lake is `s3://faults/lake`, reached through a proxy in front of moto.
struct Lake {
    moto: Moto,
    proxy: FaultProxy,
    /// Holds the project directory for the test's length.
    _project: Project,
    pipeline: PathBuf,
    /// The ids the lake must hold, once each.
    expected: Vec<i64>,
}

impl Lake {
    /// `ROWS` generated orders (a file of ten batches, three months and the null month of
    /// unparseable dates) and the pipeline, with a quick retry policy of `attempts` and
    /// `settings` (more tables).
    fn new(attempts: u32, settings: &str) -> Lake {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        let proxy = FaultProxy::start(&moto.endpoint);
        let project = Project::new();
        let generated = orders(1, ROWS, 0);
        project.write_data("orders.csv", &generated);
        let more = format!(
            "partition_by = \"order_month\"\n\n\
             [retry]\nattempts = {attempts}\ninitial_delay_ms = 200\nmax_delay_ms = 1000\n\n{settings}"
        );
        let pipeline = pipeline(project.dir.path(), 100, "lake", &more);
        let expected = generated.iter().filter(|o| o.kept()).map(|o| o.id);
        Lake {
            moto,
            proxy,
            _project: project,
            pipeline,
            expected: expected.collect(),
        }
    }

    /// One `host run` through the proxy, and how long it took.
    fn run(&self) -> (Output, Duration) {
        let started = Instant::now();
        let out = common::host()
            .args(["run", "--quiet"])
            .arg(&self.pipeline)
            .envs(self.moto.env())
            .env("AWS_ENDPOINT_URL", &self.proxy.endpoint)
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap();
        (out, started.elapsed())
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let listed = self.moto.bucket(BUCKET).list(prefix);
        listed.into_keys().collect()
    }

    /// Every id of the lake as a reader sees it (`_weir*` directories skipped) or none.
    fn ids(&self) -> BTreeMap<i64, usize> {
        lake_ids(&self.moto, "lake")
    }

    /// Every expected id once, the load's manifest written, nothing left staged.
    fn assert_exactly_once(&self, context: &str) {
        assert_once(&self.ids(), &self.expected, context);
        assert_eq!(self.keys("lake/_weir_loads").len(), 1, "{context}");
        let staged = self.keys("lake/_weir_staging");
        assert!(staged.is_empty(), "{context}: left staged: {staged:?}");
    }
}

fn lake_ids(moto: &Moto, root: &str) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for (_, batch) in moto.bucket(BUCKET).parquet_rows(root) {
        let column = batch.column_by_name("order_id").unwrap();
        for id in column.as_primitive::<Int64Type>().values() {
            *ids.entry(*id).or_default() += 1;
        }
    }
    ids
}

/// `got` holds every id of `expected` once and nothing else.
fn assert_once(got: &BTreeMap<i64, usize>, expected: &[i64], context: &str) {
    let missing = expected.iter().filter(|id| !got.contains_key(id)).count();
    let duplicated: usize = got.values().map(|n| n - 1).sum();
    let extra = got.len() + missing - expected.len();
    assert!(
        missing == 0 && duplicated == 0 && extra == 0,
        "{context}: {missing} rows lost, {duplicated} duplicated, {extra} not in the source"
    );
}

/// The last `updated_at` of the generated orders: where a complete load leaves the watermark.
const LAST_CURSOR: &str = "2024-06-01T16:39:00";

fn report(name: &str, what: &str, outcome: &str, count: u64, time: &str) {
    common::reliability::write_section(
        &format!("faults:s3-{name}"),
        &[format!(
            "| S3: {what} | {outcome} | {count} | 0 | 0 | {time} |"
        )],
    );
}

#[test]
fn s3_answering_500_to_every_third_request_is_retried_and_every_row_lands_once() {
    let lake = Lake::new(3, "");
    lake.proxy.set_rule(|r| match r.n % 3 {
        0 => Action::Fail,
        _ => Action::Forward,
    });
    let (out, took) = lake.run();
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        lake.proxy.log()
    );
    let (failed, requests) = (lake.proxy.failed(), lake.proxy.requests());
    assert!(failed >= 4, "only {failed} of {requests} requests failed");
    // One request per connection: every request the proxy let through reached moto (which
    // also saw the bucket created).
    assert_eq!(lake.moto.requests().len() as u64, requests - failed + 1);
    lake.assert_exactly_once("after the run");
    assert!(common::watermark(&lake.pipeline).contains(LAST_CURSOR));
    report(
        "500",
        &format!("every 3rd request to moto answered `500 InternalError` ({failed} of {requests})"),
        "retried by object_store (3 retries a request); the run succeeds",
        failed,
        &format!("run: {:.1} s", took.as_secs_f64()),
    );
}

#[test]
fn a_stalled_s3_request_times_out_after_the_s3_timeout_and_is_retried() {
    let lake = Lake::new(3, "[s3]\ntimeout = \"2s\"\n");
    // The first upload of a data file hangs: without a client timeout the run would hang
    // with it (object_store's default is 30 s).
    let stalled = AtomicBool::new(false);
    lake.proxy.set_rule(move |r| {
        let upload = r.method == "PUT" && r.target.contains(".parquet") && !r.is_copy();
        match upload && !stalled.swap(true, Ordering::SeqCst) {
            true => Action::Stall,
            false => Action::Forward,
        }
    });
    let (out, took) = lake.run();
    assert!(
        out.status.success(),
        "{}\n{}",
        stderr(&out),
        lake.proxy.log()
    );
    assert_eq!(lake.proxy.stalled(), 1, "{}", lake.proxy.log());
    assert!(
        took < Duration::from_secs(12),
        "the stalled request held the run {took:?}: the 2 s timeout did not apply"
    );
    lake.assert_exactly_once("after the run");
    assert!(common::watermark(&lake.pipeline).contains(LAST_CURSOR));
    report(
        "stall",
        "the first Parquet upload stalled (never answered), `[s3] timeout = \"2s\"`",
        "timed out after 2 s and retried by object_store; the run succeeds",
        1,
        &format!("run: {:.1} s", took.as_secs_f64()),
    );
}

#[test]
fn an_s3_outage_past_the_retry_policy_fails_the_run_with_nothing_committed() {
    let lake = Lake::new(2, "");
    // S3 goes down at the commit's first move (staged objects are up, nothing is in place)
    // and stays down through both attempts.
    let down = Arc::new(AtomicBool::new(false));
    let outage = down.clone();
    lake.proxy.set_rule(move |r| {
        if r.is_copy() {
            outage.store(true, Ordering::SeqCst);
        }
        match outage.load(Ordering::SeqCst) {
            true => Action::Fail,
            false => Action::Forward,
        }
    });
    let (out, failed_took) = lake.run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let error = stderr(&out);
    assert!(error.contains("error: pipeline"), "{error}");
    assert!(
        error.contains("sink `lake`"),
        "the error names the sink: {error}"
    );
    assert!(
        error.contains("500"),
        "the error says what S3 answered: {error}"
    );
    let failure = &error[error.find("error: pipeline").unwrap()..];
    assert_eq!(
        failure.matches("sink `lake`").count(),
        1,
        "said once: {failure}"
    );
    assert!(down.load(Ordering::SeqCst), "{}", lake.proxy.log());
    let failures = lake.proxy.failed();

    // Nothing of the load is visible: no manifest, no data object outside the staging
    // area (where the load's staged files wait for the replay), no watermark.
    assert_eq!(lake.keys("lake/_weir_loads"), Vec::<String>::new());
    assert_eq!(lake.ids(), BTreeMap::new());
    let visible: Vec<String> = lake.keys("lake");
    let visible: Vec<&String> = visible
        .iter()
        .filter(|k| !k.starts_with("lake/_weir_staging/"))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");
    assert!(!lake.keys("lake/_weir_staging").is_empty());
    assert_eq!(common::watermark(&lake.pipeline), "(none)");

    // S3 is back: the next run replays the load, once.
    lake.proxy.set_rule(|_| Action::Forward);
    let (out, took) = lake.run();
    assert!(out.status.success(), "{}", stderr(&out));
    lake.assert_exactly_once("after the rerun");
    assert!(common::watermark(&lake.pipeline).contains(LAST_CURSOR));
    report(
        "outage",
        &format!(
            "every request answered 500 from the commit's first move on ({failures} requests)"
        ),
        "past the policy (2 attempts × 3 retries): the run fails naming the sink, no manifest, \
         nothing outside the staging area, watermark unchanged; the rerun loads it once",
        failures,
        &format!(
            "failed run: {:.1} s; rerun {:.1} s",
            failed_took.as_secs_f64(),
            took.as_secs_f64()
        ),
    );
}

/// Rows of ~1 KiB of incompressible text: enough for a Parquet file of several 5 MiB parts.
const WIDE_ROWS: i64 = 12_000;

fn wide_csv() -> String {
    let mut rng = common::xorshift::Gen(0x5eed_cafe);
    let mut csv =
        "order_id,customer_id,amount,exchange_rate,order_date,updated_at,note\n".to_string();
    for id in 0..WIDE_ROWS {
        let note: String = (0..64).map(|_| format!("{:016x}", rng.next())).collect();
        let _ = writeln!(
            csv,
            "{id},{},12.5,1.0,2024-01-{:02}T10:00:00Z,2024-01-01T{:02}:{:02}:{:02}Z,{note}",
            id % 97,
            1 + id % 28,
            id / 3600,
            id / 60 % 60,
            id % 60
        );
    }
    csv
}

#[test]
fn a_run_killed_mid_multipart_upload_is_replayed_once_with_nothing_left_visible() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/wide.csv"), wide_csv()).unwrap();
    let pipeline = pipeline(dir.path(), 1000, "wide", "");
    let run = |fault: Option<&str>| {
        let mut host = common::host();
        host.args(["run", "--quiet"])
            .arg(&pipeline)
            .envs(moto.env());
        if let Some(fault) = fault {
            host.env("WEIR_FAULT", fault);
        }
        let started = Instant::now();
        (host.output().unwrap(), started.elapsed())
    };

    // Killed once the first 5 MiB part is on the server (the second may be in flight).
    let (out, killed_took) = run(Some("upload_part@1"));
    assert_eq!(out.status.code(), None, "not killed: {}", stderr(&out));
    assert!(stderr(&out).contains("injected fault at upload_part"));
    let abandoned = moto.incomplete_uploads(BUCKET);
    assert!(!abandoned.is_empty(), "no multipart upload was under way");
    let keys = || {
        moto.bucket(BUCKET)
            .list("wide")
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(),
        Vec::<String>::new(),
        "an unfinished upload shows no object"
    );
    assert_eq!(common::watermark(&pipeline), "(none)");

    let (out, took) = run(None);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: Vec<i64> = (0..WIDE_ROWS).collect();
    assert_once(&lake_ids(&moto, "wide"), &expected, "after the rerun");
    // The manifest and the one data file, large enough to have gone up in several parts.
    let listed = moto.bucket(BUCKET).list("wide");
    let (data, other): (Vec<_>, Vec<_>) = listed.iter().partition(|(k, _)| k.ends_with(".parquet"));
    assert_eq!(other.len(), 1, "{:?}", keys());
    assert!(other[0].0.starts_with("wide/_weir_loads/"), "{:?}", keys());
    assert_eq!(data.len(), 1, "{:?}", keys());
    let size = data[0].1.size;
    assert!(size > 10 << 20, "{size} bytes: not three parts");
    // The killed attempt's upload stays incomplete — invisible to readers, under the
    // staging area, for a lifecycle rule to reclaim — and the rerun leaves none of its own.
    let incomplete = moto.incomplete_uploads(BUCKET);
    assert_eq!(incomplete, abandoned);
    assert!(
        incomplete
            .iter()
            .all(|k| k.starts_with("wide/_weir_staging/"))
    );
    report(
        "multipart-kill",
        &format!(
            "killed (`WEIR_FAULT=upload_part@1`) after the first 5 MiB part of a {:.1} MiB Parquet upload",
            size as f64 / (1 << 20) as f64
        ),
        "the rerun replays the load; the killed upload stays incomplete under `_weir_staging/` \
         (invisible; a lifecycle rule reclaims it)",
        1,
        &format!(
            "killed run: {:.1} s; rerun {:.1} s",
            killed_took.as_secs_f64(),
            took.as_secs_f64()
        ),
    );
}
