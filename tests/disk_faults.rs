//! R9, disk faults: a full disk, a folder that turns read-only, `EIO` on fsync,
//! for the local store and for the remote spool (hybrid mode spools to the same
//! disk first). Each test checks: one clear warning for the failure episode,
//! logging calls that all return (counted; no timing assertions), exact
//! counters (logged = stored + dropped + lost_to_store + unwritten), that
//! what was written before the fault and after the recovery is in the store,
//! and no panic.
//!
//! What is real and what is injected:
//! - **full disk: real.** A 1-2 MiB tmpfs mounted for the test, filled up by a
//!   filler file (ENOSPC from the kernel); recovery = deleting the filler.
//! - **read-only folder: real.** A read-only bind mount laid over the
//!   tmpfs (`mount --bind D D; mount -o remount,bind,ro D`): every path under
//!   it is read-only (EROFS), recovery = unmounting the bind. (A plain
//!   `remount,ro` of the tmpfs is refused while the engine holds files open
//!   for writing; files opened before the bind keep writing through the
//!   mount below it, which is why the store fails on its metadata files and
//!   must cut its data file back: tested here.)
//! - **EIO on fsync: injected.** No filesystem here fails an fsync on demand
//!   (device-mapper's error/flakey targets are not available), so
//!   `ml_dash::__fault::fail_fsyncs` makes the engine's own fsync calls (local
//!   store with `sync_on_flush`, spool segments) return EIO, before the real
//!   fsync; everything else is real.
//!
//! Mounting needs CAP_SYS_ADMIN (root in CI); without it the tmpfs tests print
//! `skipped: cannot mount tmpfs (needs CAP_SYS_ADMIN)` and pass. Each scenario
//! runs in a child process (this binary, filtered to the one test) so the test
//! can read its stderr; the child unmounts in a drop guard, also when it fails.

mod support;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ml_dash::__remote_testing as rt;
use ml_dash::{BufferConfig, Error, Experiment, Run, point, read};
use serde_json::{Value as Json, json};
use support::TestServer;

const CHILD: &str = "ML_DASH_DISK_FAULTS_CHILD";
const SKIPPED: &str = "skipped: cannot mount tmpfs (needs CAP_SYS_ADMIN)";

/// Runs `scenario` in a child process and returns its stdout and stderr (in
/// the parent; `None` in the child, or when the child skipped).
fn in_child(name: &str, scenario: impl FnOnce()) -> Option<(String, String)> {
    if std::env::var_os(CHILD).is_some() {
        scenario();
        return None;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "the scenario failed:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
    if stdout.contains(SKIPPED) {
        println!("{SKIPPED}");
        return None;
    }
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    Some((stdout, stderr))
}

/// Lines of `text` that contain `needle`.
fn lines_with(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

/// Each `(needle, n)`: exactly `n` lines of the child's stderr contain `needle`.
fn assert_lines(stderr: &str, want: &[(&str, usize)]) {
    for &(needle, n) in want {
        assert_eq!(lines_with(stderr, needle), n, "{needle:?} in:\n{stderr}");
    }
}

/// A tmpfs mounted on a fresh folder, unmounted on drop (a bind mount laid
/// over it first).
struct Tmpfs {
    dir: tempfile::TempDir,
    bound: bool,
}

impl Tmpfs {
    /// Mounts one of `size` (`"1m"`), or prints the skip line and returns `None`.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // CI sets this where it has checked that mounting works, so a
            // skip there is a failure, not a silent pass.
            assert!(
                std::env::var_os("ML_DASH_REQUIRE_MOUNTS").is_none(),
                "ML_DASH_REQUIRE_MOUNTS is set but mounting a tmpfs failed"
            );
            println!("{SKIPPED}");
            return None;
        }
        Some(Tmpfs { dir, bound: false })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Lays a read-only bind mount over the folder: every path under it is EROFS.
    fn read_only(&mut self) {
        let dir = self.path().to_str().unwrap();
        mount(&["--bind", dir], self.path());
        self.bound = true;
        mount(&["-o", "remount,bind,ro"], self.path());
    }

    /// Removes the read-only bind mount: writable again. Detached lazily
    /// (`umount -l`): a file the engine opened for reading through the bind
    /// (the sender reading the spool) would make a plain unmount fail with
    /// EBUSY; new opens go to the writable tmpfs at once either way.
    fn writable(&mut self) {
        assert!(self.bound);
        let ok = Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .status()
            .unwrap();
        assert!(ok.success());
        self.bound = false;
    }
}

fn mount(args: &[&str], dir: &Path) {
    let st = Command::new("mount").args(args).arg(dir).status().unwrap();
    assert!(st.success(), "mount {args:?} {}", dir.display());
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmount = |times: usize| {
            for _ in 0..times {
                let ok = Command::new("umount")
                    .arg(self.dir.path())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    // Busy (a file still open): detach it lazily instead.
                    let _ = Command::new("umount")
                        .arg("-l")
                        .arg(self.dir.path())
                        .status();
                }
            }
        };
        unmount(if self.bound { 2 } else { 1 });
    }
}

