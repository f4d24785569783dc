//! The sandbox against hostile plugins: every attack fails its call with its own clear
//! error, within its budget, and the very next call on the same session succeeds.

mod common;

use common::hostile::{attack as batch, policy};

use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use weir::plugin::{Cause, Grants, PluginError, RowPolicy, StepPolicy, TransformSession};

fn session(policy: StepPolicy) -> TransformSession {
    common::load(&common::components().hostile)
        .transform_session("{}", policy)
        .unwrap()
}

/// Run one attack; return its error and how long it took, after checking that the next call
/// on the same session (a fresh instance) succeeds.
fn attack(name: &str, policy: StepPolicy) -> (PluginError, Duration) {
    let mut session = session(policy);
    assert_eq!(
        session.transform(&batch("none")).unwrap().num_rows(),
        3,
        "healthy before"
    );
    let started = Instant::now();
    let error = session
        .transform(&batch(name))
        .expect_err("the attack must fail");
    let took = started.elapsed();
    let healthy = session
        .transform(&batch("none"))
        .unwrap_or_else(|e| panic!("after {name}: {e}"));
    assert_eq!(healthy.num_rows(), 3);
    (error, took)
}

#[test]
fn endless_loop_is_stopped_within_twice_its_budget() {
    let (error, took) = attack("loop", policy(300, 256));
    assert!(
        matches!(error.cause, Cause::Timeout(d) if d == Duration::from_millis(300)),
        "{error}"
    );
    assert!(took < Duration::from_millis(600), "took {took:?}");
    assert!(took >= Duration::from_millis(300), "took {took:?}");
    let text = error.to_string();
    assert!(text.starts_with("plugin `hostile` (sha256 "), "{text}");
    assert!(
        text.contains("failed on batch 1: it ran past its time budget of 300ms"),
        "{text}"
    );
}

