//! Tenants: a step runs as its tenant, held to the tenant's ceilings, CPU budget per run and
//! number of calls at once; one tenant's hostile plugin does not starve another's.

mod common;

use common::hostile::{attack, policy, serial};

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use weir::plugin::{Cause, Runtime, Tenant, TenantLimits, TransformSession};

fn runtime() -> &'static Runtime {
    static RUNTIME: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::with_cache_dir(None).unwrap())
}

fn hostile(timeout_ms: u64) -> TransformSession {
    common::load(&common::components().hostile)
        .transform_session("{}", policy(timeout_ms, 256))
        .unwrap()
}

/// A tenant whose only limit is `ms` of CPU time per run.
fn cpu_budgeted(name: &str, ms: u64) -> Tenant {
    let limits = TenantLimits {
        cpu_ms_per_run: Some(ms),
        ..TenantLimits::default()
    };
    runtime().tenant(name, &limits)
}

/// A call stopped at the tenant's deadline spends the run's budget, even when a busy machine
/// gave it less CPU than the deadline's wall time: the run is over for that tenant, not left
/// with a sliver for the next call.
#[test]
fn a_call_stopped_by_the_tenants_budget_spends_it_on_a_busy_machine_too() {
    let _serial = serial();
    let tenant = cpu_budgeted("busy-machine", 300);
    let run = tenant.start_run();
    let mut session = hostile(10_000).with_tenant(Some(run.clone()));
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Twice as many spinning threads as cores: the plugin's thread gets a share of one.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        for _ in 0..2 * cores {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let error = session.transform(&attack("loop")).unwrap_err();
        stop.store(true, Ordering::Relaxed);
        assert!(matches!(error.cause, Cause::TenantCpu { .. }), "{error}");
    });
    assert!(run.used() >= Duration::from_millis(300), "{:?}", run.used());
    let error = session
        .transform(&attack("none"))
        .expect_err("the budget is spent");
    assert!(matches!(error.cause, Cause::TenantCpu { .. }), "{error}");
}

