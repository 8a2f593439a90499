//! Names within the documented limits are ones the store can hold: a name the
//! file system would refuse, or one that collides with the store's own files,
//! is refused when its handle is made (or its file saved), as
//! `Error::InvalidName`. Behind that, one stream the store cannot write never
//! costs the other streams anything, and a file that was not stored is never
//! counted as stored.

use std::path::Path;

use ml_dash::{BufferConfig, Error, Experiment, Run, point, read};
use serde_json::Value as Json;

fn open_with(root: &Path, prefix: &str, cfg: BufferConfig) -> Run {
    Experiment::new(prefix)
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap()
}

fn quiet() -> BufferConfig {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg
}

fn invalid_name<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(e @ Error::InvalidName { .. }) => e.to_string(),
        other => panic!("expected InvalidName, got {other:?}"),
    }
}

fn points(root: &Path, prefix: &str, stream: &str) -> Vec<u64> {
    (read::metrics(root, prefix, Some(stream)).unwrap().iter())
        .map(|p| p["data"]["i"].as_u64().unwrap())
        .collect()
}

#[test]
fn metric_and_topic_names_the_store_cannot_hold_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "o/p/names";
    let run = open_with(root.path(), prefix, quiet());
    let train = run.metrics("train").unwrap();
    train.log(&point! {"i" => 0}).unwrap();
    // 200 characters, 400 bytes: over the file system's 255-byte name limit.
    let e200 = "é".repeat(200);
    assert!(invalid_name(run.metrics(&e200)).contains("255 bytes"));
    assert!(invalid_name(run.tracks(&e200)).contains("255 bytes"));
    // Two folders of 200 bytes are fine for a metric; a topic is one folder.
    let two = format!("{}/{}", "é".repeat(100), "é".repeat(100));
    run.metrics(&two).unwrap().log(&point! {"i" => 7}).unwrap();
    invalid_name(run.tracks(&two));
    // Beside the stream `train`: its layout files, and their side files.
    for name in [
        "train/data.jsonl",
        "train/metadata.json",
        "train/.metadata.lock",
        "train/.tmp-1",
        "train/data.jsonl.torn",
    ] {
        assert!(invalid_name(run.metrics(name)).contains("'data.jsonl'"));
    }
    // The other order: `val/data.jsonl` first would make `val`'s data file a folder.
    invalid_name(run.metrics("val/data.jsonl"));
    run.metrics("val").unwrap().log(&point! {"i" => 1}).unwrap();
    run.metrics("train/sub")
        .unwrap()
        .log(&point! {"i" => 2})
        .unwrap();
    train.log(&point! {"i" => 3}).unwrap();
    run.flush().unwrap();
    let report = run.complete().unwrap();
    assert_eq!(report.stored.metrics, 5);
    assert_eq!(points(root.path(), prefix, "train"), [0, 3]);
    assert_eq!(points(root.path(), prefix, "val"), [1]);
    assert_eq!(points(root.path(), prefix, "train/sub"), [2]);
    assert_eq!(points(root.path(), prefix, &two), [7]);
}

#[test]
fn file_names_the_store_cannot_hold_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    let prefix = "o/p/file-names";
    let run = open_with(root.path(), prefix, quiet());
    let e200 = "é".repeat(200);
    assert!(invalid_name(run.files("d").save_text(&e200, "x")).contains("249 bytes"));
    assert!(invalid_name(run.files(&"é".repeat(128)).save_text("a", "x")).contains("255"));
    // The store's own files and work area.
    for dir in [".pending", ".files_metadata.json", "a/.x"] {
        invalid_name(run.files(dir).save_text("a.txt", "x"));
    }
    // An upload is copied to `.<name>.part` first: 250 bytes would be 256.
    let long = user.path().join("u".repeat(250));
    std::fs::write(&long, b"u").unwrap();
    invalid_name(run.files("up").upload(&long));
    // The longest names that fit are stored.
    let (dir, name) = ("é".repeat(127), "n".repeat(249));
    let id = run.files(&dir).save_text(&name, "fits").unwrap().id;
    let fits = user.path().join("f".repeat(249));
    std::fs::write(&fits, b"f").unwrap();
    run.files("up").upload(&fits).unwrap();
    let report = run.complete().unwrap();
    assert_eq!(report.stored.files, 2);
    let stored = root.path().join(prefix).join("files").join(&dir).join(&id);
    assert_eq!(std::fs::read_to_string(stored.join(&name)).unwrap(), "fits");
    let pending = root.path().join(prefix).join("files/.pending");
    assert!(std::fs::read_dir(pending).map_or(true, |mut d| d.next().is_none()));
}

