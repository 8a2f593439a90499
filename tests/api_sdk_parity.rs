//! SDK parity, end to end into a local store: metadata from the level
//! methods (`logs.info(msg, **metadata)`), the metric fan-out
//! (`metrics.log(epoch=1, train={..}, eval={..})`) and `_ts = -1`, "the
//! timestamp of this thread's previous metric point or track row".

use ml_dash::{Error, point, read};
use serde_json::{Value, json};

mod local;
use local::open;

fn data(root: &std::path::Path, prefix: &str, stream: Option<&str>) -> Vec<Value> {
    read::metrics(root, prefix, stream)
        .unwrap()
        .into_iter()
        .map(|l| l["data"].clone())
        .collect()
}

fn ts(point: &Value) -> f64 {
    point["_ts"].as_f64().unwrap()
}

#[test]
fn level_methods_take_metadata() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/levels");
    let log = run.logger();
    log.info_with("i", &point! {"epoch" => 1, "loss" => 0.5})
        .unwrap();
    log.warn_with("w", &point! {"lr" => 1e-3}).unwrap();
    log.error_with("e", &point! {"path" => "/m.pth"}).unwrap();
    log.debug_with("d", &point! {"memory_mb" => 2500}).unwrap();
    log.fatal_with("f", &point! {"exit_code" => 1}).unwrap();
    log.info("plain").unwrap();
    log.warn_with("empty", &[]).unwrap();
    run.complete().unwrap();
    let got: Vec<_> = read::logs(root.path(), "o/p/levels")
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                l["level"].clone(),
                l["message"].clone(),
                l.get("metadata").cloned(),
            )
        })
        .collect();
    let want = [
        ("info", "i", Some(json!({"epoch": 1, "loss": 0.5}))),
        ("warn", "w", Some(json!({"lr": 1e-3}))),
        ("error", "e", Some(json!({"path": "/m.pth"}))),
        ("debug", "d", Some(json!({"memory_mb": 2500}))),
        ("fatal", "f", Some(json!({"exit_code": 1}))),
        ("info", "plain", None),
        ("warn", "empty", None),
    ]
    .map(|(l, m, md)| (json!(l), json!(m), md));
    assert_eq!(got, want);
}

#[test]
fn groups_fan_out_with_one_timestamp() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/fan");
    let root_m = run.unnamed_metrics();
    let (train, eval) = (run.metrics("train").unwrap(), run.metrics("eval").unwrap());
    root_m
        .log_groups(
            &point! {"epoch" => 1, "lr" => 0.1},
            &[
                (&train, &point! {"loss" => 0.5, "epoch" => 7}),
                (&eval, &point! {"loss" => 0.6}),
            ],
        )
        .unwrap();
    // A `_ts` among the scalars is every point's, the group's own is not.
    root_m
        .log_groups(
            &point! {"epoch" => 2, "_ts" => 1000.25},
            &[(&train, &point! {"loss" => 0.4, "_ts" => 5.0})],
        )
        .unwrap();
    // Only `_ts` (or nothing) as scalars: no point in the unnamed stream.
    root_m
        .log_groups(
            &point! {"_ts" => 2000.5},
            &[(&eval, &point! {"loss" => 0.3})],
        )
        .unwrap();
    root_m.log_groups(&[], &[(&eval, &[])]).unwrap();
    // A bad point anywhere logs nothing.
    let long = "x".repeat(256);
    assert!(matches!(
        root_m.log_groups(
            &point! {"epoch" => 3},
            &[
                (&train, &point! {"loss" => 0.1}),
                (&eval, &point! {long.as_str() => 1})
            ],
        ),
        Err(Error::InvalidName { .. })
    ));
    // A handle of another run is refused.
    let other_root = tempfile::tempdir().unwrap();
    let other = open(other_root.path(), "o/p/other");
    let foreign = other.metrics("train").unwrap();
    assert!(matches!(
        root_m.log_groups(
            &point! {"epoch" => 4},
            &[(&foreign, &point! {"loss" => 0.0})]
        ),
        Err(Error::InvalidValue(_))
    ));
    other.complete().unwrap();
    run.complete().unwrap();

    let (u, t, e) = (
        data(root.path(), "o/p/fan", None),
        data(root.path(), "o/p/fan", Some("train")),
        data(root.path(), "o/p/fan", Some("eval")),
    );
    assert_eq!((u.len(), t.len(), e.len()), (2, 2, 3), "{u:?} {t:?} {e:?}");
    // `{**scalars, **group}`: the scalars' order, the group's values, `_ts` last.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&u[0]), ["epoch", "lr", "_ts"]);
    assert_eq!(keys(&t[0]), ["epoch", "lr", "loss", "_ts"]);
    assert_eq!((&t[0]["epoch"], &t[0]["loss"]), (&json!(7), &json!(0.5)));
    assert_eq!((&e[0]["epoch"], &e[0]["lr"]), (&json!(1), &json!(0.1)));
    assert!(
        ts(&u[0]) == ts(&t[0]) && ts(&t[0]) == ts(&e[0]),
        "{u:?} {t:?} {e:?}"
    );
    assert_eq!(u[1], json!({"epoch": 2, "_ts": 1000.25}));
    assert_eq!(t[1], json!({"epoch": 2, "loss": 0.4, "_ts": 1000.25}));
    assert_eq!(e[1], json!({"loss": 0.3, "_ts": 2000.5}));
    assert_eq!(keys(&e[2]), ["_ts"]);
}

