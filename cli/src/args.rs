//! The command line (clap derive): every command and flag, with its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Look into, check, plot, follow, export and sync the runs of an ML-Dash
/// store (`.dash`), as the ml-dash library and the Python SDK write it.
#[derive(Debug, Parser)]
#[command(name = "ml-dash", version, propagate_version = true)]
#[command(after_help = "Exit codes: 0 all good, 1 a problem found, 2 bad usage.")]
pub struct Cli {
    /// The store's root folder.
    #[arg(long, global = true, value_name = "DIR", default_value = ".dash")]
    pub dash_root: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every run under the root: status, start, duration, points per stream.
    List(ListArgs),
    /// One run: params, metric streams, tracks, the last logs, files.
    Show(ShowArgs),
    /// A chart of a metric stream of one or more runs (terminal or PNG).
    Plot(PlotArgs),
    /// A live view of a run being written, until its status is final.
    Follow(FollowArgs),
    /// Check runs and spools for damage (exit 1 if any); --repair what needs no guess.
    Verify(VerifyArgs),
    /// A metric stream, the logs or a track topic as CSV or JSON lines.
    Export(ExportArgs),
    /// Send spools, or local runs that never had a server, to an ML-Dash server.
    Sync(SyncArgs),
    /// A web dashboard of the store on http://127.0.0.1:8777/ (live charts, logs, files).
    Serve(ServeArgs),
    /// Shell completions for bash, zsh, fish, elvish or powershell, on stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs whose prefix matches this glob (`*` within a segment, `**`
    /// across them, `?`); a plain prefix also matches the runs under it.
    pub glob: Option<String>,
    /// Add a column with the last value of a field: `STREAM.FIELD`
    /// (`train.loss`) or a bare field, looked up in the streams by name.
    #[arg(long = "field", value_name = "NAME")]
    pub fields: Vec<String>,
    /// JSON (one array) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run's prefix (`owner/project/[folders/]name`).
    pub prefix: String,
    /// How many of the last log lines to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub logs: usize,
    /// Only log lines at this level or above (debug < info < warn < error < fatal).
    #[arg(long, value_enum)]
    pub level: Option<LogLevel>,
    /// JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    /// debug
    Debug,
    /// info
    Info,
    /// warn
    Warn,
    /// error
    Error,
    /// fatal
    Fatal,
}

/// The x axis of a chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum XAxis {
    /// The `step` field (the point's index where a point has none).
    Step,
    /// The point's index in its stream.
    Index,
    /// `_ts`, as seconds since the run's first point.
    Time,
}

/// `plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Runs to overlay: prefixes or globs (each run is one colour).
    #[arg(required = true)]
    pub prefixes: Vec<String>,
    /// The metric stream, named as in `metrics("train")` (`None`: the unnamed one).
    #[arg(long, value_name = "STREAM")]
    pub metric: String,
    /// The field(s) to plot (default: every numeric field but the x one and `_ts`).
    #[arg(long = "field", value_name = "NAME")]
    pub fields: Vec<String>,
    /// The x axis.
    #[arg(long, value_enum, default_value_t = XAxis::Step)]
    pub x: XAxis,
    /// Write a PNG here instead of drawing in the terminal.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Width: characters in the terminal (default: the terminal's, else 80), pixels for a PNG (1000).
    #[arg(long)]
    pub width: Option<u32>,
    /// Height: characters in the terminal (default 20), pixels for a PNG (600).
    #[arg(long)]
    pub height: Option<u32>,
    /// Smooth with a trailing moving average over N points (before downsampling).
    #[arg(long, value_name = "N")]
    pub smooth: Option<usize>,
    /// A logarithmic y axis (values <= 0 are left out).
    #[arg(long)]
    pub log_y: bool,
}

/// `follow`.
#[derive(Debug, Args)]
pub struct FollowArgs {
    /// The run's prefix (it may not exist yet).
    pub prefix: String,
    /// Plain lines (for pipes and logs): each log line, then each metric's
    /// latest values when they change; the default when stdout is not a terminal.
    #[arg(long)]
    pub no_tty: bool,
    /// How often to poll the store's files, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub interval: u64,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Runs (prefixes or globs under the root, or run folders) and spool
    /// folders (a run's `.spool`, or one session in it); default: every run.
    pub targets: Vec<String>,
    /// Fix what needs no guess: a torn last line is moved to `<file>.torn`
    /// beside it. Nothing is deleted.
    #[arg(long)]
    pub repair: bool,
    /// JSON (one array of problems) instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Comma-separated, one column per field, a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// `export`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["metric", "logs", "track"])))]
pub struct ExportArgs {
    /// The run's prefix.
    pub prefix: String,
    /// A metric stream (one column per field, `index` and `_ts` included).
    #[arg(long, value_name = "STREAM")]
    pub metric: Option<String>,
    /// The logs.
    #[arg(long)]
    pub logs: bool,
    /// A track topic.
    #[arg(long, value_name = "TOPIC")]
    pub track: Option<String>,
    /// The format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Runs (prefixes or globs under the root) and spool folders; default:
    /// every run under the root.
    pub targets: Vec<String>,
    /// The server (default: the one each spool was written for;
    /// ML_DASH_API_URL).
    #[arg(long, value_name = "URL")]
    pub dash_url: Option<String>,
    /// The token (default: ML_DASH_TOKEN, then the ml-dash CLI's stores, as
    /// the library finds it).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Runs sent at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Keep going until every run is final and sent (runs still being written).
    #[arg(long)]
    pub follow: bool,
    /// How long to keep trying one pass before leaving the rest for next time, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub deadline: u64,
    /// First retry delay after a failed request, in milliseconds (doubling
    /// up to 30 s).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub retry_delay: u64,
    /// Plain progress lines on stderr even on a terminal.
    #[arg(long)]
    pub no_tty: bool,
}

/// `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0: any free one; the URL printed says which).
    #[arg(long, default_value_t = 8777)]
    pub port: u16,
    /// Every request must carry this token (`?token=`, which the page keeps
    /// in a cookie, or `Authorization: Bearer`).
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// Open the URL in a browser (xdg-open).
    #[arg(long)]
    pub open: bool,
}
