//! Sessions: one sandboxed instance serving a stream of batches, rebuilt after any failure.
//!
//! This file holds what every session shares (instantiation, the budgeted call, the failure
//! taxonomy); `transform` and `validate` hold each world's functions and session type.

mod transform;
mod validate;

pub use transform::TransformSession;
pub(crate) use transform::schema_difference;
pub use validate::ValidateSession;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use wasmtime::component::{Func, Instance, Lift, TypedFunc};
use wasmtime::{Store, Trap};

use super::bindings::{ErrorKind, GuestError};
use super::error::Cause;
use super::lower::Stream;
use super::runtime::TimedEngine;
use super::sandbox::StoreState;
use super::tenant::TenantRun;
use super::{Plugin, PluginError, Pre, StepPolicy, ipc};

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

    /// Call the world's per-batch function on `batch`: only its columns `reads` if the
    /// plugin reads fewer than all (since 0.1.2), else sent as `ipc` (its encoding) if
    /// given, else encoded straight into the guest's memory (see [`Stream`]).
    fn call_batch(
        &mut self,
        number: u64,
        batch: &RecordBatch,
        reads: Option<&[usize]>,
        ipc: Option<&[u8]>,
    ) -> Result<W::Output, PluginError> {
        let projected;
        let (batch, ipc) = match reads {
            Some(columns) => {
                projected = batch
                    .project(columns)
                    .map_err(|e| self.plugin.error(Some(number), Cause::Input(e.to_string())))?;
                (&projected, None)
            }
            None => (batch, ipc),
        };
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
