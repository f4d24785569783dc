//! Run state: per pipeline, the watermark, the files already consumed, the load in flight and
//! the run history.
//!
//! The engine talks to a [`StateStore`] so other stores can come later; today there is one,
//! [`SledState`], an embedded sled database in the pipeline's `state.path`.
//!
//! # Exactly-once loads
//!
//! Before the first sink commit the engine writes a [`PendingLoad`] ([`StateStore::record_pending`]);
//! after the last one it calls [`StateStore::commit_load`], which advances the watermark, adds the
//! files to the consumed set, appends the run and clears the pending load in one atomic step. A
//! crash in between leaves the pending load behind, naming exactly what to replay.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::schedule::retry::Transient;

mod sled;

pub use self::sled::SledState;

/// What a consumed file looked like when it was loaded, so a changed file can be told from a
/// file already seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    pub size: u64,
    pub etag: Option<String>,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: Option<i64>,
}

/// A load the engine is about to commit to its sinks: written (and flushed) BEFORE the first sink
/// commit, so a crash between sink commits and the state commit can be replayed exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLoad {
    pub load_id: String,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    /// The files this load consumes, by path.
    pub files: BTreeMap<String, FileFingerprint>,
    /// RFC 3339.
    pub created_at: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    Succeeded,
    NothingNew,
    ValidationFailed,
    Failed,
    /// Stopped by SIGINT or SIGTERM before it finished.
    Interrupted,
}

/// One run of a pipeline, as kept in its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    pub status: RunStatus,
    /// The load this run committed, if any.
    pub load_id: Option<String>,
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub rows_quarantined: u64,
    /// Rows written, by sink name.
    pub loaded: BTreeMap<String, u64>,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    pub error: Option<String>,
}

/// Where the engine keeps run state. Every write is durable before it returns.
pub trait StateStore: Send + Sync {
    /// The high-water mark of the last committed load, if any.
    fn watermark(&self, pipeline: &str) -> Result<Option<String>, StateError>;
    /// Every file a committed load has consumed, by path.
    fn consumed_files(
        &self,
        pipeline: &str,
    ) -> Result<BTreeMap<String, FileFingerprint>, StateError>;
    /// The load that was about to be committed when the last run stopped, if it never was.
    fn pending_load(&self, pipeline: &str) -> Result<Option<PendingLoad>, StateError>;
    /// Durable (flushed) before it returns.
    fn record_pending(&self, pipeline: &str, pending: &PendingLoad) -> Result<(), StateError>;
    /// Atomically: new watermark (if Some), files added to the consumed set, the run appended to
    /// history, the pending load cleared; flushed before it returns.
    fn commit_load(
        &self,
        pipeline: &str,
        watermark: Option<&str>,
        files: &BTreeMap<String, FileFingerprint>,
        run: &RunRecord,
    ) -> Result<(), StateError>;
    /// Append a run that committed nothing (failed, nothing new, validation failed); flushed.
    fn record_run(&self, pipeline: &str, run: &RunRecord) -> Result<(), StateError>;
    /// Newest first.
    fn runs(&self, pipeline: &str, limit: usize) -> Result<Vec<RunRecord>, StateError>;
    /// Forget watermark, consumed files and pending load (history is kept); `to` sets the
    /// watermark instead of clearing it.
    fn reset(&self, pipeline: &str, to: Option<&str>) -> Result<(), StateError>;
}

/// The run state could not be read or written. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// sled holds an exclusive OS file lock on the database for as long as it is open.
    #[error(
        "the state directory {} is locked by another process, most likely another `host run` \
         using it; wait for that run to finish (the lock goes when its process exits), or give \
         this pipeline its own `state.path`",
        dir.display()
    )]
    Locked { dir: PathBuf },
    #[error(
        "cannot write the state directory {}: {io}; make it writable by this user, or set \
         `state.path` in the pipeline file to a writable directory",
        dir.display()
    )]
    NotWritable { dir: PathBuf, io: io::Error },
    #[error("reading or writing the state in {} failed: {io}; check the disk (free space, mount) and run again", dir.display())]
    Io { dir: PathBuf, io: io::Error },
    #[error(
        "the state in {} is corrupt ({detail}); restore the directory from a backup, or move it \
         aside to start over (the next run then loads every file again)",
        dir.display()
    )]
    Corrupt { dir: PathBuf, detail: String },
    #[error("the state store in {} failed: {detail}; this is a bug, please report it", dir.display())]
    Internal { dir: PathBuf, detail: String },
}

impl StateError {
    /// Whether trying again later may succeed. Only plain I/O errors qualify: a lock, a read-only
    /// directory or corruption will still be there on the next attempt.
    pub fn is_transient(&self) -> bool {
        match self {
            StateError::Io { io, .. } => !matches!(
                io.kind(),
                io::ErrorKind::StorageFull
                    | io::ErrorKind::QuotaExceeded
                    | io::ErrorKind::FileTooLarge
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::Unsupported
            ),
            StateError::Locked { .. }
            | StateError::NotWritable { .. }
            | StateError::Corrupt { .. }
            | StateError::Internal { .. } => false,
        }
    }
}

impl Transient for StateError {
    fn is_transient(&self) -> bool {
        StateError::is_transient(self)
    }
}
