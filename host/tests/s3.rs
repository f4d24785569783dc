//! File sources and the Parquet sink on S3, end to end through the `host` binary against a
//! real S3-protocol server (moto, started per test on loopback): the same exactly-once
//! behaviour as on local disk, multipart uploads for large files, crash recovery without
//! stray objects, and errors that name the endpoint but never a secret.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;
use std::time::Instant;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};
use common::pipeline::*;
use common::s3::{Bucket, Moto, SECRET_ACCESS_KEY};
use common::{stderr, stdout};

const BUCKET: &str = "weir-test";

/// The lake on S3, partitioned by month.
const S3_LAKE: &str = r#"
[[sinks]]
kind = "parquet"
name = "lake"
path = "s3://weir-test/lake"
partition_by = "order_month"
"#;

/// A project whose source files and datasets live in a fresh moto bucket.
struct S3Project {
    moto: Moto,
    bucket: Bucket,
    project: Project,
}

impl S3Project {
    fn new() -> S3Project {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        let bucket = moto.bucket(BUCKET);
        S3Project {
            moto,
            bucket,
            project: Project::new(),
        }
    }

    fn write_orders(&self, name: &str, orders: &[Order]) {
        self.bucket
            .put(&format!("in/orders/{name}"), csv(orders).into_bytes());
    }

    /// The orders pipeline reading `s3://…/in/orders/*.csv`, quarantining to S3.
    fn pipeline(&self, rest: &str) -> std::path::PathBuf {
        let source = format!("s3://{BUCKET}/in/orders/*.csv");
        let quarantine = format!("s3://{BUCKET}/quarantine");
        self.project
            .pipeline_at(&source, &quarantine, "quarantine", rest)
    }

