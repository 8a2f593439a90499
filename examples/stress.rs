//! Stress harness: T threads each log N points into one run, then close.
//!
//! ```text
//! cargo run --release --example stress -- --dash-root DIR --prefix OWNER/PROJ/NAME \
//!     --threads T --points N [--fields F] [--dash-url URL] [--token TOKEN]
//! ```
//! Each thread logs to metric stream `train` the fields `thread`, `i`, `loss`
//! (plus `f3`.. up to F fields in all); every 1000th point also one info log
//! line (metadata `thread`, `i`) and one row on track topic `t/{thread}`.
//! The last line printed is `points=.. seconds=.. points_per_sec=..`, the wall
//! time including close.

use std::time::Instant;

use ml_dash::{Experiment, Level, Value, point};

struct Args {
    dash_root: Option<String>,
    dash_url: Option<String>,
    token: Option<String>,
    prefix: String,
    threads: usize,
    points: u64,
    fields: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: stress [--dash-root DIR] [--dash-url URL [--token TOKEN]] --prefix OWNER/PROJ/NAME --threads T --points N [--fields F]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        dash_root: None,
        dash_url: None,
        token: None,
        prefix: String::new(),
        threads: 1,
        points: 1_000_000,
        fields: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--dash-root" => a.dash_root = Some(v),
            "--dash-url" => a.dash_url = Some(v),
            "--token" => a.token = Some(v),
            "--prefix" => a.prefix = v,
            "--threads" => a.threads = v.parse().unwrap_or_else(|_| usage()),
            "--points" => a.points = v.parse().unwrap_or_else(|_| usage()),
            "--fields" => a.fields = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if a.prefix.is_empty() || a.threads == 0 || a.fields < 3 {
        usage()
    }
    a
}

fn main() -> ml_dash::Result<()> {
    let args = parse();
    let start = Instant::now();
    let mut exp = Experiment::new(&args.prefix);
    if let Some(root) = &args.dash_root {
        exp = exp.dash_root(root);
    }
    if let Some(url) = &args.dash_url {
        exp = exp.dash_url(url); // hybrid with --dash-root, remote only without it
        if args.dash_root.is_none() {
            exp = exp.remote_only();
        }
    }
    if let Some(token) = &args.token {
        exp = exp.token(token);
    }
    let run = exp.run()?;
    let extra: Vec<String> = (3..args.fields).map(|k| format!("f{k}")).collect();
    std::thread::scope(|s| -> ml_dash::Result<()> {
        let mut joins = Vec::new();
        for t in 0..args.threads {
            let train = run.metrics("train")?;
            let logger = run.logger();
            let track = run.tracks(&format!("t/{t}"))?;
            let extra = &extra;
            let n = args.points;
            joins.push(s.spawn(move || -> ml_dash::Result<()> {
                let mut fields: Vec<(&str, Value<'_>)> = vec![
                    ("thread", Value::I64(t as i64)),
                    ("i", Value::I64(0)),
                    ("loss", Value::F64(0.0)),
                ];
                fields.extend(extra.iter().map(|name| (name.as_str(), Value::F64(0.0))));
                for i in 0..n {
                    fields[1].1 = Value::I64(i as i64);
                    fields[2].1 = Value::F64(1.0 / (i + 1) as f64);
                    for (k, f) in fields.iter_mut().enumerate().skip(3) {
                        f.1 = Value::F64((i as f64) * k as f64);
                    }
                    train.log(&fields)?;
                    if i % 1000 == 0 {
                        logger.log(Level::Info, "progress", &point! {"thread" => t, "i" => i})?;
                        track.append(&point! {"thread" => t, "i" => i})?;
                    }
                }
                Ok(())
            }));
        }
        for j in joins {
            j.join().expect("a producer thread panicked")?;
        }
        Ok(())
    })?;
    run.complete()?;
    let secs = start.elapsed().as_secs_f64();
    let total = args.threads as u64 * args.points;
    println!(
        "points={total} seconds={secs:.3} points_per_sec={:.0}",
        total as f64 / secs
    );
    Ok(())
}
