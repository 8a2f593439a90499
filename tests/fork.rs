//! `fork()` in a process with an open run, as Python DataLoader workers fork:
//! threads log at the moment of each of 200 forks. Every child gets
//! `Error::Forked` from every call on the inherited run (at once, however many
//! calls), drops it silently (its stderr is a pipe that must stay empty) and
//! exits; some open a run of their own and complete it. The parent's run is
//! complete: every point its threads logged is stored, and no child wrote to it.
//!
//! `harness = false`: a child runs only the code below (no test-harness
//! threads to inherit) and ends with `_exit`. A child that has not exited by
//! a generous deadline is killed and reported as hung: a deadline on the
//! wait, not a measure of speed. Unix only.

#[cfg(unix)]
fn main() {
    unix::main();
}

#[cfg(not(unix))]
fn main() {}

#[cfg(unix)]
mod unix {
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::panic::AssertUnwindSafe;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use ml_dash::{BufferConfig, Error, Experiment, Metrics, Run, point, read};
    use serde_json::json;

    const PREFIX: &str = "fork/parent/run";
    const FORKS: usize = 200;
    /// Every how many children one opens a run of its own.
    const OWN_RUN_EVERY: usize = 25;
    /// Points a child's own run logs.
    const OWN_POINTS: i64 = 1000;
    /// Log calls per child on the inherited run: many times what its rings
    /// and budget hold, so a call that took the ring would end up waiting
    /// for the parent's collector.
    const CHILD_CALLS: usize = 50_000;
    /// The parent's producers flush every so many points (so some wait in a
    /// flush at a fork, and the read-back at the end stays short).
    const FLUSH_EVERY: i64 = 256;
    /// A child still running after this is hung.
    const DEADLINE: Duration = Duration::from_secs(60);

    fn config() -> BufferConfig {
        let mut c = BufferConfig::default();
        c.quiet = true;
        c.ring_capacity = 16 << 10;
        c.memory_budget = 256 << 10; // the parent's producers wait for room, too
        c.max_record_bytes = 4 << 10;
        c.file_upload_workers = 1;
        c
    }

    pub(super) fn main() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let mut run = Some(
            Experiment::new(PREFIX)
                .dash_root(root)
                .buffer_config(config())
                .run()
                .unwrap(),
        );
        let parent = run.as_ref().unwrap();
        let main_stream = parent.metrics("main").unwrap();
        let train = parent.metrics("train").unwrap();
        let (logger, track) = (parent.logger(), parent.tracks("robot/pose").unwrap());
        let stop = AtomicBool::new(false);
        let mut failures = Vec::new();

