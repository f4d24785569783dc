//! The bad-input catalogue: each malformed input runs through the `host` binary after a good
//! load, and must fail with its exact error (naming the file, row and column, or the
//! pipeline file's line and key) with nothing of the bad load in the warehouse and the
//! watermark where the good load left it; or, where the input is merely empty or
//! repetitive, do the documented thing. Writes the "Bad input" table of RELIABILITY.md.
//!
//! A plugin whose sha256 does not match its `weir.lock` entry is in `plugin_lock.rs`
//! (`installed_plugins_are_pinned_verified_and_signed`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use common::{reliability, stderr, stdout};

const HEADER: &str = "order_id,amount,updated_at\n";
const GOOD: &str = "1,10.5,2024-01-01T00:00:00Z\n2,20.5,2024-01-01T00:00:01Z\n";

/// A pipeline (no plugins: the inputs are the subject) in a temp dir, with its `data/`.
struct Catalogue {
    dir: tempfile::TempDir,
    pipeline: PathBuf,
}

impl Catalogue {
    /// `extra` is appended to the pipeline file (checks, a second sink's settings).
    fn new(pattern: &str, mode: &str, extra: &str) -> Catalogue {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let pipeline = dir.path().join("pipeline.toml");
        let text = format!(
            r#"name = "catalogue"

[source]
kind = "files"
path = "{pattern}"
incremental = {{ cursor = "updated_at" }}
schema = {{ order_id = "int64", updated_at = "timestamp" }}

[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"
{mode}
{extra}"#
        );
        std::fs::write(&pipeline, text).unwrap();
        Catalogue { dir, pipeline }
    }

    fn csv() -> Catalogue {
        Catalogue::new("data/*.csv", "", "")
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) {
        std::fs::write(self.dir.path().join("data").join(name), bytes).unwrap();
    }

    fn run(&self) -> Output {
        common::run(&self.pipeline)
    }

    fn state(&self) -> String {
        common::state_show(&self.pipeline)
    }

    /// The last line of stderr, the temp dir shown as `TMP`.
    fn error(&self, out: &Output) -> String {
        let text = stderr(out);
        let last = text.lines().last().unwrap_or_default();
        last.replace(&self.dir.path().display().to_string(), "TMP")
    }

    /// `(order_id, amount)` of the warehouse, by id.
    fn rows(&self) -> Vec<(i64, f64)> {
        let db = self.dir.path().join("warehouse.db");
        if !db.exists() {
            return Vec::new();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let url = format!("sqlite://{}", db.display());
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query_as("SELECT order_id, amount FROM orders ORDER BY order_id")
                .fetch_all(&pool)
                .await
                .unwrap_or_default()
        })
    }

    /// Loads `a.csv` (two good rows), as the run before the bad input.
    fn good_load(&self) {
        self.write("a.csv", format!("{HEADER}{GOOD}"));
        let out = self.run();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(self.rows(), vec![(1, 10.5), (2, 20.5)]);
    }
}

/// One row of the RELIABILITY.md table.
struct Tried {
    case: &'static str,
    input: &'static str,
    outcome: String,
    took: Duration,
}

/// A file of the bad load.
fn file(name: &'static str, bytes: impl Into<Vec<u8>>) -> (&'static str, Vec<u8>) {
    (name, bytes.into())
}

/// After a good load, `files` must fail the run with exit code 1 and exactly `expected`
/// (after `error: pipeline TMP/pipeline.toml: `), loading nothing of them and leaving the
/// state as the good load left it.
fn refused(
    case: &'static str,
    input: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    expected: &str,
) -> Tried {
    let catalogue = Catalogue::csv();
    catalogue.good_load();
    refused_after(&catalogue, case, input, files, expected)
}

