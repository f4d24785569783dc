//! Every rule serde cannot express: rules across keys, non-empty names, and plugin paths on
//! disk. One place, so the rules and their messages read together. Each error points at the
//! key that has to change.

use std::path::Path;

use super::ConfigError;
use super::document::child_key;
use super::error::Locator;
use super::project::{FILE_NAME, Project, Zone};
use super::root::Roots;
use super::types::{
    Check, DatabaseSource, FileSource, HttpSource, LoadMode, ModeName, OnFail, Pagination,
    Pipeline, PluginStep, S3Settings, Sink, Source, Step,
};
use crate::plugin::build::Language;
use crate::registry::PluginRef;
use crate::store::{Location, S3_SCHEME};

/// Checks `pipeline` and resolves each sink's load mode (same order as `sinks`).
pub(super) fn validate(
    pipeline: &Pipeline,
    base_dir: &Path,
    project: Option<&Project>,
    at: &Locator<'_>,
) -> Result<Vec<LoadMode>, ConfigError> {
    not_blank(pipeline.name.get_ref(), "name", at)?;
    match &pipeline.source {
        Source::Files(files) => file_source(files, at)?,
        Source::Postgres(database) => {
            postgres_url(database.url.get_ref(), "source.url", at)?;
            database_source(database, at)?
        }
        Source::Sqlite(database) => {
            if !database.url.get_ref().starts_with(SQLITE_SCHEME) {
                let message = "expected a URL like `sqlite://data/shop.db` (relative to this file)";
                return Err(at.at_key("source.url", message));
            }
            database_source(database, at)?
        }
        Source::Http(http) => http_source(http, at)?,
    }
    if !matches!(pipeline.source, Source::Http(_))
        && pipeline
            .source
            .incremental()
            .is_some_and(|i| i.param.is_some())
    {
        return Err(at.at_key(
            "source.incremental.param",
            "only an http source sends the watermark as a query parameter; remove `param`",
        ));
    }
    for (i, step) in pipeline.steps.iter().enumerate() {
        let (Step::Transform(plugin) | Step::Validate(plugin)) = step;
        plugin_path(plugin, base_dir, project, &format!("steps[{i}].plugin"), at)?;
        tenant(plugin, project, &format!("steps[{i}]"), at)?;
    }
    for (i, check) in pipeline.checks.iter().enumerate() {
        builtin_check(check.get_ref(), &format!("checks[{i}]"), at)?;
    }
    match &pipeline.quarantine {
        Some(quarantine) => store_path(quarantine.path.get_ref(), "quarantine.path", at)?,
        None if pipeline.on_fail == OnFail::Quarantine => {
            return Err(at.at_key(
                "on_fail",
                "`quarantine` needs a [quarantine] table with the dataset's `path`",
            ));
        }
        None => {}
    }
    let step_policies = std::iter::once(("source.retry".to_string(), pipeline.source.retry()))
        .chain(
            (pipeline.sinks.iter().enumerate())
                .map(|(i, s)| (format!("sinks[{i}].retry"), s.retry())),
        );
    let policies =
        std::iter::once(("retry".to_string(), Some(pipeline.retry))).chain(step_policies);
    for (key, policy) in policies {
        if policy.is_some_and(|p| p.attempts == 0) {
            return Err(at.at_key(
                &format!("{key}.attempts"),
                "must be at least 1 (it counts the first try)",
            ));
        }
    }
    local_only(
        &pipeline.state.path,
        "state.path",
        "the state is a local sled database",
        at,
    )?;
    s3(&pipeline.s3, at)?;
    if pipeline.keep_raw {
        zone_configured(Zone::Raw, project, "keep_raw", at)?;
    }
    let modes = sinks(&pipeline.sinks, project, at)?;
    within_root(pipeline, base_dir, project, at)?;
    Ok(modes)
}