#[test]
fn memory_bomb_hits_the_cap() {
    let (error, took) = attack("memory_bomb", policy(10_000, 64));
    match &error.cause {
        Cause::MemoryCap {
            wanted_mib,
            cap_mib,
        } => {
            assert_eq!(*cap_mib, 64);
            assert!(*wanted_mib > 64);
        }
        other => panic!("expected a memory cap error, got {other}"),
    }
    assert!(
        error.to_string().contains("over its cap of 64 MiB"),
        "{error}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn deep_recursion_overflows_the_stack() {
    // Small frames: the engine's stack limit stops it.
    let (error, _) = attack("native_recursion", policy(10_000, 256));
    assert!(matches!(error.cause, Cause::StackOverflow), "{error}");
    assert!(
        error.to_string().contains("overflowed its stack"),
        "{error}"
    );
    // Large frames: the guest's stack in linear memory runs out first.
    let (error, _) = attack("recursion", policy(10_000, 256));
    assert!(
        error
            .to_string()
            .contains("usually a stack overflow: recursion too deep"),
        "{error}"
    );
}

#[test]
fn panic_is_reported_with_its_message() {
    let (error, _) = attack("panic", policy(10_000, 256));
    assert!(matches!(error.cause, Cause::Trap { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("the hostile plugin panics on purpose"),
        "{error}"
    );
}

#[test]
fn explicit_trap_is_reported() {
    let (error, _) = attack("trap", policy(10_000, 256));
    assert!(
        matches!(&error.cause, Cause::Trap { trap, .. } if trap.contains("unreachable")),
        "{error}"
    );
}

#[test]
fn output_that_is_not_arrow_ipc_is_rejected() {
    let (error, _) = attack("garbage", policy(10_000, 256));
    assert!(matches!(error.cause, Cause::BadOutput(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("its output is not one Arrow IPC record batch"),
        "{error}"
    );
}

#[test]
fn columns_read_that_the_input_does_not_have_are_rejected() {
    // The hostile plugin claims to read column 2 of an input of two (`id`, `bad_reads`).
    let input = batch("none");
    let renamed = arrow::datatypes::Schema::new(vec![
        input.schema().field(0).clone(),
        input.schema().field(1).clone().with_name("bad_reads"),
    ]);
    let input = RecordBatch::try_new(renamed.into(), input.columns().to_vec()).unwrap();
    let mut session = session(policy(10_000, 256));
    let error = session.transform(&input).expect_err("must be refused");
    assert!(matches!(error.cause, Cause::BadReads(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("`transform-reads`")
            && message.contains("names columns [0, 2] of an input of 2"),
        "{message}"
    );
    assert_eq!(session.transform(&batch("none")).unwrap().num_rows(), 3);
}

#[test]
fn an_answer_by_columns_that_does_not_add_up_is_rejected() {
    // The three-row batch has two columns (`id`, `attack`).
    for (name, expected) in [
        ("keep_short", "its keep bitmap has 0 bytes for 3 input rows"),
        (
            "bad_input_column",
            "it names input column 2, but the input has 2",
        ),
        (
            "bad_computed_column",
            "it names computed column 0, but it computed 0",
        ),
        (
            "computed_rows",
            "its computed columns have 6 rows, but it keeps 3 of 3 input rows",
        ),
    ] {
        let (error, _) = attack(name, policy(10_000, 256));
        assert!(
            matches!(error.cause, Cause::BadColumns(_)),
            "{name}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("its answer by columns (`transform-columns`) is unusable")
                && message.contains(expected),
            "{name}: {message}"
        );
    }
    let (error, _) = attack("columns_garbage", policy(10_000, 256));
    assert!(matches!(error.cause, Cause::BadOutput(_)), "{error}");
}

#[test]
fn a_whole_answer_comes_with_its_stream() {
    // Answering with every row and every column computed, in order, is a whole batch: its
    // IPC stream is kept, to go to the next plugin as it is.
    let mut session = session(StepPolicy::default());
    let input = batch("none");
    let (output, stream) = session.transform_ipc(&input, None).unwrap();
    assert_eq!(output, input);
    let stream = stream.expect("a whole answer's stream");
    let decoded = arrow::ipc::reader::StreamReader::try_new(stream.as_slice(), None).unwrap();
    let decoded: Vec<RecordBatch> = decoded.map(Result::unwrap).collect();
    assert_eq!(decoded, vec![output]);
}

#[test]
fn more_rows_than_allowed_are_rejected() {
    let (error, _) = attack("extra_rows", policy(10_000, 256));
    assert!(
        matches!(
            error.cause,
            Cause::RowCount {
                input: 3,
                output: 6,
                ..
            }
        ),
        "{error}"
    );
    // Where the step allows any row count, the same output is fine.
    let mut any = session(StepPolicy {
        rows: RowPolicy::Any,
        ..StepPolicy::default()
    });
    assert_eq!(any.transform(&batch("extra_rows")).unwrap().num_rows(), 6);
    // And where it requires the same count, a filter would be refused too.
    let mut same = session(StepPolicy {
        rows: RowPolicy::Same,
        ..StepPolicy::default()
    });
    assert!(same.transform(&batch("extra_rows")).is_err());
}

#[test]
fn undeclared_output_columns_are_a_schema_mismatch() {
    let (error, _) = attack("schema_lie", policy(10_000, 256));
    assert!(matches!(error.cause, Cause::SchemaMismatch(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("column `undeclared` was not declared"),
        "{error}"
    );
}

fn snoop(grants: Grants) -> RecordBatch {
    let plugin = common::load(&common::components().hostile);
    let mut session = plugin
        .transform_session(
            r#"{"snoop": true}"#,
            StepPolicy {
                grants,
                ..StepPolicy::default()
            },
        )
        .unwrap();
    session.transform(&batch("none")).unwrap()
}

fn text(batch: &RecordBatch, column: &str) -> String {
    batch
        .column_by_name(column)
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string()
}

#[test]
fn a_plugin_sees_no_files_no_environment_and_a_stopped_clock() {
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("WEIR_TEST_SECRET", "hunter2") };
    let seen = snoop(Grants::default());
    assert!(
        text(&seen, "file").starts_with("denied"),
        "file: {}",
        text(&seen, "file")
    );
    assert!(
        text(&seen, "dir").starts_with("denied"),
        "dir: {}",
        text(&seen, "dir")
    );
    assert_eq!(
        text(&seen, "env"),
        "",
        "a plugin must see no environment variables"
    );
    assert_eq!(
        text(&seen, "clock_secs"),
        "0",
        "without a grant the clock reads the epoch"
    );
}

#[test]
fn a_granted_clock_is_the_real_one() {
    let seen = snoop(Grants {
        clock: true,
        random: false,
    });
    let secs: u64 = text(&seen, "clock_secs").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(secs) < 60,
        "granted clock {secs}, host clock {now}"
    );
    assert!(
        text(&seen, "file").starts_with("denied"),
        "a clock grant gives no files"
    );
}

#[test]
fn a_bad_config_fails_at_init_with_the_plugins_message() {
    let plugin = common::load(&common::components().orders_transform);
    let mut session = plugin
        .transform_session(r#"{"bad_dates": "maybe"}"#, StepPolicy::default())
        .unwrap();
    let schema = batch("none").schema();
    let error = session.output_schema(&schema).unwrap_err();
    assert!(
        matches!(&error.cause, Cause::Returned { kind, .. } if kind == "invalid-config"),
        "{error}"
    );
    assert!(
        error.to_string().contains("unknown variant `maybe`"),
        "{error}"
    );
}

#[test]
fn a_validator_cannot_be_used_as_a_transform() {
    let plugin = common::load(&common::components().orders_validator);
    let error = plugin
        .transform_session("{}", StepPolicy::default())
        .err()
        .unwrap();
    assert!(
        error
            .to_string()
            .contains("it is a validator plugin, but this step needs a transformer"),
        "{error}"
    );
}

#[test]
fn compiled_components_are_cached_by_digest_and_wasmtime_version() {
    let (runtime, cache) = common::runtime();
    let path = &common::components().orders_transform;
    let plugin = runtime.load(path).unwrap();
    let dir = cache.path().join("components");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(plugin.digest()), "{files:?}");
    assert!(
        files[0].contains(&format!("wasmtime-{}", wasmtime_version())),
        "{files:?}"
    );

    // A corrupt cache entry is recompiled, not trusted.
    std::fs::write(dir.join(&files[0]), b"corrupt").unwrap();
    let again = weir::plugin::Runtime::with_cache_dir(Some(cache.path()))
        .unwrap()
        .load(path)
        .unwrap();
    assert_eq!(again.digest(), plugin.digest());
    assert!(
        std::fs::metadata(dir.join(&files[0])).unwrap().len() > 1000,
        "rewritten"
    );
}

fn wasmtime_version() -> String {
    let lock = std::fs::read_to_string(common::workspace_root().join("Cargo.lock")).unwrap();
    let at = lock.find("name = \"wasmtime\"\nversion = \"").unwrap()
        + "name = \"wasmtime\"\nversion = \"".len();
    lock[at..].split('"').next().unwrap().to_string()
}

#[test]
fn instantiation_is_cheap_and_repeatable() {
    let plugin = common::load(&common::components().orders_transform);
    for _ in 0..100 {
        plugin.instantiate_once(&StepPolicy::default()).unwrap();
    }
}
