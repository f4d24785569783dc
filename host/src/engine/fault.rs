//! Fault injection for the crash tests. `WEIR_FAULT=<point>` makes the process abort (no
//! destructors, no flushes: as close to `kill -9` as a process can do to itself) when the
//! run reaches that point; `<point>@<n>` the n-th time it does. With `WEIR_FAULT_TRACE=1`
//! the run prints `weir: phase <point>` each time it enters a phase, so a test that kills it
//! at a random moment can tell which phase the kill fell in. `WEIR_FAULT_PAUSE=<point>@<n>:<ms>`
//! holds the run there instead (printing `weir: paused at <point>`), so a test can break a
//! server under it at a known moment.
//!
//! Points, in the order a run reaches them: `extract` (a batch was read), `plugin` (a
//! transform call starts), `sink_write` (a batch goes to the sinks), `before_sink_commit`,
//! `after_first_sink_commit`, `after_sink_commit` (all sinks committed, state not yet),
//! `state_committed`. And `upload_part`: a part of a Parquet file's multipart upload has
//! been uploaded (during a sink write or commit; counted over the whole process).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

pub struct Fault {
    point: Option<(String, u64)>,
    pause: Option<(String, u64, Duration)>,
    trace: bool,
    reached: AtomicU64,
    paused: AtomicU64,
}

/// `<point>` or `<point>@<n>`: the point and which time it is reached (1 = the first).
fn point_at(text: &str) -> (String, u64) {
    match text.split_once('@') {
        Some((point, n)) => (point.to_string(), n.parse().unwrap_or(1)),
        None => (text.to_string(), 1),
    }
}

impl Fault {
    pub fn from_env() -> Fault {
        let point = std::env::var("WEIR_FAULT")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| point_at(&v));
        let pause = std::env::var("WEIR_FAULT_PAUSE").ok().and_then(|v| {
            let (at, ms) = v.rsplit_once(':')?;
            let (point, n) = point_at(at);
            Some((point, n, Duration::from_millis(ms.parse().ok()?)))
        });
        Fault {
            point,
            pause,
            trace: std::env::var_os("WEIR_FAULT_TRACE").is_some_and(|v| v == "1"),
            reached: AtomicU64::new(0),
            paused: AtomicU64::new(0),
        }
    }

    /// Whether `point` is traced, held or failed at.
    fn watches(&self, point: &str) -> bool {
        self.trace
            || self.point.as_ref().is_some_and(|(p, _)| p == point)
            || self.pause.as_ref().is_some_and(|(p, ..)| p == point)
    }

    pub fn at(&self, point: &str) {
        if self.trace {
            eprintln!("weir: phase {point}");
        }
        if let Some((target, n, hold)) = &self.pause
            && target == point
            && self.paused.fetch_add(1, Ordering::Relaxed) + 1 == *n
        {
            eprintln!("weir: paused at {point}");
            std::thread::sleep(*hold);
        }
        let Some((target, n)) = &self.point else {
            return;
        };
        if target == point && self.reached.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("weir: injected fault at {point}: aborting");
            std::process::abort();
        }
    }
}

/// The process's faults for points reached inside a sink (its uploads run on their own
/// tasks, away from the run's per-attempt [`Fault`]).
fn process() -> &'static Fault {
    static FAULT: OnceLock<Fault> = OnceLock::new();
    FAULT.get_or_init(Fault::from_env)
}

/// `store`, reaching `upload_part` after each uploaded part of a multipart upload when that
/// point is watched; otherwise `store` itself, so a normal run pays nothing.
pub fn watch_parts(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    match process().watches(UPLOAD_PART) {
        true => Arc::new(PartFaults(store)),
        false => store,
    }
}

const UPLOAD_PART: &str = "upload_part";

#[derive(Debug)]
struct PartFaults(Arc<dyn ObjectStore>);

impl fmt::Display for PartFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Everything but the multipart upload goes straight to the store.
#[async_trait]
impl ObjectStore for PartFaults {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.0.put_multipart_opts(location, opts).await?;
        Ok(Box::new(PartUpload(upload)))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.0.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.0.rename_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct PartUpload(Box<dyn MultipartUpload>);

#[async_trait]
impl MultipartUpload for PartUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.0.put_part(data);
        async move {
            part.await?;
            // The part is on the server: a fault here leaves an incomplete upload behind.
            process().at(UPLOAD_PART);
            Ok(())
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.0.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.0.abort().await
    }
}