/// Every local path the pipeline reads or writes stays under the project's root (see
/// [`super::root`]); `s3://` paths and lake zones (rooted by the project file) are not
/// local to the pipeline.
fn within_root(
    pipeline: &Pipeline,
    base_dir: &Path,
    project: Option<&Project>,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let mut paths: Vec<(String, &str)> = Vec::new();
    match &pipeline.source {
        Source::Files(files) => paths.push(("source.path".into(), files.path.get_ref())),
        Source::Sqlite(database) => {
            let file = database.url.get_ref().trim_start_matches(SQLITE_SCHEME);
            let file = file.split_once('?').map_or(file, |(file, _)| file);
            paths.push(("source.url".into(), file));
        }
        Source::Postgres(_) | Source::Http(_) => {}
    }
    if let Some(quarantine) = &pipeline.quarantine {
        paths.push(("quarantine.path".into(), quarantine.path.get_ref()));
    }
    paths.push(("state.path".into(), &pipeline.state.path));
    for (i, sink) in pipeline.sinks.iter().enumerate() {
        match sink {
            Sink::Sqlite(s) => paths.push((format!("sinks[{i}].path"), s.path.get_ref())),
            Sink::Parquet(s) if s.zone.is_none() => {
                paths.push((format!("sinks[{i}].path"), s.path.get_ref()))
            }
            Sink::Parquet(_) | Sink::Postgres(_) => {}
        }
    }
    let roots = Roots::of(base_dir, project);
    for (key, path) in paths {
        if !path.starts_with(S3_SCHEME) {
            roots
                .check(path, base_dir)
                .map_err(|message| at.at_key(&key, at.secrets().redact(&message)))?;
        }
    }
    Ok(())
}

/// A zone a pipeline uses must have a root in the project file.
fn zone_configured(
    zone: Zone,
    project: Option<&Project>,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    match project {
        Some(p) if p.zone_root(zone).is_some() => Ok(()),
        Some(p) => Err(at.at_key(
            key,
            format!(
                "the `{}` zone has no root: add `{} = \"<directory>\"` under [lake] in {}",
                zone.name(),
                zone.name(),
                p.file.display()
            ),
        )),
        None => Err(at.at_key(
            key,
            format!(
                "the `{}` zone needs a project file: a `{FILE_NAME}` beside the pipeline or in a \
                 parent directory, with `{} = \"<directory>\"` under [lake]",
                zone.name(),
                zone.name()
            ),
        )),
    }
}

/// A directory or dataset path: local, or `s3://BUCKET/PREFIX`.
fn store_path(path: &str, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    not_blank(path, key, at)?;
    // Only the URL's syntax is checked here: local paths are resolved when opened.
    Location::parse(path, Path::new(""))
        .map(drop)
        .map_err(|e| at.at_key(key, e.to_string()))
}

fn local_only(path: &str, key: &str, what: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    if path.starts_with(S3_SCHEME) {
        return Err(at.at_key(key, format!("{what}: an s3:// path cannot hold it")));
    }
    Ok(())
}

fn s3(s3: &S3Settings, at: &Locator<'_>) -> Result<(), ConfigError> {
    if let Some(endpoint) = &s3.endpoint
        && !endpoint.starts_with("https://")
        && !endpoint.starts_with("http://")
    {
        let message = "must be a URL starting with https:// (or http:// with allow_http = true)";
        return Err(at.at_key("s3.endpoint", message));
    }
    if let Some(region) = &s3.region {
        not_blank(region, "s3.region", at)?;
    }
    if let Some(timeout) = &s3.timeout {
        // object_store reads the same humantime syntax; checked here to name the line.
        let parsed = humantime::parse_duration(timeout);
        if !parsed.is_ok_and(|d| !d.is_zero()) {
            let message = format!(
                "`{timeout}` is not a timeout: write a number and a unit, e.g. \"30s\", \"500ms\" or \"2m\""
            );
            return Err(at.at_key("s3.timeout", message));
        }
    }
    if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
        let message = "`access_key_id` and `secret_access_key` go together: set both or neither (neither: taken from AWS_* variables)";
        let key = match s3.access_key_id {
            Some(_) => "s3.access_key_id",
            None => "s3.secret_access_key",
        };
        return Err(at.at_key(key, message));
    }
    let secrets = [
        ("s3.secret_access_key", &s3.secret_access_key),
        ("s3.session_token", &s3.session_token),
    ];
    for (key, value) in secrets {
        // A substituted value is one `redact` masks; a value written in clear is not.
        if let Some(value) = value
            && at.secrets().redact(value) == *value
        {
            let message = "write it as `${VARIABLE}` so that the secret stays out of the pipeline file (e.g. \"${AWS_SECRET_ACCESS_KEY}\")";
            return Err(at.at_key(key, message));
        }
    }
    Ok(())
}

