//! A real S3-protocol server on loopback for the S3 tests: moto, installed into a venv by
//! `.ci/ensure-moto` when missing (never skipped: without Python and PyPI the tests fail and
//! say how to install it), one server per test on a free port, killed when dropped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Credentials the tests hand to the host; moto accepts any.
pub const ACCESS_KEY_ID: &str = "weir-test-key";
pub const SECRET_ACCESS_KEY: &str = "weir-test-secret-never-shown";

/// `moto_server`, installed on first use by the script CI uses too.
fn moto_server() -> &'static PathBuf {
    static SERVER: OnceLock<PathBuf> = OnceLock::new();
    SERVER.get_or_init(|| {
        let script = super::workspace_root().join(".ci/ensure-moto");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: the S3 tests need moto (pip install \"moto[server]\" into a venv at \
             ~/.cache/weir/moto-venv, or install python3 and python3-venv and rerun)",
            script.display()
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// The server's request log (one line per request, method and path included).
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        for _ in 0..3 {
            // The port is free now; another process may take it before moto binds it, so a
            // server that never answers is retried on another port.
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = tempfile::NamedTempFile::new().unwrap();
            let mut child = Command::new(moto_server())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(log.reopen().unwrap())
                .spawn()
                .expect("starting moto_server");
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Moto {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        log,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start on a loopback port");
    }

    /// The requests the server has answered so far, as logged (`"PUT /bucket/key?… HTTP/1.1"`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.log.path()).unwrap();
        log.lines()
            .filter_map(|line| Some(line.split_once('"')?.1.split('"').next()?.to_string()))
            .collect()
    }

    /// Creates `bucket` (a plain path-style PUT; moto needs no signature).
    pub fn create_bucket(&self, bucket: &str) {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    /// The keys of `bucket`'s multipart uploads begun and neither completed nor aborted
    /// (S3's ListMultipartUploads: object_store has no call for it).
    pub fn incomplete_uploads(&self, bucket: &str) -> Vec<String> {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        let request = format!(
            "GET /{bucket}?uploads HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        response
            .split("<Upload>")
            .skip(1)
            .filter_map(|upload| Some(upload.split_once("<Key>")?.1.split_once("</Key>")?.0))
            .map(str::to_string)
            .collect()
    }

    /// The `AWS_*` variables a `host` run reads the server and credentials from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// The test's own client for `bucket`.
    pub fn bucket(&self, bucket: &str) -> Bucket {
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_region("us-east-1")
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key(SECRET_ACCESS_KEY)
            .with_allow_http(true)
            .build()
            .unwrap();
        Bucket {
            store: Arc::new(store),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Bucket {
    store: Arc<dyn ObjectStore>,
}

fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

impl Bucket {
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        block_on(self.store.put(&Path::from(key), bytes.into())).unwrap();
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        block_on(async {
            let got = self.store.get(&Path::from(key)).await.unwrap();
            got.bytes().await.unwrap().to_vec()
        })
    }

    /// Every object under `prefix`, by key.
    pub fn list(&self, prefix: &str) -> BTreeMap<String, ObjectMeta> {
        block_on(async {
            let listed = self.store.list(Some(&Path::from(prefix)));
            let listed: Vec<ObjectMeta> = listed.try_collect().await.unwrap();
            listed
                .into_iter()
                .map(|meta| (meta.location.to_string(), meta))
                .collect()
        })
    }

    /// Every row of the Parquet dataset at `root` (outside `_weir` directories), with its
    /// partition directory.
    pub fn parquet_rows(&self, root: &str) -> Vec<(String, RecordBatch)> {
        let mut out = Vec::new();
        for key in self.list(root).into_keys() {
            let relative = key[root.len()..].trim_start_matches('/');
            if relative.starts_with("_weir") || !relative.ends_with(".parquet") {
                continue;
            }
            let partition = match relative.split_once('/') {
                Some((dir, _)) => dir.to_string(),
                None => String::new(),
            };
            let bytes = bytes::Bytes::from(self.get(&key));
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                out.push((partition.clone(), batch.unwrap()));
            }
        }
        out
    }
}