/// [`refused`] after whatever load `catalogue` has had.
fn refused_after(
    catalogue: &Catalogue,
    case: &'static str,
    input: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    expected: &str,
) -> Tried {
    let (rows, state) = (catalogue.rows(), catalogue.state());
    for (name, bytes) in files {
        catalogue.write(name, bytes);
    }
    let started = Instant::now();
    let out = catalogue.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{case}: {}", stderr(&out));
    let full = format!("error: pipeline TMP/pipeline.toml: {expected}");
    assert_eq!(catalogue.error(&out), full, "{case}");
    assert_eq!(catalogue.rows(), rows, "{case}: the warehouse changed");
    assert_eq!(catalogue.state(), state, "{case}: the state changed");
    Tried {
        case,
        input,
        outcome: format!("`` {expected} ``; nothing loaded, watermark unchanged"),
        took,
    }
}

fn rows_of(count: usize, first: usize) -> String {
    (first..first + count)
        .map(|i| {
            format!(
                "{i},{i}.5,2024-02-01T00:{:02}:{:02}Z\n",
                i / 60 % 60,
                i % 60
            )
        })
        .collect()
}

#[test]
fn every_bad_input_fails_with_its_exact_error_and_loads_nothing() {
    let mut tried = vec![
        refused(
            "ragged row",
            "a row with a field more than the header",
            vec![file(
                "b.csv",
                format!("{HEADER}3,1.5,2024-02-01T00:00:00Z\n4,2.5,2024-02-01T00:00:01Z,oops\n"),
            )],
            "data/b.csv row 2: 4 fields where the header has 3 (a ragged row, or a quote left \
             open that runs into the next lines)",
        ),
        refused(
            "ragged row, past the rows read to infer types",
            "a row short of a field at row 5000",
            vec![file(
                "b.csv",
                format!("{HEADER}{}5002,1.5\n", rows_of(4999, 3)),
            )],
            "data/b.csv row 5000: 2 fields where the header has 3 (a ragged row, or a quote \
             left open that runs into the next lines)",
        ),
        refused(
            "bad quoting",
            "a quote left open in the middle of the file",
            vec![file(
                "b.csv",
                format!(
                    "{HEADER}{}3000,\"2.5,2024-02-01T00:00:00Z\n{}",
                    rows_of(2997, 3),
                    rows_of(5, 3001)
                ),
            )],
            // The open quote swallows the rest of the file into one field.
            "data/b.csv row 2998: 2 fields where the header has 3 (a ragged row, or a quote \
             left open that runs into the next lines)",
        ),
        refused(
            "wrong encoding",
            "Latin-1 bytes in a UTF-8 file",
            vec![file(
                "b.csv",
                b"order_id,amount,updated_at,note\n3,1.5,2024-02-01T00:00:00Z,caf\xe9\n",
            )],
            "data/b.csv row 1: `note` is not UTF-8 text; Weir reads CSV and NDJSON files as \
             UTF-8 (convert the file, e.g. `iconv -f latin1 -t utf-8`)",
        ),
        refused(
            "type mismatch, declared column",
            "`order_id` (declared int64) holding text",
            vec![file(
                "b.csv",
                format!("{HEADER}A-17,1.5,2024-02-01T00:00:00Z\n"),
            )],
            "data/b.csv row 1: `order_id` = 'A-17' is not a valid int64",
        ),
        refused(
            "type mismatch, inferred column",
            "`amount` numeric in the first 1000 rows, `n/a` at row 1500",
            vec![file(
                "b.csv",
                format!(
                    "{HEADER}{}1502,n/a,2024-02-01T01:00:00Z\n",
                    rows_of(1499, 3)
                ),
            )],
            "data/b.csv row 1500: `amount` = 'n/a' is not a valid float64 (the type was \
             inferred from the file's first rows; declare the column in `source.schema`, e.g. \
             amount = \"utf8\", to read it as written)",
        ),
        refused(
            "value out of range",
            "an order_id past int64",
            vec![file(
                "b.csv",
                format!("{HEADER}99999999999999999999,1.5,2024-02-01T00:00:00Z\n"),
            )],
            "data/b.csv row 1: `order_id` = '99999999999999999999' is out of range for int64",
        ),
        refused(
            "timestamp out of range",
            "a cursor in the year 10000",
            vec![file(
                "b.csv",
                format!("{HEADER}3,1.5,10000-01-01T00:00:00Z\n"),
            )],
            "data/b.csv row 1: `updated_at` = '10000-01-01T00:00:00Z' is not a valid timestamp",
        ),
        refused(
            "schema drift between files",
            "a second file with a column more",
            vec![
                file("b.csv", format!("{HEADER}3,1.5,2024-02-01T00:00:00Z\n")),
                file(
                    "c.csv",
                    "order_id,amount,updated_at,coupon\n4,1.5,2024-02-01T00:00:01Z,SAVE10\n",
                ),
            ],
            "data/c.csv: its columns differ from those of data/b.csv (the load's first file): \
             `coupon` (utf8) is new; every file of a load must have the same columns",
        ),
        refused(
            "NULL cursor",
            "a row without `updated_at`",
            vec![file(
                "b.csv",
                format!("{HEADER}3,1.5,2024-02-01T00:00:00Z\n4,2.5,\n"),
            )],
            "data/b.csv row 2: cursor column `updated_at` is null; an incremental load needs a \
             cursor on every row",
        ),
    ];
    tried.push(truncated_parquet());
    tried.push(path_outside_the_root());
    tried.extend(empty_sources());
    tried.extend(duplicate_merge_keys());

    let rows: Vec<String> = tried
        .iter()
        .map(|t| {
            format!(
                // Lost and duplicated are 0: each case compares the warehouse row by row.
                "| {} | {} | 1 | 0 | 0 | {:.2} s | {} |",
                t.case,
                t.input,
                t.took.as_secs_f64(),
                t.outcome.replace('|', "\\|")
            )
        })
        .collect();
    reliability::write_section("bad-input", &rows);
}