fn file_source(files: &FileSource, at: &Locator<'_>) -> Result<(), ConfigError> {
    store_path(files.path.get_ref(), "source.path", at)?;
    batch_and_cursor(files.batch_size, &files.incremental, at)
}

/// The `url` prefix of a SQLite source; the rest is the database file's path.
pub const SQLITE_SCHEME: &str = "sqlite://";

fn database_source(database: &DatabaseSource, at: &Locator<'_>) -> Result<(), ConfigError> {
    match (&database.table, &database.query) {
        (Some(table), None) => not_blank(table.get_ref(), "source.table", at)?,
        (None, Some(query)) => not_blank(query.get_ref(), "source.query", at)?,
        (Some(_), Some(_)) => {
            return Err(at.at_key("source.query", "give `table` or `query`, not both"));
        }
        (None, None) => {
            return Err(at.at_key(
                "source",
                "a database source needs `table` (a table name) or `query` (a SELECT)",
            ));
        }
    }
    batch_and_cursor(database.batch_size, &database.incremental, at)
}

fn http_source(http: &HttpSource, at: &Locator<'_>) -> Result<(), ConfigError> {
    match reqwest::Url::parse(http.url.get_ref()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        // The URL itself is not quoted: it may hold a secret the redaction cannot see once
        // the parser has re-encoded it.
        _ => {
            return Err(at.at_key(
                "source.url",
                "expected an http:// or https:// URL like `https://api.example.com/v1/orders`",
            ));
        }
    }
    for (name, value) in &http.params {
        if !matches!(
            value,
            toml::Value::String(_)
                | toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
        ) {
            return Err(at.at_key(
                &child_key("source.params", name),
                format!(
                    "expected a string, number or boolean, found {}",
                    value.type_str()
                ),
            ));
        }
    }
    for (name, value) in &http.headers {
        let key = child_key("source.headers", name);
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(at.at_key(&key, "not a valid HTTP header name"));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            return Err(at.at_key(
                &key,
                "not a valid HTTP header value (visible ASCII only, no line breaks)",
            ));
        }
    }
    if let Some(records) = &http.records
        && records.split('.').any(|segment| segment.trim().is_empty())
    {
        return Err(at.at_key(
            "source.records",
            "expected a dotted path to the records array, like `data.items`",
        ));
    }
    match &http.pagination {
        Pagination::None | Pagination::Link => {}
        Pagination::Page {
            param,
            size_param,
            size,
            ..
        } => {
            not_blank(param, "source.pagination.param", at)?;
            match (size_param, size) {
                (Some(size_param), Some(size)) => {
                    not_blank(size_param, "source.pagination.size_param", at)?;
                    if *size == 0 {
                        return Err(at.at_key("source.pagination.size", "must be greater than 0"));
                    }
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(at.at_key(
                        "source.pagination.size_param",
                        "needs `size`, the page size to ask for",
                    ));
                }
                (None, Some(_)) => {
                    return Err(at.at_key(
                        "source.pagination.size",
                        "needs `size_param`, the query parameter it is sent as (`per_page`)",
                    ));
                }
            }
        }
        Pagination::Offset {
            param,
            limit_param,
            limit,
        } => {
            not_blank(param, "source.pagination.param", at)?;
            not_blank(limit_param, "source.pagination.limit_param", at)?;
            if *limit == 0 {
                return Err(at.at_key("source.pagination.limit", "must be greater than 0"));
            }
        }
        Pagination::Cursor { next, param } => {
            not_blank(next, "source.pagination.next", at)?;
            not_blank(param, "source.pagination.param", at)?;
        }
    }
    if http.timeout_ms == 0 {
        return Err(at.at_key("source.timeout_ms", "must be greater than 0"));
    }
    if let Some(rate) = http.rate_limit
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(at.at_key(
            "source.rate_limit",
            "must be a positive number of requests per second",
        ));
    }
    if let Some(param) = http.incremental.as_ref().and_then(|i| i.param.as_ref()) {
        not_blank(param.get_ref(), "source.incremental.param", at)?;
    }
    batch_and_cursor(http.batch_size, &http.incremental, at)
}

fn batch_and_cursor(
    batch_size: usize,
    incremental: &Option<super::types::Incremental>,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    if batch_size == 0 {
        return Err(at.at_key("source.batch_size", "must be greater than 0"));
    }
    if let Some(incremental) = incremental {
        not_blank(
            incremental.cursor.get_ref(),
            "source.incremental.cursor",
            at,
        )?;
    }
    Ok(())
}

