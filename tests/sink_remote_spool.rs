//! The remote sink's spool: replay after a restart or a kill with the same
//! idempotency keys, adoption of sessions left by dead runs, damaged tails.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ml_dash::__remote_testing as rt;
use ml_dash::Status;
use support::{TestServer, census, config, points, refs, sync_options};

fn metric_keys(server: &TestServer, applied_only: bool) -> Vec<String> {
    server
        .state()
        .requests
        .iter()
        .filter(|r| r.path.contains("/metrics/") && (!applied_only || r.applied()))
        .filter_map(|r| r.key().map(str::to_owned))
        .collect()
}

/// A batch the server applied but whose answer never came back (close gave
/// up first) is resent by the replay under the same key and dropped there.
#[test]
fn replay_after_a_restart_sends_the_rest_with_the_same_keys() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&server.url(), "alice/proj/replay", dir.path());
    c.request_timeout = Duration::from_secs(30);
    server.faults(|f| {
        f.late_next = 1;
        f.late = Duration::from_secs(5);
    });
    let mut sink = rt::RemoteSink::open(c).unwrap();
    for k in 0..4 {
        sink.append_metrics(Some("train"), refs(&points(0, k * 10, 10)))
            .unwrap();
    }
    sink.finish(Status::Completed).unwrap();
    let session = sink.session_dir().to_owned();
    assert!(server.wait_for(
        Duration::from_secs(10),
        |st| st.points("replay", "train").len() == 10
    ));
    let report = sink.close(Duration::from_millis(200));
    assert_eq!(report.stats.pending_records, 5, "{report}");
    let first_keys = metric_keys(&server, true);
    assert_eq!(first_keys.len(), 1, "the first batch was applied once");
    // The answer never comes: the process "dies" with the request in flight.
    server.drop_connections();
    support::wait_unlocked(&session);
    let r = rt::sync(dir.path(), &sync_options(&server.url())).unwrap();
    assert!(r.is_drained(), "{r}");
    assert_eq!(r.stats.sessions_replayed, 1);
    assert!(!session.exists());
    let st = server.state();
    let c = census(&st.points("replay", "train"));
    assert_eq!(c.len(), 40);
    assert!(c.values().all(|&n| n == 1), "no point twice");
    let dup: Vec<_> = st.requests.iter().filter(|r| r.duplicate).collect();
    assert_eq!(
        dup.len(),
        1,
        "the replayed first batch was dropped by its key"
    );
    assert_eq!(dup[0].key(), Some(first_keys[0].as_str()));
    let node = st.nodes.iter().find(|n| n["name"] == "replay").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(st.statuses[&node], ["COMPLETED"]);
}

