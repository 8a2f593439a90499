//! Nested objects and lists in metric points, track rows and log metadata,
//! through the public API: stored locally as the Python SDK stores them
//! (points and metadata nested, track rows flattened into dotted keys; the
//! SDK's own output is compared in `tests/interop.rs`), sent to the
//! (loopback) server nested, and refused with typed errors past the limits.

mod support;

use std::time::Duration;

use ml_dash::{BufferConfig, Error, Experiment, Fields, Level, Value, point, read};
use serde_json::{Value as Json, json};
use support::TestServer;

fn cfg() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = true;
    c
}

/// One point, two track rows and one log line with nested values.
fn log_nested(run: &ml_dash::Run) {
    let betas = [0.9, 0.999];
    // A nested point lives as long as the statement that makes it: bind it
    // first to use it later (or nest it inline in the call).
    let sched = point! {"kind" => "cos"};
    let opt = point! {"lr" => 0.1, "betas" => &betas, "sched" => &sched};
    let mixed = [
        Value::from(1),
        "a".into(),
        Value::Null,
        (&["x", "y"]).into(),
    ];
    run.metrics("train")
        .unwrap()
        .log(&point! {
            "loss" => 0.5, "opt" => &opt, "layers" => &[64, 64], "tags" => &["a", "b"],
            "mixed" => &mixed, "cfg" => &json!({"seed": 7, "none": {}}), "_ts" => 10.0,
        })
        .unwrap();
    let pose = run.tracks("robot/pose").unwrap();
    pose.append_at(
        1.0,
        &point! {"q" => &[0.1, 0.2], "cam" => &point! {"pos" => &[1, 2], "rot" => &point! {"w" => 1.0}}},
    )
    .unwrap();
    pose.append_at(2.0, &point! {"cam" => Value::Object(&[]), "n" => 3})
        .unwrap();
    run.log_with(
        Level::Info,
        "nested",
        &point! {"a" => &point! {"b" => &[1, 2]}},
    )
    .unwrap();
}

/// The point as both the local store and the server hold it.
fn point_data() -> Json {
    json!({
        "loss": 0.5,
        "opt": {"lr": 0.1, "betas": [0.9, 0.999], "sched": {"kind": "cos"}},
        "layers": [64, 64], "tags": ["a", "b"], "mixed": [1, "a", null, ["x", "y"]],
        "cfg": {"seed": 7, "none": {}}, "_ts": 10.0,
    })
}

#[test]
fn nested_values_are_nested_in_points_and_flattened_in_local_track_rows() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/values-local";
    let run = Experiment::new(prefix)
        .dash_root(root.path())
        .buffer_config(cfg())
        .run()
        .unwrap();
    log_nested(&run);
    run.complete().unwrap();
    let points = read::metrics(root.path(), prefix, Some("train")).unwrap();
    assert_eq!(points[0]["data"], point_data());
    let rows = read::tracks(root.path(), prefix, "robot/pose").unwrap();
    assert_eq!(
        rows,
        [
            json!({"timestamp": 1.0, "q": [0.1, 0.2], "cam.pos": [1, 2], "cam.rot.w": 1.0}),
            json!({"timestamp": 2.0, "n": 3}),
        ]
    );
    let meta = read::document(root.path(), prefix, "tracks/robot_pose/metadata.json")
        .unwrap()
        .unwrap();
    assert_eq!(meta["columns"], json!(["cam.pos", "cam.rot.w", "n", "q"]));
    let logs = read::logs(root.path(), prefix).unwrap();
    assert_eq!(logs[0]["metadata"], json!({"a": {"b": [1, 2]}}));
}

/// A hybrid run: the server gets points, rows and metadata nested, the
/// local store the same point and flattened rows.
#[test]
fn nested_values_reach_the_server_nested() {
    let server = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/values-remote";
    let run = Experiment::new(prefix)
        .dash_root(root.path())
        .dash_url(server.url())
        .token("test-token")
        .buffer_config(cfg())
        .run()
        .unwrap();
    log_nested(&run);
    run.complete().unwrap();
    assert!(server.wait_for(Duration::from_secs(10), |st| {
        st.experiment("values-remote")
            .is_some_and(|e| st.tracks.contains_key(&(e, "robot/pose".to_string())))
    }));
    let st = server.state();
    assert_eq!(st.points("values-remote", "train"), [point_data()]);
    let exp = st.experiment("values-remote").unwrap();
    assert_eq!(
        st.tracks[&(exp, "robot/pose".to_string())],
        [
            json!({"timestamp": 1.0, "q": [0.1, 0.2], "cam": {"pos": [1, 2], "rot": {"w": 1.0}}}),
            json!({"timestamp": 2.0, "cam": {}, "n": 3}),
        ]
    );
    assert_eq!(st.logs[&exp][0]["metadata"], json!({"a": {"b": [1, 2]}}));
    let rows = read::tracks(root.path(), prefix, "robot/pose").unwrap();
    assert_eq!(rows[0]["cam.rot.w"], 1.0, "flattened locally");
}

#[test]
fn over_long_keys_and_deep_nesting_are_typed_errors() {
    let root = tempfile::tempdir().unwrap();
    let run = Experiment::new("alice/proj/values-bad")
        .dash_root(root.path())
        .buffer_config(cfg())
        .run()
        .unwrap();
    let m = run.metrics("m").unwrap();
    let long = "k".repeat(256);
    let e = m
        .log(&point! {"o" => &point! {long.as_str() => 1}})
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidName { ref name, .. } if *name == long),
        "{e}"
    );
    let mut deep = json!(1);
    for _ in 0..65 {
        deep = json!([deep]);
    }
    let e = m.log(&point! {"d" => &deep}).unwrap_err();
    assert!(matches!(e, Error::InvalidValue(_)), "{e}");
    assert!(e.to_string().contains("64 levels"), "{e}");
    let big = vec![0.5; 1 << 20];
    let e = m.log(&point! {"o" => &point! {"big" => &big}}).unwrap_err();
    assert!(matches!(e, Error::RecordTooLarge { .. }), "{e}");
    let empty: &Fields = &[];
    m.log(&point! {"ok" => empty}).unwrap();
    let report = run.complete().unwrap();
    assert_eq!(report.stored.metrics, 1, "only the valid point");
}