fn postgres_url(url: &str, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(());
    }
    Err(at.at_key(
        key,
        "expected a URL like `postgres://user:${PGPASSWORD}@host:5432/database`",
    ))
}

/// A step's tenant must be one the project defines, and the step may not ask for more than
/// the tenant's ceilings.
fn tenant(
    step: &PluginStep,
    project: Option<&Project>,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let Some(name) = &step.tenant else {
        return Ok(());
    };
    let name = name.get_ref();
    let key_tenant = format!("{key}.tenant");
    let Some(project) = project else {
        return Err(at.at_key(
            &key_tenant,
            format!(
                "tenant `{name}` needs a project file: a `{FILE_NAME}` beside the pipeline or above it, with a [tenants.{name}] table"
            ),
        ));
    };
    let tenants = &project.settings.tenants;
    let Some(limits) = tenants.get(name) else {
        let known = tenants.keys().map(String::as_str).collect::<Vec<_>>();
        return Err(at.at_key(
            &key_tenant,
            format!(
                "unknown tenant `{name}`: {} defines {}",
                project.file.display(),
                if known.is_empty() {
                    "no [tenants.NAME] tables".to_string()
                } else {
                    format!("tenants {}", known.join(", "))
                }
            ),
        ));
    };
    let ceilings = [
        ("memory_mib", step.limits.memory_mib, limits.memory_mib),
        ("timeout_ms", step.limits.timeout_ms, limits.timeout_ms),
    ];
    for (limit, asked, ceiling) in ceilings {
        if let (Some(asked), Some(ceiling)) = (asked, ceiling)
            && asked > ceiling
        {
            return Err(at.at_key(
                &format!("{key}.limits.{limit}"),
                format!(
                    "{asked} is over tenant `{name}`'s ceiling of {ceiling} ({} [tenants.{name}])",
                    project.file.display()
                ),
            ));
        }
    }
    Ok(())
}

/// A plugin is an installed plugin's name (looked up in the project's `weir.lock` when the
/// pipeline is planned), a crate directory (built on first use) or a `.wasm` component.
fn plugin_path(
    step: &PluginStep,
    base_dir: &Path,
    project: Option<&Project>,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    let written = step.plugin.get_ref();
    not_blank(written, key, at)?;
    if let PluginRef::Installed { .. } = PluginRef::parse(written) {
        if project.is_none() {
            return Err(at.at_key(
                key,
                format!(
                    "`{written}` names an installed plugin, but there is no {FILE_NAME} beside the pipeline or above it (installed plugins are pinned in the weir.lock beside it); write a path with a `/` for a plugin crate or .wasm file"
                ),
            ));
        }
        return Ok(());
    }
    let path = base_dir.join(written);
    let expected =
        "expected a plugin project directory (Rust, JavaScript or Python) or a .wasm component";
    let problem = if path.is_dir() {
        if Language::detect(&path).is_ok() {
            return Ok(());
        }
        "is a directory without Cargo.toml, package.json or pyproject.toml"
    } else if path.is_file() {
        if path.extension().is_some_and(|ext| ext == "wasm") {
            return Ok(());
        }
        "is a file that is not a .wasm component"
    } else {
        "does not exist"
    };
    Err(at.at_key(
        key,
        format!(
            "plugin `{written}` {problem} (looked at {}); {expected}",
            path.display()
        ),
    ))
}

fn builtin_check(check: &Check, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    let column = |column: &str| not_blank(column, &format!("{key}.column"), at);
    match check {
        Check::NotNull { column: name } | Check::Unique { column: name } => column(name),
        Check::Range {
            column: name,
            min,
            max,
        } => {
            column(name)?;
            bounds(*min, *max, "range", key, at)
        }
        Check::RowCount { min, max } => bounds(*min, *max, "row_count", key, at),
        Check::AcceptedValues {
            column: name,
            values,
        } => {
            column(name)?;
            if values.is_empty() {
                return Err(at.at_key(&format!("{key}.values"), "needs at least one value"));
            }
            Ok(())
        }
        Check::Regex {
            column: name,
            pattern,
        } => {
            column(name)?;
            regex::Regex::new(pattern).map(drop).map_err(|e| {
                at.at_key(
                    &format!("{key}.pattern"),
                    format!("invalid regex: {}", regex_reason(&e)),
                )
            })
        }
    }
}

