//! Bad input gets a typed error and loses nothing already accepted; settings
//! from the environment; the `_ts` accuracy rule.

use std::time::Duration;

use ml_dash::config::*;
use ml_dash::{BufferConfig, Error, Experiment, Level, Run, point, read};

fn quiet() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c
}

fn open(root: &std::path::Path, prefix: &str) -> Run {
    Experiment::new(prefix)
        .dash_root(root)
        .buffer_config(quiet())
        .run()
        .unwrap()
}

#[test]
fn invalid_prefixes_are_refused() {
    let root = tempfile::tempdir().unwrap();
    for p in [
        "alice",
        "/alice/x",
        "alice/../x",
        "alice//x",
        "a/b/",
        "a\0/b",
    ] {
        let r = Experiment::new(p).dash_root(root.path()).run();
        assert!(matches!(r, Err(Error::InvalidPrefix { .. })), "{p:?}");
    }
    // Nothing was created outside the root.
    assert!(!root.path().join("../x").exists());
}

#[test]
fn bad_names_levels_and_values_are_typed_errors_and_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/bad");
    let m = run.metrics("ok").unwrap();
    m.log(&point! {"i" => 0}).unwrap();
    for name in ["", "..", "/abs", "a/../b", "None", "x\ny"] {
        assert!(
            matches!(run.metrics(name), Err(Error::InvalidName { .. })),
            "{name:?}"
        );
    }
    for topic in ["", "../t", "/t"] {
        assert!(
            matches!(run.tracks(topic), Err(Error::InvalidName { .. })),
            "{topic:?}"
        );
    }
    let _ = run.tracks("a/b").unwrap();
    assert!(
        matches!(run.tracks("a_b"), Err(Error::InvalidName { .. })),
        "folder collision"
    );
    assert!(matches!(
        run.logger().log_level("warning", "x", &[]),
        Err(Error::InvalidLevel(_))
    ));
    assert!(matches!(
        "verbose".parse::<Level>(),
        Err(Error::InvalidLevel(_))
    ));
    run.logger()
        .log_level("WARN", "upper case is fine", &[])
        .unwrap();
    let long = "f".repeat(300);
    assert!(matches!(
        m.log(&point! {long.as_str() => 1}),
        Err(Error::InvalidName { .. })
    ));
    let huge = "x".repeat(2 << 20);
    assert!(matches!(run.log(&huge), Err(Error::RecordTooLarge { .. })));
    assert!(matches!(run.params().set(42), Err(Error::InvalidValue(_))));
    assert!(matches!(
        run.tracks("t")
            .unwrap()
            .append_at(f64::NAN, &point! {"x" => 1}),
        Err(Error::InvalidValue(_))
    ));
    // A step going backwards is stored as given.
    m.log(&point! {"i" => 1, "step" => 10}).unwrap();
    m.log(&point! {"i" => 2, "step" => 5}).unwrap();
    let logger = run.logger();
    run.complete().unwrap();
    assert!(matches!(m.log(&point! {"i" => 3}), Err(Error::Closed)));
    assert!(matches!(logger.info("late"), Err(Error::Closed)));
    assert!(matches!(logger.flush(), Err(Error::Closed)));
    let lines = read::metrics(root.path(), "o/p/bad", Some("ok")).unwrap();
    let steps: Vec<_> = lines
        .iter()
        .map(|l| l["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(
        steps,
        [0, 1, 2],
        "everything accepted before and between errors is stored"
    );
    assert_eq!(lines[2]["data"]["step"], 5);
    let logs = read::logs(root.path(), "o/p/bad").unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["level"], "warn");
}

#[test]
fn non_finite_floats_are_stored_as_python_tokens() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/nan");
    let m = run.metrics("m").unwrap();
    m.log(&point! {"a" => f64::NAN, "b" => f64::INFINITY, "c" => f64::NEG_INFINITY, "d" => -0.0})
        .unwrap();
    run.tracks("t")
        .unwrap()
        .append_at(1.0, &point! {"q" => &[f64::NAN, 1.0]})
        .unwrap();
    run.complete().unwrap();
    let text = std::fs::read_to_string(root.path().join("o/p/nan/metrics/m/data.jsonl")).unwrap();
    assert!(
        text.contains(r#""a":NaN,"b":Infinity,"c":-Infinity,"d":-0.0"#),
        "{text}"
    );
    let line = &read::metrics(root.path(), "o/p/nan", Some("m")).unwrap()[0];
    assert_eq!(line["data"]["a"], "NaN");
    assert_eq!(line["data"]["b"], "Infinity");
    assert_eq!(line["data"]["c"], "-Infinity");
    let row = &read::tracks(root.path(), "o/p/nan", "t").unwrap()[0];
    assert_eq!(row["q"], serde_json::json!(["NaN", 1.0]));
}

