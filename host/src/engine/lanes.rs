//! Lanes: a run's plugin steps, once for each batch they may hold at a time.
//!
//! With `parallel_batches = n` a run keeps n lanes, each with its own instance of every
//! plugin step. Batch i goes through lane i mod n on the lane's own thread while the run reads
//! the next batches and loads the ones before (each lane holds up to two: see [`DEPTH`]);
//! the batches come out in the order they went in, so the checks, the quarantine and the
//! sinks after the steps see the same stream as with one lane. Even one lane overlaps a
//! batch's plugin calls with the next read and the previous batch's loading.
//!
//! A plugin that carries something from one batch to the next sees only every nth batch
//! with n lanes: such a step needs `parallel_batches = 1`.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use arrow::array::RecordBatch;
use tokio::sync::oneshot;

use crate::plugin::{CheckResult, PluginError, TransformSession, ValidateSession};

/// One instance of each of a run's plugin steps.
pub struct Lane {
    transforms: Vec<TransformSession>,
    validators: Vec<ValidateSession>,
}

/// A batch through a lane: the last transform's output, and each validator's checks of it
/// (none when no rows are left to check).
pub struct Stepped {
    /// The rows that went in.
    pub rows_in: usize,
    pub batch: RecordBatch,
    pub checks: Vec<Vec<CheckResult>>,
}

/// What a lane does with a batch: [`Lane`] runs the plugin steps.
pub trait Steps: Send + 'static {
    /// Batch `number` of the run (from 0, as errors count it) through every step.
    fn step(&mut self, number: u64, batch: RecordBatch) -> Result<Stepped, PluginError>;
}

impl Lane {
    pub fn new(transforms: Vec<TransformSession>, validators: Vec<ValidateSession>) -> Lane {
        Lane {
            transforms,
            validators,
        }
    }
}

impl Steps for Lane {
    fn step(&mut self, number: u64, mut batch: RecordBatch) -> Result<Stepped, PluginError> {
        let rows_in = batch.num_rows();
        // A plugin's output goes to the next plugin as the IPC stream it came in.
        let mut ipc = None;
        for session in &mut self.transforms {
            session.number_next(number);
            (batch, ipc) = session.transform_ipc(&batch, ipc.as_deref())?;
        }
        let mut checks = Vec::new();
        if batch.num_rows() > 0 {
            for session in &mut self.validators {
                session.number_next(number);
                checks.push(session.validate_ipc(&batch, ipc.as_deref())?);
            }
        }
        Ok(Stepped {
            rows_in,
            batch,
            checks,
        })
    }
}

/// Batches a lane holds at most: the one it runs and the next, so that a lane done before
/// the one with the oldest batch goes on with its next instead of waiting (two lanes: 74 →
/// 69 ms per 5 M rows through `orders-transform`; three made no difference).
const DEPTH: usize = 2;

/// What a lane's thread sends back: the batch through the steps, or the panic that
/// stopped it.
type Reply = std::thread::Result<Result<Stepped, PluginError>>;

/// A batch for a lane's thread: its number in the run, and where the result goes.
type Job = (u64, RecordBatch, oneshot::Sender<Reply>);

/// The lanes of a run, each on a thread of its own, and the batches in them, oldest first.
pub struct Lanes {
    lanes: Vec<mpsc::Sender<Job>>,
    in_flight: VecDeque<oneshot::Receiver<Reply>>,
    submitted: u64,
}

impl Lanes {
    /// At least one lane. Each lane's thread ends when the `Lanes` is dropped, once done
    /// with the batch it holds (a plugin's time budget bounds that).
    pub fn new<L: Steps>(lanes: Vec<L>) -> Lanes {
        assert!(!lanes.is_empty(), "a run has at least one lane");
        let lanes: Vec<mpsc::Sender<Job>> = (lanes.into_iter().enumerate())
            .map(|(i, mut lane)| {
                let (jobs, queue) = mpsc::channel::<Job>();
                std::thread::Builder::new()
                    .name(format!("weir-lane-{i}"))
                    .spawn(move || {
                        for (number, batch, reply) in queue {
                            let stepped = std::panic::catch_unwind(AssertUnwindSafe(|| {
                                lane.step(number, batch)
                            }));
                            let _ = reply.send(stepped); // unless the run has stopped waiting
                        }
                    })
                    .expect("a thread for a lane");
                jobs
            })
            .collect();
        Lanes {
            in_flight: VecDeque::with_capacity(DEPTH * lanes.len()),
            lanes,
            submitted: 0,
        }
    }