fn bounds<T: PartialOrd>(
    min: Option<T>,
    max: Option<T>,
    name: &str,
    key: &str,
    at: &Locator<'_>,
) -> Result<(), ConfigError> {
    match (min, max) {
        (None, None) => Err(at.at_key(key, format!("a `{name}` check needs `min`, `max` or both"))),
        (Some(min), Some(max)) if min > max => {
            Err(at.at_key(&format!("{key}.min"), "is greater than `max`"))
        }
        _ => Ok(()),
    }
}

/// The regex crate's syntax errors span several lines (pattern, caret, reason); the reason
/// is the last one.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

fn sinks(
    sinks: &[Sink],
    project: Option<&Project>,
    at: &Locator<'_>,
) -> Result<Vec<LoadMode>, ConfigError> {
    if sinks.is_empty() {
        return Err(at.at_key("sinks", "at least one sink is needed"));
    }
    let mut modes = Vec::with_capacity(sinks.len());
    for (i, sink) in sinks.iter().enumerate() {
        let key = format!("sinks[{i}]");
        not_blank(sink.name(), &format!("{key}.name"), at)?;
        if let Some(first) = sinks[..i]
            .iter()
            .position(|other| other.name() == sink.name())
        {
            let message = format!(
                "duplicate sink name `{}` (also the name of sinks[{first}])",
                sink.name()
            );
            return Err(at.at_key(&format!("{key}.name"), message));
        }
        let path_key = format!("{key}.path");
        let (mode, partition_by, keys) = match sink {
            Sink::Sqlite(s) => {
                not_blank(s.path.get_ref(), &path_key, at)?;
                not_blank(s.table.get_ref(), &format!("{key}.table"), at)?;
                let what = "a SQLite database is a local file";
                local_only(s.path.get_ref(), &path_key, what, at)?;
                (*s.mode.get_ref(), &s.partition_by, &s.keys)
            }
            Sink::Postgres(s) => {
                postgres_url(s.url.get_ref(), &format!("{key}.url"), at)?;
                not_blank(s.table.get_ref(), &format!("{key}.table"), at)?;
                (*s.mode.get_ref(), &s.partition_by, &s.keys)
            }
            Sink::Parquet(s) => {
                store_path(s.path.get_ref(), &path_key, at)?;
                if let Some(zone) = s.zone {
                    zone_configured(zone, project, &format!("{key}.zone"), at)?;
                }
                (*s.mode.get_ref(), &s.partition_by, &s.keys)
            }
        };
        if let Some(column) = partition_by {
            not_blank(column, &format!("{key}.partition_by"), at)?;
        }
        for (j, column) in keys.iter().enumerate() {
            not_blank(column, &format!("{key}.keys[{j}]"), at)?;
        }
        modes.push(load_mode(mode, partition_by, keys, &key, at)?);
    }
    Ok(modes)
}

fn load_mode(
    mode: ModeName,
    partition_by: &Option<String>,
    keys: &[String],
    key: &str,
    at: &Locator<'_>,
) -> Result<LoadMode, ConfigError> {
    let keys_unused = |name: &str| {
        let message = format!("`keys` only applies to mode `merge` (this sink's mode is `{name}`)");
        at.at_key(&format!("{key}.keys"), message)
    };
    match mode {
        ModeName::Append if !keys.is_empty() => Err(keys_unused("append")),
        ModeName::Append => Ok(LoadMode::Append),
        ModeName::ReplacePartition if !keys.is_empty() => Err(keys_unused("replace_partition")),
        ModeName::ReplacePartition => match partition_by {
            Some(column) => Ok(LoadMode::ReplacePartition { column: column.clone() }),
            None => Err(at.at_key(
                &format!("{key}.mode"),
                "mode `replace_partition` needs `partition_by` (the column whose partitions are replaced)",
            )),
        },
        ModeName::Merge if keys.is_empty() => {
            Err(at.at_key(&format!("{key}.mode"), "mode `merge` needs `keys` (the key columns to upsert on)"))
        }
        ModeName::Merge => Ok(LoadMode::Merge { keys: keys.to_vec() }),
    }
}

fn not_blank(value: &str, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(at.at_key(key, "must not be empty"));
    }
    Ok(())
}
