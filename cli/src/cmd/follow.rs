use crate::{Result, args::FollowArgs};
use std::path::Path;
pub(crate) fn run(_root: &Path, _a: &FollowArgs) -> Result {
    Err(crate::Fail::Problem("not yet".into()))
}
