//! Generated orders, a project directory with a pipeline file, and readers of what landed
//! in SQLite and Parquet: shared by the `host run` end-to-end tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;

/// One generated order and what the pipeline must do with it.
pub struct Order {
    pub id: i64,
    pub customer: Option<i64>,
    pub amount: f64,
    pub rate: f64,
    pub date: String,
    pub date_ok: bool,
    pub updated: String,
}

impl Order {
    /// Kept by the transform: a customer and a positive total.
    pub fn kept(&self) -> bool {
        self.customer.is_some() && self.amount * self.rate > 0.0
    }
    pub fn loads(&self) -> bool {
        self.kept() && self.date_ok
    }
    pub fn quarantined(&self) -> bool {
        self.kept() && !self.date_ok
    }
    pub fn month(&self) -> String {
        self.date[..7].to_string()
    }
}

/// `count` orders from id `first`, updated one minute apart from `minute`.
pub fn orders(first: i64, count: i64, minute: i64) -> Vec<Order> {
    (0..count)
        .map(|i| {
            let id = first + i;
            let month = 1 + (id % 3);
            let date_ok = id % 17 != 0;
            Order {
                id,
                customer: (id % 11 != 0).then_some(id % 97),
                amount: if id % 7 == 0 {
                    -5.0
                } else {
                    10.0 + (id % 50) as f64
                },
                rate: [1.0, 1.1, 0.9][(id % 3) as usize],
                date: if date_ok {
                    format!("2024-{month:02}-{:02}T10:00:00Z", 1 + id % 27)
                } else {
                    "yesterday".into()
                },
                date_ok,
                updated: format!(
                    "2024-06-01T{:02}:{:02}:00Z",
                    (minute + i) / 60,
                    (minute + i) % 60
                ),
            }
        })
        .collect()
}

pub fn csv(orders: &[Order]) -> String {
    let mut out =
        "order_id,customer_id,amount,currency,exchange_rate,order_date,updated_at\n".to_string();
    for o in orders {
        let customer = o.customer.map(|c| c.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{customer},{},USD,{},{},{}",
            o.id, o.amount, o.rate, o.date, o.updated
        );
    }
    out
}

pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        Project { dir }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn write_data(&self, name: &str, orders: &[Order]) {
        std::fs::write(self.path(&format!("data/{name}")), csv(orders)).unwrap();
    }

    /// A pipeline file: the orders plugins, a not-null date check, and the given sinks.
    pub fn pipeline(&self, on_fail: &str, sinks: &str) -> PathBuf {
        self.pipeline_at("data/*.csv", "quarantine", on_fail, sinks)
    }

    /// [`Project::pipeline`] with the source pattern and the quarantine dataset elsewhere
    /// (on S3, say); `rest` holds the sinks and any other tables.
    pub fn pipeline_at(
        &self,
        source: &str,
        quarantine: &str,
        on_fail: &str,
        rest: &str,
    ) -> PathBuf {
        let c = super::components();
        let text = format!(
            r#"name = "orders"
on_fail = "{on_fail}"

[source]
kind = "files"
path = "{source}"
batch_size = 100
incremental = {{ cursor = "updated_at" }}
schema = {{ updated_at = "timestamp" }}

[[steps]]
kind = "transform"
plugin = "{transform}"

[[steps]]
kind = "validate"
plugin = "{validator}"

[[checks]]
check = "not_null"
column = "order_date"

[quarantine]
path = "{quarantine}"

{rest}
"#,
            transform = c.orders_transform.display(),
            validator = c.orders_validator.display(),
        );
        let path = self.path("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn run(&self, pipeline: &Path, fault: Option<&str>) -> Output {
        let mut host = super::host();
        host.args(["run", "--quiet"]).arg(pipeline);
        if let Some(fault) = fault {
            host.env("WEIR_FAULT", fault);
        }
        host.output().unwrap()
    }

    pub fn host(&self, args: &[&str]) -> Output {
        super::host().args(args).output().unwrap()
    }
}

pub const SQLITE_APPEND: &str = r#"
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "warehouse.db"
table = "orders"
"#;

pub const PARQUET_BY_MONTH: &str = r#"
[[sinks]]
kind = "parquet"
name = "lake"
path = "lake"
partition_by = "order_month"
"#;

/// The first column of the rows `sql` selects from the SQLite database `db`, in order, or the
/// query's error (no table, say). The database itself must open. `sql` is the test's own
/// fixed text.
pub fn query_column<T>(db: &Path, sql: &str) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let rows: Vec<(T,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&pool)
            .await?;
        Ok(rows.into_iter().map(|(value,)| value).collect())
    })
}

/// The `order_id`s of the SQLite table, or the query's error (no table, say).
fn order_ids(db: &Path) -> Result<Vec<i64>, sqlx::Error> {
    query_column(db, "SELECT order_id FROM orders")
}

/// `order_id`s in the SQLite table, with their multiplicity.
pub fn sqlite_ids(db: &Path) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for id in order_ids(db).unwrap() {
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// Every row of a Parquet dataset (outside `_weir_` directories), with its partition.
pub fn parquet_rows(root: &Path) -> Vec<(String, RecordBatch)> {
    let mut out = Vec::new();
    for entry in glob::glob(&format!("{}/**/*.parquet", root.display())).unwrap() {
        let path = entry.unwrap();
        let relative = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative.starts_with("_weir") {
            continue;
        }
        let partition = relative.split('/').next().unwrap_or("").to_string();
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            out.push((partition.clone(), batch.unwrap()));
        }
    }
    out
}

pub fn parquet_ids(root: &Path) -> BTreeMap<i64, usize> {
    let mut ids = BTreeMap::new();
    for (_, batch) in parquet_rows(root) {
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

pub fn once(ids: impl IntoIterator<Item = i64>) -> BTreeMap<i64, usize> {
    ids.into_iter().map(|id| (id, 1)).collect()
}

/// `order_id`s in the SQLite table; none when the table does not exist.
pub fn sqlite_ids_or_empty(db: &Path) -> BTreeSet<i64> {
    order_ids(db)
        .map(|ids| ids.into_iter().collect())
        .unwrap_or_default()
}
