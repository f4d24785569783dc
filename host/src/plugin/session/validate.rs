//! Validate sessions: the `validator` world's functions, and a session that checks each
//! answer's failing rows.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use wasmtime::Store;
use wasmtime::component::{Func, Instance};

use super::{CallResult, Session, World, call_func, export_func, missing};
use crate::plugin::bindings::validator::Validator;
use crate::plugin::bindings::{CheckResult, VALIDATE_EXPORT, VALIDATE_READS_EXPORT, Validation};
use crate::plugin::error::Cause;
use crate::plugin::lower::Stream;
use crate::plugin::sandbox::StoreState;
use crate::plugin::tenant::TenantRun;
use crate::plugin::{Plugin, PluginError, Pre, StepPolicy, ipc};

/// A validator's per-batch function, and `validate-reads.reads` if it exports that (since
/// 0.1.2).
#[derive(Clone, Copy)]
pub(super) struct ValidateFunc {
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
/// A validator plugin serving a stream of batches.
pub struct ValidateSession {
    session: Session<Validator>,
    /// The input schema last asked about, and the columns of it the plugin reads (where
    /// fewer than all; since 0.1.2).
    reads: Option<(SchemaRef, Option<Vec<usize>>)>,
    batches: u64,
}

impl ValidateSession {
    pub(in crate::plugin) fn new(plugin: Plugin, config: &str, policy: StepPolicy) -> Self {
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
        let reads = self.reads.as_ref().and_then(|(_, r)| r.as_deref());
        let validation = self.session.call_batch(number, batch, reads, ipc)?;
        let rows = batch.num_rows();
        for check in &validation.checks {
            if let Some(&row) = check.failing_rows.iter().find(|&&r| r as usize >= rows) {
                return Err(plugin.error(Some(number), Cause::BadValidation { row, rows }));
            }
        }
        Ok(validation.checks)
    }
}