    /// `host ARGS…` with the server and credentials in `AWS_*` variables (and no others
    /// from the environment running the tests).
    fn host(&self, args: &[&str], pipeline: &Path, fault: Option<&str>) -> Output {
        let mut host = common::host();
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("AWS_")) {
            host.env_remove(name);
        }
        host.envs(self.moto.env()).args(args).arg(pipeline);
        if let Some(fault) = fault {
            host.env("WEIR_FAULT", fault);
        }
        host.output().unwrap()
    }

    fn run(&self, pipeline: &Path, fault: Option<&str>) -> Output {
        self.host(&["run", "--quiet"], pipeline, fault)
    }

    fn lake_ids(&self) -> BTreeMap<i64, usize> {
        let mut ids = BTreeMap::new();
        for (_, batch) in self.bucket.parquet_rows("lake") {
            for id in batch
                .column_by_name("order_id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
            {
                *ids.entry(*id).or_default() += 1;
            }
        }
        ids
    }

    /// Nothing staged is left, and the visible data files are exactly those the load
    /// markers name: no stray object from an interrupted attempt.
    fn assert_only_committed_objects(&self, root: &str) {
        let objects = self.bucket.list(root);
        let staged: Vec<&String> = objects
            .keys()
            .filter(|k| k.starts_with(&format!("{root}/_weir_staging/")))
            .collect();
        assert!(staged.is_empty(), "left in staging: {staged:?}");
        let mut named = BTreeSet::new();
        for key in objects
            .keys()
            .filter(|k| k.starts_with(&format!("{root}/_weir_loads/")))
        {
            let marker: serde_json::Value = serde_json::from_slice(&self.bucket.get(key)).unwrap();
            for object in marker["objects"].as_array().unwrap() {
                named.insert(format!("{root}/{}", object["path"].as_str().unwrap()));
            }
        }
        let visible: BTreeSet<String> = objects
            .into_keys()
            .filter(|k| !k.starts_with(&format!("{root}/_weir")))
            .collect();
        assert_eq!(visible, named);
    }
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn output(out: &Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

/// Every landed row is in its month's partition with the total the transform computes.
fn assert_rows_as_computed(rows: &[(String, RecordBatch)], orders: &[Order]) {
    let by_id: BTreeMap<i64, &Order> = orders.iter().map(|o| (o.id, o)).collect();
    for (partition, batch) in rows {
        let ids = batch
            .column_by_name("order_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let totals = batch
            .column_by_name("total_usd")
            .unwrap()
            .as_primitive::<Float64Type>();
        for (id, total) in ids.values().iter().zip(totals.values()) {
            let order = by_id[id];
            assert_eq!(partition, &format!("order_month={}", order.month()));
            assert_eq!(*total, order.amount * order.rate, "order {id}");
        }
    }
}

#[test]
fn a_glob_on_s3_loads_into_a_partitioned_lake_on_s3_exactly_once() {
    let s3 = S3Project::new();
    let first = orders(1, 300, 0);
    s3.write_orders("a.csv", &first[..200]);
    s3.write_orders("b.csv", &first[200..]);
    s3.bucket
        .put("in/orders/notes.txt", b"not matched".to_vec());
    let pipeline = s3.pipeline(S3_LAKE);

    let validated = s3.host(&["validate"], &pipeline, None);
    assert!(validated.status.success(), "{}", output(&validated));
    let planned = s3.host(&["plan"], &pipeline, None);
    let plan = stdout(&planned);
    assert!(
        plan.contains("would read 2 of 2 files:"),
        "{}",
        output(&planned)
    );
    assert!(
        plan.contains(&format!("s3://{BUCKET}/in/orders/a.csv")),
        "{plan}"
    );

    let out = s3.run(&pipeline, None);
    assert_eq!(
        code(&out),
        Some(3),
        "rows were quarantined\n{}",
        output(&out)
    );
    let expected = once(first.iter().filter(|o| o.loads()).map(|o| o.id));
    assert_eq!(s3.lake_ids(), expected);
    assert_rows_as_computed(&s3.bucket.parquet_rows("lake"), &first);
    let quarantined: usize = s3
        .bucket
        .parquet_rows("quarantine")
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(
        quarantined,
        first.iter().filter(|o| o.quarantined()).count()
    );
    s3.assert_only_committed_objects("lake");
    s3.assert_only_committed_objects("quarantine");
    // Deterministic names: the partition directory and the load id.
    let names: Vec<String> = s3
        .bucket
        .list("lake/order_month=2024-01")
        .into_keys()
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n.rsplit('/').next().unwrap().starts_with("part-")),
        "{names:?}"
    );

    let out = s3.run(&pipeline, None);
    assert_eq!(code(&out), Some(0), "{}", output(&out));
    assert!(
        stdout(&out).contains("nothing new to load"),
        "{}",
        output(&out)
    );
    assert_eq!(s3.lake_ids(), expected);

    // A new object: only its rows arrive.
    let more = orders(301, 100, 300);
    s3.write_orders("c.csv", &more);
    let planned = s3.host(&["plan"], &pipeline, None);
    assert!(
        stdout(&planned).contains("would read 1 of 3 files:"),
        "{}",
        output(&planned)
    );
    let out = s3.run(&pipeline, None);
    assert!(matches!(code(&out), Some(0 | 3)), "{}", output(&out));
    let all: Vec<Order> = first.into_iter().chain(more).collect();
    assert_eq!(
        s3.lake_ids(),
        once(all.iter().filter(|o| o.loads()).map(|o| o.id))
    );
    assert_rows_as_computed(&s3.bucket.parquet_rows("lake"), &all);
    s3.assert_only_committed_objects("lake");
}

#[test]
fn parquet_files_on_s3_are_a_source_and_explicit_settings_replace_the_environment() {
    let s3 = S3Project::new();
    // Stage one: CSV on S3 into an unpartitioned lake; stage two reads that lake's files.
    let data = orders(1, 150, 0);
    s3.write_orders("a.csv", &data);
    let stage_one = s3.pipeline(
        r#"
[[sinks]]
kind = "parquet"
name = "flat"
path = "s3://weir-test/flat"
"#,
    );
    let out = s3.run(&stage_one, None);
    assert_eq!(code(&out), Some(3), "{}", output(&out));

    // The second pipeline names the server and credentials itself, from its own variables:
    // the AWS_* ones are pointed at nothing to prove they are not used.
    let text = format!(
        r#"name = "from-parquet"
[source]
kind = "files"
path = "s3://{BUCKET}/flat/*.parquet"

[[sinks]]
kind = "parquet"
name = "copy"
path = "s3://{BUCKET}/copy"
partition_by = "order_month"

[s3]
endpoint = "${{WEIR_S3_ENDPOINT}}"
region = "us-east-1"
access_key_id = "${{WEIR_S3_KEY}}"
secret_access_key = "${{WEIR_S3_SECRET}}"
allow_http = true
"#
    );
    let pipeline = s3.project.path("from-parquet.toml");
    std::fs::write(&pipeline, text).unwrap();
    let mut host = common::host();
    host.args(["run", "--quiet"]).arg(&pipeline);
    host.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "wrong")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .env("WEIR_S3_ENDPOINT", &s3.moto.endpoint)
        .env("WEIR_S3_KEY", common::s3::ACCESS_KEY_ID)
        .env("WEIR_S3_SECRET", SECRET_ACCESS_KEY);
    let out = host.output().unwrap();
    assert_eq!(code(&out), Some(0), "{}", output(&out));
    let copied = s3.bucket.parquet_rows("copy");
    let ids: BTreeSet<i64> = copied
        .iter()
        .flat_map(|(_, b)| {
            let ids = b
                .column_by_name("order_id")
                .unwrap()
                .as_primitive::<Int64Type>();
            ids.values().to_vec()
        })
        .collect();
    let expected: BTreeSet<i64> = data.iter().filter(|o| o.loads()).map(|o| o.id).collect();
    assert_eq!(ids, expected);
    assert_rows_as_computed(&copied, &data);
}