/// The next run opened on the same spool folder sends what a dead run left
/// first, then its own batches.
#[test]
fn the_next_run_adopts_what_a_dead_run_left() {
    let server = TestServer::start();
    server.faults(|f| {
        f.reject.push(support::Reject {
            path: "/metrics/".into(),
            status: 503,
            times: u32::MAX,
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut first = rt::RemoteSink::open(config(&url, "alice/proj/adopt", dir.path())).unwrap();
    first
        .append_metrics(Some("train"), refs(&points(1, 0, 100)))
        .unwrap();
    first.finish(Status::Failed).unwrap();
    let session = first.session_dir().to_owned();
    assert!(server.wait_for(Duration::from_secs(10), |st| {
        !st.matching("/metrics/").is_empty()
    }));
    let r = first.close(Duration::from_millis(100));
    assert_eq!(r.stats.pending_records, 2);
    support::wait_unlocked(&session);
    let attempted: HashSet<String> = metric_keys(&server, false).into_iter().collect();
    assert!(!attempted.is_empty());

    server.faults(|f| f.reject.clear());
    let mut second = rt::RemoteSink::open(config(&url, "alice/proj/adopt", dir.path())).unwrap();
    second
        .append_metrics(Some("train"), refs(&points(2, 0, 100)))
        .unwrap();
    second.finish(Status::Completed).unwrap();
    let r = second.close(Duration::from_secs(20));
    assert!(r.is_drained(), "{r}");
    assert_eq!(r.stats.sessions_replayed, 1);
    assert!(!session.exists());
    assert_eq!(rt::sessions(dir.path()).unwrap().len(), 0);
    let st = server.state();
    let c = census(&st.points("adopt", "train"));
    assert_eq!(c.len(), 200);
    let stored = st.points("adopt", "train");
    assert!(
        stored[..100].iter().all(|p| p["t"] == 1),
        "the dead run's batch first"
    );
    let applied: Vec<&support::Request> = st
        .requests
        .iter()
        .filter(|r| r.applied() && r.path.contains("/metrics/"))
        .collect();
    assert!(
        attempted.contains(applied[0].key().unwrap()),
        "replayed under its original key"
    );
    let node = st.nodes.iter().find(|n| n["name"] == "adopt").unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(st.statuses[&node], ["FAILED", "COMPLETED"]);
}

/// R7 / R10: a spool whose last record is torn (and one with a bit flipped in
/// the middle) is read up to the damage, truncated, counted, and sent.
#[test]
fn a_torn_or_corrupt_spool_is_truncated_counted_and_sent() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let desc = format!(
        "{{\"prefix\":\"alice/proj/torn\",\"dashUrl\":\"{}\"}}",
        server.url()
    );
    let (mut w, lock) =
        rt::SpoolWriter::create(dir.path(), rt::SessionId::new(), desc.as_bytes(), 1 << 20)
            .unwrap();
    let mut ends = Vec::new();
    for k in 0..10 {
        let a = w
            .append(
                rt::Kind::Metrics,
                Some("train"),
                refs(&points(0, k * 10, 10)),
            )
            .unwrap();
        ends.push(a.end.off);
    }
    w.sync().unwrap();
    let seg = w.dir().join(rt::segment_name(1));
    drop(lock);
    // Tear the last record in the middle, and flip a byte inside the 4th.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    f.set_len(ends[8] + 30).unwrap();
    use std::os::unix::fs::FileExt;
    let mut b = [0u8];
    f.read_exact_at(&mut b, ends[2] + 40).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], ends[2] + 40).unwrap();
    drop(f);

    let r = rt::sync(dir.path(), &sync_options(&server.url())).unwrap();
    assert!(r.is_drained(), "{r}");
    assert_eq!(r.stats.damage.torn_tails, 1);
    assert_eq!(r.stats.damage.corrupt_stretches, 1);
    assert!(
        r.stats.warnings.iter().any(|w| w.contains("damaged")),
        "{:?}",
        r.stats.warnings
    );
    let c = census(&server.state().points("torn", "train"));
    let want: HashSet<(u64, u64)> = (0..90)
        .filter(|i| !(30..40).contains(i))
        .map(|i| (0, i))
        .collect();
    assert_eq!(c.keys().copied().collect::<HashSet<_>>(), want);
}

fn kill_runs() -> usize {
    std::env::var("ML_DASH_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// R7: `kill -9` of a logging child at random times, then replay: every point
/// covered by a completed flush is on the server, none twice.
#[test]
fn kill_nine_then_replay_loses_nothing_flushed() {
    let server = TestServer::start();
    server.faults(|f| {
        f.random = Some(support::RandomFaults {
            p_5xx: 0.3,
            p_429: 0.0,
            p_reset: 0.1,
            p_late: 0.0,
            seed: 7,
        });
    });
    let mut rng = fastrand::Rng::with_seed(11);
    let mut stats = Vec::new();
    for run in 0..kill_runs() {
        let dir = tempfile::tempdir().unwrap();
        // `tests/children/sink_remote_spool.rs`: logs until killed.
        let mut child = Command::new(env!("CARGO_BIN_EXE_ml-dash-test-child"))
            .args(["sink_remote_spool", "writer", &server.url()])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill right after the child reported its n-th completed flush.
        let kill_after = rng.usize(1..60);
        let mut flushed = None;
        let mut seen = 0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while seen < kill_after {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(k) = l.strip_prefix("flushed ") {
                        flushed = Some(k.parse::<u64>().unwrap());
                        seen += 1;
                    }
                }
                _ => break,
            }
        }
        let t_kill = std::time::Instant::now();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let flushed = flushed.expect("the child flushed at least once");

        server.faults(|f| f.random = None);
        let r = rt::sync(dir.path(), &sync_options(&server.url())).unwrap();
        assert!(r.is_drained(), "run {run}: {r}");
        server.faults(|f| {
            f.random = Some(support::RandomFaults {
                p_5xx: 0.3,
                p_429: 0.0,
                p_reset: 0.1,
                p_late: 0.0,
                seed: 7 + run as u64,
            });
        });
        let st = server.state();
        let stored = st.points("kill", "train");
        let c = census(&stored);
        let need = (flushed + 1) * 20;
        assert!(
            (0..need).all(|i| c.get(&(0, i)) == Some(&1)),
            "run {run}: a flushed point is missing or doubled"
        );
        assert!(c.values().all(|&n| n == 1), "run {run}: a point twice");
        stats.push((
            flushed,
            c.len(),
            r.stats.damage.torn_tails,
            t_kill.elapsed().as_millis(),
        ));
        drop(st);
        // Next run: a fresh experiment content.
        let mut st = server.state();
        st.metrics.clear();
    }
    eprintln!("(flushed batch, points on server, torn tails) per run: {stats:?}");
}

/// A session left by a dead run of `alice/proj/<name>`: `batches` metric
/// batches of 1000 points (`i` from 0) and the status, in 256 KiB segments.
/// Returns the spool folder and the session folder.
fn dead_session(server: &TestServer, name: &str, batches: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let desc = format!(
        "{{\"prefix\":\"alice/proj/{name}\",\"dashUrl\":\"{}\"}}",
        server.url()
    );
    let (mut w, lock) =
        rt::SpoolWriter::create(dir.path(), rt::SessionId::new(), desc.as_bytes(), 256 << 10)
            .unwrap();
    for k in 0..batches {
        w.append(
            rt::Kind::Metrics,
            Some("train"),
            refs(&points(0, k * 1000, 1000)),
        )
        .unwrap();
    }
    w.append(rt::Kind::Status, None, [&b"COMPLETED"[..]])
        .unwrap();
    w.sync().unwrap();
    let session = w.dir().to_owned();
    drop(lock);
    (dir, session)
}

/// Marks the records of the session's first `n` segments sent, as the
/// sender does (cursor past them, segments deleted); returns their points.
fn ack_first_segments(session: &Path, n: usize) -> u64 {
    let segs = rt::segments(session).unwrap();
    let mut r = rt::SessionReader::new(session, rt::Pos::default());
    let mut rec = rt::Record::default();
    let mut sent = 0;
    while let Some(p) = r.next(&mut rec, None).unwrap() {
        if p.seg < segs[n] {
            sent += rec.len() as u64;
        }
    }
    let (mut ack, _) = rt::AckFile::open(session).unwrap();
    let mut c = rt::Cursor::default();
    c.pos.seg = segs[n];
    c.pos.off = rt::SEGMENT_HEADER_LEN;
    ack.store(c).unwrap();
    for &s in &segs[..n] {
        std::fs::remove_file(session.join(rt::segment_name(s))).unwrap();
    }
    sent
}

fn completed(server: &TestServer, name: &str) -> Vec<String> {
    let st = server.state();
    let node = st.nodes.iter().find(|n| n["name"] == name).unwrap()["id"]
        .as_u64()
        .unwrap();
    st.statuses[&node].clone()
}

/// Issue 10 item 7: a session whose `session.json` is gone, garbage or cut
/// short (the first case with its oldest segments already sent and deleted)
/// is rebuilt from the copy every segment holds: each of its 40 000 points
/// arrives exactly once, and the report is truthful.
#[test]
fn a_lost_or_damaged_session_json_is_rebuilt_from_the_segments() {
    let server = TestServer::start();
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 3] = [
        ("lost", |p| std::fs::remove_file(p).unwrap()),
        ("garbage", |p| {
            std::fs::write(p, b"\x00\xffnot json").unwrap()
        }),
        ("cut", |p| {
            let b = std::fs::read(p).unwrap();
            std::fs::write(p, &b[..b.len() / 2]).unwrap()
        }),
    ];
    for (name, tamper) in cases {
        let (dir, session) = dead_session(&server, name, 40);
        let sent = if name == "lost" {
            ack_first_segments(&session, 2)
        } else {
            0
        };
        tamper(&session.join("session.json"));
        let r = rt::sync(dir.path(), &sync_options(&server.url())).unwrap();
        assert!(r.is_drained() && r.exit_code() == 0, "{name}: {r}");
        assert_eq!(r.stats.pending_records, 0, "{name}: {r}");
        assert_eq!(r.stats.sessions_restored, 1, "{name}: {r}");
        assert_eq!(r.stats.sessions_replayed, 1, "{name}: {r}");
        assert!(r.stats.undeliverable.is_empty(), "{name}: {r}");
        assert!(
            r.stats.warnings.iter().any(|w| w.contains("rebuilt")),
            "{name}: {:?}",
            r.stats.warnings
        );
        assert!(!session.exists(), "{name}: sent and removed");
        let c = census(&server.state().points(name, "train"));
        let want: HashSet<(u64, u64)> = (sent..40_000).map(|i| (0, i)).collect();
        assert_eq!(c.keys().copied().collect::<HashSet<_>>(), want, "{name}");
        assert!(c.values().all(|&n| n == 1), "{name}: a point twice");
        assert_eq!(completed(&server, name), ["COMPLETED"], "{name}");
    }
}

