//! The pipeline file, as plain serde types. Defaults live here; checks that need more than
//! one field live in `validate.rs`. Paths are relative to the pipeline file's directory.
//!
//! The file writes enum variants as a tag inside the table (`kind = "sqlite"`, `check =
//! "range"`), but the enums here are externally tagged (`{ sqlite = { .. } }`): serde buffers
//! internally tagged enums, which loses every span inside them (`Spanned` fields then fail to
//! deserialize, and errors cannot name the key). `config::load` moves the tag out before
//! deserializing, so deserialize a `Pipeline` through `config::load`, not `toml::from_str`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::project::Zone;
use crate::plugin::{Grants, LimitOverrides, RowPolicy};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Names the pipeline in state, load ids and reports.
    pub name: Spanned<String>,
    pub source: Source,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// Built-in checks, run after the steps.
    #[serde(default)]
    pub checks: Vec<Spanned<Check>>,
    /// What a failed check (built-in or validator plugin) does to the load.
    #[serde(default)]
    pub on_fail: OnFail,
    #[serde(default)]
    pub quarantine: Option<Quarantine>,
    /// Keep an immutable Parquet copy of each extracted load, before the steps, in the
    /// project's raw zone (`<raw>/<name>/load_date=YYYY-MM-DD/`).
    #[serde(default)]
    pub keep_raw: bool,
    /// How many batches go through the plugin steps at once, each on its own instances of
    /// the steps' plugins: up to one per core helps. Only for plugins that carry nothing
    /// from one batch to the next.
    #[serde(default = "default_parallel_batches")]
    pub parallel_batches: usize,
    pub sinks: Vec<Sink>,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub state: StateConfig,
    /// How `s3://` paths reach S3; unset keys come from the `AWS_*` environment variables.
    #[serde(default)]
    pub s3: S3Settings,
}

fn default_parallel_batches() -> usize {
    1
}

/// Rows per batch when a source does not say. Small enough that a batch, its copy in a
/// plugin's memory and the plugin's answer stay in the CPU's caches (two lanes of the orders
/// transform: ~8% faster than at 65,536 rows); large enough that per-batch costs (a plugin
/// call, a SQLite transaction) stay small (the orders pipeline: the same time at both sizes,
/// and a fifth less memory).
pub const DEFAULT_BATCH_SIZE: usize = 32_768;

/// The most batches `parallel_batches` may put through the steps at once.
pub const MAX_PARALLEL_BATCHES: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    Files(FileSource),
    Postgres(DatabaseSource),
    Sqlite(DatabaseSource),
    Http(HttpSource),
}

impl Source {
    pub fn incremental(&self) -> Option<&Incremental> {
        match self {
            Source::Files(files) => files.incremental.as_ref(),
            Source::Postgres(database) | Source::Sqlite(database) => database.incremental.as_ref(),
            Source::Http(http) => http.incremental.as_ref(),
        }
    }

    /// The source's own retry policy; an HTTP source retries each request instead
    /// (`max_retries`).
    pub fn retry(&self) -> Option<RetryPolicy> {
        match self {
            Source::Files(files) => files.retry,
            Source::Postgres(database) | Source::Sqlite(database) => database.retry,
            Source::Http(_) => None,
        }
    }
}

/// A JSON API read with GET requests, page by page (reqwest).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// `https://api.example.com/v1/orders`; write secrets as `${VAR}`.
    pub url: Spanned<String>,
    /// Query parameters sent with every request (strings, numbers or booleans).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Request headers (`Authorization = "Bearer ${API_TOKEN}"`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Where the records are in a response: a dotted path to an array (`data.items`); by
    /// default the body itself is the array.
    #[serde(default)]
    pub records: Option<String>,
    #[serde(default)]
    pub pagination: Pagination,
    /// Per request, connecting and reading the whole body included.
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    /// Retries of one request after a timeout, a connection error, 429 or 5xx.
    #[serde(default = "default_http_max_retries")]
    pub max_retries: u32,
    /// The first retry's delay when the response has no `Retry-After`; doubling.
    #[serde(default = "default_http_backoff_ms")]
    pub backoff_ms: u64,
    /// Requests per second at most (retries included).
    #[serde(default)]
    pub rate_limit: Option<f64>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// Declared column types (`order_id = "int64"`); other columns are inferred from the
    /// first page with records.
    #[serde(default)]
    pub schema: BTreeMap<String, Spanned<ColumnType>>,
}

