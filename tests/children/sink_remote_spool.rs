//! The child of `tests/sink_remote_spool.rs`
//! (`kill_nine_then_replay_loses_nothing_flushed`): a remote sink logging
//! until it is killed (`writer <url> <spool dir>`).

use std::path::Path;
use std::time::Duration;

use ml_dash::__remote_testing as rt;

use crate::sink::{config, points, refs};

/// Runs the child `args` name.
pub fn main(args: &[&str]) {
    match *args {
        ["writer", url, dir] => writer(url, Path::new(dir)),
        _ => panic!("sink_remote_spool: bad arguments {args:?}"),
    }
}

/// Appends 20 points `{"i", "t": 0}` at a time, syncs every third append
/// and prints `flushed k` (every point of appends 0..=k is acknowledged).
fn writer(url: &str, dir: &Path) {
    let mut c = config(url, "alice/proj/kill", dir);
    c.segment_bytes = 16 * 1024;
    let mut sink = rt::RemoteSink::open(c).unwrap();
    for k in 0..5000u64 {
        sink.append_metrics(Some("train"), refs(&points(0, k * 20, 20)))
            .unwrap();
        if k % 3 == 2 {
            sink.sync().unwrap();
            println!("flushed {k}");
        }
    }
    sink.close(Duration::from_secs(60));
}
