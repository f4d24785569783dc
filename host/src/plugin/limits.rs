//! What a plugin may use: memory, time and capabilities, set per pipeline step.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manifest::Capability;

/// Resource limits of one plugin step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Cap on the plugin's linear memory, all memories together, in MiB.
    pub memory_mib: u64,
    /// Wall-time budget of one call (one batch), in milliseconds.
    pub timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 256,
            timeout_ms: 10_000,
        }
    }
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Capabilities a pipeline grants a plugin. Everything is denied by default: without a grant
/// the clocks read the Unix epoch and random numbers come from a fixed seed, so a plugin
/// stays deterministic. Files, environment, network and stdin are never given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Grants {
    /// The real wall and monotonic clocks.
    pub clock: bool,
    /// Real (secure and insecure) random numbers.
    pub random: bool,
}

impl Grants {
    pub fn allows(&self, capability: Capability) -> bool {
        match capability {
            Capability::Clock => self.clock,
            Capability::Random => self.random,
        }
    }
}

/// A step's `limits`: each one it sets replaces the plugin's default (its manifest's, else
/// [`Limits::default`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    pub memory_mib: Option<u64>,
    pub timeout_ms: Option<u64>,
}

impl LimitOverrides {
    pub fn over(self, defaults: Limits) -> Limits {
        Limits {
            memory_mib: self.memory_mib.unwrap_or(defaults.memory_mib),
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
        }
    }
}

/// How the number of rows a transform returns may relate to the rows it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowPolicy {
    /// Filter or map: at most as many rows as came in (the default).
    #[default]
    AtMostInput,
    /// Map: exactly as many rows as came in.
    Same,
    /// Any number (e.g. a transform that explodes a list column).
    Any,
}

impl RowPolicy {
    pub fn allows(self, input: usize, output: usize) -> bool {
        match self {
            RowPolicy::AtMostInput => output <= input,
            RowPolicy::Same => output == input,
            RowPolicy::Any => true,
        }
    }
}

/// Everything the host enforces on one plugin step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepPolicy {
    pub limits: Limits,
    pub grants: Grants,
    pub rows: RowPolicy,
}
