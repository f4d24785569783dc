//! `host run`: one run of a pipeline, exactly once.
//!
//! 1. Decide what to read: a pending load left by a crash is replayed exactly (same files,
//!    same cursor range, same load id); otherwise the files not yet consumed, past the
//!    watermark.
//! 2. Stream: extract → transform plugins → validator plugins + built-in checks → sinks
//!    (each sink's load open: one SQL transaction, or staged objects). The plugin steps
//!    take `parallel_batches` batches at once (see [`lanes`]); the rest goes in read order.
//!    When the stream ends, every sink finishes writing its load (Parquet files closed)
//!    side by side.
//! 3. Record the pending load in the state store (flushed), then commit every sink (data and
//!    load marker together), then commit the state: watermark, consumed files, run record.
//!    A crash anywhere leaves either nothing visible or a pending load whose replay skips the
//!    sinks that already hold its marker.

pub(crate) mod fault;
pub mod lanes;
mod summary;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use sha2::{Digest, Sha256};

pub use summary::RunSummary;

use crate::config::types::OnFail;
use crate::extract::drift::LoadColumns;
use crate::extract::incremental::CursorFilter;
use crate::extract::{CursorRange, ExtractError, Part};
use crate::load::LoadError;
use crate::observe::Progress;
use crate::plan::{Plan, PlannedStep, RAW_PARTITION};
use crate::plugin::{PluginError, TenantRun, TransformSession, ValidateSession};
use crate::schedule::retry::{Transient, retry_by_step};
use crate::state::{
    FileFingerprint, PendingLoad, RunRecord, RunStatus, SledState, StateError, StateStore,
};
use crate::validate::{Checker, Failures, ValidateError, Verdict};
use fault::Fault;
use lanes::{Lane, Lanes, Stepped};
use writer::SinkWriter;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Check(#[from] ValidateError),
    /// `error` names the sink already. (Not a field called `source`: thiserror would make it
    /// the error's `source()`, and `{:#}` would print the message twice.)
    #[error("{error}")]
    Load { sink: String, error: LoadError },
    #[error("state: {0}")]
    State(#[from] StateError),
    #[error("validation failed; nothing was loaded and the watermark is unchanged\n{0}")]
    Validation(String),
    /// The run was stopped from outside (the signal's name): its loads aborted, or, when it
    /// did not stop in time, dropped where it stood, which the crash guarantees cover.
    #[error(
        "interrupted by {0}: the run stopped unfinished; no sink holds part of a load, and the \
         next run loads what this one did not (rows already committed are not loaded again)"
    )]
    Interrupted(&'static str),
}

