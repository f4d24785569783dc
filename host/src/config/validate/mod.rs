//! Every rule serde cannot express: rules across keys, non-empty names, and plugin paths on
//! disk, by part of the pipeline (source, steps, sinks) and here what spans them. Each error
//! points at the key that has to change.

mod sink;
mod source;
mod step;

use std::path::Path;

use super::ConfigError;
use super::error::Locator;
use super::project::{FILE_NAME, Project, Zone};
use super::root::Roots;
use super::types::{
    LoadMode, MAX_PARALLEL_BATCHES, OnFail, Pipeline, S3Settings, Sink, Source, Step,
};
use crate::store::{Location, S3_SCHEME};

use sink::sinks;
pub use source::SQLITE_SCHEME;
use source::{database_source, file_source, http_source};
use step::{builtin_check, plugin_path, tenant};

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
    if !(1..=MAX_PARALLEL_BATCHES).contains(&pipeline.parallel_batches) {
        return Err(at.at_key(
            "parallel_batches",
            format!("must be from 1 to {MAX_PARALLEL_BATCHES}"),
        ));
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

fn postgres_url(url: &str, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(());
    }
    Err(at.at_key(
        key,
        "expected a URL like `postgres://user:${PGPASSWORD}@host:5432/database`",
    ))
}

fn not_blank(value: &str, key: &str, at: &Locator<'_>) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(at.at_key(key, "must not be empty"));
    }
    Ok(())
}
