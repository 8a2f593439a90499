//! Validation of experiment prefixes and stream names: anything that could
//! escape the experiment folder, alias another path, or not be stored is an
//! [`Error`] that says why.
//!
//! What the store can hold: a metric `a/b` is the folder `metrics/a/b/`, a
//! topic `a/b` the folder `tracks/a_b/`, each holding `data.jsonl`,
//! `metadata.json`, `.metadata.lock` and `.tmp-*` files. So every folder name
//! fits the file system's name limit (255 bytes), and no segment may begin
//! with `.`, `data.jsonl` or `metadata.json`: then a stream's folder never
//! collides with the store's own files in another stream's folder (`train`
//! beside `train/data.jsonl`), in either order.

use crate::error::{Error, Result};
use crate::files::MAX_SEGMENT_BYTES;

/// Longest name (and prefix segment), in characters.
pub(crate) const MAX_NAME: usize = 250;

/// Segment beginnings the store keeps for its own files in a stream folder
/// (`.metadata.lock`, `.tmp-*`, `data.jsonl` and its side files, `metadata.json`).
const RESERVED_STARTS: [&str; 3] = [".", "data.jsonl", "metadata.json"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    Metric,
    Topic,
}

fn bad_name(name: &str, reason: &'static str) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason,
    }
}

/// Checks the path segments of a name; `None` when they are fine.
fn segment_problem(s: &str) -> Option<&'static str> {
    if s.chars().any(char::is_control) {
        return Some("control characters (or NUL) are not allowed");
    }
    if s.contains('\\') {
        return Some("backslashes are not allowed; use '/' between folders");
    }
    if s.starts_with('/') {
        return Some("a leading '/' would make it an absolute path");
    }
    if s.split('/').any(|seg| seg.is_empty()) {
        return Some("empty path segments ('//' or a trailing '/') are not allowed");
    }
    if s.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("'.' and '..' segments would point outside the experiment folder");
    }
    None
}

/// Checks a metric name or track topic.
pub(crate) fn validate_name(name: &str, what: What) -> Result<()> {
    if name.is_empty() {
        return Err(bad_name(name, "a name must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(bad_name(name, "a name must be at most 250 characters"));
    }
    if let Some(reason) = segment_problem(name) {
        return Err(bad_name(name, reason));
    }
    if name
        .split('/')
        .any(|seg| RESERVED_STARTS.iter().any(|r| seg.starts_with(r)))
    {
        return Err(bad_name(
            name,
            "no segment may begin with '.', 'data.jsonl' or 'metadata.json': the store keeps those names for its own files",
        ));
    }
    let longest = match what {
        // One folder per segment.
        What::Metric => name.split('/').map(str::len).max().unwrap_or(0),
        // One folder, '/' replaced by '_'.
        What::Topic => name.len(),
    };
    if longest > MAX_SEGMENT_BYTES {
        return Err(bad_name(
            name,
            match what {
                What::Metric => {
                    "a segment (between '/') is over 255 bytes in UTF-8, longer than a file system allows"
                }
                What::Topic => {
                    "a topic is one folder: over 255 bytes in UTF-8 is longer than a file system allows"
                }
            },
        ));
    }
    if what == What::Metric && name == "None" {
        return Err(bad_name(
            name,
            "'None' is the folder of the unnamed stream: use Run::unnamed_metrics()",
        ));
    }
    Ok(())
}

/// Checks an experiment prefix: `owner/project/[folders/]name`.
///
/// # Errors
/// [`Error::InvalidPrefix`] saying what is wrong.
///
/// # Examples
/// ```
/// assert!(ml_dash::validate_prefix("alice/mnist/run-1").is_ok());
/// assert!(ml_dash::validate_prefix("alice").is_err());
/// assert!(ml_dash::validate_prefix("alice/../bob").is_err());
/// ```
pub fn validate_prefix(prefix: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidPrefix {
            prefix: prefix.to_string(),
            reason,
        })
    };
    if prefix.is_empty() {
        return bad("it is empty (and ML_DASH_PREFIX is not set)");
    }
    if let Some(reason) = segment_problem(prefix) {
        return bad(reason);
    }
    if prefix.split('/').count() < 2 {
        return bad("it needs at least two segments");
    }
    if prefix.split('/').any(|s| s.chars().count() > MAX_NAME) {
        return bad("a segment is longer than 250 characters");
    }
    if prefix.split('/').any(|s| s.len() > MAX_SEGMENT_BYTES) {
        return bad("a segment is over 255 bytes in UTF-8, longer than a file system allows");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "train",
            "a/b",
            "loss-é",
            "x.y",
            "a/x.data.jsonl",
            "a/my.metadata.json",
        ] {
            validate_name(ok, What::Metric).unwrap();
        }
        // 250 characters; 255 bytes per folder is the store's limit.
        let e200 = "é".repeat(200);
        let seg255 = format!("{}{}", "é".repeat(127), "x");
        for (name, metric_ok, topic_ok) in [
            (e200.as_str(), false, false),
            (seg255.as_str(), true, true),
            (&format!("{seg255}/{seg255}"), false, false),
            (
                &format!("{}/{}", "é".repeat(100), "é".repeat(100)),
                true,
                false,
            ),
        ] {
            assert_eq!(
                validate_name(name, What::Metric).is_ok(),
                metric_ok,
                "{name}"
            );
            assert_eq!(validate_name(name, What::Topic).is_ok(), topic_ok, "{name}");
        }
        for bad in [
            "",
            "/abs",
            "..",
            "a/../b",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
            "./a",
            &"x".repeat(251),
            "train/data.jsonl",
            "data.jsonl",
            "a/data.jsonl.torn",
            "a/metadata.json",
            "a/.metadata.lock",
            "a/.tmp-x",
            ".hidden",
        ] {
            assert!(
                matches!(
                    validate_name(bad, What::Topic),
                    Err(Error::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_name("None", What::Metric).is_err());
        assert!(validate_name("None", What::Topic).is_ok());
    }

    #[test]
    fn prefixes() {
        validate_prefix("a/b").unwrap();
        validate_prefix("a/b/c/d").unwrap();
        let long = format!("a/{}", "é".repeat(128));
        for bad in ["", "a", "/a/b", "a/b/", "a/./b", "a/../b", "a//b", &long] {
            assert!(
                matches!(validate_prefix(bad), Err(Error::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
    }
}