/// Fills the file system of `dir` with a filler file until it is full.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    for size in [64 * 1024, 4096, 1] {
        while f.write_all(&chunk[..size]).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

fn cfg() -> BufferConfig {
    let mut c = BufferConfig::default();
    c.quiet = false; // the test reads the warnings
    c.memory_budget = 256 * 1024; // the collector holds up to 128 KiB for a failing store
    c.ring_capacity = 16 * 1024;
    c.max_record_bytes = 16 * 1024; // at most ring_capacity or half the budget
    c.metric_batch_size = 100;
    c.flush_interval = std::time::Duration::from_secs(3600);
    c
}

fn open(root: &Path, prefix: &str, cfg: BufferConfig) -> Run {
    Experiment::new(prefix)
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap()
}

/// Logs points `i` in `from..to` to stream `m`; every call must return Ok.
fn log_range(run: &Run, from: u64, to: u64) -> u64 {
    let m = run.metrics("m").unwrap();
    let mut calls = 0;
    for i in from..to {
        m.log(&point! {"i" => i}).unwrap();
        calls += 1;
    }
    calls
}

/// The `i` of every stored point of stream `m`, after checking that every line
/// of the data file is whole JSON (no torn line, no duplicate index).
fn stored_is(root: &Path, prefix: &str) -> Vec<u64> {
    let raw = fs::read_to_string(root.join(prefix).join("metrics/m/data.jsonl")).unwrap();
    let mut indices = Vec::new();
    for line in raw.lines() {
        let v: Json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        indices.push(v["index"].as_u64().unwrap());
    }
    assert_eq!(
        indices,
        (0..indices.len() as u64).collect::<Vec<_>>(),
        "indices contiguous from 0: no torn or repeated batch"
    );
    let points = read::metrics(root, prefix, Some("m")).unwrap();
    assert_eq!(points.len(), indices.len());
    points
        .iter()
        .map(|p| p["data"]["i"].as_u64().unwrap())
        .collect()
}

/// `is` is increasing and holds every value of each range.
fn assert_kept(is: &[u64], ranges: &[std::ops::Range<u64>]) {
    assert!(is.windows(2).all(|w| w[0] < w[1]), "in order, once each");
    for r in ranges {
        let n = is.iter().filter(|i| r.contains(i)).count() as u64;
        assert_eq!(n, r.end - r.start, "all of {r:?} stored");
    }
}

/// The metric counts in `Error::Sink`'s "N log(s), M metric(s), K track(s)
/// not written, and N' log(s), M' metric(s), K' track(s) dropped earlier ...":
/// (M, M').
fn error_metric_counts(e: &Error) -> (u64, u64) {
    let text = e.to_string();
    let mut counts = text.match_indices(" metric(s)").map(|(at, _)| {
        let digits: String = text[..at]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.chars().rev().collect::<String>().parse().unwrap()
    });
    let mut next = || counts.next().unwrap_or_else(|| panic!("{text}"));
    (next(), next())
}

