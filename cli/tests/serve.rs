//! `ml-dash serve`: its JSON API through a real HTTP client (ureq) against
//! the server started as a process: the runs list (a crashed run marked),
//! a run's detail, downsampled series (first and last points kept), paged
//! logs and tracks, files (headers that never render user HTML), live
//! events after a flush, refused traversal and symlink escapes, the token.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use common::server::serve;
use common::*;
use ml_dash::point;
use serde_json::{Value as Json, json};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A guard against a hang, not a timing assertion.
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// Status, headers and body of a GET.
fn get(url: &str, headers: &[(&str, &str)]) -> (u16, ureq::http::HeaderMap, String) {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.call().unwrap();
    let body = r.body_mut().read_to_string().unwrap();
    (r.status().as_u16(), r.headers().clone(), body)
}

fn json_of(url: &str) -> Json {
    let (status, _, body) = get(url, &[]);
    assert_eq!(status, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// A run left RUNNING by a process that is gone (its marker kept, its pid
/// that of a child that has exited).
fn crashed_run(root: &Path, prefix: &str) {
    let run = open(root, prefix);
    run.metrics("train")
        .unwrap()
        .log(&point! {"loss" => 3.0})
        .unwrap();
    run.flush().unwrap();
    let doc_path = run.dir().join("experiment.json");
    let mut doc: Json = serde_json::from_slice(&fs::read(&doc_path).unwrap()).unwrap();
    run.complete().unwrap();
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    doc["pid"] = json!(gone.id());
    gone.wait().unwrap();
    fs::write(&doc_path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn runs_detail_series_logs_tracks_files() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    write_train_run(&root, "alice/mnist/run-2", 2.0);
    crashed_run(&root, "bob/cifar/crashed");
    let evil = open(&root, "alice/mnist/html");
    evil.files("x")
        .save_text("page.html", "<script>alert(1)</script>")
        .unwrap();
    evil.complete().unwrap();
    let s = serve(&root, &[]);
    let b = &s.base;

    let runs = json_of(&format!("{b}/api/runs"));
    let prefixes = common::prefixes(&runs);
    assert_eq!(
        prefixes,
        [
            "alice/mnist/html",
            "alice/mnist/run-1",
            "alice/mnist/run-2",
            "bob/cifar/crashed"
        ]
    );
    assert_eq!(runs[1]["status"], "COMPLETED");
    assert_eq!(runs[1]["duration_s"], 125.5);
    assert_eq!(runs[1]["last"]["train"]["loss"], 1.0 / 50.0);
    assert_eq!(runs[2]["last"]["eval"]["step"], 49);
    assert_eq!(
        (runs[3]["status"].as_str(), runs[3]["liveness"].as_str()),
        (Some("RUNNING"), Some("dead"))
    );

    let d = json_of(&format!("{b}/api/runs/alice/mnist/run-1"));
    assert_eq!(d["params"]["optimizer"], "adam");
    let metrics: Vec<&str> = d["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["eval", "train"]);
    assert_eq!(d["metrics"][1]["fields"], json!(["loss", "step", "_ts"]));
    assert_eq!(d["tracks"][0]["topic"], "robot/pose");
    assert_eq!(
        (
            d["files"][0]["filename"].as_str(),
            d["files"][0]["kind"].as_str()
        ),
        (Some("notes.txt"), Some("text"))
    );

    // Every point when the width allows; downsampled otherwise, the first
    // and last kept; x as step, index or time; a zoom.
    let run = "run=alice/mnist/run-1&metric=train";
    let all = json_of(&format!("{b}/api/series?{run}&width=1000"));
    assert_eq!(
        (all["points"].as_u64(), all["series"][0]["field"].as_str()),
        (Some(50), Some("loss"))
    );
    let xs: Vec<f64> = serde_json::from_value(all["series"][0]["x"].clone()).unwrap();
    assert_eq!(xs, (0..50).map(f64::from).collect::<Vec<_>>());
    assert_eq!(all["series"][0]["y"][49], 1.0 / 50.0);
    let few = json_of(&format!("{b}/api/series?{run}&width=4"));
    let x = few["series"][0]["x"].as_array().unwrap();
    assert!(x.len() <= 16 && x.len() >= 8, "{x:?}");
    assert_eq!(
        (x[0].as_f64(), x.last().unwrap().as_f64()),
        (Some(0.0), Some(49.0))
    );
    let time = json_of(&format!("{b}/api/series?{run}&x=time&fields=loss"));
    assert_eq!(
        (time["t0"].as_f64(), time["series"][0]["x"][49].as_f64()),
        (Some(1000.0), Some(49.0))
    );
    let zoom = json_of(&format!("{b}/api/series?{run}&x=index&x0=10&x1=20"));
    let zx: Vec<f64> = serde_json::from_value(zoom["series"][0]["x"].clone()).unwrap();
    assert_eq!(zx, (10..=20).map(f64::from).collect::<Vec<_>>());
    let smooth = json_of(&format!("{b}/api/series?{run}&smooth=2"));
    assert_eq!(smooth["series"][0]["y"][1], (1.0 + 0.5) / 2.0);

    // Logs, paged and filtered; tracks.
    let logs = |q: &str| json_of(&format!("{b}/api/logs?run=alice/mnist/run-1&{q}"));
    let p1 = logs("limit=1");
    assert_eq!(
        (
            p1["lines"][0]["line"]["message"].as_str(),
            p1["eof"].as_bool()
        ),
        (Some("training started"), Some(false))
    );
    let p2 = logs(&format!("limit=1&offset={}", p1["next"]));
    assert_eq!(
        (
            p2["lines"][0]["line"]["message"].as_str(),
            p2["eof"].as_bool()
        ),
        (Some("loss is low"), Some(true))
    );
    assert_eq!(logs("level=warn")["lines"].as_array().unwrap().len(), 1);
    assert_eq!(logs("q=STARTED")["lines"].as_array().unwrap().len(), 1);
    let tracks = json_of(&format!(
        "{b}/api/tracks?run=alice/mnist/run-1&topic=robot/pose"
    ));
    assert_eq!(tracks["lines"].as_array().unwrap().len(), 5);

    // Files: streamed, headed so that nothing renders as the app's page.
    let id = d["files"][0]["id"].as_str().unwrap();
    let (st, h, body) = get(
        &format!("{b}/api/files?run=alice/mnist/run-1&id={id}&download=1"),
        &[],
    );
    assert_eq!((st, body.as_str()), (200, "hello from the cli tests\n"));
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"notes.txt\"")
    );
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox")
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    let (_, _, head) = get(
        &format!("{b}/api/files?run=alice/mnist/run-1&id={id}&head=5"),
        &[],
    );
    assert_eq!(head, "hello");
    let hd = json_of(&format!("{b}/api/runs/alice/mnist/html"));
    let hid = hd["files"][0]["id"].as_str().unwrap();
    let (_, h, _) = get(&format!("{b}/api/files?run=alice/mnist/html&id={hid}"), &[]);
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline")
    );

    // The pages and their embedded assets.
    for page in ["/", "/runs/alice/mnist/run-1"] {
        let (st, h, body) = get(&format!("{b}{page}"), &[]);
        assert_eq!(st, 200);
        assert!(
            body.contains("/assets/app.js")
                && h["content-type"].to_str().unwrap().starts_with("text/html")
        );
    }
    let (st, _, js) = get(&format!("{b}/assets/app.js"), &[]);
    assert!(st == 200 && js.contains("EventSource"));
}

#[test]
fn traversal_symlinks_and_the_token_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    // A run outside the root, linked from inside it.
    write_train_run(&t.path().join("outside"), "x/y/secret", 1.0);
    fs::create_dir_all(root.join("evil/p")).unwrap();
    std::os::unix::fs::symlink(
        t.path().join("outside/x/y/secret"),
        root.join("evil/p/link"),
    )
    .unwrap();
    // A stored file replaced by a link to a file outside.
    let d = root.join("alice/mnist/run-1");
    let stored = ml_dash::read::stored_files(&d).unwrap();
    fs::write(t.path().join("passwd"), "secret\n").unwrap();
    fs::remove_file(&stored[0].content).unwrap();
    std::os::unix::fs::symlink(t.path().join("passwd"), &stored[0].content).unwrap();

    let s = serve(&root, &[]);
    let b = &s.base;
    for (url, want) in [
        ("/api/runs/..%2F..%2Fetc", 400),
        ("/api/runs/alice/../alice/mnist/run-1", 400),
        ("/api/runs/alice/mnist/run-1/..", 400),
        ("/api/runs/.hidden/x/y", 400),
        ("/api/series?run=alice/mnist/run-1&metric=../../../x", 400),
        ("/api/logs?run=..%2Foutside/x/y/secret", 400),
        ("/api/runs/evil/p/link", 403),
        ("/api/series?run=evil/p/link&metric=train", 403),
        ("/api/runs/no/such/run", 404),
        (
            &format!("/api/files?run=alice/mnist/run-1&id={}", stored[0].info.id),
            403,
        ),
    ] {
        let (st, _, body) = get(&format!("{b}{url}"), &[]);
        assert_eq!(st, want, "{url}: {body}");
        assert!(
            !body.starts_with("secret") && !body.contains("adam"),
            "{url}: {body}"
        );
    }
    let runs = json_of(&format!("{b}/api/runs"));
    assert_eq!(
        runs.as_array().unwrap().len(),
        1,
        "the linked run is not listed: {runs}"
    );
    drop(s);

    // Any host but loopback needs a token; with one, every request needs it.
    let o = ml_dash(&root, &["serve", "--host", "0.0.0.0", "--port", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--token"));
    let s = serve(&root, &["--token", "s3cret"]);
    let b = &s.base;
    for path in [
        "/",
        "/runs/alice/mnist/run-1",
        "/assets/app.js",
        "/api/runs",
        "/api/events?run=alice/mnist/run-1",
    ] {
        assert_eq!(get(&format!("{b}{path}"), &[]).0, 401, "{path}");
        assert_eq!(
            get(&format!("{b}{path}"), &[("Authorization", "Bearer s3creT")]).0,
            401,
            "{path}"
        );
        assert_eq!(get(&format!("{b}{path}?token=s3cre"), &[]).0, 401, "{path}");
    }
    assert_eq!(
        get(
            &format!("{b}/api/runs"),
            &[("Authorization", "Bearer s3cret")]
        )
        .0,
        200
    );
    assert_eq!(
        get(
            &format!("{b}/api/runs"),
            &[("Cookie", "a=b; ml_dash_token=s3cret")]
        )
        .0,
        200
    );
    let (st, h, _) = get(&format!("{b}/?token=s3cret"), &[]);
    assert_eq!(st, 200);
    assert!(
        h["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("ml_dash_token=s3cret; Path=/; HttpOnly")
    );
}

/// Reads server-sent events until one named `event` satisfies `want`.
fn until(r: &mut impl BufRead, event: &str, want: impl Fn(&Json) -> bool) -> Json {
    let mut name = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the event stream ended"
        );
        let line = line.trim_end();
        if let Some(n) = line.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Json = serde_json::from_str(d).unwrap();
            if name == event && want(&v) {
                return v;
            }
        }
    }
}