/// Orders as Parquet, in the CSV files' columns and types.
fn parquet(first: i64, count: i64) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("amount", DataType::Float64, false),
        Field::new(
            "updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]));
    let ids: Vec<i64> = (first..first + count).collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|&i| i as f64 + 0.5),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    ids.iter().map(|&i| 1_704_067_200_000_000 + i * 1_000_000),
                )
                .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    bytes
}

fn truncated_parquet() -> Tried {
    let catalogue = Catalogue::new("data/*.parquet", "", "");
    catalogue.write("a.parquet", parquet(1, 2));
    let out = catalogue.run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let whole = parquet(3, 1000);
    let half = whole[..whole.len() / 2].to_vec();
    refused_after(
        &catalogue,
        "truncated Parquet",
        "a Parquet file cut in the middle",
        vec![file("b.parquet", half)],
        "data/b.parquet: not a readable Parquet file: Parquet error: Invalid Parquet file. \
         Corrupt footer",
    )
}

fn path_outside_the_root() -> Tried {
    let catalogue = Catalogue::csv();
    catalogue.write("a.csv", format!("{HEADER}{GOOD}"));
    let escape = "../../../../../../../../../../etc/weir";
    let text = std::fs::read_to_string(&catalogue.pipeline).unwrap();
    let escaping = text.replace(
        "path = \"warehouse.db\"",
        &format!("path = \"{escape}.db\""),
    );
    std::fs::write(&catalogue.pipeline, escaping).unwrap();
    let started = Instant::now();
    let out = catalogue.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = format!(
        "TMP/pipeline.toml:12: sinks[0].path: `{escape}.db` resolves to /etc/weir.db, outside \
         TMP (the pipeline file's directory; a weir.toml with [paths] root or allow widens \
         it); local paths must stay under it"
    );
    assert_eq!(catalogue.error(&out), format!("error: {expected}"));
    assert!(!Path::new("/etc/weir.db").exists());

    // The same for a source, written as an absolute path.
    let reading = text.replace("path = \"data/*.csv\"", "path = \"/etc/*.conf\"");
    std::fs::write(&catalogue.pipeline, reading).unwrap();
    let out = catalogue.run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        catalogue.error(&out),
        "error: TMP/pipeline.toml:5: source.path: `/etc/*.conf` resolves to /etc/*.conf, \
         outside TMP (the pipeline file's directory; a weir.toml with [paths] root or allow \
         widens it); local paths must stay under it"
    );
    // A project file can allow a directory.
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("a.csv"), format!("{HEADER}{GOOD}")).unwrap();
    let pattern = format!("{}/*.csv", outside.path().display());
    let allowed = text.replace("path = \"data/*.csv\"", &format!("path = \"{pattern}\""));
    std::fs::write(&catalogue.pipeline, allowed).unwrap();
    let out = catalogue.run();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let allow = format!("[paths]\nallow = [{:?}]\n", outside.path());
    std::fs::write(catalogue.dir.path().join("weir.toml"), allow).unwrap();
    let out = catalogue.run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(catalogue.rows(), vec![(1, 10.5), (2, 20.5)]);
    Tried {
        case: "path outside the root",
        input: "a sink at `../../…/etc/weir.db`; a source at `/etc/*.conf`",
        outcome: format!("`` {expected} `` (and the same for `source.path`); nothing written"),
        took,
    }
}