    /// Start `batch` through the steps. When the lanes hold all they may, the oldest batch
    /// is waited for first and returned.
    pub async fn submit(&mut self, batch: RecordBatch) -> Result<Option<Stepped>, PluginError> {
        let oldest = if self.in_flight.len() == DEPTH * self.lanes.len() {
            self.next().await.transpose()?
        } else {
            None
        };
        let number = self.submitted;
        self.submitted += 1;
        let (reply, answer) = oneshot::channel();
        let lane = &self.lanes[(number % self.lanes.len() as u64) as usize];
        lane.send((number, batch, reply))
            .expect("a lane's thread lives as long as its `Lanes`");
        self.in_flight.push_back(answer);
        Ok(oldest)
    }

    /// The oldest batch still in a lane, once through; `None` when the lanes are empty.
    pub async fn next(&mut self) -> Option<Result<Stepped, PluginError>> {
        let answer = self.in_flight.pop_front()?;
        match answer.await {
            Ok(Ok(stepped)) => Some(stepped),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => unreachable!("a lane's thread answers every batch it takes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::{Duration, Instant};

    use arrow::array::{Array, Int64Array};

    use super::*;

    /// How many steps run at once, at most, across lanes.
    #[derive(Default)]
    struct Overlap {
        running: Mutex<(usize, usize)>, // (now, most)
        changed: Condvar,
    }

    /// Work whose first two batches wait (up to `wait`) for another step to run beside them,
    /// answering with the batch's first value, its number and its lane.
    struct Meet {
        lane: i64,
        overlap: Arc<Overlap>,
        wait: Duration,
    }

    impl Steps for Meet {
        fn step(&mut self, number: u64, batch: RecordBatch) -> Result<Stepped, PluginError> {
            let mut running = self.overlap.running.lock().unwrap();
            running.0 += 1;
            running.1 = running.1.max(running.0);
            self.overlap.changed.notify_all();
            let started = Instant::now();
            while number < 2 && running.1 < 2 && started.elapsed() < self.wait {
                running = (self.overlap.changed)
                    .wait_timeout(running, self.wait)
                    .unwrap()
                    .0;
            }
            running.0 -= 1;
            drop(running);
            // Later batches finish sooner: the order out must still be the order in.
            std::thread::sleep(Duration::from_millis(20u64.saturating_sub(number * 4)));
            let value = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            let answer = Int64Array::from(vec![value.value(0), number as i64, self.lane]);
            Ok(Stepped {
                rows_in: 1,
                batch: RecordBatch::try_from_iter([("v", Arc::new(answer) as _)]).unwrap(),
                checks: Vec::new(),
            })
        }
    }

    /// Ten batches through `n` lanes: (first value, number, lane) of each as it came out,
    /// and the most steps that ran at once.
    async fn through(n: usize, wait: Duration) -> (Vec<Vec<i64>>, usize) {
        let overlap = Arc::new(Overlap::default());
        let lanes = (0..n as i64).map(|lane| Meet {
            lane,
            overlap: overlap.clone(),
            wait,
        });
        let mut lanes = Lanes::new(lanes.collect());
        let mut out = Vec::new();
        let mut take = |stepped: Stepped| {
            let v = stepped
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>();
            out.push(v.unwrap().values().to_vec());
        };
        for value in 100..110 {
            let batch =
                RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![value])) as _)])
                    .unwrap();
            if let Some(stepped) = lanes.submit(batch).await.unwrap() {
                take(stepped);
            }
        }
        while let Some(stepped) = lanes.next().await {
            take(stepped.unwrap());
        }
        let most = overlap.running.lock().unwrap().1;
        (out, most)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_run_side_by_side_and_come_out_in_order() {
        let (out, most) = through(3, Duration::from_secs(10)).await;
        let expected: Vec<Vec<i64>> = (0..10).map(|i| vec![100 + i, i, i % 3]).collect();
        assert_eq!(out, expected, "in order, batch i in lane i mod 3");
        assert!(most >= 2, "the lanes' steps never overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_lane_runs_one_batch_at_a_time() {
        let (out, most) = through(1, Duration::from_millis(5)).await;
        let expected: Vec<Vec<i64>> = (0..10).map(|i| vec![100 + i, i, 0]).collect();
        assert_eq!(out, expected);
        assert_eq!(most, 1);
    }
}