#[test]
fn full_disk_local_store() {
    let Some((_, stderr)) = in_child("full_disk_local_store", || {
        let Some(fs) = Tmpfs::mount("1m") else { return };
        let prefix = "o/p/full";
        let run = open(fs.path(), prefix, cfg());
        let mut logged = log_range(&run, 0, 500);
        run.flush().unwrap();
        let filler = fill(fs.path());
        // 50 000 points (about 5 MB of JSON) into a full disk: every call
        // returns, the collector holds 128 KiB of them and drops the rest.
        logged += log_range(&run, 500, 50_500);
        let e = run.flush().unwrap_err();
        assert!(e.to_string().contains("No space left on device"), "{e}");
        logged += log_range(&run, 50_500, 51_000);
        assert!(run.flush().is_err(), "still full");
        fs::remove_file(filler).unwrap();
        run.flush().unwrap();
        logged += log_range(&run, 100_000, 100_500);
        run.flush().unwrap();
        let report = run.complete().unwrap();
        let is = stored_is(fs.path(), prefix);
        assert_eq!(is.len() as u64, report.stored.metrics);
        let lost = report.lost_to_store;
        assert!(lost.metrics > 0, "a 128 KiB hold cannot keep 5 MB");
        assert_eq!((lost.logs, lost.tracks, report.dropped), (0, 0, 0));
        assert_eq!(logged, 51_500);
        assert_eq!(
            logged,
            report.stored.metrics + lost.metrics,
            "counters exact"
        );
        assert_kept(&is, &[0..500, 100_000..100_500]);
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    }) else {
        return;
    };
    assert_lines(
        &stderr,
        &[
            ("could not write to", 1),
            ("dropped and counted", 1),
            ("the store is writable again", 1),
            ("were lost because", 1),
            ("warning", 3),
        ],
    );
}

#[test]
fn read_only_folder_local_store() {
    let Some((_, stderr)) = in_child("read_only_folder_local_store", || {
        let Some(mut fs) = Tmpfs::mount("4m") else {
            return;
        };
        let prefix = "o/p/ro";
        let run = open(fs.path(), prefix, cfg());
        run.log("before").unwrap();
        let mut logged = log_range(&run, 0, 300);
        run.flush().unwrap();
        fs.read_only();
        logged += log_range(&run, 300, 600);
        let e = run.flush().unwrap_err();
        assert!(e.to_string().contains("Read-only file system"), "{e}");
        logged += log_range(&run, 600, 900);
        assert!(run.flush().is_err());
        fs.writable();
        run.flush().unwrap();
        logged += log_range(&run, 900, 1200);
        run.log("after").unwrap();
        let report = run.complete().unwrap();
        let is = stored_is(fs.path(), prefix);
        assert_eq!((logged, report.stored.metrics), (1200, 1200));
        assert_eq!(report.lost_to_store.total(), 0, "300 points fit the hold");
        assert_eq!(is, (0..1200).collect::<Vec<u64>>());
        let logs = read::logs(fs.path(), prefix).unwrap();
        let messages: Vec<&str> = logs.iter().filter_map(|l| l["message"].as_str()).collect();
        assert_eq!(messages, ["before", "after"]);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    }) else {
        return;
    };
    assert_lines(
        &stderr,
        &[
            ("could not write to", 1),
            ("Read-only file system", 1),
            ("the store is writable again", 1),
            ("dropped and counted", 0),
            ("warning", 1),
        ],
    );
}

#[test]
fn read_only_until_close_local_store() {
    let Some((stdout, stderr)) = in_child("read_only_until_close_local_store", || {
        let Some(mut fs) = Tmpfs::mount("4m") else {
            return;
        };
        let prefix = "o/p/ro-close";
        let run = open(fs.path(), prefix, cfg());
        let mut logged = log_range(&run, 0, 300);
        run.flush().unwrap();
        fs.read_only();
        logged += log_range(&run, 300, 20_300);
        assert!(run.flush().is_err());
        // Close returns (no hang) and says what could not be written.
        let e = run.complete().unwrap_err();
        assert!(matches!(e, Error::Sink(_)), "{e}");
        let (unwritten, lost) = error_metric_counts(&e);
        fs.writable();
        let is = stored_is(fs.path(), prefix);
        assert_eq!(is, (0..300).collect::<Vec<u64>>());
        assert!(unwritten > 0);
        // lost_to_store is in the error and in the close report line.
        println!(
            "LOGGED {logged} STORED {} UNWRITTEN {unwritten} LOST {lost}",
            is.len()
        );
    }) else {
        return;
    };
    assert_lines(
        &stderr,
        &[
            ("could not write to", 1),
            ("could not be written to", 1),
            ("dropped and counted", 1),
            ("the store is writable again", 0),
        ],
    );
    let lost: u64 = stderr
        .lines()
        .find(|l| l.contains("were lost because"))
        .and_then(|l| l.split(" log(s), ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no lost line in {stderr}"));
    assert!(lost > 0);
    // The child's numbers: logged = stored + unwritten + lost (no lossy policy).
    let line = (stdout.lines())
        .find_map(|l| l.split_once("LOGGED ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no numbers in {stdout}"));
    let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert_eq!(n[3], lost, "the error and the close report agree: {line}");
    assert_eq!(
        n[0],
        n[1] + n[2] + lost,
        "logged = stored + unwritten + lost: {line}"
    );
}

