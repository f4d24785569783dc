//! Lanes: a run's plugin steps, once for each batch they may hold at a time.
//!
//! With `parallel_batches = n` a run keeps n lanes, each with its own instance of every
//! plugin step and its own thread. The lanes share one queue of batches: a lane takes the
//! next one as soon as it is free, so a lane on a slower core (a busy or shared machine)
//! takes fewer batches instead of holding the others up. Meanwhile the run reads the next
//! batches and loads the ones before (up to [`DEPTH`] per lane are in the steps at once);
//! the batches come out in the order they went in, so the checks, the quarantine and the
//! sinks after the steps see the same stream as with one lane. Even one lane overlaps a
//! batch's plugin calls with the next read and the previous batch's loading.
//!
//! A plugin that carries something from one batch to the next sees only some of the batches
//! with n lanes: such a step needs `parallel_batches = 1`.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

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

/// Batches in the steps at once, per lane: the one each lane runs and as many again, so
/// that a lane done before the one with the oldest batch goes on with the next instead of
/// waiting (two lanes: 74 → 69 ms per 5 M rows through `orders-transform`; three made no
/// difference on a quiet machine).
const DEPTH: usize = 2;

/// What a lane's thread sends back: the batch through the steps, or the panic that
/// stopped it.
type Reply = std::thread::Result<Result<Stepped, PluginError>>;

/// A batch for a lane's thread: its number in the run, and where the result goes.
type Job = (u64, RecordBatch, oneshot::Sender<Reply>);

/// The lanes of a run, each on a thread of its own taking batches from one queue, and the
/// batches in them, oldest first.
pub struct Lanes {
    queue: mpsc::Sender<Job>,
    lanes: usize,
    in_flight: VecDeque<oneshot::Receiver<Reply>>,
    submitted: u64,
}

impl Lanes {
    /// At least one lane. Each lane's thread ends when the `Lanes` is dropped, once done
    /// with the batch it runs (a plugin's time budget bounds that); batches still queued
    /// are skipped.
    pub fn new<L: Steps>(lanes: Vec<L>) -> Lanes {
        assert!(!lanes.is_empty(), "a run has at least one lane");
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let count = lanes.len();
        for (i, mut lane) in lanes.into_iter().enumerate() {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(format!("weir-lane-{i}"))
                .spawn(move || {
                    loop {
                        // Held only while waiting for the next batch, not while running it.
                        let job = jobs
                            .lock()
                            .map_err(drop)
                            .and_then(|j| j.recv().map_err(drop));
                        let Ok((number, batch, reply)) = job else {
                            return; // the `Lanes` is gone
                        };
                        if reply.is_closed() {
                            continue; // queued before the run stopped waiting
                        }
                        let stepped =
                            std::panic::catch_unwind(AssertUnwindSafe(|| lane.step(number, batch)));
                        let _ = reply.send(stepped); // unless the run has stopped waiting
                    }
                })
                .expect("a thread for a lane");
        }
        Lanes {
            queue,
            lanes: count,
            in_flight: VecDeque::with_capacity(DEPTH * count),
            submitted: 0,
        }
    }

