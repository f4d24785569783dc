//! [`StateStore`] on an embedded sled database.
//!
//! Each pipeline gets its own tree (`pipeline/<name>`), so pipelines sharing a state directory
//! cannot see each other's keys whatever their names, and every write for one pipeline can be a
//! single atomic batch on a single tree. Keys in a pipeline's tree:
//!
//! - `watermark`: the watermark, UTF-8;
//! - `pending`: the [`PendingLoad`], JSON;
//! - `file/<path>`: a consumed file's [`FileFingerprint`], JSON;
//! - `run/<seq>`: a [`RunRecord`], JSON. `<seq>` is 20 zero-padded digits from sled's id
//!   generator, which stays monotonic across restarts, so key order is the order runs were
//!   recorded (whatever the callers' clocks say) and `runs` is a reverse prefix scan.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{FileFingerprint, PendingLoad, RunRecord, StateError, StateStore};

const WATERMARK: &[u8] = b"watermark";
const PENDING: &[u8] = b"pending";
const FILE_PREFIX: &[u8] = b"file/";
const RUN_PREFIX: &[u8] = b"run/";

/// How long [`SledState::open`] waits for a held lock: sled lets go of a dropped database's
/// lock only once its background writes have finished, so reopening a state right after
/// closing it (a test, a schedule's next run) can find it briefly still held.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Run state in a sled database directory. sled locks the directory for as long as this is
/// open, so one process at a time can use it; pipelines run by one process share a clone.
#[derive(Clone)]
pub struct SledState {
    db: ::sled::Db,
    dir: PathBuf,
}