fn default_http_timeout_ms() -> u64 {
    30_000
}

fn default_http_max_retries() -> u32 {
    5
}

fn default_http_backoff_ms() -> u64 {
    1_000
}

/// How an HTTP source finds the next page. (Internally tagged: no `Spanned` fields inside.)
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// One request.
    #[default]
    None,
    /// `?page=1`, `?page=2`, ... until a page has no records (or fewer than `size`).
    Page {
        #[serde(default = "default_page_param")]
        param: String,
        #[serde(default = "default_page_start")]
        start: i64,
        /// The page size parameter (`per_page`) and its value.
        #[serde(default)]
        size_param: Option<String>,
        #[serde(default)]
        size: Option<u64>,
    },
    /// `?offset=0&limit=100`, then `offset=100`, ... until a page has fewer than `limit`.
    Offset {
        #[serde(default = "default_offset_param")]
        param: String,
        #[serde(default = "default_limit_param")]
        limit_param: String,
        limit: u64,
    },
    /// The response names the next page's token (`next` is its dotted JSON path), sent back
    /// as `param`; no token (missing, null or "") ends the pages.
    Cursor { next: String, param: String },
    /// The `Link: <url>; rel="next"` response header (RFC 8288) names the next page.
    Link,
}

fn default_page_param() -> String {
    "page".into()
}

fn default_page_start() -> i64 {
    1
}

fn default_offset_param() -> String {
    "offset".into()
}

fn default_limit_param() -> String {
    "limit".into()
}

