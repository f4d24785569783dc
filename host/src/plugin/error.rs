//! One error type for everything that can go wrong with a plugin.

use std::fmt;
use std::time::Duration;

use super::manifest::{Capability, FILE_NAME};

/// A plugin step failed. Names the plugin, its digest and the batch, then the cause.
#[derive(Debug, thiserror::Error)]
pub struct PluginError {
    pub plugin: String,
    /// The first 12 hex digits of the component's sha256.
    pub digest: String,
    /// Zero-based number of the batch being processed, if the failure was in a batch call.
    pub batch: Option<u64>,
    pub cause: Cause,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin `{}` (sha256 {})", self.plugin, self.digest)?;
        if let Some(batch) = self.batch {
            write!(f, " failed on batch {batch}")?;
        } else {
            write!(f, " failed")?;
        }
        write!(f, ": {}", self.cause)
    }
}

/// Why a plugin step failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error("it ran past its time budget of {0:?} and was stopped")]
    Timeout(Duration),
    #[error(
        "tenant `{tenant}` used up its CPU time for this run ({budget_ms} ms, `cpu_ms_per_run` in weir.toml [tenants.{tenant}]) and the call was stopped"
    )]
    TenantCpu { tenant: String, budget_ms: u64 },
    #[error("it tried to grow its memory to {wanted_mib} MiB, over its cap of {cap_mib} MiB")]
    MemoryCap { wanted_mib: u64, cap_mib: u64 },
    #[error("it overflowed its stack (recursion too deep)")]
    StackOverflow,
    #[error("it trapped: {trap}{}", stderr_suffix(.stderr))]
    Trap { trap: String, stderr: String },
    #[error("it returned an error ({kind}): {message}")]
    Returned { kind: String, message: String },
    #[error("its output is not one Arrow IPC record batch: {0}")]
    BadOutput(String),
    #[error("its answer by columns (`transform-columns`) is unusable: {0}")]
    BadColumns(String),
    #[error("its answer to which columns it reads (`transform-reads`) is unusable: {0}")]
    BadReads(String),
    #[error("its output schema does not match the schema it declared: {0}")]
    SchemaMismatch(String),
    #[error("it returned {output} rows for {input} input rows; this step allows {policy}")]
    RowCount {
        input: usize,
        output: usize,
        policy: &'static str,
    },
    #[error("its validation names row {row}, but the batch has {rows} rows")]
    BadValidation { row: u32, rows: usize },
    #[error("it imports `{0}`, which Weir does not provide to plugins")]
    ForbiddenImport(String),
    #[error(
        "it imports `{import}`, which needs the `{}` capability, but {}",
        .capability.as_str(),
        undeclared_fix(*.capability, *.has_manifest)
    )]
    Undeclared {
        import: String,
        capability: Capability,
        has_manifest: bool,
    },
    #[error(
        "it imports `{import}` (the `{0}` capability its manifest asks for), which this step does not grant: add `grants = {{ {0} = true }}` to the step if it may have it",
        .capability.as_str()
    )]
    NotGranted {
        import: String,
        capability: Capability,
    },
    #[error("its manifest says it is a {manifest}, but it exports the {found} world")]
    ManifestWorld {
        manifest: &'static str,
        found: &'static str,
    },
    #[error("it is a {found} plugin, but this step needs a {wanted}")]
    WrongWorld {
        found: &'static str,
        wanted: &'static str,
    },
    #[error("it could not be loaded: {0}")]
    Load(String),
    #[error("the host could not encode the input batch: {0}")]
    Input(String),
}

fn undeclared_fix(capability: Capability, has_manifest: bool) -> String {
    let name = capability.as_str();
    if has_manifest {
        format!(
            "its manifest does not declare it: add `capabilities = [\"{name}\"]` to its {FILE_NAME} and rebuild"
        )
    } else {
        format!(
            "it has no embedded manifest declaring it: add {FILE_NAME} with `capabilities = [\"{name}\"]` to the crate and build it with `host plugin build`"
        )
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\n  plugin stderr: {stderr}")
    }
}
