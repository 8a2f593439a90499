use crate::{Result, args::SyncArgs};
use std::path::Path;
pub(crate) fn run(_root: &Path, _a: &SyncArgs) -> Result {
    Err(crate::Fail::Problem("not yet".into()))
}
