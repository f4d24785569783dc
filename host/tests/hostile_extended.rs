//! Hostile plugins beyond the sandbox suite: allocation up to the cap on every call, a 1 GiB
//! output, a validator that spins, an output schema that lies about nullability, 100 slow
//! calls at once; and the figures — time to interrupt against the budget, host memory across
//! 10,000 hostile calls — written into RELIABILITY.md.

mod common;

use common::hostile::{attack, policy, serial};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir::plugin::{Cause, Plugin, TransformSession, ValidateSession};

fn hostile() -> Plugin {
    common::load(&common::components().hostile)
}

fn session(timeout_ms: u64, memory_mib: u64) -> TransformSession {
    hostile()
        .transform_session("{}", policy(timeout_ms, memory_mib))
        .unwrap()
}

fn validator(timeout_ms: u64) -> ValidateSession {
    common::load(&common::components().hostile_validator)
        .validate_session("{}", policy(timeout_ms, 256))
        .unwrap()
}

/// The resident set of this process, MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn allocating_just_under_the_cap_on_every_call_never_accumulates() {
    // Serial, as every test here: the figures test times interrupts to the millisecond.
    let _serial = serial();
    // 48 MiB of a 64 MiB cap, 30 times on one instance: memory freed by a call is reused.
    let mut session = session(10_000, 64);
    for call in 0..30 {
        let out = session
            .transform(&attack("near_cap:48"))
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_eq!(out.num_rows(), 3);
    }
    // The same instance still refuses what does not fit.
    let error = session.transform(&attack("near_cap:80")).unwrap_err();
    assert!(
        matches!(error.cause, Cause::MemoryCap { cap_mib: 64, .. }),
        "{error}"
    );
}