#[test]
fn fsync_eio_local_store() {
    let Some((_, stderr)) = in_child("fsync_eio_local_store", || {
        let root = tempfile::tempdir().unwrap();
        let prefix = "o/p/eio";
        let mut c = cfg();
        c.sync_on_flush = true;
        let run = open(root.path(), prefix, c);
        let mut logged = log_range(&run, 0, 300);
        run.flush().unwrap();
        ml_dash::__fault::fail_fsyncs(u64::MAX);
        logged += log_range(&run, 300, 600);
        let e = run.flush().unwrap_err();
        assert!(e.to_string().contains("Input/output error"), "{e}");
        logged += log_range(&run, 600, 900);
        assert!(run.flush().is_err());
        ml_dash::__fault::fail_fsyncs(0);
        run.flush().unwrap();
        logged += log_range(&run, 900, 1200);
        let report = run.complete().unwrap();
        let is = stored_is(root.path(), prefix);
        assert_eq!((logged, report.stored.metrics), (1200, 1200));
        assert_eq!(report.lost_to_store.total(), 0);
        assert_eq!(is, (0..1200).collect::<Vec<u64>>());
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    }) else {
        return;
    };
    assert_lines(
        &stderr,
        &[
            ("could not write to", 1),
            ("Input/output error", 1),
            ("the store is writable again", 1),
            ("warning", 1),
        ],
    );
}

#[test]
fn full_disk_hybrid_spool() {
    let Some((_, stderr)) = in_child("full_disk_hybrid_spool", || {
        let Some(fs) = Tmpfs::mount("2m") else { return };
        let server = TestServer::start();
        let prefix = "o/p/hybrid";
        let run = Experiment::new(prefix)
            .dash_root(fs.path())
            .dash_url(server.url())
            .token("test-token")
            .buffer_config(cfg())
            .run()
            .unwrap();
        let mut logged = log_range(&run, 0, 500);
        run.flush().unwrap();
        let filler = fill(fs.path());
        logged += log_range(&run, 500, 30_500);
        let e = run.flush().unwrap_err();
        assert!(e.to_string().contains("No space left on device"), "{e}");
        fs::remove_file(filler).unwrap();
        run.flush().unwrap();
        logged += log_range(&run, 100_000, 100_500);
        let report = run.complete().unwrap();
        let is = stored_is(fs.path(), prefix);
        let lost = report.lost_to_store.metrics;
        assert!(lost > 0);
        assert_eq!(logged, report.stored.metrics + lost, "counters exact");
        assert_eq!(is.len() as u64, report.stored.metrics);
        assert_kept(&is, &[0..500, 100_000..100_500]);
        // The spool replayed everything it took, each point once.
        let st = server.state();
        let mut sent: Vec<u64> = (st.points("hybrid", "m").iter())
            .map(|p| p["i"].as_u64().unwrap())
            .collect();
        sent.sort_unstable();
        assert_eq!(sent, is, "the server holds what the store holds, once each");
    }) else {
        return;
    };
    assert_lines(
        &stderr,
        &[
            ("could not write to", 1),
            ("dropped and counted", 1),
            ("the store is writable again", 1),
        ],
    );
}

