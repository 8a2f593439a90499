//! `ml-dash verify`: damage in runs and spools, one line per problem.

use std::io::Write;
use std::path::{Path, PathBuf};

use ml_dash::read::{self, Problem};
use serde_json::json;

use crate::args::VerifyArgs;
use crate::out;
use crate::{Fail, Result};

/// What one target is.
enum Target {
    Run(String, PathBuf),
    Spool(PathBuf),
}

pub(crate) fn run(root: &Path, a: &VerifyArgs) -> Result {
    let mut targets = Vec::new();
    if a.targets.is_empty() {
        for r in read::runs(root)? {
            targets.push(Target::Run(r.prefix, r.dir));
        }
        let top = root.join(".spool");
        if read::is_spool(&top) {
            targets.push(Target::Spool(top));
        }
    }
    for t in &a.targets {
        let p = Path::new(t);
        if !out::is_glob(t) && p.is_dir() {
            if read::is_spool(p) {
                targets.push(Target::Spool(p.to_path_buf()));
                continue;
            }
            if p.join("experiment.json").is_file() {
                targets.push(Target::Run(t.clone(), p.to_path_buf()));
                continue;
            }
        }
        for r in super::matching_runs(root, std::slice::from_ref(t))? {
            targets.push(Target::Run(r.prefix, r.dir));
        }
    }
    let mut w = std::io::stdout().lock();
    let mut all: Vec<(String, Problem)> = Vec::new();
    for t in &targets {
        let (name, problems) = match t {
            Target::Run(prefix, dir) => (prefix.clone(), read::verify_run(dir, a.repair)?),
            Target::Spool(dir) => (dir.display().to_string(), read::verify_spool(dir)?),
        };
        if !a.json {
            if problems.is_empty() {
                writeln!(w, "ok       {name}")?;
            } else {
                writeln!(w, "DAMAGED  {name}: {} problem(s)", problems.len())?;
                for p in &problems {
                    writeln!(w, "  {}: {}", p.path.display(), p.what)?;
                    if let Some(r) = &p.repaired {
                        writeln!(w, "    repaired: {r}")?;
                    }
                }
            }
        }
        all.extend(problems.into_iter().map(|p| (name.clone(), p)));
    }
    if a.json {
        let v: Vec<_> = all
            .iter()
            .map(|(t, p)| {
                json!({"target": t, "path": p.path, "problem": p.what, "repaired": p.repaired})
            })
            .collect();
        out::json(&mut w, &json!(v))?;
    } else if targets.is_empty() {
        writeln!(w, "no runs under {}", root.display())?;
    }
    if all.is_empty() {
        Ok(())
    } else {
        let fixed = all.iter().filter(|(_, p)| p.repaired.is_some()).count();
        if !a.json {
            writeln!(
                w,
                "{} problem(s) found{}",
                all.len(),
                if a.repair {
                    format!(", {fixed} repaired")
                } else {
                    String::new()
                }
            )?;
        }
        Err(Fail::Reported)
    }
}
