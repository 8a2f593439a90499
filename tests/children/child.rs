//! The child processes of the integration tests, as a program of their own
//! (`[[bin]] ml-dash-test-child` in Cargo.toml): a case that must run in a
//! process of its own (it aborts, hangs, is killed or stopped, forks, or arms
//! a process-wide fault) is no `#[test]` that returns at once unless a
//! variable is set, and it runs on a plain main thread, outside the test
//! harness.
//!
//! A test starts it with `env!("CARGO_BIN_EXE_ml-dash-test-child")`:
//! `ml-dash-test-child <test file> <case> [args]`, the case's settings in
//! the environment. Cargo builds the binaries of a package before its
//! integration tests (also for `cargo test --test <name>`); a crate that
//! depends on ml-dash never builds it.
//!
//! One module per test file whose children live here (with, where the test
//! and its children share constants, a `<test>_common.rs` both include):
//! - `config_limits`: the settings that panicked or aborted the process,
//!   and the background threads that panic;
//! - `ranks`: the ranks, writers, forked worker and signalled processes;
//! - `store_recovery`: the logger killed with `kill -9`, and many metric
//!   names under `ulimit -n`;
//! - `sink_remote_spool`: the remote sink killed with `kill -9`;
//! - `sink_remote_stall`: the run stopped with SIGSTOP for 30 s (R8).

mod config_limits;
#[path = "../local/mod.rs"]
mod local;
mod ranks;
mod ranks_common;
// The remote sink's helpers of the test server's crate (`tests/support/`).
#[allow(dead_code)]
#[path = "../support/sink.rs"]
mod sink;
mod sink_remote_spool;
mod sink_remote_stall;
mod store_recovery;
mod store_recovery_common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args[..] {
        ["config_limits", case] => config_limits::main(case),
        ["ranks", case] => ranks::main(case),
        ["store_recovery", ref rest @ ..] => store_recovery::main(rest),
        ["sink_remote_spool", ref rest @ ..] => sink_remote_spool::main(rest),
        ["sink_remote_stall", ref rest @ ..] => sink_remote_stall::main(rest),
        _ => {
            eprintln!(
                "usage: ml-dash-test-child <test file> <case> [args] (see tests/children/child.rs)"
            );
            std::process::exit(2);
        }
    }
}