/// Issue 10 item 7: a session with no usable descriptor anywhere
/// (`session.json` gone and every segment's copy damaged) is kept byte for
/// byte and reported: pending, undeliverable with the reason and the folder,
/// not drained, exit status 1. Doing what the reason says sends it all.
#[test]
fn a_session_that_cannot_be_rebuilt_is_kept_and_reported_undeliverable() {
    use std::os::unix::fs::FileExt;
    let server = TestServer::start();
    let (dir, session) = dead_session(&server, "stuck", 10);
    std::fs::remove_file(session.join("session.json")).unwrap();
    let segs = rt::segments(&session).unwrap();
    assert!(segs.len() > 1);
    for &n in &segs {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(session.join(rt::segment_name(n)))
            .unwrap();
        // The first byte of the copy (after the record's header and layout).
        f.write_all_at(b"#", rt::SEGMENT_HEADER_LEN + 30).unwrap();
    }
    let bytes = |n: &u32| std::fs::read(session.join(rt::segment_name(*n))).unwrap();
    let before: Vec<Vec<u8>> = segs.iter().map(bytes).collect();

    let r = rt::sync(dir.path(), &sync_options(&server.url())).unwrap();
    assert!(!r.is_drained(), "{r}");
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.stats.pending_records, 11, "{r}");
    assert!(!r.timed_out, "{r}");
    assert_eq!(r.stats.undeliverable.len(), 1, "{r}");
    let u = &r.stats.undeliverable[0];
    assert_eq!((&u.session_dir, u.records), (&session, 11));
    assert!(
        u.reason.contains("session.json") && u.reason.contains("\"prefix\""),
        "{}",
        u.reason
    );
    assert!(r.to_string().contains("cannot be sent"), "{r}");
    assert!(server.state().requests.is_empty(), "nothing sent");
    assert_eq!(segs.iter().map(bytes).collect::<Vec<_>>(), before);

    std::fs::write(
        session.join("session.json"),
        br#"{"prefix": "alice/proj/stuck"}"#,
    )
    .unwrap();
    let r = rt::sync(dir.path(), &sync_options(&server.url())).unwrap();
    assert!(r.is_drained() && r.exit_code() == 0, "{r}");
    assert!(r.stats.undeliverable.is_empty(), "{r}");
    let c = census(&server.state().points("stuck", "train"));
    assert_eq!(c.len(), 10_000);
    assert!(c.values().all(|&n| n == 1), "no point twice");
    assert_eq!(completed(&server, "stuck"), ["COMPLETED"]);
}

