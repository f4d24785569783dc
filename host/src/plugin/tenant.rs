//! Tenants: whose plugin a step runs, and the limits that owner is held to across every
//! step and every pipeline this host process runs.
//!
//! A tenant's limits (`[tenants.NAME]` in `weir.toml`) are ceilings over its steps' own
//! limits, plus two that only make sense across steps:
//! - `max_instances`: how many of the tenant's plugin calls run at once in this process;
//!   further calls wait their turn. This is what keeps a tenant that spins or floods from
//!   taking the cores other tenants' steps need.
//! - `cpu_ms_per_run`: the CPU time all of the tenant's plugin calls may use in one pipeline
//!   run. A call is stopped when it would run past what is left (a wall-time deadline of
//!   what is left), and the run fails; the budget then counts as spent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::limits::Limits;

/// `[tenants.NAME]` in `weir.toml`. Every limit is optional; an unset one does not bind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantLimits {
    /// Ceiling on each of the tenant's plugin instances' memory, MiB.
    pub memory_mib: Option<u64>,
    /// Ceiling on the time budget of one call, milliseconds.
    pub timeout_ms: Option<u64>,
    /// Plugin calls of this tenant running at once in this host process.
    pub max_instances: Option<usize>,
    /// CPU time of all the tenant's plugin calls in one pipeline run, milliseconds.
    pub cpu_ms_per_run: Option<u64>,
}

impl TenantLimits {
    /// A step's limits, held to the tenant's ceilings.
    pub fn cap(&self, limits: Limits) -> Limits {
        Limits {
            memory_mib: self
                .memory_mib
                .map_or(limits.memory_mib, |m| m.min(limits.memory_mib)),
            timeout_ms: self
                .timeout_ms
                .map_or(limits.timeout_ms, |t| t.min(limits.timeout_ms)),
        }
    }
}

/// A tenant as this process knows it: its limits and the gate its calls pass through.
/// Cheap to clone; every clone shares the gate.
#[derive(Debug, Clone)]
pub struct Tenant(Arc<TenantInner>);

#[derive(Debug)]
struct TenantInner {
    name: String,
    limits: TenantLimits,
    gate: Gate,
}

impl Tenant {
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn limits(&self) -> &TenantLimits {
        &self.0.limits
    }

    /// The tenant's account for one pipeline run. Steps of one run share it.
    pub fn start_run(&self) -> TenantRun {
        TenantRun {
            tenant: self.clone(),
            used_ns: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The tenants of one host process, by name: every pipeline the process runs shares them.
#[derive(Debug, Default)]
pub(super) struct Tenants(Mutex<HashMap<String, Tenant>>);

impl Tenants {
    /// The tenant `name`; its limits are fixed by the first caller (one project file).
    pub fn get(&self, name: &str, limits: &TenantLimits) -> Tenant {
        let mut tenants = self.0.lock().expect("tenants lock");
        tenants
            .entry(name.to_string())
            .or_insert_with(|| {
                Tenant(Arc::new(TenantInner {
                    name: name.to_string(),
                    limits: *limits,
                    gate: Gate::new(limits.max_instances),
                }))
            })
            .clone()
    }
}

/// A tenant's account in one run: the CPU time its plugin calls have used so far.
#[derive(Debug, Clone)]
pub struct TenantRun {
    tenant: Tenant,
    used_ns: Arc<AtomicU64>,
}

impl TenantRun {
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// CPU time left in this run, if the tenant has a budget.
    pub(super) fn remaining(&self) -> Option<Duration> {
        let budget = self.tenant.0.limits.cpu_ms_per_run?;
        let used = Duration::from_nanos(self.used_ns.load(Ordering::Relaxed));
        Some(Duration::from_millis(budget).saturating_sub(used))
    }

    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.used_ns.load(Ordering::Relaxed))
    }

    /// Count the run's budget as spent: a call was stopped at the deadline it set. (That
    /// deadline is wall time; on a busy machine the call may have had a little less CPU.)
    pub(super) fn exhaust(&self) {
        if let Some(budget) = self.tenant.0.limits.cpu_ms_per_run {
            let budget_ns = budget.saturating_mul(1_000_000);
            self.used_ns.fetch_max(budget_ns, Ordering::Relaxed);
        }
    }

    /// Run one plugin call through the tenant's gate, charging its CPU time to the run.
    pub(super) fn call<R>(&self, f: impl FnOnce() -> R) -> R {
        let _permit = self.tenant.0.gate.enter();
        let started = thread_cpu_time();
        let result = f();
        let spent = thread_cpu_time().saturating_sub(started);
        self.used_ns.fetch_add(
            u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        result
    }
}

/// A counting semaphore for blocking threads (plugin calls run on blocking threads).
#[derive(Debug)]
struct Gate {
    limit: Option<usize>,
    running: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Gate);

impl Gate {
    fn new(limit: Option<usize>) -> Gate {
        Gate {
            limit: limit.map(|l| l.max(1)),
            running: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn enter(&self) -> Permit<'_> {
        let mut running = self.running.lock().expect("gate lock");
        if let Some(limit) = self.limit {
            while *running >= limit {
                running = self.freed.wait(running).expect("gate lock");
            }
        }
        *running += 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.running.lock().expect("gate lock") -= 1;
        self.0.freed.notify_one();
    }
}

/// The CPU time this thread has used: a plugin call runs on the calling thread, so the
/// difference across a call is the call's CPU time, whatever else the machine is doing.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