#[test]
fn ts_minus_one_is_the_previous_timestamp_of_the_same_thread() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/prev");
    let (m, n) = (run.metrics("m").unwrap(), run.metrics("n").unwrap());
    let (pose, cam) = (
        run.tracks("robot/pose").unwrap(),
        run.tracks("cam").unwrap(),
    );

    m.log(&point! {"i" => 0, "_ts" => 1000.5}).unwrap();
    n.log(&point! {"i" => 1, "_ts" => -1}).unwrap(); // 1000.5, across streams
    pose.append_at(-1.0, &point! {"q" => 1.0}).unwrap(); // 1000.5, into a track
    cam.append(&point! {"w" => 640, "_ts" => 2000.25}).unwrap(); // `_ts` as the SDK's keyword
    m.log(&point! {"i" => 2, "_ts" => -1.0}).unwrap(); // 2000.25, from a track
    m.log(&point! {"i" => 3}).unwrap(); // the clock
    n.log(&point! {"i" => 4, "_ts" => -1}).unwrap(); // that clock time

    // Another thread has its own previous timestamp.
    std::thread::scope(|s| {
        s.spawn(|| {
            let err = m.log(&point! {"i" => 10, "_ts" => -1}).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidValue(why) if why.contains("previous")),
                "{err}"
            );
            cam.append(&point! {"w" => 1, "_ts" => -1}).unwrap(); // none: the clock
            m.log(&point! {"i" => 11, "_ts" => -1}).unwrap(); // that row's time
            n.log(&point! {"i" => 12, "_ts" => 3000.75}).unwrap();
            pose.append(&point! {"q" => 2.0, "_ts" => -1}).unwrap(); // 3000.75
        });
    });
    m.log(&point! {"i" => 5, "_ts" => -1}).unwrap(); // still this thread's clock time
    run.complete().unwrap();

    let (ms, ns) = (
        data(root.path(), "o/p/prev", Some("m")),
        data(root.path(), "o/p/prev", Some("n")),
    );
    let at = |v: &[Value], i: i64| ts(v.iter().find(|p| p["i"] == i).unwrap());
    let pose_rows = read::tracks(root.path(), "o/p/prev", "robot/pose").unwrap();
    let cam_rows = read::tracks(root.path(), "o/p/prev", "cam").unwrap();
    assert_eq!(at(&ns, 1), 1000.5);
    assert_eq!(pose_rows[0], json!({"timestamp": 1000.5, "q": 1.0}));
    assert_eq!(cam_rows[0], json!({"timestamp": 2000.25, "w": 640}));
    assert_eq!(at(&ms, 2), 2000.25);
    assert_eq!(at(&ns, 4), at(&ms, 3));
    assert_eq!(at(&ms, 5), at(&ms, 3));
    assert_eq!(at(&ms, 11), cam_rows[1]["timestamp"].as_f64().unwrap());
    assert!(at(&ms, 11) > 1.7e9, "the clock, not -1: {}", at(&ms, 11));
    assert_eq!(pose_rows[1], json!({"timestamp": 3000.75, "q": 2.0}));
    assert!(
        ms.iter().all(|p| p["i"] != 10),
        "the refused point is not stored"
    );
}

#[test]
fn ts_must_be_a_finite_number() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/badts");
    let m = run.metrics("m").unwrap();
    for bad in [f64::NAN, f64::INFINITY] {
        assert!(matches!(
            m.log(&point! {"x" => 1, "_ts" => bad}),
            Err(Error::InvalidValue(_))
        ));
    }
    assert!(matches!(
        run.tracks("t").unwrap().append(&point! {"_ts" => "soon"}),
        Err(Error::InvalidValue(_))
    ));
    run.complete().unwrap();
    assert!(data(root.path(), "o/p/badts", Some("m")).is_empty());
}