#[test]
fn a_large_file_goes_up_as_a_multipart_upload() {
    let s3 = S3Project::new();
    // Unique timestamps and ids barely compress: 800k rows (about 590k loaded) make a file
    // of about two 5 MiB parts.
    let rows = 800_000;
    let mut data = orders(1, rows, 0);
    // One second apart (the generator's minutes would run past midnight).
    for (i, order) in data.iter_mut().enumerate() {
        let (day, second) = (1 + i / 86_400, i % 86_400);
        let (h, m, s) = (second / 3600, second / 60 % 60, second % 60);
        order.updated = format!("2024-06-{day:02}T{h:02}:{m:02}:{s:02}Z");
    }
    s3.write_orders("big.csv", &data);
    let pipeline = s3.pipeline(
        r#"
[[sinks]]
kind = "parquet"
name = "flat"
path = "s3://weir-test/flat"
"#,
    );
    let started = Instant::now();
    let out = s3.run(&pipeline, None);
    let elapsed = started.elapsed();
    assert_eq!(code(&out), Some(3), "{}", output(&out));
    let loaded = data.iter().filter(|o| o.loads()).count();
    eprintln!(
        "S3 run: {rows} rows read, {loaded} loaded in {:.1} s ({:.0} rows/s read)",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64()
    );
    let objects = s3.bucket.list("flat");
    let (key, meta) = objects
        .iter()
        .find(|(k, _)| k.ends_with(".parquet"))
        .expect("a data file");
    assert!(meta.size > 5 << 20, "{key}: {} bytes", meta.size);
    // The server saw the staged file go up in parts (the move to its final name is a copy,
    // which does not show them).
    let staged = format!("PUT /{BUCKET}/flat/_weir_staging/");
    let parts: BTreeSet<String> = s3
        .moto
        .requests()
        .iter()
        .filter(|r| r.starts_with(&staged) && r.contains(".parquet?"))
        .filter_map(|r| {
            Some(
                r.split("partNumber=")
                    .nth(1)?
                    .split([' ', '&'])
                    .next()?
                    .to_string(),
            )
        })
        .collect();
    assert!(parts.len() >= 2, "{key}: parts {parts:?}");
    eprintln!("{key}: {} bytes in {} parts", meta.size, parts.len());
    let landed: usize = s3
        .bucket
        .parquet_rows("flat")
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(landed, loaded);
    s3.assert_only_committed_objects("flat");
}

/// Kill the run at `fault`, then run again: every row once in the local SQLite table and
/// the S3 lake, and no stray object on S3.
fn assert_exactly_once_after_crash(fault: &str) {
    let s3 = S3Project::new();
    let data = orders(1, 300, 0);
    s3.write_orders("a.csv", &data);
    let pipeline = s3.pipeline(&format!("{SQLITE_APPEND}{S3_LAKE}"));

    let crashed = s3.run(&pipeline, Some(fault));
    assert_eq!(
        code(&crashed),
        None,
        "killed by the fault\n{}",
        output(&crashed)
    );
    assert!(stderr(&crashed).contains(&format!("injected fault at {fault}")));

    let out = s3.run(&pipeline, None);
    assert_eq!(code(&out), Some(3), "{}", output(&out));
    let expected = once(data.iter().filter(|o| o.loads()).map(|o| o.id));
    assert_eq!(
        sqlite_ids(&s3.project.path("warehouse.db")),
        expected,
        "after {fault}"
    );
    assert_eq!(s3.lake_ids(), expected, "after {fault}");
    let quarantined: usize = s3
        .bucket
        .parquet_rows("quarantine")
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(quarantined, data.iter().filter(|o| o.quarantined()).count());
    s3.assert_only_committed_objects("lake");
    s3.assert_only_committed_objects("quarantine");

    let again = s3.run(&pipeline, None);
    assert!(
        stdout(&again).contains("nothing new to load"),
        "{}",
        output(&again)
    );
}

