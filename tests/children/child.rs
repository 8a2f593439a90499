//! The child processes of the integration tests, as a program of their own
//! (`[[bin]] ml-dash-test-child` in Cargo.toml): a case that must run in a
//! process of its own (it aborts, hangs or arms a process-wide fault) is no
//! `#[test]` that returns at once unless a variable is set, and it runs on a
//! plain main thread, outside the test harness.
//!
//! A test starts it with `env!("CARGO_BIN_EXE_ml-dash-test-child")`:
//! `ml-dash-test-child <test file> <case>`, the case's settings in the
//! environment. Cargo builds the binaries of a package before its
//! integration tests (also for `cargo test --test <name>`); a crate that
//! depends on ml-dash never builds it.
//!
//! One module per test file whose children live here:
//! - `config_limits`: the settings that panicked or aborted the process,
//!   and the background threads that panic (`tests/config_limits.rs`);
//! - `ranks`: the ranks, writers, forked worker and signalled processes of
//!   `tests/ranks.rs`.

mod config_limits;
mod ranks;
mod ranks_common;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["config_limits", case] => config_limits::main(case),
        ["ranks", case] => ranks::main(case),
        _ => {
            eprintln!(
                "usage: ml-dash-test-child config_limits|ranks <case> (see tests/children/child.rs)"
            );
            std::process::exit(2);
        }
    }
}
