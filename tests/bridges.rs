//! The `tracing` layer and the `log` sink, end to end into a local store
//! (features `tracing` and `log`: `cargo test --features tracing,log --test bridges`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ml_dash::{BufferConfig, Error, Experiment, Run, read};
use serde_json::{Value as Json, json};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

fn open(root: &std::path::Path, prefix: &str) -> Run {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    Experiment::new(prefix)
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap()
}

/// `(level, message, metadata)` of each stored log line.
fn logs(root: &std::path::Path, prefix: &str) -> Vec<(String, String, Json)> {
    read::logs(root, prefix)
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap().to_string(),
                l["message"].as_str().unwrap().to_string(),
                l["metadata"].clone(),
            )
        })
        .collect()
}

/// The `data` of each point of a stream, without `_ts`.
fn points(root: &std::path::Path, prefix: &str, stream: Option<&str>) -> Vec<Json> {
    read::metrics(root, prefix, stream)
        .unwrap()
        .into_iter()
        .map(|l| {
            let mut d = l["data"].clone();
            let ts = d.as_object_mut().unwrap().remove("_ts");
            assert!(ts.unwrap().as_f64().unwrap() > 1.6e9, "every point has _ts");
            d
        })
        .collect()
}

#[test]
fn tracing_events_become_logs_and_metric_points() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/tracing");
    let layer = ml_dash::tracing::Layer::new(&run)
        .metrics_stream("train")
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(target: "loop", epoch = 1, ok = true, phase = "warmup", "epoch {} started", 1);
        tracing::trace!(target: "loop", "t");
        tracing::debug!(target: "loop", "d");
        tracing::warn!(target: "loop", shape = ?[2, 3], "w");
        tracing::error!(target: "loop", big = u64::MAX, neg = -7i64, "e");
        for step in 0..100i64 {
            tracing::info!(
                metric.loss = 1.0 / (step + 1) as f64,
                metric.acc = step as f64 / 100.0,
                step
            );
        }
        tracing::info!(
            metric_stream = "eval",
            metric.loss = 0.5,
            epoch = 1,
            "ignored message"
        );
    });
    run.complete().unwrap();

    let logs = logs(root.path(), "o/p/tracing");
    let expect = [
        (
            "info",
            "epoch 1 started",
            json!({"target": "loop", "epoch": 1, "ok": true, "phase": "warmup"}),
        ),
        ("debug", "t", json!({"target": "loop"})),
        ("debug", "d", json!({"target": "loop"})),
        ("warn", "w", json!({"target": "loop", "shape": "[2, 3]"})),
        (
            "error",
            "e",
            json!({"target": "loop", "big": u64::MAX, "neg": -7}),
        ),
    ];
    assert_eq!(
        logs.len(),
        expect.len(),
        "metric events are not logs: {logs:?}"
    );
    for (got, (level, message, meta)) in logs.iter().zip(expect) {
        assert_eq!(
            (got.0.as_str(), got.1.as_str(), &got.2),
            (level, message, &meta)
        );
    }
    let train = points(root.path(), "o/p/tracing", Some("train"));
    assert_eq!(train.len(), 100);
    for (step, p) in train.iter().enumerate() {
        let s = step as f64;
        assert_eq!(
            p,
            &json!({"loss": 1.0 / (s + 1.0), "acc": s / 100.0, "step": step}),
            "field order and values are the event's"
        );
    }
    let eval = points(root.path(), "o/p/tracing", Some("eval"));
    assert_eq!(eval, [json!({"loss": 0.5, "epoch": 1})]);
    assert!(points(root.path(), "o/p/tracing", None).is_empty());
}