    /// Start `batch` through the steps. When the lanes hold all they may, the oldest batch
    /// is waited for first and returned.
    pub async fn submit(&mut self, batch: RecordBatch) -> Result<Option<Stepped>, PluginError> {
        let oldest = if self.in_flight.len() == DEPTH * self.lanes {
            self.next().await.transpose()?
        } else {
            None
        };
        let number = self.submitted;
        self.submitted += 1;
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((number, batch, reply))
            .expect("the lanes' threads live as long as their `Lanes`");
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
    use std::sync::Condvar;
    use std::sync::atomic::{AtomicUsize, Ordering};
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
            Ok(answer(&batch, number, self.lane))
        }
    }

    /// Work that takes `pause` per batch, answering as [`Meet`] does, and counting the
    /// batches it ran in `ran`.
    struct Paced {
        lane: i64,
        pause: Duration,
        ran: Arc<AtomicUsize>,
    }

    impl Paced {
        fn new(lane: i64, pause_ms: u64) -> Paced {
            Paced {
                lane,
                pause: Duration::from_millis(pause_ms),
                ran: Arc::default(),
            }
        }
    }

    impl Steps for Paced {
        fn step(&mut self, number: u64, batch: RecordBatch) -> Result<Stepped, PluginError> {
            self.ran.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(self.pause);
            Ok(answer(&batch, number, self.lane))
        }
    }

    /// The batch's first value, its number and the lane that ran it.
    fn answer(batch: &RecordBatch, number: u64, lane: i64) -> Stepped {
        let value = batch.column(0).as_any().downcast_ref::<Int64Array>();
        let answer = Int64Array::from(vec![value.unwrap().value(0), number as i64, lane]);
        Stepped {
            rows_in: 1,
            batch: RecordBatch::try_from_iter([("v", Arc::new(answer) as _)]).unwrap(),
            checks: Vec::new(),
        }
    }

    /// `count` batches (values 100, 101, ...) through `lanes`: the answer of each, in the
    /// order they came out.
    async fn through<L: Steps>(lanes: Vec<L>, count: i64) -> Vec<Vec<i64>> {
        let mut lanes = Lanes::new(lanes);
        let mut out = Vec::new();
        let mut take = |stepped: Stepped| {
            let v = stepped
                .batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>();
            out.push(v.unwrap().values().to_vec());
        };
        for value in 100..100 + count {
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
        out
    }

    /// Ten batches through `n` [`Meet`] lanes: the answers, and the most steps that ran at once.
    async fn meet(n: usize, wait: Duration) -> (Vec<Vec<i64>>, usize) {
        let overlap = Arc::new(Overlap::default());
        let lanes = (0..n as i64).map(|lane| Meet {
            lane,
            overlap: overlap.clone(),
            wait,
        });
        let out = through(lanes.collect(), 10).await;
        let most = overlap.running.lock().unwrap().1;
        (out, most)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_run_side_by_side_and_come_out_in_order() {
        let (out, most) = meet(3, Duration::from_secs(10)).await;
        let numbers: Vec<[i64; 2]> = out.iter().map(|a| [a[0], a[1]]).collect();
        let expected: Vec<[i64; 2]> = (0..10).map(|i| [100 + i, i]).collect();
        assert_eq!(numbers, expected, "in order, numbered as they went in");
        assert!(most >= 2, "the lanes' steps never overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_lane_runs_one_batch_at_a_time() {
        let (out, most) = meet(1, Duration::from_millis(5)).await;
        let expected: Vec<Vec<i64>> = (0..10).map(|i| vec![100 + i, i, 0]).collect();
        assert_eq!(out, expected);
        assert_eq!(most, 1);
    }

    /// One lane 40× slower than the other (as on a core the machine gives mostly to
    /// something else): the fast lane takes more of the batches, rather than every other one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_lane_takes_fewer_batches() {
        let lanes = vec![Paced::new(0, 40), Paced::new(1, 1)];
        let out = through(lanes, 16).await;
        let numbers: Vec<[i64; 2]> = out.iter().map(|a| [a[0], a[1]]).collect();
        let expected: Vec<[i64; 2]> = (0..16).map(|i| [100 + i, i]).collect();
        assert_eq!(numbers, expected, "in order, numbered as they went in");
        let fast = out.iter().filter(|a| a[2] == 1).count();
        assert!(
            fast >= 10,
            "the fast lane ran {fast} of 16 batches: {out:?}"
        );
    }

    /// A run that stops (an error in a later stage, say) drops its `Lanes`: the batch a lane
    /// runs finishes, the ones still queued are not run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_batches_are_skipped_once_the_run_stops_waiting() {
        let lane = Paced::new(0, 50);
        let ran = lane.ran.clone();
        let mut lanes = Lanes::new(vec![lane]);
        for value in 0..DEPTH as i64 {
            let batch =
                RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(vec![value])) as _)])
                    .unwrap();
            assert!(lanes.submit(batch).await.unwrap().is_none());
        }
        drop(lanes);
        tokio::time::sleep(Duration::from_millis(50 * DEPTH as u64 + 100)).await;
        let ran = ran.load(Ordering::Relaxed);
        assert!(
            ran <= 1,
            "{ran} of {DEPTH} batches ran after the run stopped"
        );
    }
}
