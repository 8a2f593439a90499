//! Many processes (issue 16), with real child processes: the helper program
//! `ml-dash-test-child` (its cases in `tests/children/ranks.rs`) started
//! with torchrun's variables. The parent and a child
//! talk over the child's stdin and stdout (one line per step), so nothing
//! here waits on time: a child that hangs is killed after `HANG` and the
//! test fails (a deadline, not a measure).
//!
//! - each rank mode with 4 processes (`rank0_*`, `per_rank_*`, `shared_*`),
//!   and a mismatched configuration (`mismatched_*`);
//! - 8 writer processes appending to one experiment (`many_writers_*`; the
//!   full 8 x 100 000 is `#[ignore]`d: `cargo test --release --test ranks --
//!   --ignored many_writers_full_size`);
//! - a forked worker joining its rank's shared run (`forked_worker_*`);
//! - SIGTERM during heavy logging, with the default action and with the
//!   program's own handler (`sigterm_*`); kill -9 and reopen (`kill9_*`);
//! - measurements, `#[ignore]`d (numbers in docs/SCALE.md): the cost of an
//!   inert handle's call (`noop_cost`) and a loopback simulation of many
//!   ranks against the test server (`scale_simulation`).

#[path = "children/ranks_common.rs"]
mod ranks_common;
mod sdk_python;
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child as Proc, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ml_dash::{Experiment, RankMode, point, read};
use ranks_common::{POINTS, PREFIX, env_u64, quiet};
use serde_json::{Value as Json, json};
use support::TestServer;

/// A child still running after this is hung.
const HANG: Duration = Duration::from_secs(120);

/// Variables a child must not inherit from the machine running the tests.
const CLEARED: &[&str] = &[
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NTASKS",
    "ML_DASH_RANKS",
    "ML_DASH_HANDLE_SIGNALS",
    "ML_DASH_SIGNAL_DEADLINE",
    "ML_DASH_PREFIX",
];