#[test]
fn a_crash_before_the_sink_commits_loses_nothing_on_s3() {
    assert_exactly_once_after_crash("before_sink_commit");
}

#[test]
fn a_crash_between_two_sink_commits_duplicates_nothing_on_s3() {
    assert_exactly_once_after_crash("after_first_sink_commit");
}

#[test]
fn a_crash_after_the_sink_commits_duplicates_nothing_on_s3() {
    assert_exactly_once_after_crash("after_sink_commit");
}

#[test]
fn an_unreachable_endpoint_is_named_and_no_secret_is_shown() {
    let project = Project::new();
    let secret = "Sup3r-Secret/Value+never+printed";
    let text = r#"name = "bad"
[source]
kind = "files"
path = "s3://weir-test/in/*.csv"

[[sinks]]
kind = "parquet"
name = "lake"
path = "s3://weir-test/lake"

[s3]
endpoint = "http://127.0.0.1:9"
allow_http = true
access_key_id = "${KEY_ID}"
secret_access_key = "${SECRET}"
"#;
    let pipeline = project.path("bad.toml");
    std::fs::write(&pipeline, text).unwrap();
    for command in ["run", "validate", "plan"] {
        let out = common::host()
            .arg(command)
            .arg(&pipeline)
            .env("KEY_ID", "AKIDEXAMPLE")
            .env("SECRET", secret)
            .output()
            .unwrap();
        let all = output(&out);
        assert_eq!(code(&out), Some(1), "{command}: {all}");
        assert!(all.contains("s3://weir-test/in/"), "{command}: {all}");
        assert!(all.contains("127.0.0.1:9"), "{command}: {all}");
        assert!(
            all.contains("the server could not be reached"),
            "{command}: {all}"
        );
        assert!(!all.contains(secret), "{command} showed the secret: {all}");
    }

    // A secret written in clear is refused, naming the line and key (and not echoing it).
    let clear = text.replace("${SECRET}", secret);
    std::fs::write(&pipeline, &clear).unwrap();
    let out = common::host()
        .arg("validate")
        .arg(&pipeline)
        .env("KEY_ID", "AKID")
        .output()
        .unwrap();
    let all = output(&out);
    assert_eq!(code(&out), Some(1), "{all}");
    assert!(
        all.contains("bad.toml:15: s3.secret_access_key: write it as `${VARIABLE}`"),
        "{all}"
    );
    assert!(!all.contains(secret), "{all}");

    // Plain HTTP needs saying so.
    let plain = text.replace("allow_http = true\n", "");
    std::fs::write(&pipeline, plain).unwrap();
    let out = common::host()
        .arg("validate")
        .arg(&pipeline)
        .env("KEY_ID", "AKID")
        .env("SECRET", secret)
        .env_remove("AWS_ALLOW_HTTP")
        .output()
        .unwrap();
    let all = output(&out);
    assert_eq!(code(&out), Some(1), "{all}");
    assert!(all.contains("allow_http = true"), "{all}");
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let s3 = S3Project::new();
    let pipeline = s3.pipeline(S3_LAKE);
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let text = text.replace("s3://weir-test/in/", "s3://no-such-bucket/in/");
    std::fs::write(&pipeline, text).unwrap();
    let out = s3.run(&pipeline, None);
    let all = output(&out);
    assert_eq!(code(&out), Some(1), "{all}");
    assert!(all.contains("s3://no-such-bucket/in/"), "{all}");
    assert!(
        all.contains("NoSuchBucket") || all.contains("does not exist"),
        "{all}"
    );
    assert!(!all.contains(SECRET_ACCESS_KEY), "{all}");
}