/// A table or a query in a database, read through sqlx.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSource {
    /// `postgres://user:${PGPASSWORD}@host:5432/db` (write secrets as `${VAR}`), or
    /// `sqlite://shop.db` (relative to the pipeline file).
    pub url: Spanned<String>,
    /// A table (`orders` or `schema.orders`); or `query`.
    #[serde(default)]
    pub table: Option<Spanned<String>>,
    /// A `SELECT` whose rows are read; or `table`.
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// This step's own retry policy for the transient errors it raises (default: `[retry]`).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// A file or a glob (`data/orders/*.csv`), relative to the pipeline file.
    pub path: Spanned<String>,
    /// Default: from the file extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub incremental: Option<Incremental>,
    /// Declared column types (`order_id = "int64"`); unlisted columns are inferred.
    #[serde(default)]
    pub schema: BTreeMap<String, Spanned<ColumnType>>,
    /// This step's own retry policy for the transient errors it raises (default: `[retry]`).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Ndjson,
    Parquet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Int64,
    Float64,
    Utf8,
    Bool,
    Date,
    /// Microseconds, UTC.
    Timestamp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    /// Only rows with `cursor > watermark` are read.
    pub cursor: Spanned<String>,
    /// The watermark before the first run (default: read everything).
    #[serde(default)]
    pub initial: Option<String>,
    /// HTTP sources: the query parameter the watermark is sent as (`updated_since`).
    #[serde(default)]
    pub param: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    Transform(PluginStep),
    Validate(PluginStep),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginStep {
    /// An installed plugin's name (`name` or `name@version`, from `weir.lock`), or a path:
    /// a plugin crate directory (built on first use) or a `.wasm` component.
    pub plugin: Spanned<String>,
    /// The plugin's settings, handed to its `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Each limit set here replaces the plugin manifest's default.
    #[serde(default)]
    pub limits: LimitOverrides,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub rows: RowPolicy,
    /// Run an installed plugin that is not signed by a trusted key.
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Whose plugin this is: the step is held to that tenant's limits (`[tenants.NAME]`
    /// in `weir.toml`).
    pub tenant: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    NotNull {
        column: String,
    },
    /// Unique within the load.
    Unique {
        column: String,
    },
    Range {
        column: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    AcceptedValues {
        column: String,
        values: Vec<String>,
    },
    Regex {
        column: String,
        pattern: String,
    },
    /// Rows in the load (after the steps).
    RowCount {
        min: Option<u64>,
        max: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// Nothing of the load is written.
    #[default]
    Abort,
    /// Failing rows go to the quarantine dataset; the rest loads.
    Quarantine,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quarantine {
    /// Directory of the quarantine Parquet dataset.
    pub path: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sink {
    Sqlite(SqliteSink),
    Postgres(PostgresSink),
    Parquet(ParquetSink),
}

impl Sink {
    /// The sink's own retry policy, if it has one.
    pub fn retry(&self) -> Option<RetryPolicy> {
        match self {
            Sink::Sqlite(s) => s.retry,
            Sink::Postgres(s) => s.retry,
            Sink::Parquet(s) => s.retry,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Sink::Sqlite(s) => &s.name,
            Sink::Postgres(s) => &s.name,
            Sink::Parquet(s) => &s.name,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSink {
    pub name: String,
    /// `postgres://user:${PGPASSWORD}@host:5432/db`; write secrets as `${VAR}`.
    pub url: Spanned<String>,
    /// `orders` or `schema.orders` (created from the load's columns if missing).
    pub table: Spanned<String>,
    #[serde(default = "default_mode")]
    pub mode: Spanned<ModeName>,
    /// The partition column of `replace_partition`.
    #[serde(default)]
    pub partition_by: Option<String>,
    /// The key columns of `merge`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// What to do when the table's columns differ from the load's.
    #[serde(default)]
    pub schema: SchemaPolicy,
    /// This step's own retry policy for the transient errors it raises (default: `[retry]`).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

/// Schema drift between a load and an existing table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaPolicy {
    /// The load's columns must be exactly the table's.
    #[default]
    Strict,
    /// New columns are added (nullable); table columns the load lacks get NULL. A changed
    /// type always fails.
    Evolve,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSink {
    pub name: String,
    /// The database file, relative to the pipeline file (created if missing).
    pub path: Spanned<String>,
    pub table: Spanned<String>,
    #[serde(default = "default_mode")]
    pub mode: Spanned<ModeName>,
    /// The partition column of `replace_partition`.
    #[serde(default)]
    pub partition_by: Option<String>,
    /// The key columns of `merge`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// This step's own retry policy for the transient errors it raises (default: `[retry]`).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSink {
    pub name: String,
    /// Dataset root directory, relative to the pipeline file, or to `zone`'s root.
    pub path: Spanned<String>,
    /// A lake zone of the project (`weir.toml`) the dataset lives in.
    #[serde(default)]
    pub zone: Option<Zone>,
    /// Hive partitioning column (`order_month=2024-01/`); also the partition of `replace_partition`.
    #[serde(default)]
    pub partition_by: Option<String>,
    #[serde(default = "default_mode")]
    pub mode: Spanned<ModeName>,
    /// The key columns of `merge`.
    #[serde(default)]
    pub keys: Vec<String>,
    /// Rows a file holds at most (a batch that would overflow one is split).
    #[serde(default = "default_rows_per_file")]
    pub rows_per_file: u64,
    /// This step's own retry policy for the transient errors it raises (default: `[retry]`).
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
}

fn default_rows_per_file() -> u64 {
    crate::load::parquet::DEFAULT_ROWS_PER_FILE
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    #[default]
    Append,
    ReplacePartition,
    Merge,
}

/// `append`, where the file says nothing (`Spanned` has no `Default`; the span is empty).
fn default_mode() -> Spanned<ModeName> {
    Spanned::new(0..0, ModeName::Append)
}

/// How a load meets what the sink already holds (resolved from `mode`, `partition_by` and
/// `keys` by validation). All modes are idempotent per load id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadMode {
    Append,
    /// Delete the partitions (values of `column`) the load touches, then insert.
    ReplacePartition {
        column: String,
    },
    /// Upsert on `keys`.
    Merge {
        keys: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub multiplier: f64,
    /// Randomise each delay between half and all of it.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_delay_ms: 200,
            max_delay_ms: 10_000,
            multiplier: 2.0,
            jitter: true,
        }
    }
}

/// The `[s3]` table. Credentials must be written as `${VAR}` (validation refuses them in
/// clear), so they stay out of the file and are masked in every message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// An S3-compatible server (`https://…`); default: AWS, from the region.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow an `http://` endpoint.
    pub allow_http: Option<bool>,
    /// `https://bucket.host/key` instead of the path style `https://host/bucket/key` (the
    /// default, which S3-compatible servers understand).
    pub virtual_hosted_style: Option<bool>,
    /// Per request, from connecting to the end of the response (`"5s"`, `"500ms"`, `"2m"`;
    /// default 30 s): a request still unanswered then is abandoned and retried, so a stalled
    /// connection costs this long, not a hung run.
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// The sled database directory, relative to the pipeline file.
    pub path: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            path: ".weir/state".into(),
        }
    }
}
