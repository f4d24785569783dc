//! A pipeline made ready to run: source opened, plugins built and loaded, sinks connected.
//! `host validate` stops here; `host plan` prints it; `host run` executes it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::LoadedPipeline;
use crate::config::project::Zone;
use crate::config::types::Check as CheckSpec;
use crate::config::types::{self, LoadMode, OnFail, PluginStep, Source, Step};
use crate::extract::file::{FileSource, FileSpec};
use crate::extract::http::{HttpSource, HttpSpec};
use crate::extract::postgres::PostgresSource;
use crate::extract::sqlite::SqliteSource;
use crate::extract::{Part, Source as SourceImpl};
use crate::extract::{QuerySpec, Relation};
use crate::load::Sink;
use crate::load::parquet::ParquetSink;
use crate::load::postgres::PostgresSink;
use crate::load::sqlite::SqliteSink;
use crate::plugin::build::{BuildOptions, build};
use crate::plugin::{Plugin, PluginKind, Runtime, StepPolicy, Tenant};
use crate::registry::{PluginRef, Store};
use crate::store::Location;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{step}: {message}")]
    Plugin { step: String, message: String },
    #[error(transparent)]
    Extract(#[from] crate::extract::ExtractError),
    #[error("sink `{sink}`: {source}")]
    Sink {
        sink: String,
        source: crate::load::LoadError,
    },
    #[error(transparent)]
    Runtime(#[from] crate::plugin::RuntimeError),
}

/// The raw zone's partition column: the UTC date of the load.
pub const RAW_PARTITION: &str = "load_date";

/// One plugin step, loaded.
pub struct PlannedStep {
    pub label: String,
    pub plugin: Plugin,
    pub config_json: String,
    pub policy: StepPolicy,
    /// Whose plugin it is; its calls pass through that tenant's gate and budget.
    pub tenant: Option<Tenant>,
}

pub struct Plan {
    pub name: String,
    pub source: Box<dyn SourceImpl>,
    pub cursor: Option<String>,
    pub initial_watermark: Option<String>,
    pub transforms: Vec<PlannedStep>,
    pub validators: Vec<PlannedStep>,
    pub checks: Vec<CheckSpec>,
    pub on_fail: OnFail,
    /// Batches in the plugin steps at once (see `engine::lanes`).
    pub parallel_batches: usize,
    pub sinks: Vec<Arc<dyn Sink>>,
    pub quarantine: Option<Arc<dyn Sink>>,
    /// The raw zone's dataset for this pipeline, when it keeps raw copies.
    pub raw: Option<Arc<dyn Sink>>,
    pub retry: types::RetryPolicy,
    /// The source's and the sinks' own policies (sinks by name), where they have one.
    pub source_retry: Option<types::RetryPolicy>,
    pub sink_retry: BTreeMap<String, types::RetryPolicy>,
    pub state_dir: PathBuf,
}

impl Plan {
    pub async fn new(
        loaded: &LoadedPipeline,
        runtime: &Runtime,
        quiet: bool,
    ) -> Result<Plan, PlanError> {
        let pipeline = &loaded.pipeline;
        let (source, incremental) = open_source(loaded)?;

        let mut transforms = Vec::new();
        let mut validators = Vec::new();
        for (index, step) in pipeline.steps.iter().enumerate() {
            let (wanted, step) = match step {
                Step::Transform(s) => (PluginKind::Transformer, s),
                Step::Validate(s) => (PluginKind::Validator, s),
            };
            let label = format!("steps[{index}] ({})", step.plugin.get_ref());
            let (plugin, policy, tenant) =
                load_step(runtime, loaded, step, quiet).map_err(|message| PlanError::Plugin {
                    step: label.clone(),
                    message,
                })?;
            if plugin.kind() != wanted {
                return Err(PlanError::Plugin {
                    step: label,
                    message: format!(
                        "`kind = \"{}\"` but the plugin is a {}",
                        kind_name(wanted),
                        plugin.kind().as_str()
                    ),
                });
            }
            let planned = PlannedStep {
                label,
                plugin,
                config_json: crate::config::plugin_config_json(step),
                policy,
                tenant,
            };
            match wanted {
                PluginKind::Transformer => transforms.push(planned),
                PluginKind::Validator => validators.push(planned),
            }
        }

        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        for (sink, mode) in pipeline.sinks.iter().zip(&loaded.modes) {
            sinks.push(open_sink(loaded, sink, mode.clone()).await?);
        }
        let quarantine = match &pipeline.quarantine {
            Some(q) => Some(Arc::new(
                parquet_sink(
                    loaded,
                    "quarantine",
                    q.path.get_ref(),
                    None,
                    LoadMode::Append,
                )
                .map_err(|source| PlanError::Sink {
                    sink: "quarantine".into(),
                    source,
                })?,
            ) as Arc<dyn Sink>),
            None => None,
        };
        let raw = match (pipeline.keep_raw, &loaded.project) {
            (true, Some(project)) => {
                let root = project
                    .zone_root(Zone::Raw)
                    .expect("validation checked the raw zone");
                let location = format!("{root}/{}", pipeline.name.get_ref());
                let partition = Some(RAW_PARTITION.to_string());
                let sink = parquet_sink(loaded, "raw", &location, partition, LoadMode::Append)
                    .map_err(|source| PlanError::Sink {
                        sink: "raw".into(),
                        source,
                    })?;
                Some(Arc::new(sink) as Arc<dyn Sink>)
            }
            _ => None,
        };
        Ok(Plan {
            name: pipeline.name.get_ref().clone(),
            source,
            cursor: incremental.map(|i| i.cursor.get_ref().clone()),
            initial_watermark: incremental.and_then(|i| i.initial.clone()),
            transforms,
            validators,
            checks: pipeline
                .checks
                .iter()
                .map(|c| c.get_ref().clone())
                .collect(),
            on_fail: pipeline.on_fail,
            parallel_batches: pipeline.parallel_batches,
            sinks,
            quarantine,
            raw,
            retry: pipeline.retry,
            source_retry: pipeline.source.retry(),
            sink_retry: (pipeline.sinks.iter())
                .filter_map(|s| Some((s.name().to_string(), s.retry()?)))
                .collect(),
            state_dir: loaded.resolve(&pipeline.state.path),
        })
    }
}

fn kind_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Transformer => "transform",
        PluginKind::Validator => "validate",
    }
}

