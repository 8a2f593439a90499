//! `ml-dash sync`: spools (what a hybrid or remote run left) and local runs
//! that never had a server, to an ML-Dash server, several at once. A local
//! run is spooled by `ml_dash::spool_run_part` (only what an earlier sync
//! did not spool) in parts of 100 000 items, each sent by `ml_dash::sync`
//! while the next is spooled; every spool is sent in order,
//! each batch under its idempotency key, resumable after a kill (the ack
//! cursor), so a second sync sends nothing new. One progress bar per run and
//! a total (indicatif), or plain lines when stderr is not a terminal.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use ml_dash::read;

use crate::args::SyncArgs;
use crate::{Fail, Result, out};

#[derive(Debug, Clone)]
struct Job {
    name: String,
    /// The local run to spool first, if any.
    local: Option<PathBuf>,
    spool: PathBuf,
}

/// What one job did.
#[derive(Debug, Default)]
struct Done {
    items: u64,
    requests: u64,
    retries: u64,
    left: u64,
    error: Option<String>,
}

pub(crate) fn run(root: &Path, a: &SyncArgs) -> Result {
    let jobs = collect(root, &a.targets)?;
    if jobs.is_empty() {
        eprintln!("nothing to sync under {}", root.display());
        return Ok(());
    }
    if a.dash_url.is_none() && jobs.iter().any(|j| j.local.is_some()) {
        return Err(Fail::Usage(
            "local runs have no server recorded: name it with --dash-url URL".into(),
        ));
    }
    let mut opts = ml_dash::SyncOptions::default();
    opts.dash_url.clone_from(&a.dash_url);
    opts.token.clone_from(&a.token);
    opts.deadline = Duration::from_secs(a.deadline);
    opts.retry_base_delay = Duration::from_millis(a.retry_delay.max(1));
    opts.retry_max_delay = opts.retry_max_delay.max(opts.retry_base_delay);
    opts.quiet = true;
    let tty = !a.no_tty && std::io::stderr().is_terminal();
    let multi = tty.then(MultiProgress::new);
    let total_bar = multi.as_ref().map(|m| {
        let b = m.add(ProgressBar::new(0));
        b.set_style(style(
            "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {msg}",
        ));
        b.set_prefix("total");
        b
    });
    let queue = Mutex::new(jobs.into_iter().collect::<VecDeque<_>>());
    let results: Mutex<Vec<(String, Done)>> = Mutex::new(Vec::new());
    let active: Active = Mutex::new(Vec::new());
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Progress: each active job's spool backlog, polled (sync blocks).
        s.spawn(|| {
            let mut last_plain = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let act = active.lock().unwrap_or_else(|p| p.into_inner());
                let (mut sum_total, mut sum_left) = (0, 0);
                for (name, dir, base, total, bar) in act.iter() {
                    let left = read::spool_backlog(dir).min(*total);
                    sum_total += total;
                    sum_left += left;
                    let done = base + total - left;
                    if let Some(b) = bar {
                        b.set_position(done);
                    } else if last_plain.elapsed() >= Duration::from_secs(2) {
                        eprintln!("sync {name}: {} sent", out::bytes(done));
                    }
                }
                if last_plain.elapsed() >= Duration::from_secs(2) {
                    last_plain = Instant::now();
                }
                if let Some(t) = &total_bar {
                    t.set_length(sum_total);
                    t.set_position(sum_total - sum_left);
                }
            }
        });
        let workers = a.jobs.max(1).min(queue.lock().map_or(1, |q| q.len()));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
                        let Some(job) = job else { break };
                        let done = one(&job, a, &opts, multi.as_ref(), &active);
                        results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((job.name, done));
                    }
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
        finished.store(true, Ordering::Relaxed);
    });
    if let Some(t) = &total_bar {
        t.finish();
    }
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|x, y| x.0.cmp(&y.0));
    let mut bad = 0;
    for (name, d) in &results {
        match &d.error {
            Some(e) => {
                bad += 1;
                eprintln!("FAILED {name}: {e}");
            }
            None if d.left > 0 => {
                bad += 1;
                eprintln!(
                    "partly {name}: sent {} item(s) in {} request(s), {} retries; {} batch(es) \
                     left in the spool (run sync again)",
                    d.items, d.requests, d.retries, d.left
                );
            }
            None => eprintln!(
                "synced {name}: sent {} item(s) in {} request(s), {} retries",
                d.items, d.requests, d.retries
            ),
        }
    }
    if bad > 0 { Err(Fail::Reported) } else { Ok(()) }
}

