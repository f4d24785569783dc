//! One task per sink: batches go to each sink through a small bounded channel, so the sinks
//! write in parallel with each other and with the plugins, and memory stays bounded.

use std::sync::Arc;

use arrow::array::RecordBatch;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::RunError;
use crate::load::{LoadError, LoadSpec, Sink, SinkLoad};

/// Batches in flight per sink.
const QUEUE: usize = 2;

/// What a sink's task leaves for the commit.
pub struct Written {
    /// The open load; `None` if nothing was written or the sink already held the load.
    pub load: Option<Box<dyn SinkLoad>>,
    /// The sink already held this load id (a replay) and skipped it.
    pub already_held: bool,
}

pub struct SinkWriter {
    pub name: String,
    sender: Option<mpsc::Sender<RecordBatch>>,
    /// Taken by the first `finish`: a task's outcome can be awaited only once.
    task: Option<JoinHandle<Result<Written, LoadError>>>,
}

impl SinkWriter {
    /// Start the sink's task. The load begins with the first batch (its schema makes the table).
    pub fn spawn(sink: Arc<dyn Sink>, pipeline: &str, load_id: &str) -> SinkWriter {
        let (sender, mut receiver) = mpsc::channel::<RecordBatch>(QUEUE);
        let name = sink.name().to_string();
        let (pipeline, load_id) = (pipeline.to_string(), load_id.to_string());
        let task = tokio::spawn(async move {
            let mut written = Written {
                load: None,
                already_held: false,
            };
            while let Some(batch) = receiver.recv().await {
                if written.load.is_none() && !written.already_held {
                    let spec = LoadSpec {
                        pipeline: pipeline.clone(),
                        load_id: load_id.clone(),
                        schema: batch.schema(),
                    };
                    written.load = sink.begin(&spec).await?;
                    written.already_held = written.load.is_none();
                    if written.already_held {
                        tracing::info!(
                            "sink `{}` already holds load {load_id}; skipping it",
                            sink.name()
                        );
                    }
                }
                if let Some(load) = written.load.as_mut()
                    && let Err(e) = load.write(&batch).await
                {
                    return Err(aborted(sink.name(), &mut written, e).await);
                }
            }
            if let Some(load) = written.load.as_mut()
                && let Err(e) = load.prepare().await
            {
                return Err(aborted(sink.name(), &mut written, e).await);
            }
            Ok(written)
        });
        SinkWriter {
            name,
            sender: Some(sender),
            task: Some(task),
        }
    }

    /// Hand a batch to the sink (waits while its queue is full).
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), RunError> {
        let sender = self.sender.as_ref().expect("not finished");
        if sender.send(batch).await.is_err() {
            // The task stopped early: it failed; `finish` says why.
            return self.finish().await.map(|_| ());
        }
        Ok(())
    }

    /// Wait until everything sent is written; the load, ready to commit or abort. After the
    /// first call (which may have reported the task's failure) there is nothing left.
    pub async fn finish(&mut self) -> Result<Written, RunError> {
        self.sender = None;
        let name = self.name.clone();
        let Some(task) = self.task.take() else {
            return Ok(Written {
                load: None,
                already_held: false,
            });
        };
        match task.await {
            Ok(result) => result.map_err(|error| RunError::Load { sink: name, error }),
            Err(e) => {
                let error = LoadError::Io {
                    sink: name.clone(),
                    action: "writing".into(),
                    source: std::io::Error::other(e.to_string()),
                };
                Err(RunError::Load { sink: name, error })
            }
        }
    }

    /// Abort whatever the sink has written of this load.
    pub async fn abort(mut self) {
        if let Ok(Written {
            load: Some(load), ..
        }) = self.finish().await
            && let Err(e) = load.abort().await
        {
            tracing::warn!("sink `{}`: could not abort the load: {e}", self.name);
        }
    }
}

/// `error`, after aborting the load it stopped.
async fn aborted(sink: &str, written: &mut Written, error: LoadError) -> LoadError {
    if let Some(load) = written.load.take()
        && let Err(abort) = load.abort().await
    {
        tracing::warn!("sink `{sink}`: could not abort the load: {abort}");
    }
    error
}
