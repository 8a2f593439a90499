use crate::{Result, args::PlotArgs};
use std::path::Path;
pub(crate) fn run(_root: &Path, _a: &PlotArgs) -> Result {
    Err(crate::Fail::Problem("not yet".into()))
}