        let (counts, logs_and_rows) = std::thread::scope(|s| {
            let train: Vec<_> = (0..3i64)
                .map(|t| {
                    let (m, m_flush) = (train.clone(), logger.clone());
                    let stop = &stop;
                    s.spawn(move || {
                        let mut i = 0i64;
                        while !stop.load(Ordering::Relaxed) {
                            m.log(&point! {"t" => t, "i" => i}).unwrap();
                            i += 1;
                            if i % FLUSH_EVERY == 0 {
                                m_flush.flush().unwrap(); // a thread waiting in flush at a fork
                            }
                        }
                        i
                    })
                })
                .collect();
            let stop = &stop;
            let other = s.spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    logger.info(&format!("line {i}")).unwrap();
                    track.append_at(i as f64, &point! {"i" => i}).unwrap();
                    i += 1;
                    if i % FLUSH_EVERY == 0 {
                        logger.flush().unwrap();
                    }
                }
                i
            });

            for k in 0..FORKS {
                // This thread's own ring is the child's hot-path cache.
                main_stream.log(&point! {"k" => k as i64}).unwrap();
                if let Err(e) = fork_one(&mut run, &main_stream, k, root) {
                    failures.push(format!("child {k}: {e}"));
                }
            }
            stop.store(true, Ordering::Relaxed);
            let counts: Vec<i64> = train.into_iter().map(|h| h.join().unwrap()).collect();
            (counts, other.join().unwrap())
        });

        let exp = read::document(root, PREFIX, "experiment.json")
            .unwrap()
            .unwrap();
        assert_eq!(exp["status"], "RUNNING", "a child closed the parent's run");
        let report = run.take().unwrap().complete().unwrap();
        if !failures.is_empty() {
            panic!(
                "{} of {FORKS} children failed:\n{}",
                failures.len(),
                failures.join("\n")
            );
        }
        check_parent(root, &counts, logs_and_rows);
        let total = counts.iter().sum::<i64>() + FORKS as i64;
        assert_eq!(report.stored.metrics, total as u64);
        assert_eq!(report.dropped, 0);
        println!(
            "fork: {FORKS} children ok; the parent stored {total} points, \
             {logs_and_rows} logs and track rows"
        );
    }

    /// Forks one child and waits for it; `Err` says what went wrong.
    fn fork_one(
        run: &mut Option<Run>,
        main: &Metrics,
        k: usize,
        root: &Path,
    ) -> Result<(), String> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 succeeded: both are open descriptors, each owned once.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child runs only `in_child`, which ends in `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
        if pid == 0 {
            in_child(run.take().unwrap(), main, k, root, w.as_raw_fd());
        }
        drop(w);
        let (status, out) = wait_child(pid, File::from(r))?;
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 || !out.is_empty() {
            return Err(format!("exit status {status:#x}, stderr: {out:?}"));
        }
        if k.is_multiple_of(OWN_RUN_EVERY) {
            check_child_run(root, k)?;
        }
        Ok(())
    }

    /// The child: its stderr becomes the pipe, so any output (a warning, a
    /// panic message) reaches the parent.
    fn in_child(run: Run, main: &Metrics, k: usize, root: &Path, w: i32) -> ! {
        // SAFETY: `w` is the pipe's open write end; 2 is stderr.
        unsafe { libc::dup2(w, 2) };
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| child(run, main, k, root)));
        let code = match r {
            Ok(Ok(())) => 0,
            Ok(Err(msg)) => {
                // SAFETY: writes the bytes of `msg` to stderr.
                unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
                1
            }
            Err(_) => 2, // the panic hook printed the message
        };
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) }
    }

    fn forked<T>(what: &str, r: ml_dash::Result<T>) -> Result<(), String> {
        match r {
            Err(Error::Forked) => Ok(()),
            Err(e) => Err(format!("{what}: expected Error::Forked, got {e}")),
            Ok(_) => Err(format!("{what}: expected Error::Forked, got Ok")),
        }
    }

    fn child(run: Run, main: &Metrics, k: usize, root: &Path) -> Result<(), String> {
        for i in 0..CHILD_CALLS {
            forked("log", main.log(&point! {"k" => i as i64}))?;
        }
        forked("flush", run.flush())?;
        forked("logger flush", run.logger().flush())?;
        forked("log line", run.log("from the child"))?;
        forked("new stream", run.metrics(&format!("child{k}")))?;
        forked("track", run.tracks("child/pose"))?;
        forked("unnamed", run.unnamed_metrics().log(&point! {"x" => 1}))?;
        forked("params", run.params().set(json!({ "child": k })))?;
        forked("file", run.files("child").save_text("a.txt", "x"))?;
        forked("file list", run.files("child").list())?;
        forked("file delete", run.files("child").delete("a.txt"))?;
        if k.is_multiple_of(2) {
            drop(run); // silent: stderr stays empty
        } else {
            forked("complete", run.complete())?;
        }
        if k.is_multiple_of(OWN_RUN_EVERY) {
            own_run(root, k).map_err(|e| format!("own run: {e}"))?;
        }
        Ok(())
    }

    fn child_prefix(k: usize) -> String {
        format!("fork/child/c{k}")
    }

    /// A run the child opens itself: it works as in any process.
    fn own_run(root: &Path, k: usize) -> ml_dash::Result<()> {
        let run = Experiment::new(child_prefix(k))
            .dash_root(root)
            .buffer_config(config())
            .run()?;
        let m = run.metrics("train")?;
        // The child's first timestamp is read from the system clock (the
        // parent's clock word, frozen at the fork, is not used).
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        m.log(&point! {"t0" => t0})?;
        for i in 0..OWN_POINTS {
            m.log(&point! {"i" => i})?;
        }
        run.flush()?;
        run.log("done")?;
        let report = run.complete()?;
        assert_eq!(report.stored.metrics, OWN_POINTS as u64 + 1);
        Ok(())
    }

    fn check_child_run(root: &Path, k: usize) -> Result<(), String> {
        let prefix = child_prefix(k);
        let lines = read::metrics(root, &prefix, Some("train")).map_err(|e| e.to_string())?;
        let (first, rest) = lines.split_first().ok_or("its own run stored nothing")?;
        let (t0, ts) = (first["data"]["t0"].as_f64(), first["data"]["_ts"].as_f64());
        if !matches!((t0, ts), (Some(t0), Some(ts)) if ts >= t0 - 1e-6) {
            return Err(format!(
                "its first point has _ts {ts:?} before its t0 {t0:?}"
            ));
        }
        let is: Vec<i64> = rest
            .iter()
            .map(|l| l["data"]["i"].as_i64().unwrap())
            .collect();
        if is != (0..OWN_POINTS).collect::<Vec<_>>() {
            return Err(format!(
                "its own run stored {} points, not 0..{OWN_POINTS}",
                is.len()
            ));
        }
        let exp = read::document(root, &prefix, "experiment.json");
        match exp.map_err(|e| e.to_string())? {
            Some(e) if e["status"] == "COMPLETED" => Ok(()),
            e => Err(format!("its own run's experiment.json: {e:?}")),
        }
    }

    /// Reads the pipe to its end (the child's exit closes it), then reaps the
    /// child; kills it at the deadline.
    fn wait_child(pid: libc::pid_t, mut r: File) -> Result<(libc::c_int, String), String> {
        let until = Instant::now() + DEADLINE;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now()).as_millis() as libc::c_int;
            let mut p = libc::pollfd {
                fd: r.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, left) };
            if n == 0 {
                // SAFETY: `pid` is our child, not yet reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid);
                return Err(format!(
                    "hung: still running after {DEADLINE:?}; stderr: {:?}",
                    String::from_utf8_lossy(&out)
                ));
            }
            if n < 0 {
                continue; // EINTR
            }
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("reading its stderr: {e}")),
            }
        }
        Ok((reap(pid), String::from_utf8_lossy(&out).into_owned()))
    }

    fn reap(pid: libc::pid_t) -> libc::c_int {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {}
        status
    }

    #[derive(serde::Deserialize)]
    struct Point<D> {
        data: D,
    }
    #[derive(serde::Deserialize)]
    struct Train {
        t: usize,
        i: i64,
    }
    #[derive(serde::Deserialize)]
    struct Main {
        k: i64,
    }
    #[derive(serde::Deserialize)]
    struct LogLine {
        message: String,
    }
    #[derive(serde::Deserialize)]
    struct Row {
        i: i64,
    }

    /// The lines of a `.jsonl` file of the parent's run, as `T`. (Typed serde,
    /// not `ml_dash::read`'s JSON values: this many lines take seconds that
    /// way unoptimised; these hold no non-finite numbers.)
    fn lines<T: serde::de::DeserializeOwned>(root: &Path, rel: &str) -> Vec<T> {
        let text = std::fs::read_to_string(root.join(PREFIX).join(rel)).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Everything the parent's threads logged is stored, in order per thread.
    fn check_parent(root: &Path, counts: &[i64], logs_and_rows: i64) {
        let mut next = vec![0i64; counts.len()];
        for Point {
            data: Train { t, i },
        } in lines(root, "metrics/train/data.jsonl")
        {
            assert_eq!(i, next[t], "thread {t}: point {i} out of order");
            next[t] += 1;
        }
        assert_eq!(next, counts, "points stored per thread");
        let main = lines::<Point<Main>>(root, "metrics/main/data.jsonl");
        let ks: Vec<i64> = main.iter().map(|p| p.data.k).collect();
        assert_eq!(ks, (0..FORKS as i64).collect::<Vec<_>>());
        let logs = lines::<LogLine>(root, "logs/logs.jsonl");
        let rows = lines::<Row>(root, "tracks/robot_pose/data.jsonl");
        assert_eq!(logs.len() as i64, logs_and_rows);
        assert_eq!(rows.len() as i64, logs_and_rows);
        for (i, (log, row)) in logs.iter().zip(&rows).enumerate() {
            assert_eq!(log.message, format!("line {i}"));
            assert_eq!(row.i, i as i64);
        }
    }
}
