//! The plugin runtime: Wasm components implementing `wit/plugin.wit`, run in a sandbox.
//!
//! - [`Runtime`] owns the wasmtime engine, the linker and the compiled-component cache;
//!   [`Runtime::load`] turns a `.wasm` file into a [`Plugin`].
//! - A [`Plugin`] is a component ready to instantiate (`InstancePre`), identified by sha256.
//! - A session ([`TransformSession`], [`ValidateSession`]) is one instance used for a stream
//!   of batches, under a [`StepPolicy`]: memory cap, time budget per call, capability grants.
//!   Any failure throws the instance away; the next call starts a fresh one. A batch goes
//!   in as an Arrow IPC stream written straight into the guest's memory (`lower`); what
//!   comes back is validated in full before the host uses it (`ipc`). A transform that
//!   answers by columns (`transform-columns`, since 0.1.1) sends back only the rows it
//!   keeps and the columns it computed; the host filters its own copy of the input's
//!   columns for the rest (`columns`). A transform or validator that names the
//!   columns it reads (`transform-reads`, `validate-reads`, since 0.1.2) is sent only those.
//! - A component's [`Manifest`] (`weir-plugin.toml`, embedded by `host plugin build`) names
//!   it and declares the capabilities it asks for. Loading refuses an import the sandbox
//!   never provides or one needing a capability the manifest does not declare;
//!   [`Plugin::check_grants`] refuses a step that does not grant a capability it imports.

pub(crate) mod bindings;
pub mod build;
mod cache;
pub(crate) mod columns;
mod compact;
mod error;
pub(crate) mod ipc;
mod limits;
mod lower;
pub mod manifest;
mod runtime;
mod sandbox;
pub mod scaffold;
pub(crate) mod session;
mod tenant;

use std::sync::Arc;

use wasmtime::component::InstancePre;

pub use bindings::CheckResult;
pub(crate) use cache::store_atomically;
pub use error::{Cause, PluginError};
pub use limits::{Grants, LimitOverrides, Limits, RowPolicy, StepPolicy};
pub use manifest::{Capability, Manifest};
pub use runtime::{Runtime, RuntimeError};
pub use session::{TransformSession, ValidateSession};
pub use tenant::{Tenant, TenantLimits, TenantRun};

use bindings::transformer::TransformerPre;
use bindings::validator::ValidatorPre;
use runtime::TimedEngine;
use sandbox::{Import, StoreState, classify};

/// Which world a component implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Transformer,
    Validator,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Transformer => "transformer",
            PluginKind::Validator => "validator",
        }
    }
}

/// A loaded plugin: compiled, checked, ready to instantiate. Cheap to clone.
#[derive(Clone)]
pub struct Plugin(Arc<Inner>);

enum Pre {
    Transformer(TransformerPre<StoreState>),
    Validator(ValidatorPre<StoreState>),
}

struct Inner {
    name: String,
    digest: String,
    imports: Vec<String>,
    manifest: Option<Manifest>,
    pre: Pre,
    engine: TimedEngine,
}

impl Plugin {
    fn new(
        name: String,
        digest: String,
        kind: PluginKind,
        imports: Vec<String>,
        manifest: Option<Manifest>,
        pre: InstancePre<StoreState>,
        engine: TimedEngine,
    ) -> Result<Plugin, PluginError> {
        let short = digest[..12].to_string();
        let pre = match kind {
            PluginKind::Transformer => TransformerPre::new(pre).map(Pre::Transformer),
            PluginKind::Validator => ValidatorPre::new(pre).map(Pre::Validator),
        }
        .map_err(|e| PluginError {
            plugin: name.clone(),
            digest: short,
            batch: None,
            cause: Cause::Load(format!("{e:#}")),
        })?;
        Ok(Plugin(Arc::new(Inner {
            name,
            digest,
            imports,
            manifest,
            pre,
            engine,
        })))
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The sha256 of the component, in hex.
    pub fn digest(&self) -> &str {
        &self.0.digest
    }

    pub fn short_digest(&self) -> &str {
        &self.0.digest[..12]
    }

    pub fn kind(&self) -> PluginKind {
        match self.0.pre {
            Pre::Transformer(_) => PluginKind::Transformer,
            Pre::Validator(_) => PluginKind::Validator,
        }
    }

    /// The interfaces the component imports (all provided by the sandbox, or it would not load).
    pub fn imports(&self) -> &[String] {
        &self.0.imports
    }

    /// The manifest embedded by `host plugin build`, if the component has one.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.0.manifest.as_ref()
    }

    /// The limits a step gets unless it sets its own: the manifest's, else the defaults.
    pub fn default_limits(&self) -> Limits {
        self.manifest().map(|m| m.limits).unwrap_or_default()
    }

    /// Refuse a step that does not grant a capability the component imports. (The manifest
    /// declares every such capability, or the component would not have loaded.)
    pub fn check_grants(&self, grants: &Grants) -> Result<(), PluginError> {
        for import in &self.0.imports {
            if let Import::Capability(capability) = classify(import)
                && !grants.allows(capability)
            {
                return Err(self.error(
                    None,
                    Cause::NotGranted {
                        import: import.clone(),
                        capability,
                    },
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn error(&self, batch: Option<u64>, cause: Cause) -> PluginError {
        PluginError {
            plugin: self.0.name.clone(),
            digest: self.short_digest().to_string(),
            batch,
            cause,
        }
    }

    fn wrong_world(&self, wanted: PluginKind) -> PluginError {
        self.error(
            None,
            Cause::WrongWorld {
                found: self.kind().as_str(),
                wanted: wanted.as_str(),
            },
        )
    }

    /// A session running this plugin as a transform. `config` is the step's settings as JSON.
    pub fn transform_session(
        &self,
        config: &str,
        policy: StepPolicy,
    ) -> Result<TransformSession, PluginError> {
        match &self.0.pre {
            Pre::Transformer(_) => Ok(TransformSession::new(self.clone(), config, policy)),
            Pre::Validator(_) => Err(self.wrong_world(PluginKind::Transformer)),
        }
    }

    /// A session running this plugin as a validator.
    pub fn validate_session(
        &self,
        config: &str,
        policy: StepPolicy,
    ) -> Result<ValidateSession, PluginError> {
        match &self.0.pre {
            Pre::Validator(_) => Ok(ValidateSession::new(self.clone(), config, policy)),
            Pre::Transformer(_) => Err(self.wrong_world(PluginKind::Validator)),
        }
    }

    /// Create and drop one instance in a fresh store (what every session does first).
    /// Used to measure instantiation and to check that a plugin instantiates at all.
    pub fn instantiate_once(&self, policy: &StepPolicy) -> Result<(), PluginError> {
        let mut store = session::new_store(&self.0.engine, policy);
        let result = match &self.0.pre {
            Pre::Transformer(pre) => pre.instantiate(&mut store).map(drop),
            Pre::Validator(pre) => pre.instantiate(&mut store).map(drop),
        };
        result.map_err(|e| self.error(None, Cause::Load(format!("{e:#}"))))
    }
}