fn empty_sources() -> Vec<Tried> {
    let catalogue = Catalogue::csv();
    let started = Instant::now();
    let out = catalogue.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected = "nothing new to load: no file matches `data/*.csv` (watermark (none))";
    assert!(stdout(&out).contains(expected), "{}", stdout(&out));
    assert!(catalogue.rows().is_empty());
    let no_files = Tried {
        case: "empty source",
        input: "a pattern that matches no file",
        outcome: format!("exit 0, `` {expected} ``; no table created"),
        took,
    };

    catalogue.write("a.csv", "");
    catalogue.write("b.csv", HEADER);
    let started = Instant::now();
    let out = catalogue.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rows read                 0"),
        "{}",
        stdout(&out)
    );
    assert!(catalogue.rows().is_empty());
    assert!(
        catalogue.state().contains("watermark (none)"),
        "{}",
        catalogue.state()
    );
    // Rows added later arrive.
    catalogue.write("c.csv", format!("{HEADER}{GOOD}"));
    let out = catalogue.run();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(catalogue.rows(), vec![(1, 10.5), (2, 20.5)]);
    let empty_files = Tried {
        case: "empty files",
        input: "a 0-byte file and a file with only the header",
        outcome: "exit 0, 0 rows read, watermark unchanged; a later file loads normally".into(),
        took,
    };
    vec![no_files, empty_files]
}

fn duplicate_merge_keys() -> Vec<Tried> {
    let merge = "mode = \"merge\"\nkeys = [\"order_id\"]";
    let twice = format!("{HEADER}3,1.5,2024-02-01T00:00:00Z\n3,9.5,2024-02-01T00:00:01Z\n");

    // Documented: within one merge load, the last row of a key wins.
    let catalogue = Catalogue::new("data/*.csv", merge, "");
    catalogue.write("a.csv", &twice);
    let started = Instant::now();
    let out = catalogue.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(catalogue.rows(), vec![(3, 9.5)]);
    let last_wins = Tried {
        case: "duplicate keys in a merge load",
        input: "order_id 3 twice in one load",
        outcome: "the last row of the key wins (documented): one row, amount 9.5".into(),
        took,
    };

    // With a `unique` check on the key, the load stops and names both rows.
    let check = "\n[[checks]]\ncheck = \"unique\"\ncolumn = \"order_id\"\n";
    let catalogue = Catalogue::new("data/*.csv", merge, check);
    catalogue.write("a.csv", &twice);
    let started = Instant::now();
    let out = catalogue.run();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let expected = "validation failed; nothing was loaded and the watermark is unchanged\n  \
                    unique(order_id): 1 row\n  e.g. data/a.csv row 2: failed unique(order_id)";
    assert_eq!(stderr(&out).trim_end(), format!("error: {expected}"));
    assert!(catalogue.rows().is_empty());
    assert!(catalogue.state().contains("watermark (none)"));
    let checked = Tried {
        case: "duplicate keys in a merge load, `unique` check",
        input: "the same, with a `unique` check on order_id",
        outcome: format!(
            "exit 2, `` {} ``; nothing loaded, watermark unchanged",
            expected.replace('\n', " ")
        ),
        took,
    };
    vec![last_wins, checked]
}
