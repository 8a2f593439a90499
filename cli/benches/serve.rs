//! `ml-dash serve` on big inputs, through its HTTP API (the server a
//! process, as users run it): one metric stream of 10 M points served
//! downsampled to 1000 pixels (wall time per request and the server's peak
//! resident memory, `VmHWM`), and the runs list of a store of 1000 runs.
//! The stores are written once into the target folder and reused.
//!
//! `cargo bench -p ml-dash-cli --bench serve [-- POINTS]`; results in
//! `perf/RESULTS.md` ("ml-dash serve").

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use ml_dash::{Experiment, point};

mod common;
use common::quiet;

/// `ml-dash serve` on `root`: the child and its base URL.
fn serve(root: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ml-dash"))
        .arg("--dash-root")
        .arg(root)
        .args(["serve", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.split_whitespace().nth(2).unwrap();
    (child, url.trim_end_matches('/').to_string())
}

fn vm_hwm_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// The best and all wall times of `n` GETs of `url`, and the last body's size.
fn time_get(url: &str, n: usize) -> (f64, Vec<f64>, usize) {
    let mut times = Vec::new();
    let mut len = 0;
    for _ in 0..n {
        let t = Instant::now();
        let body = ureq::get(url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        times.push(t.elapsed().as_secs_f64());
        len = body.len();
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    (best, times, len)
}

fn main() {
    let n = common::points_arg();
    // The same store as the plot bench.
    let (root, data) = common::store(n);
    let prefix = common::PREFIX;
    // As the engine wrote it (its summary, kept as it wrote): a new
    // server's first request. Then without the summary (a stream the SDK
    // wrote: the server's warm-up or this request builds it), then a new
    // server: three with it (widths differ: no cached answer), then a
    // cached one.
    common::engine_summary(&data);
    let (mut child, base) = serve(&root);
    let url = format!("{base}/api/series?run={prefix}&metric=train&width=998");
    let (engine_first, _, _) = time_get(&url, 1);
    let engine_rss = vm_hwm_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    common::drop_summary(&data);
    let (mut child, base) = serve(&root);
    let before = vm_hwm_mib(child.id());
    let get = |w: usize| {
        let url = format!("{base}/api/series?run={prefix}&metric=train&width={w}");
        time_get(&url, 1)
    };
    let (cold, _, _) = get(999);
    let cold_rss = vm_hwm_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    // A new server: its first request reads the stored summary.
    let (mut child, base) = serve(&root);
    let get = |w: usize| {
        let url = format!("{base}/api/series?run={prefix}&metric=train&width={w}");
        time_get(&url, 1)
    };
    let mut scans = Vec::new();
    let mut len = 0;
    for w in [1000, 1001, 1002] {
        let (t, _, l) = get(w);
        scans.push(t);
        len = l;
    }
    let scan_rss = vm_hwm_mib(child.id());
    let (cached, _, _) = get(1000);
    println!(
        "series of {n} points to 998 px, a new server's first request, the summary as the engine \
         wrote it: {engine_first:.3} s (peak RSS {engine_rss:.1} MiB)"
    );
    println!(
        "series of {n} points to 1000 px: building the summary {cold:.2} s (peak RSS {cold_rss:.1} MiB); \
         a new server, summary stored: {scans:.3?} s, cached {cached:.4} s, {len} bytes; \
         server peak RSS {scan_rss:.1} MiB (at start {before:.1} MiB)"
    );
    let _ = child.kill();
    let _ = child.wait();

    // 1000 runs: one written by the engine, copied.
    let many = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-bench-1000-runs");
    if !many.join("o/p/run-999").exists() {
        let run = Experiment::new("o/p/run-0")
            .dash_root(&many)
            .buffer_config(quiet())
            .run()
            .unwrap();
        let m = run.metrics("train").unwrap();
        for step in 0..100 {
            m.log(&point! {"loss" => 1.0 / (1 + step) as f64, "step" => step})
                .unwrap();
        }
        run.complete().unwrap();
        for i in 1..1000 {
            let st = Command::new("cp")
                .arg("-r")
                .arg(many.join("o/p/run-0"))
                .arg(many.join(format!("o/p/run-{i}")))
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
    let (mut child, base) = serve(&many);
    let (best, all, len) = time_get(&format!("{base}/api/runs"), 3);
    println!("runs list of 1000 runs: best {best:.3} s, all {all:.3?} s, {len} bytes");
    let _ = child.kill();
    let _ = child.wait();
}