/// Counts the events a layer sees.
struct Count(Arc<AtomicU64>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn the_layer_never_disables_other_layers_events() {
    let root = tempfile::tempdir().unwrap();
    let (all, filtered) = (
        open(root.path(), "o/p/all"),
        open(root.path(), "o/p/filtered"),
    );
    let seen = Arc::new(AtomicU64::new(0));
    let subscriber = tracing_subscriber::registry()
        .with(ml_dash::tracing::Layer::new(&all))
        .with(ml_dash::tracing::Layer::new(&filtered).with_filter(LevelFilter::WARN))
        .with(Count(seen.clone()));
    let dispatch = tracing::Dispatch::new(subscriber);
    let emit = || {
        tracing::trace!("t");
        tracing::debug!("d");
        tracing::info!("i");
        tracing::warn!("w");
        tracing::error!("e");
    };
    tracing::dispatcher::with_default(&dispatch, emit);
    assert_eq!(seen.load(Ordering::Relaxed), 5);
    all.complete().unwrap();
    filtered.complete().unwrap();
    let levels = |prefix| -> Vec<String> {
        (logs(root.path(), prefix).into_iter())
            .map(|l| l.0)
            .collect()
    };
    assert_eq!(
        levels("o/p/all"),
        ["debug", "debug", "info", "warn", "error"]
    );
    assert_eq!(
        levels("o/p/filtered"),
        ["warn", "error"],
        "a per-layer filter applies to that layer only"
    );
    // The runs are closed: our layers drop the events, the others still get them.
    tracing::dispatcher::with_default(&dispatch, emit);
    assert_eq!(seen.load(Ordering::Relaxed), 10);
}

#[test]
fn events_from_many_threads_are_all_stored() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/threads");
    let layer = ml_dash::tracing::Layer::new(&run);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let d = dispatch.clone();
            s.spawn(move || {
                tracing::dispatcher::with_default(&d, || {
                    for i in 0..1000i64 {
                        tracing::info!(metric.x = i, thread = t);
                        tracing::info!(i, thread = t, "log");
                    }
                })
            });
        }
    });
    run.complete().unwrap();
    let pts = points(root.path(), "o/p/threads", None);
    let logs = logs(root.path(), "o/p/threads");
    for t in 0..4 {
        let xs: Vec<_> = (pts.iter())
            .filter(|p| p["thread"] == t)
            .map(|p| p["x"].as_i64().unwrap())
            .collect();
        assert_eq!(
            xs,
            (0..1000).collect::<Vec<_>>(),
            "thread {t}: each point once, in order"
        );
        let is: Vec<_> = (logs.iter())
            .filter(|l| l.2["thread"] == t)
            .map(|l| l.2["i"].as_i64().unwrap())
            .collect();
        assert_eq!(
            is,
            (0..1000).collect::<Vec<_>>(),
            "thread {t}: each log once, in order"
        );
    }
    assert_eq!((pts.len(), logs.len()), (4000, 4000));
}

#[test]
fn span_durations_are_opt_in() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/spans");
    let with = ml_dash::tracing::Layer::new(&run)
        .span_durations("spans")
        .unwrap();
    let sub = tracing_subscriber::registry().with(with);
    tracing::subscriber::with_default(sub, || {
        for _ in 0..3 {
            let _step = tracing::info_span!("forward").entered();
        }
        let outer = tracing::info_span!("backward");
        outer.in_scope(|| tracing::info_span!("forward").in_scope(|| {}));
        drop(outer);
    });
    // A second layer on the same run, without the opt-in: no points.
    let without = ml_dash::tracing::Layer::new(&run)
        .metrics_stream("spans")
        .unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(without), || {
        let _s = tracing::info_span!("forward").entered();
    });
    run.complete().unwrap();
    let pts = points(root.path(), "o/p/spans", Some("spans"));
    let names: Vec<_> = (pts.iter())
        .map(|p| {
            let (name, secs) = p.as_object().unwrap().iter().next().unwrap();
            assert_eq!(p.as_object().unwrap().len(), 1);
            let secs = secs.as_f64().unwrap();
            assert!((0.0..60.0).contains(&secs), "{secs}");
            name.clone()
        })
        .collect();
    assert_eq!(
        names,
        ["forward", "forward", "forward", "forward", "backward"]
    );
}

/// A value whose `Display` logs a record of its own.
struct Chatty;

impl fmt::Display for Chatty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        log::info!(target: "inner", "from Display");
        f.write_str("chatty")
    }
}

/// The only test that installs the process's `log` logger (one per process).
#[test]
fn log_records_become_logs() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/log");
    ml_dash::log::Sink::new(&run)
        .install(log::LevelFilter::Debug)
        .unwrap();
    let again = ml_dash::log::Sink::new(&run).install(log::LevelFilter::Trace);
    assert!(matches!(again, Err(Error::Unsupported(_))), "{again:?}");
    log::error!(target: "db", "e {}", 1);
    log::warn!("w");
    log::info!(target: "db", "i {:.2}", 0.5);
    log::debug!("d");
    log::trace!("below the max level: not sent");
    log::set_max_level(log::LevelFilter::Trace);
    log::trace!(target: "db", "t");
    log::info!("{Chatty}");
    log::logger().flush(); // run.flush()
    let logs = logs(root.path(), "o/p/log");
    let got: Vec<_> = (logs.iter())
        .map(|l| (l.0.as_str(), l.1.as_str(), l.2["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("error", "e 1", "db"),
            ("warn", "w", "bridges"),
            ("info", "i 0.50", "db"),
            ("debug", "d", "bridges"),
            ("debug", "t", "db"),
            ("info", "from Display", "inner"),
            ("info", "chatty", "bridges"),
        ]
    );
    run.complete().unwrap();
    log::info!("after close: dropped, no panic");
}