#[test]
fn spool_stays_readable_through_a_full_disk_and_fsync_eio() {
    // Stderr is not read: the spool itself prints nothing.
    let _ = in_child(
        "spool_stays_readable_through_a_full_disk_and_fsync_eio",
        || {
            let Some(fs) = Tmpfs::mount("1m") else { return };
            let spool = fs.path().join("spool");
            let (mut w, _lock) =
                rt::SpoolWriter::create(&spool, rt::SessionId::new(), b"{}", 1 << 30).unwrap();
            let item = |k: u64| format!("{{\"k\":{k},\"pad\":\"{}\"}}", "x".repeat(3000));
            let mut ok = Vec::new();
            let mut k = 0;
            let append = |w: &mut rt::SpoolWriter, k: u64| {
                let it = item(k);
                w.append(rt::Kind::Metrics, Some("m"), [it.as_bytes()])
                    .map(|a| a.seq)
            };
            for _ in 0..10 {
                ok.push((append(&mut w, k).unwrap(), k));
                k += 1;
            }
            w.sync().unwrap();
            let filler = fill(fs.path());
            // Appends into a full disk fail (some after a partial write, cut back).
            let mut errors = 0;
            for _ in 0..20 {
                match append(&mut w, k) {
                    Ok(seq) => ok.push((seq, k)),
                    Err(e) => {
                        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                        errors += 1;
                    }
                }
                k += 1;
            }
            assert!(errors > 0);
            fs::remove_file(filler).unwrap();
            ml_dash::__fault::fail_fsyncs(1);
            let e = w.sync().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EIO));
            for _ in 0..10 {
                ok.push((append(&mut w, k).unwrap(), k));
                k += 1;
            }
            w.sync().unwrap();
            // Everything appended OK reads back, in order, and nothing is damaged.
            let mut r = rt::SessionReader::new(w.dir(), rt::Pos::default());
            let mut rec = rt::Record::default();
            let mut got = Vec::new();
            while r.next(&mut rec, None).unwrap().is_some() {
                let v: Json = serde_json::from_slice(rec.item(0)).unwrap();
                got.push((rec.seq(), v["k"].as_u64().unwrap()));
            }
            assert_eq!(got, ok);
            assert!(r.damage().is_clean(), "{:?}", r.damage());
        },
    );
}

/// Hybrid with the folder read-only: the spool's open segment still takes
/// batches (opened before the bind), the local store refuses them, so each
/// retry must spool only what the spool does not have yet.
#[test]
fn read_only_folder_hybrid() {
    let Some((_, stderr)) = in_child("read_only_folder_hybrid", || {
        let Some(mut fs) = Tmpfs::mount("4m") else {
            return;
        };
        let server = TestServer::start();
        let prefix = "o/p/hybrid-ro";
        let run = Experiment::new(prefix)
            .dash_root(fs.path())
            .dash_url(server.url())
            .token("test-token")
            .buffer_config(cfg())
            .run()
            .unwrap();
        let mut logged = log_range(&run, 0, 300);
        run.flush().unwrap();
        fs.read_only();
        // A track row at t = 5 is spooled with the first failed batch; later
        // appends at t = 5 merge into the held row, which is spooled again.
        let pose = run.tracks("pose").unwrap();
        for round in 0..3 {
            logged += log_range(&run, 300 + round * 300, 600 + round * 300);
            let field = ["a", "b", "c"][round as usize];
            pose.append_at(5.0, &point! {field => round}).unwrap();
            // The first set is spooled before the local store refuses it;
            // the later ones wait behind it, in call order.
            run.params().set(json!({"round": round})).unwrap();
            assert!(run.flush().is_err(), "read-only");
        }
        fs.writable();
        run.flush().unwrap();
        logged += log_range(&run, 1200, 1500);
        let report = run.complete().unwrap();
        let rows = server.state().tracks.values().next().cloned().unwrap();
        let last = rows.last().unwrap();
        assert_eq!(
            (&last["timestamp"], &last["a"], &last["b"], &last["c"]),
            (&json!(5.0), &json!(0), &json!(1), &json!(2)),
            "the server's last row at t = 5 has every merged field: {rows:?}"
        );
        assert_eq!((logged, report.stored.metrics), (1500, 1500));
        assert_eq!(report.lost_to_store.total(), 0);
        let is = stored_is(fs.path(), prefix);
        assert_eq!(is, (0..1500).collect::<Vec<u64>>());
        let st = server.state();
        let sent: Vec<u64> = (st.points("hybrid-ro", "m").iter())
            .map(|p| p["i"].as_u64().unwrap())
            .collect();
        assert_eq!(sent, is, "the server got every point once, in order");
        let sets: Vec<Json> = (st.requests.iter())
            .filter(|r| r.path.ends_with("/parameters"))
            .map(|r| r.json()["data"].clone())
            .collect();
        assert_eq!(
            sets,
            [
                json!({"round": 0}),
                json!({"round": 1}),
                json!({"round": 2})
            ],
            "each parameter set once, in call order"
        );
        let doc = read::document(fs.path(), prefix, "parameters.json")
            .unwrap()
            .unwrap();
        assert_eq!(
            (&doc["version"], &doc["data"]),
            (&json!(3), &json!({"round": 2}))
        );
    }) else {
        return;
    };
    assert_lines(
        &stderr,
        &[
            ("could not write to", 1),
            ("Read-only file system", 1),
            ("the store is writable again", 1),
        ],
    );
}
