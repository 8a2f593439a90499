//! Local-store helpers shared by the integration tests that write a run into
//! a temp folder: a quiet run, and a sha256 in hex. Included with `mod local;`.
#![allow(dead_code)]

use std::path::Path;

use ml_dash::{BufferConfig, Experiment, Run};

/// The defaults, without the close report and warnings on stderr.
pub fn quiet() -> BufferConfig {
    let mut cfg = BufferConfig::default();
    cfg.quiet = true;
    cfg
}

/// A run of `prefix` under `root` with `cfg`.
pub fn open_with(root: &Path, prefix: &str, cfg: BufferConfig) -> Run {
    Experiment::new(prefix)
        .dash_root(root)
        .buffer_config(cfg)
        .run()
        .unwrap()
}

/// A quiet run of `prefix` under `root`.
pub fn open(root: &Path, prefix: &str) -> Run {
    open_with(root, prefix, quiet())
}

/// The sha256 of `bytes`, lower-case hex (as `.files_metadata.json` has it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
