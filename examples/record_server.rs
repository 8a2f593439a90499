//! The project's loopback ML-Dash test server (`tests/support`) as a process,
//! for differential runs of other clients (`tests/differential/README.md`).
//!
//! `cargo run --example record_server -- --out requests.json` prints one line,
//! `URL http://127.0.0.1:PORT`, once it listens; when its standard input
//! reaches end of file it writes every request it answered to `--out` as one
//! JSON document (`support::requests_json`) and exits 0. It needs no token.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [flag, file] if flag == "--out" => file.clone(),
        _ => {
            eprintln!("usage: record_server --out FILE (writes the requests when stdin closes)");
            return ExitCode::from(2);
        }
    };
    let server = support::TestServer::start();
    println!("URL {}", server.url());
    let _ = std::io::stdout().flush();
    // Until the caller closes our standard input (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let doc = support::requests_json(&server.requests());
    drop(server);
    let text = serde_json::to_string_pretty(&doc).expect("JSON values serialize");
    if let Err(e) = std::fs::write(&out, text + "\n") {
        eprintln!("record_server: cannot write {out}: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
