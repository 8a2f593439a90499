//! `ml-dash serve` started as a real process on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `ml-dash serve`; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash, no token).
    pub base: String,
}

/// Starts `ml-dash --dash-root ROOT serve --port 0 EXTRA...` and reads the
/// URL it prints.
pub fn serve(root: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ml-dash"))
        .arg("--dash-root")
        .arg(root)
        .args(["serve", "--port", "0"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ml-dash serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .strip_prefix("ml-dash serve: ")
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let base = url
        .split('?')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    Server { child, base }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
