//! The remote sink against a faulty server: everything arrives exactly once
//! (by idempotency key), close keeps its deadline, refusals are dead-lettered.

mod support;

use std::time::{Duration, Instant};

use ml_dash::__remote_testing as rt;
use ml_dash::Status;
use serde_json::json;
use support::{TestServer, census, config, points, refs};

#[test]
fn a_run_sends_everything_in_order_like_the_sdk() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server.url(), "alice/proj/f1/f2/exp1", dir.path());
    // One record in flight: the SDK's exact order across streams (with more,
    // streams interleave, each still in order).
    c.max_in_flight = 1;
    let mut sink = rt::RemoteSink::open(c).unwrap();
    let mut params = serde_json::Map::new();
    params.insert("model.lr".into(), json!(0.001));
    params.insert("seed".into(), json!(42));
    sink.merge_params(&params).unwrap();
    let logs = [
        br#"{"timestamp":"2026-11-27T21:40:17.471086Z","level":"info","message":"start","metadata":{"epoch":0}}"#.to_vec(),
        br#"{"timestamp":"2026-11-27T21:40:17.471090Z","level":"warn","message":"low"}"#.to_vec(),
    ];
    sink.append_logs(refs(&logs)).unwrap();
    sink.append_metrics(Some("train"), refs(&points(0, 0, 3)))
        .unwrap();
    sink.append_metrics(None, [&br#"{"epoch":1,"lr":NaN,"_ts":1.5}"#[..]])
        .unwrap();
    sink.append_tracks("robot/pose", [&br#"{"timestamp":1.0,"q":[0.1,0.2]}"#[..]])
        .unwrap();
    sink.finish(Status::Completed).unwrap();
    sink.sync().unwrap();
    let session = sink.session_dir().to_owned();
    let report = sink.close(Duration::from_secs(20));
    assert!(report.is_drained(), "{report}");
    assert_eq!(report.stats.sent_records, 6);
    assert_eq!(report.stats.nonfinite_nulled, 1);
    assert!(!session.exists(), "a drained session is removed");

    let reqs = server.requests();
    let seq: Vec<(String, String)> = reqs
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let st = server.state();
    let exp = st.experiment("exp1").unwrap();
    let node = st.nodes.iter().find(|n| n["experimentId"] == exp).unwrap()["id"]
        .as_u64()
        .unwrap();
    let want: Vec<(String, String)> = [
        ("POST", "/graphql".to_owned()),
        ("POST", "/api/namespaces/alice/nodes".to_owned()),
        ("POST", "/api/namespaces/alice/nodes".to_owned()),
        ("POST", "/api/namespaces/alice/nodes".to_owned()),
        ("POST", "/api/namespaces/alice/nodes".to_owned()),
        ("POST", format!("/api/experiments/{exp}/parameters")),
        ("POST", format!("/api/experiments/{exp}/logs")),
        (
            "POST",
            format!("/api/experiments/{exp}/metrics/train/append-batch"),
        ),
        (
            "POST",
            format!("/api/experiments/{exp}/metrics/None/append-batch"),
        ),
        (
            "POST",
            format!("/api/experiments/{exp}/tracks/robot%2Fpose/append_batch"),
        ),
        ("PATCH", format!("/api/nodes/{node}")),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p))
    .collect();
    assert_eq!(seq, want);
    // Node bodies: PROJECT (unknown project, folders present), FOLDER x2, EXPERIMENT.
    assert_eq!(
        reqs[1].json(),
        json!({"type": "PROJECT", "name": "proj", "slug": "proj"})
    );
    let pid = reqs[2].json()["projectId"].clone();
    assert!(
        pid.is_u64() && pid.to_string().len() == 19,
        "ids go back as the bare numbers given"
    );
    assert_eq!(
        reqs[2].json(),
        json!({"type": "FOLDER", "projectId": pid, "parentId": "ROOT", "name": "f1"})
    );
    assert_eq!(reqs[3].json()["name"], "f2");
    assert_eq!(reqs[4].json()["type"], "EXPERIMENT");
    let f2 = st.nodes.iter().find(|n| n["name"] == "f2").unwrap();
    assert_eq!(
        reqs[4].json()["parentId"],
        f2["id"],
        "the experiment goes under the last folder"
    );
    assert_eq!(
        reqs[5].json(),
        json!({"data": {"model.lr": 0.001, "seed": 42}})
    );
    assert_eq!(
        reqs[8].json(),
        json!({"dataPoints": [{"epoch": 1, "lr": null, "_ts": 1.5}]})
    );
    assert_eq!(reqs[10].json(), json!({"status": "COMPLETED"}));
    for r in &reqs[5..] {
        assert!(r.key().is_some(), "{} carries an idempotency key", r.path);
        assert_eq!(r.header("authorization"), Some("Bearer test-token"));
    }
    assert_eq!(st.points("exp1", "train").len(), 3);
    assert_eq!(st.statuses[&node], ["COMPLETED"]);
}

fn fault_points() -> u64 {
    std::env::var("ML_DASH_FAULT_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// R3: 4 writers (4 sinks, one experiment, one spool folder), 30 % 5xx,
/// 5 % 429 with Retry-After, 5 % resets, 2 % answered after the client's
/// timeout: the server holds every point exactly once.
/// Full run: `ML_DASH_FAULT_POINTS=1000000 cargo test --release --test sink_remote_faults`.
#[test]
fn faulty_server_gets_every_point_exactly_once() {
    let total = fault_points();
    let per = total / 4;
    let server = TestServer::start();
    server.faults(|f| {
        f.random = Some(support::RandomFaults {
            p_5xx: 0.30,
            p_429: 0.05,
            p_reset: 0.05,
            p_late: 0.02,
            seed: 42,
        });
        f.retry_after = Some("0".into());
        f.late = Duration::from_millis(700);
    });
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let (url, dir) = (url.clone(), dir.path().to_owned());
            std::thread::spawn(move || {
                let mut c = config(&url, "alice/proj/faults", &dir);
                c.request_timeout = Duration::from_millis(400);
                let mut sink = rt::RemoteSink::open(c).unwrap();
                let mut i = 0;
                while i < per {
                    let n = (per - i).min(2500);
                    sink.append_metrics(Some("train"), refs(&points(t, i, n)))
                        .unwrap();
                    i += n;
                }
                sink.finish(Status::Completed).unwrap();
                sink.close(Duration::from_secs(300))
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert!(r.is_drained(), "{r}");
        assert!(r.stats.retries > 0);
    }
    let st = server.state();
    let stored = st.points("faults", "train");
    let c = census(&stored);
    assert_eq!(c.len() as u64, per * 4, "every point is on the server");
    assert!(c.values().all(|&n| n == 1), "no point twice");
    assert_eq!(stored.len() as u64, per * 4);
    let dups = st.requests.iter().filter(|r| r.duplicate).count();
    let faults = |f| st.requests.iter().filter(|r| r.fault == Some(f)).count();
    eprintln!(
        "{} points, {} requests: {} 5xx, {} 429, {} resets, {} late, {} duplicates dropped by key",
        stored.len(),
        st.requests.len(),
        faults("5xx"),
        faults("429"),
        faults("reset"),
        faults("late"),
        dups
    );
    assert!(faults("5xx") > 0 && faults("429") > 0 && faults("reset") > 0);
}

/// R5: close against a server that accepts and never answers returns within
/// its deadline + 0.5 s, and says what stays spooled; a later sync sends it.
#[test]
fn close_against_a_black_hole_keeps_its_deadline() {
    let server = TestServer::start();
    server.faults(|f| f.black_hole = true);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server.url(), "alice/proj/hole", dir.path());
    c.request_timeout = Duration::from_secs(60);
    let mut sink = rt::RemoteSink::open(c).unwrap();
    for k in 0..5 {
        sink.append_metrics(Some("train"), refs(&points(0, k * 100, 100)))
            .unwrap();
    }
    sink.finish(Status::Completed).unwrap();
    let session = sink.session_dir().to_owned();
    let deadline = Duration::from_millis(1500);
    let t0 = Instant::now();
    let report = sink.close(deadline);
    let took = t0.elapsed();
    assert!(
        took <= deadline + Duration::from_millis(500),
        "close took {took:?}"
    );
    assert!(report.timed_out && !report.is_drained());
    assert_eq!(report.stats.pending_records, 6);
    let how = report.how_to_send().unwrap();
    assert!(
        how.contains("ml_dash::sync") && how.contains(&dir.path().display().to_string()),
        "{how}"
    );

    // The server comes back; the sender left running lets go of the session.
    server.faults(|f| f.black_hole = false);
    server.drop_connections();
    support::wait_unlocked(&session);
    let r = rt::sync(dir.path(), &support::sync_options(&server.url())).unwrap();
    assert!(r.is_drained(), "{r}");
    let st = server.state();
    assert_eq!(census(&st.points("hole", "train")).len(), 500);
    assert!(
        census(&st.points("hole", "train"))
            .values()
            .all(|&n| n == 1)
    );
    let node = st.nodes.iter().find(|n| n["name"] == "hole").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(st.statuses[&node], ["COMPLETED"]);
}

/// R5: close against a server that is down (connection refused) too.
#[test]
fn close_against_a_dead_server_keeps_its_deadline() {
    let url = {
        let s = TestServer::start();
        s.url()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut sink = rt::RemoteSink::open(config(&url, "alice/proj/dead", dir.path())).unwrap();
    sink.append_metrics(Some("train"), refs(&points(0, 0, 10)))
        .unwrap();
    let deadline = Duration::from_millis(800);
    let t0 = Instant::now();
    let report = sink.close(deadline);
    assert!(
        t0.elapsed() <= deadline + Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(report.stats.pending_records, 1);
    assert!(
        report
            .stats
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("connection"),
        "{report}"
    );
}

/// R6: a 4xx is never retried; the batch goes to the dead-letter file with
/// the status and the answer, and one warning names the file.
#[test]
fn client_errors_are_dead_lettered_and_never_retried() {
    let server = TestServer::start();
    server.faults(|f| {
        for (path, status) in [
            ("/metrics/bad400/", 400),
            ("/metrics/bad404/", 404),
            ("/metrics/bad422/", 422),
        ] {
            f.reject.push(support::Reject {
                path: path.into(),
                status,
                times: u32::MAX,
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        rt::RemoteSink::open(config(&server.url(), "alice/proj/dlq", dir.path())).unwrap();
    sink.append_metrics(Some("bad400"), refs(&points(0, 0, 5)))
        .unwrap();
    sink.append_metrics(Some("good"), refs(&points(0, 0, 5)))
        .unwrap();
    sink.append_metrics(Some("bad404"), refs(&points(0, 5, 5)))
        .unwrap();
    sink.append_metrics(Some("bad422"), refs(&points(0, 10, 5)))
        .unwrap();
    sink.append_metrics(Some("good"), refs(&points(0, 5, 5)))
        .unwrap();
    let report = sink.close(Duration::from_secs(20));
    assert!(report.is_drained(), "{report}");
    assert_eq!(report.stats.dead_lettered, 3);
    assert_eq!(report.stats.dead_lettered_items, 15);
    let file = report.stats.dead_letter_file.clone().unwrap();
    assert_eq!(file, dir.path().join("dead-letter.jsonl"));
    let mut lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Streams are sent in parallel: the file has them in the order they were refused.
    lines.sort_by_key(|l| l["status"].as_u64());
    assert_eq!(
        lines
            .iter()
            .map(|l| l["status"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [400, 404, 422]
    );
    assert_eq!(lines[0]["body"]["dataPoints"].as_array().unwrap().len(), 5);
    assert!(
        lines[0]["answer"]
            .as_str()
            .unwrap()
            .contains("test rule 400")
    );
    assert!(lines[0]["idempotencyKey"].as_str().is_some());
    let naming: Vec<_> = report
        .stats
        .warnings
        .iter()
        .filter(|w| w.contains("dead-letter.jsonl"))
        .collect();
    assert_eq!(naming.len(), 1, "{:?}", report.stats.warnings);
    let st = server.state();
    for bad in ["bad400", "bad404", "bad422"] {
        assert_eq!(
            st.matching(&format!("/metrics/{bad}/")).len(),
            1,
            "{bad} was not retried"
        );
    }
    assert_eq!(census(&st.points("dlq", "good")).len(), 10);
}

/// R6: 401 keeps the data and says to run `ml-dash login` (once); a sync
/// with a good token sends it all.
#[test]
fn unauthorized_keeps_the_data_and_says_to_log_in() {
    let server = TestServer::start();
    server.faults(|f| f.token = Some("the-right-one".into()));
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        rt::RemoteSink::open(config(&server.url(), "alice/proj/auth", dir.path())).unwrap();
    sink.append_metrics(Some("train"), refs(&points(0, 0, 50)))
        .unwrap();
    sink.finish(Status::Completed).unwrap();
    let report = sink.close(Duration::from_millis(500));
    assert!(report.stats.auth_failed, "{report}");
    assert_eq!(report.stats.pending_records, 2);
    let login: Vec<_> = report
        .stats
        .warnings
        .iter()
        .filter(|w| w.contains("ml-dash login"))
        .collect();
    assert_eq!(login.len(), 1, "{:?}", report.stats.warnings);
    assert!(report.how_to_send().unwrap().contains("ml-dash login"));

    let mut o = support::sync_options(&server.url());
    o.token = Some("the-right-one".into());
    let r = rt::sync(dir.path(), &o).unwrap();
    assert!(r.is_drained() && !r.stats.auth_failed, "{r}");
    assert_eq!(census(&server.state().points("auth", "train")).len(), 50);
}

/// R6: a 403 is handled like a 401 (data kept), a 409 on a node upsert is retried.
#[test]
fn forbidden_keeps_data_and_conflicts_are_retried() {
    let server = TestServer::start();
    server.faults(|f| {
        f.conflict_next = 2;
        f.reject.push(support::Reject {
            path: "/metrics/".into(),
            status: 403,
            times: 1,
        });
    });
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server.url(), "alice/proj/forbid", dir.path());
    c.retry_max_delay = Duration::from_millis(5);
    let mut sink = rt::RemoteSink::open(c).unwrap();
    sink.append_metrics(Some("train"), refs(&points(0, 0, 5)))
        .unwrap();
    assert!(sink.wait_sent(Duration::from_secs(20)));
    let report = sink.close(Duration::from_secs(5));
    assert!(report.is_drained(), "{report}");
    assert_eq!(report.stats.dead_lettered, 0);
    let st = server.state();
    assert_eq!(st.requests.iter().filter(|r| r.status == 409).count(), 2);
    assert_eq!(census(&st.points("forbid", "train")).len(), 5);
}

/// R6 / bad input: a 413, or a batch over 1000 points or 1 MB, is split and
/// every point arrives once.
#[test]
fn oversize_batches_are_split_never_dropped() {
    let server = TestServer::start();
    server.faults(|f| f.max_items = Some(300));
    let dir = tempfile::tempdir().unwrap();
    let mut sink =
        rt::RemoteSink::open(config(&server.url(), "alice/proj/big", dir.path())).unwrap();
    sink.append_metrics(Some("train"), refs(&points(0, 0, 2500)))
        .unwrap();
    // Three points of 400 kB each: at most two per 1 MB request.
    let fat: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("{{\"i\":{i},\"t\":9,\"blob\":\"{}\"}}", "x".repeat(400_000)).into_bytes())
        .collect();
    sink.append_metrics(Some("fat"), refs(&fat)).unwrap();
    let report = sink.close(Duration::from_secs(30));
    assert!(report.is_drained(), "{report}");
    assert!(report.stats.splits > 0);
    let st = server.state();
    let train = census(&st.points("big", "train"));
    assert_eq!(train.len(), 2500);
    assert!(train.values().all(|&n| n == 1));
    for r in st
        .requests
        .iter()
        .filter(|r| r.path.contains("/append-batch"))
    {
        assert!(
            r.body.len() <= 1_000_000,
            "request of {} bytes",
            r.body.len()
        );
        let n = r.json()["dataPoints"].as_array().map_or(0, Vec::len);
        assert!(n <= 1000);
    }
    assert_eq!(st.matching("/metrics/fat/").len(), 2);
    assert_eq!(census(&st.points("big", "fat")).len(), 3);
}

/// R4 (short): the server is down while logging goes on; everything arrives
/// after it returns, once; the spool warns when over its disk budget.
#[test]
fn server_down_then_back_loses_nothing() {
    let server = TestServer::start();
    server.faults(|f| f.down = true);
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server.url(), "alice/proj/outage", dir.path());
    c.disk_budget = 64 * 1024;
    c.segment_bytes = 32 * 1024;
    c.delivery_timeout = Duration::ZERO;
    let mut sink = rt::RemoteSink::open(c).unwrap();
    for k in 0..200 {
        sink.append_metrics(Some("train"), refs(&points(0, k * 50, 50)))
            .unwrap();
        sink.sync().unwrap();
    }
    assert!(sink.over_budget());
    server.wait_for(Duration::from_secs(10), |st| st.requests.len() > 3);
    let during = sink.stats();
    assert_eq!(
        during
            .warnings
            .iter()
            .filter(|w| w.contains("disk budget"))
            .count(),
        1,
        "{:?}",
        during.warnings
    );
    assert!(
        during
            .warnings
            .iter()
            .any(|w| w.contains("has not taken data")),
        "{:?}",
        during.warnings
    );
    server.faults(|f| f.down = false);
    assert!(sink.wait_sent(Duration::from_secs(60)));
    let report = sink.close(Duration::from_secs(10));
    assert!(report.is_drained(), "{report}");
    assert!(
        report.stats.spool_bytes < 64 * 1024,
        "acknowledged segments are deleted: {}",
        report.stats.spool_bytes
    );
    let c = census(&server.state().points("outage", "train"));
    assert_eq!(c.len(), 10_000);
    assert!(c.values().all(|&n| n == 1));
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Files: moved (engine temp file) or copied (a user's file, untouched) into
/// the spool, streamed as the SDK's multipart FILE node under folder nodes of
/// the experiment, retried on 503, removed from the spool once sent.
#[test]
fn files_are_streamed_retried_and_removed_once_sent() {
    let server = TestServer::start();
    server.faults(|f| f.fail_files = 2);
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let temp = src.path().join("save-1.tmp");
    let config_json = b"{\n  \"lr\": 0.001\n}".to_vec();
    std::fs::write(&temp, &config_json).unwrap();
    let user = src.path().join("weights.bin");
    let weights: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&user, &weights).unwrap();

    let mut sink =
        rt::RemoteSink::open(config(&server.url(), "alice/proj/files", dir.path())).unwrap();
    let sum = sha256_hex(&config_json);
    sink.append_file(&rt::FileUpload {
        source: &temp,
        owned: true,
        path: "/configs",
        filename: "config.json",
        content_type: "application/json",
        checksum: &sum,
        description: None,
        tags: &[],
        metadata: None,
    })
    .unwrap();
    let wsum = sha256_hex(&weights);
    let meta = json!({"epoch": 3});
    sink.append_file(&rt::FileUpload {
        source: &user,
        owned: false,
        path: "/models/best",
        filename: "weights.bin",
        content_type: "application/octet-stream",
        checksum: &wsum,
        description: Some("best"),
        tags: &["a".into(), "b".into()],
        metadata: Some(&meta),
    })
    .unwrap();
    assert!(
        !temp.exists(),
        "an engine temp file is moved into the spool"
    );
    assert_eq!(
        std::fs::read(&user).unwrap(),
        weights,
        "a user's file is left alone"
    );
    sink.finish(Status::Completed).unwrap();
    let report = sink.close(Duration::from_secs(20));
    assert!(report.is_drained(), "{report}");
    assert_eq!(report.stats.sent_records, 3);

    let st = server.state();
    assert_eq!(st.files.len(), 2);
    assert_eq!(st.files[0].content, config_json);
    assert_eq!(st.files[0].checksum, sum);
    assert_eq!(st.files[1].content, weights);
    let exp = st.experiment("files").unwrap();
    let exp_node = st
        .nodes
        .iter()
        .find(|n| n["experimentId"] == exp && n["type"] == "EXPERIMENT")
        .unwrap()["id"]
        .clone();
    let folder = |name: &str| {
        st.nodes
            .iter()
            .find(|n| n["name"] == name && n["type"] == "FOLDER")
            .unwrap()
            .clone()
    };
    assert_eq!(folder("configs")["parentId"], exp_node);
    assert_eq!(folder("models")["parentId"], exp_node);
    assert_eq!(folder("best")["parentId"], folder("models")["id"]);
    assert_eq!(st.files[1].parent, folder("best")["id"].as_u64());
    let uploads: Vec<&support::Request> = st
        .requests
        .iter()
        .filter(|r| {
            r.header("content-type")
                .is_some_and(|c| c.starts_with("multipart/"))
        })
        .collect();
    assert_eq!(uploads.len(), 4, "two 503s retried");
    assert!(uploads.iter().all(|r| r.key().is_some()));
    let parts = support::multipart(uploads[3].header("content-type").unwrap(), &uploads[3].body);
    let field = |n: &str| {
        parts
            .iter()
            .find(|p| p.name == n)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "type",
            "projectId",
            "experimentId",
            "parentId",
            "name",
            "checksum",
            "description",
            "tags",
            "metadata",
            "file"
        ]
    );
    assert_eq!(field("tags").as_deref(), Some("a,b"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&field("metadata").unwrap()).unwrap(),
        meta
    );
    assert_eq!(parts[9].filename.as_deref(), Some("weights.bin"));
    assert_eq!(
        rt::sessions(dir.path()).unwrap().len(),
        0,
        "blobs and session removed"
    );
}

/// A refused file goes to the dead-letter file; its content is kept beside it.
#[test]
fn a_refused_file_is_dead_lettered_with_its_content() {
    let server = TestServer::start();
    server.faults(|f| f.reject_files = Some(422));
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let user = src.path().join("notes.txt");
    std::fs::write(&user, b"hello").unwrap();
    let mut sink =
        rt::RemoteSink::open(config(&server.url(), "alice/proj/refused", dir.path())).unwrap();
    let sum = sha256_hex(b"hello");
    sink.append_file(&rt::FileUpload {
        source: &user,
        owned: false,
        path: "/",
        filename: "notes.txt",
        content_type: "text/plain",
        checksum: &sum,
        description: None,
        tags: &[],
        metadata: None,
    })
    .unwrap();
    let report = sink.close(Duration::from_secs(20));
    assert!(report.is_drained(), "{report}");
    assert_eq!(report.stats.dead_lettered, 1);
    let line: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.path().join("dead-letter.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["status"], 422);
    assert_eq!(line["body"]["filename"], "notes.txt");
    assert_eq!(
        std::fs::read(line["file"].as_str().unwrap()).unwrap(),
        b"hello"
    );
    assert_eq!(
        server
            .state()
            .requests
            .iter()
            .filter(|r| r.status == 422)
            .count(),
        1
    );
}
