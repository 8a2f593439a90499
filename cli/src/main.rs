//! `ml-dash`: look into, check, plot, follow, export and sync the runs of an
//! ML-Dash `.dash` store. See `ml-dash --help`.

fn main() {
    std::process::exit(ml_dash_cli::main());
}