async fn open_sink(
    loaded: &LoadedPipeline,
    sink: &types::Sink,
    mode: LoadMode,
) -> Result<Arc<dyn Sink>, PlanError> {
    let error = |source| PlanError::Sink {
        sink: sink.name().to_string(),
        source,
    };
    Ok(match sink {
        types::Sink::Sqlite(s) => Arc::new(
            SqliteSink::connect(
                &s.name,
                &loaded.resolve(s.path.get_ref()),
                s.table.get_ref(),
                mode,
            )
            .await
            .map_err(error)?,
        ),
        types::Sink::Postgres(s) => Arc::new(
            PostgresSink::connect(&s.name, s.url.get_ref(), s.table.get_ref(), mode, s.schema)
                .await
                .map_err(error)?,
        ),
        types::Sink::Parquet(s) => Arc::new(
            parquet_sink(
                loaded,
                &s.name,
                &loaded.dataset_location(s.path.get_ref(), s.zone),
                s.partition_by.clone(),
                mode,
            )
            .map_err(error)?
            .with_rows_per_file(s.rows_per_file),
        ),
    })
}

/// A Parquet dataset at `path` as the pipeline file writes it (local or `s3://`).
fn parquet_sink(
    loaded: &LoadedPipeline,
    name: &str,
    path: &str,
    partition_by: Option<String>,
    mode: LoadMode,
) -> Result<ParquetSink, crate::load::LoadError> {
    let location =
        Location::parse(path, &loaded.base_dir).map_err(|cause| crate::load::LoadError::Open {
            sink: name.into(),
            cause,
        })?;
    ParquetSink::open(name, &location, &loaded.pipeline.s3, partition_by, mode)
}

