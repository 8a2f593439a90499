//! Validation of experiment prefixes and stream names: anything that could
//! escape the experiment folder, alias another path, or not be stored is an
//! [`Error`] that says why.

use crate::error::{Error, Result};

/// Longest name (and prefix segment), in characters.
pub(crate) const MAX_NAME: usize = 250;

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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["train", "a/b", "loss-é", "x.y"] {
            validate_name(ok, What::Metric).unwrap();
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
        for bad in ["", "a", "/a/b", "a/b/", "a/./b", "a/../b", "a//b"] {
            assert!(
                matches!(validate_prefix(bad), Err(Error::InvalidPrefix { .. })),
                "{bad:?}"
            );
        }
    }
}
