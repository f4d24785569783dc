//! `host run`, `host validate` and `host plan`: a pipeline file in, a run or a report out.

use std::path::Path;

use anyhow::Context;

use super::Outcome;
use crate::config;
use crate::engine::{self, RunError, RunOptions};
use crate::plan::{self, Plan};
use crate::plugin::Runtime;
use crate::state::{SledState, StateStore};

pub(super) fn tokio() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Errors quote paths and settings from the pipeline file (an S3 URL, say): mask every value
/// that came from the environment, as the file's own errors do.
fn redacted(loaded: &config::LoadedPipeline, error: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!(loaded.redact(&format!("{error:#}")))
}

pub fn run(file: &Path, quiet: bool) -> anyhow::Result<Outcome> {
    let loaded = config::load(file)?;
    let runtime = Runtime::new()?;
    let outcome = tokio()?.block_on(async {
        let mut plan = Plan::new(&loaded, &runtime, quiet).await?;
        match engine::run(&mut plan, RunOptions { quiet }).await {
            Ok(summary) => {
                println!("{summary}");
                if summary.rows_quarantined > 0 {
                    eprintln!(
                        "warning: {} rows failed checks and were quarantined",
                        summary.rows_quarantined
                    );
                    return Ok(Outcome::Quarantined);
                }
                Ok(Outcome::Success)
            }
            Err(e @ RunError::Validation(_)) => {
                eprintln!("error: {}", loaded.redact(&e.to_string()));
                Ok(Outcome::ValidationFailed)
            }
            Err(e) => Err(e).with_context(|| format!("pipeline {}", file.display())),
        }
    });
    outcome.map_err(|e| redacted(&loaded, e))
}

pub fn validate(file: &Path) -> anyhow::Result<Outcome> {
    let loaded = config::load(file)?;
    let runtime = Runtime::new()?;
    let report = tokio()?.block_on(plan::check(&loaded, &runtime));
    let report = report.map_err(|e| redacted(&loaded, e.into()))?;
    for (step, schema) in &report.step_schemas {
        println!("{step}: produces {}", columns(schema));
    }
    if report.problems.is_empty() {
        println!("{}: ok", file.display());
        Ok(Outcome::Success)
    } else {
        for problem in &report.problems {
            println!("{}: {problem}", file.display());
        }
        anyhow::bail!("{} problem(s) in {}", report.problems.len(), file.display())
    }
}

pub fn plan(file: &Path) -> anyhow::Result<Outcome> {
    let loaded = config::load(file)?;
    let runtime = Runtime::new()?;
    let pipeline = &loaded.pipeline;
    let shown = tokio()?.block_on(async {
        let report = plan::check(&loaded, &runtime).await?;
        println!("pipeline {}", pipeline.name.get_ref());
        if let Some(schema) = &report.source_schema {
            println!(
                "source   {} → {}",
                plan::source_label(&loaded),
                columns(schema)
            );
        }
        for (step, schema) in &report.step_schemas {
            println!("step     {step} → {}", columns(schema));
        }
        for check in &pipeline.checks {
            println!(
                "check    {} (on fail: {:?})",
                crate::validate::check_name(check.get_ref()),
                pipeline.on_fail
            );
        }
        for (sink, mode) in pipeline.sinks.iter().zip(&loaded.modes) {
            println!("sink     {} ({mode:?})", sink.name());
        }
        let state = SledState::open(&loaded.resolve(&pipeline.state.path))?;
        let name = pipeline.name.get_ref();
        let watermark = state.watermark(name)?;
        println!(
            "watermark {}",
            watermark.as_deref().unwrap_or("(none: reads everything)")
        );
        if let Some(pending) = state.pending_load(name)? {
            println!(
                "pending  load {} was interrupted; the next run replays it",
                pending.load_id
            );
        }
        let consumed = state.consumed_files(name)?;
        let (files, queries): (Vec<_>, Vec<_>) =
            report.parts.iter().partition(|p| p.fingerprint.is_some());
        let new: Vec<_> = files
            .iter()
            .filter(|f| consumed.get(&f.name) != f.fingerprint.as_ref())
            .collect();
        if !files.is_empty() || queries.is_empty() {
            println!("would read {} of {} files:", new.len(), files.len());
        }
        for file in new {
            let size = file.fingerprint.as_ref().map_or(0, |f| f.size);
            println!("  {} ({size} bytes)", file.name);
        }
        for query in queries {
            match pipeline.source.incremental().map(|i| i.cursor.get_ref()) {
                Some(cursor) => println!(
                    "would read {}: rows with `{cursor}` past the watermark",
                    query.name
                ),
                None => println!(
                    "would read {}: every row (no `incremental` cursor)",
                    query.name
                ),
            }
        }
        for problem in &report.problems {
            println!("problem  {problem}");
        }
        Ok(Outcome::Success)
    });
    shown.map_err(|e| redacted(&loaded, e))
}

fn columns(schema: &arrow::datatypes::Schema) -> String {
    schema
        .fields()
        .iter()
        .filter(|f| !f.name().starts_with("_weir_"))
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}
