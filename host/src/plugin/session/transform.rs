//! Transform sessions: the `transformer` world's functions, and a session that checks each
//! answer against the schema the plugin declared.

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::datatypes::{Schema, SchemaRef};
use wasmtime::Store;
use wasmtime::component::{Func, Instance};

use super::{CallResult, Session, World, call_func, export_func, missing};
use crate::plugin::bindings::transformer::Transformer;
use crate::plugin::bindings::{COLUMNS_EXPORT, READS_EXPORT, TRANSFORM_EXPORT, Transformed};
use crate::plugin::error::Cause;
use crate::plugin::lower::Stream;
use crate::plugin::sandbox::StoreState;
use crate::plugin::tenant::TenantRun;
use crate::plugin::{Plugin, PluginError, Pre, StepPolicy, columns, ipc};

/// A transform's per-batch function: `transform-columns.transform` where the plugin
/// exports it (since 0.1.1), with `transform-reads.reads` if it exports that too (since
/// 0.1.2); else `transform.transform`.
#[derive(Clone, Copy)]
pub(super) enum TransformFunc {
    Whole(Func),
    Columns {
        transform: Func,
        reads: Option<Func>,
    },
}

/// A transform's answer to one batch.
pub(super) enum Answer {
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
    pub(in crate::plugin) fn new(plugin: Plugin, config: &str, policy: StepPolicy) -> Self {
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
        self.declare(batch.schema_ref())?;
        let declared = self.declared.as_ref().expect("declared above");
        // A plugin reading some columns gets only those (its answer still names the input's
        // columns by their place in the whole input).
        let reads = declared.reads.as_deref();
        let answer = self.session.call_batch(number, batch, reads, ipc)?;
        let declared = declared.output.clone();
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
                crate::plugin::RowPolicy::Same => {
                    "exactly as many rows as it was given (rows = \"same\")"
                }
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
