//! Retries with exponential backoff and jitter, driven by a [`RetryPolicy`]: the pipeline's,
//! or the step's own (`retry` on the source or a sink) for the errors that step raised.
//!
//! Only errors that say they are [`Transient`] are retried: retrying a permanent error (bad
//! credentials, a read-only directory, corrupt data) only delays the report the user needs.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

use rand::Rng;

use crate::config::types::RetryPolicy;

/// Whether an error may go away if the same operation is tried again.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// The delay before retry number `retry` (1 = first retry): initial * multiplier^(retry-1),
/// capped at max; with jitter, uniformly in [delay/2, delay].
///
/// `retry` 0 is treated as 1. A multiplier that would overflow, or is not a finite number,
/// gives the cap rather than a panic: policies come from user files.
pub fn delay(policy: &RetryPolicy, retry: u32, rng: &mut impl Rng) -> Duration {
    let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
    let raw = policy.initial_delay_ms as f64 * policy.multiplier.powi(exponent);
    let cap = policy.max_delay_ms;
    // NaN (0 * inf) and overflow both end at the cap; `as` saturates, so the cast is safe too.
    let ms = if raw.is_nan() || raw >= cap as f64 {
        cap
    } else {
        raw.max(0.0).round() as u64
    };
    // Jitter spreads out clients that failed together so they do not retry in lockstep; the
    // lower half stays so backoff still backs off. `div_ceil` keeps odd delays within bounds.
    let ms = if policy.jitter {
        rng.random_range(ms.div_ceil(2)..=ms)
    } else {
        ms
    };
    Duration::from_millis(ms)
}

/// Run `op` until it succeeds, fails permanently, or `attempts` are used; logs each retry with
/// tracing (warn) naming `what`, the attempt, the delay and the error. Permanent errors return
/// at once.
///
/// `op` is given the attempt number, starting at 1. An `attempts` of 0 still makes one attempt.
/// When every attempt fails, the last error is returned.
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, what: &str, op: F) -> Result<T, E>
where
    E: Transient + Display,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_by_step(what, |_| (None, *policy), op).await
}