/// A step's plugin, installed (checked against the lock and its signature) or from a path,
/// the policy it runs under (the step's limits over the manifest's, held to its tenant's
/// ceilings, and its grants, which must cover every capability the component imports), and
/// its tenant.
fn load_step(
    runtime: &Runtime,
    loaded: &LoadedPipeline,
    step: &PluginStep,
    quiet: bool,
) -> Result<(Plugin, StepPolicy, Option<Tenant>), String> {
    let plugin = match PluginRef::parse(step.plugin.get_ref()) {
        PluginRef::Path(path) => load_plugin(runtime, &loaded.resolve(path), quiet)?,
        PluginRef::Installed { name, version } => {
            let project = loaded
                .project
                .as_ref()
                .expect("validation requires a project for installed plugins");
            Store::open(project)
                .and_then(|store| store.load(runtime, name, version, step.allow_unsigned))
                .map_err(|e| e.to_string())?
        }
    };
    plugin
        .check_grants(&step.grants)
        .map_err(|e| e.to_string())?;
    let tenant = step.tenant.as_ref().map(|name| {
        let name = name.get_ref();
        let limits = loaded
            .project
            .as_ref()
            .and_then(|p| p.settings.tenants.get(name))
            .expect("validation requires the project to define the tenant");
        runtime.tenant(name, limits)
    });
    let mut limits = step.limits.over(plugin.default_limits());
    if let Some(tenant) = &tenant {
        limits = tenant.limits().cap(limits);
    }
    let policy = StepPolicy {
        limits,
        grants: step.grants,
        rows: step.rows,
    };
    Ok((plugin, policy, tenant))
}

