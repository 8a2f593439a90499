//! `ml-dash list / show / export / verify / completions`, run as processes
//! on stores the engine wrote (times pinned, so the output is compared with
//! golden files) and on one the Python SDK 0.11 wrote; exit codes; the
//! liveness marker of a run whose process died; `verify` on injected damage.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value as Json, json};

/// Two completed runs (the second with twice the loss) and one whose
/// process died while it was RUNNING.
fn store() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    write_train_run(&root, "alice/mnist/run-2", 2.0);
    pin_times(
        &root,
        "alice/mnist/run-2",
        "2025-01-02T04:00:00.000000Z",
        Some("2025-01-02T05:30:00.000000Z"),
    );
    dead_run(&root, "bob/cifar/crashed");
    t
}

/// A run whose writer exits without closing it (this test binary, run
/// again as a child: `exit` skips the run's destructor, as a kill would).
fn dead_run(root: &Path, prefix: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_writer_that_dies", "--nocapture"])
        .env("ML_DASH_CLI_CHILD_ROOT", root)
        .env("ML_DASH_CLI_CHILD_PREFIX", prefix)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("child flushed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pin_times(root, prefix, "2025-01-01T00:00:00.000000Z", None);
}

#[test]
fn child_writer_that_dies() {
    let (Some(root), Some(prefix)) = (
        std::env::var_os("ML_DASH_CLI_CHILD_ROOT"),
        std::env::var_os("ML_DASH_CLI_CHILD_PREFIX"),
    ) else {
        return; // only as the child of `dead_run`
    };
    let run = open(Path::new(&root), prefix.to_str().unwrap());
    let doc: Json =
        serde_json::from_slice(&fs::read(run.dir().join("experiment.json")).unwrap()).unwrap();
    // The liveness marker, written at open.
    assert_eq!(doc["pid"], json!(std::process::id()));
    assert!(doc["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(doc["heartbeat_at"].is_string());
    let m = run.metrics("train").unwrap();
    for i in 0..3 {
        m.log(&ml_dash::point! {"loss" => 1.0 / (1 + i) as f64, "_ts" => 500.0 + i as f64})
            .unwrap();
    }
    run.flush().unwrap();
    println!("child flushed");
    std::io::stdout().flush().unwrap();
    std::process::exit(0);
}

#[test]
fn list_show_export_match_golden_files() {
    let t = store();
    let root = t.path().join(".dash");
    let r = root.to_str().unwrap();
    golden("list.txt", &ok_out(&root, &["list"], 0));
    golden(
        "list_fields.txt",
        &ok_out(
            &root,
            &[
                "list",
                "alice/**",
                "--field",
                "train.loss",
                "--field",
                "acc",
            ],
            0,
        ),
    );
    golden(
        "show.txt",
        &normalise(&ok_out(&root, &["show", "alice/mnist/run-1"], 0)),
    );
    golden(
        "show_warn_logs.txt",
        &normalise(&ok_out(
            &root,
            &[
                "show",
                "alice/mnist/run-1",
                "--logs",
                "1",
                "--level",
                "warn",
            ],
            0,
        )),
    );
    golden(
        "export_eval.csv",
        &ok_out(
            &root,
            &["export", "alice/mnist/run-1", "--metric", "eval"],
            0,
        ),
    );
    golden(
        "export_pose.jsonl",
        &ok_out(
            &root,
            &[
                "export",
                "alice/mnist/run-1",
                "--track",
                "robot/pose",
                "--format",
                "jsonl",
            ],
            0,
        ),
    );
    golden(
        "export_logs.csv",
        &normalise(&ok_out(
            &root,
            &["export", "alice/mnist/run-1", "--logs"],
            0,
        )),
    );
    // -o FILE: the same bytes as stdout.
    let file = t.path().join("train.csv");
    ok_out(
        &root,
        &[
            "export",
            "alice/mnist/run-1",
            "--metric",
            "train",
            "-o",
            file.to_str().unwrap(),
        ],
        0,
    );
    let csv = fs::read_to_string(&file).unwrap();
    assert_eq!(
        csv,
        ok_out(
            &root,
            &["export", "alice/mnist/run-1", "--metric", "train"],
            0
        )
    );
    assert_eq!(csv.lines().count(), 51);
    assert_eq!(csv.lines().next(), Some("index,loss,step,_ts"));
    assert_eq!(csv.lines().nth(50), Some("49,0.02,49,1049.0"));
    let _ = r;
}

#[test]
fn json_outputs_and_the_dead_run() {
    let t = store();
    let root = t.path().join(".dash");
    let list: Json = serde_json::from_str(&ok_out(&root, &["list", "--json"], 0)).unwrap();
    let prefixes = common::prefixes(&list);
    // Sorted by start time.
    assert_eq!(
        prefixes,
        [
            "bob/cifar/crashed",
            "alice/mnist/run-1",
            "alice/mnist/run-2"
        ]
    );
    let crashed = &list[0];
    assert_eq!(crashed["status"], "RUNNING");
    assert_eq!(crashed["liveness"], "dead");
    assert_eq!(crashed["points"]["train"], 3);
    assert_eq!(list[1]["liveness"], "final");
    // `follow` on it does not wait forever: it says the process died, exit 1.
    let f = ok_out(&root, &["follow", "bob/cifar/crashed", "--no-tty"], 1);
    assert!(
        f.contains("metric train points=3") && f.contains("is gone"),
        "{f}"
    );
    assert_eq!(list[1]["duration_s"], 125.5);
    assert_eq!(list[1]["points"], json!({"eval": 5, "train": 50}));

    let show: Json =
        serde_json::from_str(&ok_out(&root, &["show", "alice/mnist/run-2", "--json"], 0)).unwrap();
    assert_eq!(show["params"]["model.lr"], 0.001);
    let train = show["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "train")
        .unwrap();
    let loss = &train["fields"][0];
    assert_eq!(
        (loss["name"].as_str(), loss["count"].as_u64()),
        (Some("loss"), Some(50))
    );
    assert_eq!(
        (loss["min"].as_f64(), loss["max"].as_f64()),
        (Some(2.0 / 50.0), Some(2.0))
    );
    assert_eq!(show["tracks"][0]["rows"], 5);
    assert_eq!(show["files"][0]["path"], "/configs/notes.txt");
    assert_eq!(show["files"][0]["size"], 25);
    assert_eq!(show["logs"]["total"], 2);
}

#[test]
fn exit_codes_help_and_completions() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    for cmd in [
        "list",
        "show",
        "plot",
        "follow",
        "verify",
        "export",
        "sync",
        "completions",
    ] {
        let o = ok_out(&root, &[cmd, "--help"], 0);
        assert!(o.contains("Usage: ml-dash"), "{cmd} --help: {o}");
    }
    assert_eq!(
        ml_dash(&root, &["list", "--no-such-flag"]).status.code(),
        Some(2)
    );
    assert_eq!(
        ml_dash(&root, &["show", "no/such/run"]).status.code(),
        Some(2)
    );
    assert_eq!(ml_dash(&root, &["export", "a/b/c"]).status.code(), Some(2));
    assert_eq!(ml_dash(&root, &["nonsense"]).status.code(), Some(2));
    // An empty store: nothing to list, nothing wrong.
    assert_eq!(ok_out(&root, &["list", "--json"], 0).trim(), "[]");
    let bash = ok_out(&root, &["completions", "bash"], 0);
    assert!(
        bash.contains("_ml__dash()")
            && bash.contains("--dash-root")
            && bash.contains("complete -F"),
        "{bash}"
    );
}

#[test]
fn a_store_written_by_the_python_sdk() {
    let Some(py) = python() else { return };
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    sdk_write(py, &root, "py/proj/sdk-run");
    let list: Json = serde_json::from_str(&ok_out(&root, &["list", "--json"], 0)).unwrap();
    assert_eq!(list[0]["prefix"], "py/proj/sdk-run");
    assert_eq!(list[0]["liveness"], "unknown"); // the SDK writes no status
    assert_eq!(list[0]["points"]["train"], 5);
    let show: Json =
        serde_json::from_str(&ok_out(&root, &["show", "py/proj/sdk-run", "--json"], 0)).unwrap();
    assert_eq!(show["params"]["model.layers.hidden"], 128);
    assert_eq!(show["params"]["batch_size"], 32);
    assert_eq!(show["logs"]["total"], 2);
    assert_eq!(show["tracks"][0]["topic"], "robot/pose");
    assert_eq!(show["tracks"][0]["rows"], 2);
    let csv = ok_out(
        &root,
        &["export", "py/proj/sdk-run", "--metric", "train"],
        0,
    );
    assert_eq!(csv.lines().next(), Some("index,loss,step,_ts"));
    assert_eq!(csv.lines().nth(2), Some("1,0.5,1,1001.0"));
    assert!(ok_out(&root, &["verify"], 0).contains("ok       py/proj/sdk-run"));
}

/// Writes a spool session with 10 records into the run's `.spool`.
fn spool_session(run_dir: &Path) -> std::path::PathBuf {
    use ml_dash::__remote_testing::{Kind, SessionId, SpoolWriter};
    let (mut w, _lock) = SpoolWriter::create(
        &run_dir.join(".spool"),
        SessionId::new(),
        br#"{"prefix":"alice/mnist/run-1"}"#,
        1 << 20,
    )
    .unwrap();
    for i in 0..10 {
        let item = format!("{{\"loss\":{i},\"_ts\":{i}.0}}");
        w.append(Kind::Metrics, Some("train"), [item.as_bytes()])
            .unwrap();
    }
    w.sync().unwrap();
    w.dir().to_path_buf()
}

fn problems(root: &Path, args: &[&str]) -> Vec<(String, String)> {
    let out = ok_out(root, args, 1);
    let v: Json = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let path = p["path"].as_str().unwrap();
            let rel = path.split(".dash/").nth(1).unwrap_or(path).to_string();
            (rel, p["problem"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn verify_finds_exactly_the_injected_damage() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    let run = root.join("alice/mnist/run-1");
    let session = spool_session(&run);
    assert_eq!(
        ok_out(&root, &["verify"], 0).trim(),
        "ok       alice/mnist/run-1"
    );

    // 1. A torn line at the end of metrics/train.
    let train = run.join("metrics/train/data.jsonl");
    OpenOptions::new()
        .append(true)
        .open(&train)
        .unwrap()
        .write_all(b"{\"index\":50,\"da")
        .unwrap();
    // 2. A duplicated index in metrics/eval: its 3rd line twice.
    let eval = run.join("metrics/eval/data.jsonl");
    let text = fs::read_to_string(&eval).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut dup: Vec<&str> = lines[..3].to_vec();
    dup.push(lines[2]);
    dup.extend(&lines[3..]);
    fs::write(&eval, dup.join("\n") + "\n").unwrap();
    // 3. A changed byte in a stored file.
    let files = ml_dash::read::stored_files(&run).unwrap();
    let content = &files[0].content;
    let f = OpenOptions::new().write(true).open(content).unwrap();
    f.write_all_at(b"J", 0).unwrap();
    // 4. A flipped byte inside the 5th record of the spool segment.
    let seg = session.join("00000001.seg");
    let bytes = fs::read(&seg).unwrap();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    let at = bytes.len() / 2;
    f.write_all_at(&[bytes[at] ^ 0x20], at as u64).unwrap();

    let found = problems(&root, &["verify", "--json"]);
    let sess = session.file_name().unwrap().to_str().unwrap();
    let want: Vec<(String, &str)> = vec![
        (
            "alice/mnist/run-1/metrics/eval/data.jsonl".into(),
            "line 4: index 2 is a duplicate",
        ),
        (
            "alice/mnist/run-1/metrics/train/data.jsonl".into(),
            "torn last line: 15 bytes",
        ),
        ("alice/mnist/run-1/files/configs/".into(), "has sha256 "),
        (
            format!("alice/mnist/run-1/.spool/{sess}/00000001.seg"),
            "damaged",
        ),
    ];
    assert_eq!(found.len(), want.len(), "{found:#?}");
    for (path, what) in &want {
        assert!(
            found
                .iter()
                .any(|(p, w)| p.starts_with(path.as_str()) && w.contains(what)),
            "{path}: {what} not in {found:#?}"
        );
    }

    // --repair moves the torn line aside (and says so); the rest stays.
    let out = ok_out(&root, &["verify", "--repair", "alice/mnist/run-1"], 1);
    assert!(out.contains("repaired: moved the 15 bytes to"), "{out}");
    let torn = fs::read_to_string(train.with_file_name("data.jsonl.torn")).unwrap();
    assert_eq!(torn, "{\"index\":50,\"da\n");
    assert!(fs::read(&train).unwrap().ends_with(b"}\n"));
    let after = problems(&root, &["verify", "--json"]);
    assert_eq!(after.len(), 3, "{after:#?}");
    assert!(!after.iter().any(|(_, w)| w.contains("torn")));
    // A spool named directly.
    let spool = problems(&root, &["verify", "--json", session.to_str().unwrap()]);
    assert_eq!(spool.len(), 1, "{spool:#?}");
}