#[test]
fn a_1_gib_output_is_stopped_by_the_memory_cap() {
    let _serial = serial();
    let before = rss_mib();
    let mut session = session(10_000, 256);
    let started = Instant::now();
    let error = session.transform(&attack("huge_output")).unwrap_err();
    assert!(
        matches!(error.cause, Cause::MemoryCap { cap_mib: 256, .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        rss_mib() - before < 400.0,
        "host grew {} MiB",
        rss_mib() - before
    );
    assert_eq!(session.transform(&attack("none")).unwrap().num_rows(), 3);
}

#[test]
fn an_output_schema_that_lies_about_nullability_is_refused() {
    let _serial = serial();
    let mut session = session(10_000, 256);
    let error = session.transform(&attack("nullable_lie")).unwrap_err();
    assert!(matches!(error.cause, Cause::BadOutput(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("Column 'id' is declared as non-nullable but contains null values"),
        "{error}"
    );
}

#[test]
fn a_validator_that_spins_is_stopped_within_its_budget() {
    let _serial = serial();
    let mut validator = validator(300);
    assert!(validator.validate(&attack("none")).unwrap()[0].passed);
    let started = Instant::now();
    let error = validator.validate(&attack("loop")).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error.cause, Cause::Timeout(_)), "{error}");
    assert!(
        error.to_string().starts_with("plugin `hostile_validator`"),
        "{error}"
    );
    assert!(took < Duration::from_millis(900), "took {took:?}");
    assert!(validator.validate(&attack("none")).unwrap()[0].passed);
}

/// Time to stop an endless loop, against its budget: p50 and p99 of `calls` calls.
fn interrupt_times(calls: usize, budget_ms: u64) -> (Duration, Duration) {
    let mut session = session(budget_ms, 256);
    let mut times: Vec<Duration> = (0..calls)
        .map(|_| {
            let started = Instant::now();
            let error = session.transform(&attack("loop")).unwrap_err();
            assert!(matches!(error.cause, Cause::Timeout(_)), "{error}");
            started.elapsed()
        })
        .collect();
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// 10,000 calls that each end in a different failure; the host's memory before and after.
fn churn(calls: usize) -> (f64, f64, Duration) {
    let attacks = [
        "panic",
        "trap",
        "garbage",
        "extra_rows",
        "schema_lie",
        "nullable_lie",
        "recursion",
        "near_cap:40",
    ];
    let mut session = session(10_000, 32);
    // Warm up: the allocator and the runtime's caches reach their steady size.
    for attack_name in attacks.iter().cycle().take(200) {
        let _ = session.transform(&attack(attack_name));
    }
    let before = rss_mib();
    let started = Instant::now();
    for attack_name in attacks.iter().cycle().take(calls) {
        let result = session.transform(&attack(attack_name));
        assert!(result.is_err(), "{attack_name} must fail");
    }
    (before, rss_mib(), started.elapsed())
}

/// `threads` calls at once of a plugin busy for a while; meanwhile a timer on the host's
/// async runtime and a healthy transform must keep going. Returns (all calls' wall time,
/// the timer's worst lateness, healthy batches done meanwhile).
fn concurrent_slow_calls(threads: usize) -> (Duration, Duration, u64) {
    let stop = AtomicBool::new(false);
    let worst_late = AtomicU64::new(0);
    let healthy_batches = AtomicU64::new(0);
    let mut sessions: Vec<TransformSession> = (0..threads).map(|_| session(60_000, 64)).collect();
    for s in &mut sessions {
        s.transform(&attack("none")).unwrap();
    }
    let mut healthy = session(10_000, 64);
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let tokio = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio.block_on(async {
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let late = asked.elapsed().saturating_sub(Duration::from_millis(10));
                    worst_late.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
                }
            });
        });
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                healthy.transform(&attack("none")).unwrap();
                healthy_batches.fetch_add(1, Ordering::Relaxed);
            }
        });
        let callers: Vec<_> = sessions
            .iter_mut()
            .map(|s| {
                scope.spawn(move || {
                    s.transform(&attack("spin:40")).unwrap();
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    (
        started.elapsed(),
        Duration::from_micros(worst_late.load(Ordering::Relaxed)),
        healthy_batches.load(Ordering::Relaxed),
    )
}

#[test]
fn figures_interrupts_memory_churn_and_100_slow_calls() {
    let _serial = serial();
    let (p50, p99) = interrupt_times(40, 100);
    let (before, after, churn_took) = churn(10_000);
    let (slow_took, worst_late, healthy) = concurrent_slow_calls(100);

    common::reliability::write_section(
        "hostile",
        &[
            format!(
                "| endless loop, 100 ms budget | 40 calls | 40 stopped | p50 {:.0} ms, p99 {:.0} ms (budget + 1 ms epoch tick) |",
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            ),
            format!(
                "| 10,000 failing calls (panic, trap, garbage, extra rows, schema and nullability lies, stack overflow, 40 MiB under a 32 MiB cap) | 10,000 calls | 10,000 failed cleanly | host RSS {before:.0} → {after:.0} MiB; {:.1} s |",
                churn_took.as_secs_f64()
            ),
            format!(
                "| 100 calls at once of a plugin busy ~40 M iterations | 100 calls | 100 completed | {:.1} s in all; host timer worst lateness {:.0} ms; a healthy transform did {healthy} batches meanwhile |",
                slow_took.as_secs_f64(),
                worst_late.as_secs_f64() * 1e3
            ),
        ],
    );
    // The epoch follows the clock: a stop comes a tick or two after the budget, not 10% later.
    assert!(p50 < Duration::from_millis(108), "p50 {p50:?}");
    assert!(p99 < Duration::from_millis(300), "p99 {p99:?}");
    assert!(
        after - before < 64.0,
        "host grew {before:.0} → {after:.0} MiB"
    );
    assert!(
        worst_late < Duration::from_millis(500),
        "timer late {worst_late:?}"
    );
    assert!(healthy > 0, "the healthy transform made no progress");
}