#[test]
fn one_stream_the_store_cannot_write_costs_the_others_nothing() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "o/p/isolated";
    let mut cfg = quiet();
    cfg.memory_budget = 64 * 1024; // the collector holds up to 32 KiB for a failing stream
    cfg.ring_capacity = 16 * 1024;
    cfg.max_record_bytes = 16 * 1024; // at most ring_capacity or half the budget
    cfg.metric_batch_size = 100;
    cfg.log_batch_size = 100;
    cfg.flush_interval = std::time::Duration::from_secs(3600);
    let run = open_with(root.path(), prefix, cfg);
    // A folder where `bad`'s data file should be: its appends fail (also for root).
    let obstacle = run.dir().join("metrics/bad/data.jsonl");
    std::fs::create_dir_all(&obstacle).unwrap();
    let bad = run.metrics("bad").unwrap();
    let good = run.metrics("good").unwrap();
    let pose = run.tracks("pose").unwrap();
    let pad = "p".repeat(100);
    let n = 5_000u64;
    for i in 0..n {
        bad.log(&point! {"i" => i, "pad" => pad.as_str()}).unwrap();
        good.log(&point! {"i" => i}).unwrap();
        if i % 50 == 0 {
            run.log(&format!("line {i}")).unwrap();
            pose.append_at(i as f64, &point! {"x" => i}).unwrap();
        }
    }
    let e = run.flush().unwrap_err();
    assert!(e.to_string().contains("metric stream \"bad\""), "{e}");
    // 500 KB for `bad` through a 32 KiB hold: `bad` lost points, the others
    // none, and they are in the store now.
    let good_is = points(root.path(), prefix, "good");
    assert_eq!(good_is.len() as u64, n, "every point of `good` is stored");
    assert!(good_is.into_iter().eq(0..n), "in order, once each");
    assert_eq!(read::logs(root.path(), prefix).unwrap().len(), 100);
    assert_eq!(
        read::tracks(root.path(), prefix, "pose").unwrap().len(),
        100
    );
    // Still failing: only `bad` holds the flush back.
    good.log(&point! {"i" => n}).unwrap();
    assert!(run.flush().is_err());
    assert_eq!(points(root.path(), prefix, "good").len() as u64, n + 1);
    // Writable again: what `bad` held is written.
    std::fs::remove_dir(&obstacle).unwrap();
    run.flush().unwrap();
    let report = run.complete().unwrap();
    let kept = points(root.path(), prefix, "bad");
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    let lost = report.lost_to_store;
    assert!(lost.metrics > 0, "a 32 KiB hold cannot keep 500 KB");
    assert_eq!((lost.logs, lost.tracks), (0, 0));
    assert_eq!(kept.len() as u64 + lost.metrics, n, "bad: stored + lost");
    assert_eq!(report.stored.metrics, kept.len() as u64 + n + 1);
}

#[test]
fn a_file_that_was_not_stored_is_not_counted_and_says_where_it_is() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "o/p/unstored";
    let run = open_with(root.path(), prefix, quiet());
    // A plain file where the folder `blocked` should be: the move into place fails.
    std::fs::write(run.dir().join("files/blocked"), b"").unwrap();
    let id = run.files("blocked").save_text("x.txt", "kept").unwrap().id;
    run.files("fine").save_text("y.txt", "y").unwrap();
    let pending = run.dir().join("files/.pending").join(&id);
    let e = run.flush().unwrap_err().to_string();
    assert!(e.contains("/blocked/x.txt not stored"), "{e}");
    assert!(e.contains(&pending.display().to_string()), "{e}");
    let run_dir = run.dir().to_path_buf();
    let e = run.complete().unwrap_err();
    assert!(matches!(e, Error::Sink(_)), "{e}");
    assert!(e.to_string().contains("1 file(s) not stored"), "{e}");
    assert_eq!(std::fs::read_to_string(&pending).unwrap(), "kept");
    let meta = read::document(root.path(), prefix, "files/.files_metadata.json")
        .unwrap()
        .unwrap();
    let names: Vec<&Json> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["filename"])
        .collect();
    assert_eq!(names, ["y.txt"]);
    assert!(run_dir.join("files/fine").is_dir());
}

/// A stream's `metadata.json` that exists keeps its description, tags and
/// metadata when a later run gives others (the SDK keeps the file's too).
#[test]
fn an_existing_metric_document_keeps_its_info() {
    use ml_dash::MetricInfo;
    let root = tempfile::tempdir().unwrap();
    let prefix = "alice/proj/info-reopen";
    for (desc, tag) in [("first", "a"), ("second", "b")] {
        let run = open_with(root.path(), prefix, BufferConfig::default());
        let info = MetricInfo::default().description(desc).tags([tag]);
        let m = run.metrics_with("loss", info).unwrap();
        m.log(&point! {"v" => 1.0}).unwrap();
        run.complete().unwrap();
    }
    let doc = read::document(root.path(), prefix, "metrics/loss/metadata.json")
        .unwrap()
        .unwrap();
    assert_eq!(doc["description"], "first");
    assert_eq!(doc["tags"], serde_json::json!(["a"]));
    assert_eq!(doc["metadata"], Json::Null);
    assert_eq!(doc["totalDataPoints"], 2);
}
