//! The `ml-dash` command-line tool, as a library: the binary is
//! `ml_dash_cli::main`, and the pieces a dashboard server reuses are public
//! ([`downsample`], [`chart`]).
//!
//! Every read goes through the library's public read API (`ml_dash::read`);
//! nothing here knows the store's internals beyond what that API documents.
//!
//! Exit codes: 0 all good, 1 a problem found (damage, a failed sync, an
//! unreadable file), 2 bad usage (a bad flag, no such run).

pub mod args;
pub mod chart;
mod cmd;
pub mod downsample;
pub mod out;
pub mod series;
mod serve;

use clap::Parser;

/// Why a command failed, and so its exit code.
#[derive(Debug)]
pub enum Fail {
    /// Exit 2: the command line asks for something that cannot be (no such
    /// run, a bad value).
    Usage(String),
    /// Exit 1: a problem found (damage, an error reading or sending).
    Problem(String),
    /// Exit 1, the report already printed.
    Reported,
}

impl From<ml_dash::Error> for Fail {
    fn from(e: ml_dash::Error) -> Fail {
        match e {
            ml_dash::Error::InvalidName { .. }
            | ml_dash::Error::InvalidPrefix { .. }
            | ml_dash::Error::Config { .. } => Fail::Usage(e.to_string()),
            e => Fail::Problem(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Fail {
        // A closed pipe (`ml-dash list | head`) is not a problem.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Fail::Reported;
        }
        Fail::Problem(e.to_string())
    }
}

/// The result of a command.
pub type Result<T = (), E = Fail> = std::result::Result<T, E>;

/// Runs the command line of this process; returns the exit code.
pub fn main() -> i32 {
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cmd::run(cli) {
        Ok(()) => 0,
        Err(Fail::Usage(m)) => {
            eprintln!("ml-dash: {m}");
            2
        }
        Err(Fail::Problem(m)) => {
            eprintln!("ml-dash: {m}");
            1
        }
        Err(Fail::Reported) => 1,
    }
}