/// torchrun's variables for rank `r` of `world` on one node.
fn torchrun(r: u32, world: u32) -> Vec<(String, String)> {
    [
        ("RANK", r.to_string()),
        ("LOCAL_RANK", r.to_string()),
        ("WORLD_SIZE", world.to_string()),
        ("LOCAL_WORLD_SIZE", world.to_string()),
        ("GROUP_RANK", "0".into()),
        ("MASTER_ADDR", "127.0.0.1".into()),
        ("MASTER_PORT", "29500".into()),
        ("TORCHELASTIC_RUN_ID", "ranks-test".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A child process running `case` of `tests/children/ranks.rs`.
struct Child {
    proc: Proc,
    out: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
    stderr: PathBuf,
    name: String,
    _watchdog: mpsc::Sender<()>,
}

impl Child {
    /// Runs `case` with the store at `<dir>/dash` (its `T_ROOT`) and its
    /// stderr in a file of `dir`.
    fn spawn(case: &str, dir: &Path, env: &[(String, String)]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ml-dash-test-child"));
        cmd.args(["ranks", case]);
        for k in CLEARED {
            cmd.env_remove(k);
        }
        let name = format!(
            "{case}{}",
            env.iter()
                .find(|(k, _)| k == "RANK")
                .map_or(String::new(), |(_, r)| format!(" rank {r}"))
        );
        let stderr = dir.join(format!(
            "stderr-{}-{}.txt",
            case,
            fastrand::u64(..) // several children of one case
        ));
        cmd.env("T_ROOT", dir.join("dash"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let mut proc = cmd.spawn().unwrap();
        let out = BufReader::new(proc.stdout.take().unwrap());
        let stdin = proc.stdin.take();
        let pid = proc.id();
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(HANG) {
                // SAFETY: kill has no memory-safety preconditions; `pid` is our child.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        });
        Child {
            proc,
            out,
            stdin,
            stderr,
            name,
            _watchdog: tx,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The rest of the first line holding `tag` (the child's other lines
    /// are skipped); panics when the child ends first.
    fn expect(&mut self, tag: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).unwrap() == 0 {
                let status = self.proc.wait().unwrap();
                panic!(
                    "{}: ended ({status}) before printing {tag:?}\nstderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            if let Some(at) = line.find(tag) {
                return line[at + tag.len()..].trim().to_string();
            }
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn wait(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        self.proc.wait().unwrap()
    }

    /// Waits for a clean exit.
    fn finish(self) {
        let (name, stderr) = (self.name.clone(), self.stderr.clone());
        let status = self.wait();
        assert!(
            status.success(),
            "{name} failed ({status})\nstderr:\n{}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
    }
}

/// Starts `n` ranks of `case` with torchrun's variables and `extra`.
fn ranks(case: &str, dir: &Path, n: u32, extra: &[(&str, &str)]) -> Vec<Child> {
    (0..n)
        .map(|r| {
            let mut env = torchrun(r, n);
            env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Child::spawn(case, dir, &env)
        })
        .collect()
}

fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn points(root: &Path, prefix: &str, stream: &str) -> Vec<Json> {
    read::metrics(root, prefix, Some(stream)).unwrap()
}

fn doc(root: &Path, prefix: &str, rel: &str) -> Json {
    read::document(root, prefix, rel)
        .unwrap()
        .unwrap_or_else(|| panic!("{prefix}/{rel} is missing"))
}

fn file_names(root: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = doc(root, prefix, "files/.files_metadata.json")["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["path"].as_str().unwrap(),
                f["filename"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    names
}

/// Every line of an append file is complete JSON (no torn line).
fn whole_lines(path: &Path) -> Vec<Json> {
    let text = std::fs::read(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "{} ends in a torn line",
        path.display()
    );
    (text.split(|&c| c == b'\n'))
        .filter(|l| !l.is_empty())
        .map(|l| {
            read::parse_lenient(l)
                .unwrap_or_else(|e| panic!("{}: a line that does not parse: {e}", path.display()))
        })
        .collect()
}

/// Indices `0..n` exactly once each.
fn assert_contiguous(what: &str, mut got: Vec<u64>) {
    got.sort_unstable();
    let n = got.len() as u64;
    assert!(
        got.iter().copied().eq(0..n),
        "{what}: not 0..{n} exactly once (first differences: {:?})",
        got.iter()
            .enumerate()
            .filter(|(k, v)| *k as u64 != **v)
            .take(5)
            .collect::<Vec<_>>()
    );
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn rank0_mode_four_ranks_make_one_run_and_the_others_touch_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    // Ranks 1..3 alone (the default mode): they run every call and leave nothing.
    let mut others: Vec<Child> = (1..4)
        .map(|r| Child::spawn("log", t.path(), &torchrun(r, 4)))
        .collect();
    for c in &mut others {
        assert_eq!(
            c.expect("OPENED"),
            format!("recording=false prefix={PREFIX}")
        );
    }
    for c in others {
        c.finish();
    }
    assert!(!dash.exists(), "a rank other than 0 wrote to the store");
    // All four together: one run, rank 0's.
    let mut children = ranks("log", t.path(), 4, &[]);
    for (r, c) in children.iter_mut().enumerate() {
        assert_eq!(
            c.expect("OPENED"),
            format!("recording={} prefix={PREFIX}", r == 0)
        );
    }
    for c in children {
        c.finish();
    }
    assert_eq!(dir_names(&dash), ["alice"]);
    assert_eq!(dir_names(&dash.join("alice/ddp")), ["job"]);
    let train = points(&dash, PREFIX, "train");
    assert_eq!(train.len() as u64, POINTS);
    assert!(
        (train.iter()).all(|p| p["data"]["w"] == 0 && p["data"].get("rank").is_none()),
        "only rank 0's points, without a rank field"
    );
    assert_eq!(
        doc(&dash, PREFIX, "parameters.json")["data"],
        json!({"set_by": 0})
    );
    assert_eq!(file_names(&dash, PREFIX), ["/cfg/job.txt", "/own/r0.txt"]);
    assert_eq!(dir_names(&dash.join(PREFIX).join(".ranks")), ["0.json"]);
    assert_eq!(doc(&dash, PREFIX, "experiment.json")["status"], "COMPLETED");
}

/// Each child (rank r, in order) said it records `<PREFIX>/rank-r`; then
/// each ends.
fn each_opens_its_rank_run(mut children: Vec<Child>) {
    for (r, c) in children.iter_mut().enumerate() {
        assert_eq!(
            c.expect("OPENED"),
            format!("recording=true prefix={PREFIX}/rank-{r}")
        );
    }
    for c in children {
        c.finish();
    }
}

#[test]
fn per_rank_mode_makes_one_run_per_rank_under_the_prefix() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let children = ranks("log", t.path(), 4, &[("ML_DASH_RANKS", "per_rank")]);
    each_opens_its_rank_run(children);
    assert_eq!(
        dir_names(&dash.join(PREFIX)),
        [".ranks", "rank-0", "rank-1", "rank-2", "rank-3"]
    );
    for r in 0..4u64 {
        let prefix = format!("{PREFIX}/rank-{r}");
        let train = points(&dash, &prefix, "train");
        assert_eq!(train.len() as u64, POINTS);
        assert!(train.iter().all(|p| p["data"]["w"] == r));
        assert_eq!(
            doc(&dash, &prefix, "parameters.json")["data"],
            json!({"set_by": r})
        );
        assert_eq!(
            file_names(&dash, &prefix),
            ["/cfg/job.txt".to_string(), format!("/own/r{r}.txt")]
        );
        assert_eq!(
            doc(&dash, &prefix, "experiment.json")["status"],
            "COMPLETED"
        );
        let entry = doc(&dash, PREFIX, &format!(".ranks/{r}.json"));
        assert_eq!(
            (entry["mode"].as_str(), entry["status"].as_str()),
            (Some("per_rank"), Some("COMPLETED"))
        );
    }
}

#[test]
fn shared_mode_four_ranks_write_one_experiment_and_rank_0_alone_the_status() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let server = TestServer::start();
    let url = server.url();
    let spawn = |r| {
        let mut env = torchrun(r, 4);
        env.extend(env_of(&[("ML_DASH_RANKS", "shared"), ("T_URL", &url)]));
        env.extend(env_of(&[("T_WAIT", "1")])); // each closes when told
        let mut c = Child::spawn("log", t.path(), &env);
        assert_eq!(
            c.expect("OPENED"),
            format!("recording=true prefix={PREFIX}")
        );
        c
    };
    // Rank 0 opens first: the others, opening after it, leave its marker.
    let mut children = vec![spawn(0)];
    children.extend((1..4).map(spawn));
    for c in &mut children {
        c.expect("LOGGED");
    }
    // Rank 0 closes first, while the others are open: it waits for them.
    let mut children = children.into_iter();
    let mut rank0 = children.next().unwrap();
    rank0.say("close");
    for mut c in children {
        c.say("close");
        c.finish();
    }
    rank0.finish();

    // Every rank's points in one stream: unique, contiguous indices, each
    // point with its rank, each rank's in the order it logged them.
    let train = points(&dash, PREFIX, "train");
    assert_eq!(train.len() as u64, 4 * POINTS);
    assert_contiguous(
        "train indices",
        train.iter().map(|p| p["index"].as_u64().unwrap()).collect(),
    );
    let mut next: HashMap<u64, u64> = HashMap::new();
    for p in &train {
        let (w, i) = (
            p["data"]["w"].as_u64().unwrap(),
            p["data"]["i"].as_u64().unwrap(),
        );
        assert_eq!(p["data"]["rank"], w, "the point carries its rank");
        let n = next.entry(w).or_default();
        assert_eq!(*n, i, "rank {w}'s points in order");
        *n += 1;
    }
    let logs = read::logs(&dash, PREFIX).unwrap();
    assert_eq!(logs.len() as u64, 4 * POINTS / 50);
    assert_contiguous(
        "log sequence numbers",
        logs.iter()
            .map(|l| l["sequenceNumber"].as_u64().unwrap())
            .collect(),
    );
    assert!(logs.iter().all(|l| l["metadata"]["rank"].is_u64()));
    let rows = read::tracks(&dash, PREFIX, "pose").unwrap();
    assert_eq!(rows.len() as u64, 4 * POINTS / 50);
    assert!(rows.iter().all(|r| r["rank"].is_u64()));
    // Rank 0 alone: the parameters, the shared file, the status.
    let params = doc(&dash, PREFIX, "parameters.json");
    assert_eq!(
        (params["version"].as_u64(), &params["data"]),
        (Some(1), &json!({"set_by": 0}))
    );
    assert_eq!(
        file_names(&dash, PREFIX),
        [
            "/cfg/job.txt",
            "/own/r0.txt",
            "/own/r1.txt",
            "/own/r2.txt",
            "/own/r3.txt"
        ]
    );
    let exp = doc(&dash, PREFIX, "experiment.json");
    assert_eq!(exp["status"], "COMPLETED");
    let rank0_pid = doc(&dash, PREFIX, ".ranks/0.json")["pid"].clone();
    assert_eq!(
        exp["pid"], rank0_pid,
        "the liveness marker is rank 0's process"
    );
    let ended = exp["ended_at"].as_str().unwrap();
    for r in 1..4 {
        let entry = doc(&dash, PREFIX, &format!(".ranks/{r}.json"));
        assert_eq!(entry["status"], "COMPLETED");
        let closed = entry["closed_at"].as_str().unwrap();
        assert!(
            closed <= ended,
            "rank 0 recorded the status ({ended}) before rank {r} closed ({closed})"
        );
    }
    // The server: every rank's points, rank 0's parameters, one status PATCH.
    let st = server.state();
    let node = (st.nodes.iter())
        .find(|n| n["type"] == "EXPERIMENT" && n["name"] == "job")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        st.statuses.get(&node).cloned().unwrap_or_default(),
        ["COMPLETED"]
    );
    let served = st.points("job", "train");
    assert_eq!(served.len() as u64, 4 * POINTS);
    assert!(served.iter().all(|p| p["rank"] == p["w"]));
    let eid = st.experiment("job").unwrap();
    assert_eq!(
        st.params.get(&eid).map(|m| Json::Object(m.clone())),
        Some(json!({"set_by": 0}))
    );
}

#[test]
fn mismatched_configurations_across_ranks_are_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let shared = |r, world| {
        let mut env = torchrun(r, world);
        env.extend(env_of(&[("ML_DASH_RANKS", "shared")]));
        env
    };
    let mut rank0 = Child::spawn("open", t.path(), &shared(0, 4));
    rank0.expect("OPENED");
    let error = |env: &[(String, String)]| {
        let mut c = Child::spawn("open", t.path(), env);
        let e = c.expect("ERROR");
        c.finish();
        e
    };
    let e = error(&shared(1, 2));
    assert!(
        e.contains("shared with world size 2 (rank 1), but rank 0"),
        "{e}"
    );
    let mut per_rank = torchrun(2, 4);
    per_rank.extend(env_of(&[("ML_DASH_RANKS", "per_rank")]));
    let e = error(&per_rank);
    assert!(
        e.contains("per_rank with world size 4 (rank 2), but rank 0"),
        "{e}"
    );
    let e = error(&shared(0, 4));
    assert!(e.contains("already open in process"), "{e}");
    let e = error(&env_of(&[("RANK", "4"), ("WORLD_SIZE", "4")]));
    assert!(
        e.contains("RANK") && e.contains("below the world size"),
        "{e}"
    );
    let e = error(&env_of(&[("RANK", "1")]));
    assert!(e.contains("WORLD_SIZE"), "{e}");
    let e = error(&env_of(&[("SLURM_PROCID", "x"), ("SLURM_NTASKS", "4")]));
    assert!(e.contains("SLURM_PROCID"), "{e}");
    let e = error(&env_of(&[("ML_DASH_RANKS", "everyone")]));
    assert!(e.contains("ML_DASH_RANKS"), "{e}");
    rank0.say("close");
    rank0.finish();
    // Once rank 0 closed, a later job may use another world size.
    let mut later = Child::spawn("open", t.path(), &shared(1, 2));
    later.expect("OPENED");
    later.say("close");
    later.finish();
}

#[test]
fn slurm_variables_place_the_ranks_too() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let children: Vec<Child> = (0..2)
        .map(|r: u32| {
            let env = env_of(&[
                ("SLURM_PROCID", &r.to_string()),
                ("SLURM_LOCALID", &r.to_string()),
                ("SLURM_NTASKS", "2"),
                ("ML_DASH_RANKS", "per_rank"),
            ]);
            Child::spawn("log", t.path(), &env)
        })
        .collect();
    each_opens_its_rank_run(children);
    assert_eq!(
        dir_names(&dash.join(PREFIX)),
        [".ranks", "rank-0", "rank-1"]
    );
}

#[test]
fn forked_worker_joins_its_ranks_shared_experiment_as_a_writer() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let mut env = torchrun(0, 2);
    env.extend(env_of(&[("ML_DASH_RANKS", "shared")]));
    let mut c = Child::spawn("fork_worker", t.path(), &env);
    c.expect("RESULT");
    c.finish();
    let loader = points(&dash, PREFIX, "loader");
    assert_eq!(loader.len(), 100);
    assert!(loader.iter().all(|p| p["data"]["rank"] == 0));
    let train = points(&dash, PREFIX, "train");
    assert_eq!(train.len(), 20);
    assert_contiguous(
        "train and loader indices",
        train.iter().map(|p| p["index"].as_u64().unwrap()).collect(),
    );
    // The worker is not a rank: no entry, no parameters, no status.
    assert_eq!(dir_names(&dash.join(PREFIX).join(".ranks")), ["0.json"]);
    let params = doc(&dash, PREFIX, "parameters.json");
    assert_eq!(
        (params["version"].as_u64(), &params["data"]),
        (Some(1), &json!({"lr": 0.1}))
    );
    assert_eq!(doc(&dash, PREFIX, "experiment.json")["status"], "COMPLETED");
}

/// The last "ACKED a b" before the signal, the signal sent: after at least
/// three flushes, and once both threads have points acknowledged (on a
/// loaded machine the first flushes can come before either thread logs).
fn log_then_signal(c: &mut Child, signal: libc::c_int) -> [u64; 2] {
    let mut acked = [0; 2];
    let mut flushes = 0;
    while flushes < 3 || acked.contains(&0) {
        let line = c.expect("ACKED");
        let mut it = line.split(' ').map(|n| n.parse::<u64>().unwrap());
        acked = [it.next().unwrap(), it.next().unwrap()];
        flushes += 1;
    }
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(c.proc.id() as i32, signal) };
    acked
}

/// The number after `"key":` in a stored line (a scan: the test's own
/// code is unoptimised, and a JSON parse of every point would dominate it).
fn number_after(line: &[u8], key: &str) -> u64 {
    let tag = format!("\"{key}\":");
    let at = (line.windows(tag.len()).position(|w| w == tag.as_bytes()))
        .unwrap_or_else(|| panic!("no {key} in {}", String::from_utf8_lossy(line)))
        + tag.len();
    let digits = line[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits])
        .unwrap()
        .parse()
        .unwrap()
}

/// Each thread's points are `0..k` in order, with `k` at least what was
/// acknowledged, and the indices are `0..n`.
fn assert_acknowledged_points_stored(dash: &Path, acked: [u64; 2]) {
    let data = std::fs::read(dash.join(PREFIX).join("metrics/train/data.jsonl")).unwrap();
    assert!(data.ends_with(b"\n"), "a torn last line");
    let mut next = [0u64; 2];
    for (k, line) in data
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        assert_eq!(
            number_after(line, "index"),
            k as u64,
            "indices 0..n in order"
        );
        let t = number_after(line, "t") as usize;
        assert_eq!(
            number_after(line, "i"),
            next[t],
            "thread {t}'s points in order"
        );
        next[t] += 1;
    }
    for t in 0..2 {
        assert!(
            next[t] >= acked[t],
            "thread {t}: {} stored, {} acknowledged",
            next[t],
            acked[t]
        );
    }
}

#[test]
fn sigterm_during_heavy_logging_drains_records_cancelled_and_ends_by_the_signal() {
    use std::os::unix::process::ExitStatusExt;
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let env = env_of(&[
        ("ML_DASH_HANDLE_SIGNALS", "1"),
        ("ML_DASH_SIGNAL_DEADLINE", "60"),
    ]);
    let mut c = Child::spawn("sigterm", t.path(), &env);
    let acked = log_then_signal(&mut c, libc::SIGTERM);
    let status = c.wait();
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "the default action ended it ({status})"
    );
    assert_acknowledged_points_stored(&dash, acked);
    assert_eq!(doc(&dash, PREFIX, "experiment.json")["status"], "CANCELLED");
    let logs = read::logs(&dash, PREFIX).unwrap();
    let last = logs.last().unwrap();
    assert_eq!(
        (&last["level"], &last["message"], &last["metadata"]),
        (
            &json!("warn"),
            &json!("SIGTERM: closing the run as CANCELLED"),
            &json!({"signal": "SIGTERM"})
        )
    );
}

#[test]
fn sigterm_runs_the_programs_own_handler_after_the_drain() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let env = env_of(&[("ML_DASH_SIGNAL_DEADLINE", "60")]);
    let mut c = Child::spawn("own_handler", t.path(), &env);
    let acked = log_then_signal(&mut c, libc::SIGTERM);
    assert_eq!(c.expect("HANDLER"), "status=\"CANCELLED\"");
    c.finish();
    assert_acknowledged_points_stored(&dash, acked);
}

/// The liveness of the run `PREFIX` as a reader (`ml-dash list`) sees it.
fn liveness(dash: &Path) -> read::Liveness {
    let runs = read::runs(dash).unwrap();
    let run = runs.iter().find(|r| r.prefix == PREFIX).unwrap();
    run.liveness(std::time::SystemTime::now())
}

#[test]
fn kill9_marks_the_run_dead_and_a_reopen_appends_and_continues_the_indices() {
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let mut c = Child::spawn("kill9", t.path(), &[]);
    c.expect("ACKED");
    let acked: u64 = c.expect("ACKED").parse().unwrap();
    let pid = c.proc.id();
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let _ = c.wait();
    // Marked: RUNNING, but its process is gone (the CLI's `list` says "dead").
    assert_eq!(liveness(&dash), read::Liveness::Dead { pid });
    let killed = points(&dash, PREFIX, "train").len() as u64;
    assert!(killed >= acked, "{killed} stored, {acked} acknowledged");
    let run = Experiment::new(PREFIX)
        .dash_root(&dash)
        .buffer_config(quiet())
        .run()
        .unwrap();
    assert_eq!(liveness(&dash), read::Liveness::Alive);
    let train = run.metrics("train").unwrap();
    for i in 0..500u64 {
        train.log(&point! {"again" => i}).unwrap();
        run.log("again").unwrap();
    }
    run.complete().unwrap();
    assert_eq!(liveness(&dash), read::Liveness::Final);
    let all = points(&dash, PREFIX, "train");
    assert_eq!(all.len() as u64, killed + 500);
    assert_contiguous(
        "indices",
        all.iter().map(|p| p["index"].as_u64().unwrap()).collect(),
    );
    for (k, p) in all.iter().enumerate() {
        let k = k as u64;
        assert_eq!(p["index"], k);
        if k < killed {
            assert_eq!(p["data"]["i"], k, "the killed run's points, in order");
        } else {
            assert_eq!(
                p["data"]["again"],
                k - killed,
                "the reopened run's, after them"
            );
        }
    }
    let meta = doc(&dash, PREFIX, "metrics/train/metadata.json");
    assert_eq!(
        (meta["nextIndex"].as_u64(), meta["totalDataPoints"].as_u64()),
        (Some(killed + 500), Some(killed + 500))
    );
    let logs = read::logs(&dash, PREFIX).unwrap();
    assert_contiguous(
        "log sequence numbers",
        logs.iter()
            .map(|l| l["sequenceNumber"].as_u64().unwrap())
            .collect(),
    );
}

/// 8 writer processes of `n` points each append to one experiment; the
/// store and the Python SDK see every point once, with unique contiguous
/// indices and sequence numbers, and no torn line.
fn many_writers(n: u64) {
    const WRITERS: u64 = 8;
    let t = tempfile::tempdir().unwrap();
    let dash = t.path().join("dash");
    let children: Vec<Child> = (0..WRITERS)
        .map(|w| {
            let env = env_of(&[("T_WRITER", &w.to_string()), ("T_POINTS", &n.to_string())]);
            Child::spawn("writer", t.path(), &env)
        })
        .collect();
    for c in children {
        c.finish();
    }
    let exp = dash.join(PREFIX);
    let lines = whole_lines(&exp.join("metrics/train/data.jsonl"));
    assert_eq!(lines.len() as u64, WRITERS * n, "every point exactly once");
    assert_contiguous(
        "indices",
        lines.iter().map(|p| p["index"].as_u64().unwrap()).collect(),
    );
    let mut next = vec![0u64; WRITERS as usize];
    for p in &lines {
        let (w, i) = (
            p["data"]["w"].as_u64().unwrap() as usize,
            p["data"]["i"].as_u64().unwrap(),
        );
        assert_eq!(next[w], i, "writer {w}'s points in order");
        next[w] += 1;
    }
    let meta = doc(&dash, PREFIX, "metrics/train/metadata.json");
    assert_eq!(
        (meta["nextIndex"].as_u64(), meta["totalDataPoints"].as_u64()),
        (Some(WRITERS * n), Some(WRITERS * n))
    );
    let logs = whole_lines(&exp.join("logs/logs.jsonl"));
    let want_logs = WRITERS * n.div_ceil(10);
    assert_eq!(logs.len() as u64, want_logs);
    assert_contiguous(
        "log sequence numbers",
        logs.iter()
            .map(|l| l["sequenceNumber"].as_u64().unwrap())
            .collect(),
    );
    let seq = std::fs::read_to_string(exp.join("logs/.log_sequence")).unwrap();
    assert_eq!(seq.trim(), want_logs.to_string());
    for f in ["metrics/train/data.jsonl.torn", "logs/logs.jsonl.torn"] {
        assert!(!exp.join(f).exists(), "{f}: a writer cut a torn line");
    }

    let Some(py) = sdk_python::python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ranks/sdk_read.py");
    let out = sdk_python::python_command(py)
        .arg(script)
        .arg(&dash)
        .arg(PREFIX)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sdk_read.py failed:\n{}",
        sdk_python::tail(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let got: Json = serde_json::from_str(text.lines().last().unwrap_or("")).unwrap();
    let per: serde_json::Map<String, Json> =
        (0..WRITERS).map(|w| (w.to_string(), json!(n))).collect();
    assert_eq!(
        (
            &got["points"],
            &got["indices"],
            &got["in_order"],
            &got["per_writer"]
        ),
        (
            &json!(WRITERS * n),
            &json!(true),
            &json!(true),
            &Json::Object(per)
        ),
        "the SDK's read: {text}"
    );
    assert_eq!(
        (&got["logs"], &got["log_sequence"]),
        (&json!(want_logs), &json!(true))
    );
}

#[test]
fn many_writers_append_to_one_experiment() {
    many_writers(2000);
}

/// The full size: 8 processes x 100 000 points (about a minute on
/// two cores, most of it the SDK's read).
#[test]
#[ignore = "long: cargo test --release --test ranks -- --ignored many_writers_full_size"]
fn many_writers_full_size() {
    many_writers(100_000);
}

/// ns per call of a metric log on an inert handle (rank0 mode, rank 1) and
/// on a recording run, in this process. Prints; asserts nothing.
#[test]
#[ignore = "a measurement: cargo test --release --test ranks -- --ignored noop_cost --nocapture"]
fn noop_cost() {
    // Bursts that fit the thread's first ring, each after a flush (not
    // timed): the recording run's number is its call, not the collector's
    // speed, ring growth or backpressure.
    const BURST: u64 = 4096;
    const BURSTS: u64 = 250;
    let t = tempfile::tempdir().unwrap();
    let time = |run: &ml_dash::Run| {
        let m = run.metrics("train").unwrap();
        m.log(&point! {"loss" => 0.0}).unwrap(); // the thread's first call registers
        let mut spent = Duration::ZERO;
        for b in 0..BURSTS {
            run.flush().unwrap();
            let start = Instant::now();
            for i in 0..BURST {
                m.log(&point! {"loss" => (b * BURST + i) as f64}).unwrap();
            }
            spent += start.elapsed();
        }
        spent.as_nanos() as f64 / (BURST * BURSTS) as f64
    };
    let inert = Experiment::new(PREFIX)
        .dash_root(t.path())
        .rank(1, 4)
        .rank_mode(RankMode::Rank0)
        .buffer_config(quiet())
        .run()
        .unwrap();
    assert!(!inert.is_recording());
    let mut cfg = quiet();
    cfg.metric_batch_size = 1000;
    cfg.flush_interval = Duration::from_secs(5);
    let normal = Experiment::new("alice/ddp/normal")
        .dash_root(t.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    for round in 0..5 {
        println!(
            "round {round}: inert {:.2} ns/call, recording {:.2} ns/call",
            time(&inert),
            time(&normal)
        );
    }
    normal.complete().unwrap();
}

/// What N ranks logging at 1 kHz cost the test server, on loopback
/// (docs/SCALE.md). `ML_DASH_SCALE_RANKS` (default `1,8,32`) and
/// `ML_DASH_SCALE_SECS` (10). Prints one line per N; asserts only that every
/// point arrived.
#[test]
#[ignore = "a measurement: cargo test --release --test ranks -- --ignored scale_simulation --nocapture"]
fn scale_simulation() {
    let counts: Vec<u32> = std::env::var("ML_DASH_SCALE_RANKS")
        .unwrap_or_else(|_| "1,8,32".into())
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    let secs = env_u64("ML_DASH_SCALE_SECS", 10);
    for n in counts {
        let t = tempfile::tempdir().unwrap();
        let server = TestServer::start();
        server.set_counting(true);
        let url = server.url();
        let start = Instant::now();
        let children: Vec<Child> = (0..n)
            .map(|r| {
                let mut env = torchrun(r, n);
                env.extend(env_of(&[
                    ("ML_DASH_RANKS", "shared"),
                    ("T_URL", &url),
                    ("T_SECS", &secs.to_string()),
                    (
                        "XDG_CACHE_HOME",
                        &t.path().join("cache").display().to_string(),
                    ),
                ]));
                Child::spawn("pace", t.path(), &env)
            })
            .collect();
        for c in children {
            c.finish();
        }
        let wall = start.elapsed().as_secs_f64();
        let st = server.state();
        let points = st.point_count("job", "train");
        let per = |v: u64| v as f64 / n as f64 / secs as f64;
        println!(
            "ranks={n} secs={secs} wall={wall:.1}s points={points} requests={} bytes={} \
             per_rank: requests/s={:.2} bytes/s={:.0} points/s={:.0}; server total: \
             requests/s={:.1} bytes/s={:.0}",
            st.request_count,
            st.body_bytes,
            per(st.request_count),
            per(st.body_bytes),
            per(points),
            st.request_count as f64 / secs as f64,
            st.body_bytes as f64 / secs as f64,
        );
        assert_eq!(points, n as u64 * 1000 * secs, "every point arrived");
    }
}