fn style(t: &str) -> ProgressStyle {
    ProgressStyle::with_template(t)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// The jobs being sent: name, spool, bytes sent by earlier passes, backlog
/// at the start of this one, its bar.
type Active = Mutex<Vec<(String, PathBuf, u64, u64, Option<ProgressBar>)>>;

/// Runs one job to its end (with `--follow`, until the run is final and sent).
fn one(
    job: &Job,
    a: &SyncArgs,
    opts: &ml_dash::SyncOptions,
    multi: Option<&MultiProgress>,
    active: &Active,
) -> Done {
    let mut d = Done::default();
    let bar = multi.map(|m| {
        let b = m.insert_from_back(1, ProgressBar::new(0));
        b.set_style(style("{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {msg}"));
        b.set_prefix(short(&job.name));
        b
    });
    // Bytes sent by earlier passes (a bar spans them all).
    let mut base = 0;
    loop {
        let mut finished = job.local.is_some();
        // A local run is spooled in parts, each sent while the next is
        // spooled (the export and the sending overlap).
        let (parts_tx, parts) = std::sync::mpsc::channel::<()>();
        let exported = std::thread::scope(|s| {
            let exporter = match &job.local {
                None => {
                    drop(parts_tx);
                    None
                }
                Some(dir) => Some(s.spawn(move || -> std::result::Result<bool, String> {
                    loop {
                        let part =
                            ml_dash::spool_run_part(dir, &job.name, a.dash_url.as_deref(), PART)
                                .map_err(|e| e.to_string())?;
                        if parts_tx.send(()).is_err() {
                            return Ok(false); // the sending failed: stop
                        }
                        if !part.more {
                            return Ok(part.finished);
                        }
                    }
                })),
            };
            let mut sent: std::result::Result<bool, String> = Ok(true);
            loop {
                // Wait for a part (or the end of the export); then send
                // everything spooled so far.
                let more = parts.recv().is_ok();
                while parts.try_recv().is_ok() {}
                let r = send(job, opts, bar.as_ref(), active, &mut base, &mut d);
                match r {
                    Ok(locked) => {
                        if job.local.is_none() {
                            finished = !locked;
                        }
                    }
                    Err(e) => {
                        sent = Err(e);
                        break;
                    }
                }
                if !more {
                    break;
                }
            }
            drop(parts);
            let exported = exporter.map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the export panicked".into()))
            });
            sent.and(exported.unwrap_or(Ok(true)))
        });
        match exported {
            Ok(f) => finished &= f || job.local.is_none(),
            Err(e) => {
                d.error.get_or_insert(e);
                break;
            }
        }
        if !a.follow || (finished && d.left == 0) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    if let Some(b) = bar {
        b.finish_with_message(if d.error.is_some() || d.left > 0 {
            "left"
        } else {
            "done"
        });
    }
    d
}

/// Points, log lines and rows per spooled part of a local run.
const PART: u64 = 100_000;

/// One `ml_dash::sync` of the job's spool, its bar spanning `base` bytes sent
/// before; `Ok(true)` when a writer still holds a session.
fn send(
    job: &Job,
    opts: &ml_dash::SyncOptions,
    bar: Option<&ProgressBar>,
    active: &Active,
    base: &mut u64,
    d: &mut Done,
) -> std::result::Result<bool, String> {
    let total = read::spool_backlog(&job.spool);
    if let Some(b) = bar {
        b.set_length(*base + total);
        b.set_position(*base);
    }
    active.lock().unwrap_or_else(|p| p.into_inner()).push((
        job.name.clone(),
        job.spool.clone(),
        *base,
        total,
        bar.cloned(),
    ));
    let r = ml_dash::sync(&job.spool, opts);
    active
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|x| x.1 != job.spool);
    *base += total.saturating_sub(read::spool_backlog(&job.spool));
    let rep = r.map_err(|e| e.to_string())?;
    let st = &rep.stats;
    d.items += st.sent_items;
    d.requests += st.requests;
    d.retries += st.retries;
    d.left = st.pending_records;
    if let Some(e) = st.undeliverable.first() {
        return Err(format!("{}: {}", e.session_dir.display(), e.reason));
    }
    Ok(st.locked_sessions > 0)
}

fn short(name: &str) -> String {
    let n: Vec<char> = name.chars().collect();
    if n.len() <= 28 {
        name.to_string()
    } else {
        format!("…{}", n[n.len() - 27..].iter().collect::<String>())
    }
}

/// The jobs: spool folders given, and runs (prefixes, globs; default every
/// run): a run with a `.spool` is sent through it, one without (a local
/// run) through its `.sync` spool.
fn collect(root: &Path, targets: &[String]) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut runs = Vec::new();
    if targets.is_empty() {
        runs = read::runs(root)?;
    }
    for t in targets {
        let p = Path::new(t);
        if !out::is_glob(t) && p.is_dir() && read::is_spool(p) {
            jobs.push(Job {
                name: p.display().to_string(),
                local: None,
                spool: p.to_path_buf(),
            });
            continue;
        }
        runs.extend(super::matching_runs(root, std::slice::from_ref(t))?);
    }
    for r in runs {
        let spool = r.dir.join(".spool");
        if spool.is_dir() {
            jobs.push(Job {
                name: r.prefix,
                local: None,
                spool,
            });
        } else {
            jobs.push(Job {
                name: r.prefix.clone(),
                spool: r.dir.join(ml_dash::SYNC_DIR),
                local: Some(r.dir),
            });
        }
    }
    Ok(jobs)
}