impl Transient for RunError {
    fn is_transient(&self) -> bool {
        match self {
            RunError::Extract(e) => e.is_transient(),
            RunError::Load { error, .. } => error.is_transient(),
            RunError::State(e) => e.is_transient(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Plain log lines instead of a progress bar.
    pub quiet: bool,
}

/// What stops runs from outside (a signal): resolves to its name. Shared, so that every run
/// of a process sees the one signal.
pub type Interrupt = Shared<BoxFuture<'static, &'static str>>;

/// How long an interrupted run may take to stop by itself (abort its loads) before it is
/// dropped where it stands.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Run the pipeline to completion (retrying transient failures per its retry policy), with
/// its state in `state` (the database in `plan.state_dir`), or until `interrupt` resolves.
/// Then the run stops before its next batch and aborts its loads (SQL rolled back, staged
/// objects deleted), unless it is already committing, which it finishes. A run that has not
/// stopped [`STOP_GRACE`] later (a source that hangs, say) is dropped at its next await,
/// exactly as if the process had died there, which the crash guarantees cover.
pub async fn run(
    plan: &mut Plan,
    state: &SledState,
    options: RunOptions,
    interrupt: Interrupt,
) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let started_at = now();
    let what = format!("pipeline `{}`", plan.name);
    let plan: &Plan = plan;
    // A load is all or nothing, so a retry repeats the whole attempt; the step that failed
    // decides how often and how soon.
    let policy_of = |error: &RunError| {
        let own = match error {
            RunError::Extract(_) => plan.source_retry.map(|p| ("the source".to_string(), p)),
            RunError::Load { sink, .. } => {
                (plan.sink_retry.get(sink)).map(|p| (format!("sink `{sink}`"), *p))
            }
            _ => None,
        };
        match own {
            Some((step, policy)) => (Some(step), policy),
            None => (None, plan.retry),
        }
    };
    // How far the last attempt got, for the record of a run that fails.
    let reached = Mutex::new(Reached::default());
    let attempts = retry_by_step(&what, policy_of, |_| {
        attempt(plan, state, options, &interrupt, &reached)
    });
    let overdue = interrupt.clone().then(|signal| async move {
        tokio::time::sleep(STOP_GRACE).await;
        signal
    });
    // `biased`: polled first, the interrupt's handlers are installed before the run starts.
    let result = tokio::select! {
        biased;
        signal = overdue => Err(RunError::Interrupted(signal)),
        result = attempts => result,
    };
    match result {
        Ok(summary) => Ok(summary.finished(started)),
        Err(error) => {
            let status = match error {
                RunError::Validation(_) => RunStatus::ValidationFailed,
                RunError::Interrupted(_) => RunStatus::Interrupted,
                _ => RunStatus::Failed,
            };
            let reached = *reached.lock().expect("never poisoned");
            let record = RunRecord {
                run_id: run_id(),
                started_at,
                finished_at: now(),
                status,
                load_id: None,
                rows_read: reached.read,
                rows_rejected: reached.rejected,
                rows_quarantined: reached.quarantined,
                loaded: BTreeMap::new(),
                watermark_before: state.watermark(&plan.name).ok().flatten(),
                watermark_after: None,
                error: Some(error.to_string()),
            };
            // The run failed already; a failure to record it must not hide why.
            if let Err(e) = state.record_run(&plan.name, &record) {
                tracing::warn!("could not record the failed run: {e}");
            }
            Err(error)
        }
    }
}

/// What one run reads.
struct Window {
    load_id: String,
    watermark_before: Option<String>,
    parts: Vec<Part>,
    /// The highest cursor this load reads (the next watermark), when it is fixed before
    /// reading: by a source that selects by cursor, or by the load a replay repeats.
    upto: Option<String>,
    /// The load's UTC date (`YYYY-MM-DD`): the raw zone's partition. A replay keeps the
    /// date of the load it replays.
    load_date: String,
    replay: bool,
    /// The source listed no part at all.
    listed_nothing: bool,
}

impl Window {
    /// The files of the load (the parts that have a fingerprint), by path.
    fn files(&self) -> BTreeMap<String, FileFingerprint> {
        self.parts
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.fingerprint.clone()?)))
            .collect()
    }
}