impl fmt::Debug for SledState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledState")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SledState {
    /// Opens (creating it and its parents if needed) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<SledState, StateError> {
        // Created here rather than by sled so that an unusable path is reported against `dir`.
        std::fs::create_dir_all(dir).map_err(|io| io_error(dir, io))?;
        let started = Instant::now();
        loop {
            match ::sled::Config::new().path(dir).open() {
                Ok(db) => {
                    return Ok(SledState {
                        db,
                        dir: dir.to_path_buf(),
                    });
                }
                Err(e) => match sled_error(dir, e) {
                    StateError::Locked { .. } if started.elapsed() < LOCK_WAIT => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    error => return Err(error),
                },
            }
        }
    }

    /// The database directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn tree(&self, pipeline: &str) -> Result<::sled::Tree, StateError> {
        self.db
            .open_tree(format!("pipeline/{pipeline}"))
            .map_err(|e| self.err(e))
    }

    /// fsyncs everything written so far; every write path ends here.
    fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map(drop).map_err(|e| self.err(e))
    }

    fn err(&self, e: ::sled::Error) -> StateError {
        sled_error(&self.dir, e)
    }

    /// A fresh history key, later than every key handed out before.
    fn run_key(&self) -> Result<Vec<u8>, StateError> {
        let seq = self.db.generate_id().map_err(|e| self.err(e))?;
        Ok(format!("run/{seq:020}").into_bytes())
    }

    fn encode(&self, value: &impl Serialize) -> Result<Vec<u8>, StateError> {
        // Cannot fail for the state types (plain structs, string map keys); mapped all the same.
        serde_json::to_vec(value).map_err(|e| StateError::Internal {
            dir: self.dir.clone(),
            detail: format!("cannot encode state: {e}"),
        })
    }

    fn decode<T: DeserializeOwned>(
        &self,
        pipeline: &str,
        key: &[u8],
        bytes: &[u8],
    ) -> Result<T, StateError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(pipeline, key, e))
    }

    fn corrupt(&self, pipeline: &str, key: &[u8], e: impl fmt::Display) -> StateError {
        StateError::Corrupt {
            dir: self.dir.clone(),
            detail: format!(
                "pipeline `{pipeline}`, key `{}`: {e}",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

impl StateStore for SledState {
    fn watermark(&self, pipeline: &str) -> Result<Option<String>, StateError> {
        let Some(bytes) = self
            .tree(pipeline)?
            .get(WATERMARK)
            .map_err(|e| self.err(e))?
        else {
            return Ok(None);
        };
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| self.corrupt(pipeline, WATERMARK, e))
    }

    fn consumed_files(
        &self,
        pipeline: &str,
    ) -> Result<BTreeMap<String, FileFingerprint>, StateError> {
        let mut files = BTreeMap::new();
        for entry in self.tree(pipeline)?.scan_prefix(FILE_PREFIX) {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            let path = std::str::from_utf8(&key[FILE_PREFIX.len()..])
                .map_err(|e| self.corrupt(pipeline, &key, e))?;
            files.insert(path.to_owned(), self.decode(pipeline, &key, &value)?);
        }
        Ok(files)
    }

    fn pending_load(&self, pipeline: &str) -> Result<Option<PendingLoad>, StateError> {
        match self.tree(pipeline)?.get(PENDING).map_err(|e| self.err(e))? {
            Some(bytes) => self.decode(pipeline, PENDING, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn record_pending(&self, pipeline: &str, pending: &PendingLoad) -> Result<(), StateError> {
        self.tree(pipeline)?
            .insert(PENDING, self.encode(pending)?)
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn commit_load(
        &self,
        pipeline: &str,
        watermark: Option<&str>,
        files: &BTreeMap<String, FileFingerprint>,
        run: &RunRecord,
    ) -> Result<(), StateError> {
        let tree = self.tree(pipeline)?;
        // Everything is encoded into the batch first: nothing reaches the tree unless all of it
        // does, and sled applies (and recovers) a batch as a whole.
        let mut batch = ::sled::Batch::default();
        if let Some(watermark) = watermark {
            batch.insert(WATERMARK, watermark.as_bytes());
        }
        for (path, fingerprint) in files {
            batch.insert(
                [FILE_PREFIX, path.as_bytes()].concat(),
                self.encode(fingerprint)?,
            );
        }
        batch.insert(self.run_key()?, self.encode(run)?);
        batch.remove(PENDING);
        tree.apply_batch(batch).map_err(|e| self.err(e))?;
        self.flush()
    }

    fn record_run(&self, pipeline: &str, run: &RunRecord) -> Result<(), StateError> {
        self.tree(pipeline)?
            .insert(self.run_key()?, self.encode(run)?)
            .map_err(|e| self.err(e))?;
        self.flush()
    }

    fn runs(&self, pipeline: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let mut runs = Vec::with_capacity(limit.min(64));
        for entry in self
            .tree(pipeline)?
            .scan_prefix(RUN_PREFIX)
            .rev()
            .take(limit)
        {
            let (key, value) = entry.map_err(|e| self.err(e))?;
            runs.push(self.decode(pipeline, &key, &value)?);
        }
        Ok(runs)
    }

    fn reset(&self, pipeline: &str, to: Option<&str>) -> Result<(), StateError> {
        let tree = self.tree(pipeline)?;
        let mut batch = ::sled::Batch::default();
        match to {
            Some(watermark) => batch.insert(WATERMARK, watermark.as_bytes()),
            None => batch.remove(WATERMARK),
        }
        // Scan-then-batch is safe: the directory lock means no other process writes meanwhile.
        for entry in tree.scan_prefix(FILE_PREFIX).keys() {
            batch.remove(entry.map_err(|e| self.err(e))?);
        }
        batch.remove(PENDING);
        tree.apply_batch(batch).map_err(|e| self.err(e))?;
        self.flush()
    }
}

fn sled_error(dir: &Path, e: ::sled::Error) -> StateError {
    match e {
        ::sled::Error::Io(io) => io_error(dir, io),
        ::sled::Error::Corruption { .. } => StateError::Corrupt {
            dir: dir.to_path_buf(),
            detail: e.to_string(),
        },
        other => StateError::Internal {
            dir: dir.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn io_error(dir: &Path, io: io::Error) -> StateError {
    use io::ErrorKind::*;
    let dir = dir.to_path_buf();
    // sled 0.34 reports a held lock as an `Other` I/O error worded "could not acquire lock on
    // <db>: <os error>" (`Config::try_lock`); the wording is all there is to go on.
    if io.to_string().contains("could not acquire lock") {
        return StateError::Locked { dir };
    }
    match io.kind() {
        // `AlreadyExists` and `NotADirectory`: a file where the directory (or a parent) should be.
        PermissionDenied | ReadOnlyFilesystem | NotADirectory | IsADirectory | AlreadyExists => {
            StateError::NotWritable { dir, io }
        }
        _ => StateError::Io { dir, io },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::RunStatus;

    fn fingerprint(size: u64) -> FileFingerprint {
        FileFingerprint {
            size,
            etag: Some(format!("etag-{size}")),
            modified_ms: Some(1_700_000_000_000),
        }
    }

    fn files(paths: &[(&str, u64)]) -> BTreeMap<String, FileFingerprint> {
        paths
            .iter()
            .map(|&(path, size)| (path.to_owned(), fingerprint(size)))
            .collect()
    }

    fn run(run_id: &str, status: RunStatus) -> RunRecord {
        RunRecord {
            run_id: run_id.into(),
            started_at: "2025-01-01T00:00:00Z".into(),
            finished_at: "2025-01-01T00:00:01Z".into(),
            status,
            load_id: Some(format!("load-{run_id}")),
            rows_read: 10,
            rows_rejected: 1,
            rows_quarantined: 2,
            loaded: BTreeMap::from([("warehouse".to_owned(), 7)]),
            watermark_before: None,
            watermark_after: Some("2025-01-01".into()),
            error: None,
        }
    }

    fn pending(load_id: &str) -> PendingLoad {
        PendingLoad {
            load_id: load_id.into(),
            watermark_before: Some("a".into()),
            watermark_after: Some("b".into()),
            files: files(&[("data/1.csv", 100)]),
            created_at: "2025-01-01T00:00:00Z".into(),
        }
    }

    fn run_ids(state: &SledState, pipeline: &str, limit: usize) -> Vec<String> {
        state
            .runs(pipeline, limit)
            .unwrap()
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    }

    #[test]
    fn a_new_pipeline_has_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = SledState::open(&dir.path().join("nested/state")).unwrap();
        assert_eq!(state.watermark("p").unwrap(), None);
        assert!(state.consumed_files("p").unwrap().is_empty());
        assert_eq!(state.pending_load("p").unwrap(), None);
        assert!(state.runs("p", 10).unwrap().is_empty());
    }

    #[test]
    fn pending_and_runs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = SledState::open(dir.path()).unwrap();
        state.record_pending("p", &pending("L1")).unwrap();
        assert_eq!(state.pending_load("p").unwrap(), Some(pending("L1")));
        // A newer pending load replaces the old one.
        state.record_pending("p", &pending("L2")).unwrap();
        assert_eq!(state.pending_load("p").unwrap(), Some(pending("L2")));

        let failed = RunRecord {
            error: Some("boom".into()),
            ..run("r1", RunStatus::Failed)
        };
        state.record_run("p", &failed).unwrap();
        assert_eq!(state.runs("p", 10).unwrap(), vec![failed]);
        // A run that committed nothing leaves the pending load alone.
        assert_eq!(state.pending_load("p").unwrap(), Some(pending("L2")));
    }

    #[test]
    fn a_lock_let_go_of_a_moment_later_is_waited_for() {
        // As when sled is still finishing a just-dropped database's writes: the lock goes
        // soon, and opening waits for it rather than report another run.
        let dir = tempfile::tempdir().unwrap();
        let held = SledState::open(dir.path()).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(held);
        });
        let state = SledState::open(dir.path()).unwrap();
        state.record_pending("p", &pending("L1")).unwrap();
        release.join().unwrap();
    }

    #[test]
    fn commit_load_applies_everything_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = SledState::open(dir.path()).unwrap();
            state.record_pending("p", &pending("L1")).unwrap();
            state
                .commit_load(
                    "p",
                    Some("w1"),
                    &files(&[("a.csv", 1), ("b.csv", 2)]),
                    &run("r1", RunStatus::Succeeded),
                )
                .unwrap();
        }
        // Dropped and reopened: what commit_load wrote is on disk.
        let state = SledState::open(dir.path()).unwrap();
        assert_eq!(state.watermark("p").unwrap().as_deref(), Some("w1"));
        assert_eq!(
            state.consumed_files("p").unwrap(),
            files(&[("a.csv", 1), ("b.csv", 2)])
        );
        assert_eq!(state.pending_load("p").unwrap(), None);
        assert_eq!(
            state.runs("p", 10).unwrap(),
            vec![run("r1", RunStatus::Succeeded)]
        );

        // No new watermark keeps the old one; files accumulate, a changed file is replaced.
        state
            .commit_load(
                "p",
                None,
                &files(&[("b.csv", 20), ("c.csv", 3)]),
                &run("r2", RunStatus::Succeeded),
            )
            .unwrap();
        assert_eq!(state.watermark("p").unwrap().as_deref(), Some("w1"));
        assert_eq!(
            state.consumed_files("p").unwrap(),
            files(&[("a.csv", 1), ("b.csv", 20), ("c.csv", 3)])
        );
        assert_eq!(run_ids(&state, "p", 10), ["r2", "r1"]);
    }

    #[test]
    fn reset_forgets_progress_but_keeps_history() {
        let dir = tempfile::tempdir().unwrap();
        let state = SledState::open(dir.path()).unwrap();
        state
            .commit_load(
                "p",
                Some("w1"),
                &files(&[("a.csv", 1)]),
                &run("r1", RunStatus::Succeeded),
            )
            .unwrap();
        state.record_pending("p", &pending("L2")).unwrap();

        state.reset("p", None).unwrap();
        assert_eq!(state.watermark("p").unwrap(), None);
        assert!(state.consumed_files("p").unwrap().is_empty());
        assert_eq!(state.pending_load("p").unwrap(), None);
        assert_eq!(run_ids(&state, "p", 10), ["r1"]);

        state
            .commit_load(
                "p",
                Some("w2"),
                &files(&[("b.csv", 1)]),
                &run("r2", RunStatus::Succeeded),
            )
            .unwrap();
        state.reset("p", Some("2024-06-01")).unwrap();
        assert_eq!(state.watermark("p").unwrap().as_deref(), Some("2024-06-01"));
        assert!(state.consumed_files("p").unwrap().is_empty());
        assert_eq!(run_ids(&state, "p", 10), ["r2", "r1"]);
    }

    #[test]
    fn runs_are_newest_first_and_limited_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = SledState::open(dir.path()).unwrap();
            for i in 1..=5 {
                state
                    .record_run("p", &run(&format!("r{i}"), RunStatus::NothingNew))
                    .unwrap();
            }
            assert_eq!(run_ids(&state, "p", 3), ["r5", "r4", "r3"]);
            assert!(run_ids(&state, "p", 0).is_empty());
        }
        // The history order comes from sled's id generator, which must stay monotonic on reopen.
        let state = SledState::open(dir.path()).unwrap();
        state
            .commit_load(
                "p",
                None,
                &BTreeMap::new(),
                &run("r6", RunStatus::Succeeded),
            )
            .unwrap();
        assert_eq!(
            run_ids(&state, "p", 100),
            ["r6", "r5", "r4", "r3", "r2", "r1"]
        );
    }

    #[test]
    fn pipelines_do_not_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let state = SledState::open(dir.path()).unwrap();
        // Names chosen so that naive `<pipeline>/<key>` prefixes would collide.
        let (a, b) = ("a", "a/file");
        state
            .commit_load(
                a,
                Some("wa"),
                &files(&[("x.csv", 1)]),
                &run("ra", RunStatus::Succeeded),
            )
            .unwrap();
        state.record_pending(a, &pending("La")).unwrap();

        assert_eq!(state.watermark(b).unwrap(), None);
        assert!(state.consumed_files(b).unwrap().is_empty());
        assert_eq!(state.pending_load(b).unwrap(), None);
        assert!(state.runs(b, 10).unwrap().is_empty());

        state.reset(b, Some("wb")).unwrap();
        assert_eq!(state.watermark(a).unwrap().as_deref(), Some("wa"));
        assert_eq!(state.consumed_files(a).unwrap(), files(&[("x.csv", 1)]));
        assert_eq!(state.pending_load(a).unwrap(), Some(pending("La")));
    }

    #[test]
    fn an_unwritable_directory_says_so() {
        // Root ignores permission bits, so use a path that cannot exist: one under a plain file.
        let file = tempfile::NamedTempFile::new().unwrap();
        let dir = file.path().join("state");
        let err = SledState::open(&dir).unwrap_err();
        assert!(matches!(err, StateError::NotWritable { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot write the state directory {}",
                dir.display()
            )),
            "{message}"
        );
        assert!(message.contains("set `state.path`"), "{message}");
        assert!(!err.is_transient());
    }

    #[test]
    fn a_second_opener_is_told_the_directory_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _held = SledState::open(dir.path()).unwrap();
        let err = SledState::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("another `host run`"), "{message}");
        assert!(!err.is_transient());
    }

    #[test]
    fn a_garbled_value_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let state = SledState::open(dir.path()).unwrap();
        state
            .tree("p")
            .unwrap()
            .insert(PENDING, b"{not json".as_slice())
            .unwrap();
        let err = state.pending_load("p").unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains("pipeline `p`, key `pending`"),
            "{err}"
        );
        assert!(!err.is_transient());
    }

    #[test]
    fn io_errors_are_transient_unless_they_will_recur() {
        let dir = Path::new("/state");
        assert!(io_error(dir, io::Error::from(io::ErrorKind::Interrupted)).is_transient());
        assert!(io_error(dir, io::Error::other("EIO")).is_transient());
        assert!(!io_error(dir, io::Error::from(io::ErrorKind::StorageFull)).is_transient());
        assert!(!io_error(dir, io::Error::from(io::ErrorKind::ReadOnlyFilesystem)).is_transient());
    }
}