/// Clean orders: every row passes the orders transform.
fn orders(rows: usize) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("exchange_rate", DataType::Float64, false),
        Field::new("order_date", DataType::Utf8, true),
    ]);
    let ids: Vec<i64> = (0..rows as i64).collect();
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i % 97).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                ids.iter()
                    .map(|i| 1.0 + (i % 500) as f64)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(vec![1.1; rows])),
            Arc::new(StringArray::from(
                ids.iter()
                    .map(|i| format!("2024-{:02}-{:02}T10:00:00Z", i % 12 + 1, i % 28 + 1))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

#[test]
fn a_tenants_cpu_budget_is_shared_by_its_steps_and_stops_the_run() {
    let _serial = serial();
    let tenant = cpu_budgeted("budgeted", 300);
    let run = tenant.start_run();
    // Two steps of one run, each with a call budget far above the tenant's run budget.
    let mut first = hostile(10_000).with_tenant(Some(run.clone()));
    let mut second = hostile(10_000).with_tenant(Some(run.clone()));
    assert_eq!(first.transform(&attack("none")).unwrap().num_rows(), 3);

    let started = Instant::now();
    let error = first
        .transform(&attack("loop"))
        .expect_err("the loop must stop");
    let took = started.elapsed();
    assert!(
        matches!(&error.cause, Cause::TenantCpu { tenant, budget_ms: 300 } if tenant == "budgeted"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("tenant `budgeted` used up its CPU time for this run (300 ms"),
        "{error}"
    );
    assert!(took < Duration::from_millis(1_000), "took {took:?}");
    assert!(run.used() >= Duration::from_millis(250), "{:?}", run.used());

    // The run's budget is spent: the other step is refused without running.
    let started = Instant::now();
    let error = second
        .transform(&attack("none"))
        .expect_err("the budget is spent");
    assert!(matches!(error.cause, Cause::TenantCpu { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_millis(250));

    // A new run starts with the whole budget.
    let mut next = hostile(10_000).with_tenant(Some(tenant.start_run()));
    assert_eq!(next.transform(&attack("none")).unwrap().num_rows(), 3);
}

/// Four threads each make one call that spins to its 200 ms budget. Their total wall time
/// shows how many ran at once.
fn four_spinning_calls(max_instances: Option<usize>, name: &str) -> Duration {
    let tenant = runtime().tenant(
        name,
        &TenantLimits {
            max_instances,
            ..TenantLimits::default()
        },
    );
    let mut sessions: Vec<TransformSession> = (0..4)
        .map(|_| hostile(200).with_tenant(Some(tenant.start_run())))
        .collect();
    for session in &mut sessions {
        session.transform(&attack("none")).unwrap(); // instantiate outside the timing
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        for session in &mut sessions {
            scope.spawn(move || {
                let error = session.transform(&attack("loop")).unwrap_err();
                assert!(matches!(error.cause, Cause::Timeout(_)), "{error}");
            });
        }
    });
    started.elapsed()
}

#[test]
fn max_instances_bounds_how_many_of_a_tenants_calls_run_at_once() {
    let _serial = serial();
    let gated = four_spinning_calls(Some(1), "one-at-a-time");
    assert!(
        gated >= Duration::from_millis(790),
        "one at a time took {gated:?}"
    );
    let open = four_spinning_calls(None, "unbounded");
    assert!(
        open < Duration::from_millis(600),
        "all at once took {open:?}"
    );
}

/// Rows per second of the healthy tenant's orders transform over `window`.
fn healthy_throughput(
    session: &mut TransformSession,
    batch: &RecordBatch,
    window: Duration,
) -> f64 {
    let started = Instant::now();
    let mut rows = 0;
    while started.elapsed() < window {
        rows += session.transform(batch).unwrap().num_rows();
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// The healthy tenant's throughput beside a hostile tenant that floods the host with
/// spinning calls from `threads` threads, as a share of its throughput alone (median of
/// three alternations).
fn share_beside_hostile(hostile_limits: TenantLimits, name: &str, threads: usize) -> f64 {
    let healthy = runtime().tenant("healthy", &TenantLimits::default());
    let mut session = common::load(&common::components().orders_transform)
        .transform_session("{}", policy(10_000, 256))
        .unwrap()
        .with_tenant(Some(healthy.start_run()));
    let batch = orders(65_536);
    let window = Duration::from_millis(700);
    healthy_throughput(&mut session, &batch, Duration::from_millis(200)); // warm up
    // Compiled now, not by the first flood while the healthy tenant is being measured.
    hostile(50);

    let mallory = runtime().tenant(name, &hostile_limits);
    let mut shares = Vec::new();
    for _ in 0..3 {
        let solo = healthy_throughput(&mut session, &batch, window);
        let stop = AtomicBool::new(false);
        let beside = std::thread::scope(|scope| {
            for _ in 0..threads {
                let mallory = mallory.clone();
                let stop = &stop;
                scope.spawn(move || {
                    let mut attacker = hostile(50).with_tenant(Some(mallory.start_run()));
                    while !stop.load(Ordering::Relaxed) {
                        let _ = attacker.transform(&attack("loop"));
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(100)); // let the flood start
            let beside = healthy_throughput(&mut session, &batch, window);
            stop.store(true, Ordering::Relaxed);
            beside
        });
        shares.push(beside / solo);
    }
    shares.sort_by(f64::total_cmp);
    shares[1]
}

#[test]
fn a_hostile_tenant_beside_a_healthy_one_keeps_80_percent_of_its_throughput() {
    let _serial = serial();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The hostile tenant may use all cores but the healthy tenant's one.
    let capped = TenantLimits {
        max_instances: Some(cores.saturating_sub(1).max(1)),
        ..TenantLimits::default()
    };
    let threads = 2 * cores;
    // The best of up to three rounds: other load on a shared (virtual) machine can only
    // lower a round's figure, never raise it, so one round at 80% shows what the cap
    // achieves; a cap that does not hold fails every round (as uncapped does).
    let mut share = 0.0_f64;
    for round in 1..=3 {
        share = share.max(share_beside_hostile(
            capped,
            &format!("mallory-capped-{round}"),
            threads,
        ));
        if share >= 0.8 {
            break;
        }
        println!(
            "round {round}: healthy throughput {:.0}% of solo",
            share * 100.0
        );
    }
    let uncapped = share_beside_hostile(TenantLimits::default(), "mallory-uncapped", threads);
    println!(
        "healthy tenant beside a hostile one flooding from {threads} threads on {cores} cores: \
         {:.0}% of solo throughput with the hostile tenant's max_instances = {}, {:.0}% uncapped",
        share * 100.0,
        capped.max_instances.unwrap(),
        uncapped * 100.0
    );
    assert!(
        share >= 0.8,
        "healthy throughput fell to {:.0}%",
        share * 100.0
    );
    // Without the cap the flood does take the healthy tenant's core (what the cap is for).
    assert!(
        uncapped < share,
        "uncapped {uncapped:.2} vs capped {share:.2}"
    );
}

/// `host run` of three pipelines at once in one process: a healthy tenant's loads; a
/// spinning plugin stopped by its tenant's CPU budget; a memory bomb stopped by its tenant's
/// memory ceiling, lower than the plugin's own default.
#[test]
fn host_run_applies_each_tenants_limits_from_the_project_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let c = common::components();
    std::fs::write(
        root.join("weir.toml"),
        "[tenants.acme]\nmax_instances = 1\n\n\
         [tenants.spinner]\ncpu_ms_per_run = 400\n\n\
         [tenants.hog]\nmemory_mib = 48\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("data/orders.csv"),
        "order_id,customer_id,amount,exchange_rate,order_date\n\
         1,7,10.0,1.0,2024-01-05T10:00:00Z\n2,8,20.0,1.0,2024-02-05T10:00:00Z\n",
    )
    .unwrap();
    std::fs::write(root.join("data/loop.csv"), "id,attack\n1,loop\n").unwrap();
    std::fs::write(root.join("data/bomb.csv"), "id,attack\n1,memory_bomb\n").unwrap();
    let pipeline =
        |name: &str, data: &str, plugin: &std::path::Path, tenant: &str, grants: &str| {
            let path = root.join(format!("{name}.toml"));
            std::fs::write(
                &path,
                format!(
                    r#"name = "{name}"
[source]
kind = "files"
path = "data/{data}"
[[steps]]
kind = "transform"
plugin = "{plugin}"
tenant = "{tenant}"
limits = {{ timeout_ms = 20000 }}
{grants}
[[sinks]]
kind = "sqlite"
name = "warehouse"
path = "{name}.db"
table = "orders"
"#,
                    plugin = plugin.display()
                ),
            )
            .unwrap();
            path
        };
    // The hostile test plugin asks for the clock (to show what a granted clock reads).
    let clock = "grants = { clock = true }";
    let healthy = pipeline("healthy", "orders.csv", &c.orders_transform, "acme", "");
    let spinner = pipeline("spinner", "loop.csv", &c.hostile, "spinner", clock);
    let hog = pipeline("hog", "bomb.csv", &c.hostile, "hog", clock);

    let started = Instant::now();
    let out = common::host()
        .args(["run", "--quiet"])
        .args([&healthy, &spinner, &hog])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2 of 3 pipelines failed"), "{stderr}");
    assert!(
        stderr.contains("tenant `spinner` used up its CPU time for this run (400 ms"),
        "{stderr}"
    );
    assert!(stderr.contains("over its cap of 48 MiB"), "{stderr}");
    // Stopped by the tenant's 400 ms, not the step's 20 s.
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let loaded = common::pipeline::sqlite_ids(&root.join("healthy.db"));
    assert_eq!(loaded.len(), 2, "{loaded:?}");
}

fn config_error(weir_toml: &str, step: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weir.toml"), weir_toml).unwrap();
    std::fs::create_dir_all(dir.path().join("plugin")).unwrap();
    std::fs::write(dir.path().join("plugin/Cargo.toml"), "[package]\n").unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"p\"\n[source]\nkind = \"files\"\npath = \"*.csv\"\n\
             [[steps]]\nkind = \"transform\"\nplugin = \"plugin\"\n{step}\n\
             [[sinks]]\nkind = \"parquet\"\nname = \"lake\"\npath = \"lake\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    common::stderr(&out).replace(&dir.path().display().to_string(), "TMP")
}

#[test]
fn a_step_names_a_tenant_the_project_defines_and_stays_under_its_ceilings() {
    assert_eq!(
        config_error("[tenants.acme]\n", "tenant = \"globex\"").trim(),
        "error: TMP/p.toml:8: steps[0].tenant: unknown tenant `globex`: TMP/weir.toml defines tenants acme"
    );
    assert_eq!(
        config_error(
            "[tenants.acme]\nmemory_mib = 64\n",
            "tenant = \"acme\"\nlimits = { memory_mib = 128 }"
        )
        .trim(),
        "error: TMP/p.toml:9: steps[0].limits.memory_mib: 128 is over tenant `acme`'s ceiling of 64 (TMP/weir.toml [tenants.acme])"
    );
    assert!(
        config_error("[tenants.acme]\nmax_instance = 1\n", "tenant = \"acme\"")
            .contains("weir.toml:2"),
        "a misspelt tenant limit names its line"
    );
}