#[test]
fn events_follow_a_live_run_after_each_flush() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    let run = open(&root, "alice/live/run");
    let m = run.metrics("train").unwrap();
    m.log(&point! {"loss" => 1.0, "step" => 0}).unwrap();
    run.flush().unwrap();
    let s = serve(&root, &[]);
    let series = format!("{}/api/series?run=alice/live/run&metric=train", s.base);
    assert_eq!(json_of(&series)["points"], 1);
    let resp = agent()
        .get(&format!("{}/api/events?run=alice/live/run", s.base))
        .call()
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut r = BufReader::new(resp.into_body().into_reader());
    // The first status: from here on, what is appended is sent.
    until(&mut r, "status", |v| {
        v["status"] == "RUNNING" && v["liveness"] == "alive"
    });
    m.log(&point! {"loss" => 0.5, "step" => 1}).unwrap();
    run.log("one more").unwrap();
    run.flush().unwrap();
    let p = until(&mut r, "point", |_| true);
    assert_eq!(
        (
            p["metric"].as_str(),
            p["data"]["step"].as_u64(),
            p["data"]["loss"].as_f64()
        ),
        (Some("train"), Some(1), Some(0.5))
    );
    until(&mut r, "log", |v| v["message"] == "one more");
    // The series answer is not a stale cached one.
    assert_eq!(json_of(&series)["points"], 2);
    // A new stream appears with its points.
    run.metrics("eval")
        .unwrap()
        .log(&point! {"acc" => 0.9})
        .unwrap();
    run.flush().unwrap();
    until(&mut r, "point", |v| {
        v["metric"] == "eval" && v["data"]["acc"] == 0.9
    });
    run.complete().unwrap();
    until(&mut r, "status", |v| {
        v["status"] == "COMPLETED" && v["liveness"] == "final"
    });
}
