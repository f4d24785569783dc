//! `host run`, `host validate` and `host plan`: a pipeline file in, a run or a report out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use futures::FutureExt;

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

/// Run one pipeline, or several at once in this process: they share one plugin runtime, so
/// tenants' limits (`max_instances`) hold across them, and one state database per directory.
pub fn run(files: &[PathBuf], quiet: bool) -> anyhow::Result<Outcome> {
    let loaded = files
        .iter()
        .map(|file| config::load(file))
        .collect::<Result<Vec<_>, _>>()?;
    // A progress bar per pipeline would interleave: several print plain lines.
    let quiet = quiet || files.len() > 1;
    let runtime = Runtime::new()?;
    let tokio = tokio()?;
    let mut states: HashMap<PathBuf, SledState> = HashMap::new();
    let mut runs = Vec::new();
    for (file, loaded) in files.iter().zip(loaded) {
        let plan = tokio.block_on(Plan::new(&loaded, &runtime, quiet));
        let plan = plan.map_err(|e| redacted(&loaded, anyhow::Error::from(e)))?;
        let dir = std::path::absolute(&plan.state_dir)?;
        let state = match states.get(&dir) {
            Some(state) => state.clone(),
            None => SledState::open(&dir)?,
        };
        states.insert(dir, state.clone());
        runs.push((file.clone(), loaded, plan, state));
    }
    let interrupt = first_signal().boxed().shared();
    let mut outcomes = Vec::new();
    if runs.len() == 1 {
        // One pipeline runs on this thread, as before there were several: its plugin calls
        // and batches stay on one thread (and one allocator arena), which keeps its memory
        // within the bound the memory test holds it to.
        let (file, loaded, mut plan, state) = runs.pop().expect("one run");
        let options = RunOptions { quiet };
        let result = tokio.block_on(engine::run(&mut plan, &state, options, interrupt));
        outcomes.push(report(&file, &loaded, result));
    } else {
        let handles: Vec<_> = runs
            .into_iter()
            .map(|(file, loaded, mut plan, state)| {
                let interrupt = interrupt.clone();
                tokio.spawn(async move {
                    let options = RunOptions { quiet };
                    let result = engine::run(&mut plan, &state, options, interrupt).await;
                    (file, loaded, result)
                })
            })
            .collect();
        for handle in handles {
            let (file, loaded, result) = tokio.block_on(handle)?;
            outcomes.push(report(&file, &loaded, result));
        }
    }
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    if files.len() == 1 || failed == 0 {
        return outcomes.pop().expect("one run per file").map(|o| {
            // The worst of the runs' outcomes.
            outcomes.into_iter().flatten().fold(o, Outcome::worst)
        });
    }
    for error in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        eprintln!("error: {error:#}");
    }
    anyhow::bail!("{failed} of {} pipelines failed", files.len())
}

/// The first SIGINT or SIGTERM, by name (the run reports it as it stops, within
/// milliseconds). The handlers are installed when this is first polled, before a run starts;
/// from then on a second signal ends the process at once, which the crash guarantees make as
/// safe as the graceful stop, only without the run record and the clean-up of staged files.
async fn first_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // No handlers: the signals keep their default, ending the process.
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        std::process::exit(i32::from(super::EXIT_INTERRUPTED));
    });
    name
}

/// Print a finished run's summary; its outcome, or its error (secrets masked).
fn report(
    file: &Path,
    loaded: &config::LoadedPipeline,
    result: Result<engine::RunSummary, RunError>,
) -> anyhow::Result<Outcome> {
    let outcome = match result {
        Ok(summary) => {
            println!("{summary}");
            if summary.rows_quarantined > 0 {
                eprintln!(
                    "warning: {} rows failed checks and were quarantined",
                    summary.rows_quarantined
                );
                Ok(Outcome::Quarantined)
            } else {
                Ok(Outcome::Success)
            }
        }
        Err(e @ RunError::Validation(_)) => {
            eprintln!("error: {}", loaded.redact(&e.to_string()));
            Ok(Outcome::ValidationFailed)
        }
        Err(e @ RunError::Interrupted(_)) => {
            eprintln!("error: pipeline {}: {e}", file.display());
            Ok(Outcome::Interrupted)
        }
        Err(e) => Err(e).with_context(|| format!("pipeline {}", file.display())),
    };
    outcome.map_err(|e| redacted(loaded, e))
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
        if pipeline.parallel_batches > 1 && !pipeline.steps.is_empty() {
            println!(
                "lanes    {}: the steps take that many batches at once, an instance each",
                pipeline.parallel_batches
            );
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
