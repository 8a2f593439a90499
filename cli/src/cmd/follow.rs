//! `ml-dash follow PREFIX`: a live view of a run being written. It polls the
//! store's append-only files (no inotify: it works on NFS and Lustre), may
//! start before the run exists, prints each new log line, keeps the latest
//! values of each metric stream (in place on a terminal, as plain lines
//! otherwise) and ends when the run's status is final: the status is read
//! before the files in each round, so everything written before it is shown.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use ml_dash::read::{self, Liveness, Tail};
use serde_json::{Map, Value as Json};

use crate::args::FollowArgs;
use crate::out;
use crate::{Fail, Result};

struct Stream {
    tail: Tail,
    points: u64,
    last: Map<String, Json>,
    changed: bool,
}

pub(crate) fn run(root: &Path, a: &FollowArgs) -> Result {
    let tty = !a.no_tty && std::io::stdout().is_terminal();
    let dir = root.join(a.prefix.trim_matches('/'));
    let interval = Duration::from_millis(a.interval.max(1));
    let mut w = std::io::stdout().lock();
    let mut waiting_said = false;
    let mut logs = Tail::new(read::logs_path(&dir));
    let mut streams: BTreeMap<String, Stream> = BTreeMap::new();
    let mut block_lines = 0usize;
    loop {
        // The status first: what was written before it is read below.
        let info = read::run(root, &a.prefix);
        let Some(info) = info else {
            if !waiting_said {
                writeln!(w, "waiting for {} under {} ...", a.prefix, root.display())?;
                w.flush()?;
                waiting_said = true;
            }
            std::thread::sleep(interval);
            continue;
        };
        let liveness = info.liveness(SystemTime::now());
        let mut new_logs = Vec::new();
        logs.poll(|l| {
            if let Ok(v) = read::parse_lenient(l) {
                new_logs.push(super::show::log_line(&v));
            }
        })?;
        for s in read::metric_streams(&dir)? {
            let st = streams
                .entry(s.label().to_string())
                .or_insert_with(|| Stream {
                    tail: Tail::new(s.data()),
                    points: 0,
                    last: Map::new(),
                    changed: false,
                });
            let mut last_line = None;
            let n = st.tail.poll(|l| last_line = Some(l.to_vec()))?;
            st.points += n;
            if let Some(v) = last_line.and_then(|l| read::parse_lenient(&l).ok())
                && let Some(Json::Object(d)) = v.get("data").cloned()
            {
                for (k, x) in d {
                    st.last.insert(k, x);
                }
                st.changed = true;
            }
        }
        if tty {
            if block_lines > 0 {
                write!(w, "\x1b[{block_lines}A\x1b[J")?;
            }
            for l in &new_logs {
                writeln!(w, "{l}")?;
            }
            let block = metric_block(&streams, &info.prefix, info.status());
            block_lines = block.len();
            for l in block {
                writeln!(w, "{l}")?;
            }
        } else {
            for l in &new_logs {
                writeln!(w, "log {l}")?;
            }
            for (name, st) in streams.iter_mut().filter(|(_, s)| s.changed) {
                writeln!(w, "metric {name} points={} {}", st.points, values(&st.last))?;
            }
        }
        streams.values_mut().for_each(|s| s.changed = false);
        w.flush()?;
        match liveness {
            Liveness::Final => {
                writeln!(
                    w,
                    "run {} ended: {}",
                    info.prefix,
                    info.status().unwrap_or("-")
                )?;
                return Ok(());
            }
            Liveness::Dead { pid } => {
                writeln!(
                    w,
                    "run {} is RUNNING but its process (pid {pid}) is gone: it died \
                     without closing the run",
                    info.prefix
                )?;
                return Err(Fail::Reported);
            }
            _ => {}
        }
        std::thread::sleep(interval);
    }
}

fn values(m: &Map<String, Json>) -> String {
    m.iter()
        .filter(|(k, _)| *k != "_ts")
        .map(|(k, v)| format!("{k}={}", out::value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn metric_block(
    streams: &BTreeMap<String, Stream>,
    prefix: &str,
    status: Option<&str>,
) -> Vec<String> {
    let mut lines = vec![format!("── {prefix}  {} ──", status.unwrap_or("-"))];
    let mut t = out::Table::new(["STREAM", "POINTS", "LATEST"]);
    for (name, s) in streams {
        t.row(vec![name.clone(), s.points.to_string(), values(&s.last)]);
    }
    let mut buf = Vec::new();
    let _ = t.write(&mut buf, "  ");
    lines.extend(String::from_utf8_lossy(&buf).lines().map(String::from));
    lines
}