async fn window(plan: &Plan, state: &SledState) -> Result<Window, RunError> {
    let listed = plan.source.list().await?;
    let listed_nothing = listed.is_empty();
    let selects = plan.source.selects_by_cursor();
    if let Some(pending) = state.pending_load(&plan.name)? {
        // Replay exactly what the interrupted run was committing.
        let parts: Vec<Part> = listed
            .into_iter()
            .filter(|p| match &p.fingerprint {
                Some(fingerprint) => pending.files.get(&p.name) == Some(fingerprint),
                None => true,
            })
            .collect();
        let files = parts.iter().filter(|p| p.fingerprint.is_some()).count();
        if files != pending.files.len() {
            tracing::warn!(
                "files of the interrupted load {} changed since; replaying what is left",
                pending.load_id
            );
        }
        // The replay reads no further than the interrupted load did: sinks that committed it
        // hold its rows up to `watermark_after`, and skip the replay. Sources that select by
        // cursor read exactly that range; for the others (an HTTP API, whose rows arrive
        // between the crash and the replay) the cursor filter is bounded by it. A load that
        // held no rows (the watermark did not move) is replayed without reading: anything
        // read now would reach only the sinks that did not commit it.
        let empty = plan.cursor.is_some() && pending.watermark_after == pending.watermark_before;
        return Ok(Window {
            load_id: pending.load_id,
            watermark_before: pending.watermark_before,
            upto: pending.watermark_after,
            parts: if empty { Vec::new() } else { parts },
            load_date: pending.created_at.get(..10).unwrap_or_default().to_string(),
            replay: true,
            listed_nothing,
        });
    }
    let consumed = state.consumed_files(&plan.name)?;
    let mut parts: Vec<Part> = listed
        .into_iter()
        .filter(|p| {
            p.fingerprint
                .as_ref()
                .is_none_or(|fingerprint| consumed.get(&p.name) != Some(fingerprint))
        })
        .collect();
    let watermark_before = state
        .watermark(&plan.name)?
        .or_else(|| plan.initial_watermark.clone());
    let mut upto = None;
    if selects && plan.cursor.is_some() {
        upto = plan.source.upper_bound(watermark_before.as_deref()).await?;
        if upto.is_none() {
            parts.clear(); // nothing past the watermark
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(plan.name.as_bytes());
    hasher.update(format!("\n{watermark_before:?}\n{upto:?}\n").as_bytes());
    for part in &parts {
        let (size, etag) = part
            .fingerprint
            .as_ref()
            .map_or((0, None), |f| (f.size, f.etag.clone()));
        hasher.update(format!("{}\t{size}\t{etag:?}\n", part.name).as_bytes());
    }
    if upto.is_none() && parts.iter().any(|p| p.fingerprint.is_none()) {
        // Nothing pins what is read (a full read of a table, an API): each run is a new
        // snapshot, so a load must not be taken for an earlier one with the same watermark.
        hasher.update(now().as_bytes());
    }
    let load_id = hex::encode(&hasher.finalize()[..12]);
    Ok(Window {
        load_id,
        watermark_before,
        parts,
        upto,
        load_date: now()[..10].to_string(),
        replay: false,
        listed_nothing,
    })
}

/// The rows an attempt got through before it stopped (nothing was loaded of them).
#[derive(Debug, Default, Clone, Copy)]
struct Reached {
    read: u64,
    rejected: u64,
    quarantined: u64,
}

async fn attempt(
    plan: &Plan,
    state: &SledState,
    options: RunOptions,
    interrupt: &Interrupt,
    reached: &Mutex<Reached>,
) -> Result<RunSummary, RunError> {
    *reached.lock().expect("never poisoned") = Reached::default();
    let window = window(plan, state).await?;
    let mut summary = RunSummary::new(&plan.name, &window.load_id, window.watermark_before.clone());
    if window.parts.is_empty() && !window.replay {
        summary.status = RunStatus::NothingNew;
        if window.listed_nothing {
            summary.source_empty = Some(plan.source.nothing_listed());
        }
        state.record_run(&plan.name, &summary.record(run_id(), now()))?;
        return Ok(summary);
    }
    let fault = Fault::from_env();
    let mut progress = Progress::new(options.quiet, &plan.name);
    // Each tenant's CPU budget is for the whole run: its steps share one account.
    let mut accounts: HashMap<String, TenantRun> = HashMap::new();
    let mut account = |step: &PlannedStep| {
        step.tenant.as_ref().map(|t| {
            accounts
                .entry(t.name().to_string())
                .or_insert_with(|| t.start_run())
                .clone()
        })
    };
    let mut lanes = Vec::with_capacity(plan.parallel_batches);
    for _ in 0..plan.parallel_batches {
        let mut transforms: Vec<TransformSession> = Vec::new();
        for step in &plan.transforms {
            let session = step
                .plugin
                .transform_session(&step.config_json, step.policy)?;
            transforms.push(session.with_tenant(account(step)));
        }
        let mut validators: Vec<ValidateSession> = Vec::new();
        for step in &plan.validators {
            let session = step
                .plugin
                .validate_session(&step.config_json, step.policy)?;
            validators.push(session.with_tenant(account(step)));
        }
        lanes.push(Lane::new(transforms, validators));
    }
    let mut lanes = Lanes::new(lanes);
    let mut checker = Checker::new(&plan.checks);
    // Sources that select by cursor read only `range`; the others are filtered here.
    let range = CursorRange {
        after: window.watermark_before.clone(),
        upto: window.upto.clone(),
    };
    let mut cursor = plan
        .cursor
        .as_ref()
        .filter(|_| !plan.source.selects_by_cursor())
        .map(|c| CursorFilter::new(c, window.watermark_before.clone(), window.upto.clone()));
    let mut sinks: Vec<SinkWriter> = plan
        .sinks
        .iter()
        .map(|s| SinkWriter::spawn(s.clone(), &plan.name, &window.load_id))
        .collect();
    let mut raw = plan
        .raw
        .as_ref()
        .map(|r| SinkWriter::spawn(r.clone(), &plan.name, &window.load_id));
    let mut quarantine = plan
        .quarantine
        .as_ref()
        .map(|q| SinkWriter::spawn(q.clone(), &plan.name, &window.load_id));
    let mut failures = Failures::default();

    // Files are read one by one, each with its own schema; other parts share the source's.
    let mut columns = LoadColumns::default();
    let outcome: Result<(), RunError> = async {
        let mut downstream = Downstream {
            plan,
            fault: &fault,
            checker: &mut checker,
            failures: &mut failures,
            quarantine: quarantine.as_mut(),
            sinks: &mut sinks,
            rejected: &mut summary.rows_rejected,
            quarantined: &mut summary.rows_quarantined,
        };
        for part in &window.parts {
            progress.file(&part.name);
            let mut batches = plan.source.read(part, &range).await?;
            while let Some(batch) = batches.next().await {
                if let Some(signal) = interrupt.clone().now_or_never() {
                    return Err(RunError::Interrupted(signal));
                }
                let mut batch = batch?;
                if part.fingerprint.is_some() {
                    columns.check(&part.name, batch.schema_ref())?;
                }
                fault.at("extract");
                if let Some(cursor) = cursor.as_mut() {
                    batch = cursor.apply(batch)?;
                }
                let read = batch.num_rows();
                summary.rows_read += read as u64;
                progress.rows(read as u64);
                if let Some(raw) = raw.as_mut()
                    && read > 0
                {
                    raw.send(with_load_date(&batch, &window.load_date)).await?;
                }
                for _ in &plan.transforms {
                    fault.at("plugin");
                }
                if let Some(stepped) = lanes.submit(batch).await? {
                    downstream.take(stepped).await?;
                }
            }
        }
        while let Some(stepped) = lanes.next().await {
            downstream.take(stepped?).await?;
        }
        let loaded_rows = summary.rows_read - summary.rows_rejected - summary.rows_quarantined;
        failures.load_level.extend(checker.check_load(loaded_rows));
        let blocking = !failures.load_level.is_empty()
            || (plan.on_fail == OnFail::Abort && !failures.is_empty());
        if blocking {
            return Err(RunError::Validation(failures.report()));
        }
        Ok(())
    }
    .await;
    progress.finish();
    *reached.lock().expect("never poisoned") = Reached {
        read: summary.rows_read,
        rejected: summary.rows_rejected,
        quarantined: summary.rows_quarantined,
    };

    // Every sink finishes writing; any failure aborts them all.
    let sinks: Vec<SinkWriter> = sinks.into_iter().chain(quarantine).chain(raw).collect();
    let mut written = Vec::with_capacity(sinks.len());
    let mut outcome = outcome;
    for mut writer in sinks {
        if outcome.is_err() {
            writer.abort().await;
            continue;
        }
        match writer.finish().await {
            Ok(done) => written.push((writer.name.clone(), done)),
            Err(e) => outcome = Err(e),
        }
    }
    if let Err(error) = outcome {
        for (name, done) in written {
            if let Some(load) = done.load
                && let Err(e) = load.abort().await
            {
                tracing::warn!("sink `{name}`: could not abort the load: {e}");
            }
        }
        return Err(error);
    }

    // A replay ends where the interrupted load ended, even if it read less (rows gone from
    // an API): the sinks that committed that load hold its rows up to there.
    let watermark_after = if window.replay {
        window.upto.clone()
    } else {
        cursor
            .as_ref()
            .and_then(|c| c.next_watermark())
            .or(window.upto.clone())
            .or(window.watermark_before.clone())
    };
    let files = window.files();
    if !window.replay {
        let pending = PendingLoad {
            load_id: window.load_id.clone(),
            watermark_before: window.watermark_before.clone(),
            watermark_after: watermark_after.clone(),
            files: files.clone(),
            created_at: now(),
        };
        state.record_pending(&plan.name, &pending)?;
    }
    fault.at("before_sink_commit");
    for (name, done) in written {
        let committed = match done.load {
            Some(load) => load.commit().await.map_err(|error| RunError::Load {
                sink: name.clone(),
                error,
            })?,
            None => 0,
        };
        if name != "quarantine" {
            summary.loaded.insert(name.clone(), committed);
            if done.already_held {
                summary.replayed_sinks.push(name);
            }
        }
        fault.at("after_first_sink_commit");
    }
    fault.at("after_sink_commit");
    summary.status = RunStatus::Succeeded;
    summary.watermark_after = watermark_after.clone();
    summary.files = files.len();
    state.commit_load(
        &plan.name,
        watermark_after.as_deref(),
        &files,
        &summary.record(run_id(), now()),
    )?;
    fault.at("state_committed");
    Ok(summary)
}

/// What follows the plugin steps, batch by batch in the order read: the built-in checks, the
/// verdict with the validators' checks, the quarantine and the sinks.
struct Downstream<'a> {
    plan: &'a Plan,
    fault: &'a Fault,
    checker: &'a mut Checker,
    failures: &'a mut Failures,
    quarantine: Option<&'a mut SinkWriter>,
    sinks: &'a mut [SinkWriter],
    rejected: &'a mut u64,
    quarantined: &'a mut u64,
}

impl Downstream<'_> {
    async fn take(&mut self, stepped: Stepped) -> Result<(), RunError> {
        let Stepped {
            rows_in,
            batch,
            checks,
        } = stepped;
        *self.rejected += (rows_in - batch.num_rows()) as u64;

        let mut verdict = Verdict::default();
        self.checker.check_batch(&batch, &mut verdict)?;
        for (checks, step) in checks.iter().zip(&self.plan.validators) {
            for check in checks.iter().filter(|c| !c.passed) {
                let name = format!("{}:{}", step.plugin.name(), check.name);
                if check.failing_rows.is_empty() {
                    (self.failures.load_level)
                        .push(format!("{name} ({}): {}", step.label, check.message));
                }
                for &row in &check.failing_rows {
                    verdict.fail(row as usize, &name);
                }
            }
        }
        let on_fail = self.plan.on_fail;
        let good = if verdict.is_clean() {
            batch
        } else {
            self.failures.add(&batch, &verdict);
            let (good, bad) = verdict.split(&batch);
            if on_fail == OnFail::Quarantine {
                *self.quarantined += bad.num_rows() as u64;
                if let Some(quarantine) = self.quarantine.as_mut() {
                    quarantine.send(bad).await?;
                }
            }
            good
        };
        if on_fail == OnFail::Abort && !self.failures.is_empty() {
            return Ok(()); // keep checking, to report every failure; nothing will be written
        }
        if good.num_rows() > 0 {
            self.fault.at("sink_write");
            for sink in self.sinks.iter_mut() {
                sink.send(good.clone()).await?;
            }
        }
        Ok(())
    }
}

/// `batch` with the raw zone's partition column appended.
fn with_load_date(batch: &RecordBatch, load_date: &str) -> RecordBatch {
    let mut fields = batch.schema().fields().to_vec();
    fields.push(Arc::new(Field::new(RAW_PARTITION, DataType::Utf8, false)));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![
        load_date;
        batch.num_rows()
    ])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).expect("one more column")
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn run_id() -> String {
    format!(
        "{}-{:04x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        rand::random::<u16>()
    )
}
