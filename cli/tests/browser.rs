//! `ml-dash serve` in a real browser: headless Chromium (Debian's
//! `chromium`), driven through the DevTools protocol over a pipe
//! (`--remote-debugging-pipe`: NUL-separated JSON on fds 3 and 4, no
//! WebSocket client needed). It opens the runs list and a run page, waits
//! for the charts, checks each chart's series and point counts (the page
//! exposes them as `data-*` attributes), logs a new point through the
//! engine, flushes, and waits for it to appear without a reload; then the
//! run ends and its status changes on the page; then the overlay of two runs.
//!
//! Skips when no Chromium is installed, unless `ML_DASH_REQUIRE_BROWSER=1`
//! (`.ci/run` installs it and sets that). `ML_DASH_SCREENSHOT=FILE` saves a
//! screenshot of the run page (how `docs/serve.png` was made).

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::server::serve;
use common::*;
use ml_dash::point;
use serde_json::{Value as Json, json};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ML_DASH_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium and one page of it, attached.
struct Browser {
    child: Child,
    to: File,
    from: BufReader<File>,
    next_id: u64,
    session: String,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

impl Browser {
    fn start(bin: &Path, profile: &Path) -> Browser {
        let (cmd_r, cmd_w) = pipe();
        let (resp_r, resp_w) = pipe();
        let mut c = Command::new(bin);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--window-size=1280,1700",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (dup2)
        // on descriptors this process owns; the browser reads commands on
        // fd 3 and writes replies on fd 4.
        unsafe {
            c.pre_exec(move || {
                if libc::dup2(cmd_r, 3) < 0 || libc::dup2(resp_w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = c.spawn().expect("chromium starts");
        // SAFETY: each fd is open, ours, and owned by exactly one File from here on.
        let (to, from) = unsafe {
            libc::close(cmd_r);
            libc::close(resp_w);
            (File::from_raw_fd(cmd_w), File::from_raw_fd(resp_r))
        };
        let mut b = Browser {
            child,
            to,
            from: BufReader::new(from),
            next_id: 0,
            session: String::new(),
        };
        let t = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let s = b.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": t["targetId"], "flatten": true}),
        );
        b.session = s["sessionId"].as_str().unwrap().to_string();
        b
    }

    /// Sends a command and reads messages until its reply.
    fn call(&mut self, session: Option<&str>, method: &str, params: Json) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut buf = Vec::new();
            assert!(
                self.from.read_until(0, &mut buf).unwrap() > 0,
                "chromium closed its pipe"
            );
            buf.pop();
            let v: Json = serde_json::from_slice(&buf).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn page(&mut self, method: &str, params: Json) -> Json {
        let s = self.session.clone();
        self.call(Some(&s), method, params)
    }

    fn goto(&mut self, url: &str) {
        self.page("Page.navigate", json!({"url": url}));
    }

    /// Waits until `cond` (a JS expression) is truthy in the page and
    /// returns its value; a deadline of 30 s guards against a hang (a
    /// wait on a condition, not a timing assertion).
    fn wait(&mut self, cond: &str) -> Json {
        let expr = format!(
            "new Promise((ok, fail) => {{ const end = Date.now() + 30000; \
             const f = () => {{ let v; try {{ v = ({cond}); }} catch (e) {{ v = null; }} \
             if (v) ok(v); else if (Date.now() > end) fail(new Error('timed out: ' + {c:?} + ' ' + document.body.innerText.slice(0, 400))); \
             else setTimeout(f, 20); }}; f(); }})",
            c = cond
        );
        for _ in 0..50 {
            let r = self.page(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            );
            if let Some(e) = r.get("exceptionDetails") {
                let text = e.to_string();
                // A navigation replaced the document under the evaluation: again.
                if text.contains("context") || text.contains("destroyed") {
                    continue;
                }
                panic!("waiting for {cond}: {text}");
            }
            return r["result"]["value"].clone();
        }
        panic!("waiting for {cond}: the page kept navigating");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[metric, series, points, last]` of every chart in `sel`, once all are drawn.
fn charts(b: &mut Browser, sel: &str, n: usize) -> Json {
    b.wait(&format!(
        "document.querySelectorAll('{sel}[data-ready=\"1\"]').length === {n} && \
         [...document.querySelectorAll('{sel}')].map(c => [c.dataset.metric, c.dataset.series, c.dataset.points, c.dataset.last])"
    ))
}

#[test]
fn runs_list_and_a_live_run_page_in_chromium() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("ML_DASH_REQUIRE_BROWSER").is_none(),
            "ML_DASH_REQUIRE_BROWSER is set but no chromium is installed"
        );
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium)");
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    write_train_run(&root, "alice/mnist/run-2", 2.0);
    let run = open(&root, "alice/live/run");
    run.params()
        .set(json!({"lr": 0.01, "batch": 64, "model": {"depth": 12}}))
        .unwrap();
    let train = run.metrics("train").unwrap();
    let eval = run.metrics("eval").unwrap();
    for step in 0..300i64 {
        let s = step as f64;
        let loss = 2.0 / (1.0 + s / 30.0) + 0.08 * (s * 0.7).sin() + 0.05;
        let acc = 1.0 - 0.9 / (1.0 + s / 40.0) - 0.03 * (s * 0.45).cos().abs();
        train
            .log(&point! {"loss" => loss, "acc" => acc, "step" => step})
            .unwrap();
        if step % 100 == 99 {
            eval.log(&point! {"acc" => acc - 0.02, "step" => step})
                .unwrap();
        }
    }
    run.log("epoch 1 done").unwrap();
    run.files("configs")
        .save_json("run.json", json!({"optimizer": "adamw", "warmup": 100}))
        .unwrap();
    let pose = run.tracks("robot/pose").unwrap();
    for i in 0..3 {
        pose.append_at(i as f64, &point! {"x" => i, "y" => 2 * i})
            .unwrap();
    }
    run.flush().unwrap();
    let s = serve(&root, &[]);
    let profile = tempfile::tempdir().unwrap();
    let mut b = Browser::start(&bin, profile.path());

    // The runs list: three rows, the live one RUNNING.
    b.goto(&format!("{}/", s.base));
    let rows = b.wait(
        "document.querySelectorAll('#runs tbody tr').length === 3 && \
         [...document.querySelectorAll('#runs tbody tr')].map(r => [r.dataset.prefix, r.querySelector('.status').dataset.status])",
    );
    assert_eq!(
        rows,
        json!([
            ["alice/live/run", "RUNNING"],
            ["alice/mnist/run-1", "COMPLETED"],
            ["alice/mnist/run-2", "COMPLETED"]
        ])
    );

    // A run page: a chart per stream, every point (the width allows it).
    b.goto(&format!("{}/runs/alice/live/run", s.base));
    let got = charts(&mut b, "#charts .chart", 2);
    assert_eq!(
        got,
        json!([
            ["eval", "acc", "3", "299"],
            ["train", "loss,acc", "300,300", "299,299"]
        ])
    );
    b.wait("document.querySelector('#status .status').dataset.status === 'RUNNING'");
    b.wait("document.querySelectorAll('#params tbody tr').length === 3");
    b.wait("document.querySelector('#logs').innerText.includes('epoch 1 done')");
    b.wait("document.querySelectorAll('#tracks tbody tr').length === 3");
    b.wait("document.querySelector('#files pre.preview').textContent.includes('\"warmup\": 100')");
    if let Some(shot) = std::env::var_os("ML_DASH_SCREENSHOT") {
        let png = b.page("Page.captureScreenshot", json!({"format": "png"}));
        let bytes = base64_decode(png["data"].as_str().unwrap());
        std::fs::write(shot, bytes).unwrap();
    }

    // Live: a new point, flushed, appears without a reload.
    b.wait("(window.__same_page = 'yes')");
    train
        .log(&point! {"loss" => 0.2, "acc" => 0.97, "step" => 300})
        .unwrap();
    run.log_with(ml_dash::Level::Warn, "late warning", &point! {"x" => 1})
        .unwrap();
    run.flush().unwrap();
    let live = b.wait(
        "(c => c.dataset.points === '301,301' && [c.dataset.last, window.__same_page])\
         (document.querySelector('#charts .chart[data-metric=\"train\"]'))",
    );
    assert_eq!(live, json!(["300,300", "yes"]));
    b.wait("document.querySelector('#logs').innerText.includes('late warning')");
    // Drag to zoom (the server sends that x range), double-click to reset.
    let train = "document.querySelector('#charts .chart[data-metric=\"train\"]')";
    let r = b.wait(&format!(
        "(r => [r.left + 58 + 492 * 0.25, r.left + 58 + 492 * 0.5, r.top + 100])({train}.querySelector('canvas').getBoundingClientRect())"
    ));
    let (x0, x1, y) = (
        r[0].as_f64().unwrap(),
        r[1].as_f64().unwrap(),
        r[2].as_f64().unwrap(),
    );
    for (kind, x, clicks) in [
        ("mousePressed", x0, 1),
        ("mouseMoved", x1, 0),
        ("mouseReleased", x1, 1),
    ] {
        b.page(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": clicks}),
        );
    }
    let zoomed = b.wait(&format!(
        "(c => c.dataset.view && c.dataset.points !== '301,301' && [c.dataset.view, c.dataset.points])({train})"
    ));
    let n: usize = zoomed[1]
        .as_str()
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((60..=90).contains(&n), "a quarter of 301 points: {zoomed}");
    for (kind, clicks) in [
        ("mousePressed", 1),
        ("mouseReleased", 1),
        ("mousePressed", 2),
        ("mouseReleased", 2),
    ] {
        b.page(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x0, "y": y, "button": "left", "clickCount": clicks}),
        );
    }
    b.wait(&format!(
        "(c => c.dataset.view === '' && c.dataset.points === '301,301')({train})"
    ));
    // The run ends: its status changes on the page.
    run.complete().unwrap();
    b.wait("document.querySelector('#status .status').dataset.status === 'COMPLETED'");

    // The overlay of one metric of two runs, named by the URL.
    b.goto(&format!(
        "{}/runs/alice/mnist/run-1?metric=train&runs=alice/mnist/run-1,alice/mnist/run-2",
        s.base
    ));
    let ov = charts(&mut b, "#overlay-chart", 1);
    assert_eq!(
        ov,
        json!([[
            "train",
            "alice/mnist/run-1,alice/mnist/run-2",
            "50,50",
            "49,49"
        ]])
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let b: Vec<u8> = s.bytes().filter(|&c| c != b'=').map(val).collect();
    b.chunks(4)
        .flat_map(|c| {
            let n = c
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &v)| n | (v as u32) << (18 - 6 * i));
            [(n >> 16) as u8, (n >> 8) as u8, n as u8]
                .into_iter()
                .take(c.len().saturating_sub(1))
        })
        .collect()
}
