//! The Parquet sink's commit interrupted half way on S3 (moto on loopback): S3 has no
//! rename, so a move is a copy and a delete; a commit that stops after moving some objects
//! must, once replayed, end exactly as a clean load, with nothing staged left behind.

mod common;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use weir::config::types::S3Settings;
use weir::load::{LoadMode, LoadSpec, ParquetSink, Sink};
use weir::store::{self, Access, Location};

use common::s3::{ACCESS_KEY_ID, Moto, SECRET_ACCESS_KEY};

/// An S3 store whose copies fail once `copies_left` runs out: a process that stops in the
/// middle of a commit's moves.
#[derive(Debug)]
struct StopsCopying {
    inner: Arc<dyn ObjectStore>,
    copies_left: AtomicUsize,
}

impl fmt::Display for StopsCopying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StopsCopying({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for StopsCopying {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let left = self.copies_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(object_store::Error::Generic {
                store: "StopsCopying",
                source: "the process stopped here".into(),
            });
        }
        self.copies_left.store(left - 1, Ordering::SeqCst);
        self.inner.copy_opts(from, to, options).await
    }
}

fn orders(rows: &[(i64, &str)]) -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
        ),
        (
            "month",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.0 as f64),
            )),
        ),
    ];
    RecordBatch::try_from_iter(columns).unwrap()
}

/// A sink on `s3://weir-test/lake` whose store allows `copies` copies.
fn sink(moto: &Moto, copies: usize) -> ParquetSink {
    let settings = S3Settings {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some(ACCESS_KEY_ID.into()),
        secret_access_key: Some(SECRET_ACCESS_KEY.into()),
        allow_http: Some(true),
        ..Default::default()
    };
    let location = Location::S3 {
        bucket: "weir-test".into(),
        prefix: "lake".into(),
    };
    let mut opened = store::open(&location, &settings, Access::Write).unwrap();
    opened.store = Arc::new(StopsCopying {
        inner: opened.store,
        copies_left: AtomicUsize::new(copies),
    });
    let mode = LoadMode::Append;
    let sink = ParquetSink::with_store("lake", opened, Some("month".into()), mode).unwrap();
    // One file per batch: several objects to move.
    sink.with_rows_per_file(1)
}

async fn load(sink: &ParquetSink, batches: &[RecordBatch]) -> Result<Option<u64>, String> {
    let spec = LoadSpec {
        pipeline: "orders".into(),
        load_id: "l1".into(),
        schema: batches[0].schema(),
    };
    let Some(mut load) = sink.begin(&spec).await.map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    for batch in batches {
        load.write(batch).await.map_err(|e| e.to_string())?;
    }
    load.commit().await.map(Some).map_err(|e| e.to_string())
}

#[test]
fn a_commit_stopped_between_moves_on_s3_is_completed_by_the_replay() {
    let moto = Moto::start();
    moto.create_bucket("weir-test");
    let bucket = moto.bucket("weir-test");
    let batches = [
        orders(&[(1, "2024-01")]),
        orders(&[(2, "2024-02")]),
        orders(&[(3, "2024-02")]),
    ];
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // Two of the three objects are moved, then the process "stops": no marker.
    let stopped = runtime.block_on(load(&sink(&moto, 2), &batches));
    let error = stopped.unwrap_err();
    assert!(
        error.contains("moving") && error.contains("stopped here"),
        "{error}"
    );
    let keys = |prefix: &str| bucket.list(prefix).into_keys().collect::<BTreeSet<_>>();
    assert!(keys("lake/_weir_loads").is_empty(), "{:?}", keys("lake"));
    assert!(
        !keys("lake/_weir_staging").is_empty(),
        "the third object is still staged"
    );

    // The replay (same load id, same batches) completes the load exactly once.
    let replayed = runtime.block_on(load(&sink(&moto, usize::MAX), &batches));
    assert_eq!(replayed, Ok(Some(3)));
    let expected: BTreeSet<String> = [
        "lake/_weir_loads/l1.json",
        "lake/month=2024-01/part-l1-0.parquet",
        "lake/month=2024-02/part-l1-0.parquet",
        "lake/month=2024-02/part-l1-1.parquet",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys("lake"), expected);
    let rows: usize = bucket
        .parquet_rows("lake")
        .iter()
        .map(|(_, b)| b.num_rows())
        .sum();
    assert_eq!(rows, 3);

    // And a further replay is recognised as committed.
    let again = runtime.block_on(load(&sink(&moto, 0), &batches));
    assert_eq!(again, Ok(None));
}
