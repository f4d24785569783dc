//! Lanes: a run's plugin steps, once for each batch they may hold at a time.
//!
//! With `parallel_batches = n` a run keeps n lanes, each with its own instance of every
//! plugin step. Batch i goes through lane i mod n on a blocking thread while the run reads
//! the next batches and loads the ones before; the batches come out in the order they went
//! in, so the checks, the quarantine and the sinks after the steps see the same stream as
//! with one lane. Even one lane overlaps a batch's plugin calls with the next read and the
//! previous batch's loading.
//!
//! A plugin that carries something from one batch to the next sees only every nth batch
//! with n lanes: such a step needs `parallel_batches = 1`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use tokio::task::JoinHandle;

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

type Running = JoinHandle<Result<Stepped, PluginError>>;

/// The lanes of a run and the batches in them, oldest first.
pub struct Lanes<L: Steps = Lane> {
    lanes: Vec<Arc<Mutex<L>>>,
    in_flight: VecDeque<Running>,
    submitted: u64,
}

impl<L: Steps> Lanes<L> {
    /// At least one lane.
    pub fn new(lanes: Vec<L>) -> Lanes<L> {
        assert!(!lanes.is_empty(), "a run has at least one lane");
        Lanes {
            in_flight: VecDeque::with_capacity(lanes.len()),
            lanes: lanes.into_iter().map(|l| Arc::new(Mutex::new(l))).collect(),
            submitted: 0,
        }
    }

    /// Start `batch` through the steps. When every lane is busy, the oldest batch is
    /// waited for first (its lane is the one this batch takes) and returned.
    pub async fn submit(&mut self, batch: RecordBatch) -> Result<Option<Stepped>, PluginError> {
        let oldest = if self.in_flight.len() == self.lanes.len() {
            self.next().await.transpose()?
        } else {
            None
        };
        let number = self.submitted;
        self.submitted += 1;
        let lane = self.lanes[(number % self.lanes.len() as u64) as usize].clone();
        self.in_flight
            .push_back(tokio::task::spawn_blocking(move || {
                // The batches before this one in the lane have been taken out: it is free.
                let mut lane = lane.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                lane.step(number, batch)
            }));
        Ok(oldest)
    }

    /// The oldest batch still in a lane, once through; `None` when the lanes are empty.
    pub async fn next(&mut self) -> Option<Result<Stepped, PluginError>> {
        let running = self.in_flight.pop_front()?;
        Some(match running.await {
            Ok(stepped) => stepped,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => unreachable!("a run never cancels its lanes' tasks: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;
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