/// Issue 10 item 7, at open: the next run on the folder rebuilds a dead
/// run's session whose `session.json` is gone and sends it before its own.
#[test]
fn the_next_run_rebuilds_a_dead_session_without_session_json() {
    let server = TestServer::start();
    server.faults(|f| {
        f.reject.push(support::Reject {
            path: "/metrics/".into(),
            status: 503,
            times: u32::MAX,
        })
    });
    let dir = tempfile::tempdir().unwrap();
    let url = server.url();
    let mut first = rt::RemoteSink::open(config(&url, "alice/proj/relost", dir.path())).unwrap();
    for k in 0..5 {
        first
            .append_metrics(Some("train"), refs(&points(1, k * 1000, 1000)))
            .unwrap();
    }
    first.finish(Status::Failed).unwrap();
    let session = first.session_dir().to_owned();
    let r = first.close(Duration::from_millis(100));
    assert_eq!(r.stats.pending_records, 6, "{r}");
    support::wait_unlocked(&session);
    std::fs::remove_file(session.join("session.json")).unwrap();

    server.faults(|f| f.reject.clear());
    let mut second = rt::RemoteSink::open(config(&url, "alice/proj/relost", dir.path())).unwrap();
    second
        .append_metrics(Some("train"), refs(&points(2, 0, 1000)))
        .unwrap();
    second.finish(Status::Completed).unwrap();
    let r = second.close(Duration::from_secs(20));
    assert!(r.is_drained(), "{r}");
    assert_eq!(
        (r.stats.sessions_restored, r.stats.sessions_replayed),
        (1, 1),
        "{r}"
    );
    assert!(!session.exists());
    let stored = server.state().points("relost", "train");
    let c = census(&stored);
    assert_eq!(c.len(), 6000);
    assert!(c.values().all(|&n| n == 1), "no point twice");
    assert!(
        stored[..5000].iter().all(|p| p["t"] == 1),
        "the dead run first"
    );
    assert_eq!(completed(&server, "relost"), ["FAILED", "COMPLETED"]);
}