#[test]
fn unnamed_stream_and_explicit_ts() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/unnamed");
    run.unnamed_metrics()
        .log(&point! {"epoch" => 1, "_ts" => 123.5})
        .unwrap();
    run.complete().unwrap();
    let lines = read::metrics(root.path(), "o/p/unnamed", None).unwrap();
    assert_eq!(
        lines[0]["data"],
        serde_json::json!({"epoch": 1, "_ts": 123.5})
    );
    let meta = read::document(root.path(), "o/p/unnamed", "metrics/None/metadata.json")
        .unwrap()
        .unwrap();
    assert_eq!(meta["name"], serde_json::Value::Null);
    assert_eq!(meta["metricId"], "local-metric-None");
}

#[test]
fn settings_have_pinned_names_and_defaults() {
    let d = BufferConfig::default();
    assert_eq!(
        (ENV_BUFFER_ENABLED, d.buffer_enabled),
        ("ML_DASH_BUFFER_ENABLED", true)
    );
    assert_eq!(
        (ENV_FLUSH_INTERVAL, d.flush_interval),
        ("ML_DASH_FLUSH_INTERVAL", Duration::from_secs(5))
    );
    assert_eq!(
        (ENV_LOG_BATCH_SIZE, d.log_batch_size),
        ("ML_DASH_LOG_BATCH_SIZE", 100)
    );
    assert_eq!(
        (ENV_METRIC_BATCH_SIZE, d.metric_batch_size),
        ("ML_DASH_METRIC_BATCH_SIZE", 1000)
    );
    assert_eq!(
        (ENV_TRACK_BATCH_SIZE, d.track_batch_size),
        ("ML_DASH_TRACK_BATCH_SIZE", 100)
    );
    assert_eq!(
        (ENV_FILE_UPLOAD_WORKERS, d.file_upload_workers),
        ("ML_DASH_FILE_UPLOAD_WORKERS", 4)
    );
    assert_eq!((ENV_MAX_RETRIES, d.max_retries), ("ML_DASH_MAX_RETRIES", 3));
    assert_eq!(
        (ENV_RETRY_BASE_DELAY, d.retry_base_delay),
        ("ML_DASH_RETRY_BASE_DELAY", Duration::from_secs(1))
    );
    assert_eq!(
        (ENV_RETRY_MAX_DELAY, d.retry_max_delay),
        ("ML_DASH_RETRY_MAX_DELAY", Duration::from_secs(30))
    );
    assert_eq!(d.memory_budget, 64 << 20);
}

#[test]
fn environment_overrides_defaults_and_bad_values_name_the_variable() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let c = BufferConfig::from_lookup(env(&[
        ("ML_DASH_BUFFER_ENABLED", "no"),
        ("ML_DASH_FLUSH_INTERVAL", "0.25"),
        ("ML_DASH_METRIC_BATCH_SIZE", "50"),
        ("ML_DASH_BACKPRESSURE", "drop"),
        ("ML_DASH_RETRY_MAX_DELAY", "7"),
    ]))
    .unwrap();
    assert!(!c.buffer_enabled);
    assert_eq!(c.flush_interval, Duration::from_millis(250));
    assert_eq!(c.metric_batch_size, 50);
    assert_eq!(c.backpressure, ml_dash::Backpressure::DropNewest);
    assert_eq!(c.retry_max_delay, Duration::from_secs(7));
    assert_eq!(c.log_batch_size, 100, "unset variables keep their default");
    for (name, value) in [
        ("ML_DASH_BUFFER_ENABLED", "maybe"),
        ("ML_DASH_FLUSH_INTERVAL", "-1"),
        ("ML_DASH_FLUSH_INTERVAL", "soon"),
        ("ML_DASH_LOG_BATCH_SIZE", "0"),
        ("ML_DASH_METRIC_BATCH_SIZE", "1e3"),
        ("ML_DASH_MAX_RETRIES", "-2"),
        ("ML_DASH_BACKPRESSURE", "spill"),
    ] {
        let err =
            BufferConfig::from_lookup(|k| (k == name).then(|| value.to_string())).unwrap_err();
        match &err {
            Error::Config {
                name: n, value: v, ..
            } => assert_eq!((*n, v.as_str()), (name, value)),
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains(name), "{err}");
    }
}
