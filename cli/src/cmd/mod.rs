//! The commands, one module each, over `ml_dash::read`.

mod export;
mod follow;
mod list;
mod plot;
mod show;
mod sync;
mod verify;

use std::path::Path;

use ml_dash::read::{self, RunInfo};

use crate::args::{Cli, Command};
use crate::{Fail, Result, out};

/// Runs one parsed command line.
pub(crate) fn run(cli: Cli) -> Result {
    let root = cli.dash_root.as_path();
    match cli.command {
        Command::List(a) => list::run(root, &a),
        Command::Show(a) => show::run(root, &a),
        Command::Plot(a) => plot::run(root, &a),
        Command::Follow(a) => follow::run(root, &a),
        Command::Verify(a) => verify::run(root, &a),
        Command::Export(a) => export::run(root, &a),
        Command::Sync(a) => sync::run(root, &a),
        Command::Serve(a) => crate::serve::run(root, &a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "ml-dash", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// The run `prefix` under `root`, or a usage error saying what there is.
pub(crate) fn one_run(root: &Path, prefix: &str) -> Result<RunInfo> {
    read::run(root, prefix).ok_or_else(|| {
        Fail::Usage(format!(
            "no run {prefix:?} under {} (`ml-dash --dash-root {} list` shows the runs)",
            root.display(),
            root.display()
        ))
    })
}

/// The runs matching any of `patterns` (prefixes, globs), in the order
/// given, each once; a pattern that matches none is a usage error.
pub(crate) fn matching_runs(root: &Path, patterns: &[String]) -> Result<Vec<RunInfo>> {
    let all = read::runs(root)?;
    let mut out: Vec<RunInfo> = Vec::new();
    for p in patterns {
        let before = out.len();
        for r in all.iter().filter(|r| out::glob_match(p, &r.prefix)) {
            if !out.iter().any(|o| o.prefix == r.prefix) {
                out.push(r.clone());
            }
        }
        if out.len() == before && !all.iter().any(|r| out::glob_match(p, &r.prefix)) {
            return Err(Fail::Usage(format!(
                "no run matches {p:?} under {} (`ml-dash list` shows the runs)",
                root.display()
            )));
        }
    }
    Ok(out)
}
