//! Sessions: one sandboxed instance serving a stream of batches, rebuilt after any failure.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use wasmtime::component::{Func, Instance, Lift, TypedFunc};
use wasmtime::{Store, Trap};

use super::bindings::transformer::Transformer;
use super::bindings::validator::Validator;
use super::bindings::{
    COLUMNS_EXPORT, CheckResult, ErrorKind, GuestError, READS_EXPORT, TRANSFORM_EXPORT,
    Transformed, VALIDATE_EXPORT, VALIDATE_READS_EXPORT, Validation,
};
use super::error::Cause;
use super::lower::Stream;
use super::runtime::TimedEngine;
use super::sandbox::StoreState;
use super::tenant::TenantRun;
use super::{Plugin, PluginError, Pre, StepPolicy, columns, ipc};

pub(super) fn new_store(engine: &TimedEngine, policy: &StepPolicy) -> Store<StoreState> {
    let state = StoreState::new(&policy.limits, &policy.grants);
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    // Instantiation runs guest code (start functions) too: it gets one call's budget
    // (a session's first call narrows it to what its tenant has left).
    store.set_epoch_deadline(engine.clock.deadline(policy.limits.timeout()));
    store
}

type CallResult<R> = wasmtime::Result<Result<R, GuestError>>;

/// The world-specific part of a session: how to instantiate and initialise it, and its
/// per-batch function, `func(batch: list<u8>) -> result<_, plugin-error>`.
trait World: Sized {
    /// What the per-batch function answers.
    type Output;
    /// The per-batch function of an instance, type-checked.
    type Batch: Copy;
    fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<(Self, Instance)>;
    fn init(&self, store: &mut Store<StoreState>, config: &str) -> CallResult<()>;
    fn batch_func(
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self::Batch>;
    /// The plugin's `reads` function (`*-reads`, since 0.1.2), if it exports one: found with
    /// the per-batch function, and type-checked as answering `option<list<u32>>`.
    fn reads_func(batch: &Self::Batch) -> Option<Func>;
    /// # Safety
    /// `func` is what [`World::batch_func`] found in this store's instance.
    unsafe fn call(
        func: Self::Batch,
        store: &mut Store<StoreState>,
        stream: Stream<'_>,
    ) -> CallResult<Self::Output>;
}

/// A transform's per-batch function: `transform-columns.transform` where the plugin
/// exports it (since 0.1.1), with `transform-reads.reads` if it exports that too (since
/// 0.1.2); else `transform.transform`.
#[derive(Clone, Copy)]
enum TransformFunc {
    Whole(Func),
    Columns {
        transform: Func,
        reads: Option<Func>,
    },
}

/// A transform's answer to one batch.
enum Answer {
    Whole(Vec<u8>),
    Columns(Transformed),
}

impl World for Transformer {
    type Output = Answer;
    type Batch = TransformFunc;
    fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<(Self, Instance)> {
        let Pre::Transformer(pre) = pre else {
            unreachable!("checked when the session was made")
        };
        let instance = pre.instance_pre().instantiate(&mut *store)?;
        Ok((Transformer::new(store, &instance)?, instance))
    }
    fn init(&self, store: &mut Store<StoreState>, config: &str) -> CallResult<()> {
        self.weir_plugin_transform().call_init(store, config)
    }
    fn batch_func(
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self::Batch> {
        if let Some(transform) =
            export_func::<Transformed>(store, instance, COLUMNS_EXPORT, "transform")?
        {
            let reads = export_func::<Option<Vec<u32>>>(store, instance, READS_EXPORT, "reads")?;
            return Ok(TransformFunc::Columns { transform, reads });
        }
        let func = export_func::<Vec<u8>>(store, instance, TRANSFORM_EXPORT, "transform")?;
        Ok(TransformFunc::Whole(
            func.ok_or_else(|| missing(TRANSFORM_EXPORT, "transform"))?,
        ))
    }
    fn reads_func(batch: &TransformFunc) -> Option<Func> {
        match batch {
            TransformFunc::Columns { reads, .. } => *reads,
            TransformFunc::Whole(_) => None,
        }
    }
    unsafe fn call(
        func: TransformFunc,
        store: &mut Store<StoreState>,
        stream: Stream<'_>,
    ) -> CallResult<Answer> {
        // SAFETY: per the function's contract, each was type-checked by `export_func`.
        Ok(match func {
            TransformFunc::Whole(f) => unsafe { call_func(f, store, stream) }?.map(Answer::Whole),
            TransformFunc::Columns { transform, .. } => {
                unsafe { call_func(transform, store, stream) }?.map(Answer::Columns)
            }
        })
    }
}

/// A validator's per-batch function, and `validate-reads.reads` if it exports that (since
/// 0.1.2).
#[derive(Clone, Copy)]
struct ValidateFunc {
    validate: Func,
    reads: Option<Func>,
}

impl World for Validator {
    type Output = Validation;
    type Batch = ValidateFunc;
    fn instantiate(pre: &Pre, store: &mut Store<StoreState>) -> wasmtime::Result<(Self, Instance)> {
        let Pre::Validator(pre) = pre else {
            unreachable!("checked when the session was made")
        };
        let instance = pre.instance_pre().instantiate(&mut *store)?;
        Ok((Validator::new(store, &instance)?, instance))
    }
    fn init(&self, store: &mut Store<StoreState>, config: &str) -> CallResult<()> {
        self.weir_plugin_validate().call_init(store, config)
    }
    fn batch_func(
        store: &mut Store<StoreState>,
        instance: &Instance,
    ) -> wasmtime::Result<ValidateFunc> {
        let validate = export_func::<Validation>(store, instance, VALIDATE_EXPORT, "validate")?
            .ok_or_else(|| missing(VALIDATE_EXPORT, "validate"))?;
        let reads =
            export_func::<Option<Vec<u32>>>(store, instance, VALIDATE_READS_EXPORT, "reads")?;
        Ok(ValidateFunc { validate, reads })
    }
    fn reads_func(batch: &ValidateFunc) -> Option<Func> {
        batch.reads
    }
    unsafe fn call(
        func: ValidateFunc,
        store: &mut Store<StoreState>,
        stream: Stream<'_>,
    ) -> CallResult<Validation> {
        // SAFETY: per the function's contract.
        unsafe { call_func(func.validate, store, stream) }
    }
}

fn missing(export: &str, func: &str) -> wasmtime::Error {
    wasmtime::format_err!("{export} exports no `{func}`")
}

/// Function `func` of the interface `export` in `instance`, if there is one, type-checked
/// as taking a batch (as a [`Stream`]) and answering `R`.
fn export_func<R: Lift + 'static>(
    store: &mut Store<StoreState>,
    instance: &Instance,
    export: &str,
    func: &str,
) -> wasmtime::Result<Option<Func>> {
    let Some(export) = instance.get_export_index(&mut *store, None, export) else {
        return Ok(None);
    };
    let index = instance.get_export_index(&mut *store, Some(&export), func);
    let Some(func) = index.and_then(|index| instance.get_func(&mut *store, index)) else {
        return Ok(None);
    };
    func.typed::<(Stream<'static>,), (Result<R, GuestError>,)>(&*store)?;
    Ok(Some(func))
}

/// Call `func` with `stream`.
///
/// # Safety
/// `func` was type-checked by [`export_func`] with the same `R`.
unsafe fn call_func<R: Lift + 'static>(
    func: Func,
    store: &mut Store<StoreState>,
    stream: Stream<'_>,
) -> CallResult<R> {
    // SAFETY: per the function's contract.
    let typed =
        unsafe { TypedFunc::<(Stream<'_>,), (Result<R, GuestError>,)>::new_unchecked(func) };
    Ok(typed.call(store, (stream,))?.0)
}

struct Live<W: World> {
    store: Store<StoreState>,
    guest: W,
    /// Found by [`World::batch_func`].
    batch: W::Batch,
}

struct Session<W: World> {
    plugin: Plugin,
    config: String,
    policy: StepPolicy,
    tenant: Option<TenantRun>,
    live: Option<Live<W>>,
}

impl<W: World> Session<W> {
    fn new(plugin: Plugin, config: &str, policy: StepPolicy) -> Self {
        Session {
            plugin,
            config: config.to_string(),
            policy,
            tenant: None,
            live: None,
        }
    }

    /// Call the world's per-batch function on `batch`, sent as `ipc` (its encoding) if
    /// given, else encoded straight into the guest's memory (see [`Stream`]).
    fn call_batch(
        &mut self,
        number: u64,
        batch: &RecordBatch,
        ipc: Option<&[u8]>,
    ) -> Result<W::Output, PluginError> {
        let segments;
        let stream = match ipc {
            Some(bytes) => Stream::Bytes(bytes),
            None => {
                segments = ipc::encode_batch_segments(batch)
                    .map_err(|e| self.plugin.error(Some(number), Cause::Input(e.to_string())))?;
                Stream::Segments(&segments)
            }
        };
        // SAFETY: `live.batch` was found by `batch_func` when the instance started.
        self.call(Some(number), |live| unsafe {
            W::call(live.batch, &mut live.store, stream)
        })
    }

    /// The columns the plugin reads of input of schema `input` (`schema`, its IPC stream),
    /// checked, where it reads fewer than all.
    fn reads(
        &mut self,
        input: &SchemaRef,
        schema: &[u8],
    ) -> Result<Option<Vec<usize>>, PluginError> {
        let reads = self.call(None, |live| match W::reads_func(&live.batch) {
            // SAFETY: found by `export_func` with this answer type.
            Some(reads) => unsafe { call_func(reads, &mut live.store, Stream::Bytes(schema)) },
            None => Ok(Ok(None)),
        })?;
        let columns = input.fields().len();
        let reads = reads
            .map(|r| checked_reads(r, columns))
            .transpose()
            .map_err(|e| self.plugin.error(None, Cause::BadReads(e)))?;
        Ok(reads.filter(|r| r.len() < columns))
    }

    /// The epoch deadline that falls `budget` from now.
    fn deadline(&self, budget: std::time::Duration) -> u64 {
        self.plugin.0.engine.clock.deadline(budget)
    }

    /// Run one guest call (instantiation included) through the tenant's gate, if any, under
    /// a deadline of the call's budget or what is left of the tenant's CPU time, if less.
    fn governed<R>(
        &mut self,
        batch: Option<u64>,
        f: impl FnOnce(&mut Self, u64) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let Some(run) = self.tenant.clone() else {
            let ticks = self.deadline(self.policy.limits.timeout());
            return f(self, ticks);
        };
        let budget = run.remaining();
        let cause = || Cause::TenantCpu {
            tenant: run.tenant().name().to_string(),
            budget_ms: run.tenant().limits().cpu_ms_per_run.unwrap_or_default(),
        };
        if budget.is_some_and(|left| left.is_zero()) {
            return Err(self.plugin.error(batch, cause()));
        }
        let timeout = self.policy.limits.timeout();
        let deadline = budget.map_or(timeout, |left| left.min(timeout));
        let result = run.call(|| f(self, self.deadline(deadline)));
        match result {
            // Stopped by the tenant's budget rather than the call's own.
            Err(e) if matches!(e.cause, Cause::Timeout(_)) && deadline < timeout => {
                run.exhaust();
                Err(self.plugin.error(batch, cause()))
            }
            other => other,
        }
    }

    /// Run one guest call under the time budget. The instance is created (and `init`
    /// called) first if there is none; after any failure it is thrown away.
    fn call<R>(
        &mut self,
        batch: Option<u64>,
        f: impl FnOnce(&mut Live<W>) -> CallResult<R>,
    ) -> Result<R, PluginError> {
        if self.live.is_none() {
            self.governed(None, |session, ticks| session.start(ticks))?;
        }
        self.governed(batch, |session, ticks| session.call_live(batch, ticks, f))
    }

    /// Instantiate the plugin and `init` it with the step's config.
    fn start(&mut self, ticks: u64) -> Result<(), PluginError> {
        let mut store = new_store(&self.plugin.0.engine, &self.policy);
        store.set_epoch_deadline(ticks);
        let started =
            W::instantiate(&self.plugin.0.pre, &mut store).and_then(|(guest, instance)| {
                let batch = W::batch_func(&mut store, &instance)?;
                Ok((guest.init(&mut store, &self.config)?, guest, batch))
            });
        match started {
            Ok((Ok(()), guest, batch)) => {
                self.live = Some(Live {
                    store,
                    guest,
                    batch,
                });
                Ok(())
            }
            Ok((Err(e), ..)) => Err(self.plugin.error(None, returned(e))),
            Err(e) => Err(self.plugin.error(None, classify(&e, &store, &self.policy))),
        }
    }

    fn call_live<R>(
        &mut self,
        batch: Option<u64>,
        ticks: u64,
        f: impl FnOnce(&mut Live<W>) -> CallResult<R>,
    ) -> Result<R, PluginError> {
        let live = self.live.as_mut().expect("started before a call");
        live.store.set_epoch_deadline(ticks);
        let outcome = f(live);
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.live = None;
                Err(self.plugin.error(batch, returned(e)))
            }
            Err(e) => {
                let live = self.live.take().expect("present");
                Err(self
                    .plugin
                    .error(batch, classify(&e, &live.store, &self.policy)))
            }
        }
    }
}

fn returned(e: GuestError) -> Cause {
    let kind = match e.kind {
        ErrorKind::InvalidConfig => "invalid-config",
        ErrorKind::InvalidInput => "invalid-input",
        ErrorKind::Internal => "internal",
    };
    Cause::Returned {
        kind: kind.to_string(),
        message: e.message,
    }
}

/// Turn a failed guest call into what happened, in the user's terms.
fn classify(error: &wasmtime::Error, store: &Store<StoreState>, policy: &StepPolicy) -> Cause {
    let state = store.data();
    if let Some(wanted) = state.limiter.refused {
        return Cause::MemoryCap {
            wanted_mib: (wanted as u64).div_ceil(1 << 20),
            cap_mib: policy.limits.memory_mib,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Cause::Timeout(policy.limits.timeout()),
        Some(Trap::StackOverflow) => Cause::StackOverflow,
        // A Rust guest's stack lives in linear memory; overflowing it runs off the bottom.
        Some(Trap::MemoryOutOfBounds) => Cause::Trap {
            trap: format!(
                "{} (from a Rust guest this is usually a stack overflow: recursion too deep)",
                Trap::MemoryOutOfBounds
            ),
            stderr: state.stderr_tail(),
        },
        Some(trap) => Cause::Trap {
            trap: trap.to_string(),
            stderr: state.stderr_tail(),
        },
        None => Cause::Trap {
            trap: format!("{error:#}"),
            stderr: state.stderr_tail(),
        },
    }
}

/// A transform plugin serving a stream of batches.
pub struct TransformSession {
    session: Session<Transformer>,
    /// What the plugin declared for the input schema last asked about.
    declared: Option<Declared>,
    batches: u64,
}

/// What a transform plugin declares for one input schema.
struct Declared {
    input: SchemaRef,
    output: SchemaRef,
    /// The input's columns the plugin reads, where that is fewer than all (since 0.1.2):
    /// only these are sent in.
    reads: Option<Vec<usize>>,
}

impl TransformSession {
    pub(super) fn new(plugin: Plugin, config: &str, policy: StepPolicy) -> Self {
        TransformSession {
            session: Session::new(plugin, config, policy),
            declared: None,
            batches: 0,
        }
    }

    /// Run this step's calls as the tenant's, within its limits for the run.
    pub fn with_tenant(mut self, run: Option<TenantRun>) -> Self {
        self.session.tenant = run;
        self
    }

    pub fn plugin(&self) -> &Plugin {
        &self.session.plugin
    }

    /// Count the next batch as the stream's `number`th (from 0) in errors: for a session
    /// that serves only some of a stream's batches (see `engine::lanes`).
    pub fn number_next(&mut self, number: u64) {
        self.batches = number;
    }

    /// The output schema the plugin declares for input of schema `input`.
    pub fn output_schema(&mut self, input: &SchemaRef) -> Result<SchemaRef, PluginError> {
        Ok(self.declare(input)?.output.clone())
    }

    /// What the plugin declares for input of schema `input`: asked once per schema and
    /// instance (a new instance is asked again, as its `reads` answer may set its state).
    fn declare(&mut self, input: &SchemaRef) -> Result<&Declared, PluginError> {
        let known = self.session.live.is_some()
            && self.declared.as_ref().is_some_and(|d| &d.input == input);
        if !known {
            self.declared = None;
            let plugin = self.session.plugin.clone();
            let bytes = ipc::encode_schema(input)
                .map_err(|e| plugin.error(None, Cause::Input(e.to_string())))?;
            let out = self.session.call(None, |live| {
                let transform = live.guest.weir_plugin_transform();
                transform.call_output_schema(&mut live.store, &bytes)
            })?;
            let output =
                ipc::decode_schema(&out).map_err(|e| plugin.error(None, Cause::BadOutput(e)))?;
            let reads = self.session.reads(input, &bytes)?;
            self.declared = Some(Declared {
                input: input.clone(),
                output,
                reads,
            });
        }
        Ok(self.declared.as_ref().expect("declared above"))
    }

    /// Transform one batch; the result is checked against the declared schema and the
    /// step's row policy.
    pub fn transform(&mut self, batch: &RecordBatch) -> Result<RecordBatch, PluginError> {
        Ok(self.transform_ipc(batch, None)?.0)
    }

    /// As [`Self::transform`], for a batch whose Arrow IPC stream the caller holds (the
    /// previous plugin's output): those bytes go to the plugin as they are, without encoding
    /// the batch again. Returns the output with the stream it was decoded from, if it came
    /// as one (a plugin answering by columns sends only part of it).
    pub fn transform_ipc(
        &mut self,
        batch: &RecordBatch,
        ipc: Option<&[u8]>,
    ) -> Result<(RecordBatch, Option<Buffer>), PluginError> {
        let number = self.batches;
        self.batches += 1;
        let plugin = self.session.plugin.clone();
        let fail = |cause| plugin.error(Some(number), cause);
        let declared = self.declare(batch.schema_ref())?;
        let sent = match &declared.reads {
            Some(columns) => Some(
                batch
                    .project(columns)
                    .map_err(|e| fail(Cause::Input(e.to_string())))?,
            ),
            None => None,
        };
        let declared = declared.output.clone();

        // A plugin reading some columns gets only those (its answer still names the input's
        // columns by their place in the whole input).
        let answer = match &sent {
            Some(projected) => self.session.call_batch(number, projected, None)?,
            None => self.session.call_batch(number, batch, ipc)?,
        };
        let (output, stream) = match answer {
            Answer::Whole(bytes) => {
                let stream = Buffer::from_vec(bytes);
                let output =
                    ipc::decode_batch(stream.clone()).map_err(|e| fail(Cause::BadOutput(e)))?;
                (output, Some(stream))
            }
            Answer::Columns(answer) => columns::assemble(batch, answer).map_err(fail)?,
        };
        if let Some(difference) = schema_difference(&declared, output.schema_ref()) {
            return Err(fail(Cause::SchemaMismatch(difference)));
        }
        let rows = self.session.policy.rows;
        if !rows.allows(batch.num_rows(), output.num_rows()) {
            let policy = match rows {
                super::RowPolicy::Same => "exactly as many rows as it was given (rows = \"same\")",
                _ => "at most as many rows as it was given (rows = \"at_most_input\")",
            };
            return Err(fail(Cause::RowCount {
                input: batch.num_rows(),
                output: output.num_rows(),
                policy,
            }));
        }
        Ok((output, stream))
    }
}

/// A validator plugin serving a stream of batches.
pub struct ValidateSession {
    session: Session<Validator>,
    /// The input schema last asked about, and the columns of it the plugin reads (where
    /// fewer than all; since 0.1.2).
    reads: Option<(SchemaRef, Option<Vec<usize>>)>,
    batches: u64,
}

impl ValidateSession {
    pub(super) fn new(plugin: Plugin, config: &str, policy: StepPolicy) -> Self {
        ValidateSession {
            session: Session::new(plugin, config, policy),
            reads: None,
            batches: 0,
        }
    }

    /// As [`TransformSession::with_tenant`].
    pub fn with_tenant(mut self, run: Option<TenantRun>) -> Self {
        self.session.tenant = run;
        self
    }

    pub fn plugin(&self) -> &Plugin {
        &self.session.plugin
    }

    /// As [`TransformSession::number_next`].
    pub fn number_next(&mut self, number: u64) {
        self.batches = number;
    }

    /// Run the plugin's checks over one batch.
    pub fn validate(&mut self, batch: &RecordBatch) -> Result<Vec<CheckResult>, PluginError> {
        self.validate_ipc(batch, None)
    }

    /// As [`Self::validate`], with the batch's Arrow IPC stream if the caller holds it (see
    /// [`TransformSession::transform_ipc`]).
    pub fn validate_ipc(
        &mut self,
        batch: &RecordBatch,
        ipc: Option<&[u8]>,
    ) -> Result<Vec<CheckResult>, PluginError> {
        let number = self.batches;
        self.batches += 1;
        let plugin = self.session.plugin.clone();
        let input = batch.schema_ref();
        // Asked once per schema and instance, as a transform's (see `TransformSession`).
        let known = self.session.live.is_some()
            && self.reads.as_ref().is_some_and(|(asked, _)| asked == input);
        if !known {
            self.reads = None;
            let bytes = ipc::encode_schema(input)
                .map_err(|e| plugin.error(None, Cause::Input(e.to_string())))?;
            self.reads = Some((input.clone(), self.session.reads(input, &bytes)?));
        }
        // A plugin reading some columns gets only those; failing rows are rows all the same.
        let validation = match self.reads.as_ref().and_then(|(_, r)| r.as_ref()) {
            Some(columns) => {
                let projected = batch
                    .project(columns)
                    .map_err(|e| plugin.error(Some(number), Cause::Input(e.to_string())))?;
                self.session.call_batch(number, &projected, None)?
            }
            None => self.session.call_batch(number, batch, ipc)?,
        };
        let rows = batch.num_rows();
        for check in &validation.checks {
            if let Some(&row) = check.failing_rows.iter().find(|&&r| r as usize >= rows) {
                return Err(plugin.error(Some(number), Cause::BadValidation { row, rows }));
            }
        }
        Ok(validation.checks)
    }
}

/// A plugin's `reads` answer, checked: column indexes ascending, each below `columns`.
fn checked_reads(reads: Vec<u32>, columns: usize) -> Result<Vec<usize>, String> {
    let reads: Vec<usize> = reads.into_iter().map(|i| i as usize).collect();
    let ascending = reads.windows(2).all(|w| w[0] < w[1]);
    if !ascending || reads.last().is_some_and(|&last| last >= columns) {
        return Err(format!(
            "it names columns {reads:?} of an input of {columns}: they must ascend, each \
             below {columns}"
        ));
    }
    Ok(reads)
}

/// What differs between the declared and the actual schema, field by field.
pub(crate) fn schema_difference(declared: &Schema, actual: &Schema) -> Option<String> {
    let mut differences = Vec::new();
    for field in declared.fields() {
        match actual.field_with_name(field.name()) {
            Err(_) => differences.push(format!("column `{}` is missing", field.name())),
            Ok(got) if got.data_type() != field.data_type() => differences.push(format!(
                "column `{}` is {} but was declared {}",
                field.name(),
                got.data_type(),
                field.data_type()
            )),
            Ok(got) if got.is_nullable() && !field.is_nullable() => differences.push(format!(
                "column `{}` is nullable but was declared not null",
                field.name()
            )),
            Ok(_) => {}
        }
    }
    for field in actual.fields() {
        if declared.field_with_name(field.name()).is_err() {
            differences.push(format!("column `{}` was not declared", field.name()));
        }
    }
    let order_differs = differences.is_empty()
        && declared
            .fields()
            .iter()
            .map(|f| f.name())
            .ne(actual.fields().iter().map(|f| f.name()));
    if order_differs {
        differences.push("the columns are in a different order".into());
    }
    (!differences.is_empty()).then(|| differences.join("; "))
}