/// A plugin from a crate directory (built first) or a `.wasm` component.
fn load_plugin(runtime: &Runtime, path: &Path, quiet: bool) -> Result<Plugin, String> {
    let component = if path.is_dir() {
        build(
            path,
            &BuildOptions {
                quiet,
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?
        .path
    } else {
        path.to_path_buf()
    };
    runtime.load(&component).map_err(|e| e.to_string())
}

/// The pipeline's source, and its incremental settings.
fn open_source(
    loaded: &LoadedPipeline,
) -> Result<(Box<dyn SourceImpl>, Option<&types::Incremental>), crate::extract::ExtractError> {
    let incremental = loaded.pipeline.source.incremental();
    let source: Box<dyn SourceImpl> = match &loaded.pipeline.source {
        Source::Files(files) => {
            let spec = FileSpec {
                pattern: files.path.get_ref().clone(),
                format: files.format,
                batch_size: files.batch_size,
                declared: files
                    .schema
                    .iter()
                    .map(|(k, v)| (k.clone(), *v.get_ref()))
                    .collect(),
            };
            Box::new(FileSource::open(
                &loaded.base_dir,
                spec,
                &loaded.pipeline.s3,
            )?)
        }
        Source::Postgres(database) => Box::new(PostgresSource::new(
            database.url.get_ref(),
            query_spec(database),
        )?),
        Source::Sqlite(database) => {
            let written = database.url.get_ref();
            let path = &written[crate::config::SQLITE_SCHEME.len()..];
            let spec = query_spec(database);
            Box::new(SqliteSource::new(&loaded.resolve(path), path, spec)?)
        }
        Source::Http(http) => Box::new(HttpSource::new(http_spec(http), loaded.redactor())?),
    };
    Ok((source, incremental))
}

fn query_spec(database: &types::DatabaseSource) -> QuerySpec {
    let relation = match (&database.table, &database.query) {
        (Some(table), _) => Relation::Table(table.get_ref().clone()),
        (None, query) => Relation::Query(
            query
                .as_ref()
                .map(|q| q.get_ref().clone())
                .unwrap_or_default(),
        ),
    };
    QuerySpec {
        relation,
        batch_size: database.batch_size,
        cursor: database
            .incremental
            .as_ref()
            .map(|i| i.cursor.get_ref().clone()),
    }
}

fn http_spec(http: &types::HttpSource) -> HttpSpec {
    let text = |value: &toml::Value| match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    HttpSpec {
        url: http.url.get_ref().clone(),
        params: http
            .params
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
        headers: http.headers.clone().into_iter().collect(),
        records: http.records.clone(),
        pagination: http.pagination.clone(),
        timeout: std::time::Duration::from_millis(http.timeout_ms),
        max_retries: http.max_retries,
        backoff: std::time::Duration::from_millis(http.backoff_ms),
        rate_limit: http.rate_limit,
        batch_size: http.batch_size,
        watermark_param: http
            .incremental
            .as_ref()
            .and_then(|i| i.param.as_ref().map(|p| p.get_ref().clone())),
        declared: http
            .schema
            .iter()
            .map(|(k, v)| (k.clone(), *v.get_ref()))
            .collect(),
    }
}

/// What `host validate` and `host plan` report about a pipeline without running it.
pub struct Report {
    /// What the source holds now (files, or the query), in reading order.
    pub parts: Vec<Part>,
    /// The first part's schema, or `None` when no file matches yet.
    pub source_schema: Option<arrow::datatypes::SchemaRef>,
    /// The schema after each transform, in order.
    pub step_schemas: Vec<(String, arrow::datatypes::SchemaRef)>,
    pub problems: Vec<String>,
}

/// Load every plugin and follow the schema from the source through the transforms to the
/// checks and the cursor: every column a check or a mode names must exist.
pub async fn check(loaded: &LoadedPipeline, runtime: &Runtime) -> Result<Report, PlanError> {
    let pipeline = &loaded.pipeline;
    let (source, incremental) = open_source(loaded)?;
    let mut problems = Vec::new();
    let mut step_schemas = Vec::new();
    let found = source.list().await?;
    let source_schema = match found.first() {
        Some(part) => Some(source.schema(part).await?),
        None => {
            problems.push(format!("no file matches `{}` yet", source_label(loaded)));
            None
        }
    };
    let mut schema = source_schema.clone();
    if let (Some(schema), Some(incremental)) = (&schema, incremental)
        && schema
            .field_with_name(incremental.cursor.get_ref())
            .is_err()
    {
        problems.push(format!(
            "the cursor column `{}` is not in the source",
            incremental.cursor.get_ref()
        ));
    }
    for (index, step) in pipeline.steps.iter().enumerate() {
        let (Step::Transform(s) | Step::Validate(s)) = step;
        let label = format!("steps[{index}] ({})", s.plugin.get_ref());
        let (plugin, policy, _tenant) =
            load_step(runtime, loaded, s, true).map_err(|message| PlanError::Plugin {
                step: label.clone(),
                message,
            })?;
        match (step, plugin.kind()) {
            (Step::Transform(_), PluginKind::Transformer) => {
                if let Some(input) = &schema {
                    let mut session = plugin
                        .transform_session(&crate::config::plugin_config_json(s), policy)
                        .map_err(|e| PlanError::Plugin {
                            step: label.clone(),
                            message: e.to_string(),
                        })?;
                    let output = session
                        .output_schema(input)
                        .map_err(|e| PlanError::Plugin {
                            step: label.clone(),
                            message: e.to_string(),
                        })?;
                    step_schemas.push((label, output.clone()));
                    schema = Some(output);
                }
            }
            (Step::Validate(_), PluginKind::Validator) => {
                plugin
                    .instantiate_once(&policy)
                    .map_err(|e| PlanError::Plugin {
                        step: label,
                        message: e.to_string(),
                    })?;
            }
            (_, found) => problems.push(format!(
                "{label}: the plugin is a {}, not what `kind` says",
                found.as_str()
            )),
        }
    }
    if let Some(schema) = &schema {
        let missing = |column: &str| schema.field_with_name(column).is_err();
        for check in &pipeline.checks {
            let column = match check.get_ref() {
                CheckSpec::NotNull { column }
                | CheckSpec::Unique { column }
                | CheckSpec::Range { column, .. }
                | CheckSpec::AcceptedValues { column, .. }
                | CheckSpec::Regex { column, .. } => column,
                CheckSpec::RowCount { .. } => continue,
            };
            if missing(column) {
                problems.push(format!(
                    "check `{}` names column `{column}`, which the steps do not produce",
                    crate::validate::check_name(check.get_ref())
                ));
            }
        }
        for (sink, mode) in pipeline.sinks.iter().zip(&loaded.modes) {
            let columns: Vec<&String> = match mode {
                LoadMode::Append => Vec::new(),
                LoadMode::ReplacePartition { column } => vec![column],
                LoadMode::Merge { keys } => keys.iter().collect(),
            };
            for column in columns.into_iter().filter(|c| missing(c)) {
                problems.push(format!(
                    "sink `{}` needs column `{column}`, which the steps do not produce",
                    sink.name()
                ));
            }
        }
    }
    Ok(Report {
        parts: found,
        source_schema,
        step_schemas,
        problems,
    })
}

/// The source as the pipeline file names it (never a URL: it may hold a password).
pub fn source_label(loaded: &LoadedPipeline) -> String {
    match &loaded.pipeline.source {
        Source::Files(files) => files.path.get_ref().clone(),
        Source::Postgres(database) | Source::Sqlite(database) => {
            let kind = match &loaded.pipeline.source {
                Source::Sqlite(_) => "sqlite",
                _ => "postgres",
            };
            match (&database.table, &database.query) {
                (Some(table), _) => format!("{kind} table {}", table.get_ref()),
                _ => format!("{kind} query"),
            }
        }
        Source::Http(http) => loaded.redact(http.url.get_ref()),
    }
}