/// [`retry`] where each error's step decides: `policy_of` names the step an error came from
/// (`None`: the whole of `what`) and its policy. Each step's failures are counted on their
/// own against its `attempts`, and its backoff grows with them.
pub async fn retry_by_step<T, E, P, F, Fut>(what: &str, policy_of: P, mut op: F) -> Result<T, E>
where
    E: Transient + Display,
    P: Fn(&E) -> (Option<String>, RetryPolicy),
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut failures: HashMap<Option<String>, u32> = HashMap::new();
    let mut attempt = 1;
    loop {
        let error = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(error) if !error.is_transient() => return Err(error),
            Err(error) => error,
        };
        let (step, policy) = policy_of(&error);
        let failed = failures.entry(step.clone()).or_default();
        *failed += 1;
        let (failed, attempts) = (*failed, policy.attempts.max(1));
        if failed >= attempts {
            return Err(error);
        }
        // The thread-local rng is a temporary dropped before the await, keeping the future Send.
        let wait = delay(&policy, failed, &mut rand::rng());
        let failing = match &step {
            Some(step) => format!("{what}: {step}"),
            None => what.to_string(),
        };
        tracing::warn!(
            what = failing,
            attempt = failed,
            attempts,
            delay_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            error = %error,
            "{failing} failed (attempt {failed} of {attempts}), retrying in {wait:?}: {error}"
        );
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Failure {
        transient: bool,
        call: u32,
    }

    impl Transient for Failure {
        fn is_transient(&self) -> bool {
            self.transient
        }
    }

    impl Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "failure on call {}", self.call)
        }
    }

    fn policy(attempts: u32, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay_ms: 100,
            max_delay_ms: 1_000,
            multiplier: 2.0,
            jitter,
        }
    }

    /// Tiny delays: tokio's `test-util` (paused time) is not enabled in this crate.
    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial_delay_ms: 1,
            max_delay_ms: 2,
            multiplier: 2.0,
            jitter: true,
        }
    }

    #[test]
    fn delays_grow_then_cap() {
        let mut rng = StdRng::seed_from_u64(1);
        let delays: Vec<u64> = (1..=7)
            .map(|n| delay(&policy(9, false), n, &mut rng).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(
            delay(&policy(9, false), 0, &mut rng),
            Duration::from_millis(100)
        );
        assert_eq!(
            delay(&policy(9, false), u32::MAX, &mut rng),
            Duration::from_millis(1_000)
        );
    }

    #[test]
    fn odd_policies_stay_within_the_cap() {
        let mut rng = StdRng::seed_from_u64(1);
        let base = policy(3, false);
        for multiplier in [f64::NAN, f64::INFINITY, 1e300, -3.0, 0.0] {
            let d = delay(&RetryPolicy { multiplier, ..base }, 3, &mut rng);
            assert!(d <= Duration::from_millis(1_000), "{multiplier}: {d:?}");
        }
        let initial_over_cap = RetryPolicy {
            initial_delay_ms: 5_000,
            ..base
        };
        assert_eq!(
            delay(&initial_over_cap, 1, &mut rng),
            Duration::from_millis(1_000)
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all_of_the_delay() {
        let mut rng = StdRng::seed_from_u64(7);
        for (retry, full) in [(1, 100), (3, 400), (6, 1_000)] {
            let samples: Vec<u64> = (0..2_000)
                .map(|_| delay(&policy(9, true), retry, &mut rng).as_millis() as u64)
                .collect();
            assert!(
                samples.iter().all(|&ms| (full / 2..=full).contains(&ms)),
                "retry {retry}"
            );
            // Really spread out, not stuck at one end.
            assert!(
                samples.iter().any(|&ms| ms < full * 3 / 4)
                    && samples.iter().any(|&ms| ms > full * 3 / 4)
            );
        }
        let odd = RetryPolicy {
            initial_delay_ms: 5,
            ..policy(9, true)
        };
        assert!((0..500).all(|_| (3..=5).contains(&delay(&odd, 1, &mut rng).as_millis())));
    }

    #[tokio::test]
    async fn a_transient_error_is_retried_until_success() {
        let calls = Cell::new(0);
        let result = retry(&fast(5), "fetching", |attempt| {
            calls.set(calls.get() + 1);
            assert_eq!(attempt, calls.get());
            async move {
                if attempt < 3 {
                    Err(Failure {
                        transient: true,
                        call: attempt,
                    })
                } else {
                    Ok("done")
                }
            }
        })
        .await;
        assert_eq!(result, Ok("done"));
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn a_permanent_error_is_returned_at_once() {
        let calls = Cell::new(0);
        let result: Result<(), _> = retry(&fast(5), "fetching", |attempt| {
            calls.set(calls.get() + 1);
            async move {
                Err(Failure {
                    transient: false,
                    call: attempt,
                })
            }
        })
        .await;
        assert_eq!(
            result,
            Err(Failure {
                transient: false,
                call: 1
            })
        );
        assert_eq!(calls.get(), 1);
    }

    #[tokio::test]
    async fn the_last_error_is_returned_when_attempts_run_out() {
        for (attempts, expected_calls) in [(4, 4), (1, 1), (0, 1)] {
            let calls = Cell::new(0);
            let result: Result<(), _> = retry(&fast(attempts), "fetching", |attempt| {
                calls.set(calls.get() + 1);
                async move {
                    Err(Failure {
                        transient: true,
                        call: attempt,
                    })
                }
            })
            .await;
            assert_eq!(
                result,
                Err(Failure {
                    transient: true,
                    call: expected_calls
                })
            );
            assert_eq!(calls.get(), expected_calls);
        }
    }

    #[tokio::test]
    async fn each_step_is_held_to_its_own_policy() {
        // Odd calls fail in the source (3 tries allowed), even ones in the sink.
        let run = |fail_first: u32, sink_attempts: u32| {
            let policy_of = move |failure: &Failure| match failure.call % 2 {
                1 => (Some("source".to_string()), fast(3)),
                _ => (Some("sink".to_string()), fast(sink_attempts)),
            };
            retry_by_step("load", policy_of, move |attempt| async move {
                match attempt <= fail_first {
                    true => Err(Failure {
                        transient: true,
                        call: attempt,
                    }),
                    false => Ok(attempt),
                }
            })
        };
        // Source fails (1), sink fails (2), source (3), sink (4), then success: the sink
        // needs 3 tries of its own, the source 3.
        assert_eq!(run(4, 3).await, Ok(5));
        // The sink allowed 2: its second failure (call 4) is the last.
        assert_eq!(
            run(4, 2).await,
            Err(Failure {
                transient: true,
                call: 4
            })
        );
        // The source's third failure (call 5) is past its 3 tries, whatever the sink allows.
        assert_eq!(
            run(6, 10).await,
            Err(Failure {
                transient: true,
                call: 5
            })
        );
    }

    #[test]
    fn the_retry_future_is_send() {
        fn assert_send<T: Send>(_: T) {}
        let policy = fast(2);
        assert_send(retry(&policy, "x", |_| async { Ok::<(), Failure>(()) }));
    }
}
